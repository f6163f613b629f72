//! Ingest end to end against the real binary: uploads over REST (multipart, streamed) and over
//! gRPC (a client stream) are stored with their SHA-256, become a job of kind `ingest` in the
//! ingest pool, and read back byte for byte; bad uploads (a path as a file name, missing or
//! invalid metadata, an oversize file, a connection cut mid-upload) are refused and leave
//! nothing behind: no artifact, no job, no file in the artifact store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::ingest_service_client::IngestServiceClient;
use tokio::io::AsyncWriteExt as _;
use tonic::Code;

use crate::support::{Db, Server, client_with, eventually, send, temp_path};

/// Deterministic, incompressible-looking bytes.
pub(crate) fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file under `dir` (the artifact store), recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A server whose artifact store is a directory the test can look into.
pub(crate) async fn server(extra: &[(&str, &str)]) -> (Server, PathBuf) {
    let dir = temp_path("sy-it-ingest-");
    let url = dir.display().to_string();
    let mut env = vec![("SWITCHYARD_ARTIFACTS_URL", url.as_str())];
    env.extend_from_slice(extra);
    (Server::start(Db::Sqlite, &env).await, dir)
}

/// A multipart form: `metadata` (as given), then the files.
pub(crate) fn form(metadata: &str, files: &[(&str, Vec<u8>)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new().text("metadata", metadata.to_owned());
    for (name, bytes) in files {
        let part = reqwest::multipart::Part::bytes(bytes.clone())
            .file_name((*name).to_owned())
            .mime_str("application/octet-stream")
            .unwrap();
        form = form.part("file", part);
    }
    form
}

/// Uploads `form` over REST as the administrator: (status, body).
pub(crate) async fn upload_rest(s: &Server, form: reqwest::multipart::Form) -> (u16, Value) {
    let (status, body, _) = send(s.client.post(s.url("/api/ingest")).multipart(form)).await;
    (status, body)
}

/// Nothing was stored: no artifact listed, no ingest job, no file in the store.
pub(crate) async fn assert_nothing_stored(s: &Server, dir: &Path) {
    let (status, body, _) = send(s.client.get(s.url("/api/ingest/artifacts"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]), "no artifact: {body}");
    let (status, body, _) = send(s.client.get(s.url("/api/queue/jobs?pool=ingest"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]), "no job: {body}");
    // Abandoned content is removed right after the refusal, on a background task at worst.
    eventually("the store emptied", Duration::from_secs(5), async || {
        let left = files_under(dir);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_rest_upload_is_stored_hashed_queued_and_read_back() {
    let (s, dir) = server(&[]).await;
    let big = content(5 * 1024 * 1024 + 17, 1);
    let small = b"hello, switchyard\n".to_vec();
    let (status, body) = upload_rest(
        &s,
        form(
            r#"{"build": 42, "branch": "main"}"#,
            &[("app.tar.gz", big.clone()), ("notes.txt", small.clone())],
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let data = &body["data"];
    let job_id = data["job_id"].as_str().unwrap().to_owned();
    let artifacts = data["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "{body}");
    assert_eq!(artifacts[0]["name"], "app.tar.gz");
    assert_eq!(artifacts[0]["sha256"], sha256_hex(&big));
    assert_eq!(artifacts[0]["size"], big.len());
    assert_eq!(artifacts[1]["name"], "notes.txt");
    assert_eq!(artifacts[1]["sha256"], sha256_hex(&small));
    assert_eq!(artifacts[1]["state"], "STORED");
    // Stored under generated keys, never under the client's names.
    let stored = files_under(&dir);
    assert_eq!(stored.len(), 2, "{stored:?}");
    for path in &stored {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(!name.contains("app") && !name.contains("notes"), "{path:?}");
    }

    // The upload is a queued job of kind `ingest` whose payload lists the artifacts.
    let (status, status_body, _) =
        send(s.client.get(s.url(&format!("/api/status/{job_id}")))).await;
    assert_eq!(status, 200, "{status_body}");
    assert_eq!(status_body["data"]["state"], "QUEUED");
    assert_eq!(status_body["data"]["progress"], 0);
    let (_, job, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{job_id}")))).await;
    assert_eq!(job["data"]["kind"], "ingest", "{job}");
    assert_eq!(job["data"]["pool"], "ingest", "{job}");
    assert_eq!(job["data"]["payload"]["metadata"]["build"], 42, "{job}");
    assert_eq!(
        job["data"]["payload"]["artifacts"][0]["sha256"],
        sha256_hex(&big),
        "{job}"
    );

    // Listed by job, read back byte for byte with the checksum header.
    let (_, listed, _) = send(
        s.client
            .get(s.url(&format!("/api/ingest/artifacts?job_id={job_id}"))),
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
    let id = artifacts[0]["id"].as_str().unwrap();
    let resp = s
        .client
        .get(s.url(&format!("/api/ingest/artifacts/{id}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-checksum-sha256"].to_str().unwrap(),
        sha256_hex(&big)
    );
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("app.tar.gz")
    );
    let downloaded = resp.bytes().await.unwrap();
    assert!(downloaded == big, "the content read back differs");

    // Another tenant's id is not found; a malformed one is 400.
    let (status, _, _) = send(
        s.client
            .get(s.url(&format!("/api/ingest/artifacts/{}", uuid::Uuid::now_v7()))),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body, _) = send(s.client.get(s.url("/api/status/not-a-uuid"))).await;
    assert_eq!(status, 400, "{body}");
}

/// An ingest client sending the administrator's token.
pub(crate) async fn ingest_client(
    s: &Server,
) -> IngestServiceClient<crate::support::AuthedChannel> {
    IngestServiceClient::new(s.grpc_admin().await)
        .max_decoding_message_size(8 * 1024 * 1024)
        .max_encoding_message_size(8 * 1024 * 1024)
}

/// An upload's first message: its metadata.
pub(crate) fn start(metadata: Value) -> pb::UploadRequest {
    let Value::Object(map) = metadata else {
        panic!("metadata must be an object")
    };
    pb::UploadRequest {
        part: Some(pb::upload_request::Part::Start(pb::UploadStart {
            metadata: Some(switchyard_proto::convert::json_object_to_struct(map)),
        })),
    }
}

/// The message that begins file `name`.
pub(crate) fn file(name: &str) -> pb::UploadRequest {
    pb::UploadRequest {
        part: Some(pb::upload_request::Part::File(pb::FileStart {
            name: name.to_owned(),
            content_type: "application/x-tar".to_owned(),
        })),
    }
}

/// `bytes` as chunk messages of `size` bytes.
pub(crate) fn chunks(bytes: &[u8], size: usize) -> Vec<pb::UploadRequest> {
    bytes
        .chunks(size)
        .map(|c| pb::UploadRequest {
            part: Some(pb::upload_request::Part::Chunk(c.to_vec())),
        })
        .collect()
}

#[tokio::test]
async fn a_grpc_upload_streams_in_chunks_and_downloads_back() {
    let (s, dir) = server(&[]).await;
    let mut c = ingest_client(&s).await;
    let bytes = content(3 * 1024 * 1024 + 5, 7);
    let mut messages = vec![start(json!({"source": "grpc"})), file("image.tar")];
    messages.extend(chunks(&bytes, 256 * 1024));
    let uploaded = c
        .upload(futures::stream::iter(messages))
        .await
        .expect("upload")
        .into_inner();
    assert_eq!(uploaded.artifacts.len(), 1);
    let artifact = &uploaded.artifacts[0];
    assert_eq!(artifact.sha256, sha256_hex(&bytes));
    assert_eq!(artifact.size, bytes.len() as u64);
    assert_eq!(artifact.content_type, "application/x-tar");
    assert_eq!(files_under(&dir).len(), 1);

    let status = c
        .get_status(pb::GetStatusRequest {
            job_id: uploaded.job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, pb::IngestState::Queued as i32);
    let listed = c
        .list_artifacts(pb::ListArtifactsRequest {
            job_id: uploaded.job_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.artifacts, uploaded.artifacts);

    let mut download = c
        .download_artifact(pb::DownloadArtifactRequest {
            id: artifact.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = download.next().await.unwrap().unwrap();
    assert!(matches!(
        first.part,
        Some(pb::download_artifact_response::Part::Artifact(ref a)) if a.id == artifact.id
    ));
    let mut back = Vec::new();
    while let Some(message) = download.next().await {
        match message.unwrap().part {
            Some(pb::download_artifact_response::Part::Chunk(c)) => back.extend(c),
            other => panic!("expected chunks after the artifact: {other:?}"),
        }
    }
    assert!(back == bytes, "the content read back differs");

    // Bad orders and names are INVALID_ARGUMENT and store nothing more.
    let no_start = c
        .upload(futures::stream::iter([file("a.bin")]))
        .await
        .unwrap_err();
    assert_eq!(no_start.code(), Code::InvalidArgument, "{no_start:?}");
    let mut bytes_first = vec![start(json!({}))];
    bytes_first.extend(chunks(b"orphan", 3));
    let err = c
        .upload(futures::stream::iter(bytes_first))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut traversal = vec![start(json!({})), file("../../etc/passwd")];
    traversal.extend(chunks(b"root:x:0:0", 4));
    let err = c
        .upload(futures::stream::iter(traversal))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(files_under(&dir).len(), 1, "only the first upload's file");
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let (s, dir) = server(&[("SWITCHYARD_MAX_FILE_MB", "1")]).await;

    // A path as a file name, after a good file: the good one is not kept either.
    let (status, body) = upload_rest(
        &s,
        form(
            "{}",
            &[
                ("fine.txt", b"fine".to_vec()),
                ("../../etc/passwd", b"root:x:0:0".to_vec()),
            ],
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "files[1].name", "{body}");
    assert_nothing_stored(&s, &dir).await;

    // No metadata part.
    let no_metadata = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.bin"),
    );
    let (status, body) = upload_rest(&s, no_metadata).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "metadata", "{body}");

    // Metadata that is not JSON, or not an object.
    for bad in ["{not json", "[1, 2]"] {
        let (status, body) = upload_rest(&s, form(bad, &[("a.txt", b"a".to_vec())])).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["errors"][0]["field"], "metadata", "{body}");
    }

    // Not multipart at all.
    let (status, body, _) = send(
        s.client
            .post(s.url("/api/ingest"))
            .json(&json!({"metadata": {}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // A file over the 1 MiB limit: 413, and its partial content is gone.
    let (status, body) =
        upload_rest(&s, form("{}", &[("big.bin", content(2 * 1024 * 1024, 3))])).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["errors"][0]["code"], "too_large", "{body}");
    assert_nothing_stored(&s, &dir).await;

    // A connection cut mid-upload: half a file sent, then the socket closed.
    let boundary = "sy-it-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{{}}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let declared = head.len() + 900_000 + 64;
    let request = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n",
        s.http, s.token
    );
    let mut socket = tokio::net::TcpStream::connect(s.http).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&content(450_000, 9)).await.unwrap();
    socket.flush().await.unwrap();
    // Cut once the server is writing the file (its partial content is in the store).
    eventually(
        "the server began the file",
        Duration::from_secs(10),
        async || {
            if files_under(&dir).is_empty() {
                Err("no file")
            } else {
                Ok(())
            }
        },
    )
    .await;
    drop(socket);
    assert_nothing_stored(&s, &dir).await;

    // The server is fine afterwards: a good upload still works.
    let (status, body) = upload_rest(&s, form("{}", &[("ok.txt", b"ok".to_vec())])).await;
    assert_eq!(status, 201, "{body}");
}

/// A TCP proxy in front of `target`: returns its address and a handle whose abort cuts every
/// connection through it at once (the server sees the connection close mid-stream).
async fn cuttable_proxy(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = tokio::net::TcpStream::connect(target).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    });
    (addr, task)
}

#[tokio::test]
async fn a_grpc_stream_cut_mid_upload_stores_nothing() {
    let (s, dir) = server(&[]).await;
    let (proxy, cut) = cuttable_proxy(s.grpc).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{proxy}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", s.token).parse().unwrap();
    let mut c = IngestServiceClient::new(tonic::service::interceptor::InterceptedService::new(
        channel,
        crate::support::Bearer(bearer),
    ));
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadRequest>(4);
    let call = tokio::spawn(async move {
        c.upload(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(start(json!({}))).await.unwrap();
    tx.send(file("first.bin")).await.unwrap();
    for m in chunks(&content(300_000, 2), 100_000) {
        tx.send(m).await.unwrap();
    }
    tx.send(file("second.bin")).await.unwrap();
    for m in chunks(&content(300_000, 4), 100_000) {
        tx.send(m).await.unwrap();
    }
    // The first file is complete on the server and the second part-way: cut the connection.
    eventually(
        "the server got both files",
        Duration::from_secs(10),
        async || {
            let files = files_under(&dir);
            if files.len() >= 2 {
                Ok(())
            } else {
                Err(format!("{files:?}"))
            }
        },
    )
    .await;
    cut.abort();
    assert!(call.await.unwrap().is_err(), "the cut call fails");
    assert_nothing_stored(&s, &dir).await;
    drop(tx);
}

/// A counter's value in Prometheus text (0 when absent).
pub(crate) fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn two_replicas_sweep_each_expired_artifact_exactly_once() {
    let dir = temp_path("sy-it-ingest-");
    let url = dir.display().to_string();
    let env = [
        ("SWITCHYARD_ARTIFACTS_URL", url.as_str()),
        ("SWITCHYARD_ARTIFACT_RETENTION_SECONDS", "2"),
        ("SWITCHYARD_ARTIFACT_SWEEP_SECONDS", "1"),
    ];
    let db = Db::Postgres.fresh_url().await;
    let a = Server::start_on(&db, &env).await;
    let b = Server::start_on(&db, &env).await;
    let files: Vec<(String, Vec<u8>)> = (0..5u8)
        .map(|n| (format!("f{n}.bin"), content(10_000 + usize::from(n), n)))
        .collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let (status, body) = upload_rest(&a, form("{}", &files)).await;
    assert_eq!(status, 201, "{body}");
    let ids: Vec<String> = body["data"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files_under(&dir).len(), 5);

    // Both replicas sweep every second; after the 2 s retention every artifact is EXPIRED.
    for id in &ids {
        let got = eventually(
            &format!("{id} expired"),
            Duration::from_secs(20),
            async || {
                let (_, got, _) =
                    send(b.client.get(b.url(&format!("/api/ingest/artifacts/{id}")))).await;
                if got["data"]["state"] == "EXPIRED" {
                    Ok(got)
                } else {
                    Err(got)
                }
            },
        )
        .await;
        assert!(got["data"]["expired_at"].is_string(), "{got}");
    }
    assert!(files_under(&dir).is_empty(), "{:?}", files_under(&dir));
    let (status, body, _) = send(
        a.client
            .get(a.url(&format!("/api/ingest/artifacts/{}/content", ids[0]))),
    )
    .await;
    assert_eq!(status, 409, "expired content is gone: {body}");

    // Exactly once across the replicas: their expiry counters add up to the artifacts.
    let mut total = 0.0;
    for s in [&a, &b] {
        let text = s.anon.get(s.url("/metrics")).send().await.unwrap();
        let text = text.text().await.unwrap();
        total += counter(&text, "switchyard_artifacts_expired_total");
    }
    assert!(
        (total - 5.0).abs() < f64::EPSILON,
        "expired {total} times in all"
    );
}

/// 200 MB of generated content in 1 MiB pieces, hashed as they are produced: (the pieces, the
/// SHA-256 of all of them once the stream has ended).
const BIG: usize = 200 * 1024 * 1024;
const PIECE: usize = 1024 * 1024;

fn piece(n: usize) -> Vec<u8> {
    content(PIECE, (n % 251) as u8)
}

fn big_sha256() -> String {
    let mut hasher = Sha256::new();
    for n in 0..BIG / PIECE {
        hasher.update(piece(n));
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How far the server's peak memory rose above `before` (its resident memory then).
fn growth(s: &Server, before: u64) -> u64 {
    s.memory().1.saturating_sub(before)
}

#[tokio::test]
async fn a_200_mb_upload_over_rest_and_grpc_keeps_server_memory_bounded() {
    const LIMIT: u64 = 64 * 1024 * 1024;
    let (s, _dir) = server(&[]).await;
    let expected = big_sha256();
    let mut live = crate::ws::open(&s, &s.token, "topics=jobs")
        .await
        .expect("subscribe");

    // REST: a multipart body streamed from a generator; neither side holds the file.
    let before = s.memory().0;
    let pieces = futures::stream::iter(0..BIG / PIECE).map(|n| Ok::<_, std::io::Error>(piece(n)));
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(pieces),
        BIG as u64,
    )
    .file_name("big.bin");
    let form = reqwest::multipart::Form::new()
        .text("metadata", "{}")
        .part("file", part);
    let (status, body) = upload_rest(&s, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["artifacts"][0]["sha256"], expected.as_str());
    assert_eq!(body["data"]["artifacts"][0]["size"], BIG);
    let rest_job = body["data"]["job_id"].as_str().unwrap().to_owned();
    let rest_growth = growth(&s, before);
    assert!(
        rest_growth < LIMIT,
        "REST upload grew the server by {rest_growth} bytes"
    );

    // gRPC: the same content as a client stream of 1 MiB chunks.
    let before = s.memory().0;
    let mut c = ingest_client(&s).await;
    let head = futures::stream::iter([start(json!({"via": "grpc"})), file("big.bin")]);
    let body = futures::stream::iter(0..BIG / PIECE).map(|n| pb::UploadRequest {
        part: Some(pb::upload_request::Part::Chunk(piece(n))),
    });
    let uploaded = c
        .upload(head.chain(body))
        .await
        .expect("upload")
        .into_inner();
    assert_eq!(uploaded.artifacts[0].sha256, expected);
    assert_eq!(uploaded.artifacts[0].size, BIG as u64);
    let grpc_growth = growth(&s, before);
    assert!(
        grpc_growth < LIMIT,
        "gRPC upload grew the server by {grpc_growth} bytes"
    );

    // A real agent fetches and verifies both; the WebSocket client sees each job's changes in
    // order, progress reports (increasing) between RUNNING and COMPLETED.
    let _agent = crate::agents::Agent::start_in(
        "ingest",
        "it-big-ingester",
        &[&s],
        &crate::agents::agent_key(&s).await,
        &crate::agents::workdir(),
    );
    let jobs = [rest_job, uploaded.job_id];
    for job in &jobs {
        let done = crate::agents::wait_for(&s, job, Duration::from_secs(180), |j| {
            j["state"] == "COMPLETED" || j["state"] == "DEAD_LETTERED"
        })
        .await;
        assert_eq!(done["state"], "COMPLETED", "{done}");
    }
    // Both jobs' frames interleave: sort them by job until both completed.
    let mut frames: std::collections::HashMap<String, Vec<Value>> = Default::default();
    while !jobs.iter().all(|job| {
        frames
            .get(job)
            .and_then(|f| f.last())
            .is_some_and(|f| f["state"] == "COMPLETED")
    }) {
        let f = crate::ws::frame(&mut live).await;
        let subject = f["subject"].as_str().unwrap_or_default().to_owned();
        frames.entry(subject).or_default().push(f);
    }
    for job in &jobs {
        let frames = &frames[job];
        let states: Vec<&str> = frames
            .iter()
            .map(|f| f["state"].as_str().unwrap())
            .collect();
        assert_eq!(states[..3], ["QUEUED", "CLAIMED", "RUNNING"], "{states:?}");
        let progress: Vec<u64> = frames[3..frames.len() - 1]
            .iter()
            .filter_map(|f| f["data"]["progress"].as_u64())
            .collect();
        assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
        assert_eq!(progress.last(), Some(&100), "{states:?}");
    }
}

#[tokio::test]
async fn another_tenant_can_neither_read_nor_download_an_artifact() {
    let (s, _dir) = server(&[]).await;
    let (status, body) = upload_rest(&s, form("{}", &[("secret.bin", content(2048, 5))])).await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["artifacts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = body["data"]["job_id"].as_str().unwrap().to_owned();
    crate::auth::create_tenant(&s, "other").await;
    let token = crate::auth::user_token(&s, "other", "o@xt.example", "admin").await;
    let other = client_with(&token);
    for path in [
        format!("/api/ingest/artifacts/{id}"),
        format!("/api/ingest/artifacts/{id}/content"),
        format!("/api/status/{job}"),
    ] {
        let (status, body, _) = send(other.get(s.url(&path))).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body, _) =
        send(other.get(s.url(&format!("/api/ingest/artifacts?job_id={job}")))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], serde_json::json!([]), "{body}");
    let mut grpc = IngestServiceClient::new(s.grpc_with(&token).await);
    let refused = grpc
        .download_artifact(pb::DownloadArtifactRequest { id: id.clone() })
        .await
        .expect_err("another tenant's artifact");
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    // The owner still reads it.
    let (status, _, _) = send(s.client.get(s.url(&format!("/api/ingest/artifacts/{id}")))).await;
    assert_eq!(status, 200);
}
