//! The middleware pieces of the gateway's tower stack (assembled in [`crate::router`]): the
//! request id and envelope layer, the tracing span, the panic handler, security headers and
//! CORS.

use std::any::Any;
use std::sync::LazyLock;

use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    RETRY_AFTER, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use base64::Engine;
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchyard_types::Error;
use tracing::Span;

use crate::envelope::{self, ApiError};

/// `X-Request-ID`: taken from the request when sane, else generated; echoed on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, in the request's extensions for handlers and spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client-sent request id may be used as is: 1–128 characters of `[A-Za-z0-9._-]`,
/// so it is safe in headers, logs and JSON without escaping.
pub fn is_sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The outermost middleware: settles the request id (the client's if sane, else a fresh UUIDv7),
/// stores it in the request (header and [`RequestId`] extension) for the layers below, and on
/// the way out renders the response in the envelope ([`envelope::finish`]).
pub async fn request_id_and_envelope(mut request: Request, next: Next) -> Response {
    let sent = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok());
    let id = match sent {
        Some(id) if is_sane_request_id(id) => id.to_owned(),
        Some(_) | None => uuid::Uuid::now_v7().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    request.extensions_mut().insert(RequestId(id.clone()));
    let response = next.run(request).await;
    envelope::finish(response, &id)
}

/// The span of one request, with its id, method and path; every event of the request is
/// recorded inside it.
pub fn make_span(request: &Request) -> Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .map_or("", |r| r.0.as_str());
    tracing::info_span!(
        "http_request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        // Filled in by the auth layer once it knows the caller.
        tenant = tracing::field::Empty,
        subject = tracing::field::Empty,
    )
}

/// The response to a panicking handler: a `500` envelope; the panic message goes to the log
/// only.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "non-string panic payload".to_owned()
    };
    ApiError(Error::internal(format!("handler panicked: {detail}"))).into_response()
}

/// Declared bodies up to this size are read and discarded before a `413`, so the client (which
/// is still sending) can read the answer instead of meeting a reset connection.
pub const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// Holds request bodies to [`crate::MAX_BODY_BYTES`]: a larger declared `Content-Length` is
/// answered `413 too_large` before any handler runs (bodies up to [`DRAIN_LIMIT`] are drained
/// first, bounded by 10 s; larger ones get the answer at once with `Connection: close`), and a
/// body that turns out longer fails when read (`413` too). Streamed uploads (`POST /api/ingest`)
/// are exempt: core limits each file and the whole upload as it streams.
pub async fn limit_body(request: Request, next: Next) -> Response {
    if crate::handlers::ingest::is_streamed_upload(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(len) = declared.filter(|len| *len > crate::MAX_BODY_BYTES as u64) else {
        let limited = request.map(|body| {
            axum::body::Body::new(http_body_util::Limited::new(body, crate::MAX_BODY_BYTES))
        });
        return next.run(limited).await;
    };
    let error = ApiError(Error::too_large(format!(
        "the body is {len} bytes; at most {} are accepted",
        crate::MAX_BODY_BYTES
    )));
    if len <= DRAIN_LIMIT {
        let drain = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT as usize);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
        return error.into_response();
    }
    let mut response = error.into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

/// The Content-Security-Policy of HTML pages: only this origin, no framing, and the docs page's
/// one inline script allowed by its hash (so no `'unsafe-inline'`).
static CSP: LazyLock<String> = LazyLock::new(|| {
    let page = include_str!("docs.html");
    let script = page
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(script, _)| script);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script));
    format!(
        "default-src 'self'; script-src 'self' 'sha256-{hash}'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
});

/// Security headers: on every response `X-Content-Type-Options: nosniff` and
/// `Referrer-Policy: no-referrer`; on HTML also a strict CSP and `X-Frame-Options: DENY`; on
/// `/auth/*` (which carries tokens) `Cache-Control: no-store`.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let auth = request.uri().path().starts_with("/auth/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let html = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        if let Ok(csp) = HeaderValue::from_str(&CSP) {
            headers.insert(CONTENT_SECURITY_POLICY, csp);
        }
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if auth {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// CORS for the configured browser origins: credentials travel in the `authorization` header
/// (never cookies), so no `Allow-Credentials`.
pub fn cors(origins: Vec<HeaderValue>) -> CorsLayer {
    use axum::http::Method;
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, REQUEST_ID_HEADER])
        .expose_headers([REQUEST_ID_HEADER, RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(is_sane_request_id("abc-123_X.y"));
        assert!(is_sane_request_id(&"a".repeat(128)));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id(&"a".repeat(129)));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id("semi;colon"));
        assert!(!is_sane_request_id("ümlaut"));
    }

    #[test]
    fn panics_become_internal_errors() {
        let response = panic_response(Box::new("boom"));
        assert_eq!(
            response.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        let reply = response.extensions().get::<envelope::Reply>().unwrap();
        assert_eq!(reply.errors[0].message, "internal error");
    }
}
