//! Ingest processed by real agents: a real `switchyard agent` in the ingest pool fetches an
//! upload's artifacts with the grant of its job, verifies them and reports progress, which
//! `/api/status`, `GetStatus` and `WatchStatus` show; a grant fetches only its own job's
//! artifacts and only agents may use one; a corrupted artifact fails its job; under `dev` the
//! built-in agent processes uploads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::agent_service_client::AgentServiceClient;
use switchyard_proto::v1::ingest_service_client::IngestServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;

use crate::agents::{Agent, agent_key, workdir};
use crate::ingest::{content, files_under, form, ingest_client, server, sha256_hex, upload_rest};
use crate::support::{Server, eventually, send};

/// What the agent's side of the connection may read per second through [`slow_proxy`].
const AGENT_BYTES_PER_SECOND: usize = 2 << 20;

/// A TCP proxy in front of `target` that passes what the server sends at
/// [`AGENT_BYTES_PER_SECOND`], so an agent behind it takes seconds to fetch a few MiB and its
/// progress can be watched. Returns the proxy's address.
async fn slow_proxy(target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(async move {
                const PIECE: usize = 16 * 1024;
                let pause = Duration::from_secs_f64(PIECE as f64 / AGENT_BYTES_PER_SECOND as f64);
                let mut buf = vec![0u8; PIECE];
                loop {
                    let n = match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            });
        }
    });
    addr
}

