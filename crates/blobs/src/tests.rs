use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::TimeZone;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use switchyard_types::ErrorKind;

use super::*;

/// Every file (not directory) under `dir`, recursively.
fn files_under(dir: &FsPath) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn hex_sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn read_all(blobs: &Blobs, key: &str) -> Result<(u64, Vec<u8>)> {
    let content = blobs.read(key).await?;
    let chunks: Vec<Bytes> = content.chunks.try_collect().await?;
    Ok((content.size, chunks.concat()))
}

fn test_key() -> String {
    let at = Utc.with_ymd_and_hms(2026, 3, 7, 12, 0, 0).unwrap();
    Blobs::key(&TenantId::parse("acme").unwrap(), ArtifactId::new(), at)
}

#[tokio::test]
async fn round_trip_hashes_counts_and_stores_under_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let key = test_key();
    let parts: [&[u8]; 3] = [b"hello, ", b"", b"artifact store"];
    let whole = parts.concat();

    let mut writer = blobs.writer(&key, 1024).await.unwrap();
    for part in parts {
        writer.write(Bytes::from_static(part)).await.unwrap();
    }
    let absent = blobs.read(&key).await.err().unwrap();
    assert_eq!(absent.kind, ErrorKind::NotFound, "visible before finish");
    let written = writer.finish().await.unwrap();

    assert_eq!(written.sha256, hex_sha256(&whole));
    assert_eq!(written.sha256.len(), 64);
    assert_eq!(written.size, whole.len() as u64);
    assert_eq!(
        read_all(&blobs, &key).await.unwrap(),
        (written.size, whole.clone())
    );
    assert_eq!(std::fs::read(dir.path().join(&key)).unwrap(), whole);
    assert_eq!(files_under(dir.path()), vec![dir.path().join(&key)]);
}

#[tokio::test]
async fn streams_twenty_megabytes_in_small_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let key = test_key();
    const TOTAL: usize = 20_000_000;
    const CHUNK: usize = 64 * 1024;

    let mut writer = blobs.writer(&key, TOTAL as u64).await.unwrap();
    let mut expected = Sha256::new();
    let mut offset = 0;
    while offset < TOTAL {
        let len = CHUNK.min(TOTAL - offset);
        let chunk: Vec<u8> = (offset..offset + len).map(|i| (i % 251) as u8).collect();
        expected.update(&chunk);
        writer.write(Bytes::from(chunk)).await.unwrap();
        offset += len;
    }
    let written = writer.finish().await.unwrap();
    let expected: String = expected
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    assert_eq!(written.size, TOTAL as u64);
    assert_eq!(written.sha256, expected);
    let (size, content) = read_all(&blobs, &key).await.unwrap();
    assert_eq!(size, TOTAL as u64);
    assert_eq!(hex_sha256(&content), expected);
}

