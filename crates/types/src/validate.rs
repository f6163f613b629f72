//! Field checks shared by every request: each records the violation to report, if any.

use crate::{FieldViolation, Labels};

/// Collects violations for one request, with a field-path prefix (`jobs[3].`).
#[derive(Debug, Default)]
pub struct Violations {
    prefix: String,
    found: Vec<FieldViolation>,
}

impl Violations {
    /// A collector whose field names start with `prefix`.
    pub fn with_prefix(prefix: String) -> Self {
        Violations {
            prefix,
            found: Vec::new(),
        }
    }

    /// Records that `field` is wrong.
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.found.push(FieldViolation {
            field: format!("{}{field}", self.prefix),
            description: description.into(),
        });
    }

    /// A name: 1–64 characters of `[A-Za-z0-9._-]`.
    pub fn name(&mut self, field: &str, value: &str) {
        if !crate::is_pool_name(value) {
            self.add(field, "must be 1-64 characters of [A-Za-z0-9._-]");
        }
    }

    /// A free-form key: 1–`max` characters, no control characters.
    pub fn key(&mut self, field: &str, value: &str, max: usize) {
        if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
            self.add(
                field,
                format!("must be 1-{max} characters without control characters"),
            );
        }
    }

    /// An integer within `min..=max`.
    pub fn range(&mut self, field: &str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.add(field, format!("must be between {min} and {max}"));
        }
    }

    /// Job or agent labels: at most 32, keys are names, values at most 255 characters.
    pub fn labels(&mut self, field: &str, labels: &Labels) {
        if labels.len() > 32 {
            self.add(field, "at most 32 labels");
        }
        for (k, v) in labels {
            self.name(&format!("{field}.{k}"), k);
            if v.len() > 255 || v.chars().any(char::is_control) {
                self.add(
                    &format!("{field}.{k}"),
                    "value must be at most 255 characters",
                );
            }
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Moves the found violations into `into`.
    pub fn drain_into(self, into: &mut Vec<FieldViolation>) {
        into.extend(self.found);
    }

    /// `Ok` when nothing was found, else `InvalidArgument` with every violation.
    pub fn finish(self) -> crate::Result<()> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(crate::Error::invalid_fields(self.found))
        }
    }
}
