//! The OpenAPI document and the docs page.
//!
//! The document is generated from the handlers' `#[utoipa::path]` attributes and the DTOs'
//! `ToSchema` derives, collected by utoipa-axum's `OpenApiRouter` from the very routers that
//! serve the requests, so a route cannot exist without being documented. It is served as is
//! (not in the envelope) at `/api/openapi.json`.
//!
//! `/api/docs` is a small self-contained HTML page (`docs.html`, no CDN, no external asset) that
//! fetches `openapi.json` and renders the operations and schemas with plain JavaScript, so the
//! docs work offline. (utoipa-swagger-ui would need its `vendored` feature, a zip extraction at
//! build time and a few megabytes of assets; this page needs none of that.)

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use switchyard_types::Error;
use utoipa::openapi::OpenApi as Document;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::envelope::{ApiError, ErrorEntry, Meta};
use crate::{AppState, handlers};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard REST API",
        description = "The REST gateway of Switchyard. Every response is an envelope: \
            `{success, data, meta}` or `{success: false, errors, meta}`. The API is mounted at \
            `/api` and, identically, at `/api/v1`; paths below use `/api`."
    ),
    tags(
        (name = "queue", description = "Jobs: enqueue, claim, lifecycle, listing, stats."),
        (name = "auth", description = "Sessions (log-in, refresh, validate, log-out) and API keys."),
        (name = "admin", description = "Tenants, users and roles."),
        (name = "agents", description = "Agents: the registry, enrollment with registration tokens, deregistration."),
        (name = "deployments", description = "Deployments: environments, staging, promotion and rollback (dry run unless told to execute), guard evaluations, events, signals and the dashboard summary."),
        (name = "ops", description = "Liveness, readiness, version.")
    )
)]
struct ApiDoc;

/// The success envelope, as documented. (Responses are written by [`crate::envelope::render`];
/// this type only describes them.)
#[derive(Debug, ToSchema)]
pub struct Success<T> {
    /// Always `true`.
    pub success: bool,
    /// The resource, or an array for a list.
    pub data: T,
    /// Request id and, for lists, the next page's token.
    pub meta: Meta,
}

/// The failure envelope, as documented.
#[derive(Debug, ToSchema)]
pub struct Failure {
    /// Always `false`.
    pub success: bool,
    /// What went wrong; one entry per invalid field for `invalid_argument`.
    pub errors: Vec<ErrorEntry>,
    /// The request id.
    pub meta: Meta,
}

/// The API router (relative paths, for mounting at `/api` and `/api/v1`), the routes mounted
/// at the root (`/auth/*`; `/health` is added by the caller) and the complete document, with
/// API paths as served under `/api`.
pub(crate) fn split() -> (Router<AppState>, Router<AppState>, Document) {
    let (api, api_document) = handlers::api_routes().split_for_parts();
    let (root, root_document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(handlers::ops::root_routes())
        .merge(handlers::auth::routes())
        .split_for_parts();
    (api, root, root_document.nest("/api", api_document))
}

/// The OpenAPI document of the gateway, as served at `/api/openapi.json` (for tooling, e.g. to
/// write it to a file).
pub fn document() -> Document {
    split().2
}

/// `GET /api/openapi.json`.
pub(crate) async fn serve_document(State(document): State<Arc<Document>>) -> Response {
    match serde_json::to_vec(document.as_ref()) {
        Ok(json) => ([(CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => ApiError(Error::internal(format!(
            "OpenAPI document not serialisable: {e}"
        )))
        .into_response(),
    }
}

/// `GET /api/docs`: the offline docs page.
pub(crate) async fn serve_docs_page() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