#[tokio::test]
async fn over_the_limit_is_too_large_and_abort_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let key = test_key();

    let mut writer = blobs.writer(&key, 10).await.unwrap();
    writer.write(Bytes::from_static(b"123456")).await.unwrap();
    let err = writer
        .write(Bytes::from_static(b"789012"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge);
    // The writer stays broken: a smaller chunk must not sneak a truncated object in.
    let again = writer.write(Bytes::from_static(b"7")).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::TooLarge);
    writer.abort().await.unwrap();

    assert_eq!(files_under(dir.path()), Vec::<PathBuf>::new());
    assert_eq!(
        blobs.read(&key).await.err().unwrap().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn exactly_the_limit_fits_and_a_broken_writer_cannot_finish() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();

    let key = test_key();
    let mut writer = blobs.writer(&key, 10).await.unwrap();
    writer
        .write(Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    assert_eq!(writer.finish().await.unwrap().size, 10);

    let other = test_key();
    let mut writer = blobs.writer(&other, 10).await.unwrap();
    writer
        .write(Bytes::from_static(b"01234567890"))
        .await
        .unwrap_err();
    assert_eq!(writer.finish().await.unwrap_err().kind, ErrorKind::TooLarge);
    assert_eq!(files_under(dir.path()), vec![dir.path().join(&key)]);
}

#[tokio::test]
async fn a_dropped_writer_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let key = test_key();

    let mut writer = blobs.writer(&key, u64::MAX).await.unwrap();
    // More than one 5 MiB part, so some content has reached the staging file.
    for _ in 0..100 {
        writer
            .write(Bytes::from(vec![7u8; 64 * 1024]))
            .await
            .unwrap();
    }
    assert!(!files_under(dir.path()).is_empty(), "no staging file");
    assert!(!dir.path().join(&key).exists(), "visible before finish");
    drop(writer);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = files_under(dir.path());
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn read_and_delete_of_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let key = test_key();

    assert_eq!(
        blobs.read(&key).await.err().unwrap().kind,
        ErrorKind::NotFound
    );
    blobs.delete(&key).await.unwrap();

    let mut writer = blobs.writer(&key, 100).await.unwrap();
    writer
        .write(Bytes::from_static(b"gone soon"))
        .await
        .unwrap();
    writer.finish().await.unwrap();
    blobs.delete(&key).await.unwrap();
    assert_eq!(
        blobs.read(&key).await.err().unwrap().kind,
        ErrorKind::NotFound
    );
    blobs.delete(&key).await.unwrap();
    // Empty tenant/year/month directories go with the last object.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn open_accepts_paths_file_urls_and_memory() {
    let dir = tempfile::tempdir().unwrap();

    // A relative path, resolved against the working directory and created.
    let cwd = std::env::current_dir().unwrap();
    let relative = pathdiff(dir.path(), &cwd).join("rel/store");
    let blobs = Blobs::open(relative.to_str().unwrap()).unwrap();
    assert!(dir.path().join("rel/store").is_dir());
    assert_eq!(format!("{blobs:?}"), r#"Blobs { kind: "filesystem" }"#);

    let url = format!("file://{}", dir.path().join("via/url").display());
    let blobs = Blobs::open(&url).unwrap();
    assert!(dir.path().join("via/url").is_dir());
    let key = test_key();
    let mut writer = blobs.writer(&key, 100).await.unwrap();
    writer.write(Bytes::from_static(b"x")).await.unwrap();
    writer.finish().await.unwrap();
    assert!(dir.path().join("via/url").join(&key).is_file());

    let memory = Blobs::open("memory://").unwrap();
    assert_eq!(format!("{memory:?}"), r#"Blobs { kind: "memory" }"#);
    let mut writer = memory.writer(&key, 100).await.unwrap();
    writer
        .write(Bytes::from_static(b"in memory"))
        .await
        .unwrap();
    let written = writer.finish().await.unwrap();
    assert_eq!(written.sha256, hex_sha256(b"in memory"));
    assert_eq!(
        read_all(&memory, &key).await.unwrap(),
        (9, b"in memory".to_vec())
    );
    memory.delete(&key).await.unwrap();
    memory.delete(&key).await.unwrap();
    assert_eq!(
        memory.read(&key).await.err().unwrap().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn open_refuses_other_locations() {
    for location in [
        "s3://x",
        "gs://bucket/p",
        "memory://elsewhere",
        "file://host/p",
        "",
    ] {
        let err = Blobs::open(location).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{location}");
        assert_eq!(err.violations[0].field, "artifacts_url", "{location}");
    }
    let err = Blobs::open("s3://x").unwrap_err();
    assert!(err.message.contains("memory://"), "{}", err.message);
    assert!(err.message.contains("file://"), "{}", err.message);
}

#[test]
fn key_is_tenant_year_month_id() {
    let tenant = TenantId::parse("acme-ci").unwrap();
    let id: ArtifactId = "0190f3a8-7b2c-7def-8abc-0123456789ab".parse().unwrap();
    let at = Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 59).unwrap();
    assert_eq!(
        Blobs::key(&tenant, id, at),
        "acme-ci/2026/03/0190f3a8-7b2c-7def-8abc-0123456789ab"
    );
}

/// `path` relative to `base` (both absolute), with `..` where needed.
fn pathdiff(path: &FsPath, base: &FsPath) -> PathBuf {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    out.extend(&path[common..]);
    out
}
