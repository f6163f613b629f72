//! The envelope of every REST response (DESIGN §3.2) and the REST half of the error table.
//!
//! Handlers and extractors return a [`Reply`] (through [`Data`] or [`ApiError`]); it travels in
//! the response's extensions up to the outermost layer, which knows the request id and calls
//! [`render`], the one function that writes response bodies. Responses made by layers that know
//! nothing of the envelope (a bare `405` from axum, a `413` from the body limit) are turned into
//! a [`Reply`] by [`Reply::from_status`] and rendered the same way.

use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode, response::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_types::{Error, ErrorKind};
use utoipa::ToSchema;

use crate::layers::REQUEST_ID_HEADER;

/// The HTTP status of each [`ErrorKind`]: the one REST mapping, with no wildcard arm, so a new
/// kind does not compile until it is given a status here.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists => StatusCode::CONFLICT,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// One entry of an error envelope's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorEntry {
    /// A stable `snake_case` code: an `ErrorKind` code, or `method_not_allowed` (and other
    /// transport-level codes derived from the HTTP status) for requests no handler saw.
    pub code: String,
    /// What went wrong, for humans (generic for internal errors).
    pub message: String,
    /// The offending field, e.g. `jobs[2].priority`, when one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The content of a response, before the request id is known. Rendered by [`render`].
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// `data`: the resource, or an array for a list. Also present on some failures (a
    /// `503` from `/api/ready` carries its checks).
    pub data: Option<serde_json::Value>,
    /// `errors`; empty means success.
    pub errors: Vec<ErrorEntry>,
    /// `meta.next_page_token`, when there is a next page.
    pub next_page_token: Option<String>,
}

impl Reply {
    /// A success carrying `data`.
    pub fn data(
        status: StatusCode,
        data: serde_json::Value,
        next_page_token: Option<String>,
    ) -> Self {
        Reply {
            status,
            data: Some(data),
            errors: Vec::new(),
            next_page_token,
        }
    }

    /// A failure carrying `errors`.
    pub fn errors(status: StatusCode, errors: Vec<ErrorEntry>) -> Self {
        Reply {
            status,
            data: None,
            errors,
            next_page_token: None,
        }
    }

    /// The failure to show for an error response no handler described (made by axum or a
    /// layer): the error kind whose status it is when there is one, else a code derived from
    /// the status (`405` is `method_not_allowed`).
    pub fn from_status(status: StatusCode) -> Self {
        let kind = ErrorKind::ALL.into_iter().find(|k| status_of(*k) == status);
        let (code, message) = match (status, kind) {
            // 409 is shared by two kinds; a bare 409 is a conflict.
            (StatusCode::CONFLICT, _) => {
                (ErrorKind::Conflict.code().to_owned(), "conflict".to_owned())
            }
            (StatusCode::NOT_FOUND, _) => ("not_found".to_owned(), "no such route".to_owned()),
            (StatusCode::PAYLOAD_TOO_LARGE, _) => (
                ErrorKind::TooLarge.code().to_owned(),
                format!("request body exceeds {} bytes", crate::MAX_BODY_BYTES),
            ),
            (StatusCode::INTERNAL_SERVER_ERROR, _) => {
                ("internal".to_owned(), "internal error".to_owned())
            }
            (_, Some(kind)) => (kind.code().to_owned(), reason(status)),
            (_, None) => (reason(status).replace([' ', '-'], "_"), reason(status)),
        };
        Reply::errors(
            status,
            vec![ErrorEntry {
                code,
                message,
                field: None,
            }],
        )
    }
}

fn reason(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
}

impl IntoResponse for Reply {
    /// An empty response carrying `self` in its extensions, for the envelope layer to render.
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// `meta` of the envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    /// The request's id, as in the `X-Request-ID` response header.
    pub request_id: String,
    /// Pass as `page_token` to get the next page; only present when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Serialize)]
struct Wire<'a> {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "<[ErrorEntry]>::is_empty")]
    errors: &'a [ErrorEntry],
    meta: Meta,
}

