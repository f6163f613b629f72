//! The REST gateway of Switchyard: an axum router that speaks the `{success, data, errors, meta}`
//! envelope of DESIGN §3.2 on every response, errors included.
//!
//! - [`router`] builds everything: the API (mounted at both `/api` and `/api/v1`), the root
//!   liveness probe `/health`, `/api/openapi.json` (generated from the handlers by utoipa) and
//!   `/api/docs` (a self-contained HTML page, no CDN, that renders the document with plain JS).
//! - [`envelope`] renders every response with one function, and maps [`ErrorKind`] to HTTP
//!   statuses with one exhaustive match.
//! - [`extract`] holds the JSON, query and path extractors that turn bad input into
//!   `400 invalid_argument` (or `413 too_large`) envelopes instead of axum's plain-text rejections.
//! - [`principal`] holds the [`Caller`] extractor and the one layer that, until authentication
//!   lands, gives every request the development principal.
//!
//! Handlers are three steps: take the [`Caller`], convert the request into `switchyard-core`
//! terms, call [`Queue`], convert the answer back. They hold no domain logic.
//!
//! [`ErrorKind`]: switchyard_types::ErrorKind

pub mod dto;
pub mod envelope;
pub mod extract;
mod handlers;
pub mod layers;
pub mod openapi;
pub mod principal;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde::Serialize;
use switchyard_core::Queue;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;

pub use envelope::{ApiError, Data, ErrorEntry, Reply};
pub use extract::{ApiJson, ApiQuery, JobIdParam};
pub use layers::{REQUEST_ID_HEADER, RequestId};
pub use principal::Caller;

/// The largest request body accepted, in bytes: 1.5 MiB. One job's payload may be 256 KiB
/// (`MAX_PAYLOAD_BYTES`), so a single job always fits with room to spare, and a batch may carry
/// about 1.5 MiB in total; larger batches must be split by the client. Anything longer is
/// rejected with `413 too_large` before it is buffered.
pub const MAX_BODY_BYTES: usize = 1536 * 1024;

/// What `/api/version` reports. The binary fills it from `env!` values stamped by its `build.rs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BuildInfo {
    /// The package version, e.g. `0.1.0`.
    pub version: String,
    /// The git commit the binary was built from (`unknown` outside a checkout).
    pub git_sha: String,
    /// When the binary was built, RFC 3339.
    pub build_time: String,
}

/// Everything the handlers need; cheap to clone (one per request).
#[derive(Clone)]
pub struct AppState {
    /// The job queue service.
    pub queue: Queue,
    /// What `/api/version` reports.
    pub build: Arc<BuildInfo>,
}

impl AppState {
    /// State over `queue`, reporting `build` at `/api/version`.
    pub fn new(queue: Queue, build: BuildInfo) -> Self {
        AppState {
            queue,
            build: Arc::new(build),
        }
    }
}

/// The complete HTTP router of the gateway: `/health`, and the API at `/api` and `/api/v1`
/// (queue routes, `ready`, `version`, `openapi.json`, `docs`). Unknown routes answer `404`, wrong
/// methods `405`, both in the envelope. Serve it with `axum::serve(listener, router(state))`.
pub fn router(state: AppState) -> Router {
    let (api, document) = openapi::split();
    let document = Arc::new(document);
    let api = api
        .route(
            "/openapi.json",
            get(openapi::serve_document).with_state(document),
        )
        .route("/docs", get(openapi::serve_docs_page))
        .with_state(state);
    let routes = Router::new()
        .route("/health", get(handlers::ops::health))
        .nest("/api", api.clone())
        .nest("/api/v1", api)
        .fallback(handlers::ops::no_route);
    with_layers(routes)
}

/// The gateway's tower stack around `routes`, outermost layer first.
fn with_layers(routes: Router) -> Router {
    routes.layer(
        ServiceBuilder::new()
            // Outermost, so every response, including those made by the layers below (413,
            // 500 after a panic, axum's bare 405), carries the request id and is rendered in
            // the envelope by the one rendering function.
            .layer(axum::middleware::from_fn(layers::request_id_and_envelope))
            // One span per request carrying request_id, method and path, so every log line of
            // the request (handlers, core, store) can be traced back to it.
            .layer(TraceLayer::new_for_http().make_span_with(layers::make_span))
            // A panicking handler becomes a 500 envelope (logged inside the span above) instead
            // of a dropped connection; promise 9: no input crashes a process.
            .layer(CatchPanicLayer::custom(layers::panic_response))
            // Stand-in for authentication: gives every request Principal::dev(). The auth issue
            // replaces this one line with its layer; handlers do not change.
            .layer(axum::middleware::from_fn(principal::insert_dev_principal))
            // A declared oversize body is answered 413 before routing, after draining it so
            // the client can read the answer (a reset connection would hide it).
            .layer(axum::middleware::from_fn(layers::reject_oversize_body))
            // Rejects bodies over MAX_BODY_BYTES before buffering them (413 too_large).
            // Innermost because it changes the request body type, which only the routes (not
            // the middleware above) accept.
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES)),
    )
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod tests;
