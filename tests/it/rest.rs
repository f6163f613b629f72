//! The REST gateway over the real binary.

use serde_json::{Value, json};

use crate::support::{Db, Server, send};

async fn lifecycle(db: Db) {
    let s = Server::start(db, &[]).await;
    let c = &s.client;
    let (status, body, _) = send(c.post(s.url("/api/queue/jobs")).json(&json!({
        "pool": "build", "kind": "shell", "payload": {"cmd": "make"}, "priority": "high"
    })))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    let job = &body["data"];
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            job["state"].as_str(),
            job["priority"].as_str(),
            job["attempt"].as_u64()
        ),
        (Some("QUEUED"), Some("HIGH"), Some(0))
    );

    let (status, body, _) = send(
        c.post(s.url("/api/queue/claim"))
            .json(&json!({"agent_id": "a1", "pool": "build", "max_jobs": 1})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let claimed = body["data"].as_array().unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (
            claimed[0]["id"].as_str(),
            claimed[0]["state"].as_str(),
            claimed[0]["attempt"].as_u64()
        ),
        (Some(id.as_str()), Some("CLAIMED"), Some(1))
    );
    assert!(claimed[0]["lease_expires_at"].is_string());

    let (status, body, _) = send(
        c.patch(s.url(&format!("/api/queue/jobs/{id}/start")))
            .json(&json!({"attempt": 1})),
    )
    .await;
    assert_eq!(
        (status, body["data"]["state"].as_str()),
        (200, Some("RUNNING")),
        "{body}"
    );
    let (status, body, _) = send(
        c.patch(s.url(&format!("/api/queue/jobs/{id}/complete")))
            .json(&json!({
                "attempt": 1, "succeeded": true, "exit_code": 0, "result": {"artifact": "app.tar"}
            })),
    )
    .await;
    assert_eq!(
        (status, body["data"]["state"].as_str()),
        (200, Some("COMPLETED")),
        "{body}"
    );

    // A stale attempt is a conflict and changes nothing.
    let (status, body, _) = send(
        c.patch(s.url(&format!("/api/queue/jobs/{id}/complete")))
            .json(&json!({"attempt": 0, "succeeded": false, "error": "late"})),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    let (status, body, _) = send(c.get(s.url(&format!("/api/v1/queue/jobs/{id}")))).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["state"], "COMPLETED");
    assert_eq!(body["data"]["result"], json!({"artifact": "app.tar"}));
    assert_eq!(body["data"]["failures"], json!([]));

    let (status, body, _) = send(c.get(s.url("/api/queue/stats"))).await;
    assert_eq!(status, 200);
    let stats = &body["data"][0];
    assert_eq!(
        (
            stats["pool"].as_str(),
            stats["completed"].as_u64(),
            stats["queued"].as_u64()
        ),
        (Some("build"), Some(1), Some(0)),
        "{body}"
    );
    assert_eq!(s.terminate().code(), Some(0), "graceful exit on SIGTERM");
}

#[tokio::test]
async fn rest_lifecycle_on_postgres() {
    lifecycle(Db::Postgres).await;
}

#[tokio::test]
async fn rest_lifecycle_on_sqlite() {
    lifecycle(Db::Sqlite).await;
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let (_, body, headers) = send(
        s.client
            .get(s.url("/api/version"))
            .header("x-request-id", "trace-abc.123"),
    )
    .await;
    assert_eq!(headers["x-request-id"], "trace-abc.123");
    assert_eq!(body["meta"]["request_id"], "trace-abc.123");
    assert!(
        body["data"]["version"].is_string()
            && body["data"]["git_sha"].is_string()
            && body["data"]["build_time"].is_string()
    );
    let (_, body, headers) = send(
        s.client
            .get(s.url("/api/queue/jobs/not-a-uuid"))
            .header("x-request-id", "bad id with spaces"),
    )
    .await;
    let generated = headers["x-request-id"].to_str().unwrap();
    assert_ne!(generated, "bad id with spaces");
    assert_eq!(body["meta"]["request_id"], generated);
}

#[tokio::test]
async fn ready_reports_each_dependency() {
    let s = Server::start(
        Db::Postgres,
        &[
            ("REDIS_URL", &switchyard_testkit::redis_url()),
            (
                "SWITCHYARD_REDIS_PREFIX",
                &switchyard_testkit::unique("it:"),
            ),
        ],
    )
    .await;
    // Redis connects in the background; readiness turns 200 once it answers.
    s.wait_ready().await;
    let (status, body, _) = send(s.client.get(s.url("/api/ready"))).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["status"], "ready");
    for check in ["db", "redis", "migrations"] {
        assert_eq!(data["checks"][check]["ok"], true, "{check}: {body}");
        assert!(data["checks"][check]["latency_ms"].is_u64());
        assert!(data["checks"][check]["detail"].is_string());
    }
}

