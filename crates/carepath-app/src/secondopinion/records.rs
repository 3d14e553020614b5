//! Where uploaded medical records are kept: an object store (a local folder on the
//! embedded default; S3 or the like in production through the same trait).
//!
//! An upload is written to a temporary object while its SHA-256 is computed, checked
//! against the size and checksum the client declared, and only then renamed to its
//! final key; on any failure the temporary object is deleted, so a rejected upload
//! leaves nothing behind.

use std::{
    path::{Path as FsPath, PathBuf},
    sync::Arc,
};

use carepath_store::Store;
use futures::StreamExt;
use object_store::{
    ObjectStore, ObjectStoreExt, WriteMultipart, local::LocalFileSystem, path::Path,
};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};

/// Largest piece of a record taken or handed out at once: an upload's chunks may be
/// no larger, and a download comes in pieces of this size (a gRPC message's limit is
/// 4 MiB).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// Parts written to the object store at once while an upload streams in.
const PARTS_IN_FLIGHT: usize = 4;

/// The lowercase hex SHA-256 of `bytes`: the checksum an upload's header declares.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

static CONFIGURED_FOLDER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets the records folder for servers started in this process (the `--records-dir`
/// setting). The first setting wins; servers started without one use the default.
pub fn configure_folder(folder: PathBuf) {
    if CONFIGURED_FOLDER.set(folder.clone()).is_err() && CONFIGURED_FOLDER.get() != Some(&folder) {
        tracing::warn!(folder = %folder.display(), "records folder already set; keeping the first");
    }
}

/// The folder set by [`configure_folder`], if any.
pub fn configured_folder() -> Option<PathBuf> {
    CONFIGURED_FOLDER.get().cloned()
}

/// The record store of a server.
#[derive(Debug, Clone)]
pub struct RecordStorage {
    objects: Arc<dyn ObjectStore>,
    /// The local folder, when the store is one; shown in logs.
    folder: Option<PathBuf>,
}

/// What arrived: the exact size and the SHA-256 of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The exact number of bytes received.
    pub size: u64,
    /// Their lowercase hex SHA-256.
    pub sha256: String,
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("record storage: {e}"))
}

impl RecordStorage {
    /// A store in a local folder, created when missing.
    pub fn local(folder: &FsPath) -> std::io::Result<RecordStorage> {
        std::fs::create_dir_all(folder)?;
        let fs = LocalFileSystem::new_with_prefix(folder)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(RecordStorage {
            objects: Arc::new(fs),
            folder: Some(folder.to_path_buf()),
        })
    }

    /// Any object store (S3 and the like in production).
    pub fn new(objects: Arc<dyn ObjectStore>) -> RecordStorage {
        RecordStorage {
            objects,
            folder: None,
        }
    }

    /// The local folder records are kept in, when the store is one.
    pub fn folder(&self) -> Option<&FsPath> {
        self.folder.as_deref()
    }

    /// The default folder: beside a SQLite database (`carepath.db` keeps its records
    /// in `carepath.db.records/`); for PostgreSQL, a folder per database under the
    /// system's temporary folder, which suits tests and trials only: production sets
    /// `--records-dir` (or an object store).
    pub fn default_folder(store: &Store) -> PathBuf {
        if let Some(file) = store.sqlite_file() {
            let mut name = file.file_name().unwrap_or_default().to_os_string();
            name.push(".records");
            return file.with_file_name(name);
        }
        let db = store
            .postgres_database()
            .unwrap_or_else(|| "carepath".into());
        std::env::temp_dir().join("carepath-records").join(db)
    }

    /// Streams `chunks` into the temporary object `key`, hashing as it goes. More
    /// bytes than `declared` is an error at once; the caller checks the result
    /// against the declaration. On error the partial object is removed.
    pub async fn receive<S>(&self, key: &Path, mut chunks: S, declared: u64) -> AppResult<Received>
    where
        S: futures::Stream<Item = AppResult<bytes::Bytes>> + Unpin,
    {
        let upload = self.objects.put_multipart(key).await.map_err(internal)?;
        let mut writer = WriteMultipart::new(upload);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let outcome: AppResult<()> = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > declared {
                    return Err(AppError::field(
                        "header.size_bytes",
                        format!("more bytes arrived than the {declared} declared"),
                    ));
                }
                hasher.update(&chunk);
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(internal)?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            let _ = writer.abort().await;
            self.delete(key).await;
            return Err(e);
        }
        writer.finish().await.map_err(internal)?;
        Ok(Received {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Moves a verified upload to its final key.
    pub async fn commit(&self, from: &Path, to: &Path) -> AppResult<()> {
        self.objects.rename(from, to).await.map_err(internal)
    }

    /// Removes an object; a missing one is fine (the goal is that it is gone).
    pub async fn delete(&self, key: &Path) {
        match self.objects.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(error = %e, key = %key, "could not delete a record object"),
        }
    }

    /// The object's bytes, as a stream of pieces of `MAX_CHUNK_BYTES` (the last may be
    /// shorter): the store's own pieces are small, and one message per piece would be
    /// wasteful.
    pub async fn read(
        &self,
        key: &Path,
    ) -> AppResult<impl futures::Stream<Item = AppResult<bytes::Bytes>> + Send + use<>> {
        let got = self.objects.get(key).await.map_err(internal)?;
        let pieces = got.into_stream();
        Ok(futures::stream::unfold(
            (pieces, false),
            |(mut pieces, done)| async move {
                if done {
                    return None;
                }
                let mut buf = Vec::with_capacity(MAX_CHUNK_BYTES);
                while buf.len() < MAX_CHUNK_BYTES {
                    match pieces.next().await {
                        Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                        Some(Err(e)) => return Some((Err(internal(e)), (pieces, true))),
                        None if buf.is_empty() => return None,
                        None => return Some((Ok(buf.into()), (pieces, true))),
                    }
                }
                let rest = buf.split_off(MAX_CHUNK_BYTES);
                if !rest.is_empty() {
                    // Keep the remainder for the next message.
                    let head = std::mem::replace(&mut buf, rest);
                    let rest = buf;
                    let pieces =
                        futures::stream::once(futures::future::ready(Ok(bytes::Bytes::from(rest))))
                            .chain(pieces)
                            .boxed();
                    return Some((Ok(head.into()), (pieces, false)));
                }
                Some((Ok(buf.into()), (pieces, false)))
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<Vec<u8>>) -> impl futures::Stream<Item = AppResult<bytes::Bytes>> + Unpin {
        futures::stream::iter(parts.into_iter().map(|p| Ok(p.into())))
    }

    #[tokio::test]
    async fn a_verified_upload_is_kept_and_an_oversized_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let storage = RecordStorage::local(dir.path()).unwrap();
        let tmp = Path::from("tmp/a");
        let got = storage
            .receive(
                &tmp,
                chunks(vec![b"hello ".to_vec(), b"world".to_vec()]),
                11,
            )
            .await
            .unwrap();
        assert_eq!(got.size, 11);
        assert_eq!(
            got.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let final_key = Path::from("requests/r/a");
        storage.commit(&tmp, &final_key).await.unwrap();
        assert!(dir.path().join("requests/r/a").exists());
        assert!(!dir.path().join("tmp/a").exists());

        let tmp = Path::from("tmp/b");
        let err = storage
            .receive(&tmp, chunks(vec![vec![0; 8], vec![0; 8]]), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Invalid(_)), "{err:?}");
        let left: Vec<_> = walk(dir.path());
        assert_eq!(left, [dir.path().join("requests/r/a")]);
    }

    fn walk(dir: &FsPath) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
