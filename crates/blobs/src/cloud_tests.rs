//! The store in the cloud, against real servers that `scripts/services` starts: an
//! S3-compatible one (`moto`, `S3_ENDPOINT`, default `http://127.0.0.1:9000`) and Azure's
//! emulator (Azurite, `AZURITE_BLOB_STORAGE_URL`, default `http://127.0.0.1:10000`). Multipart
//! writes, prefixes, aborts that leave nothing behind, listings and deletes, on both. Each test
//! makes its own bucket or container. S3 requests go unsigned (`skip_signature`: moto checks
//! no credentials; the control plane's tests sign); Azure's are signed with the emulator's
//! well-known account key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::Duration as Span;
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use switchyard_types::ErrorKind;

use super::*;

/// The emulator's account, and its key: public, the same in every Azurite.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A cloud the tests run against.
#[derive(Debug, Clone, Copy)]
enum Cloud {
    S3,
    Azure,
}

const CLOUDS: [Cloud; 2] = [Cloud::S3, Cloud::Azure];

impl Cloud {
    /// The server's address.
    fn endpoint(self) -> String {
        match self {
            Cloud::S3 => switchyard_testkit::s3_endpoint(),
            Cloud::Azure => std::env::var("AZURITE_BLOB_STORAGE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:10000".to_owned()),
        }
    }

    /// A fresh, empty bucket or container; its name.
    async fn fresh(self) -> String {
        match self {
            Cloud::S3 => switchyard_testkit::s3_bucket().await,
            Cloud::Azure => {
                let name = switchyard_testkit::unique("sy-test-");
                let created = azure_create_container(&self.endpoint(), &name)
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!("no Azurite at {} (scripts/services): {e}", self.endpoint())
                    });
                assert!(
                    created.status().is_success(),
                    "create {name}: {}",
                    created.status()
                );
                name
            }
        }
    }

    /// The store in `container`, under `prefix` when not empty.
    fn open(self, container: &str, prefix: &str) -> Blobs {
        let location = match self {
            Cloud::S3 => format!(
                "s3://{container}/{prefix}?endpoint={}&region=us-east-1&skip_signature=true",
                self.endpoint()
            ),
            Cloud::Azure => format!("az://{container}/{prefix}?use_emulator=true"),
        };
        Blobs::open(&location).unwrap_or_else(|e| panic!("{location}: {e:?}"))
    }

    /// The store's kind, as `Debug` shows it.
    fn kind(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Azure => "azure",
        }
    }
}

/// Azure's Create Container, signed with the emulator's key (SharedKey).
fn azure_create_container(endpoint: &str, name: &str) -> reqwest::RequestBuilder {
    let date = Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
         /{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&BASE64.decode(AZURITE_KEY).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());
    reqwest::Client::new()
        .put(format!(
            "{endpoint}/{AZURITE_ACCOUNT}/{name}?restype=container"
        ))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header(
            "authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        )
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

/// The multipart uploads an S3 bucket holds unfinished.
async fn unfinished_uploads(bucket: &str) -> usize {
    let listing = reqwest::get(format!("{}/{bucket}?uploads", Cloud::S3.endpoint()))
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
    for cloud in CLOUDS {
        let container = cloud.fresh().await;
        let blobs = cloud.open(&container, "switchyard/artifacts");
        assert_eq!(
            format!("{blobs:?}"),
            format!(r#"Blobs {{ kind: "{}" }}"#, cloud.kind())
        );
        let key = test_key();
        // 12 MiB in 64 KiB chunks: three parts of at most 5 MiB.
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let mut writer = blobs.writer(&key, 12 << 20).await.unwrap();
        for _ in 0..192 {
            writer.write(Bytes::from(chunk.clone())).await.unwrap();
        }
        assert_eq!(
            blobs.read(&key).await.err().unwrap().kind,
            ErrorKind::NotFound,
            "{cloud:?}: visible before finish"
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

        // The key is relative to the prefix; the container holds it under the prefix.
        assert_eq!(keys(&blobs).await, [key.as_str()], "{cloud:?}");
        assert_eq!(
            keys(&cloud.open(&container, "")).await,
            [format!("switchyard/artifacts/{key}")],
            "{cloud:?}"
        );
        assert!(keys(&cloud.open(&container, "elsewhere")).await.is_empty());
        if let Cloud::S3 = cloud {
            assert_eq!(unfinished_uploads(&container).await, 0);
        }
    }
}

#[tokio::test]
async fn an_aborted_or_refused_write_leaves_no_object_and_no_upload() {
    for cloud in CLOUDS {
        let container = cloud.fresh().await;
        let blobs = cloud.open(&container, "");
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
        assert!(keys(&blobs).await.is_empty(), "{cloud:?}");
        assert_eq!(
            blobs.read(&key).await.err().unwrap().kind,
            ErrorKind::NotFound
        );
        if let Cloud::S3 = cloud {
            assert_eq!(
                unfinished_uploads(&container).await,
                0,
                "the upload was aborted"
            );
        }
    }
}

#[tokio::test]
async fn listing_sees_only_older_objects_and_delete_is_idempotent() {
    for cloud in CLOUDS {
        let container = cloud.fresh().await;
        let blobs = cloud.open(&container, "p");
        let key = test_key();
        let mut writer = blobs.writer(&key, 100).await.unwrap();
        writer.write(Bytes::from_static(b"listed")).await.unwrap();
        writer.finish().await.unwrap();

        let earlier: Vec<Stored> = blobs
            .listed_before(Utc::now() - Span::minutes(5))
            .try_collect()
            .await
            .unwrap();
        assert!(earlier.is_empty(), "{cloud:?}: {earlier:?}");
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
            }],
            "{cloud:?}"
        );

        blobs.delete(&key).await.unwrap();
        blobs.delete(&key).await.unwrap();
        assert!(keys(&blobs).await.is_empty());
        assert_eq!(
            blobs.read(&key).await.err().unwrap().kind,
            ErrorKind::NotFound
        );
        // Nothing to sweep locally: a cloud store has no staging files here.
        assert_eq!(
            blobs
                .remove_abandoned_writes(SystemTime::now())
                .await
                .unwrap(),
            0
        );
    }
}
