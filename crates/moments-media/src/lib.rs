#![doc = include_str!("../README.md")]

use std::io::Write as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use moments_domain::InfraError;
use moments_domain::media::{MediaKey, MediaStore};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use rand::Rng as _;

/// Failure to set up a media store.
#[derive(Debug, thiserror::Error)]
pub enum MediaStoreError {
    /// The directory could not be created.
    #[error("cannot use media directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The object store URL or its options are not usable.
    #[error("invalid media store URL: {0}")]
    Url(String),
}

/// Media as files in one directory: the embedded default.
///
/// A `put` writes a temporary file in the directory, flushes it to disk, renames it to its key
/// and flushes the directory, so an acknowledged upload survives a crash and a reader never
/// sees half a file.
#[derive(Debug, Clone)]
pub struct LocalMediaStore {
    root: PathBuf,
}

impl LocalMediaStore {
    /// Uses (creating if needed) `root`. Blocking: call it at start-up.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, MediaStoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| MediaStoreError::Directory {
            path: root.display().to_string(),
            source,
        })?;
        Ok(Self { root })
    }

    fn path(&self, key: &MediaKey) -> PathBuf {
        // A key is 32 hex digits and an extension (MediaKey::parse): never a path.
        self.root.join(key.as_str())
    }
}

fn disk_error(e: std::io::Error) -> InfraError {
    InfraError::unavailable("media storage", e)
}

fn write_durably(root: &FsPath, target: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = root.join(format!(".upload-{:016x}", rand::rng().random::<u64>()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, target)?;
        std::fs::File::open(root)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, InfraError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| InfraError::internal(format!("media task failed: {e}")))?
        .map_err(disk_error)
}

#[async_trait]
impl MediaStore for LocalMediaStore {
    async fn put(&self, key: &MediaKey, bytes: Vec<u8>) -> Result<(), InfraError> {
        let (root, target) = (self.root.clone(), self.path(key));
        blocking(move || write_durably(&root, &target, &bytes)).await
    }

    async fn get(&self, key: &MediaKey) -> Result<Option<Vec<u8>>, InfraError> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(disk_error(e)),
        }
    }

    async fn delete(&self, key: &MediaKey) -> Result<bool, InfraError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(disk_error(e)),
        }
    }

    async fn check(&self) -> Result<(), InfraError> {
        tokio::fs::metadata(&self.root)
            .await
            .map(drop)
            .map_err(disk_error)
    }
}

/// Media in an object store named by URL: `s3://bucket/prefix` for S3 and any S3-compatible
/// service (MinIO, Ceph, R2, moto), with options such as `aws_endpoint`, `aws_region`,
/// `aws_access_key_id`, `aws_secret_access_key` and `aws_allow_http`.
#[derive(Clone)]
pub struct ObjectMediaStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl std::fmt::Debug for ObjectMediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectMediaStore")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl ObjectMediaStore {
    /// The store at `url` with `options` (credentials among them; never printed).
    pub fn from_url<K: AsRef<str>, V: Into<String>>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, MediaStoreError> {
        let parsed = url::Url::parse(url).map_err(|e| MediaStoreError::Url(e.to_string()))?;
        let (store, prefix) = object_store::parse_url_opts(&parsed, options)
            .map_err(|e| MediaStoreError::Url(e.to_string()))?;
        Ok(Self {
            store: Arc::from(store),
            prefix,
        })
    }

    fn path(&self, key: &MediaKey) -> Path {
        self.prefix.clone().join(key.as_str())
    }
}

fn object_error(e: object_store::Error) -> InfraError {
    InfraError::unavailable("media storage", e)
}

#[async_trait]
impl MediaStore for ObjectMediaStore {
    async fn put(&self, key: &MediaKey, bytes: Vec<u8>) -> Result<(), InfraError> {
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(object_error)
    }

    async fn get(&self, key: &MediaKey) -> Result<Option<Vec<u8>>, InfraError> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(object_error)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(object_error(e)),
        }
    }

    async fn delete(&self, key: &MediaKey) -> Result<bool, InfraError> {
        let path = self.path(key);
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(object_error(e)),
        }
        self.store.delete(&path).await.map_err(object_error)?;
        Ok(true)
    }

    async fn check(&self) -> Result<(), InfraError> {
        match self.store.head(&self.prefix.clone().join(".ready")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error(e)),
        }
    }
}
