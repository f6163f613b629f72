//! The `ingest` executor against a small in-process `IngestService` that serves fixed
//! artifacts to one grant.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;

use serde_json::json;
use sha2::{Digest as _, Sha256};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::ingest_service_server::{IngestService, IngestServiceServer};
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::ingest::{Artifacts, Link};
use super::test_support::{job, run_fetching};

const GRANT: &str = "grant-for-job-1";

/// Serves `content` by artifact id to callers presenting [`GRANT`].
struct Fake {
    content: HashMap<String, Vec<u8>>,
}

type Download = Pin<Box<dyn Stream<Item = Result<pb::DownloadArtifactResponse, Status>> + Send>>;
type Fetch = Pin<Box<dyn Stream<Item = Result<pb::FetchArtifactResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for Fake {
    type WatchStatusStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchStatusResponse, Status>> + Send>>;
    type DownloadArtifactStream = Download;
    type FetchArtifactStream = Fetch;

    async fn upload(
        &self,
        _: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        Err(Status::unimplemented("upload"))
    }

    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Err(Status::unimplemented("get_status"))
    }

    async fn watch_status(
        &self,
        _: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        Err(Status::unimplemented("watch_status"))
    }

    async fn list_artifacts(
        &self,
        _: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        Err(Status::unimplemented("list_artifacts"))
    }

    async fn download_artifact(
        &self,
        _: Request<pb::DownloadArtifactRequest>,
    ) -> Result<Response<Download>, Status> {
        Err(Status::unimplemented("download_artifact"))
    }

    async fn get_retention(
        &self,
        _: Request<pb::GetRetentionRequest>,
    ) -> Result<Response<pb::GetRetentionResponse>, Status> {
        Err(Status::unimplemented("get_retention"))
    }

    async fn set_retention(
        &self,
        _: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::SetRetentionResponse>, Status> {
        Err(Status::unimplemented("set_retention"))
    }

    async fn fetch_artifact(
        &self,
        request: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Fetch>, Status> {
        let req = request.into_inner();
        if req.grant != GRANT {
            return Err(Status::permission_denied("bad grant"));
        }
        let content = self
            .content
            .get(&req.artifact_id)
            .ok_or_else(|| Status::not_found("no such artifact"))?;
        let mut parts = vec![Ok(pb::FetchArtifactResponse {
            part: Some(pb::fetch_artifact_response::Part::Artifact(
                pb::Artifact::default(),
            )),
        })];
        parts.extend(content.chunks(64 * 1024).map(|c| {
            Ok(pb::FetchArtifactResponse {
                part: Some(pb::fetch_artifact_response::Part::Chunk(c.to_vec())),
            })
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(parts))))
    }
}

/// A served fake with `content`, and what the executor needs to reach it with `grant`.
async fn serve(content: &[(&str, Vec<u8>)], grant: &str) -> Artifacts {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Fake {
        content: content
            .iter()
            .map(|(id, bytes)| ((*id).to_owned(), bytes.clone()))
            .collect(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IngestServiceServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    Artifacts {
        grant: grant.to_owned(),
        link: Link::new(channel, None),
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The payload entry of artifact `id` named `name` with `bytes`.
fn entry(id: &str, name: &str, bytes: &[u8]) -> serde_json::Value {
    json!({"id": id, "name": name, "sha256": sha256(bytes), "size": bytes.len()})
}

/// Whether `dir` holds nothing.
fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[tokio::test]
async fn artifacts_are_fetched_verified_logged_with_progress_and_cleaned_up() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let small = b"hello".to_vec();
    let artifacts = serve(&[("a1", big.clone()), ("a2", small.clone())], GRANT).await;
    let payload = json!({"metadata": {}, "artifacts": [
        entry("a1", "big.bin", &big), entry("a2", "small.txt", &small)]});
    let dir = tempfile::tempdir().unwrap();
    let ran = run_fetching(
        job("ingest", payload),
        Some(artifacts),
        &[],
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert!(ran.outcome.succeeded, "{:?}", ran.outcome);
    let output = ran.output();
    assert!(
        output.contains(&format!(
            "fetched big.bin (3000000 bytes, sha256 {})",
            sha256(&big)
        )),
        "{output}"
    );
    assert!(output.contains("fetched small.txt (5 bytes"), "{output}");
    assert_eq!(ran.progress.last(), Some(&100), "{:?}", ran.progress);
    assert!(
        ran.progress.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        ran.progress
    );
    assert!(
        ran.progress.len() > 2,
        "steps on the way: {:?}",
        ran.progress
    );
    assert!(empty(dir.path()), "the job's directory is removed");
}

#[tokio::test]
async fn a_digest_or_size_that_differs_from_the_payload_fails_the_job() {
    let bytes = b"the real content".to_vec();
    let artifacts = serve(&[("a1", bytes.clone())], GRANT).await;
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = entry("a1", "f.txt", &bytes);
    wrong["sha256"] = json!(sha256(b"something else"));
    let ran = run_fetching(
        job("ingest", json!({"artifacts": [wrong]})),
        Some(artifacts),
        &[],
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert!(!ran.outcome.succeeded);
    assert!(
        ran.outcome.error.contains("sha256 mismatch"),
        "{:?}",
        ran.outcome
    );
    assert!(empty(dir.path()));

    let artifacts = serve(&[("a1", bytes.clone())], GRANT).await;
    let mut short = entry("a1", "f.txt", &bytes);
    short["size"] = json!(3);
    let ran = run_fetching(
        job("ingest", json!({"artifacts": [short]})),
        Some(artifacts),
        &[],
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert!(
        ran.outcome.error.contains("size mismatch"),
        "{:?}",
        ran.outcome
    );
    assert!(empty(dir.path()));
}

#[tokio::test]
async fn paths_refused_grants_and_missing_grants_fail_clearly() {
    let bytes = b"x".to_vec();
    let dir = tempfile::tempdir().unwrap();
    for name in ["../escape", "a/b", ".."] {
        let artifacts = serve(&[("a1", bytes.clone())], GRANT).await;
        let payload = json!({"artifacts": [entry("a1", name, &bytes)]});
        let ran = run_fetching(
            job("ingest", payload),
            Some(artifacts),
            &[],
            dir.path(),
            CancellationToken::new(),
        )
        .await;
        assert!(
            ran.outcome.error.contains("not a plain file name"),
            "{name}: {:?}",
            ran.outcome
        );
    }
    let artifacts = serve(&[("a1", bytes.clone())], "another grant").await;
    let payload = json!({"artifacts": [entry("a1", "f", &bytes)]});
    let ran = run_fetching(
        job("ingest", payload.clone()),
        Some(artifacts),
        &[],
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert!(
        ran.outcome.error.contains("PermissionDenied"),
        "{:?}",
        ran.outcome
    );
    let ran = run_fetching(
        job("ingest", payload),
        None,
        &[],
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert!(
        ran.outcome.error.contains("no artifact grant"),
        "{:?}",
        ran.outcome
    );
    assert!(empty(dir.path()));
}
