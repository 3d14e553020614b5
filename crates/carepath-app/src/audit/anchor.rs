//! Audit anchors: copies of each chain's newest entry kept outside the database, in an
//! append-only file, so removing the newest entries and setting a chain's head back is
//! caught by `carepath audit verify` (see [`carepath_store::Store::verify_audit_anchored`]).
//!
//! The file holds one JSON line per write: when it was written and the heads that
//! changed since the line before (every head on a process's first write). It is opened
//! for appending only and created readable by its owner only; keep it on storage the
//! database's administrators cannot rewrite (another host, a write-once bucket synced
//! from it) for the anchors to mean more than the database itself.

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use carepath_store::{AuditHead, Store};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::{AppError, AppResult};

/// How often a server copies the heads out: the longest time a removed newest entry
/// can go unnoticed by verify.
pub const ANCHOR_EVERY: Duration = Duration::from_secs(60);

/// One line of the file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AnchorLine {
    at: DateTime<Utc>,
    heads: Vec<AuditHead>,
}

/// The anchor file of a server, and what it last wrote there.
#[derive(Debug)]
pub struct AnchorFile {
    path: PathBuf,
    written: Vec<AuditHead>,
}

impl AnchorFile {
    /// The file at `path` (created on the first write).
    pub fn new(path: PathBuf) -> Self {
        AnchorFile {
            path,
            written: Vec::new(),
        }
    }

    /// Appends the heads that changed since this process's last write, if any;
    /// returns how many were written.
    pub fn append(&mut self, heads: &[AuditHead], at: DateTime<Utc>) -> AppResult<usize> {
        let changed: Vec<AuditHead> = heads
            .iter()
            .filter(|h| !self.written.contains(h))
            .cloned()
            .collect();
        if changed.is_empty() {
            return Ok(0);
        }
        let mut line = serde_json::to_string(&AnchorLine {
            at,
            heads: changed.clone(),
        })
        .map_err(|e| AppError::Internal(format!("audit anchor: {e}")))?;
        line.push('\n');
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let error = |e: std::io::Error| {
            AppError::Internal(format!("audit anchor file {}: {e}", self.path.display()))
        };
        let mut file = options.open(&self.path).map_err(error)?;
        // One write per line, so lines of processes sharing the file do not mix.
        file.write_all(line.as_bytes()).map_err(error)?;
        file.sync_data().map_err(error)?;
        self.written = heads.to_vec();
        Ok(changed.len())
    }
}

/// Every head anchored in the file at `path`, oldest line first. A line that is not
/// an anchor line is an error naming its number (a torn last line after a crash
/// included: remove it by hand once checked).
pub fn read_anchors(path: &Path) -> AppResult<Vec<AuditHead>> {
    let error =
        |e: String| AppError::Internal(format!("audit anchor file {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let mut heads = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| error(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: AnchorLine =
            serde_json::from_str(&line).map_err(|e| error(format!("line {}: {e}", index + 1)))?;
        heads.extend(parsed.heads);
    }
    Ok(heads)
}

/// Copies the audit heads of `store` to `file` now and every [`ANCHOR_EVERY`] until
/// `stop`; a failure is logged and tried again at the next round.
pub async fn run_anchoring(store: Store, mut file: AnchorFile, stop: CancellationToken) {
    loop {
        match store.audit_heads().await {
            Ok(heads) => {
                let now = carepath_core::Clock::now(&carepath_core::SystemClock);
                if let Err(e) = file.append(&heads, now) {
                    tracing::warn!(error = %e, "audit anchor not written");
                }
            }
            Err(e) => tracing::warn!(error = %e, "audit heads not read for anchoring"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(ANCHOR_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(chain: i32, seq: i64) -> AuditHead {
        AuditHead {
            chain,
            seq,
            hash: format!("h{seq}"),
        }
    }

    #[test]
    fn lines_hold_what_changed_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors");
        let mut file = AnchorFile::new(path.clone());
        let at = Utc::now();
        assert_eq!(file.append(&[head(1, 1), head(2, 2)], at).unwrap(), 2);
        assert_eq!(file.append(&[head(1, 1), head(2, 2)], at).unwrap(), 0);
        assert_eq!(file.append(&[head(1, 3), head(2, 2)], at).unwrap(), 1);
        assert_eq!(
            read_anchors(&path).unwrap(),
            [head(1, 1), head(2, 2), head(1, 3)]
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A second process appends; the first lines stay.
        let mut other = AnchorFile::new(path.clone());
        assert_eq!(other.append(&[head(1, 3), head(2, 4)], at).unwrap(), 2);
        assert_eq!(read_anchors(&path).unwrap().len(), 5);

        std::fs::write(&path, "{\"at\": \"nonsense\"}\n").unwrap();
        let err = read_anchors(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
