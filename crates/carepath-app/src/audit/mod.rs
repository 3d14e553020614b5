//! Audit use cases: admins search the audit log by member, subject and period, and
//! check its hash chain. A search reads who saw a member's data, so it is itself
//! recorded.

pub mod anchor;
pub mod archive;
pub mod refusals;

use std::path::PathBuf;

use carepath_core::{Actor, MemberId, Role};
use carepath_store::{AuditOutcome, AuditQuery, AuditRecord, AuditVerification};
use chrono::{DateTime, Utc};

use crate::{App, AppError, AppResult, Caller, Page, page_size};

/// The record kind audit searches are logged under.
pub const RECORD_KIND: &str = "audit_log";

/// Whether `actor` may read the audit log: the area's one policy (admins only).
///
/// ```
/// use carepath_app::audit::may_read;
/// use carepath_core::{Actor, Role};
///
/// assert!(may_read(&Actor::new(Role::Admin, "AD-001").unwrap()));
/// assert!(!may_read(&Actor::new(Role::Nurse, "RN-001").unwrap()));
/// assert!(!may_read(&Actor::new(Role::Service, "notify").unwrap()));
/// ```
pub fn may_read(actor: &Actor) -> bool {
    actor.role == Role::Admin
}

/// What a server keeps of its audit log outside the database, and verification reads
/// with it: the archive of exported segments (`--audit-archive-url`) and the file of
/// anchored chain heads (`--audit-anchor-file`).
#[derive(Debug, Clone, Default)]
pub struct OutsideCopies {
    pub archive: Option<archive::AuditArchive>,
    pub anchor_file: Option<PathBuf>,
}

/// The outcome of a verification, and how many anchored heads it checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub verdict: AuditVerification,
    /// Heads read from the anchor file and found in the log (0 with no anchor file,
    /// or before the server's first anchoring).
    pub anchors: usize,
}

/// A search of the audit log; every criterion is optional. The fields are checked
/// already (the subject's length, `to` after `from`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchAudit {
    /// Entries about this member.
    pub member: Option<MemberId>,
    /// Entries of this caller (a token's subject).
    pub subject: Option<String>,
    /// Entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub to: Option<DateTime<Utc>>,
    /// The position after which to read: 0 for the first page, else the position the
    /// previous page's token names.
    pub after: i64,
    /// Entries per page (0 for the default).
    pub size: u32,
}

/// The audit use cases.
#[derive(Debug, Clone)]
pub struct AuditLog {
    app: App,
}

impl AuditLog {
    /// The use cases over `app`.
    pub fn new(app: App) -> Self {
        AuditLog { app }
    }

    fn require_reader(caller: &Caller) -> AppResult<()> {
        if may_read(&caller.actor) {
            Ok(())
        } else {
            Err(AppError::denied("only admins read the audit log"))
        }
    }

    /// One page of the entries matching the search, oldest first; the token of the
    /// next page is the position of the last entry. The search is audited under the
    /// member searched for (`*` for any), and so is a refused search.
    pub async fn search(&self, caller: &Caller, cmd: SearchAudit) -> AppResult<Page<AuditRecord>> {
        let searched = cmd.member.as_ref();
        if let Err(refusal) = Self::require_reader(caller) {
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    searched.map_or("*", MemberId::as_str),
                    searched,
                    refusal,
                )
                .await);
        }
        let size = page_size(cmd.size, "page.page_size")?;
        let query = AuditQuery {
            member_id: cmd.member.as_ref().map(|m| m.to_string()),
            subject: cmd.subject,
            from: cmd.from,
            to: cmd.to,
        };
        let records = self
            .app
            .store
            .search_audit(&query, cmd.after, size + 1)
            .await?;
        let more = records.len() > size as usize;
        let items: Vec<_> = records.into_iter().take(size as usize).collect();
        let next_page_token = match (more, items.last()) {
            (true, Some(last)) => last.seq.to_string(),
            _ => String::new(),
        };
        self.app
            .audit(
                caller,
                RECORD_KIND,
                searched.map_or("*", MemberId::as_str),
                searched,
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Walks the whole log and recomputes every hash: the archived segments first
    /// when the server keeps an archive, then the live log; every head in the
    /// server's anchor file (once it has been written) must still be in it,
    /// unchanged, so removed newest entries are caught.
    pub async fn verify(&self, caller: &Caller) -> AppResult<Verified> {
        Self::require_reader(caller)?;
        let copies = &self.app.outside_copies;
        let anchors = match &copies.anchor_file {
            Some(path) if path.exists() => anchor::read_anchors(path)?,
            _ => Vec::new(),
        };
        let verdict = match &copies.archive {
            None => self.app.store.verify_audit_anchored(&anchors).await?,
            Some(archive) => match archive.verify(&self.app.store, &anchors).await? {
                archive::ArchiveVerdict::Intact { archived, live, .. } => {
                    AuditVerification::Intact {
                        entries: archived + live,
                    }
                }
                archive::ArchiveVerdict::Broken { place, reason } => AuditVerification::Broken {
                    seq: 0,
                    reason: format!("{place}: {reason}"),
                },
            },
        };
        Ok(Verified {
            verdict,
            anchors: anchors.len(),
        })
    }
}
