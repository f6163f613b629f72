//! Every error path answers in the envelope and changes nothing (promise 9).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::common::{app, call, call_raw, send};

async fn job_count(app: &axum::Router) -> usize {
    call(app, Method::GET, "/api/queue/jobs", None)
        .await
        .data()
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn malformed_json_wrong_types_and_unknown_enums_are_400_and_change_nothing() {
    let app = app().await;
    let cases = [
        (r#"{"pool":"build","kind":"shell""#, None),
        (r#"{"pool":5,"kind":"shell"}"#, Some("pool")),
        (
            r#"{"pool":"build","kind":"shell","priority":"URGENT"}"#,
            Some("priority"),
        ),
        (r#"{"kind":"shell"}"#, Some("pool")),
        (
            r#"{"pool":"build","kind":"shell","max_attempts":-3}"#,
            Some("max_attempts"),
        ),
        (
            r#"{"jobs":[{"pool":"b","kind":"k"},{"pool":"b","kind":"k","priority":"URGENT"}]}"#,
            Some("jobs[1].priority"),
        ),
    ];
    for (body, field) in cases {
        let reply = call_raw(
            &app,
            Method::POST,
            "/api/queue/jobs",
            "application/json",
            body,
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        let error = reply.error();
        assert_eq!(error["code"], "invalid_argument", "{body}");
        assert_eq!(error.get("field").and_then(|f| f.as_str()), field, "{body}");
    }
    assert_eq!(job_count(&app).await, 0);
}

#[tokio::test]
async fn validation_errors_list_every_field() {
    let app = app().await;
    let reply = call(
        &app,
        Method::POST,
        "/api/queue/jobs",
        Some(json!({"pool": "", "kind": "has space"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    reply.error();
    let fields: Vec<_> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["pool", "kind"]);
}

#[tokio::test]
async fn non_json_content_type_is_400() {
    let app = app().await;
    let reply = call_raw(
        &app,
        Method::POST,
        "/api/queue/jobs",
        "text/plain",
        r#"{"pool":"b","kind":"k"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error()["code"], "invalid_argument");
}

#[tokio::test]
async fn a_2mb_body_is_413_in_the_envelope() {
    let app = app().await;
    let big = format!(
        r#"{{"pool":"b","kind":"k","payload":{{"x":"{}"}}}}"#,
        "a".repeat(2 * 1024 * 1024)
    );
    // With a Content-Length header: rejected before the body is read.
    let request = Request::post("/api/queue/jobs")
        .header("content-type", "application/json")
        .header("content-length", big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    assert_eq!(reply.error()["code"], "too_large");
    // Without one (streamed): rejected while reading.
    let reply = call_raw(
        &app,
        Method::POST,
        "/api/queue/jobs",
        "application/json",
        big,
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    assert_eq!(reply.error()["code"], "too_large");
    assert_eq!(job_count(&app).await, 0);
}

#[tokio::test]
async fn a_payload_over_the_job_limit_is_413() {
    let app = app().await;
    let payload = json!({"x": "a".repeat(300 * 1024)});
    let reply = call(
        &app,
        Method::POST,
        "/api/queue/jobs",
        Some(json!({"pool": "b", "kind": "k", "payload": payload})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.error()["code"], "too_large");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = app().await;
    for uri in [
        "/nope",
        "/api/nope",
        "/api/v1/queue/nope",
        "/api/queue/jobs/x/y/z",
    ] {
        let reply = call(&app, Method::GET, uri, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.error()["code"], "not_found", "{uri}");
    }
    let reply = call(&app, Method::PUT, "/api/queue/jobs", Some(json!({}))).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.error()["code"], "method_not_allowed");
    assert!(reply.headers.contains_key("allow"));
    let reply = call(&app, Method::DELETE, "/health", None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    reply.error();
}

#[tokio::test]
async fn bad_numbers_in_queries_and_bodies_are_400() {
    let app = app().await;
    for (uri, field) in [
        ("/api/queue/jobs?limit=-1", "limit"),
        ("/api/queue/jobs?limit=99999", "limit"),
        ("/api/queue/jobs?limit=0", "limit"),
        ("/api/queue/jobs?state=DONE", "state"),
        ("/api/queue/jobs?page_token=garbage", "page_token"),
        ("/api/queue/jobs?label=nolabel", "label"),
    ] {
        let reply = call(&app, Method::GET, uri, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(reply.error()["field"], field, "{uri}");
    }
    for (body, field) in [
        (
            json!({"agent_id": "a", "pool": "b", "max_jobs": -1}),
            "max_jobs",
        ),
        (
            json!({"agent_id": "a", "pool": "b", "max_jobs": 1000}),
            "max_jobs",
        ),
        (
            json!({"agent_id": "a", "pool": "b", "wait_seconds": 1e12}),
            "wait_seconds",
        ),
        (
            json!({"agent_id": "a", "pool": "b", "lease_seconds": 1}),
            "lease_seconds",
        ),
    ] {
        let reply = call(&app, Method::POST, "/api/queue/claim", Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.error()["field"], field, "{body}");
    }
}

#[tokio::test]
async fn bad_and_unknown_job_ids() {
    let app = app().await;
    let reply = call(&app, Method::GET, "/api/queue/jobs/not-a-uuid", None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error()["field"], "id");
    let reply = call(
        &app,
        Method::PATCH,
        "/api/queue/jobs/123/start",
        Some(json!({"attempt": 1})),
    )
    .await;
    assert_eq!(
        (reply.status, &reply.error()["field"]),
        (StatusCode::BAD_REQUEST, &json!("id"))
    );
    let missing = "0190f5d2-3c4b-7a1e-9d2f-0123456789ab";
    let reply = call(
        &app,
        Method::GET,
        &format!("/api/queue/jobs/{missing}"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error()["code"], "not_found");
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
    let app = app().await;
    let sent = Request::get("/api/queue/jobs/bad")
        .header("x-request-id", "ci-run.42_a-b")
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, sent).await;
    assert_eq!(reply.headers["x-request-id"], "ci-run.42_a-b");
    assert_eq!(reply.body["meta"]["request_id"], "ci-run.42_a-b");
    let generated = call(&app, Method::GET, "/health", None).await;
    let id = generated.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(generated.body["meta"]["request_id"], id);
    for insane in ["has space", "semi;colon", &"a".repeat(129)] {
        let request = Request::get("/health")
            .header("x-request-id", insane)
            .body(Body::empty())
            .unwrap();
        let reply = send(&app, request).await;
        let id = reply.headers["x-request-id"].to_str().unwrap();
        assert_ne!(id, insane);
        assert!(uuid::Uuid::parse_str(id).is_ok());
    }
}
