//! Builds the app over a fresh in-memory store and sends requests to it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use switchyard_bus::local::LocalBus;
use switchyard_core::{Deployments, DeploymentsConfig, Queue, QueueConfig};
use switchyard_gateway::{AppState, BuildInfo, router};
use switchyard_store::sqlite::SqliteStore;
use tower::ServiceExt;

/// The build info the test app reports.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: "1.2.3".to_owned(),
        git_sha: "0123abc".to_owned(),
        build_time: "2026-01-01T00:00:00Z".to_owned(),
    }
}

/// The gateway over a fresh in-memory SQLite store and a local bus.
pub async fn app() -> Router {
    let store = SqliteStore::connect("sqlite::memory:", true)
        .await
        .expect("sqlite store");
    let queue = Queue::new(
        Arc::new(store),
        Arc::new(LocalBus::new()),
        QueueConfig::default(),
    );
    router(AppState::new(queue, build_info()))
}

/// The gateway with the deployment routes, over a fresh in-memory SQLite store and a local
/// bus, and the deployment service it serves (to run its driver by hand).
pub async fn deployments_app() -> (Router, Deployments) {
    let stores = switchyard_store::open("sqlite::memory:", true)
        .await
        .expect("sqlite stores");
    let queue = Queue::new(
        stores.queue.clone(),
        Arc::new(LocalBus::new()),
        QueueConfig::default(),
    );
    let deployments = Deployments::new(
        stores.deployments.clone(),
        stores.notifications.clone(),
        queue.clone(),
        DeploymentsConfig::default(),
    );
    let state = AppState::new(queue, build_info()).with_deployments(deployments.clone());
    (router(state), deployments)
}

/// A response, its body parsed as JSON (`Value::Null` when it is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// `data` of a success envelope, after checking its shape and the request id.
    pub fn data(&self) -> &Value {
        assert_eq!(self.body["success"], true, "{}", self.text);
        assert!(self.body.get("errors").is_none(), "{}", self.text);
        self.check_request_id();
        &self.body["data"]
    }

    /// The first `errors[]` entry of a failure envelope, after checking its shape.
    pub fn error(&self) -> &Value {
        assert_eq!(self.body["success"], false, "{}", self.text);
        assert!(
            self.body["errors"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "{}",
            self.text
        );
        self.check_request_id();
        &self.body["errors"][0]
    }

    fn check_request_id(&self) {
        let header = self.headers["x-request-id"].to_str().unwrap();
        assert_eq!(self.body["meta"]["request_id"], header, "{}", self.text);
        assert_eq!(self.headers["content-type"], "application/json");
    }
}

/// Sends a request as built.
pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (head, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status: head.status,
        headers: head.headers,
        text,
        body,
    }
}

/// Sends `method uri` with an optional JSON body.
pub async fn call(app: &Router, method: Method, uri: &str, json: Option<Value>) -> Reply {
    let builder = Request::builder().method(method).uri(uri);
    let request = match json {
        Some(json) => builder
            .header("content-type", "application/json")
            .body(Body::from(json.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    };
    send(app, request).await
}

/// Sends `method uri` with a raw body and content type.
pub async fn call_raw(
    app: &Router,
    method: Method,
    uri: &str,
    content_type: &str,
    body: impl Into<Body>,
) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap();
    send(app, request).await
}
