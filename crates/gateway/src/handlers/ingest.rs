//! The ingest routes (DESIGN §3.2, §3.7): `POST /ingest` streams a `multipart/form-data`
//! upload (a `metadata` JSON part first, then the files) to core without buffering it, the
//! status of an upload's job, and the artifacts with their content. Paths are relative to the
//! API mount.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use switchyard_core::{Ingest, MAX_METADATA_BYTES, UploadPart};
use switchyard_types::{ArtifactId, Error, JobId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::{
    ArtifactView, ListArtifactsQuery, RetentionBody, RetentionView, UploadStatusView, UploadView,
};
use crate::envelope::{ApiError, Data};
use crate::extract::{ApiJson, ApiQuery};
use crate::openapi::{Failure, Success};
use crate::principal::Caller;

type Reply<T> = Result<Data<T>, ApiError>;

/// The ingest routes with their OpenAPI operations.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .routes(routes!(status))
        .routes(routes!(list_artifacts))
        .routes(routes!(get_artifact))
        .routes(routes!(download_artifact))
        .routes(routes!(get_retention, set_retention))
}

/// The paths (under either API mount) whose bodies are streams of any size: the generic body
/// limit does not apply to them; core limits each file and the whole upload instead.
pub(crate) fn is_streamed_upload(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::POST && matches!(path, "/api/ingest" | "/api/v1/ingest")
}

fn ingest(state: &AppState) -> Result<&Ingest, ApiError> {
    state
        .ingest
        .as_ref()
        .ok_or_else(|| ApiError(Error::unavailable("ingest is not served by this server")))
}

/// A multipart error as the client's fault (a malformed body, a cut connection) or, for the
/// metadata part, its size.
fn multipart_error(e: multer::Error) -> Error {
    if matches!(e, multer::Error::FieldSizeExceeded { .. }) {
        Error::too_large(format!(
            "the metadata part exceeds {MAX_METADATA_BYTES} bytes"
        ))
    } else {
        Error::invalid("body", format!("is not a complete multipart upload: {e}"))
    }
}

/// Uploads metadata and files (`multipart/form-data`): a first part named `metadata` holding
/// a JSON object, then one part per file (its `filename` becomes the artifact's name). The
/// files are streamed to the artifact store and hashed on the way; the upload becomes a job of
/// kind `ingest`. A bad name, bad metadata, an oversize file or an upload slower than the
/// server's time limit (413), or a cut connection, stores nothing.
#[utoipa::path(post, path = "/ingest", tag = "ingest",
    request_body(content_type = "multipart/form-data", description = "A `metadata` part (a JSON object), then the files."),
    responses((status = 201, body = Success<UploadView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn upload(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Body,
) -> Reply<UploadView> {
    let ingest = ingest(&state)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        Error::invalid(
            "content-type",
            "must be multipart/form-data with a boundary",
        )
    })?;
    let limits = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().for_field("metadata", MAX_METADATA_BYTES as u64));
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, limits);
    let first = multipart.next_field().await.map_err(multipart_error)?;
    let Some(first) = first.filter(|f| f.name() == Some("metadata")) else {
        return Err(ApiError(Error::invalid(
            "metadata",
            "is required: the first part must be named `metadata` and hold a JSON object",
        )));
    };
    let raw = first.bytes().await.map_err(multipart_error)?;
    let metadata: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::invalid("metadata", format!("is not valid JSON: {e}")))?;
    let uploaded = ingest.upload(&who, metadata, files(multipart)).await?;
    Ok(Data::created(uploaded.into()))
}

/// The files of a multipart upload after its metadata, as upload parts: each part begins a file
/// (its `filename`, else its field name), then its bytes as they arrive.
fn files(
    multipart: multer::Multipart<'static>,
) -> impl Stream<Item = switchyard_types::Result<UploadPart>> + Send + 'static {
    /// Where the reading is: between parts, or inside one.
    enum Reading {
        Between(multer::Multipart<'static>),
        Inside(multer::Multipart<'static>, Box<multer::Field<'static>>),
        Done,
    }
    futures::stream::unfold(Reading::Between(multipart), |mut reading| async move {
        loop {
            match reading {
                Reading::Done => return None,
                Reading::Between(mut multipart) => {
                    return match multipart.next_field().await {
                        Ok(None) => None,
                        Ok(Some(field)) => {
                            let name = field
                                .file_name()
                                .or_else(|| field.name())
                                .unwrap_or_default()
                                .to_owned();
                            let content_type = field.content_type().map(ToString::to_string);
                            let part = UploadPart::File { name, content_type };
                            Some((Ok(part), Reading::Inside(multipart, Box::new(field))))
                        }
                        Err(e) => Some((Err(multipart_error(e)), Reading::Done)),
                    };
                }
                Reading::Inside(multipart, mut field) => match field.chunk().await {
                    Ok(Some(bytes)) => {
                        return Some((
                            Ok(UploadPart::Chunk(bytes)),
                            Reading::Inside(multipart, field),
                        ));
                    }
                    // The part ended: multer wants it dropped before the next one is read.
                    Ok(None) => {
                        drop(field);
                        reading = Reading::Between(multipart);
                    }
                    Err(e) => return Some((Err(multipart_error(e)), Reading::Done)),
                },
            }
        }
    })
}

