//! The artifact store (DESIGN §3.7): artifact content by server-generated key, kept in a local
//! directory, an S3-compatible bucket, an Azure Blob container (or in memory) through `object_store`, hashed and
//! size-limited while it streams in.

mod cloud;
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
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
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
    /// created), `s3://bucket[/prefix][?option=value…]` (an S3-compatible bucket) or
    /// `az://container[/prefix][?option=value…]` (an Azure Blob container), configured as the
    /// module `cloud` says, or `memory://` (tests, dev without disk).
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
                "s3" | "s3a" => return cloud::s3(location),
                "az" | "azure" => return cloud::azure(location),
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
                             file:///absolute/path, s3://bucket/prefix, az://container/prefix \
                             or memory://"
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
mod cloud_tests;
#[cfg(test)]
mod tests;
