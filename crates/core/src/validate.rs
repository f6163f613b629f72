//! Field checks shared by every request (the collector lives in `switchyard-types`, so the
//! identity services check fields the same way).

pub(crate) use switchyard_types::Violations;
