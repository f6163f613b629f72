//! Who is calling. Handlers take a [`Caller`], which reads the [`Principal`] an authentication
//! layer put in the request's extensions; they never look at credentials. Until authentication
//! lands, [`insert_dev_principal`] is that layer.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
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

/// The development stand-in for authentication: every request acts as [`Principal::dev`] (the
/// default tenant, scope `admin`). Replace this layer, and only this layer, with the real
/// authentication layer; it must insert a `Principal` into the request's extensions (or
/// answer 401 itself).
pub async fn insert_dev_principal(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Principal::dev());
    next.run(request).await
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
