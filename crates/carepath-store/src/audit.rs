//! The audit log: who read or changed which member's data, when, through which call,
//! and whether it was allowed. Append-only, and hash-chained so that an altered or
//! removed entry is detected by [`Store::verify_audit`].
//!
//! A chain checks itself only up to its newest entry: someone who deletes that entry
//! and sets the chain's head back leaves a shorter chain that still links. Copies of
//! the heads kept outside the database ([`Store::audit_heads`], written to an
//! append-only file by the server) close that gap: [`Store::verify_audit_anchored`]
//! requires every anchored entry to be there, unchanged.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::{Backend, Store, StoreError, Tx, on_db, on_tx};

/// Whether the access was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Allowed,
    Denied,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Denied => "denied",
        }
    }
}

/// One access to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub subject: String,
    pub role: String,
    /// The full gRPC method, e.g. `/carepath.directory.v1.DirectoryService/GetMember`.
    pub rpc: String,
    pub record_kind: String,
    pub record_id: String,
    pub member_id: Option<String>,
    pub outcome: AuditOutcome,
    /// How many further identical refusals within one minute this entry stands for
    /// (the first has its own entry); 0 for a single access.
    pub repeats: u32,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub entry: AuditEntry,
    pub hash: String,
}

/// Search criteria for the audit log; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub member_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The newest entry of one chain, as copied outside the database (an anchor).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditHead {
    pub chain: i32,
    pub seq: i64,
    pub hash: String,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerification {
    Intact { entries: i64 },
    Broken { seq: i64, reason: String },
}

/// The `prev_hash` of each chain's first entry.
const GENESIS: &str = "genesis";

pub(crate) fn chain_hash(prev: &str, at: DateTime<Utc>, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &at.to_rfc3339_opts(SecondsFormat::Micros, true),
        &e.subject,
        &e.role,
        &e.rpc,
        &e.record_kind,
        &e.record_id,
        e.member_id.as_deref().unwrap_or(""),
        e.outcome.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    // Only an entry standing for repeats hashes the count, so entries written before
    // the count existed keep their hashes.
    if e.repeats > 0 {
        h.update(e.repeats.to_string().as_bytes());
        h.update([0x1f]);
    }
    hex::encode(h.finalize())
}

type AuditRow = (
    i64,
    DateTime<Utc>,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
);

pub(crate) fn record_from_row(row: AuditRow) -> (AuditRecord, String) {
    let (
        seq,
        at,
        subject,
        role,
        rpc,
        record_kind,
        record_id,
        member_id,
        outcome,
        prev,
        hash,
        repeats,
    ) = row;
    let outcome = if outcome == "denied" {
        AuditOutcome::Denied
    } else {
        AuditOutcome::Allowed
    };
    (
        AuditRecord {
            seq,
            at,
            entry: AuditEntry {
                subject,
                role,
                rpc,
                record_kind,
                record_id,
                member_id,
                outcome,
                repeats: u32::try_from(repeats).unwrap_or(u32::MAX),
            },
            hash,
        },
        prev,
    )
}

/// How many hash chains the log keeps (see migration 0007): concurrent writers append
/// to different chains, so on PostgreSQL they lock different heads.
pub const AUDIT_CHAINS: i32 = 16;

/// Spreads appends over the chains in turn.
static NEXT_CHAIN: AtomicUsize = AtomicUsize::new(0);

/// The chain the next append goes to, from 1 to [`AUDIT_CHAINS`].
pub(crate) fn next_chain() -> i32 {
    (NEXT_CHAIN.fetch_add(1, Ordering::Relaxed) % AUDIT_CHAINS as usize) as i32 + 1
}

/// Reads the newest hash of a chain; on PostgreSQL the head row stays locked until
/// the transaction ends.
pub(crate) fn head_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT hash FROM audit_head WHERE id = $1",
        Backend::Postgres => "SELECT hash FROM audit_head WHERE id = $1 FOR UPDATE",
    }
}

