//! Conversions between `switchyard.v1` messages ([`crate::v1`]) and the domain types of
//! `switchyard-types`, in one place for every edge and client.
//!
//! Domain to wire is infallible (`From`). Wire to domain can fail, and then returns
//! [`Error::invalid`] naming the offending field, so a server can answer `INVALID_ARGUMENT` with
//! a `google.rpc.BadRequest` and a client can reject a malformed response. Conventions:
//!
//! * Enums: `*_UNSPECIFIED` reads as `None` (the caller decides: a default on input, "any" in a
//!   filter, or an error when required); a number this build does not know is invalid.
//! * Timestamps: `google.protobuf.Timestamp` within the proto range (years 1-9999).
//! * JSON: `google.protobuf.Value` carries any JSON value ([`json`]).

mod agent;
mod deployment;
mod identity;
mod ingest;
pub mod json;
mod messages;

pub use agent::agent_status_from_pb;
pub use deployment::{deployment_state_from_pb, notification_state_from_pb, verdict_from_pb};
pub use json::{json_object_to_struct, json_to_value, struct_to_json, value_to_json};
pub use messages::outcome_from_pb;

use chrono::{DateTime, Utc};
use switchyard_types::{Error, JobId, JobState, Priority, Result};

use crate::v1 as pb;

impl From<Priority> for pb::Priority {
    fn from(priority: Priority) -> Self {
        match priority {
            Priority::Low => pb::Priority::Low,
            Priority::Normal => pb::Priority::Normal,
            Priority::High => pb::Priority::High,
            Priority::Critical => pb::Priority::Critical,
        }
    }
}

/// Reads a priority off the wire: `PRIORITY_UNSPECIFIED` is `None`; an unknown number is
/// invalid, reported against `field`.
pub fn priority_from_pb(value: i32, field: &str) -> Result<Option<Priority>> {
    match pb::Priority::try_from(value) {
        Ok(pb::Priority::Unspecified) => Ok(None),
        Ok(pb::Priority::Low) => Ok(Some(Priority::Low)),
        Ok(pb::Priority::Normal) => Ok(Some(Priority::Normal)),
        Ok(pb::Priority::High) => Ok(Some(Priority::High)),
        Ok(pb::Priority::Critical) => Ok(Some(Priority::Critical)),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

impl From<JobState> for pb::JobState {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Queued => pb::JobState::Queued,
            JobState::Claimed => pb::JobState::Claimed,
            JobState::Running => pb::JobState::Running,
            JobState::Completed => pb::JobState::Completed,
            JobState::DeadLettered => pb::JobState::DeadLettered,
            JobState::Cancelled => pb::JobState::Cancelled,
        }
    }
}

/// Reads a job state off the wire: `JOB_STATE_UNSPECIFIED` is `None`; an unknown number is
/// invalid, reported against `field`.
pub fn job_state_from_pb(value: i32, field: &str) -> Result<Option<JobState>> {
    match pb::JobState::try_from(value) {
        Ok(pb::JobState::Unspecified) => Ok(None),
        Ok(pb::JobState::Queued) => Ok(Some(JobState::Queued)),
        Ok(pb::JobState::Claimed) => Ok(Some(JobState::Claimed)),
        Ok(pb::JobState::Running) => Ok(Some(JobState::Running)),
        Ok(pb::JobState::Completed) => Ok(Some(JobState::Completed)),
        Ok(pb::JobState::DeadLettered) => Ok(Some(JobState::DeadLettered)),
        Ok(pb::JobState::Cancelled) => Ok(Some(JobState::Cancelled)),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

/// Turns an optional wire value into a required one: `None` is invalid ("is required").
pub fn required<T>(value: Option<T>, field: &str) -> Result<T> {
    value.ok_or_else(|| Error::invalid(field, "is required"))
}

pub(crate) fn unknown_enum(field: &str, value: i32) -> Error {
    Error::invalid(field, format!("unknown enum value {value}"))
}

/// Parses a job id sent as a string; an empty or malformed one is invalid against `field`.
pub fn job_id(value: &str, field: &str) -> Result<JobId> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    value
        .parse()
        .map_err(|_| Error::invalid(field, "is not a valid job id (UUID)"))
}

/// The earliest instant a `google.protobuf.Timestamp` may hold: 0001-01-01T00:00:00Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// The latest instant a `google.protobuf.Timestamp` may hold: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// A domain instant as a `google.protobuf.Timestamp`.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // At most 1_999_999_999 (a leap second), which fits an i32.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(999_999_999),
    }
}

