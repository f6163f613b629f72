//! Administration at `/api/admin/*`: tenants, users and roles. Every route needs `admin`
//! (checked by the auth layer, from the policy table) and acts in the caller's tenant; only
//! platform administrators (the `default` tenant's) create tenants or reach another tenant.

use axum::extract::{Path, State};
use switchyard_auth::{Secret, UserSpec};
use switchyard_types::TenantId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::identity::{
    RoleBody, RoleView, TenantBody, TenantView, UserBody, UserView, scopes,
};
use crate::envelope::{ApiError, Data};
use crate::extract::ApiJson;
use crate::handlers::auth::identity;
use crate::openapi::{Failure, Success};
use crate::principal::Caller;

type Reply<T> = Result<Data<T>, ApiError>;

/// The admin routes with their OpenAPI operations.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(create_user, list_users))
        .routes(routes!(list_roles))
        .routes(routes!(put_role))
}

/// Creates a tenant (platform administrators only).
#[utoipa::path(post, path = "/admin/tenants", tag = "admin", request_body = TenantBody,
    responses((status = 201, body = Success<TenantView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn create_tenant(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<TenantBody>,
) -> Reply<TenantView> {
    let id = TenantId::parse(&body.id).map_err(|mut e| {
        e.violations[0].field = "id".to_owned();
        e
    })?;
    let tenant = identity(&state)?
        .create_tenant(&who, &id, &body.name)
        .await?;
    Ok(Data::created(tenant.into()))
}

/// Every tenant for a platform administrator; the caller's own otherwise.
#[utoipa::path(get, path = "/admin/tenants", tag = "admin",
    responses((status = 200, body = Success<Vec<TenantView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_tenants(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Reply<Vec<TenantView>> {
    let tenants = identity(&state)?.list_tenants(&who).await?;
    Ok(Data::ok(tenants.into_iter().map(Into::into).collect()))
}

/// Creates a user.
#[utoipa::path(post, path = "/admin/users", tag = "admin", request_body = UserBody,
    responses((status = 201, body = Success<UserView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn create_user(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<UserBody>,
) -> Reply<UserView> {
    let tenant = body.tenant.as_deref().map(TenantId::parse).transpose()?;
    let user = identity(&state)?
        .create_user(
            &who,
            UserSpec {
                tenant,
                email: body.email,
                password: Secret::new(body.password),
                role: body.role,
            },
        )
        .await?;
    Ok(Data::created(user.into()))
}

/// The caller's tenant's users, by email.
#[utoipa::path(get, path = "/admin/users", tag = "admin",
    responses((status = 200, body = Success<Vec<UserView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_users(State(state): State<AppState>, Caller(who): Caller) -> Reply<Vec<UserView>> {
    let users = identity(&state)?.list_users(&who).await?;
    Ok(Data::ok(users.into_iter().map(Into::into).collect()))
}

/// The caller's tenant's roles: built-in, then custom.
#[utoipa::path(get, path = "/admin/roles", tag = "admin",
    responses((status = 200, body = Success<Vec<RoleView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_roles(State(state): State<AppState>, Caller(who): Caller) -> Reply<Vec<RoleView>> {
    let roles = identity(&state)?.list_roles(&who).await?;
    Ok(Data::ok(roles.into_iter().map(Into::into).collect()))
}

/// Defines or redefines a custom role; its users get the new scopes at their next log-in or
/// refresh.
#[utoipa::path(put, path = "/admin/roles/{name}", tag = "admin", request_body = RoleBody,
    params(("name" = String, Path, description = "The role's name")),
    responses((status = 200, body = Success<RoleView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn put_role(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Reply<RoleView> {
    let role = identity(&state)?
        .put_role(&who, &name, scopes(&body.scopes)?)
        .await?;
    Ok(Data::ok(role.into()))
}
