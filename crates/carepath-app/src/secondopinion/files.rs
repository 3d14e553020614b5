//! Uploaded records in and out: an upload is refused before any byte is kept when
//! the caller may not add a record, written to a temporary object while its checksum
//! is computed, and kept only once its size and checksum match what was declared.

use bytes::Bytes;
use carepath_secondopinion::{MedicalRecord, NewRecord, RecordChannel, RecordKind};
use carepath_store::AuditOutcome;
use futures::{Stream, stream::BoxStream};
use object_store::path::Path;

use super::{FILE_KIND, RECORD_KIND, RecordAdded, SecondOpinion};
use crate::{
    context::Caller,
    error::{AppError, AppResult},
    pipeline::record_id,
};

/// A record a member or a nurse coordinator uploads, as declared before its bytes:
/// already checked ([`carepath_secondopinion::CONTENT_TYPES`],
/// [`carepath_secondopinion::MAX_RECORD_BYTES`], a plain file name, a 64-character
/// lowercase hexadecimal SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// The request the record is for.
    pub request_id: String,
    /// What kind of record it is.
    pub kind: RecordKind,
    /// The file's name, without any folder.
    pub file_name: String,
    /// One of [`carepath_secondopinion::CONTENT_TYPES`].
    pub content_type: String,
    /// The exact number of bytes that will follow.
    pub size_bytes: u64,
    /// The lowercase hex SHA-256 of the bytes that will follow.
    pub sha256: String,
    /// What the record is.
    pub description: String,
}

/// Which record to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRecord {
    /// The request the record belongs to.
    pub request_id: String,
    /// The record's id.
    pub record_id: String,
}

/// A record being downloaded: what it is, then its bytes in pieces of at most
/// [`super::records::MAX_CHUNK_BYTES`].
pub struct Download {
    /// The record, as the request holds it.
    pub record: MedicalRecord,
    /// Its bytes, in order.
    pub bytes: BoxStream<'static, AppResult<Bytes>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl SecondOpinion {
    /// Receives an uploaded record: `chunks` are its bytes, in order (an error in the
    /// stream ends the upload and keeps nothing). The record is added to the request
    /// only once its size and checksum match the declaration.
    pub async fn upload_record<S>(
        &self,
        caller: &Caller,
        cmd: UploadRecord,
        chunks: S,
    ) -> AppResult<RecordAdded>
    where
        S: Stream<Item = AppResult<Bytes>> + Unpin,
    {
        let id = record_id(&cmd.request_id, "request_id")?;
        // Refuse before any byte is kept.
        let (request, party) = self.visible(caller, &id).await?;
        if let Err(e) = request.may_add_record(&party, RecordChannel::Upload) {
            let err = AppError::from(e);
            if matches!(err, AppError::PermissionDenied(_)) {
                return Err(self
                    .app
                    .refuse(caller, RECORD_KIND, &id, Some(&request.member_id), err)
                    .await);
            }
            return Err(err);
        }

        let record_id = format!("REC-{}", uuid::Uuid::now_v7().simple());
        let temp = Path::from(format!("tmp/{record_id}"));
        let received = self.records.receive(&temp, chunks, cmd.size_bytes).await?;
        if received.size != cmd.size_bytes {
            self.records.delete(&temp).await;
            return Err(AppError::field(
                "header.size_bytes",
                format!(
                    "{} bytes were declared but {} arrived; nothing was kept",
                    cmd.size_bytes, received.size
                ),
            ));
        }
        if received.sha256 != cmd.sha256 {
            self.records.delete(&temp).await;
            tracing::info!(request = %id, "upload refused: checksum mismatch");
            return Err(AppError::field(
                "header.sha256",
                format!(
                    "does not match the bytes received (their SHA-256 is {}); nothing was kept",
                    received.sha256
                ),
            ));
        }
        let key = Path::from(format!("requests/{id}/{record_id}"));
        if let Err(e) = self.records.commit(&temp, &key).await {
            self.records.delete(&temp).await;
            return Err(e);
        }
        let calendar = self.app.calendar.clone();
        let new = NewRecord {
            id: record_id.clone(),
            kind: cmd.kind,
            channel: RecordChannel::Upload,
            description: cmd.description.trim().to_owned(),
            file_name: Some(cmd.file_name),
            content_type: Some(cmd.content_type),
            size_bytes: received.size,
            sha256: Some(received.sha256),
            object_key: Some(key.to_string()),
        };
        let result = self
            .command(caller, &id, move |r, party, actor, now| {
                r.add_record(party, actor, new, &calendar, now)
            })
            .await;
        match result {
            Ok(request) => Ok(self.record_added(request, &record_id)),
            Err(e) => {
                self.records.delete(&key).await;
                Err(e)
            }
        }
    }

    /// A record's file, for a caller who may see the request; the download is
    /// audited before the first byte leaves.
    pub async fn download_record(
        &self,
        caller: &Caller,
        cmd: DownloadRecord,
    ) -> AppResult<Download> {
        let id = record_id(&cmd.request_id, "request_id")?;
        let wanted = cmd.record_id.trim();
        if wanted.is_empty() {
            return Err(AppError::field("record_id", "is required"));
        }
        let (request, _) = self.visible(caller, &id).await?;
        let Some(record) = request.records.iter().find(|r| r.id == wanted) else {
            return Err(self
                .app
                .refuse(
                    caller,
                    FILE_KIND,
                    wanted,
                    Some(&request.member_id),
                    AppError::hidden("record", wanted),
                )
                .await);
        };
        let Some(key) = &record.object_key else {
            return Err(AppError::FailedPrecondition(format!(
                "record {} arrived by {} and has no file",
                record.id,
                record.channel.as_str()
            )));
        };
        let bytes = self.records.read(&Path::from(key.as_str())).await?;
        self.app
            .audit(
                caller,
                FILE_KIND,
                &record.id,
                Some(&request.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(Download {
            record: record.clone(),
            bytes: Box::pin(bytes),
        })
    }
}
