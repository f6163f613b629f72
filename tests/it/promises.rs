//! DESIGN §4 promises over the real binary: durable across kill -9, recovered after a lost
//! agent within lease + reaper interval.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Db, Server, send};

async fn durable_across_kill_9(db: Db) {
    let url = db.fresh_url().await;
    let s = Server::start_on(&url, &[]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = json!({"pool": "build", "kind": "shell", "payload": {"n": i}});
        let (status, body, _) = send(s.client.post(s.url("/api/queue/jobs")).json(&body)).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["data"]["id"].as_str().unwrap().to_owned());
    }
    let batch = json!({"jobs": (0..100).map(|i| json!({"pool": "build", "kind": "k", "payload": {"b": i}})).collect::<Vec<_>>()});
    let (status, body, _) = send(s.client.post(s.url("/api/queue/jobs")).json(&batch)).await;
    assert_eq!(status, 201);
    ids.extend(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned()),
    );
    // Acknowledged; now the process dies without a chance to flush anything.
    s.kill9();

    let s = Server::start_on(&url, &[]).await;
    for id in &ids {
        let (status, body, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{id}")))).await;
        assert_eq!(
            (status, body["data"]["state"].as_str()),
            (200, Some("QUEUED")),
            "{id}: {body}"
        );
    }
    let (_, body, _) = send(s.client.get(s.url("/api/queue/stats"))).await;
    assert_eq!(body["data"][0]["queued"], 120, "{body}");
}

#[tokio::test]
async fn acknowledged_jobs_survive_kill_9_on_postgres() {
    durable_across_kill_9(Db::Postgres).await;
}

#[tokio::test]
async fn acknowledged_jobs_survive_kill_9_on_sqlite() {
    durable_across_kill_9(Db::Sqlite).await;
}

/// An agent claims with a 5 s lease and vanishes; another agent waiting on the pool gets the job
/// (attempt 2) within lease + reaper interval (5 s + 5 s), with the expiry recorded.
#[tokio::test]
async fn a_lost_agents_job_is_offered_again_within_lease_plus_reaper_interval() {
    let s = Server::start(Db::Postgres, &[]).await;
    let c = &s.client;
    let (_, body, _) = send(
        c.post(s.url("/api/queue/jobs"))
            .json(&json!({"pool": "p", "kind": "k"})),
    )
    .await;
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let claim = |agent: &str, wait: u64| json!({"agent_id": agent, "pool": "p", "lease_seconds": 5, "wait_seconds": wait});
    let (_, body, _) = send(c.post(s.url("/api/queue/claim")).json(&claim("doomed", 0))).await;
    assert_eq!(body["data"][0]["id"], id.as_str());
    let lost_at = Instant::now();
    let mut attempt2 = None;
    while attempt2.is_none() && lost_at.elapsed() < Duration::from_secs(30) {
        let (_, body, _) = send(
            c.post(s.url("/api/queue/claim"))
                .json(&claim("rescuer", 30)),
        )
        .await;
        attempt2 = body["data"].as_array().and_then(|a| a.first().cloned());
    }
    let elapsed = lost_at.elapsed();
    let job = attempt2.expect("the job was never offered again");
    assert_eq!(
        (job["id"].as_str(), job["attempt"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
    assert_eq!(job["claimed_by"], "rescuer");
    assert!(
        elapsed <= Duration::from_secs(12),
        "offered again after {elapsed:?} (lease 5 s + reaper 5 s)"
    );
    let (_, body, _) = send(c.get(s.url(&format!("/api/queue/jobs/{id}")))).await;
    assert_eq!(
        body["data"]["failures"][0]["error"], "lease expired",
        "{body}"
    );
}
