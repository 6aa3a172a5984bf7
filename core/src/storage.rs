//! Where originals and variants live: a local directory (one host) or S3-compatible object
//! storage (several hosts), both through `object_store` so the rest of Kiln sees one interface.

use std::{
    ops::Range,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart, aws::AmazonS3Builder,
    local::LocalFileSystem, path::Path, prefix::PrefixStore,
};

/// Storage failures. `NotFound` is its own case because callers treat it differently.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("invalid storage url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("storage: {0}")]
    Backend(#[from] object_store::Error),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: injected write failure (KILN_TEST_FAIL_STORAGE_WRITES)")]
    Injected,
}

/// A handle on the configured storage; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    description: Arc<str>,
    /// Test-only: how many more whole-object writes fail on purpose (fault tests).
    failing_writes: Arc<AtomicU64>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Storage").field(&self.description).finish()
    }
}

/// The directory of a local storage url (`file:///dir` or a plain path), or `None` for S3.
pub fn local_dir(url: &str) -> Option<PathBuf> {
    if url.starts_with("s3://") {
        return None;
    }
    Some(PathBuf::from(url.strip_prefix("file://").unwrap_or(url)))
}

impl Storage {
    /// Opens `file:///dir`, a plain directory path (created if missing), or `s3://bucket[/prefix]`
    /// with credentials, region and endpoint from the usual `AWS_*` variables
    /// (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP=true` for a plain-HTTP server such as MinIO).
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let invalid = |reason: String| StorageError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket name".into()));
            }
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            let store: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
                "" => Arc::new(s3),
                prefix => Arc::new(PrefixStore::new(s3, prefix)),
            };
            return Ok(Self {
                store,
                description: url.into(),
                failing_writes: Arc::default(),
            });
        }
        let dir = local_dir(url).ok_or_else(|| invalid("unsupported scheme".into()))?;
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize()?;
        // Automatic cleanup removes empty directories left by deletes.
        let local = LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(local),
            description: dir.display().to_string().into(),
            failing_writes: Arc::default(),
        })
    }

    /// Test-only fault injection: the next `count` calls to [`Storage::put`] fail with a
    /// transient error, as a flaky object store would.
    pub fn fail_next_writes(self, count: u64) -> Self {
        self.failing_writes.store(count, Ordering::SeqCst);
        self
    }

    /// Where this storage points, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Starts a streamed write: memory stays bounded by the part size whatever the object's size.
    /// Nothing is visible at `key` until [`StorageWriter::finish`].
    pub async fn writer(&self, key: &str) -> Result<StorageWriter, StorageError> {
        let upload = self.store.put_multipart(&Path::from(key)).await?;
        Ok(StorageWriter {
            inner: WriteMultipart::new_with_chunk_size(upload, PART_SIZE),
        })
    }

    /// Writes a whole object at once (atomically).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let injected = self
            .failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Err(StorageError::Injected);
        }
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let result = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(not_found(key))?;
        Ok(result.bytes().await?)
    }

    /// Reads a byte range of an object (clamped to its end).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let path = Path::from(key);
        let size = self.store.head(&path).await.map_err(not_found(key))?.size;
        let range = range.start.min(size)..range.end.min(size);
        Ok(self.store.get_range(&path, range).await?)
    }

    /// Streams an object: its size, then its bytes in chunks.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, StorageError>>), StorageError> {
        let result = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(not_found(key))?;
        let size = result.meta.size;
        let stream = result.into_stream().map(|r| r.map_err(StorageError::from));
        Ok((size, stream.boxed()))
    }

    /// Deletes an object; deleting one that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// 5 MiB: the smallest part S3 accepts, and the most a streamed upload holds in memory per part.
const PART_SIZE: usize = 5 * 1024 * 1024;

fn not_found(key: &str) -> impl FnOnce(object_store::Error) -> StorageError + '_ {
    move |e| match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_owned()),
        other => other.into(),
    }
}

/// A streamed write in progress; dropping it without [`finish`](Self::finish) leaves nothing
/// visible, and [`abort`](Self::abort) also removes the parts already written.
pub struct StorageWriter {
    inner: WriteMultipart,
}

impl StorageWriter {
    /// Appends bytes, waiting when too many parts are still in flight (back-pressure).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.wait_for_capacity(2).await?;
        self.inner.write(bytes);
        Ok(())
    }

    /// Completes the object.
    pub async fn finish(self) -> Result<(), StorageError> {
        self.inner.finish().await?;
        Ok(())
    }

    /// Abandons the object and removes what was written so far.
    pub async fn abort(self) -> Result<(), StorageError> {
        self.inner.abort().await?;
        Ok(())
    }
}
