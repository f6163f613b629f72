//! The store on a real S3-compatible server (`moto_server`, started by `scripts/services`):
//! multipart writes, the prefix, aborts that leave no upload behind, listings and deletes.
//! `S3_ENDPOINT` names the server (default `http://127.0.0.1:9000`); each test makes its own
//! bucket. Requests go unsigned (`skip_signature`): the server checks no credentials, and the
//! signed path is exercised end to end by the control plane's tests.

use bytes::Bytes;
use chrono::Duration as Span;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use switchyard_types::ErrorKind;

use super::*;

/// The S3-compatible server the tests use.
fn endpoint() -> String {
    std::env::var("S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".to_owned())
}

/// A fresh, empty bucket; its name.
async fn bucket() -> String {
    let name = format!("sy-test-{}", ArtifactId::new());
    let created = reqwest::Client::new()
        .put(format!("{}/{name}", endpoint()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("no S3 server at {} (scripts/services): {e}", endpoint()));
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    name
}

/// The store at `bucket` (under `prefix`, when not empty).
fn open(bucket: &str, prefix: &str) -> Blobs {
    Blobs::open(&format!(
        "s3://{bucket}/{prefix}?endpoint={}&region=us-east-1&skip_signature=true",
        endpoint()
    ))
    .unwrap()
}

/// Every key in the store.
async fn keys(blobs: &Blobs) -> Vec<String> {
    let far = Utc::now() + Span::days(1);
    let mut keys: Vec<String> = blobs
        .listed_before(far)
        .map_ok(|s| s.key)
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// The multipart uploads the bucket holds unfinished.
async fn unfinished_uploads(bucket: &str) -> usize {
    let listing = reqwest::get(format!("{}/{bucket}?uploads", endpoint()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    listing.matches("<Upload>").count()
}

fn test_key() -> String {
    Blobs::key(
        &TenantId::parse("acme").unwrap(),
        ArtifactId::new(),
        Utc::now(),
    )
}

#[tokio::test]
async fn writes_in_parts_under_the_prefix_and_reads_back() {
    let bucket = bucket().await;
    let blobs = open(&bucket, "switchyard/artifacts");
    assert_eq!(format!("{blobs:?}"), r#"Blobs { kind: "s3" }"#);
    let key = test_key();
    // 12 MiB in 64 KiB chunks: three 5 MiB-or-less parts.
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut writer = blobs.writer(&key, 12 << 20).await.unwrap();
    for _ in 0..192 {
        writer.write(Bytes::from(chunk.clone())).await.unwrap();
    }
    assert_eq!(
        blobs.read(&key).await.err().unwrap().kind,
        ErrorKind::NotFound,
        "visible before finish"
    );
    let written = writer.finish().await.unwrap();
    assert_eq!(written.size, 12 << 20);

    let content = blobs.read(&key).await.unwrap();
    assert_eq!(content.size, 12 << 20);
    let bytes: Vec<Bytes> = content.chunks.try_collect().await.unwrap();
    let bytes = bytes.concat();
    assert_eq!(bytes.len(), 12 << 20);
    assert!(bytes.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(written.sha256, digest);

    // The key is relative to the prefix; the bucket holds it under the prefix.
    assert_eq!(keys(&blobs).await, [key.as_str()]);
    assert_eq!(
        keys(&open(&bucket, "")).await,
        [format!("switchyard/artifacts/{key}")]
    );
    assert!(keys(&open(&bucket, "elsewhere")).await.is_empty());
    assert_eq!(unfinished_uploads(&bucket).await, 0);
}

#[tokio::test]
async fn an_aborted_or_refused_write_leaves_no_object_and_no_upload() {
    let bucket = bucket().await;
    let blobs = open(&bucket, "");
    let key = test_key();
    let mut writer = blobs.writer(&key, 6 << 20).await.unwrap();
    // Past one 5 MiB part, so a part has been uploaded, then over the limit.
    for _ in 0..90 {
        writer
            .write(Bytes::from(vec![1u8; 64 * 1024]))
            .await
            .unwrap();
    }
    let err = writer
        .write(Bytes::from(vec![1u8; 1 << 20]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge);
    writer.abort().await.unwrap();
    assert!(keys(&blobs).await.is_empty());
    assert_eq!(
        unfinished_uploads(&bucket).await,
        0,
        "the upload was aborted"
    );
    assert_eq!(
        blobs.read(&key).await.err().unwrap().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn listing_sees_only_older_objects_and_delete_is_idempotent() {
    let bucket = bucket().await;
    let blobs = open(&bucket, "p");
    let key = test_key();
    let mut writer = blobs.writer(&key, 100).await.unwrap();
    writer.write(Bytes::from_static(b"listed")).await.unwrap();
    writer.finish().await.unwrap();

    let earlier: Vec<Stored> = blobs
        .listed_before(Utc::now() - Span::minutes(5))
        .try_collect()
        .await
        .unwrap();
    assert!(earlier.is_empty(), "{earlier:?}");
    let later: Vec<Stored> = blobs
        .listed_before(Utc::now() + Span::minutes(5))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        later,
        [Stored {
            key: key.clone(),
            size: 6
        }]
    );

    blobs.delete(&key).await.unwrap();
    blobs.delete(&key).await.unwrap();
    assert!(keys(&blobs).await.is_empty());
    assert_eq!(
        blobs.read(&key).await.err().unwrap().kind,
        ErrorKind::NotFound
    );
    // Nothing to sweep locally: an S3 store has no staging files.
    assert_eq!(
        blobs
            .remove_abandoned_writes(SystemTime::now())
            .await
            .unwrap(),
        0
    );
}