/// `at` as stored and hashed: at microsecond precision, the precision both engines keep.
pub(crate) fn stored_time(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

impl Tx {
    /// On SQLite, tells the writer that this transaction moves `chain`'s head, so
    /// the appender reads it again rather than link onto the one it remembers.
    fn forget_head(&self, chain: i32) {
        if let Tx::Sqlite(tx) = self {
            tx.forget_head(chain);
        }
    }

    /// Appends an entry in this transaction, chained to the newest entry of one of the
    /// [`AUDIT_CHAINS`] chains. On PostgreSQL that chain's head row is locked until
    /// commit, so appends to the same chain queue and the chain stays linear.
    pub async fn append_audit(
        &mut self,
        entry: &AuditEntry,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = stored_time(at);
        let chain = next_chain();
        self.forget_head(chain);
        let head_sql = head_sql(self.backend());
        let prev: String =
            on_tx!(self, c => sqlx::query_scalar(head_sql).bind(chain).fetch_one(c).await)?;
        let hash = chain_hash(&prev, at, entry);
        // The chain's head follows by trigger (`audit_head_advance`, migration 0010).
        on_tx!(self, c => sqlx::query(
            "INSERT INTO audit_log (at, subject, role, rpc, record_kind, record_id, member_id, outcome, prev_hash, hash, chain, repeats)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
            .bind(at).bind(&entry.subject).bind(&entry.role).bind(&entry.rpc)
            .bind(&entry.record_kind).bind(&entry.record_id).bind(entry.member_id.clone())
            .bind(entry.outcome.as_str()).bind(&prev).bind(&hash).bind(chain)
            .bind(i64::from(entry.repeats))
            .execute(c).await.map(|r| r.rows_affected()))?;
        metrics::counter!(crate::AUDIT_ENTRIES_TOTAL, "outcome" => entry.outcome.as_str())
            .increment(1);
        Ok(())
    }
}

impl Tx {
    /// Appends `entries` in this transaction, in order, all to one chain, in one
    /// statement: a transaction that records many accesses (a list read) locks one
    /// chain head, so two of them never wait for each other's heads in opposite
    /// orders (which PostgreSQL ends as a deadlock). At most [`MAX_AUDIT_BATCH`].
    pub async fn append_audits(
        &mut self,
        entries: &[AuditEntry],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        if entries.len() > MAX_AUDIT_BATCH {
            return Err(StoreError::Corrupt {
                kind: "audit batch",
                id: entries.len().to_string(),
                reason: format!("at most {MAX_AUDIT_BATCH} entries in one append"),
            });
        }
        let at = stored_time(at);
        let chain = next_chain();
        self.forget_head(chain);
        let head_sql = head_sql(self.backend());
        let mut prev: String =
            on_tx!(self, c => sqlx::query_scalar(head_sql).bind(chain).fetch_one(c).await)?;
        let mut links = Vec::with_capacity(entries.len());
        for entry in entries {
            let hash = chain_hash(&prev, at, entry);
            links.push((std::mem::replace(&mut prev, hash.clone()), hash));
        }
        let sql = crate::values_sql(
            "INSERT INTO audit_log (at, subject, role, rpc, record_kind, record_id, member_id, outcome, prev_hash, hash, chain, repeats) VALUES ",
            12,
            entries.len(),
        );
        on_tx!(self, c => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (entry, (prev, hash)) in entries.iter().zip(&links) {
                query = query
                    .bind(at).bind(&entry.subject).bind(&entry.role).bind(&entry.rpc)
                    .bind(&entry.record_kind).bind(&entry.record_id).bind(entry.member_id.as_deref())
                    .bind(entry.outcome.as_str()).bind(prev).bind(hash).bind(chain)
                    .bind(i64::from(entry.repeats));
            }
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
        for entry in entries {
            metrics::counter!(crate::AUDIT_ENTRIES_TOTAL, "outcome" => entry.outcome.as_str())
                .increment(1);
        }
        Ok(())
    }
}

/// Most entries [`Tx::append_audits`] takes at once (a page of a list and the list
/// itself, with room to spare; 12 parameters each).
pub const MAX_AUDIT_BATCH: usize = 2_000;

impl Store {
    /// Entries matching `query`, oldest first, after position `after`, at most `limit`.
    pub async fn search_audit(
        &self,
        query: &AuditQuery,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // Bounds both engines store and that compare correctly as SQLite text.
        let far_past = DateTime::<Utc>::UNIX_EPOCH;
        let far_future = "9999-12-31T00:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("valid date");
        let rows: Vec<AuditRow> = on_db!(self, c => sqlx::query_as(
            "SELECT seq, at, subject, role, rpc, record_kind, record_id, member_id, outcome, prev_hash, hash, repeats
             FROM audit_log
             WHERE seq > $1 AND ($2 = '' OR member_id = $2) AND ($3 = '' OR subject = $3)
               AND at >= $4 AND at < $5
             ORDER BY seq LIMIT $6")
            .bind(after)
            .bind(query.member_id.clone().unwrap_or_default())
            .bind(query.subject.clone().unwrap_or_default())
            .bind(query.from.unwrap_or(far_past))
            .bind(query.to.unwrap_or(far_future))
            .bind(i64::from(limit))
            .fetch_all(c).await)?;
        Ok(rows.into_iter().map(|r| record_from_row(r).0).collect())
    }

    /// The newest entry of every chain that has entries, in chain order: what the
    /// server anchors outside the database.
    pub async fn audit_heads(&self) -> Result<Vec<AuditHead>, StoreError> {
        // One index probe per chain (`audit_log_chain`): a `GROUP BY chain` over the
        // log read every entry, each minute.
        let rows: Vec<(i32, i64, String)> = on_db!(self, c => sqlx::query_as(
            "SELECT l.chain, l.seq, l.hash FROM audit_log l
             WHERE l.seq IN (SELECT (SELECT MAX(seq) FROM audit_log WHERE chain = h.id)
                             FROM audit_head h)
             ORDER BY l.chain").fetch_all(c).await)?;
        Ok(rows
            .into_iter()
            .map(|(chain, seq, hash)| AuditHead { chain, seq, hash })
            .collect())
    }

    /// Walks every chain, recomputing every hash: any altered, inserted or removed
    /// entry breaks its chain, and every chain must have its head row, matching its
    /// newest entry. See [`Store::verify_audit_anchored`] for the newest entries.
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        self.verify_audit_anchored(&[]).await
    }

    /// [`Store::verify_audit`], and every entry in `anchors` (heads copied outside
    /// the database at some time) must still be there with the same chain and hash:
    /// removing a chain's newest entries and setting its head back is then caught.
    pub async fn verify_audit_anchored(
        &self,
        anchors: &[AuditHead],
    ) -> Result<AuditVerification, StoreError> {
        self.verify_audit_from(anchors, &crate::ArchivedAudit::default())
            .await
    }

    /// The walk of [`Store::verify_audit_anchored`], each chain starting from its
    /// newest archived entry in `archived` (the chain's start when it has none).
    pub(crate) async fn verify_audit_from(
        &self,
        anchors: &[AuditHead],
        archived: &crate::ArchivedAudit,
    ) -> Result<AuditVerification, StoreError> {
        let mut anchored: std::collections::BTreeMap<i64, &AuditHead> =
            anchors.iter().map(|a| (a.seq, a)).collect();
        let mut heads: HashMap<i32, String> = archived
            .heads
            .iter()
            .map(|h| (h.chain, h.hash.clone()))
            .collect();
        let mut after = 0_i64;
        let mut count = 0_i64;
        loop {
            let rows: Vec<(i32, AuditRow)> = on_db!(self, c => sqlx::query_as(
                "SELECT chain, seq, at, subject, role, rpc, record_kind, record_id, member_id, outcome, prev_hash, hash, repeats
                 FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 1000")
                .bind(after).fetch_all(c).await)?
                .into_iter()
                .map(|(chain, seq, at, subject, role, rpc, kind, id, member, outcome, prev, hash, repeats)| {
                    (chain, (seq, at, subject, role, rpc, kind, id, member, outcome, prev, hash, repeats))
                })
                .collect();
            if rows.is_empty() {
                break;
            }
            for (chain, row) in rows {
                let (record, stored_prev) = record_from_row(row);
                if let Some(copy) = archived.newest_segment.get(&record.seq) {
                    if *copy != record.hash {
                        return Ok(AuditVerification::Broken {
                            seq: record.seq,
                            reason: "differs from its archived copy".into(),
                        });
                    }
                    after = record.seq;
                    continue;
                }
                if !(1..=AUDIT_CHAINS).contains(&chain) {
                    return Ok(AuditVerification::Broken {
                        seq: record.seq,
                        reason: format!("names chain {chain}, which does not exist"),
                    });
                }
                let prev = heads.entry(chain).or_insert_with(|| GENESIS.to_owned());
                if stored_prev != *prev {
                    return Ok(AuditVerification::Broken {
                        seq: record.seq,
                        reason: "does not link to the entry before it".into(),
                    });
                }
                if chain_hash(prev, record.at, &record.entry) != record.hash {
                    return Ok(AuditVerification::Broken {
                        seq: record.seq,
                        reason: "content does not match its hash".into(),
                    });
                }
                if let Some(anchor) = anchored.remove(&record.seq)
                    && (anchor.chain != chain || anchor.hash != record.hash)
                {
                    return Ok(AuditVerification::Broken {
                        seq: record.seq,
                        reason: "differs from its copy anchored outside the database".into(),
                    });
                }
                *prev = record.hash;
                after = record.seq;
                count += 1;
            }
        }
        if let Some((seq, anchor)) = anchored.pop_first() {
            return Ok(AuditVerification::Broken {
                seq,
                reason: format!(
                    "entry {seq} of chain {}, anchored outside the database, is missing",
                    anchor.chain
                ),
            });
        }
        let stored: Vec<(i32, String)> = on_db!(self, c => sqlx::query_as(
            "SELECT id, hash FROM audit_head ORDER BY id").fetch_all(c).await)?;
        let ids: Vec<i32> = stored.iter().map(|(id, _)| *id).collect();
        if let Some(missing) = (1..=AUDIT_CHAINS).find(|id| !ids.contains(id)) {
            return Ok(AuditVerification::Broken {
                seq: after,
                reason: format!("the head row of chain {missing} was removed"),
            });
        }
        for (chain, head) in stored {
            let walked = heads.get(&chain).map_or(GENESIS, String::as_str);
            if head != walked {
                return Ok(AuditVerification::Broken {
                    seq: after,
                    reason: format!("newest entries of chain {chain} were removed"),
                });
            }
        }
        Ok(AuditVerification::Intact { entries: count })
    }
}
