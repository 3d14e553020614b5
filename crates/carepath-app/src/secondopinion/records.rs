//! Where uploaded medical records are kept: an object store (a local folder on the
//! embedded default; S3 or the like in production through the same trait).
//!
//! An upload is written to a temporary object while its SHA-256 is computed, checked
//! against the size and checksum the client declared, and only then renamed to its
//! final key; on any failure the temporary object is deleted, so a rejected upload
//! leaves nothing behind.
//!
//! A crash can still leave pieces: a temporary object (or the local folder's staging
//! file of one) of an upload cut off, or a kept file whose request was never updated.
//! [`RecordStorage::sweep`] removes both once untouched for [`ABANDONED_AFTER`]; the
//! server runs it at start and every [`SWEEP_EVERY`]. A local folder is the owner's
//! only (0700) and each kept file too (0600).

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
/// A temporary or unlisted object untouched this long belongs to no upload in
/// progress (an upload writes a part at least every few seconds while it streams, and
/// a kept file is listed by its request right after it is moved in place), so a sweep
/// removes it.
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// How often a server sweeps its records.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Where uploads are written while they arrive.
const TEMP_PREFIX: &str = "tmp";
/// Where kept records live: `requests/<request id>/<record id>`.
const KEPT_PREFIX: &str = "requests";

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

static CONFIGURED_STORE: std::sync::OnceLock<RecordStorage> = std::sync::OnceLock::new();

/// Sets the object store records are kept in for servers started in this process
/// (the `--records-url` setting, `s3://BUCKET/PREFIX`, configured from the AWS_*
/// environment); it takes the place of the folder. The first setting wins.
pub fn configure_url(url: &str) -> Result<(), String> {
    let storage = RecordStorage::s3(url, std::iter::empty::<(&str, &str)>())?;
    if CONFIGURED_STORE.set(storage).is_err() {
        tracing::warn!("record store already set; keeping the first");
    }
    Ok(())
}

/// The object store set by [`configure_url`], if any.
pub fn configured_store() -> Option<RecordStorage> {
    CONFIGURED_STORE.get().cloned()
}

/// The objects at `s3://BUCKET/PREFIX` (the prefix may be empty), in an S3 bucket
/// (AWS or any S3-compatible server): configured from the AWS_* environment, then from
/// `options` (keys as `AmazonS3ConfigKey` reads them, such as `aws_endpoint`,
/// `aws_allow_http`, `aws_access_key_id`). Nothing is checked on the server until the
/// first request. Shared by every setting that names an object store location.
pub fn s3_objects<K: AsRef<str>, V: Into<String>>(
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(format!("{url:?} is not an s3://BUCKET/PREFIX address"));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url:?} names no bucket"));
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in options {
        let key: AmazonS3ConfigKey = key
            .as_ref()
            .parse()
            .map_err(|e| format!("S3 option {}: {e}", key.as_ref()))?;
        builder = builder.with_config(key, value);
    }
    let s3 = builder.build().map_err(|e| e.to_string())?;
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
    })
}

