//! The artifact store (DESIGN §3.7): artifact content by server-generated key, kept in a local
//! directory, an S3-compatible bucket (or in memory) through `object_store`, hashed and
//! size-limited while it streams in.

mod staging;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use switchyard_types::{ArtifactId, Error, Result, TenantId};

pub use writer::{BlobWriter, Written};

/// The config field the store location comes from, named in `InvalidArgument` errors.
const LOCATION_FIELD: &str = "artifacts_url";

/// The artifact store: content by key. Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    kind: &'static str,
    /// The directory of a filesystem store (where interrupted writes leave staging files).
    root: Option<PathBuf>,
}

/// An object's content as read back: its size and its bytes, chunk by chunk.
pub struct Content {
    /// The size in bytes.
    pub size: u64,
    /// The bytes; an error item ends the stream.
    pub chunks: BoxStream<'static, Result<Bytes>>,
}

impl Blobs {
    /// Opens the store at `location`: a filesystem path or `file:///abs/path` (the directory is
    /// created), `s3://bucket[/prefix][?option=value…]` (an S3-compatible bucket; see
    /// [`Blobs::open_s3`]), or `memory://` (tests, dev without disk).
    pub fn open(location: &str) -> Result<Blobs> {
        let dir = match location.split_once("://") {
            None if location.is_empty() => return Err(Error::invalid(LOCATION_FIELD, "is empty")),
            None => PathBuf::from(location),
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "memory" if rest.is_empty() => {
                    return Ok(Blobs {
                        store: Arc::new(InMemory::new()),
                        kind: "memory",
                        root: None,
                    });
                }
                "memory" => {
                    return Err(Error::invalid(LOCATION_FIELD, "memory:// takes no path"));
                }
                "s3" | "s3a" => return Blobs::open_s3(location),
                "file" => url::Url::parse(location)
                    .ok()
                    .and_then(|url| url.to_file_path().ok())
                    .ok_or_else(|| {
                        Error::invalid(LOCATION_FIELD, "file:// needs an absolute local path")
                    })?,
                other => {
                    return Err(Error::invalid(
                        LOCATION_FIELD,
                        format!(
                            "scheme `{other}` is not supported; use a directory path, \
                             file:///absolute/path, s3://bucket/prefix or memory://"
                        ),
                    ));
                }
            },
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the artifact directory");
            Error::unavailable("the artifact directory cannot be created")
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| backend("open", "", e))?
            // Completed objects are fsynced: a row saying STORED must not outlive its content.
            .with_fsync(true)
            // Deleting the last object of a month removes its empty directories.
            .with_automatic_cleanup(true);
        Ok(Blobs {
            store: Arc::new(store),
            kind: "filesystem",
            root: Some(dir),
        })
    }

    /// Opens an S3-compatible bucket from `s3://bucket[/prefix][?option=value…]`. The standard
    /// `AWS_*` environment variables configure it (credentials, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL` for MinIO, Ceph, R2 and the like); the URL's query options override
    /// them (`endpoint`, `region`, `allow_http`, … as object_store names them), except
    /// credentials, which a URL must not carry. An `http://` endpoint is allowed as given.
    /// Objects live under `prefix`, when there is one.
    pub fn open_s3(location: &str) -> Result<Blobs> {
        let url = url::Url::parse(location)
            .map_err(|e| Error::invalid(LOCATION_FIELD, format!("is not a valid URL: {e}")))?;
        let bucket = url.host_str().unwrap_or_default();
        if bucket.is_empty() {
            return Err(Error::invalid(
                LOCATION_FIELD,
                "s3:// needs a bucket: s3://bucket/prefix",
            ));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (name, value) in url.query_pairs() {
            let key: AmazonS3ConfigKey = name.parse().map_err(|_| {
                Error::invalid(LOCATION_FIELD, format!("unknown S3 option `{name}`"))
            })?;
            if matches!(
                key,
                AmazonS3ConfigKey::AccessKeyId
                    | AmazonS3ConfigKey::SecretAccessKey
                    | AmazonS3ConfigKey::Token
            ) {
                return Err(Error::invalid(
                    LOCATION_FIELD,
                    format!(
                        "`{name}` must not be in the URL (it would be logged); set \
                         AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN instead"
                    ),
                ));
            }
            builder = builder.with_config(key, value);
        }
        if builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|endpoint| endpoint.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        // reqwest's rustls has no provider of its own here (see Cargo.toml): use ring. A
        // provider installed earlier (by the process or another store) is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = builder.build().map_err(|e| {
            Error::invalid(
                LOCATION_FIELD,
                format!("cannot configure the S3 store: {e}"),
            )
        })?;
        let prefix = url.path().trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            let prefix = Path::parse(prefix).map_err(|e| {
                Error::invalid(LOCATION_FIELD, format!("has an invalid prefix: {e}"))
            })?;
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(Blobs {
            store,
            kind: "s3",
            root: None,
        })
    }

    /// The generated key of an artifact: `<tenant>/<yyyy>/<mm>/<artifact id>` (never a client
    /// file name).
    pub fn key(tenant: &TenantId, id: ArtifactId, at: DateTime<Utc>) -> String {
        format!("{}/{}/{id}", tenant.as_str(), at.format("%Y/%m"))
    }

    /// Starts writing `key`, refusing content over `max_bytes`. Nothing is visible under `key`
    /// until [`BlobWriter::finish`].
    pub async fn writer(&self, key: &str, max_bytes: u64) -> Result<BlobWriter> {
        let upload = self
            .store
            .put_multipart(&path(key)?)
            .await
            .map_err(|e| backend("start writing", key, e))?;
        Ok(BlobWriter::new(upload, key, max_bytes))
    }

    /// The content of `key` as a stream of chunks, with its size; NotFound when absent.
    pub async fn read(&self, key: &str) -> Result<Content> {
        let got = self.store.get(&path(key)?).await.map_err(|e| {
            if is_not_found(&e) {
                Error::not_found("artifact content")
            } else {
                backend("read", key, e)
            }
        })?;
        let size = got.meta.size;
        let key = key.to_owned();
        let chunks = got
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| backend("read", &key, e)))
            .boxed();
        Ok(Content { size, chunks })
    }

    /// Deletes `key`; deleting an absent key succeeds (the sweeper may retry).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend("delete", key, e)),
        }
    }
    /// Every object last changed before `before`, listed lazily across the whole store (for
    /// the orphan sweep, which compares keys with the records).
    pub fn listed_before(&self, before: DateTime<Utc>) -> BoxStream<'static, Result<Stored>> {
        self.store
            .list(None)
            .filter_map(move |item| {
                std::future::ready(match item {
                    Ok(meta) if meta.last_modified < before => Some(Ok(Stored {
                        key: meta.location.to_string(),
                        size: meta.size,
                    })),
                    Ok(_) => None,
                    Err(e) => Some(Err(backend("list", "", e))),
                })
            })
            .boxed()
    }

    /// Removes what writes cut off by a crash left behind and nobody touched since `before`:
    /// a filesystem store's staging files (`<key>#<n>`, which listings skip). Returns how many
    /// it removed. Other stores keep no such files here: an S3 bucket's incomplete multipart
    /// uploads are ended by its lifecycle rule (see the runbook).
    pub async fn remove_abandoned_writes(&self, before: SystemTime) -> Result<u64> {
        let Some(root) = self.root.clone() else {
            return Ok(0);
        };
        tokio::task::spawn_blocking(move || staging::remove_older(&root, before))
            .await
            .map_err(|e| Error::internal(format!("staging sweep task failed: {e}")))?
            .map_err(|e| {
                tracing::warn!(error = %e, "sweeping the artifact directory's staging files failed");
                Error::unavailable("the artifact store is unavailable")
            })
    }
}

/// An object found by [`Blobs::listed_before`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

impl fmt::Debug for Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blobs").field("kind", &self.kind).finish()
    }
}

/// `key` as an object path. Keys are generated by [`Blobs::key`], so a bad one is a bug.
fn path(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| Error::internal(format!("invalid artifact key {key:?}: {e}")))
}

/// Whether the backend says the object does not exist (its error enum is non-exhaustive).
fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// A backend failure: the detail goes to the log, the caller gets a generic Unavailable.
fn backend(op: &str, key: &str, e: object_store::Error) -> Error {
    tracing::warn!(op, key, error = %e, "artifact store failure");
    Error::unavailable("the artifact store is unavailable")
}

#[cfg(test)]
mod s3_tests;
#[cfg(test)]
mod tests;
