//! gRPC over the real binary: the queue lifecycle, fencing, field violations, reflection.

use pb::queue_service_client::QueueServiceClient;
use switchyard_proto::v1 as pb;
use tonic::Code;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::support::{AuthedChannel, Db, Server};

async fn client(s: &Server) -> QueueServiceClient<AuthedChannel> {
    QueueServiceClient::new(s.grpc_admin().await)
}

fn job(pool: &str) -> pb::EnqueueJob {
    pb::EnqueueJob {
        pool: pool.into(),
        kind: "shell".into(),
        priority: pb::Priority::High as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn grpc_lifecycle_on_postgres() {
    let s = Server::start(Db::Postgres, &[]).await;
    let mut c = client(&s).await;
    let enq = c
        .enqueue(pb::EnqueueRequest {
            jobs: vec![job("build"), job("build")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enq.jobs.len(), 2);
    assert_eq!(enq.jobs[0].state(), pb::JobState::Queued);

    let claimed = c
        .claim(pb::ClaimRequest {
            agent_id: "a1".into(),
            pool: "build".into(),
            max_jobs: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(claimed.len(), 2);
    let j = &claimed[0];
    assert_eq!((j.state(), j.attempt), (pb::JobState::Claimed, 1));

    let started = c
        .start_job(pb::StartJobRequest {
            job_id: j.id.clone(),
            attempt: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.job.unwrap().state(), pb::JobState::Running);
    let succeeded =
        pb::complete_job_request::Outcome::Succeeded(pb::complete_job_request::Succeeded {
            exit_code: Some(0),
            result: None,
        });
    let done = c
        .complete_job(pb::CompleteJobRequest {
            job_id: j.id.clone(),
            attempt: 1,
            outcome: Some(succeeded.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.job.unwrap().state(), pb::JobState::Completed);

    // A stale attempt: FAILED_PRECONDITION, and the job is unchanged.
    let before = c
        .get_job(pb::GetJobRequest {
            job_id: claimed[1].id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let err = c
        .complete_job(pb::CompleteJobRequest {
            job_id: claimed[1].id.clone(),
            attempt: 7,
            outcome: Some(succeeded),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let after = c
        .get_job(pb::GetJobRequest {
            job_id: claimed[1].id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before, after);

    // Field violations travel as google.rpc.BadRequest.
    let err = c
        .enqueue(pb::EnqueueRequest {
            jobs: vec![job("")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    use tonic_types::StatusExt;
    let bad = err.get_details_bad_request().expect("BadRequest details");
    assert_eq!(bad.field_violations[0].field, "pool");

    let err = c
        .get_job(pb::GetJobRequest {
            job_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let stats = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        stats
            .stats
            .iter()
            .any(|p| p.pool == "build" && p.completed == 1 && p.claimed == 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn reflection_lists_every_service() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let channel = tonic::transport::Endpoint::new(format!("http://{}", s.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut r = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = r
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "switchyard.v1.QueueService",
        "switchyard.v1.AuthService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
}
