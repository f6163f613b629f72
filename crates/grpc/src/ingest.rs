//! `switchyard.v1.IngestService` over [`switchyard_core::Ingest`]: take the
//! [`switchyard_types::Principal`], convert, call core, convert back. No domain logic here.

use std::time::Duration;

use futures::StreamExt as _;
use switchyard_core::{Ingest, ListArtifacts, Retention, UploadPart};
use switchyard_proto::convert::struct_to_json;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::ingest_service_server::IngestService;
use switchyard_types::{ArtifactId, Error, JobId};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::error::to_status;
use crate::queue::take;

/// The gRPC face of ingest; mount it behind the authentication layer (see
/// [`crate::GrpcApi::with_ingest`]).
#[derive(Clone)]
pub struct IngestGrpc {
    ingest: Ingest,
}

impl IngestGrpc {
    /// Serves `ingest`.
    pub fn new(ingest: Ingest) -> Self {
        IngestGrpc { ingest }
    }
}

/// The server side of a `WatchStatus` stream.
pub type WatchStatusStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::WatchStatusResponse, Status>> + Send>,
>;

/// The server side of a `DownloadArtifact` (`M` = `DownloadArtifactResponse`) or
/// `FetchArtifact` (`FetchArtifactResponse`) stream.
pub type DownloadStream<M = pb::DownloadArtifactResponse> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<M, Status>> + Send>>;

/// A message of either download stream: the artifact first, then its content's chunks.
trait DownloadMessage: Send + 'static {
    /// The first message.
    fn artifact(artifact: pb::Artifact) -> Self;
    /// A message with the next bytes.
    fn chunk(bytes: Vec<u8>) -> Self;
}

impl DownloadMessage for pb::DownloadArtifactResponse {
    fn artifact(artifact: pb::Artifact) -> Self {
        use pb::download_artifact_response::Part;
        Self {
            part: Some(Part::Artifact(artifact)),
        }
    }

    fn chunk(bytes: Vec<u8>) -> Self {
        use pb::download_artifact_response::Part;
        Self {
            part: Some(Part::Chunk(bytes)),
        }
    }
}

impl DownloadMessage for pb::FetchArtifactResponse {
    fn artifact(artifact: pb::Artifact) -> Self {
        use pb::fetch_artifact_response::Part;
        Self {
            part: Some(Part::Artifact(artifact)),
        }
    }

    fn chunk(bytes: Vec<u8>) -> Self {
        use pb::fetch_artifact_response::Part;
        Self {
            part: Some(Part::Chunk(bytes)),
        }
    }
}

fn job_id(value: &str) -> Result<JobId, Status> {
    value
        .parse()
        .map_err(|_| to_status(Error::invalid("job_id", "is not a valid job id (UUID)")))
}

/// Why an upload stream broke off, as the domain says it: a message over the size limit is
/// too large; anything else (a reset, a cut connection) is a bad upload.
fn broken_off(status: &Status) -> Error {
    if matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange) {
        Error::too_large(status.message())
    } else {
        Error::invalid(
            "upload",
            format!("the stream broke off: {}", status.message()),
        )
    }
}

/// The answer of a download: the artifact first, then its content's chunks.
fn download_stream<M: DownloadMessage, B: AsRef<[u8]>>(
    artifact: switchyard_types::Artifact,
    content: impl futures::Stream<Item = switchyard_types::Result<B>> + Send + 'static,
) -> DownloadStream<M> {
    let first = futures::stream::once(async move { Ok(M::artifact(artifact.into())) });
    let chunks = content.map(|chunk| {
        chunk
            .map(|bytes| M::chunk(bytes.as_ref().to_vec()))
            .map_err(to_status)
    });
    Box::pin(first.chain(chunks))
}

