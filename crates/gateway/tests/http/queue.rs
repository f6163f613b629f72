//! The queue routes end to end: lifecycle, fencing, batches, pagination.

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{app, call};

async fn enqueue(app: &Router, body: Value) -> Value {
    let reply = call(app, Method::POST, "/api/queue/jobs", Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.data().clone()
}

async fn claim_one(app: &Router, pool: &str) -> Value {
    let body = json!({"agent_id": "a1", "pool": pool, "max_jobs": 1, "wait_seconds": 0});
    let reply = call(app, Method::POST, "/api/queue/claim", Some(body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let jobs = reply.data().as_array().unwrap().clone();
    assert_eq!(jobs.len(), 1, "{}", reply.text);
    jobs[0].clone()
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test]
async fn full_lifecycle_enqueue_claim_start_complete_get() {
    let app = app().await;
    let job = enqueue(
        &app,
        json!({"pool": "build", "kind": "shell", "payload": {"cmd": "make"}, "priority": "high"}),
    )
    .await;
    assert_eq!(
        (&job["state"], &job["priority"], &job["attempt"]),
        (&json!("QUEUED"), &json!("HIGH"), &json!(0))
    );
    assert_eq!(
        (&job["pool"], &job["payload"]),
        (&json!("build"), &json!({"cmd": "make"}))
    );
    assert!(job["id"].is_string() && is_rfc3339(&job["created_at"]) && is_rfc3339(&job["run_at"]));
    assert_eq!(job["failures"], json!([]));
    let id = job["id"].as_str().unwrap().to_owned();

    let claimed = claim_one(&app, "build").await;
    assert_eq!(
        (&claimed["id"], &claimed["state"], &claimed["attempt"]),
        (&json!(id), &json!("CLAIMED"), &json!(1))
    );
    assert!(is_rfc3339(&claimed["lease_expires_at"]));
    assert_eq!(claimed["claimed_by"], "a1");

    let started = call(
        &app,
        Method::PATCH,
        &format!("/api/queue/jobs/{id}/start"),
        Some(json!({"attempt": 1})),
    )
    .await;
    assert_eq!(started.data()["state"], "RUNNING");
    let extended = call(
        &app,
        Method::PATCH,
        &format!("/api/queue/jobs/{id}/extend"),
        Some(json!({"attempt": 1, "lease_seconds": 30})),
    )
    .await;
    assert_eq!(extended.data()["state"], "RUNNING");

    let done = json!({"attempt": 1, "succeeded": true, "exit_code": 0, "result": {"artifacts": 2}});
    let completed = call(
        &app,
        Method::PATCH,
        &format!("/api/queue/jobs/{id}/complete"),
        Some(done),
    )
    .await;
    assert_eq!(completed.status, StatusCode::OK, "{}", completed.text);
    assert_eq!(completed.data()["state"], "COMPLETED");

    let got = call(&app, Method::GET, &format!("/api/queue/jobs/{id}"), None).await;
    let got = got.data();
    assert_eq!(
        (&got["state"], &got["exit_code"], &got["result"]),
        (&json!("COMPLETED"), &json!(0), &json!({"artifacts": 2}))
    );
    assert!(is_rfc3339(&got["finished_at"]));
    // The same through /api/v1.
    let v1 = call(&app, Method::GET, &format!("/api/v1/queue/jobs/{id}"), None).await;
    assert_eq!(v1.data()["id"], json!(id));
}

#[tokio::test]
async fn a_stale_attempt_is_409_and_changes_nothing() {
    let app = app().await;
    let id = enqueue(&app, json!({"pool": "p", "kind": "k"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    claim_one(&app, "p").await;
    let before = call(&app, Method::GET, &format!("/api/queue/jobs/{id}"), None)
        .await
        .data()
        .clone();
    for (path, body) in [
        ("start", json!({"attempt": 2})),
        ("extend", json!({"attempt": 0})),
        ("complete", json!({"attempt": 7, "succeeded": true})),
    ] {
        let reply = call(
            &app,
            Method::PATCH,
            &format!("/api/queue/jobs/{id}/{path}"),
            Some(body),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{path}: {}", reply.text);
        assert_eq!(reply.error()["code"], "conflict");
    }
    let after = call(&app, Method::GET, &format!("/api/queue/jobs/{id}"), None)
        .await
        .data()
        .clone();
    assert_eq!(before, after);
    assert_eq!(after["state"], "CLAIMED");
}

#[tokio::test]
async fn failure_retries_then_cancel_priority_and_redrive_rules() {
    let app = app().await;
    let id = enqueue(&app, json!({"pool": "p", "kind": "k", "max_attempts": 2})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    claim_one(&app, "p").await;
    let failed = json!({"attempt": 1, "succeeded": false, "exit_code": 2, "error": "exit 2"});
    let reply = call(
        &app,
        Method::PATCH,
        &format!("/api/queue/jobs/{id}/complete"),
        Some(failed),
    )
    .await;
    let job = reply.data();
    assert_eq!(job["state"], "QUEUED");
    assert_eq!(job["failures"][0]["error"], "exit 2");
    assert!(is_rfc3339(&job["failures"][0]["at"]));
    // Mixed outcome fields are rejected.
    let mixed = json!({"attempt": 1, "succeeded": true, "error": "x"});
    let reply = call(
        &app,
        Method::PATCH,
        &format!("/api/queue/jobs/{id}/complete"),
        Some(mixed),
    )
    .await;
    assert_eq!(
        (reply.status, &reply.error()["field"]),
        (StatusCode::BAD_REQUEST, &json!("error"))
    );

    let reply = call(
        &app,
        Method::PATCH,
        &format!("/api/queue/jobs/{id}/priority"),
        Some(json!({"priority": "low"})),
    )
    .await;
    assert_eq!(reply.data()["priority"], "LOW");
    let reply = call(
        &app,
        Method::POST,
        &format!("/api/queue/jobs/{id}/retry"),
        None,
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::CONFLICT,
        "redrive needs a dead-lettered job: {}",
        reply.text
    );
    let reply = call(&app, Method::DELETE, &format!("/api/queue/jobs/{id}"), None).await;
    assert_eq!(reply.data()["state"], "CANCELLED");
    let reply = call(&app, Method::DELETE, &format!("/api/queue/jobs/{id}"), None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn batch_enqueue_returns_an_array_and_claims_answer_arrays() {
    let app = app().await;
    let empty = call(
        &app,
        Method::POST,
        "/api/queue/claim",
        Some(json!({"agent_id": "a", "pool": "p"})),
    )
    .await;
    assert_eq!(empty.data(), &json!([]));
    let jobs = enqueue(
        &app,
        json!({"jobs": [
            {"pool": "p", "kind": "a"}, {"pool": "p", "kind": "b"}, {"pool": "p", "kind": "c"}
        ]}),
    )
    .await;
    let kinds: Vec<_> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["a", "b", "c"]);
    // A batch of one is still an array.
    let one = enqueue(&app, json!({"jobs": [{"pool": "p", "kind": "d"}]})).await;
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    // A batch of about 1.2 MB (5 payloads of 240 KiB) fits under the body limit.
    let big: Vec<_> = (0..5)
        .map(|_| json!({"pool": "p", "kind": "big", "payload": {"x": "a".repeat(240 * 1024)}}))
        .collect();
    assert_eq!(
        enqueue(&app, json!({"jobs": big}))
            .await
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    let stats = call(&app, Method::GET, "/api/queue/stats", None).await;
    assert!(
        stats.data().as_array().is_some_and(|s| !s.is_empty()),
        "{}",
        stats.text
    );
    let reaped = call(
        &app,
        Method::POST,
        "/api/queue/maintenance/requeue-expired",
        None,
    )
    .await;
    assert_eq!(reaped.data(), &json!({"requeued": 0, "dead_lettered": 0}));
}

#[tokio::test]
async fn lists_page_with_page_token_and_filter() {
    let app = app().await;
    let specs: Vec<_> = (0..5)
        .map(|i| json!({"pool": "p", "kind": "k", "labels": {"n": i.to_string()}}))
        .collect();
    enqueue(&app, json!({"jobs": specs})).await;
    enqueue(
        &app,
        json!({"pool": "other", "kind": "k", "priority": "CRITICAL"}),
    )
    .await;

    let mut seen = Vec::new();
    let mut uri = "/api/queue/jobs?pool=p&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let reply = call(&app, Method::GET, &uri, None).await;
        let items = reply.data().as_array().unwrap().clone();
        seen.extend(items.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match reply.body["meta"].get("next_page_token") {
            Some(token) => {
                uri = format!(
                    "/api/queue/jobs?pool=p&limit=2&page_token={}",
                    token.as_str().unwrap()
                )
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (5, 5));

    let reply = call(
        &app,
        Method::GET,
        "/api/queue/jobs?priority=critical&state=Queued",
        None,
    )
    .await;
    assert_eq!(reply.data().as_array().map(Vec::len), Some(1));
    let reply = call(&app, Method::GET, "/api/queue/jobs?label=n:3", None).await;
    assert_eq!(reply.data()[0]["labels"], json!({"n": "3"}));
    let reply = call(&app, Method::GET, "/api/queue/jobs?label=n=4", None).await;
    assert_eq!(reply.data()[0]["labels"], json!({"n": "4"}));
}