/// The one function that writes a response body: renders `reply` as the envelope over the
/// response head `head` (keeping headers such as `Allow` and `Retry-After`), and stamps the
/// request id in the body and the `X-Request-ID` header.
pub fn render(mut head: Parts, reply: &Reply, request_id: &str) -> Response {
    let success = reply.errors.is_empty();
    let wire = Wire {
        success,
        data: match (&reply.data, success) {
            (Some(data), _) => Some(data),
            (None, true) => Some(&serde_json::Value::Null),
            (None, false) => None,
        },
        errors: &reply.errors,
        meta: Meta {
            request_id: request_id.to_owned(),
            next_page_token: reply.next_page_token.clone(),
        },
    };
    let body = match serde_json::to_vec(&wire) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "envelope not serialisable");
            br#"{"success":false,"errors":[{"code":"internal","message":"internal error"}]}"#
                .to_vec()
        }
    };
    head.status = reply.status;
    head.headers.remove(CONTENT_LENGTH);
    head.headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        head.headers.insert(REQUEST_ID_HEADER, id);
    }
    Response::from_parts(head, axum::body::Body::from(body))
}

/// Finishes a response on its way out: renders the [`Reply`] a handler left in it, or turns a
/// bare error status into an envelope; other responses (the OpenAPI document, the docs page)
/// pass through with the `X-Request-ID` header added.
pub fn finish(response: Response, request_id: &str) -> Response {
    let (mut head, body) = response.into_parts();
    let reply = head.extensions.remove::<Reply>().or_else(|| {
        let failed = head.status.is_client_error() || head.status.is_server_error();
        failed.then(|| Reply::from_status(head.status))
    });
    match reply {
        Some(reply) => render(head, &reply, request_id),
        None => {
            if let Ok(id) = HeaderValue::from_str(request_id) {
                head.headers.insert(REQUEST_ID_HEADER, id);
            }
            Response::from_parts(head, body)
        }
    }
}

/// A successful answer: `data` is `T` serialised (an object, or an array for a list).
#[derive(Debug, Clone)]
pub struct Data<T> {
    status: StatusCode,
    data: T,
    next_page_token: Option<String>,
}

impl<T: Serialize> Data<T> {
    /// `200 OK` with `data`.
    pub fn ok(data: T) -> Self {
        Data {
            status: StatusCode::OK,
            data,
            next_page_token: None,
        }
    }

    /// `201 Created` with `data`.
    pub fn created(data: T) -> Self {
        Data {
            status: StatusCode::CREATED,
            data,
            next_page_token: None,
        }
    }

    /// `202 Accepted` with `data`: stored, to be acted on later.
    pub fn accepted(data: T) -> Self {
        Data {
            status: StatusCode::ACCEPTED,
            data,
            next_page_token: None,
        }
    }

    /// `200 OK` with one page of a list and the token of the next page, if any.
    pub fn page(data: T, next_page_token: Option<String>) -> Self {
        Data {
            status: StatusCode::OK,
            data,
            next_page_token,
        }
    }
}

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        match serde_json::to_value(&self.data) {
            Ok(value) => Reply::data(self.status, value, self.next_page_token).into_response(),
            Err(e) => {
                ApiError(Error::internal(format!("response not serialisable: {e}"))).into_response()
            }
        }
    }
}

/// A failed request: a [`switchyard_types::Error`] on its way to the envelope.
#[derive(Debug, Clone)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    /// Status from [`status_of`]; one `errors[]` entry per field violation for invalid
    /// arguments; `Retry-After` for rate limits (and unavailability, when known). Internal
    /// errors are logged here with their real message and shown with a generic one.
    fn into_response(self) -> Response {
        let ApiError(e) = self;
        let status = status_of(e.kind);
        if e.kind == ErrorKind::Internal {
            tracing::error!(error = %e.message, "internal error");
        }
        let errors = if e.violations.is_empty() {
            vec![ErrorEntry {
                code: e.kind.code().to_owned(),
                message: e.public_message().to_owned(),
                field: None,
            }]
        } else {
            e.violations
                .iter()
                .map(|v| ErrorEntry {
                    code: e.kind.code().to_owned(),
                    message: v.description.clone(),
                    field: Some(v.field.clone()),
                })
                .collect()
        };
        let retry_after = match e.retry_after {
            Some(after) => Some(after),
            None if e.kind == ErrorKind::RateLimited => Some(std::time::Duration::from_secs(1)),
            None => None,
        };
        let mut response = Reply::errors(status, errors).into_response();
        if let Some(after) = retry_after {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