/// Reads a `google.protobuf.Timestamp`; one outside years 1-9999 or with nanos outside
/// `0..1e9` is invalid against `field`.
pub fn datetime(ts: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>> {
    u32::try_from(ts.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .filter(|_| (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds))
        .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
        .ok_or_else(|| Error::invalid(field, "is not a valid timestamp (years 1-9999)"))
}

/// [`datetime`] for an optional field.
pub fn opt_datetime(
    ts: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>> {
    ts.map(|ts| datetime(ts, field)).transpose()
}

/// Parses a label filter written `key=value` (the value may be empty); a missing `=` or an
/// empty key is invalid against `field`.
pub fn label_filter(value: &str, field: &str) -> Result<(String, String)> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        Some(_) | None => Err(Error::invalid(field, "must be written key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_types::ErrorKind;

    #[test]
    fn priorities_round_trip_and_unspecified_is_none() {
        for p in Priority::ALL {
            let wire = pb::Priority::from(*p) as i32;
            assert_eq!(priority_from_pb(wire, "priority").unwrap(), Some(*p));
        }
        assert_eq!(priority_from_pb(0, "priority").unwrap(), None);
        let err = priority_from_pb(99, "jobs[2].priority").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert_eq!(err.violations[0].field, "jobs[2].priority");
    }

    #[test]
    fn states_round_trip_and_unknown_numbers_are_invalid() {
        for s in JobState::ALL {
            let wire = pb::JobState::from(*s) as i32;
            assert_eq!(job_state_from_pb(wire, "state").unwrap(), Some(*s));
        }
        assert_eq!(job_state_from_pb(0, "state").unwrap(), None);
        assert_eq!(
            job_state_from_pb(-1, "state").unwrap_err().violations[0].field,
            "state"
        );
    }

    #[test]
    fn wire_names_match_the_domain_names() {
        for p in Priority::ALL {
            assert_eq!(
                pb::Priority::from(*p).as_str_name(),
                format!("PRIORITY_{}", p.as_str())
            );
        }
        for s in JobState::ALL {
            assert_eq!(
                pb::JobState::from(*s).as_str_name(),
                format!("JOB_STATE_{}", s.as_str())
            );
        }
    }

    #[test]
    fn timestamps_round_trip_with_nanos_and_reject_garbage() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(datetime(&timestamp(at), "run_at").unwrap(), at);
        let bad_nanos = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(
            datetime(&bad_nanos, "run_at").unwrap_err().violations[0].field,
            "run_at"
        );
        let too_late = prost_types::Timestamp {
            seconds: MAX_TIMESTAMP_SECONDS + 1,
            nanos: 0,
        };
        assert!(datetime(&too_late, "run_at").is_err());
        assert_eq!(opt_datetime(None, "run_at").unwrap(), None);
    }

    #[test]
    fn job_ids_parse_or_name_the_field() {
        let id = JobId::new();
        assert_eq!(job_id(&id.to_string(), "job_id").unwrap(), id);
        assert_eq!(
            job_id("", "job_id").unwrap_err().message,
            "job_id: is required"
        );
        assert_eq!(
            job_id("nope", "job_id").unwrap_err().violations[0].field,
            "job_id"
        );
    }

    #[test]
    fn label_filters() {
        assert_eq!(
            label_filter("os=linux", "label").unwrap(),
            ("os".into(), "linux".into())
        );
        assert_eq!(
            label_filter("gpu=", "label").unwrap(),
            ("gpu".into(), String::new())
        );
        assert_eq!(
            label_filter("a=b=c", "label").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(label_filter("linux", "label").is_err());
        assert!(label_filter("=x", "label").is_err());
    }
}
