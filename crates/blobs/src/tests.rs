use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, SystemTime};

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
        "gs://bucket/p",
        "az://",
        "az://container?account_key=hunter2",
        "az://container?sas_token=hunter2",
        "https://example.com/bucket",
        "memory://elsewhere",
        "file://host/p",
        "s3://",
        "s3:///no-bucket",
        "s3://bucket?no_such_option=1",
        "s3://bucket?secret_access_key=hunter2",
        "s3://bucket?aws_access_key_id=AKIA",
        "s3://bucket?token=t",
        "",
    ] {
        let err = Blobs::open(location).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{location}");
        assert_eq!(err.violations[0].field, "artifacts_url", "{location}");
        assert!(!err.message.contains("hunter2"), "{}", err.message);
    }
    let err = Blobs::open("gs://x").unwrap_err();
    for named in ["memory://", "file://", "s3://", "az://"] {
        assert!(err.message.contains(named), "{}", err.message);
    }
    let err = Blobs::open("s3://bucket?secret_access_key=hunter2").unwrap_err();
    assert!(
        err.violations[0]
            .description
            .contains("AWS_SECRET_ACCESS_KEY"),
        "{err:?}"
    );
}

#[test]
fn open_accepts_cloud_urls_with_options() {
    for location in [
        "s3://bucket",
        "S3://bucket/a/prefix/",
        "s3a://bucket/p?region=eu-west-1",
        "s3://bucket?endpoint=http://127.0.0.1:1&allow_http=true&virtual_hosted_style_request=false",
    ] {
        let blobs = Blobs::open(location).unwrap_or_else(|e| panic!("{location}: {e:?}"));
        assert_eq!(format!("{blobs:?}"), r#"Blobs { kind: "s3" }"#);
    }
    for location in [
        "az://container?use_emulator=true",
        "azure://container/a/prefix?use_emulator=true",
        "az://container?account_name=acct&endpoint=https://acct.blob.core.windows.net",
    ] {
        let blobs = Blobs::open(location).unwrap_or_else(|e| panic!("{location}: {e:?}"));
        assert_eq!(format!("{blobs:?}"), r#"Blobs { kind: "azure" }"#);
    }
}

#[tokio::test]
async fn listing_sees_complete_objects_older_than_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let key = test_key();
    let mut writer = blobs.writer(&key, 100).await.unwrap();
    writer.write(Bytes::from_static(b"12345")).await.unwrap();
    writer.finish().await.unwrap();
    // A write in progress is not listed.
    let mut open_writer = blobs.writer(&test_key(), u64::MAX).await.unwrap();
    open_writer
        .write(Bytes::from(vec![0u8; 6 << 20]))
        .await
        .unwrap();

    let listed = |before| blobs.listed_before(before).try_collect::<Vec<Stored>>();
    assert_eq!(
        listed(Utc::now() + chrono::Duration::seconds(5))
            .await
            .unwrap(),
        [Stored { key, size: 5 }]
    );
    assert!(
        listed(Utc::now() - chrono::Duration::seconds(60))
            .await
            .unwrap()
            .is_empty()
    );
    open_writer.abort().await.unwrap();
}

/// Sets `path`'s modification time to `age` ago.
fn age(path: &FsPath, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[tokio::test]
async fn abandoned_staging_files_are_removed_once_old_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let kept = test_key();
    let mut writer = blobs.writer(&kept, 100).await.unwrap();
    writer.write(Bytes::from_static(b"complete")).await.unwrap();
    writer.finish().await.unwrap();
    // What a crash mid-write leaves: `<key>#<n>` in a month directory of its own.
    let crashed = dir.path().join("acme/2026/01");
    std::fs::create_dir_all(&crashed).unwrap();
    let old = crashed.join("0190f3a8-7b2c-7def-8abc-0123456789ab#3");
    std::fs::write(&old, b"partial").unwrap();
    let young = dir.path().join(format!("{kept}#1"));
    std::fs::write(&young, b"still being written").unwrap();
    let lookalike = dir.path().join("acme/2026/01-notes#draft");
    std::fs::write(&lookalike, b"not a staging file").unwrap();
    for path in [&old, &lookalike, &dir.path().join(&kept)] {
        age(path, Duration::from_secs(3600));
    }

    let before = SystemTime::now() - Duration::from_secs(600);
    assert_eq!(blobs.remove_abandoned_writes(before).await.unwrap(), 1);
    assert!(
        !old.exists() && !crashed.exists(),
        "its emptied month went too"
    );
    assert!(young.exists() && lookalike.exists());
    assert_eq!(read_all(&blobs, &kept).await.unwrap().1, b"complete");
    assert_eq!(blobs.remove_abandoned_writes(before).await.unwrap(), 0);
    assert_eq!(
        Blobs::open("memory://")
            .unwrap()
            .remove_abandoned_writes(SystemTime::now())
            .await
            .unwrap(),
        0
    );
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
