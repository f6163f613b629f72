//! Around the protocol: shutdown, reconnecting, reports that must not be lost, bad start-up.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use switchyard_agent::{AgentError, run};
use switchyard_proto::v1::HeldJob;
use switchyard_proto::v1::connect_request::Body as Request;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::helpers::{Agent, assign, config, credits, finished, started};
use crate::server::Server;

#[tokio::test]
async fn shutdown_refuses_new_work_lets_jobs_finish_then_stops_the_rest() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&server.url, 2, dir.path()));
    let mut conn = server.accept().await;
    conn.welcome(1, 30).await;
    assert_eq!(conn.recv().await, credits(2));
    let quick = json!({"command": "sleep 0.5; echo done"});
    conn.send(assign("j-quick", 1, "shell", quick)).await;
    assert_eq!(conn.recv().await, started("j-quick", 1));
    conn.send(assign("j-slow", 1, "sleep", json!({"seconds": 300})))
        .await;
    assert_eq!(conn.recv().await, started("j-slow", 1));

    agent.shutdown.cancel();
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.send(assign("j-late", 1, "noop", json!({}))).await;
    let mut reports = Vec::new();
    while let Some(message) = conn.next().await {
        if let Request::Finished(report) = message {
            reports.push((report, since.elapsed()));
        } else if let Request::Log(chunk) = &message {
            assert_eq!(chunk.data, "done\n");
        } else {
            panic!("only reports after shutdown, got {message:?}");
        }
    }
    let summary: Vec<_> = reports
        .iter()
        .map(|(r, _)| (r.job_id.as_str(), r.succeeded, r.error.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("j-late", false, "agent shutting down"),
            ("j-quick", true, ""),
            ("j-slow", false, "agent shutting down"),
        ]
    );
    assert!(
        reports[2].1 >= Duration::from_secs(1),
        "the slow job had its grace"
    );
    drop(conn);
    agent.finish().await;
}

#[tokio::test]
async fn rejected_streams_are_retried_and_servers_tried_in_turn() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&server.url, 1, dir.path());
    // Nothing listens on port 1: the agent moves on to the next server.
    config.servers.insert(0, "http://127.0.0.1:1".into());
    let agent = Agent::start(config);
    let mut conn = server.accept().await;
    conn.hello().await;
    conn.fail(Status::unauthenticated("bad token")).await;
    let mut again = server.accept().await;
    again.welcome(5, 30).await;
    assert_eq!(again.recv().await, credits(1));
    agent.stop(again).await;
}

#[tokio::test]
async fn reports_sent_to_a_server_that_went_silent_are_sent_again() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&server.url, 1, dir.path()));
    let mut conn = server.accept().await;
    conn.ack = false;
    conn.welcome(1, 30).await;
    assert_eq!(conn.recv().await, credits(1));
    conn.send(assign("j-lost", 3, "noop", json!({}))).await;
    assert_eq!(conn.recv().await, started("j-lost", 3));
    let (first, _) = finished(&mut conn, 0).await;
    assert_eq!(conn.recv().await, credits(1));
    // No HeartbeatAck ever came: the reports may not have been processed. The next stream
    // lists the attempt (so the server takes it back) and sends its start and end again
    // (both idempotent on the server).
    let mut second = server.accept().await;
    let hello = second.welcome(1, 30).await;
    let held = HeldJob {
        job_id: "j-lost".into(),
        attempt: 3,
    };
    assert_eq!(hello.running, [held]);
    assert_eq!(second.recv().await, started("j-lost", 3));
    let (again, _) = finished(&mut second, 0).await;
    assert_eq!(again, first);
    assert!(again.succeeded);
    assert_eq!(second.recv().await, credits(1));
    agent.stop(second).await;
}

#[tokio::test]
async fn bad_configuration_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut no_servers = config("http://127.0.0.1:1", 1, dir.path());
    no_servers.servers.clear();
    let err = run(no_servers, shutdown.clone()).await.unwrap_err();
    assert!(matches!(err, AgentError::NoServers), "{err}");

    let mut bad_url = config("not a url", 1, dir.path());
    bad_url.servers = vec!["not a url".into()];
    let err = run(bad_url, shutdown.clone()).await.unwrap_err();
    assert!(matches!(err, AgentError::InvalidServer { .. }), "{err}");

    let mut bad_token = config("http://127.0.0.1:1", 1, dir.path());
    bad_token.token = Some("line\nbreak".into());
    let err = run(bad_token, shutdown.clone()).await.unwrap_err();
    assert!(matches!(err, AgentError::InvalidToken), "{err}");

    let mut missing = config("http://127.0.0.1:1", 1, dir.path());
    missing.secrets_file = Some(PathBuf::from("/nonexistent/secrets.json"));
    let err = run(missing, shutdown.clone()).await.unwrap_err();
    assert!(matches!(err, AgentError::SecretsUnreadable { .. }), "{err}");

    // A good configuration with shutdown already requested returns at once.
    shutdown.cancel();
    let ok = config("http://127.0.0.1:1", 1, dir.path());
    tokio::time::timeout(Duration::from_secs(5), run(ok, shutdown))
        .await
        .expect("returns at once")
        .expect("Ok");
}
