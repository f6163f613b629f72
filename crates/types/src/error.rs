//! One error type for the whole control plane. Each edge (gRPC, REST) maps [`ErrorKind`] with one
//! exhaustive `match`, so adding a kind is a compile error until both edges say what it means.

use std::time::Duration;

/// What went wrong, in the terms a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or fails validation; see the field violations.
    InvalidArgument,
    /// No or bad credentials.
    Unauthenticated,
    /// Valid credentials without the required scope.
    PermissionDenied,
    /// The object does not exist (or belongs to another tenant).
    NotFound,
    /// The object to create exists already.
    AlreadyExists,
    /// The object is in the wrong state for this operation (stale attempt, terminal job, ...).
    Conflict,
    /// The request or a part of it is larger than allowed.
    TooLarge,
    /// A rate or concurrency limit was reached; try again after `retry_after`.
    RateLimited,
    /// A dependency is down or the server is shutting down; retrying may succeed.
    Unavailable,
    /// A bug or an unexpected failure; details are in the server log only.
    Internal,
}

impl ErrorKind {
    /// Every kind, for table tests over the edge mappings.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Conflict,
        ErrorKind::TooLarge,
        ErrorKind::RateLimited,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The stable `snake_case` code clients see in the REST envelope.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// One invalid field of a request, as `google.rpc.BadRequest.FieldViolation` and the envelope's
/// `errors[].field` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field path in `snake_case`, e.g. `jobs[3].priority`.
    pub field: String,
    /// What is wrong with it, for a human.
    pub description: String,
}

/// The error every Switchyard operation returns.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The category, which decides the gRPC code and HTTP status.
    pub kind: ErrorKind,
    /// A message safe to show to the client (never credentials, never SQL).
    pub message: String,
    /// Invalid fields, for `InvalidArgument`.
    pub violations: Vec<FieldViolation>,
    /// When to retry, for `RateLimited` and `Unavailable`.
    pub retry_after: Option<Duration>,
}

/// Shorthand for `Result<T, switchyard_types::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            violations: Vec::new(),
            retry_after: None,
        }
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid_fields(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// Several invalid fields; the message names the first.
    pub fn invalid_fields(violations: Vec<FieldViolation>) -> Self {
        let message = match violations.as_slice() {
            [] => "invalid request".to_owned(),
            [one] => format!("{}: {}", one.field, one.description),
            [first, rest @ ..] => {
                format!(
                    "{}: {} (and {} more)",
                    first.field,
                    first.description,
                    rest.len()
                )
            }
        };
        Error {
            violations,
            ..Self::new(ErrorKind::InvalidArgument, message)
        }
    }

    /// The object `what` does not exist for this tenant.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} not found"))
    }

    /// The object is in the wrong state for the operation.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// A dependency is unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// An unexpected failure. The message goes to the log; clients see a generic one.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The request (or a part of it) is larger than `limit`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }

    /// The message a client may see: generic for `Internal`, the real one otherwise.
    pub fn public_message(&self) -> &str {
        match self.kind {
            ErrorKind::Internal => "internal error",
            ErrorKind::InvalidArgument
            | ErrorKind::Unauthenticated
            | ErrorKind::PermissionDenied
            | ErrorKind::NotFound
            | ErrorKind::AlreadyExists
            | ErrorKind::Conflict
            | ErrorKind::TooLarge
            | ErrorKind::RateLimited
            | ErrorKind::Unavailable => &self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let codes: std::collections::BTreeSet<_> =
            ErrorKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert!(
            codes
                .iter()
                .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        );
    }

    #[test]
    fn internal_message_is_hidden() {
        let e = Error::internal("connection to postgres://u:secret@db failed");
        assert_eq!(e.public_message(), "internal error");
        assert_eq!(
            Error::not_found("job x").public_message(),
            "job x not found"
        );
    }

    #[test]
    fn invalid_fields_message_counts_the_rest() {
        let e = Error::invalid_fields(vec![
            FieldViolation {
                field: "pool".into(),
                description: "is empty".into(),
            },
            FieldViolation {
                field: "kind".into(),
                description: "is empty".into(),
            },
        ]);
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(e.message, "pool: is empty (and 1 more)");
    }
}
