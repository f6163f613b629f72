//! [`switchyard_types::Error`] -> [`tonic::Status`]: the gRPC column of the one error table
//! (DESIGN §3.2), as one exhaustive `match` so a new `ErrorKind` does not compile until it has a
//! code here.
//!
//! Every status carries a `google.rpc.ErrorInfo` whose `reason` is the kind's code in upper case
//! (`CONFLICT`, `TOO_LARGE`, ...) and whose `domain` is [`ERROR_DOMAIN`], so clients can tell
//! apart kinds that share a gRPC code (`TooLarge` and `RateLimited` are both
//! `RESOURCE_EXHAUSTED`). `InvalidArgument` adds a `google.rpc.BadRequest` with one field
//! violation per invalid field; `RateLimited` and `Unavailable` add a `google.rpc.RetryInfo` when
//! the error says when to retry.

use std::collections::HashMap;

use switchyard_types::{Error, ErrorKind};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The `google.rpc.ErrorInfo.domain` of every Switchyard error.
pub const ERROR_DOMAIN: &str = "switchyard";

/// The gRPC code of each error kind: the one table both edges follow.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::RateLimited => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status a client sees for `err`. `Internal` errors are logged here with their real
/// message and answered with the generic public one.
pub fn to_status(err: Error) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        err.kind.code().to_ascii_uppercase(),
        ERROR_DOMAIN,
        HashMap::new(),
    );
    match err.kind {
        ErrorKind::InvalidArgument => {
            let violations: Vec<FieldViolation> = err
                .violations
                .iter()
                .map(|v| FieldViolation::new(v.field.clone(), v.description.clone()))
                .collect();
            details.set_bad_request(violations);
        }
        ErrorKind::RateLimited | ErrorKind::Unavailable => {
            if err.retry_after.is_some() {
                details.set_retry_info(err.retry_after);
            }
        }
        ErrorKind::Internal => tracing::error!(error = %err.message, "internal error"),
        ErrorKind::Unauthenticated
        | ErrorKind::PermissionDenied
        | ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::Conflict
        | ErrorKind::TooLarge => {}
    }
    Status::with_error_details(code(err.kind), err.public_message(), details)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_types::FieldViolation as Violation;

    use super::*;

    /// The gRPC column of DESIGN §3.2, restated independently of `code`.
    fn expected(kind: ErrorKind) -> Code {
        match kind {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::Conflict => Code::FailedPrecondition,
            ErrorKind::TooLarge | ErrorKind::RateLimited => Code::ResourceExhausted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        }
    }

    #[test]
    fn every_kind_maps_to_its_code_reason_and_public_message() {
        for kind in ErrorKind::ALL {
            let status = to_status(Error::new(kind, "secret detail for kind"));
            assert_eq!(status.code(), expected(kind), "{kind:?}");
            let info = status.get_details_error_info().unwrap();
            assert_eq!(info.reason, kind.code().to_ascii_uppercase());
            assert_eq!(info.domain, ERROR_DOMAIN);
            match kind {
                ErrorKind::Internal => assert_eq!(status.message(), "internal error"),
                ErrorKind::InvalidArgument
                | ErrorKind::Unauthenticated
                | ErrorKind::PermissionDenied
                | ErrorKind::NotFound
                | ErrorKind::AlreadyExists
                | ErrorKind::Conflict
                | ErrorKind::TooLarge
                | ErrorKind::RateLimited
                | ErrorKind::Unavailable => assert_eq!(status.message(), "secret detail for kind"),
            }
        }
    }

    #[test]
    fn invalid_argument_carries_every_field_violation() {
        let err = Error::invalid_fields(vec![
            Violation {
                field: "jobs[0].pool".into(),
                description: "is empty".into(),
            },
            Violation {
                field: "jobs[1].kind".into(),
                description: "is empty".into(),
            },
        ]);
        let status = to_status(err);
        let bad = status.get_details_bad_request().unwrap();
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["jobs[0].pool", "jobs[1].kind"]);
        assert_eq!(bad.field_violations[0].description, "is empty");
    }

    #[test]
    fn retry_after_becomes_retry_info() {
        let err = Error {
            retry_after: Some(Duration::from_secs(7)),
            ..Error::new(ErrorKind::RateLimited, "slow down")
        };
        let retry = to_status(err).get_details_retry_info().unwrap();
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(7)));
        let without = to_status(Error::new(ErrorKind::RateLimited, "slow down"));
        assert!(without.get_details_retry_info().is_none());
    }
}