#[tokio::test]
async fn ready_is_503_when_redis_is_unreachable() {
    let s = Server::start(
        Db::Postgres,
        &[("REDIS_URL", "redis://:hunter2@127.0.0.1:1")],
    )
    .await;
    let (status, body, _) = send(s.client.get(s.url("/api/ready"))).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["data"]["status"], "not_ready");
    assert_eq!(body["data"]["checks"]["redis"]["ok"], false);
    assert_eq!(body["data"]["checks"]["db"]["ok"], true);
    assert!(
        !body.to_string().contains("hunter2"),
        "password leaked: {body}"
    );
    // The queue still works without Redis: claimers poll.
    let (status, _, _) = send(
        s.client
            .post(s.url("/api/queue/jobs"))
            .json(&json!({"pool": "p", "kind": "k"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, body, _) = send(
        s.client
            .post(s.url("/api/queue/claim"))
            .json(&json!({"agent_id": "a", "pool": "p", "wait_seconds": 2})),
    )
    .await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
}

/// Every bad request gets the envelope with the right status, and the database is unchanged.
#[tokio::test]
async fn bad_input_gets_the_envelope_and_changes_nothing() {
    let s = Server::start(Db::Postgres, &[]).await;
    let c = &s.client;
    let jobs = s.url("/api/queue/jobs");
    let big = "x".repeat(2 * 1024 * 1024);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        (
            "malformed JSON",
            c.post(&jobs)
                .header("content-type", "application/json")
                .body("{\"pool\":"),
            400,
            None,
        ),
        (
            "wrong type",
            c.post(&jobs).json(&json!({"pool": 7, "kind": "k"})),
            400,
            None,
        ),
        (
            "unknown enum",
            c.post(&jobs)
                .json(&json!({"pool": "p", "kind": "k", "priority": "URGENT"})),
            400,
            Some("priority"),
        ),
        (
            "empty pool",
            c.post(&jobs).json(&json!({"pool": "", "kind": "k"})),
            400,
            Some("pool"),
        ),
        (
            "negative attempts",
            c.post(&jobs)
                .json(&json!({"pool": "p", "kind": "k", "max_attempts": -1})),
            400,
            None,
        ),
        (
            "huge attempts",
            c.post(&jobs)
                .json(&json!({"pool": "p", "kind": "k", "max_attempts": 100000})),
            400,
            Some("max_attempts"),
        ),
        (
            "2 MB payload",
            c.post(&jobs)
                .json(&json!({"pool": "p", "kind": "k", "payload": {"blob": big}})),
            413,
            None,
        ),
        (
            "concurrency limit without a key",
            c.post(&jobs)
                .json(&json!({"pool": "p", "kind": "k", "concurrency_limit": 2})),
            400,
            Some("concurrency_limit"),
        ),
        (
            "empty batch",
            c.post(&jobs).json(&json!({"jobs": []})),
            400,
            Some("jobs"),
        ),
        (
            "negative limit",
            c.get(format!("{jobs}?limit=-5")),
            400,
            None,
        ),
        (
            "huge limit",
            c.get(format!("{jobs}?limit=99999")),
            400,
            Some("limit"),
        ),
        (
            "unknown state filter",
            c.get(format!("{jobs}?state=DONE")),
            400,
            None,
        ),
        (
            "bad page token",
            c.get(format!("{jobs}?page_token=forged")),
            400,
            Some("page_token"),
        ),
        (
            "bad job id",
            c.get(format!("{jobs}/not-a-uuid")),
            400,
            Some("id"),
        ),
        (
            "unknown job",
            c.get(format!("{jobs}/01890a5d-ac96-774b-bcce-b302099a8057")),
            404,
            None,
        ),
        (
            "claim without agent",
            c.post(s.url("/api/queue/claim"))
                .json(&json!({"pool": "p"})),
            400,
            None,
        ),
        (
            "claim max_jobs 0",
            c.post(s.url("/api/queue/claim"))
                .json(&json!({"agent_id": "a", "pool": "p", "max_jobs": 0})),
            400,
            Some("max_jobs"),
        ),
        ("unknown route", c.get(s.url("/api/nope")), 404, None),
        ("wrong method", c.put(s.url("/api/queue/stats")), 405, None),
    ];
    for (name, req, want, field) in cases {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
        assert_eq!(status, want, "{name}: {body}");
        assert_eq!(body["success"], false, "{name}: {body}");
        let error = &body["errors"][0];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{name}: {body}"
        );
        assert!(body["meta"]["request_id"].is_string(), "{name}: {body}");
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{name}: {body}");
        }
    }
    let (_, body, _) = send(c.get(&jobs)).await;
    assert_eq!(body["data"], json!([]), "bad input changed the database");
}

/// The tenant running limit and concurrency keys, end to end over REST.
#[tokio::test]
async fn running_limits_over_rest() {
    let s = Server::start(Db::Postgres, &[]).await;
    let c = &s.client;
    let limits = s.url("/api/queue/limits");
    let (status, body, _) = send(c.get(&limits)).await;
    assert_eq!(
        (status, &body["data"]),
        (200, &json!({"max_running": null}))
    );
    let (status, body, _) = send(c.put(&limits).json(&json!({"max_running": 0}))).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (400, Some("max_running")),
        "{body}"
    );
    let (status, body, _) = send(c.put(&limits).json(&json!({"max_running": 2}))).await;
    assert_eq!((status, &body["data"]), (200, &json!({"max_running": 2})));

    let keyed = json!({"pool": "p", "kind": "k", "concurrency_key": "db"});
    let batch =
        json!({"jobs": [keyed, keyed, {"pool": "p", "kind": "k"}, {"pool": "p", "kind": "k"}]});
    let (status, _, _) = send(c.post(s.url("/api/queue/jobs")).json(&batch)).await;
    assert_eq!(status, 201);
    let claim = json!({"agent_id": "a", "pool": "p", "max_jobs": 10});
    let (_, body, _) = send(c.post(s.url("/api/queue/claim")).json(&claim)).await;
    let got = body["data"].as_array().unwrap();
    assert_eq!(got.len(), 2, "tenant cap of 2: {body}");
    assert_eq!(
        got.iter().filter(|j| j["concurrency_key"] == "db").count(),
        1,
        "one per key: {body}"
    );

    let (_, _, _) = send(c.put(&limits).json(&json!({"max_running": null}))).await;
    let (_, body, _) = send(c.post(s.url("/api/queue/claim")).json(&claim)).await;
    assert_eq!(
        body["data"].as_array().unwrap().len(),
        1,
        "cap removed; the second keyed job still waits: {body}"
    );
}