/// `GET /api/status/{job}`'s data.
async fn rest_status(s: &Server, job: &str) -> Value {
    let (status, body, _) = send(s.client.get(s.url(&format!("/api/status/{job}")))).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Polls the upload's status until it is final (`COMPLETED` or `FAILED`), for at most `limit`.
async fn final_status(s: &Server, job: &str, limit: Duration) -> Value {
    eventually(&format!("upload {job} final"), limit, async || {
        let status = rest_status(s, job).await;
        if status["state"] == "COMPLETED" || status["state"] == "FAILED" {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .await
}

/// Whether a status is `PROCESSING` with 0 < progress <= 100.
fn processing_with_progress(state: &str, progress: u64) -> bool {
    state == "PROCESSING" && (1..=100).contains(&progress)
}

/// Uploads `files` over REST; returns the job id and the artifacts' ids.
async fn upload(s: &Server, files: &[(&str, Vec<u8>)]) -> (String, Vec<String>) {
    let (status, body) = upload_rest(s, form(r#"{"build": 7}"#, files)).await;
    assert_eq!(status, 201, "{body}");
    let ids = body["data"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    (body["data"]["job_id"].as_str().unwrap().to_owned(), ids)
}

#[tokio::test]
async fn an_upload_is_processed_by_a_real_agent_that_reports_progress() {
    let (s, _) = server(&[]).await;
    let mut live = crate::ws::open(&s, &s.token, "topics=jobs")
        .await
        .expect("subscribe");
    let big = content(6 * 1024 * 1024 + 3, 9);
    let small = b"release notes\n".to_vec();
    let (job, _) = upload(&s, &[("big.bin", big.clone()), ("notes.txt", small)]).await;
    assert_eq!(rest_status(&s, &job).await["state"], "QUEUED");

    // Watch from the start: every change of state or progress is a message.
    let mut grpc = ingest_client(&s).await;
    let mut watch = grpc
        .watch_status(pb::WatchStatusRequest {
            job_id: job.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let watched = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(message) = watch.message().await.unwrap() {
            let status = message.status.unwrap();
            seen.push((status.state(), status.progress));
        }
        seen
    });

    let proxy = slow_proxy(s.grpc).await;
    let dir = workdir();
    let _agent = Agent::start_at(
        "ingest",
        "ingester",
        &[format!("http://{proxy}")],
        &agent_key(&s).await,
        &dir,
    );
    let (mut seen_rest, mut seen_grpc) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let rest = rest_status(&s, &job).await;
        let (state, progress) = (
            rest["state"].as_str().unwrap().to_owned(),
            rest["progress"].as_u64().unwrap(),
        );
        if processing_with_progress(&state, progress) {
            seen_rest.get_or_insert(progress);
        }
        let got = grpc
            .get_status(pb::GetStatusRequest {
                job_id: job.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if got.state() == pb::IngestState::Processing && (1..=100).contains(&got.progress) {
            seen_grpc.get_or_insert(got.progress);
        }
        if state == "COMPLETED" || state == "FAILED" {
            break rest;
        }
        assert!(Instant::now() < deadline, "not processed in 60 s: {rest}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(done["progress"], 100, "{done}");
    assert!(
        seen_rest.is_some(),
        "/api/status never showed PROCESSING with progress"
    );
    assert!(
        seen_grpc.is_some(),
        "GetStatus never showed PROCESSING with progress"
    );

    let watched = watched.await.unwrap();
    let processing: Vec<u32> = watched
        .iter()
        .filter(|(state, _)| *state == pb::IngestState::Processing)
        .map(|(_, progress)| *progress)
        .collect();
    assert!(
        processing.iter().filter(|p| **p > 0).count() >= 2,
        "WatchStatus sends progress changes while processing: {watched:?}"
    );
    assert!(processing.windows(2).all(|w| w[0] < w[1]), "{watched:?}");
    assert_eq!(
        watched.last(),
        Some(&(pb::IngestState::Completed, 100)),
        "{watched:?}"
    );

    // The WebSocket client saw every change, in order: queued, claimed, running, each progress
    // report (increasing), completed.
    let frames = crate::ws::until_state(&mut live, &job, "COMPLETED").await;
    let states: Vec<&str> = frames
        .iter()
        .map(|f| f["state"].as_str().unwrap())
        .collect();
    assert_eq!(states[..3], ["QUEUED", "CLAIMED", "RUNNING"], "{states:?}");
    assert_eq!(states.last(), Some(&"COMPLETED"));
    let progress: Vec<u64> = frames[3..frames.len() - 1]
        .iter()
        .map(|f| {
            assert_eq!(f["state"], "RUNNING", "{f}");
            f["data"]["progress"].as_u64().expect("a progress report")
        })
        .collect();
    assert!(
        progress.len() >= 2,
        "progress reports over the socket: {progress:?}"
    );
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&100));

    // The agent verified the content and says so in the job's log; its directory is gone.
    let (_, logs, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{job}/logs")))).await;
    let text = logs["data"].to_string();
    let line = format!(
        "fetched big.bin ({} bytes, sha256 {})",
        big.len(),
        sha256_hex(&big)
    );
    assert!(text.contains(&line), "{line} not in {logs}");
    assert!(text.contains("fetched notes.txt (14 bytes"), "{logs}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ingest-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Connects as an agent of pool `ingest` with `key` and takes `n` jobs: job id -> grant.
async fn take_grants(s: &Server, key: &str, n: u32) -> HashMap<String, String> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let hello = pb::connect_request::Body::Hello(pb::Hello {
        name: "probe".to_owned(),
        pool: "ingest".to_owned(),
        capacity: n,
        ..pb::Hello::default()
    });
    let credits = pb::connect_request::Body::Credits(pb::Credits { add: n });
    for body in [hello, credits] {
        tx.send(pb::ConnectRequest { body: Some(body) })
            .await
            .unwrap();
    }
    let mut inbound = AgentServiceClient::new(s.grpc_with(key).await)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut grants = HashMap::new();
    let deadline = Duration::from_secs(20);
    while grants.len() < n as usize {
        let message = tokio::time::timeout(deadline, inbound.message())
            .await
            .expect("assigned in time")
            .unwrap()
            .expect("stream open");
        if let Some(pb::connect_response::Body::Assign(assign)) = message.body {
            assert!(!assign.artifact_grant.is_empty(), "an ingest job's grant");
            grants.insert(assign.job.unwrap().id, assign.artifact_grant);
        }
    }
    // Grants outlive the stream: its jobs stay leased to the probe until the lease ends.
    grants
}

/// Fetches artifact `id` with `grant` as the holder of `token`: the bytes, or the error code.
async fn fetch(s: &Server, token: &str, id: &str, grant: &str) -> Result<Vec<u8>, Code> {
    let mut c = IngestServiceClient::new(s.grpc_with(token).await)
        .max_decoding_message_size(8 * 1024 * 1024);
    let request = pb::FetchArtifactRequest {
        artifact_id: id.to_owned(),
        grant: grant.to_owned(),
    };
    let mut stream = c
        .fetch_artifact(request)
        .await
        .map_err(|e| e.code())?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await.map_err(|e| e.code())? {
        if let Some(pb::fetch_artifact_response::Part::Chunk(chunk)) = message.part {
            bytes.extend(chunk);
        }
    }
    Ok(bytes)
}

#[tokio::test]
async fn a_grant_fetches_its_own_jobs_artifacts_and_only_agents_may_use_it() {
    let (s, _) = server(&[]).await;
    let (a_bytes, b_bytes) = (content(70_000, 1), content(50_000, 2));
    let (job_a, a_ids) = upload(&s, &[("a.bin", a_bytes.clone())]).await;
    let (job_b, b_ids) = upload(&s, &[("b.bin", b_bytes.clone())]).await;
    let key = agent_key(&s).await;
    let grants = take_grants(&s, &key, 2).await;
    let (grant_a, grant_b) = (&grants[&job_a], &grants[&job_b]);

    assert!(fetch(&s, &key, &a_ids[0], grant_a).await.unwrap() == a_bytes);
    // Job A's grant does not reach job B's artifact, nor an unknown one.
    assert_eq!(
        fetch(&s, &key, &b_ids[0], grant_a).await,
        Err(Code::NotFound)
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        fetch(&s, &key, &unknown, grant_b).await,
        Err(Code::NotFound)
    );
    // No grant, a forged one, or an access token in its place.
    let tampered = format!("{grant_a}x");
    for bad in ["", "not-a-grant", s.token.as_str(), tampered.as_str()] {
        assert_eq!(
            fetch(&s, &key, &a_ids[0], bad).await,
            Err(Code::PermissionDenied),
            "{bad}"
        );
    }
    // A user's bearer credential without agent rights (an uploader's scopes) is refused even
    // with a valid grant; none at all is unauthenticated.
    let (status, body, _) = send(
        s.client
            .post(s.url("/auth/api-keys"))
            .json(&json!({"name": "uploader", "scopes": ["ingest:write", "jobs:read"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let uploader = body["data"]["key"].as_str().unwrap();
    assert_eq!(
        fetch(&s, uploader, &a_ids[0], grant_a).await,
        Err(Code::PermissionDenied)
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anonymous = IngestServiceClient::new(channel);
    let refused = anonymous
        .fetch_artifact(pb::FetchArtifactRequest {
            artifact_id: a_ids[0].clone(),
            grant: grant_a.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A grant lives only as long as its attempt: once job A is cancelled it fetches nothing,
    // while job B's grant still works.
    let (status, body, _) = send(s.client.delete(s.url(&format!("/api/queue/jobs/{job_a}")))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fetch(&s, &key, &a_ids[0], grant_a).await,
        Err(Code::FailedPrecondition)
    );
    assert!(fetch(&s, &key, &b_ids[0], grant_b).await.unwrap() == b_bytes);
}

#[tokio::test]
async fn a_corrupted_artifact_fails_its_job_with_a_sha256_mismatch() {
    let (s, dir) = server(&[]).await;
    let original = content(300_000, 5);
    let (job, _) = upload(&s, &[("data.bin", original.clone())]).await;
    let stored = files_under(&dir);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let mut corrupted = original;
    corrupted[1234] ^= 0xff;
    std::fs::write(&stored[0], &corrupted).unwrap();

    let dir = workdir();
    let _agent = Agent::start_in("ingest", "ingester", &[&s], &agent_key(&s).await, &dir);
    let failed = final_status(&s, &job, Duration::from_secs(60)).await;
    assert_eq!(failed["state"], "FAILED", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("sha256 mismatch"), "{failed}");
    assert!(error.contains("data.bin"), "{failed}");
}

#[tokio::test]
async fn under_dev_the_built_in_agent_processes_uploads() {
    let data = crate::support::temp_path("sy-it-dev-ingest-");
    let (s, _) = Server::start_dev(&data, |_| true).await;
    let bytes = content(200_000, 3);
    let (job, _) = upload(&s, &[("dev.bin", bytes.clone())]).await;
    let done = final_status(&s, &job, Duration::from_secs(30)).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(done["progress"], 100, "{done}");
    let (_, job_body, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{job}")))).await;
    assert_eq!(job_body["data"]["pool"], "local", "{job_body}");
    let (_, logs, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{job}/logs")))).await;
    let line = format!(
        "fetched dev.bin (200000 bytes, sha256 {})",
        sha256_hex(&bytes)
    );
    assert!(logs["data"].to_string().contains(&line), "{logs}");
}
