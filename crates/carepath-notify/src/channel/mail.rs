//! Postal mail: each notice becomes a PDF letter in a print-batch folder, listed in the
//! batch manifest that the print-and-mail vendor works from.
//!
//! Layout of the folder:
//!
//! - `letters/<notice key>.pdf`: one letter, written to a temporary file, synced and
//!   renamed into place, so the vendor never picks up half a letter;
//! - `manifest.jsonl`: one [`ManifestEntry`] per letter, appended once the letter is
//!   in place.
//!
//! Delivering the same notice again finds its key in the manifest and writes nothing.
//! A crash between the rename and the manifest line leaves a letter without a line;
//! the retry rewrites the same letter and adds the line, so the vendor (who mails
//! what the manifest lists) still mails it exactly once. One dispatcher process should
//! own a batch folder; within it, deliveries are serialized.
//!
//! Letters carry members' names, addresses and decisions: the folder and `letters/`
//! are the owner's only (0700), and so is every file written in them (0600). The
//! vendor's pick-up runs as the server's user, or is granted access by the operator.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use carepath_core::ContactChannel;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::registry::expect_channel;
use super::{Channel, ChannelError, DeliveryReceipt};
use crate::letter::{LetterAddress, render_letter};
use crate::notice::{Destination, RenderedNotice};

/// Where print batches are written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    pub batch_dir: PathBuf,
}

/// One line of `manifest.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub idempotency_key: String,
    /// Relative to the batch folder: `letters/<key>.pdf`.
    pub file: String,
    pub recipient: String,
    /// The address block as printed, one line per entry.
    pub address: Vec<String>,
    /// ISO country code, for postage.
    pub country: String,
    pub pages: usize,
    pub letter_date: String,
    pub template: String,
}

/// Writes letters into a print-batch folder.
#[derive(Debug)]
pub struct MailChannel {
    dir: PathBuf,
    /// Serializes manifest check-and-append within this process.
    lock: Mutex<()>,
}

const MANIFEST: &str = "manifest.jsonl";

impl MailChannel {
    /// Creates the batch folder if needed, and makes it and `letters/` the owner's only.
    pub fn new(settings: &MailSettings) -> Result<Self, ChannelError> {
        let error = |e: std::io::Error| {
            ChannelError::retryable(format!(
                "cannot create print batch folder {}: {e}",
                settings.batch_dir.display()
            ))
        };
        let letters = settings.batch_dir.join("letters");
        std::fs::create_dir_all(&letters).map_err(error)?;
        for folder in [&settings.batch_dir, &letters] {
            owner_only(folder, 0o700).map_err(error)?;
        }
        Ok(Self {
            dir: settings.batch_dir.clone(),
            lock: Mutex::new(()),
        })
    }

    /// Every entry in the manifest, in the order written.
    pub fn manifest(&self) -> Result<Vec<ManifestEntry>, ChannelError> {
        read_manifest(&self.dir.join(MANIFEST))
    }
}

#[async_trait]
impl Channel for MailChannel {
    fn kind(&self) -> ContactChannel {
        ContactChannel::Mail
    }

    async fn deliver(&self, notice: &RenderedNotice) -> Result<DeliveryReceipt, ChannelError> {
        expect_channel(ContactChannel::Mail, notice)?;
        let Destination::Mail { address } = &notice.destination else {
            return Err(ChannelError::permanent(
                "mail notice without a postal address",
            ));
        };
        let key = notice.key.as_str();
        let file = format!("letters/{key}.pdf");
        let receipt = |detail: &str| DeliveryReceipt {
            channel: ContactChannel::Mail,
            reference: file.clone(),
            detail: Some(detail.to_owned()),
        };
        let _guard = self.lock.lock().await;
        let manifest_path = self.dir.join(MANIFEST);
        if read_manifest(&manifest_path)?
            .iter()
            .any(|e| e.idempotency_key == key)
        {
            return Ok(receipt("already in the print batch"));
        }
        let letter_address = LetterAddress::Postal {
            name: notice.recipient_name.clone(),
            address: address.clone(),
        };
        let letter = render_letter(notice, &letter_address).map_err(ChannelError::permanent)?;
        let entry = ManifestEntry {
            idempotency_key: key.to_owned(),
            file: file.clone(),
            recipient: notice.recipient_name.clone(),
            address: letter_address.lines(),
            country: address.country.to_string(),
            pages: letter.pages,
            letter_date: notice.date.to_string(),
            template: format!(
                "{} v{} ({})",
                notice.template.id, notice.template.version, notice.template.language
            ),
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            write_atomically(&dir, &dir.join(&entry.file), &letter.pdf)?;
            append_line(&dir.join(MANIFEST), &entry)
        })
        .await
        .map_err(|e| ChannelError::retryable(format!("letter writer stopped: {e}")))??;
        Ok(receipt(&format!("{} page(s) written", letter.pages)))
    }
}

fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>, ChannelError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ChannelError::retryable(format!("read manifest: {e}"))),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| ChannelError::retryable(format!("manifest line {l:?}: {e}")))
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced before
/// the rename so the letter is whole once its name appears.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), ChannelError> {
    let io = |what: &str, e: std::io::Error| {
        ChannelError::retryable(format!("{what} {}: {e}", path.display()))
    };
    let parent = path.parent().unwrap_or(dir);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    let mut f = owner_only_file()
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    f.write_all(bytes).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    if let Ok(d) = std::fs::File::open(parent) {
        // Persist the rename itself; not every platform can sync a folder.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Options creating a file readable and writable by its owner only.
fn owner_only_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Sets `path`'s permissions to `mode` (Unix; elsewhere nothing).
fn owner_only(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Appends one JSON line in a single write, then syncs.
fn append_line(path: &Path, entry: &ManifestEntry) -> Result<(), ChannelError> {
    let mut line = serde_json::to_string(entry)
        .map_err(|e| ChannelError::permanent(format!("manifest entry: {e}")))?;
    line.push('\n');
    let mut f = owner_only_file()
        .append(true)
        .open(path)
        .map_err(|e| ChannelError::retryable(format!("open manifest: {e}")))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| ChannelError::retryable(format!("append manifest: {e}")))
}
