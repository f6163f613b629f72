//! Who is calling. Handlers take a [`Caller`], which reads the [`Principal`] the auth layer
//! (`switchyard_auth::layer`, shared with gRPC) put in the request's extensions; they never
//! look at credentials. [`HttpReject`] is how that layer's refusals look over REST.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use switchyard_auth::layer::Reject;
use switchyard_types::{Error, ErrorKind, Principal};

use crate::envelope::ApiError;

/// The authenticated caller of a request. (A newtype because the orphan rule forbids
/// implementing axum's extractor trait on `switchyard_types::Principal` here.)
///
/// Rejects with `401 unauthenticated` when no layer supplied a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                ApiError(Error::new(
                    ErrorKind::Unauthenticated,
                    "authentication required",
                ))
            })
    }
}

/// The address of the client that sent the request (the TCP peer), for log-in rate limits;
/// `unknown` when the server was not started with connect info (tests calling the router
/// directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string());
        Ok(ClientAddr(addr))
    }
}

/// Refusals of the auth layer as REST responses: the error envelope, with `Retry-After` for
/// rate limits (rendered by the envelope layer like every other error).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpReject;

impl Reject for HttpReject {
    type Body = axum::body::Body;

    fn reject(&self, error: Error) -> Response {
        ApiError(error).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_principal_is_unauthenticated() {
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        let err = Caller::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(err.0.kind, ErrorKind::Unauthenticated);
        parts.extensions.insert(Principal::dev());
        let Caller(who) = Caller::from_request_parts(&mut parts, &()).await.unwrap();
        assert_eq!(who, Principal::dev());
    }
}
