//! `switchyard.v1.AuthService` over [`switchyard_auth::Identity`]: sessions (public; the
//! credential is in the message), API keys and administration (behind the auth layer, which
//! checks the `admin` scope and supplies the [`Principal`]).

use std::time::Duration;

use switchyard_auth::layer::Peer;
use switchyard_auth::{Identity, Secret, Session, UserSpec};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::auth_service_server::AuthService;
use switchyard_types::{Error, ScopeSet, TenantId};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::to_status;
use crate::queue::take;

/// The gRPC face of identity.
#[derive(Clone)]
pub struct AuthGrpc {
    identity: Identity,
}

impl AuthGrpc {
    /// Serves `identity`.
    pub fn new(identity: Identity) -> Self {
        AuthGrpc { identity }
    }
}

fn session(s: Session) -> Option<pb::Session> {
    Some(pb::Session {
        access_token: s.access_token.expose().to_owned(),
        refresh_token: s.refresh_token.expose().to_owned(),
        token_type: "Bearer".to_owned(),
        expires_in: u32::try_from(s.expires_in.as_secs()).unwrap_or(u32::MAX),
    })
}

fn scopes(names: &[String]) -> Result<ScopeSet, Status> {
    ScopeSet::parse("scopes", names.iter().map(String::as_str)).map_err(to_status)
}

/// The caller's IP address, the key of the log-in and refresh limits.
fn client_addr<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.addr)
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
}

fn invalid(field: &str, description: &str) -> Status {
    to_status(Error::invalid(field, description))
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let client = client_addr(&request);
        let req = request.into_inner();
        let s = self
            .identity
            .login(&req.email, &Secret::new(req.password), &client)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LoginResponse {
            session: session(s),
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let client = client_addr(&request);
        let req = request.into_inner();
        let s = self
            .identity
            .refresh(&Secret::new(req.refresh_token), &client)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RefreshResponse {
            session: session(s),
        }))
    }

    async fn validate(
        &self,
        request: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        let req = request.into_inner();
        let who = self
            .identity
            .authenticate(&req.token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ValidateResponse {
            subject: who.subject,
            tenant: who.tenant.to_string(),
            scopes: who.scopes.names(),
            kind: who.kind.as_str().to_owned(),
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let req = request.into_inner();
        self.identity
            .logout(&Secret::new(req.refresh_token))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let (who, req) = take(request)?;
        let ttl = req.ttl_seconds.filter(|s| *s > 0).map(Duration::from_secs);
        let created = self
            .identity
            .create_api_key(&who, &req.name, scopes(&req.scopes)?, ttl)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(created.key.into()),
            key: created.secret.expose().to_owned(),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let (who, _) = take(request)?;
        let keys = self.identity.list_api_keys(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: keys.into_iter().map(Into::into).collect(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let (who, req) = take(request)?;
        let id = Uuid::parse_str(&req.id).map_err(|_| invalid("id", "is not a key id"))?;
        let key = self
            .identity
            .revoke_api_key(&who, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(key.into()),
        }))
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let (who, req) = take(request)?;
        let id = TenantId::parse(&req.id)
            .map_err(|_| invalid("id", "must be 1-64 characters of [a-z0-9_-]"))?;
        let tenant = self
            .identity
            .create_tenant(&who, &id, &req.name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateTenantResponse {
            tenant: Some(tenant.into()),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let (who, _) = take(request)?;
        let tenants = self.identity.list_tenants(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(Into::into).collect(),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let (who, req) = take(request)?;
        let tenant = req
            .tenant
            .filter(|t| !t.is_empty())
            .map(|t| {
                TenantId::parse(&t)
                    .map_err(|_| invalid("tenant", "must be 1-64 characters of [a-z0-9_-]"))
            })
            .transpose()?;
        let user = self
            .identity
            .create_user(
                &who,
                UserSpec {
                    tenant,
                    email: req.email,
                    password: Secret::new(req.password),
                    role: req.role,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user.into()),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let (who, _) = take(request)?;
        let users = self.identity.list_users(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(Into::into).collect(),
        }))
    }

    async fn put_role(
        &self,
        request: Request<pb::PutRoleRequest>,
    ) -> Result<Response<pb::PutRoleResponse>, Status> {
        let (who, req) = take(request)?;
        let role = self
            .identity
            .put_role(&who, &req.name, scopes(&req.scopes)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::PutRoleResponse {
            role: Some(role.into()),
        }))
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let (who, _) = take(request)?;
        let roles = self.identity.list_roles(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::ListRolesResponse {
            roles: roles.into_iter().map(Into::into).collect(),
        }))
    }
}
