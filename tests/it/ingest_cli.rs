//! `switchyard ingest FILE… --metadata JSON [--watch]` driven as an operator would, against a
//! real server: the files are stored with their sizes and SHA-256 under one job whose payload
//! carries the metadata; bad metadata, a missing file and a name the server refuses fail with a
//! clear message and upload nothing; `--watch` prints the upload's status as it changes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::support::{self, Db, Server, send, temp_path};

/// Runs `switchyard ingest <args>` against `s`; kills it after `limit`.
fn ingest(s: &Server, args: &[&str], limit: Duration) -> (Output, bool) {
    support::run_cli(s, "ingest", args, limit)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs (within 60 s) and asserts failure; returns stderr.
fn fails(s: &Server, args: &[&str]) -> String {
    let (out, killed) = ingest(s, args, Duration::from_secs(60));
    assert!(!killed, "ingest {args:?} did not end within 60 s");
    assert!(
        !out.status.success(),
        "ingest {args:?} succeeded: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// Deterministic, varied bytes.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 9) as u8)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `dir/name`; returns the path as an argument.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

/// The printed upload: the job id, then `[id, name, size, sha256]` per artifact.
fn parse(stdout: &str) -> (String, Vec<Vec<String>>) {
    let mut lines = stdout.lines();
    let job = lines
        .next()
        .and_then(|l| l.strip_prefix("job "))
        .unwrap_or_else(|| panic!("no `job <id>` line first:\n{stdout}"))
        .to_owned();
    let artifacts = lines
        .take_while(|l| l.split('\t').count() == 4)
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    (job, artifacts)
}

/// How many ingest jobs the tenant has.
async fn ingest_jobs(s: &Server) -> usize {
    let (status, body, _) = send(s.client.get(s.url("/api/queue/jobs?pool=ingest"))).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn ingest_cli_uploads_files_with_metadata_and_watches_the_status() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let dir: PathBuf = temp_path("sy-it-ingest-cli-");
    std::fs::create_dir_all(&dir).unwrap();
    let big = content(3 * 1024 * 1024 + 5);
    let small = b"build 7: ok\n".to_vec();
    let big_path = file(&dir, "app.tar", &big);
    let small_path = file(&dir, "build.log", &small);

    // Two files and metadata: the job, then each artifact with its size and SHA-256.
    let (out, killed) = ingest(
        &s,
        &[&big_path, &small_path, "--metadata", r#"{"build":7}"#],
        Duration::from_secs(60),
    );
    assert!(!killed, "ingest did not end within 60 s");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "ingest failed: {}\n{stdout}",
        text(&out.stderr)
    );
    // Not a terminal: no progress line.
    assert_eq!(text(&out.stderr), "");
    let (job, artifacts) = parse(&stdout);
    assert_eq!(artifacts.len(), 2, "{stdout}");
    for (row, (name, bytes)) in artifacts
        .iter()
        .zip([("app.tar", &big), ("build.log", &small)])
    {
        assert_eq!(row[1], name, "{stdout}");
        assert_eq!(row[2], bytes.len().to_string(), "{stdout}");
        assert_eq!(row[3], sha256_hex(bytes), "{stdout}");
    }

    // One job whose payload carries the metadata and the same artifacts.
    let (status, body, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{job}")))).await;
    assert_eq!(status, 200, "{body}");
    let payload = &body["data"]["payload"];
    assert_eq!(payload["metadata"]["build"], 7, "{body}");
    let ids: Vec<&str> = payload["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, [artifacts[0][0].as_str(), artifacts[1][0].as_str()]);
    assert_eq!(ingest_jobs(&s).await, 1);

    // Metadata that is not a JSON object is refused before anything is sent.
    let err = fails(&s, &[&small_path, "--metadata", "[1]"]);
    assert!(err.contains("metadata"), "{err}");
    // A missing file is named, and nothing is uploaded (not even the files before it).
    let missing = dir.join("missing.bin").display().to_string();
    let err = fails(&s, &[&small_path, &missing]);
    assert!(err.contains(&missing), "{err}");
    // A name the server refuses: its message, and nothing stored.
    let bad = file(&dir, "bad\u{1}name", b"x");
    let err = fails(&s, &[&small_path, &bad]);
    assert!(
        err.contains("invalid_argument") && err.contains("name"),
        "{err}"
    );
    // No files at all is a usage error.
    let (out, _) = ingest(&s, &[], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("FILE"), "{}", text(&out.stderr));
    assert_eq!(ingest_jobs(&s).await, 1);

    // --watch: after the upload, the status as it changes. No agent processes ingest jobs yet,
    // so it stays QUEUED and the watch has to be killed.
    let (out, killed) = ingest(&s, &[&small_path, "--watch"], Duration::from_secs(5));
    let stdout = text(&out.stdout);
    assert!(killed, "the watch ended: {stdout}\n{}", text(&out.stderr));
    let (job, artifacts) = parse(&stdout);
    assert_eq!(artifacts.len(), 1, "{stdout}");
    let first = stdout
        .lines()
        .nth(2)
        .unwrap_or_else(|| panic!("no status line:\n{stdout}"));
    let cells: Vec<&str> = first.split('\t').collect();
    assert_eq!(cells[1..], ["QUEUED", "0%"], "{stdout}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(cells[0]).is_ok(),
        "{stdout}"
    );
    let (_, body, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{job}")))).await;
    assert_eq!(
        body["data"]["payload"]["metadata"],
        Value::Object(Default::default())
    );
}
