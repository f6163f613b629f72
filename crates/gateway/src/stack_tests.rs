//! The tower stack of [`super::with_layers`] around routes that misbehave on purpose.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use tower::ServiceExt;

use switchyard_auth::layer::Gate;
use switchyard_types::Principal;

use crate::principal::Caller;

/// The stack as `switchyard dev` without identity has it: everyone is the dev principal.
fn with_layers(routes: Router) -> Router {
    let gate = Arc::new(Gate::anonymous_only(Principal::dev()));
    super::with_layers(routes, gate, Vec::new())
}

/// Log output captured for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn boom() -> &'static str {
    panic!("handler exploded")
}

async fn whoami(Caller(who): Caller) -> String {
    who.subject
}

#[tokio::test]
async fn a_panic_is_a_500_envelope_logged_in_the_request_span() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = with_layers(Router::new().route("/boom", get(boom)));
    let request = Request::get("/boom")
        .header("x-request-id", "trace-me-1")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "trace-me-1");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "success": false,
            "errors": [{"code": "internal", "message": "internal error"}],
            "meta": {"request_id": "trace-me-1"},
        })
    );
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("handler exploded"))
        .expect("the panic is logged");
    assert!(line.contains("request_id=trace-me-1"), "{line}");
    assert!(
        line.contains("method=GET") && line.contains("path=/boom"),
        "{line}"
    );
}

#[tokio::test]
async fn handlers_receive_the_dev_principal() {
    let app = with_layers(Router::new().route("/me", get(whoami)));
    let response = app
        .oneshot(Request::get("/me").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"dev");
}
