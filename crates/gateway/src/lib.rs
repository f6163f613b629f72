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
//! - [`principal`] holds the [`Caller`] extractor and [`HttpReject`], which renders the
//!   refusals of the shared auth layer (`switchyard_auth::layer`) in the envelope.
//! - Deployments (environments, staging, promotion, rollback, guard evaluations, signals and
//!   the dashboard summary) live at `/api/dashboard/*`.
//! - Identity lives at `/auth/*` (sessions, API keys) and `/api/admin/*` (tenants, users,
//!   roles); every route's required scope is in `switchyard_auth::policy`.
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
use axum::http::HeaderValue;
use axum::routing::get;
use serde::Serialize;
use switchyard_auth::layer::{AuthLayer, Edge, Gate};
use switchyard_auth::{Enrollments, Identity};
use switchyard_core::{Agents, Deployments, Ingest, Queue};
use switchyard_types::Principal;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;

pub use envelope::{ApiError, Data, ErrorEntry, Reply};
pub use extract::{ApiJson, ApiJsonOrDefault, ApiQuery, JobIdParam};
pub use layers::{REQUEST_ID_HEADER, RequestId};
pub use principal::{Caller, ClientAddr, HttpReject};

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
    /// Log-in, tokens, API keys and administration; `None` answers those routes `503`.
    pub identity: Option<Identity>,
    /// The auth layer's decisions (shared with the gRPC edge).
    pub gate: Arc<Gate>,
    /// Origins allowed to call the API from a browser (CORS); empty: same origin only.
    pub cors_origins: Vec<HeaderValue>,
    /// The agent registry; `None` answers the agent routes `503`.
    pub agents: Option<Agents>,
    /// Registration tokens and enrollment; `None` answers those routes `503`.
    pub enrollments: Option<Enrollments>,
    /// Environments and deployments; `None` answers the `/dashboard` deployment routes `503`.
    pub deployments: Option<Deployments>,
    /// Uploads and artifacts; `None` answers the ingest routes `503`.
    pub ingest: Option<Ingest>,
}

impl AppState {
    /// State over `queue`, reporting `build` at `/api/version`, with no identity service:
    /// every request acts as [`Principal::dev`] and credentials are refused (embedding, tests).
    pub fn new(queue: Queue, build: BuildInfo) -> Self {
        AppState {
            queue,
            build: Arc::new(build),
            identity: None,
            gate: Arc::new(Gate::anonymous_only(Principal::dev())),
            cors_origins: Vec::new(),
            agents: None,
            enrollments: None,
            deployments: None,
            ingest: None,
        }
    }

    /// Authenticates through `gate` and serves the identity routes from `identity`.
    pub fn with_identity(mut self, identity: Identity, gate: Arc<Gate>) -> Self {
        self.identity = Some(identity);
        self.gate = gate;
        self
    }

    /// Serves the agent routes from `agents`, enrolling through `enrollments`.
    pub fn with_agents(mut self, agents: Agents, enrollments: Enrollments) -> Self {
        self.agents = Some(agents);
        self.enrollments = Some(enrollments);
        self
    }

    /// Serves the environment, deployment, signal and summary routes from `deployments`.
    pub fn with_deployments(mut self, deployments: Deployments) -> Self {
        self.deployments = Some(deployments);
        self
    }

    /// Serves the upload, status and artifact routes from `ingest`.
    pub fn with_ingest(mut self, ingest: Ingest) -> Self {
        self.ingest = Some(ingest);
        self
    }

    /// Allows browsers on `origins` to call the API.
    pub fn with_cors(mut self, origins: Vec<HeaderValue>) -> Self {
        self.cors_origins = origins;
        self
    }
}

/// The complete HTTP router of the gateway: `/health`, and the API at `/api` and `/api/v1`
/// (queue routes, `ready`, `version`, `openapi.json`, `docs`). Unknown routes answer `404`, wrong
/// methods `405`, both in the envelope. Serve it with `axum::serve(listener, router(state))`.
pub fn router(state: AppState) -> Router {
    let (api, root, document) = openapi::split();
    let document = Arc::new(document);
    let api = api
        .route(
            "/openapi.json",
            get(openapi::serve_document).with_state(document),
        )
        .route("/docs", get(openapi::serve_docs_page))
        .with_state(state.clone());
    let routes = root
        .with_state(state.clone())
        .nest("/api", api.clone())
        .nest("/api/v1", api)
        .fallback(handlers::ops::no_route);
    with_layers(routes, state.gate.clone(), state.cors_origins.clone())
}

/// The gateway's tower stack around `routes`, outermost layer first: `gate` authenticates,
/// `cors_origins` (when any) may call from browsers.
fn with_layers(routes: Router, gate: Arc<Gate>, cors_origins: Vec<HeaderValue>) -> Router {
    let routes = routes.layer(
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
            // Security headers (CSP and framing on HTML, nosniff everywhere, no-store on
            // /auth), outside auth so refusals carry them too.
            .layer(axum::middleware::from_fn(layers::security_headers))
            // Authentication and authorisation, from the policy table shared with gRPC: puts
            // the Principal in the request or answers 401/403/429 itself. Inside the span so
            // refusals are logged with the request id, and the span learns the tenant.
            .layer(AuthLayer::new(gate, Edge::Http, HttpReject))
            // Bodies over MAX_BODY_BYTES are 413 (a declared one before routing, after
            // draining it so the client can read the answer; a longer one when read), except
            // streamed uploads, which core limits as they stream.
            .layer(axum::middleware::from_fn(layers::limit_body)),
    );
    if cors_origins.is_empty() {
        return routes;
    }
    // Outermost: a browser's preflight is answered before anything else runs (it carries no
    // credentials, so auth must not see it).
    routes.layer(layers::cors(cors_origins))
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod tests;
