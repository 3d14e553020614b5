//! Retention: what leaves the database once it is no longer owed to anyone, in bounded
//! batches so that no sweep holds long locks.
//!
//! - Outbox deliveries acknowledged (or given up as dead) before a cut-off time, and
//!   then the events that have no delivery left. An event still owed to a consumer is
//!   never removed.
//! - Attempt rows of notices that are finished (sent, or dead) and that finished
//!   before a cut-off time. A pending, failed (to be retried) or sending notice keeps
//!   its attempts.
//! - On PostgreSQL the audit log and the outbox's events are partitioned by month
//!   (migration 0019): [`Store::ensure_partitions`] creates months ahead, and a month
//!   whose every event is delivered, or whose every audit entry is archived, is
//!   detached and dropped as a whole instead of row by row. SQLite keeps one table and
//!   removes rows in batches.
//!
//! The audit log leaves only through its archive (`carepath_app::audit::archive`):
//! entries are handed out in order ([`Store::audit_entries_for_archive`]), and removed
//! ([`Store::remove_archived_audit`]) only by the exact positions of a segment that
//! was written and read back.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};

use crate::{
    AuditEntry, AuditHead, AuditRecord, AuditVerification, Backend, Store, StoreError, on_db,
};

/// Most rows one retention statement removes.
pub const RETENTION_BATCH: u32 = 5_000;
/// Most months [`Store::ensure_partitions`] creates in one call (a century).
pub const MAX_PARTITION_MONTHS: u32 = 1_200;
/// Longest wait for the locks that drop a month partition (see
/// `Store::drop_partition_if`): calls queued behind the sweep wait at most this.
pub const DETACH_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);
/// Most audit entries [`Store::audit_entries_for_archive`] hands out at once.
pub const MAX_ARCHIVE_READ: u32 = 50_000;

/// The partitioned tables and the column each is partitioned on.
const PARTITIONED: [(&str, &str); 2] = [("audit_log", "at"), ("outbox_event", "occurred_at")];

/// What one outbox retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxRemoved {
    pub deliveries: u64,
    pub events: u64,
    /// Whole months of events dropped (PostgreSQL).
    pub partitions: u64,
}

/// An audit entry as it is archived: the stored row with its chain and the hash it
/// links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedAuditRecord {
    pub chain: i32,
    pub prev_hash: String,
    pub record: AuditRecord,
}

/// The database's note of one archived segment of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSegmentRecord {
    /// From 1, one more for each segment.
    pub number: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub entries: i64,
    pub hash: String,
    /// The object's name in the archive.
    pub object: String,
    pub written_at: DateTime<Utc>,
}

/// Where the live audit log continues from its archive: for each chain with archived
/// entries, its newest archived entry; and the entries of the newest segment (position
/// and hash), which may still be in the database when a removal was cut off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivedAudit {
    pub heads: Vec<AuditHead>,
    pub newest_segment: std::collections::HashMap<i64, String>,
}

/// The hash of an audit entry linked to `prev` (the chain's previous entry's hash,
/// or the chain's start): what an archive check recomputes.
pub fn audit_entry_hash(prev: &str, at: DateTime<Utc>, entry: &AuditEntry) -> String {
    crate::audit::chain_hash(prev, at, entry)
}

/// The `prev_hash` of each chain's first entry.
pub const AUDIT_CHAIN_START: &str = "genesis";

/// The first day of the month `at` falls in (UTC).
fn month_of(at: DateTime<Utc>) -> NaiveDate {
    NaiveDate::from_ymd_opt(at.year(), at.month(), 1).unwrap_or(NaiveDate::MIN)
}

/// `<table>_pYYYYMM` when `name` is one of `table`'s month partitions: that month's
/// first day.
fn partition_month(table: &str, name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[..4].parse().ok()?;
    let month: u32 = digits[4..].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, 1)
}

/// The instant a month (given by its first day) ends, UTC.
fn month_end(first_day: NaiveDate) -> Option<DateTime<Utc>> {
    let next = first_day.checked_add_months(Months::new(1))?;
    Some(Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0)?))
}

/// The rest owed after a removal statement that took `worked`, so that removal holds
/// about `share` (clamped to [0.01, 1]) of the time: on SQLite every statement holds
/// the one writer, and a sweep catching up on years of history would otherwise hold it
/// for seconds on end while calls wait behind it. At most [`MAX_REST`].
pub fn rest_after(worked: std::time::Duration, share: f64) -> std::time::Duration {
    let share = share.clamp(0.01, 1.0);
    worked.mul_f64((1.0 - share) / share).min(MAX_REST)
}

/// The longest rest between two removal statements.
const MAX_REST: std::time::Duration = std::time::Duration::from_secs(1);

