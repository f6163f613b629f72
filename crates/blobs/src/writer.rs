//! Content on its way into the store: counted against the limit and hashed chunk by chunk, with
//! at most a few parts buffered or in flight.

use std::fmt::{self, Write as _};

use bytes::Bytes;
use object_store::{MultipartUpload, WriteMultipart};
use sha2::{Digest, Sha256};
use switchyard_types::{Error, Result};

use crate::backend;

/// Parts (5 MiB each) uploading at once; `write` waits while this many are in flight, so a
/// writer holds at most this many parts plus the one it is filling.
const MAX_PARTS_IN_FLIGHT: usize = 2;

/// Content being written: hashed (SHA-256) and counted on the way. Dropping it without
/// [`finish`](Self::finish) (a cancelled request) leaves nothing under the key.
pub struct BlobWriter {
    upload: WriteMultipart,
    key: String,
    hasher: Sha256,
    size: u64,
    max_bytes: u64,
    /// The error that broke this writer; every later call repeats it.
    failed: Option<Error>,
}

/// A completed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl BlobWriter {
    pub(crate) fn new(upload: Box<dyn MultipartUpload>, key: &str, max_bytes: u64) -> Self {
        BlobWriter {
            upload: WriteMultipart::new(upload),
            key: key.to_owned(),
            hasher: Sha256::new(),
            size: 0,
            max_bytes,
            failed: None,
        }
    }

    /// Appends a chunk, waiting while too many parts are in flight. TooLarge once the total
    /// would pass `max_bytes`; after any error the writer is broken and the caller aborts it.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        if self.size.saturating_add(len) > self.max_bytes {
            let e = Error::too_large(format!(
                "the artifact is larger than the limit of {} bytes",
                self.max_bytes
            ));
            return Err(self.failed.insert(e).clone());
        }
        if let Err(e) = self.upload.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
            return Err(self.failed.insert(backend("write", &self.key, e)).clone());
        }
        self.hasher.update(&chunk);
        self.size += len;
        self.upload.put(chunk);
        Ok(())
    }

    /// Completes the object, making it visible under its key: its SHA-256 and size. A broken
    /// writer is aborted instead and its error returned.
    pub async fn finish(self) -> Result<Written> {
        if let Some(e) = self.failed {
            if let Err(abort) = self.upload.abort().await {
                tracing::warn!(key = %self.key, error = %abort, "cannot abort a broken artifact upload");
            }
            return Err(e);
        }
        // On failure `WriteMultipart::finish` aborts the upload itself.
        self.upload
            .finish()
            .await
            .map_err(|e| backend("finish", &self.key, e))?;
        let mut sha256 = String::with_capacity(64);
        for byte in self.hasher.finalize() {
            let _ = write!(sha256, "{byte:02x}");
        }
        Ok(Written {
            sha256,
            size: self.size,
        })
    }

    /// Discards what was written; nothing is left in the store.
    pub async fn abort(self) -> Result<()> {
        self.upload
            .abort()
            .await
            .map_err(|e| backend("abort", &self.key, e))
    }
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("key", &self.key)
            .field("size", &self.size)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}
