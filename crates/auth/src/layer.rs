//! The one authentication layer, a tower [`Layer`] used by both edges: it looks the request up
//! in the [policy table](crate::policy), turns the bearer credential (access JWT or API key)
//! into a [`Principal`], checks the scope and the tenant's request quota, and hands the
//! principal to the handlers in the request extensions. The edges differ only in how a refusal
//! is written ([`Reject`]): an envelope for REST, a `Status` for gRPC.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response};
use switchyard_types::{
    Error, ErrorKind, Principal, PrincipalKind, Result, Scope, ScopeSet, SpiffeId,
};
use tower::{Layer, Service};

use crate::limits::TenantQuota;
use crate::policy::{self, Access};
use crate::service::Identity;

/// Writes a refusal in an edge's own format.
pub trait Reject: Clone + Send + Sync + 'static {
    /// The response body type of the edge.
    type Body;
    /// The response for `error` (`Unauthenticated`, `PermissionDenied` or `RateLimited`).
    fn reject(&self, error: Error) -> Response<Self::Body>;
}

/// Which table column a request is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// REST: by method and path.
    Http,
    /// gRPC: by `/package.Service/Method`.
    Grpc,
}

/// What the transport knows of a connection: set by the gRPC edge in every request's
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub addr: Option<SocketAddr>,
    /// The agent its verified TLS client certificate names, if it presented one.
    pub agent: Option<SpiffeId>,
}

/// Decides who a request is and whether it may proceed.
pub struct Gate {
    identity: Option<Identity>,
    anonymous: Option<Principal>,
    quota: Option<TenantQuota>,
    agent_tokens: bool,
}

impl Gate {
    /// A gate authenticating with `identity`, charging `quota` when set.
    pub fn new(identity: Identity, quota: Option<TenantQuota>) -> Self {
        Gate {
            identity: Some(identity),
            anonymous: None,
            quota,
            agent_tokens: true,
        }
    }

    /// Whether an agent may connect with a bearer credential (`jobs:write`) instead of a client
    /// certificate (default: yes). Servers that verify client certificates turn it off.
    pub fn with_agent_tokens(mut self, allowed: bool) -> Self {
        self.agent_tokens = allowed;
        self
    }

    /// `switchyard dev`: requests without credentials act as `anonymous` (credentials that
    /// are sent are still checked). Never used outside `dev`.
    pub fn with_anonymous(mut self, anonymous: Principal) -> Self {
        self.anonymous = Some(anonymous);
        self
    }

    /// A gate with no identity store at all: every request acts as `anonymous` and any
    /// credential is refused. For tests of the edges and for embedding.
    pub fn anonymous_only(anonymous: Principal) -> Self {
        Gate {
            identity: None,
            anonymous: Some(anonymous),
            quota: None,
            agent_tokens: true,
        }
    }

    /// The principal for a request needing `access` with these headers, over a connection
    /// from `peer`: `None` for public routes; `Unauthenticated`, `PermissionDenied` or
    /// `RateLimited` when refused. An agent's client certificate stands for the agent (it
    /// authenticates nothing but `Connect`).
    pub async fn admit_peer(
        &self,
        access: Access,
        headers: &HeaderMap,
        peer: Option<&Peer>,
    ) -> Result<Option<Principal>> {
        if access != Access::Agent {
            return self.admit_bearer(access, headers).await;
        }
        if let Some(agent) = peer.and_then(|p| p.agent.as_ref()) {
            let principal = Principal {
                tenant: agent.tenant.clone(),
                subject: format!("agent:{}", agent.agent),
                scopes: ScopeSet::of(&[Scope::JobsWrite]),
                kind: PrincipalKind::Agent,
            };
            if let Some(quota) = &self.quota {
                quota.admit(&principal.tenant)?;
            }
            return Ok(Some(principal));
        }
        if !self.agent_tokens {
            return Err(unauthenticated(
                "agents authenticate with a client certificate: enroll with `switchyard agent enroll`",
            ));
        }
        self.admit_bearer(Access::Scope(Scope::JobsWrite), headers)
            .await
    }

    /// The principal for a request needing `access` with these headers, over a connection
    /// that presented no certificate; see [`Gate::admit_peer`].
    pub async fn admit(&self, access: Access, headers: &HeaderMap) -> Result<Option<Principal>> {
        self.admit_peer(access, headers, None).await
    }

    /// [`Gate::admit`] for anything but [`Access::Agent`]: by bearer credential (or as the
    /// anonymous principal).
    async fn admit_bearer(&self, access: Access, headers: &HeaderMap) -> Result<Option<Principal>> {
        if access == Access::Public {
            return Ok(None);
        }
        let principal = match (bearer(headers)?, &self.identity, &self.anonymous) {
            (Some(token), Some(identity), _) => identity.authenticate(token).await?,
            (Some(_), None, _) => return Err(unauthenticated("credentials are not accepted here")),
            (None, _, Some(anonymous)) => anonymous.clone(),
            (None, _, None) => {
                return Err(unauthenticated(
                    "authentication required: send `authorization: Bearer <token or API key>`",
                ));
            }
        };
        if let Access::Scope(scope) = access {
            principal.require(scope)?;
        }
        if let Some(quota) = &self.quota {
            quota.admit(&principal.tenant)?;
        }
        Ok(Some(principal))
    }
}