/// The objects at `url`: `file:///PATH` (a local folder, created when missing and
/// made the owner's only, 0700) or `s3://BUCKET/PREFIX` ([`s3_objects`], from the
/// AWS_* environment).
pub fn objects_at(url: &str) -> Result<Arc<dyn ObjectStore>, String> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!("{url:?} is not a file:///ABSOLUTE/PATH address"));
        }
        let folder = FsPath::new(path);
        std::fs::create_dir_all(folder).map_err(|e| format!("{path}: {e}"))?;
        #[cfg(unix)]
        std::fs::set_permissions(folder, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| format!("{path}: {e}"))?;
        let fs = LocalFileSystem::new_with_prefix(folder).map_err(|e| format!("{path}: {e}"))?;
        return Ok(Arc::new(fs));
    }
    if url.starts_with("s3://") {
        return s3_objects(url, std::iter::empty::<(&str, &str)>());
    }
    Err(format!(
        "{url:?} is neither a file:///PATH nor an s3://BUCKET/PREFIX address"
    ))
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
    /// A store in a local folder, created when missing and made the owner's only
    /// (0700), so no other account can read what it holds, kept or in progress.
    pub fn local(folder: &FsPath) -> std::io::Result<RecordStorage> {
        std::fs::create_dir_all(folder)?;
        #[cfg(unix)]
        std::fs::set_permissions(folder, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let fs = LocalFileSystem::new_with_prefix(folder)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(RecordStorage {
            objects: Arc::new(fs),
            folder: Some(folder.to_path_buf()),
        })
    }

    /// A store in an S3 bucket (AWS or any S3-compatible server) at
    /// `s3://BUCKET/PREFIX` (the prefix may be empty): configured from the AWS_*
    /// environment, then from `options` (keys as `AmazonS3ConfigKey` reads them, such
    /// as `aws_endpoint`, `aws_allow_http`, `aws_access_key_id`). Nothing is checked on
    /// the server until the first upload.
    pub fn s3<K: AsRef<str>, V: Into<String>>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<RecordStorage, String> {
        Ok(RecordStorage::new(s3_objects(url, options)?))
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

    /// Moves a verified upload to its final key; in a local folder the file is then
    /// the owner's only (0600).
    pub async fn commit(&self, from: &Path, to: &Path) -> AppResult<()> {
        self.objects.rename(from, to).await.map_err(internal)?;
        #[cfg(unix)]
        if let Some(folder) = &self.folder {
            let file = folder.join(to.as_ref());
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(internal)?;
        }
        Ok(())
    }

    /// Removes what crashed uploads left, untouched for [`ABANDONED_AFTER`]:
    /// temporary objects, the local folder's staging files, and kept files that no
    /// stored request lists (the request missing, or not naming the file). Kept files
    /// last modified before `checked_before` (the cutoff of an earlier sweep, which
    /// checked them) are not checked again, so a periodic sweep reads only the
    /// requests of files new since. Age is the file system's, so it is read on the
    /// wall clock. Returns what was removed and this sweep's cutoff.
    pub async fn sweep(
        &self,
        store: &Store,
        checked_before: Option<chrono::DateTime<chrono::Utc>>,
    ) -> AppResult<Swept> {
        let cutoff = carepath_core::Clock::now(&carepath_core::SystemClock)
            - chrono::Duration::from_std(ABANDONED_AFTER).unwrap_or(chrono::TimeDelta::MAX);
        let mut swept = Swept {
            cutoff,
            ..Swept::default()
        };

        let mut temporary = self.objects.list(Some(&Path::from(TEMP_PREFIX)));
        while let Some(meta) = temporary.next().await {
            let meta = meta.map_err(internal)?;
            if meta.last_modified < cutoff {
                self.delete(&meta.location).await;
                swept.temporary += 1;
            }
        }
        if let Some(folder) = self.folder.clone() {
            let staged = tokio::task::spawn_blocking(move || remove_staging(&folder, cutoff))
                .await
                .map_err(internal)?;
            swept.temporary += staged;
        }

        // Files per request, so each request is read once.
        let mut kept: std::collections::BTreeMap<String, Vec<Path>> = Default::default();
        let mut listed = self.objects.list(Some(&Path::from(KEPT_PREFIX)));
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(internal)?;
            if meta.last_modified >= cutoff
                || checked_before.is_some_and(|before| meta.last_modified < before)
            {
                continue;
            }
            let request = meta.location.parts().nth(1).map(|p| p.as_ref().to_owned());
            kept.entry(request.unwrap_or_default())
                .or_default()
                .push(meta.location);
        }
        for (request, files) in kept {
            let listed: Vec<String> = match store.get_opinion_request(&request).await {
                Ok(record) => super::record::request_of(&record)?
                    .records
                    .into_iter()
                    .filter_map(|r| r.object_key)
                    .collect(),
                Err(carepath_store::StoreError::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            for file in files {
                if !listed.iter().any(|key| key.as_str() == file.as_ref()) {
                    self.delete(&file).await;
                    swept.orphans += 1;
                }
            }
        }
        if swept.temporary + swept.orphans > 0 {
            tracing::info!(
                temporary = swept.temporary,
                orphans = swept.orphans,
                "removed record files left by interrupted uploads"
            );
        }
        Ok(swept)
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

/// What one [`RecordStorage::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Temporary objects and staging files of uploads cut off.
    pub temporary: usize,
    /// Kept files no request lists.
    pub orphans: usize,
    /// Files modified before this were considered: the next sweep's `checked_before`.
    pub cutoff: chrono::DateTime<chrono::Utc>,
}

/// Removes the local folder's staging files (`<name>#<n>`, which the object store
/// does not list) modified before `cutoff`; returns how many.
fn remove_staging(folder: &FsPath, cutoff: chrono::DateTime<chrono::Utc>) -> usize {
    let mut removed = 0;
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let staging = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains('#'));
            let old = meta
                .modified()
                .is_ok_and(|m| chrono::DateTime::<chrono::Utc>::from(m) < cutoff);
            if staging && old && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
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
