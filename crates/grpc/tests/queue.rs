//! The queue over a real socket: the generated client against a real server and store.

mod support;

use serde_json::json;
use support::Server;
use switchyard_proto::convert::{json_to_value, value_to_json};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::complete_job_request::{Failed, Outcome, Succeeded};
use tonic::Code;
use tonic_types::StatusExt;

fn job(pool: &str) -> pb::EnqueueJob {
    pb::EnqueueJob {
        pool: pool.into(),
        kind: "shell".into(),
        payload: Some(json_to_value(json!({"cmd": "make"}))),
        ..Default::default()
    }
}

fn claim(pool: &str) -> pb::ClaimRequest {
    pb::ClaimRequest {
        agent_id: "agent-1".into(),
        pool: pool.into(),
        lease_seconds: Some(30),
        ..Default::default()
    }
}

async fn get(
    client: &mut pb::queue_service_client::QueueServiceClient<tonic::transport::Channel>,
    id: &str,
) -> pb::Job {
    client
        .get_job(pb::GetJobRequest { job_id: id.into() })
        .await
        .expect("get")
        .into_inner()
        .job
        .expect("job")
}

#[tokio::test]
async fn enqueue_claim_start_complete_get() {
    let server = Server::start().await;
    let mut client = server.queue().await;

    let enqueued = client
        .enqueue(pb::EnqueueRequest {
            jobs: vec![job("build")],
        })
        .await
        .expect("enqueue")
        .into_inner()
        .jobs;
    assert_eq!(enqueued.len(), 1);
    let queued = &enqueued[0];
    assert_eq!(queued.state(), pb::JobState::Queued);
    assert_eq!(
        queued.priority(),
        pb::Priority::Normal,
        "UNSPECIFIED means NORMAL"
    );
    assert_eq!(queued.attempt, 0);
    assert_eq!(queued.max_attempts, 3);

    let claimed = client
        .claim(claim("build"))
        .await
        .expect("claim")
        .into_inner()
        .jobs;
    assert_eq!(claimed.len(), 1);
    let claimed = &claimed[0];
    assert_eq!(claimed.id, queued.id);
    assert_eq!(claimed.state(), pb::JobState::Claimed);
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.claimed_by.as_deref(), Some("agent-1"));
    assert!(claimed.lease_expires_at.is_some());

    let started = client
        .start_job(pb::StartJobRequest {
            job_id: claimed.id.clone(),
            attempt: 1,
        })
        .await
        .expect("start")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(started.state(), pb::JobState::Running);

    let done = client
        .complete_job(pb::CompleteJobRequest {
            job_id: claimed.id.clone(),
            attempt: 1,
            outcome: Some(Outcome::Succeeded(Succeeded {
                exit_code: Some(0),
                result: Some(json_to_value(json!({"artifacts": ["a.tar"]}))),
            })),
        })
        .await
        .expect("complete")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(done.state(), pb::JobState::Completed);

    let fetched = get(&mut client, &claimed.id).await;
    assert_eq!(fetched.state(), pb::JobState::Completed);
    assert_eq!(fetched.exit_code, Some(0));
    let result = value_to_json(fetched.result.clone().expect("result"), "result").unwrap();
    assert_eq!(result, json!({"artifacts": ["a.tar"]}));
    let payload = value_to_json(fetched.payload.clone().expect("payload"), "payload").unwrap();
    assert_eq!(payload, json!({"cmd": "make"}));
    assert!(fetched.finished_at.is_some());

    // Nothing left to claim: an empty answer, not an error.
    let none = client
        .claim(claim("build"))
        .await
        .expect("claim")
        .into_inner()
        .jobs;
    assert!(none.is_empty());
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_stale_attempt_is_failed_precondition_and_changes_nothing() {
    let server = Server::start().await;
    let mut client = server.queue().await;
    client
        .enqueue(pb::EnqueueRequest {
            jobs: vec![job("build")],
        })
        .await
        .expect("enqueue");
    let claimed = client
        .claim(claim("build"))
        .await
        .expect("claim")
        .into_inner()
        .jobs
        .remove(0);
    let before = get(&mut client, &claimed.id).await;

    for stale in [0, claimed.attempt + 1] {
        let err = client
            .complete_job(pb::CompleteJobRequest {
                job_id: claimed.id.clone(),
                attempt: stale,
                outcome: Some(Outcome::Failed(Failed {
                    exit_code: Some(1),
                    error: "boom".into(),
                })),
            })
            .await
            .expect_err("stale complete must fail");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        let info = err.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "CONFLICT");

        let err = client
            .start_job(pb::StartJobRequest {
                job_id: claimed.id.clone(),
                attempt: stale,
            })
            .await
            .expect_err("stale start must fail");
        assert_eq!(err.code(), Code::FailedPrecondition);
    }
    assert_eq!(
        get(&mut client, &claimed.id).await,
        before,
        "stale writes changed the job"
    );
}

