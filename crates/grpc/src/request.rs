//! Request messages -> the inputs of `switchyard_core::Queue`. The scalar pieces (enums, ids,
//! timestamps, JSON) come from [`switchyard_proto::convert`]; this module only assembles the
//! core request types, which `switchyard-proto` cannot see (it must not depend on `core`).
//!
//! A malformed message fails on its first bad field with `InvalidArgument` naming it; the
//! domain rules (required names, ranges, limits) are checked by `core`, which reports every
//! violation at once.

use std::time::Duration;

use switchyard_core::{ClaimJobs, EnqueueJob, ListJobs};
use switchyard_proto::convert::{
    job_state_from_pb, label_filter, opt_datetime, priority_from_pb, value_to_json,
};
use switchyard_proto::v1 as pb;
use switchyard_types::Result;

/// `EnqueueRequest.jobs`. Field names follow core's convention: `jobs[i].field` when the batch
/// holds several jobs, plain `field` for one.
pub(crate) fn enqueue(req: pb::EnqueueRequest) -> Result<Vec<EnqueueJob>> {
    let batch = req.jobs.len() > 1;
    req.jobs
        .into_iter()
        .enumerate()
        .map(|(i, job)| {
            let field = |name: &str| {
                if batch {
                    format!("jobs[{i}].{name}")
                } else {
                    name.to_owned()
                }
            };
            Ok(EnqueueJob {
                pool: job.pool,
                kind: job.kind,
                payload: match job.payload {
                    None => serde_json::Value::Null,
                    Some(payload) => value_to_json(payload, &field("payload"))?,
                },
                priority: priority_from_pb(job.priority, &field("priority"))?,
                labels: job.labels,
                tags: job.tags,
                max_attempts: job.max_attempts,
                timeout_seconds: job.timeout_seconds,
                run_at: opt_datetime(job.run_at.as_ref(), &field("run_at"))?,
                delay_seconds: job.delay_seconds,
                idempotency_key: job.idempotency_key,
                concurrency_key: job.concurrency_key,
                concurrency_limit: job.concurrency_limit,
            })
        })
        .collect()
}

/// `ClaimRequest`; the wait is whole seconds on the wire.
pub(crate) fn claim(req: pb::ClaimRequest) -> ClaimJobs {
    ClaimJobs {
        agent_id: req.agent_id,
        pool: req.pool,
        labels: req.labels,
        max_jobs: req.max_jobs,
        lease_seconds: req.lease_seconds,
        wait: Duration::from_secs(req.wait_seconds.into()),
        holder: None,
    }
}

/// `ListJobsRequest`: unspecified enums and a zero page size mean "no filter" / the default.
pub(crate) fn list(req: pb::ListJobsRequest) -> Result<ListJobs> {
    Ok(ListJobs {
        state: job_state_from_pb(req.state, "state")?,
        pool: req.pool,
        priority: priority_from_pb(req.priority, "priority")?,
        kind: req.kind,
        label: req
            .label
            .as_deref()
            .map(|l| label_filter(l, "label"))
            .transpose()?,
        limit: (req.page_size != 0).then_some(req.page_size),
        page_token: Some(req.page_token).filter(|t| !t.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchyard_proto::convert::json_to_value;
    use switchyard_types::{JobState, Priority};

    use super::*;

    #[test]
    fn enqueue_defaults_and_batch_field_names() {
        let one = pb::EnqueueJob {
            pool: "build".into(),
            kind: "shell".into(),
            ..Default::default()
        };
        let jobs = enqueue(pb::EnqueueRequest {
            jobs: vec![one.clone()],
        })
        .unwrap();
        assert_eq!(jobs[0].priority, None);
        assert_eq!(jobs[0].payload, serde_json::Value::Null);

        let with_payload = pb::EnqueueJob {
            payload: Some(json_to_value(json!({"cmd": "make"}))),
            priority: pb::Priority::High.into(),
            ..one.clone()
        };
        let jobs = enqueue(pb::EnqueueRequest {
            jobs: vec![with_payload],
        })
        .unwrap();
        assert_eq!(jobs[0].payload, json!({"cmd": "make"}));
        assert_eq!(jobs[0].priority, Some(Priority::High));

        let bad = pb::EnqueueJob {
            priority: 42,
            ..one.clone()
        };
        let err = enqueue(pb::EnqueueRequest {
            jobs: vec![bad.clone()],
        })
        .unwrap_err();
        assert_eq!(err.violations[0].field, "priority");
        let err = enqueue(pb::EnqueueRequest {
            jobs: vec![one, bad],
        })
        .unwrap_err();
        assert_eq!(err.violations[0].field, "jobs[1].priority");
    }

    #[test]
    fn list_treats_zero_values_as_unset() {
        let all = list(pb::ListJobsRequest::default()).unwrap();
        assert_eq!(all, ListJobs::default());
        let some = list(pb::ListJobsRequest {
            state: pb::JobState::DeadLettered.into(),
            label: Some("os=linux".into()),
            page_size: 10,
            page_token: "j1.x".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(some.state, Some(JobState::DeadLettered));
        assert_eq!(some.label, Some(("os".into(), "linux".into())));
        assert_eq!(some.limit, Some(10));
        assert_eq!(some.page_token.as_deref(), Some("j1.x"));
        let err = list(pb::ListJobsRequest {
            label: Some("linux".into()),
            ..Default::default()
        });
        assert_eq!(err.unwrap_err().violations[0].field, "label");
    }

    #[test]
    fn claim_wait_is_seconds() {
        let c = claim(pb::ClaimRequest {
            wait_seconds: 5,
            ..Default::default()
        });
        assert_eq!(c.wait, Duration::from_secs(5));
    }
}
