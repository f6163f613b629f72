//! The gateway over a real SQLite store (in memory) and the in-process bus, driven through the
//! router with `tower::ServiceExt::oneshot`. One test binary; modules by area.

mod common;
mod deployments;
mod errors;
mod ops;
mod queue;