#[tokio::test]
async fn invalid_enqueue_names_the_field_in_a_bad_request() {
    let server = Server::start().await;
    let mut client = server.queue().await;

    let err = client
        .enqueue(pb::EnqueueRequest {
            jobs: vec![job("")],
        })
        .await
        .expect_err("empty pool");
    assert_eq!(err.code(), Code::InvalidArgument);
    let bad = err.get_details_bad_request().expect("BadRequest detail");
    let fields: Vec<_> = bad
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["pool"]);

    // In a batch the field is named by its index; an unknown enum number is invalid too.
    let unknown_priority = pb::EnqueueJob {
        priority: 99,
        ..job("build")
    };
    let err = client
        .enqueue(pb::EnqueueRequest {
            jobs: vec![job("build"), unknown_priority],
        })
        .await
        .expect_err("unknown priority");
    assert_eq!(err.code(), Code::InvalidArgument);
    let bad = err.get_details_bad_request().expect("BadRequest detail");
    assert_eq!(bad.field_violations[0].field, "jobs[1].priority");

    let err = client
        .enqueue(pb::EnqueueRequest { jobs: vec![] })
        .await
        .expect_err("empty batch");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Nothing was stored by the failed calls.
    let listed = client
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.jobs.is_empty());
}

#[tokio::test]
async fn oversize_payload_is_resource_exhausted() {
    let server = Server::start().await;
    let mut client = server.queue().await;
    let big = pb::EnqueueJob {
        payload: Some(json_to_value(json!({"blob": "x".repeat(300 * 1024)}))),
        ..job("build")
    };
    let err = client
        .enqueue(pb::EnqueueRequest { jobs: vec![big] })
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.get_details_error_info().expect("error info").reason,
        "TOO_LARGE"
    );
}

