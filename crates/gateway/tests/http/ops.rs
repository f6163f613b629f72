//! Health, readiness, version, the OpenAPI document and the docs page.

use axum::http::{Method, StatusCode};
use serde_json::json;

use std::sync::Arc;

use switchyard_bus::local::LocalBus;
use switchyard_core::{Queue, QueueConfig};
use switchyard_gateway::{AppState, router};
use switchyard_store::sqlite::SqliteStore;

use crate::common::{app, build_info, call};

#[tokio::test]
async fn health_is_ok_at_the_root() {
    let app = app().await;
    let reply = call(&app, Method::GET, "/health", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.data(), &json!({"status": "ok"}));
}

#[tokio::test]
async fn ready_reports_its_checks() {
    let app = app().await;
    let reply = call(&app, Method::GET, "/api/ready", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let data = reply.data();
    assert_eq!(data["status"], "ready");
    for check in ["db", "migrations"] {
        assert_eq!(data["checks"][check]["ok"], true, "{check}");
        assert!(data["checks"][check]["detail"].is_string(), "{check}");
        assert!(data["checks"][check]["latency_ms"].is_u64(), "{check}");
    }
    assert!(data["checks"].get("redis").is_none());
}

#[tokio::test]
async fn not_ready_is_503_with_the_checks_in_data() {
    // Migrations not applied: the database answers, the migrations check fails.
    let store = SqliteStore::connect("sqlite::memory:", false)
        .await
        .unwrap();
    let queue = Queue::new(
        Arc::new(store),
        Arc::new(LocalBus::new()),
        QueueConfig::default(),
    );
    let app = router(AppState::new(queue, build_info()));
    let reply = call(&app, Method::GET, "/api/ready", None).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text
    );
    let error = reply.error();
    assert_eq!(error["code"], "unavailable");
    assert_eq!(error["message"], "not ready: migrations");
    let data = &reply.body["data"];
    assert_eq!(data["status"], "not_ready");
    assert_eq!(
        (
            &data["checks"]["db"]["ok"],
            &data["checks"]["migrations"]["ok"]
        ),
        (&json!(true), &json!(false))
    );
    // Liveness does not care.
    assert_eq!(
        call(&app, Method::GET, "/health", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn version_reports_the_build() {
    let app = app().await;
    for uri in ["/api/version", "/api/v1/version"] {
        let reply = call(&app, Method::GET, uri, None).await;
        let b = build_info();
        assert_eq!(
            reply.data(),
            &json!({"version": b.version, "git_sha": b.git_sha, "build_time": b.build_time})
        );
    }
}

#[tokio::test]
async fn openapi_document_lists_the_routes() {
    let app = app().await;
    let reply = call(&app, Method::GET, "/api/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    let paths = reply.body["paths"].as_object().expect("paths");
    for path in [
        "/health",
        "/api/ready",
        "/api/version",
        "/api/queue/jobs",
        "/api/queue/jobs/{id}",
        "/api/queue/jobs/{id}/start",
        "/api/queue/jobs/{id}/extend",
        "/api/queue/jobs/{id}/complete",
        "/api/queue/jobs/{id}/priority",
        "/api/queue/jobs/{id}/retry",
        "/api/queue/claim",
        "/api/queue/stats",
        "/api/queue/maintenance/requeue-expired",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        paths["/api/queue/jobs"].get("post").is_some()
            && paths["/api/queue/jobs"].get("get").is_some()
    );
    let schemas = reply.body["components"]["schemas"]
        .as_object()
        .expect("schemas");
    assert!(
        schemas.contains_key("JobView") && schemas.contains_key("Priority"),
        "{:?}",
        schemas.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        schemas["Priority"]["enum"],
        json!(["LOW", "NORMAL", "HIGH", "CRITICAL"])
    );
}

#[tokio::test]
async fn docs_page_is_self_contained() {
    let app = app().await;
    let reply = call(&app, Method::GET, "/api/docs", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(reply.text.contains("fetch(\"openapi.json\")"));
    assert!(
        !reply.text.contains("http://") && !reply.text.contains("https://"),
        "no external assets"
    );
    assert!(reply.headers.contains_key("x-request-id"));
}
