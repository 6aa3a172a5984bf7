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
    /// The directory of a local store, where interrupted streamed writes leave staging files.
    local_root: Option<PathBuf>,
}

/// A stored object as a local file (see [`Storage::local_file`]).
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    /// The temporary copy's directory, removed on drop.
    _copy: Option<tempfile::TempDir>,
}

impl LocalFile {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// One stored object, as listed.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub key: String,
    pub last_modified: chrono::DateTime<chrono::Utc>,
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
                local_root: None,
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
            local_root: Some(dir),
        })
    }

    /// Test-only fault injection: the next `count` calls to [`Storage::put`] or
    /// [`StorageWriter::write`] fail with a transient error, as a flaky object store would.
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
            failing_writes: self.failing_writes.clone(),
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

    /// Streams `range` of an object (a range past its end is cut at the end).
    pub async fn get_range_stream(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&Path::from(key), options)
            .await
            .map_err(not_found(key))?;
        Ok(result
            .into_stream()
            .map(|r| r.map_err(StorageError::from))
            .boxed())
    }

    /// The object as a file on this machine, for tools that need a seekable file (ffprobe,
    /// ffmpeg: an MP4's index may sit at its end): the stored file itself with local storage,
    /// a temporary copy (removed when dropped) with S3.
    pub async fn local_file(&self, key: &str) -> Result<LocalFile, StorageError> {
        if let Some(root) = &self.local_root {
            let path = root.join(key);
            if !tokio::fs::try_exists(&path).await? {
                return Err(StorageError::NotFound(key.to_owned()));
            }
            return Ok(LocalFile { path, _copy: None });
        }
        let dir = tempfile::Builder::new().prefix("kiln-").tempdir()?;
        let path = dir.path().join("object");
        let (_, mut stream) = self.get_stream(key).await?;
        let mut file = tokio::fs::File::create(&path).await?;
        while let Some(chunk) = stream.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk?).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        Ok(LocalFile {
            path,
            _copy: Some(dir),
        })
    }

    /// Stores the local file at `path` as `key`, streamed; returns its size.
    pub async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<u64, StorageError> {
        let mut file = tokio::fs::File::open(path).await?;
        let mut writer = self.writer(key).await?;
        let mut buffer = vec![0; PART_SIZE];
        let mut total = 0u64;
        loop {
            let read = tokio::io::AsyncReadExt::read(&mut file, &mut buffer).await?;
            if read == 0 {
                break;
            }
            total += read as u64;
            writer.write(&buffer[..read]).await?;
        }
        writer.finish().await?;
        Ok(total)
    }

    /// Deletes an object; deleting one that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix` (e.g. `originals/`), streamed so a large store is never
    /// held in memory.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<StoredObject, StorageError>> {
        self.store
            .list(Some(&Path::from(prefix)))
            .map(|meta| {
                let meta = meta?;
                Ok(StoredObject {
                    key: meta.location.to_string(),
                    last_modified: meta.last_modified,
                })
            })
            .boxed()
    }

    /// Removes the staging files that streamed writes interrupted by a crash left behind in a
    /// local store (`<key>#<n>`, invisible to [`Storage::list`]), if older than `older_than`.
    /// Returns how many were removed. An S3 store has no such files: its incomplete multipart
    /// uploads are expired by the bucket's lifecycle rule (see the README).
    pub async fn remove_stale_staging_files(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, StorageError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(0);
        };
        let removed = tokio::task::spawn_blocking(move || remove_staging_under(&root, older_than))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))??;
        Ok(removed)
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
    /// The storage's injected faults (see [`Storage::fail_next_writes`]).
    failing_writes: Arc<AtomicU64>,
}

impl StorageWriter {
    /// Appends bytes, waiting when too many parts are still in flight (back-pressure).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let injected = self
            .failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Err(StorageError::Injected);
        }
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

/// Walks `dir` removing staging files (`name#digits`) not modified for `older_than`.
fn remove_staging_under(
    dir: &std::path::Path,
    older_than: std::time::Duration,
) -> Result<u64, std::io::Error> {
    let mut removed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed meanwhile (automatic cleanup of empty directories).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
                continue;
            }
            let name = entry.file_name();
            if !is_staging_name(&name.to_string_lossy()) {
                continue;
            }
            let age = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
            if age >= older_than {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

/// object_store's local staging files are the final name plus `#` and a number.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(stem, n)| {
        !stem.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod staging_tests {
    use super::*;

    #[test]
    fn staging_names_are_told_from_objects() {
        assert!(is_staging_name("0190-abc#1"));
        assert!(is_staging_name("w320.jpg#12"));
        assert!(!is_staging_name("0190-abc"));
        assert!(!is_staging_name("a#b"));
        assert!(!is_staging_name("#1"));
    }

    #[tokio::test]
    async fn only_stale_staging_files_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::from_url(&dir.path().display().to_string()).expect("local");
        storage
            .put("originals/a", Bytes::from_static(b"kept"))
            .await
            .expect("put");
        std::fs::write(dir.path().join("originals/b#3"), b"partial").expect("staging file");
        let young = storage
            .remove_stale_staging_files(std::time::Duration::from_secs(3600))
            .await
            .expect("sweep");
        assert_eq!(young, 0);
        let removed = storage
            .remove_stale_staging_files(std::time::Duration::ZERO)
            .await
            .expect("sweep");
        assert_eq!(removed, 1);
        assert!(storage.exists("originals/a").await.expect("head"));
        assert!(!dir.path().join("originals/b#3").exists());
    }
}