#[tokio::test]
async fn unknown_or_malformed_ids() {
    let server = Server::start().await;
    let mut client = server.queue().await;
    let unknown = uuid_like();
    let err = client
        .get_job(pb::GetJobRequest { job_id: unknown })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);

    let err = client
        .get_job(pb::GetJobRequest {
            job_id: "not-a-uuid".into(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request()
            .expect("detail")
            .field_violations[0]
            .field,
        "job_id"
    );
}

/// A syntactically valid job id nobody enqueued.
fn uuid_like() -> String {
    "01890a5d-ac96-774b-bcce-b302099a8057".into()
}

#[tokio::test]
async fn manage_list_reprioritise_cancel_redrive_and_stats() {
    let server = Server::start().await;
    let mut client = server.queue().await;
    let jobs: Vec<_> = (0..3).map(|_| job("build")).collect();
    let ids: Vec<String> = client
        .enqueue(pb::EnqueueRequest { jobs })
        .await
        .expect("enqueue")
        .into_inner()
        .jobs
        .into_iter()
        .map(|j| j.id)
        .collect();

    // Pages of two, newest first, until the token runs out.
    let first = client
        .list_jobs(pb::ListJobsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(first.jobs.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_jobs(pb::ListJobsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(second.jobs.len(), 1);
    assert!(second.next_page_token.is_empty());

    let raised = client
        .set_priority(pb::SetPriorityRequest {
            job_id: ids[0].clone(),
            priority: pb::Priority::Critical.into(),
        })
        .await
        .expect("set priority")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(raised.priority(), pb::Priority::Critical);
    let err = client
        .set_priority(pb::SetPriorityRequest {
            job_id: ids[0].clone(),
            priority: 0,
        })
        .await
        .expect_err("unspecified priority");
    assert_eq!(err.code(), Code::InvalidArgument);

    let critical = client
        .list_jobs(pb::ListJobsRequest {
            priority: pb::Priority::Critical.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        critical
            .jobs
            .iter()
            .map(|j| j.id.as_str())
            .collect::<Vec<_>>(),
        [ids[0].as_str()]
    );

    let cancelled = client
        .cancel_job(pb::CancelJobRequest {
            job_id: ids[1].clone(),
        })
        .await
        .expect("cancel")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(cancelled.state(), pb::JobState::Cancelled);
    let err = client
        .cancel_job(pb::CancelJobRequest {
            job_id: ids[1].clone(),
        })
        .await
        .expect_err("cancel twice");
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Only dead-lettered jobs can be redriven.
    let err = client
        .redrive_job(pb::RedriveJobRequest {
            job_id: ids[2].clone(),
        })
        .await
        .expect_err("redrive a queued job");
    assert_eq!(err.code(), Code::FailedPrecondition);

    let stats = client
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner()
        .stats;
    let queued: u64 = stats
        .iter()
        .filter(|s| s.pool == "build")
        .map(|s| s.queued)
        .sum();
    assert_eq!(queued, 2);

    let reaped = client
        .requeue_expired(pb::RequeueExpiredRequest {})
        .await
        .expect("requeue expired")
        .into_inner();
    assert_eq!((reaped.requeued, reaped.dead_lettered), (0, 0));
}

#[tokio::test]
async fn a_failing_job_is_retried_then_dead_lettered_and_redriven() {
    let server = Server::start().await;
    let mut client = server.queue().await;
    let one_try = pb::EnqueueJob {
        max_attempts: Some(1),
        ..job("build")
    };
    client
        .enqueue(pb::EnqueueRequest {
            jobs: vec![one_try],
        })
        .await
        .expect("enqueue");
    let claimed = client
        .claim(claim("build"))
        .await
        .expect("claim")
        .into_inner()
        .jobs
        .remove(0);
    let dead = client
        .complete_job(pb::CompleteJobRequest {
            job_id: claimed.id.clone(),
            attempt: claimed.attempt,
            outcome: Some(Outcome::Failed(Failed {
                exit_code: Some(2),
                error: "boom".into(),
            })),
        })
        .await
        .expect("complete")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(dead.state(), pb::JobState::DeadLettered);
    assert_eq!(dead.failures.len(), 1);
    assert_eq!(dead.failures[0].error, "boom");

    let redriven = client
        .redrive_job(pb::RedriveJobRequest {
            job_id: claimed.id.clone(),
        })
        .await
        .expect("redrive")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(redriven.state(), pb::JobState::Queued);
    assert_eq!(
        redriven.attempt, 1,
        "redrive never resets the fencing token"
    );
    assert_eq!(redriven.redrives, 1);
}

#[tokio::test]
async fn calls_refused_by_the_auth_layer_are_unauthenticated_or_denied() {
    use switchyard_types::{Scope, ScopeSet};
    // Without an identity service, any credential is refused.
    let server = Server::start().await;
    let mut client = server.queue().await;
    let mut request = tonic::Request::new(pb::GetStatsRequest {});
    request
        .metadata_mut()
        .insert("authorization", "Bearer not-a-token".parse().unwrap());
    let err = client.get_stats(request).await.expect_err("refused");
    assert_eq!(err.code(), Code::Unauthenticated);

    // A caller without `jobs:write` may read but not enqueue.
    let reader = switchyard_types::Principal {
        scopes: ScopeSet::of(&[Scope::JobsRead]),
        ..switchyard_types::Principal::dev()
    };
    let server = Server::start_with(switchyard_auth::layer::Gate::anonymous_only(reader)).await;
    let mut client = server.queue().await;
    client
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("read");
    let err = client
        .enqueue(pb::EnqueueRequest { jobs: vec![] })
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied);
}