/// An upload's status (of any of the caller's jobs): QUEUED, PROCESSING, COMPLETED or FAILED,
/// with its progress.
#[utoipa::path(get, path = "/status/{job_id}", tag = "ingest",
    params(("job_id" = String, Path, description = "The upload's job id (UUID)")),
    responses((status = 200, body = Success<UploadStatusView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn status(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(job_id): Path<String>,
) -> Reply<UploadStatusView> {
    let job: JobId = job_id.parse().map_err(ApiError)?;
    Ok(Data::ok(ingest(&state)?.status(&who, job).await?.into()))
}

/// The caller's artifacts, newest first, optionally of one upload.
#[utoipa::path(get, path = "/ingest/artifacts", tag = "ingest", params(ListArtifactsQuery),
    responses((status = 200, body = Success<Vec<ArtifactView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_artifacts(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiQuery(query): ApiQuery<ListArtifactsQuery>,
) -> Reply<Vec<ArtifactView>> {
    let page = ingest(&state)?
        .artifacts(&who, query.into_request()?)
        .await?;
    Ok(Data::page(
        page.items.into_iter().map(Into::into).collect(),
        page.next_page_token,
    ))
}

/// One artifact's record.
#[utoipa::path(get, path = "/ingest/artifacts/{id}", tag = "ingest",
    params(("id" = String, Path, description = "Artifact id (UUID)")),
    responses((status = 200, body = Success<ArtifactView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn get_artifact(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<ArtifactView> {
    let id: ArtifactId = id.parse().map_err(ApiError)?;
    Ok(Data::ok(ingest(&state)?.artifact(&who, id).await?.into()))
}

/// An artifact's content, streamed as stored (not in the envelope): its media type, length,
/// `Content-Disposition: attachment` with its name, and `X-Checksum-Sha256`. 409 once expired.
#[utoipa::path(get, path = "/ingest/artifacts/{id}/content", tag = "ingest",
    params(("id" = String, Path, description = "Artifact id (UUID)")),
    responses((status = 200, description = "The content", content_type = "application/octet-stream"), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn download_artifact(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ArtifactId = id.parse().map_err(ApiError)?;
    let (artifact, content) = ingest(&state)?.download(&who, id).await?;
    let mut response = Body::from_stream(content).into_response();
    let headers = response.headers_mut();
    let text = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("invalid"));
    headers.insert(header::CONTENT_TYPE, text(&artifact.content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(artifact.size));
    headers.insert(
        header::CONTENT_DISPOSITION,
        text(&format!(
            "attachment; filename*=UTF-8''{}",
            percent_encode(&artifact.name)
        )),
    );
    headers.insert("x-checksum-sha256", text(&artifact.sha256));
    Ok(response)
}

/// `name` percent-encoded for a `filename*` parameter (RFC 8187): everything but unreserved
/// characters.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// How long the caller's tenant's artifacts are kept: its policy, or the default.
#[utoipa::path(get, path = "/ingest/retention", tag = "ingest",
    responses((status = 200, body = Success<RetentionView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn get_retention(State(state): State<AppState>, Caller(who): Caller) -> Reply<RetentionView> {
    let retention = ingest(&state)?.retention(&who).await?;
    Ok(Data::ok(RetentionView::new(retention, None)))
}

/// Sets (or with `null` clears) the caller's tenant's retention policy. It applies to stored
/// artifacts too: each expires its period after its upload, so a shorter policy expires older
/// ones at the next sweep.
#[utoipa::path(put, path = "/ingest/retention", tag = "ingest", request_body = RetentionBody,
    responses((status = 200, body = Success<RetentionView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn set_retention(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<RetentionBody>,
) -> Reply<RetentionView> {
    let period = body.retention_seconds.map(std::time::Duration::from_secs);
    let (retention, redated) = ingest(&state)?.set_retention(&who, period).await?;
    Ok(Data::ok(RetentionView::new(retention, Some(redated))))
}