#[tonic::async_trait]
impl IngestService for IngestGrpc {
    type WatchStatusStream = WatchStatusStream;
    type DownloadArtifactStream = DownloadStream;
    type FetchArtifactStream = DownloadStream<pb::FetchArtifactResponse>;

    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        let (who, mut stream) = take(request)?;
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty upload: send `start` first"))?;
        let Some(pb::upload_request::Part::Start(start)) = first.part else {
            return Err(to_status(Error::invalid(
                "start",
                "the first message must be `start`",
            )));
        };
        let metadata = match start.metadata {
            Some(s) => serde_json::Value::Object(struct_to_json(s, "metadata").map_err(to_status)?),
            None => serde_json::json!({}),
        };
        let parts = stream.map(|message| {
            let message = message.map_err(|s| broken_off(&s))?;
            match message.part {
                Some(pb::upload_request::Part::File(file)) => Ok(UploadPart::File {
                    name: file.name,
                    content_type: Some(file.content_type),
                }),
                Some(pb::upload_request::Part::Chunk(bytes)) => Ok(UploadPart::Chunk(bytes.into())),
                Some(pb::upload_request::Part::Start(_)) => Err(Error::invalid(
                    "start",
                    "only the first message may be `start`",
                )),
                None => Err(Error::invalid("part", "is required")),
            }
        });
        let uploaded = self
            .ingest
            .upload(&who, metadata, parts)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UploadResponse {
            job_id: uploaded.job.to_string(),
            artifacts: uploaded.artifacts.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let (who, req) = take(request)?;
        let status = self
            .ingest
            .status(&who, job_id(&req.job_id)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetStatusResponse {
            status: Some(status.into()),
        }))
    }

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let (who, req) = take(request)?;
        let statuses = self
            .ingest
            .watch(&who, job_id(&req.job_id)?)
            .await
            .map_err(to_status)?;
        let out = statuses.map(|status| {
            status
                .map(|s| pb::WatchStatusResponse {
                    status: Some(s.into()),
                })
                .map_err(to_status)
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn list_artifacts(
        &self,
        request: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        let (who, req) = take(request)?;
        let job = if req.job_id.is_empty() {
            None
        } else {
            Some(job_id(&req.job_id)?)
        };
        let page = self
            .ingest
            .artifacts(
                &who,
                ListArtifacts {
                    job,
                    limit: (req.limit != 0).then_some(req.limit),
                    page_token: Some(req.page_token),
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListArtifactsResponse {
            artifacts: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn download_artifact(
        &self,
        request: Request<pb::DownloadArtifactRequest>,
    ) -> Result<Response<Self::DownloadArtifactStream>, Status> {
        let (who, req) = take(request)?;
        let id: ArtifactId = req.id.parse().map_err(to_status)?;
        let (artifact, content) = self.ingest.download(&who, id).await.map_err(to_status)?;
        Ok(Response::new(download_stream(artifact, content)))
    }

    async fn fetch_artifact(
        &self,
        request: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        let (who, req) = take(request)?;
        let id: ArtifactId = req.artifact_id.parse().map_err(to_status)?;
        let (artifact, content) = self
            .ingest
            .fetch(&who, &req.grant, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(download_stream(artifact, content)))
    }

    async fn get_retention(
        &self,
        request: Request<pb::GetRetentionRequest>,
    ) -> Result<Response<pb::GetRetentionResponse>, Status> {
        let (who, _) = take(request)?;
        let retention = self.ingest.retention(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::GetRetentionResponse {
            retention: Some(retention_to_pb(retention)),
        }))
    }

    async fn set_retention(
        &self,
        request: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::SetRetentionResponse>, Status> {
        let (who, req) = take(request)?;
        let period = req.retention_seconds.map(Duration::from_secs);
        let (retention, redated) = self
            .ingest
            .set_retention(&who, period)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SetRetentionResponse {
            retention: Some(retention_to_pb(retention)),
            redated_artifacts: redated,
        }))
    }
}

/// A retention as the API shows it.
fn retention_to_pb(retention: Retention) -> pb::Retention {
    pb::Retention {
        retention_seconds: retention.period.as_secs(),
        tenant_policy: retention.tenant_policy,
    }
}
