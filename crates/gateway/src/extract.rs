//! Extractors that answer bad input in the envelope instead of axum's plain-text rejections:
//! malformed JSON, wrong types, unknown enum values, missing or unknown fields and non-JSON
//! content types are `400 invalid_argument` (with `field` when serde names one, e.g.
//! `jobs[0].priority`); a body over [`crate::MAX_BODY_BYTES`] is `413 too_large`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, request::Parts};
use serde::de::DeserializeOwned;
use switchyard_types::{Error, ErrorKind, JobId};

use crate::envelope::ApiError;

/// A JSON request body of type `T`; requires `Content-Type: application/json` (or `…+json`).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(not_json());
        }
        let bytes = read_body(request, state).await?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// A JSON request body of type `T` that may be left out: an empty body (whatever its
/// `Content-Type`) is `T::default()`; anything else must be JSON, as for [`ApiJson`]. For
/// operator commands whose every field is optional (`{"execute": true}`, or nothing for a dry
/// run).
#[derive(Debug, Clone)]
pub struct ApiJsonOrDefault<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for ApiJsonOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(request.headers());
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            return Ok(ApiJsonOrDefault(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        decode_json(&bytes).map(ApiJsonOrDefault)
    }
}

fn not_json() -> ApiError {
    ApiError(Error::new(
        ErrorKind::InvalidArgument,
        "expected a JSON body with Content-Type: application/json",
    ))
}

/// The whole body; `413 too_large` past the body limit.
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::too_large(format!(
                    "request body exceeds {} bytes",
                    crate::MAX_BODY_BYTES
                )))
            } else {
                ApiError(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("could not read the request body: {}", rejection.body_text()),
                ))
            }
        })
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Parses a JSON document into `T`, reporting errors as [`decode_value`] does.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(malformed)?;
    Ok(value)
}

fn malformed(e: serde_json::Error) -> ApiError {
    ApiError(Error::new(
        ErrorKind::InvalidArgument,
        format!("malformed JSON: {e}"),
    ))
}

/// Converts an already parsed JSON value into `T`; a mismatch is `400 invalid_argument` naming
/// the offending field.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(json_error)
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => field_error(&path, &inner.to_string()),
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => malformed(inner),
    }
}

/// `400 invalid_argument` for a deserialisation error at `path` (serde_path_to_error notation,
/// `.` for the root). Missing and unknown fields are reported by serde on their parent object,
/// so their name is taken from the message.
fn field_error(path: &str, message: &str) -> ApiError {
    let message = message.rsplit_once(" at line ").map_or(message, |(m, _)| m);
    let named = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    let parent = if path == "." { "" } else { path };
    let field = match (parent, named) {
        ("", None) => None,
        ("", Some(name)) => Some(name.to_owned()),
        (parent, None) => Some(parent.to_owned()),
        (parent, Some(name)) if parent.ends_with(name) => Some(parent.to_owned()),
        (parent, Some(name)) => Some(format!("{parent}.{name}")),
    };
    match field {
        Some(field) => {
            // The domain enums' own errors already start with the field's name.
            let name = field.rsplit('.').next().unwrap_or(&field);
            let message = message
                .strip_prefix(&format!("{name}: "))
                .unwrap_or(message);
            ApiError(Error::invalid(field.clone(), message))
        }
        None => ApiError(Error::new(ErrorKind::InvalidArgument, message)),
    }
}

/// Query-string parameters of type `T` (`?state=queued&limit=10`); a parameter of the wrong
/// type or an unknown one (when `T` denies them) is `400 invalid_argument` naming it.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                field_error(&path, &e.into_inner().to_string())
            })
    }
}

/// The `{id}` segment of a job route, parsed as a [`JobId`]; anything else is
/// `400 invalid_argument` with field `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobIdParam(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError(Error::invalid("id", rejection.body_text())))?;
        raw.parse().map(JobIdParam).map_err(ApiError)
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