fn unauthenticated(message: &str) -> Error {
    Error::new(ErrorKind::Unauthenticated, message)
}

/// The bearer credential of `authorization: Bearer <credential>`, if the header is present.
/// Any other scheme, or a header that is not visible ASCII, is `Unauthenticated`. Without the
/// header, a WebSocket handshake may carry it as the subprotocol `bearer.<credential>` (browsers
/// cannot set headers on a WebSocket).
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(subprotocol_bearer(headers));
    };
    let malformed = || unauthenticated("the authorization header must be `Bearer <credential>`");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, credential) = value.split_once(' ').ok_or_else(malformed)?;
    let credential = credential.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
        return Err(malformed());
    }
    Ok(Some(credential))
}

/// The credential offered as the WebSocket subprotocol `bearer.<credential>`, if any.
fn subprotocol_bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(WS_BEARER_PREFIX))
        .filter(|credential| !credential.is_empty())
}

/// The prefix of the WebSocket subprotocol that carries a bearer credential.
pub const WS_BEARER_PREFIX: &str = "bearer.";

/// The tower layer; see the module docs.
#[derive(Clone)]
pub struct AuthLayer<R> {
    gate: Arc<Gate>,
    edge: Edge,
    reject: R,
}

impl<R> AuthLayer<R> {
    /// Authenticates requests of `edge` through `gate`, refusing them with `reject`.
    pub fn new(gate: Arc<Gate>, edge: Edge, reject: R) -> Self {
        AuthLayer { gate, edge, reject }
    }
}

impl<S, R: Clone> Layer<S> for AuthLayer<R> {
    type Service = Authenticate<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            gate: self.gate.clone(),
            edge: self.edge,
            reject: self.reject.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around an edge.
#[derive(Clone)]
pub struct Authenticate<S, R> {
    inner: S,
    gate: Arc<Gate>,
    edge: Edge,
    reject: R,
}

impl<S, R, B> Service<Request<B>> for Authenticate<S, R>
where
    S: Service<Request<B>, Response = Response<R::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Reject,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was made ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let access = match self.edge {
            Edge::Http => policy::for_http(request.method().as_str(), request.uri().path()),
            Edge::Grpc => policy::for_rpc(request.uri().path()),
        };
        let (gate, reject) = (self.gate.clone(), self.reject.clone());
        Box::pin(async move {
            let peer = request.extensions().get::<Peer>().cloned();
            match gate
                .admit_peer(access, request.headers(), peer.as_ref())
                .await
            {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        if principal.kind == PrincipalKind::Agent
                            && let Some(agent) = peer.and_then(|p| p.agent)
                        {
                            request.extensions_mut().insert(agent);
                        }
                        let span = tracing::Span::current();
                        span.record("tenant", principal.tenant.as_str());
                        span.record("subject", principal.subject.as_str());
                        request.extensions_mut().insert(principal);
                    }
                    inner.call(request).await
                }
                Err(error) => {
                    tracing::debug!(code = error.kind.code(), reason = %error.message, "request refused");
                    Ok(reject.reject(error))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bearer_takes_only_the_bearer_scheme() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers).unwrap(), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&headers).unwrap(), Some("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer   abc "));
        assert_eq!(bearer(&headers).unwrap(), Some("abc"));
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "abc"] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(bad));
            let err = bearer(&headers).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unauthenticated, "{bad}");
            assert!(!err.message.contains("dXNl"), "never echo credentials");
        }
    }

    #[tokio::test]
    async fn an_anonymous_gate_admits_without_credentials_and_refuses_with() {
        use switchyard_types::{Scope, ScopeSet};
        let viewer = Principal {
            scopes: ScopeSet::of(&[Scope::JobsRead]),
            ..Principal::dev()
        };
        let gate = Gate::anonymous_only(viewer.clone());
        let none = HeaderMap::new();
        assert_eq!(gate.admit(Access::Public, &none).await.unwrap(), None);
        assert_eq!(
            gate.admit(Access::Scope(Scope::JobsRead), &none)
                .await
                .unwrap(),
            Some(viewer)
        );
        let denied = gate
            .admit(Access::Scope(Scope::JobsWrite), &none)
            .await
            .unwrap_err();
        assert_eq!(denied.kind, ErrorKind::PermissionDenied);
        let mut with = HeaderMap::new();
        with.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x.y.z"));
        let refused = gate.admit(Access::Authenticated, &with).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Unauthenticated);
    }
}
