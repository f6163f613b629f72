//! Operational routes: liveness (`/health`) and Prometheus metrics (`/metrics`), at the root;
//! readiness and version (under the API mount); and the answer for unknown routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use switchyard_types::{Error, ErrorKind};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dto::{ReadyView, StatusView};
use crate::envelope::{ApiError, Data, ErrorEntry, Reply};
use crate::openapi::{Failure, Success};
use crate::{AppState, BuildInfo};

/// `/api/ready` and `/api/version`.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ready))
        .routes(routes!(version))
}

/// `/health` and `/metrics`, mounted at the root.
pub(crate) fn root_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
}

/// Prometheus metrics in the text exposition format (not the envelope), names prefixed
/// `switchyard_`.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        switchyard_telemetry::render_metrics(),
    )
        .into_response()
}

/// Liveness: the process answers HTTP. Checks no dependency, so a database outage does not get
/// every replica restarted.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Success<StatusView>)))]
pub(crate) async fn health() -> Data<StatusView> {
    Data::ok(StatusView {
        status: "ok".to_owned(),
    })
}

/// Readiness: `200` when the database answers and its migrations are applied (and Redis
/// answers, when configured), else `503`; the checks are in `data` either way.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, body = Success<ReadyView>),
        (status = 503, description = "Not ready: `data` holds the checks, `errors` names the failing ones", body = Failure)))]
async fn ready(State(state): State<AppState>) -> Response {
    let readiness = state.queue.readiness().await;
    let ready = readiness.is_ready();
    let view = ReadyView::from(readiness);
    if ready {
        return Data::ok(view).into_response();
    }
    let failing: Vec<&str> = view
        .checks
        .iter()
        .filter(|(_, c)| !c.ok)
        .map(|(n, _)| n.as_str())
        .collect();
    let error = ErrorEntry {
        code: ErrorKind::Unavailable.code().to_owned(),
        message: format!("not ready: {}", failing.join(", ")),
        field: None,
    };
    match serde_json::to_value(&view) {
        Ok(data) => Reply {
            data: Some(data),
            ..Reply::errors(StatusCode::SERVICE_UNAVAILABLE, vec![error])
        }
        .into_response(),
        Err(e) => {
            ApiError(Error::internal(format!("readiness not serialisable: {e}"))).into_response()
        }
    }
}

/// The build this process runs.
#[utoipa::path(get, path = "/version", tag = "ops", responses((status = 200, body = Success<BuildInfo>)))]
async fn version(State(state): State<AppState>) -> Data<BuildInfo> {
    Data::ok(state.build.as_ref().clone())
}

/// The answer for a path no route matches: `404 not_found` in the envelope.
pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError(Error::not_found(format!("route {method} {}", uri.path())))
}
