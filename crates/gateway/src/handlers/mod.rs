//! Route handlers, grouped by area. Each module exposes its routes as a utoipa-axum
//! `OpenApiRouter`, so the OpenAPI document is generated from the same code that routes.

pub(crate) mod admin;
pub(crate) mod agents;
pub(crate) mod auth;
pub(crate) mod deployments;
pub(crate) mod ingest;
pub(crate) mod live;
pub(crate) mod ops;
pub(crate) mod queue;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every route mounted under `/api` and `/api/v1` (except the OpenAPI document and docs page,
/// which are added once the document exists).
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(queue::routes())
        .merge(admin::routes())
        .merge(agents::routes())
        .merge(deployments::routes())
        .merge(ingest::routes())
        .merge(live::routes())
        .merge(ops::api_routes())
}