impl Store {
    /// Runs one removal statement in its own transaction (on SQLite, through the one
    /// writer), binding `before` and `batch` as `$1` and `$2` when the text names them;
    /// then rests, so that removal takes about `share` of the time (see
    /// [`rest_after`]).
    async fn remove_rows(
        &self,
        sql: &str,
        before: Option<DateTime<Utc>>,
        batch: Option<i64>,
        share: f64,
    ) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let n = self.remove_rows_now(sql, before, batch).await?;
        let rest = rest_after(started.elapsed(), share);
        if !rest.is_zero() {
            tokio::time::sleep(rest).await;
        }
        Ok(n)
    }

    async fn remove_rows_now(
        &self,
        sql: &str,
        before: Option<DateTime<Utc>>,
        batch: Option<i64>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = crate::on_tx!(&mut tx, c => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(before) = before {
                query = query.bind(before);
            }
            if let Some(batch) = batch {
                query = query.bind(batch);
            }
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
        tx.commit().await?;
        Ok(n)
    }

    /// Creates the monthly partitions of the audit log and the outbox's events for
    /// every month from the one holding `from` to the one holding `to` (UTC), unless
    /// they exist; rows of those months waiting in the DEFAULT partition move into
    /// them. Idempotent and safe from several processes at once; a no-op on SQLite.
    /// At most [`MAX_PARTITION_MONTHS`] months: a wider span is an error naming it.
    pub async fn ensure_partitions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Store::Postgres { pool, .. } = self else {
            return Ok(());
        };
        let (first, last) = (month_of(from), month_of(to));
        if last < first {
            return Ok(());
        }
        let span = (last.year() - first.year()) * 12 + last.month() as i32 - first.month() as i32;
        if span >= MAX_PARTITION_MONTHS as i32 {
            return Err(StoreError::Invalid {
                field: "ensure_partitions.to",
                reason: format!(
                    "{span} months after `from`: at most {MAX_PARTITION_MONTHS} months at once"
                ),
            });
        }
        let mut month = first;
        while month <= last {
            for (table, key) in PARTITIONED {
                sqlx::query("SELECT carepath_month_partition($1, $2, $3)")
                    .bind(table)
                    .bind(key)
                    .bind(month)
                    .execute(pool)
                    .await?;
            }
            let Some(next) = month.checked_add_months(Months::new(1)) else {
                break;
            };
            month = next;
        }
        Ok(())
    }

    /// The month partitions of `table` (PostgreSQL), oldest first.
    async fn month_partitions(&self, table: &str) -> Result<Vec<(String, NaiveDate)>, StoreError> {
        let Store::Postgres { pool, .. } = self else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = to_regclass($1)",
        )
        .bind(table)
        .fetch_all(pool)
        .await?;
        let mut months: Vec<(String, NaiveDate)> = names
            .into_iter()
            .filter_map(|n| partition_month(table, &n).map(|m| (n, m)))
            .collect();
        months.sort_by_key(|(_, m)| *m);
        Ok(months)
    }

    /// Detaches and drops the month partition `part` of `table` when `empty_sql` (a
    /// query over `part`, given its quoted name) finds no row to keep; in one
    /// transaction, after the partition is locked, so nothing slips in between.
    ///
    /// The parent table is locked before the partition, in the order every query over
    /// the parent takes them (a query that cannot prune locks the parent, then each
    /// partition): the other order deadlocks with the outbox's claims. The locks are
    /// waited for at most [`DETACH_LOCK_WAIT`], so calls queued behind the sweep wait
    /// no longer than that; a month not dropped now is dropped by a later sweep.
    async fn drop_partition_if(
        &self,
        table: &str,
        part: &str,
        keep_sql: impl Fn(&str) -> String,
    ) -> Result<bool, StoreError> {
        let Store::Postgres { pool, .. } = self else {
            return Ok(false);
        };
        let quoted = format!("\"{}\"", part.replace('"', "\"\""));
        let mut tx = pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{}ms'",
            DETACH_LOCK_WAIT.as_millis()
        )))
        .execute(&mut *tx)
        .await?;
        let locked = sqlx::query(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE {table}, {quoted} IN ACCESS EXCLUSIVE MODE"
        )))
        .execute(&mut *tx)
        .await;
        match locked {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                tracing::info!(
                    table,
                    partition = part,
                    "month partition busy; left for the next sweep"
                );
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        let keep: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS ({})",
            keep_sql(&quoted)
        )))
        .fetch_one(&mut *tx)
        .await?;
        if keep {
            return Ok(false);
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} DETACH PARTITION {quoted}"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {quoted}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(table, partition = part, "old month partition dropped");
        Ok(true)
    }

    /// Removes outbox deliveries acknowledged, or dead, before `before`, and then the
    /// events occurred before `before` that have no delivery left, at most `batch`
    /// rows per statement, resting after each so removal holds about `share` of the
    /// time ([`rest_after`]). On PostgreSQL a month of events that ended before `before`
    /// and whose every delivery is finished before it goes as a whole partition.
    pub async fn remove_delivered_events(
        &self,
        before: DateTime<Utc>,
        batch: u32,
        share: f64,
    ) -> Result<OutboxRemoved, StoreError> {
        let batch = i64::from(batch.clamp(1, RETENTION_BATCH));
        let mut removed = OutboxRemoved::default();
        // Still owed, or finished too recently: a delivery that keeps its event.
        let unfinished = "NOT ((d.done_at IS NOT NULL AND d.done_at < $1)
                              OR (d.dead_at IS NOT NULL AND d.dead_at < $1))";
        for (part, month) in self.month_partitions("outbox_event").await? {
            if month_end(month).is_none_or(|end| end > before) {
                continue;
            }
            // The month's finished deliveries first, in batches; then the events as
            // one partition, unless a delivery is still owed.
            let owed: bool = on_db!(self, c => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM outbox_delivery d JOIN \"{part}\" e ON e.seq = d.seq
                 WHERE {unfinished})")))
                .bind(before).fetch_one(c).await)?;
            if owed {
                continue;
            }
            loop {
                let sql = format!(
                    "DELETE FROM outbox_delivery WHERE (consumer, seq) IN (
                        SELECT d.consumer, d.seq FROM outbox_delivery d JOIN \"{part}\" e ON e.seq = d.seq
                        WHERE NOT ({unfinished}) LIMIT $2)"
                );
                let n = self
                    .remove_rows(&sql, Some(before), Some(batch), share)
                    .await?;
                removed.deliveries += n;
                if n < batch as u64 {
                    break;
                }
            }
            let dropped = self
                .drop_partition_if("outbox_event", &part, |quoted| {
                    format!("SELECT 1 FROM outbox_delivery d JOIN {quoted} e ON e.seq = d.seq")
                })
                .await?;
            removed.partitions += u64::from(dropped);
        }
        for finished in ["done_at", "dead_at"] {
            loop {
                let sql = format!(
                    "DELETE FROM outbox_delivery WHERE (consumer, seq) IN (
                        SELECT consumer, seq FROM outbox_delivery
                        WHERE {finished} IS NOT NULL AND {finished} < $1 LIMIT $2)"
                );
                let n = self
                    .remove_rows(&sql, Some(before), Some(batch), share)
                    .await?;
                removed.deliveries += n;
                if n < batch as u64 {
                    break;
                }
            }
        }
        loop {
            let n = self
                .remove_rows(
                    "DELETE FROM outbox_event WHERE seq IN (
                        SELECT e.seq FROM outbox_event e
                        WHERE e.occurred_at < $1
                          AND NOT EXISTS (SELECT 1 FROM outbox_delivery d WHERE d.seq = e.seq)
                        LIMIT $2)",
                    Some(before),
                    Some(batch),
                    share,
                )
                .await?;
            removed.events += n;
            if n < batch as u64 {
                break;
            }
        }
        Ok(removed)
    }

    /// Removes the attempt rows, finished before `before`, of notices that are
    /// finished (sent or dead), at most `batch` per statement, resting after each so
    /// removal holds about `share` of the time ([`rest_after`]). Returns how many.
    pub async fn remove_finished_notice_attempts(
        &self,
        before: DateTime<Utc>,
        batch: u32,
        share: f64,
    ) -> Result<u64, StoreError> {
        let batch = i64::from(batch.clamp(1, RETENTION_BATCH));
        let mut removed = 0;
        loop {
            let n = self
                .remove_rows(
                    "DELETE FROM notice_attempt WHERE (notice_id, number) IN (
                        SELECT a.notice_id, a.number FROM notice_attempt a
                        JOIN notice n ON n.id = a.notice_id
                        WHERE a.finished_at IS NOT NULL AND a.finished_at < $1
                          AND n.state IN ('sent', 'dead')
                        LIMIT $2)",
                    Some(before),
                    Some(batch),
                    share,
                )
                .await?;
            removed += n;
            if n < batch as u64 {
                return Ok(removed);
            }
        }
    }

    /// Up to `limit` (at most [`MAX_ARCHIVE_READ`]) audit entries still in the
    /// database that may be archived at a cut-off of `before`, in position order: those
    /// positioned before the earliest entry at or after `before`, so what is archived
    /// is, chain by chain, the oldest part of each chain.
    pub async fn audit_entries_for_archive(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ChainedAuditRecord>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_ARCHIVE_READ));
        // The earliest entry at or after the cut-off (one step down `audit_log_at`):
        // everything before its position goes, a prefix of every chain. An entry
        // written on a clock behind the others may go a little early; none is left
        // behind between archived ones.
        let bound: Option<i64> = on_db!(self, c => sqlx::query_scalar(
            "SELECT seq FROM audit_log WHERE at >= $1 ORDER BY at, seq LIMIT 1")
            .bind(before).fetch_optional(c).await)?;
        let bound = bound.unwrap_or(i64::MAX);
        type Row = (
            i32,
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
        let rows: Vec<Row> = on_db!(self, c => sqlx::query_as(
            "SELECT chain, seq, at, subject, role, rpc, record_kind, record_id, member_id, outcome,
                    prev_hash, hash, repeats
             FROM audit_log WHERE seq < $1 ORDER BY seq LIMIT $2")
            .bind(bound).bind(limit).fetch_all(c).await)?;
        Ok(rows
            .into_iter()
            .map(
                |(chain, seq, at, subject, role, rpc, kind, id, member, outcome, prev, hash, n)| {
                    let (record, prev_hash) = crate::audit::record_from_row((
                        seq, at, subject, role, rpc, kind, id, member, outcome, prev, hash, n,
                    ));
                    ChainedAuditRecord {
                        chain,
                        prev_hash,
                        record,
                    }
                },
            )
            .collect())
    }

    /// The newest segment the audit log was archived in, as noted here.
    pub async fn last_audit_segment(&self) -> Result<Option<AuditSegmentRecord>, StoreError> {
        type Row = (i64, i64, i64, i64, String, String, DateTime<Utc>);
        let row: Option<Row> = on_db!(self, c => sqlx::query_as(
            "SELECT number, first_seq, last_seq, entries, hash, object, written_at
             FROM audit_segment ORDER BY number DESC LIMIT 1")
            .fetch_optional(c).await)?;
        Ok(row.map(
            |(number, first_seq, last_seq, entries, hash, object, written_at)| AuditSegmentRecord {
                number,
                first_seq,
                last_seq,
                entries,
                hash,
                object,
                written_at,
            },
        ))
    }

    /// Notes a segment written and read back; its number must follow the newest.
    pub async fn record_audit_segment(&self, s: &AuditSegmentRecord) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        crate::on_tx!(&mut tx, c => sqlx::query(
            "INSERT INTO audit_segment (number, first_seq, last_seq, entries, hash, object, written_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(s.number).bind(s.first_seq).bind(s.last_seq).bind(s.entries).bind(&s.hash)
            .bind(&s.object).bind(s.written_at)
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(|e| crate::conflict_on_unique(e, "audit segment", &s.number.to_string()))?;
        tx.commit().await
    }

    /// Removes the audit entries at exactly `seqs` (those of a segment written to the
    /// archive and read back), at most [`RETENTION_BATCH`] per statement; then, on
    /// PostgreSQL, drops the months before `before` that are left empty. Returns how
    /// many entries were removed.
    pub async fn remove_archived_audit(
        &self,
        seqs: &[i64],
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        for chunk in seqs.chunks(RETENTION_BATCH as usize) {
            let sql = format!(
                "DELETE FROM audit_log WHERE seq IN ({})",
                crate::seq_list(chunk)
            );
            removed += self.remove_rows(&sql, None, None, 1.0).await?;
        }
        if self.backend() == Backend::Postgres {
            for (part, month) in self.month_partitions("audit_log").await? {
                if month_end(month).is_none_or(|end| end > before) {
                    continue;
                }
                self.drop_partition_if("audit_log", &part, |quoted| {
                    format!("SELECT 1 FROM {quoted}")
                })
                .await?;
            }
        }
        Ok(removed)
    }

    /// [`Store::verify_audit_anchored`] for a log whose oldest entries were archived:
    /// each chain's first entry in the database must link to that chain's newest
    /// archived entry (`archived.heads`) instead of the chain's start; `anchors` are
    /// the anchored entries not found in the archive. Entries of the newest segment
    /// still in the database (a removal cut off) must be unchanged and are not counted.
    pub async fn verify_audit_after_archive(
        &self,
        anchors: &[AuditHead],
        archived: &ArchivedAudit,
    ) -> Result<AuditVerification, StoreError> {
        self.verify_audit_from(anchors, archived).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn removal_rests_for_its_share_of_the_time_and_never_long() {
        let worked = Duration::from_millis(20);
        assert_eq!(rest_after(worked, 0.5), Duration::from_millis(20));
        assert_eq!(rest_after(worked, 0.25), Duration::from_millis(60));
        assert_eq!(
            rest_after(worked, 1.0),
            Duration::ZERO,
            "a share of 1 never rests"
        );
        assert_eq!(
            rest_after(worked, 0.0),
            MAX_REST,
            "a share of 0 is taken as 0.01, and no rest exceeds the maximum"
        );
        assert_eq!(rest_after(Duration::from_secs(5), 0.5), MAX_REST);
    }
}
