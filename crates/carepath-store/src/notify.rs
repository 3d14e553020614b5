//! Notices and their delivery: one row per notice an event called for (unique by its
//! idempotency key, and by event, rule and recipient), claimed by dispatchers under a
//! lease like outbox deliveries, with one row per delivery attempt.
//!
//! States: `pending` → `sending` (leased) → `sent` | `failed` (due again at
//! `next_attempt_at`) | `dead`. A `sending` notice whose lease ran out (its dispatcher
//! died) is claimed again; the channels pass the idempotency key on, so the retry does
//! not send a second copy.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{
    Page, Store, StoreError, Tx, on_db, on_tx,
    page::{decode_token, encode_token, json_bytes, micros},
    write_alone,
};

/// A notice to store, as planned and rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotice {
    pub id: String,
    pub idempotency_key: String,
    pub event_id: String,
    pub event_kind: String,
    pub rule_id: String,
    pub rules_version: String,
    pub recipient_id: String,
    pub recipient_role: String,
    pub recipient_name: String,
    pub member_id: Option<String>,
    /// `email`, `fax`, `mail`, `portal`, or `none` for an unreachable recipient.
    pub channel: String,
    pub destination: String,
    pub template_id: String,
    pub template_version: i32,
    pub language: String,
    pub subject: String,
    /// 0 for notices someone waits on, 1 otherwise; claimed in this order.
    pub priority: i32,
    /// The plan of a notice that could not be rendered (so a resend can render it
    /// again), or an unreachable recipient's explanation; none for a rendered notice.
    pub planned: Option<Value>,
    /// What the channel sends; none when rendering failed.
    pub rendered: Option<Value>,
    /// `pending`, or `dead` when it cannot be sent at all (unreachable, unrenderable).
    pub state: String,
    pub last_error: String,
}

/// A stored notice.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct NoticeRecord {
    pub id: String,
    pub idempotency_key: String,
    pub event_id: String,
    pub event_kind: String,
    pub rule_id: String,
    pub rules_version: String,
    pub recipient_id: String,
    pub recipient_role: String,
    pub recipient_name: String,
    pub member_id: Option<String>,
    pub channel: String,
    pub destination: String,
    pub template_id: String,
    pub template_version: i32,
    pub language: String,
    pub subject: String,
    pub priority: i32,
    pub planned: Option<Json<Value>>,
    pub rendered: Option<Json<Value>>,
    pub state: String,
    pub attempts: i32,
    pub tries: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub receipt_reference: String,
    pub receipt_detail: String,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A claimed notice as its dispatcher sends it: what sending and recording the
/// outcome need, with the rendered content as its stored JSON text (decoded by the
/// sender into its own type, with no generic JSON tree in between).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LeasedNotice {
    pub id: String,
    pub idempotency_key: String,
    pub event_id: String,
    pub channel: String,
    pub attempts: i32,
    pub tries: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The rendered notice (JSON); none for a notice that cannot be sent.
    pub rendered: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NoticeAttempt {
    pub notice_id: String,
    pub number: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub detail: String,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The channel accepted it: its reference and answer.
    Sent { reference: String, detail: String },
    /// Try again at `retry_at`.
    Failed {
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Give up; staff see it and may resend.
    Dead { error: String },
}

/// Notices created in a period, counted by channel and state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NoticeCount {
    pub channel: String,
    pub state: String,
    pub count: i64,
}

macro_rules! select_notice {
    ($rest:literal) => {
        concat!(
            "SELECT id, idempotency_key, event_id, event_kind, rule_id, rules_version, recipient_id, recipient_role, recipient_name, member_id, channel, destination, template_id, template_version, language, subject, priority, planned, rendered, state, attempts, tries, next_attempt_at, lease_owner, lease_until, sent_at, receipt_reference, receipt_detail, last_error, created_at, updated_at FROM notice ",
            $rest
        )
    };
}

/// Claims due notices: pending, failed and due, or sending with an expired lease.
/// Immediate notices first, then oldest. Each state's candidates come from an index
/// in the order they are taken (pending ones from `notice_pending_order`, migration
/// 0009), at most `limit` each, so a claim reads a few rows however long the queue is.
const CLAIM_SQLITE: &str = "UPDATE notice
    SET state = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1,
        tries = tries + 1, updated_at = $3
    WHERE id IN (
        SELECT id FROM (
            SELECT * FROM (SELECT id, priority, created_at FROM notice INDEXED BY notice_pending_order
                WHERE state = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= $3)
                ORDER BY priority, created_at, id LIMIT $4)
            UNION ALL
            SELECT * FROM (SELECT id, priority, created_at FROM notice
                WHERE state = 'failed' AND next_attempt_at <= $3
                ORDER BY next_attempt_at LIMIT $4)
            UNION ALL
            SELECT * FROM (SELECT id, priority, created_at FROM notice
                WHERE state = 'sending' AND lease_until < $3
                ORDER BY lease_until LIMIT $4))
        ORDER BY priority, created_at, id LIMIT $4)";

/// The same on PostgreSQL, in one statement: each state's candidates locked as they
/// are read (`SKIP LOCKED`, so concurrent dispatchers take different notices), the
/// first `$4` of them leased, the attempts a dead worker left open on them closed as
/// abandoned and a new attempt opened on each; the leased notices come back in the
/// order they are sent. A single query over the three states with `OR` cannot use the
/// indexes' order and sorted every pending notice on each claim.
const CLAIM_POSTGRES: &str = "WITH pending AS (
        SELECT id, priority, created_at FROM notice
        WHERE state = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= $3)
        ORDER BY priority, created_at, id LIMIT $4
        FOR UPDATE SKIP LOCKED),
    failed AS (
        SELECT id, priority, created_at FROM notice
        WHERE state = 'failed' AND next_attempt_at <= $3
        ORDER BY next_attempt_at LIMIT $4
        FOR UPDATE SKIP LOCKED),
    expired AS (
        SELECT id, priority, created_at FROM notice
        WHERE state = 'sending' AND lease_until < $3
        ORDER BY lease_until LIMIT $4
        FOR UPDATE SKIP LOCKED),
    chosen AS (
        SELECT id FROM (
            SELECT * FROM pending UNION ALL SELECT * FROM failed UNION ALL SELECT * FROM expired
        ) c
        ORDER BY priority, created_at, id LIMIT $4),
    leased AS (
        UPDATE notice
        SET state = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1,
            tries = tries + 1, updated_at = $3
        WHERE id IN (SELECT id FROM chosen)
        RETURNING id, idempotency_key, event_id, channel, attempts, tries, next_attempt_at,
            created_at, priority, rendered),
    abandoned AS (
        UPDATE notice_attempt SET outcome = 'abandoned', finished_at = $3,
            detail = 'the worker stopped before recording an outcome; lease expired'
        WHERE finished_at IS NULL AND notice_id IN (SELECT id FROM leased)),
    opened AS (
        INSERT INTO notice_attempt (notice_id, number, started_at, outcome)
        SELECT id, attempts, $3, 'sending' FROM leased)
    SELECT id, idempotency_key, event_id, channel, attempts, tries, next_attempt_at, created_at,
        CAST(rendered AS TEXT) AS rendered
    FROM leased ORDER BY priority, created_at, id";

/// Closes as abandoned the attempts a dead worker left open on the notices just leased
/// to `$1`, at `$3` (SQLite, after [`CLAIM_SQLITE`] in the same query).
const CLOSE_ABANDONED_SQLITE: &str = "UPDATE notice_attempt SET outcome = 'abandoned',
        finished_at = $3,
        detail = 'the worker stopped before recording an outcome; lease expired'
    WHERE finished_at IS NULL AND notice_id IN (SELECT id FROM notice WHERE lease_owner = $1)";

/// Opens an attempt, started at `$3`, on each notice leased to `$1`.
const OPEN_ATTEMPTS_SQLITE: &str =
    "INSERT INTO notice_attempt (notice_id, number, started_at, outcome)
    SELECT id, attempts, $3, 'sending' FROM notice WHERE lease_owner = $1";

/// Notices one statement of [`Tx::insert_notices`] stores: 64 rows of 24 parameters,
/// far below either engine's limit.
const NOTICES_PER_INSERT: usize = 64;
/// Most notices [`Store::store_notices`] sends in one query on SQLite (24 parameters
/// each, far below SQLite's limit); more go through a transaction chunk by chunk.
const MAX_NOTICES_AT_ONCE: usize = 1024;
/// Most sent notices one statement records.
const SENT_PER_STATEMENT: usize = 128;

/// Marks sent, from the values `v(nid, reference, detail)`, the notices still leased
/// to `$2`, at `$1`.
const MARK_SENT: &str =
    "UPDATE notice SET state = 'sent', sent_at = $1, receipt_reference = v.reference,
        receipt_detail = v.detail, last_error = '', next_attempt_at = NULL,
        lease_owner = NULL, lease_until = NULL, updated_at = $1
    FROM v WHERE notice.id = v.nid AND notice.lease_owner = $2 AND notice.state = 'sending'";

/// Records at once that the claimed notices `sent` (id, the channel's reference, its
/// answer) were sent: their open attempts are closed and the notices marked sent,
/// only where `owner` still holds the lease. On SQLite two statements in one hand-off
/// to the writer (the attempts first, reading the lease before either changes); on
/// PostgreSQL one statement whose second part closes the attempts of the notices its
/// first part marked. Returns the ids recorded.
async fn finish_sent_at_once(
    store: &Store,
    sent: &[(&str, &str, &str)],
    owner: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let values = crate::values_sql_after("", 3, sent.len(), 2);
    let sql = match store.backend() {
        crate::Backend::Sqlite => format!(
            "WITH v(nid, reference, detail) AS (VALUES {values})
             UPDATE notice_attempt SET outcome = 'sent', detail = v.reference || ': ' || v.detail,
                finished_at = $1
             FROM v JOIN notice ON notice.id = v.nid AND notice.lease_owner = $2
                AND notice.state = 'sending'
             WHERE notice_attempt.notice_id = v.nid AND notice_attempt.finished_at IS NULL;
             WITH v(nid, reference, detail) AS (VALUES {values})
             {MARK_SENT} RETURNING notice.id"
        ),
        crate::Backend::Postgres => format!(
            "WITH v(nid, reference, detail) AS (VALUES {values}),
             recorded AS ({MARK_SENT}
                RETURNING notice.id, v.reference || ': ' || v.detail AS detail),
             closed AS (
                UPDATE notice_attempt SET outcome = 'sent', detail = recorded.detail,
                    finished_at = $1
                FROM recorded
                WHERE notice_attempt.notice_id = recorded.id
                    AND notice_attempt.finished_at IS NULL)
             SELECT id FROM recorded"
        ),
    };
    let now = micros(now);
    write_alone!(store, sql.as_str(), |text, c| {
        let mut query = sqlx::query_scalar::<_, String>(text).bind(now).bind(owner);
        for (id, reference, detail) in sent {
            query = query.bind(*id).bind(*reference).bind(*detail);
        }
        query.fetch_all(c).await
    })
}

const NOTICE_COLUMNS: usize = 24;
const INSERT_NOTICES: &str = "INSERT INTO notice (id, idempotency_key, event_id, event_kind,
        rule_id, rules_version, recipient_id, recipient_role, recipient_name, member_id, channel,
        destination, template_id, template_version, language, subject, priority, planned,
        rendered, state, last_error, next_attempt_at, created_at, updated_at)
    VALUES ";

impl Tx {
    /// Stores every notice of `notices` unless one with the same key, or for the same
    /// event, rule and recipient, already exists: one multi-row statement per
    /// [`NOTICES_PER_INSERT`] notices. Returns how many were inserted. Outside a
    /// larger transaction, [`Store::store_notices`] does the same in one hand-off on
    /// SQLite.
    pub async fn insert_notices(
        &mut self,
        notices: &[&NewNotice],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = micros(now);
        let mut inserted = 0;
        for chunk in notices.chunks(NOTICES_PER_INSERT) {
            let sql = crate::values_sql(INSERT_NOTICES, NOTICE_COLUMNS, chunk.len())
                + " ON CONFLICT DO NOTHING";
            inserted += on_tx!(self, c => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for n in chunk {
                    query = query
                        .bind(&n.id).bind(&n.idempotency_key).bind(&n.event_id).bind(&n.event_kind)
                        .bind(&n.rule_id).bind(&n.rules_version).bind(&n.recipient_id)
                        .bind(&n.recipient_role).bind(&n.recipient_name).bind(n.member_id.clone())
                        .bind(&n.channel).bind(&n.destination).bind(&n.template_id)
                        .bind(n.template_version).bind(&n.language).bind(&n.subject)
                        .bind(n.priority).bind(n.planned.as_ref().map(Json))
                        .bind(n.rendered.as_ref().map(Json)).bind(&n.state).bind(&n.last_error)
                        .bind(now).bind(now).bind(now);
                }
                query.execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(inserted)
    }

    /// Stores a notice unless one with the same key, or for the same event, rule and
    /// recipient, already exists. Returns whether it was inserted.
    pub async fn insert_notice(
        &mut self,
        n: &NewNotice,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.insert_notices(&[n], now).await? == 1)
    }

    /// Records how the attempt on a claimed notice ended, inside this transaction.
    /// Returns false when the lease was lost, in which case nothing changes.
    async fn finish_notice(
        &mut self,
        id: &str,
        owner: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = micros(now);
        let (state, detail) = match outcome {
            DeliveryOutcome::Sent { reference, detail } => {
                let n = on_tx!(self, c => sqlx::query(
                    "UPDATE notice SET state = 'sent', sent_at = $1, receipt_reference = $2,
                        receipt_detail = $3, last_error = '', next_attempt_at = NULL,
                        lease_owner = NULL, lease_until = NULL, updated_at = $1
                     WHERE id = $4 AND lease_owner = $5 AND state = 'sending'")
                    .bind(now).bind(reference).bind(detail).bind(id).bind(owner)
                    .execute(c).await.map(|r| r.rows_affected()))?;
                if n == 0 {
                    return Ok(false);
                }
                ("sent", format!("{reference}: {detail}"))
            }
            DeliveryOutcome::Failed { error, retry_at } => {
                let n = on_tx!(self, c => sqlx::query(
                    "UPDATE notice SET state = 'failed', next_attempt_at = $1, last_error = $2,
                        lease_owner = NULL, lease_until = NULL, updated_at = $3
                     WHERE id = $4 AND lease_owner = $5 AND state = 'sending'")
                    .bind(micros(*retry_at)).bind(error).bind(now).bind(id).bind(owner)
                    .execute(c).await.map(|r| r.rows_affected()))?;
                if n == 0 {
                    return Ok(false);
                }
                ("failed", error.clone())
            }
            DeliveryOutcome::Dead { error } => {
                let n = on_tx!(self, c => sqlx::query(
                    "UPDATE notice SET state = 'dead', next_attempt_at = NULL, last_error = $1,
                        lease_owner = NULL, lease_until = NULL, updated_at = $2
                     WHERE id = $3 AND lease_owner = $4 AND state = 'sending'")
                    .bind(error).bind(now).bind(id).bind(owner)
                    .execute(c).await.map(|r| r.rows_affected()))?;
                if n == 0 {
                    return Ok(false);
                }
                ("dead", error.clone())
            }
        };
        on_tx!(self, c => sqlx::query(
            "UPDATE notice_attempt SET outcome = $1, detail = $2, finished_at = $3
             WHERE notice_id = $4 AND finished_at IS NULL")
            .bind(state).bind(detail).bind(now).bind(id)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(true)
    }

    /// Records that the claimed notices `sent` (id, the channel's reference, its
    /// answer) were sent, closing their open attempts, in two statements. Returns the
    /// ids recorded; a notice whose lease was lost is left as it is.
    async fn finish_sent_notices(
        &mut self,
        sent: &[(&str, &str, &str)],
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let now = micros(now);
        let values = crate::values_sql_after("", 3, sent.len(), 2);
        let sql = format!(
            "WITH v(nid, reference, detail) AS (VALUES {values})
             {MARK_SENT} RETURNING notice.id"
        );
        let recorded: Vec<String> = on_tx!(self, c => {
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(now).bind(owner);
            for (id, reference, detail) in sent {
                query = query.bind(*id).bind(*reference).bind(*detail);
            }
            query.fetch_all(c).await
        })?;
        let closing: Vec<(&str, String)> = sent
            .iter()
            .filter(|(id, _, _)| recorded.iter().any(|r| r == id))
            .map(|(id, reference, detail)| (*id, format!("{reference}: {detail}")))
            .collect();
        if closing.is_empty() {
            return Ok(recorded);
        }
        let values = crate::values_sql_after("", 2, closing.len(), 1);
        let sql = format!(
            "WITH v(nid, detail) AS (VALUES {values})
             UPDATE notice_attempt SET outcome = 'sent', detail = v.detail, finished_at = $1
             FROM v WHERE notice_attempt.notice_id = v.nid AND notice_attempt.finished_at IS NULL"
        );
        on_tx!(self, c => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(now);
            for (id, detail) in &closing {
                query = query.bind(*id).bind(detail.as_str());
            }
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(recorded)
    }

    /// Makes a failed or dead notice due again now, with a fresh retry budget and,
    /// when given, newly rendered content. Returns false when the notice is in
    /// another state (pending, sending or sent) or has nothing to send, in which case
    /// nothing changes.
    pub async fn resend_notice(
        &mut self,
        id: &str,
        rendered: Option<&Value>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = micros(now);
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE notice SET state = 'pending', tries = 0, next_attempt_at = $1, updated_at = $1,
                rendered = COALESCE($2, rendered)
             WHERE id = $3 AND state IN ('failed', 'dead') AND channel <> 'none'
               AND (rendered IS NOT NULL OR $2 IS NOT NULL)")
            .bind(now).bind(rendered.map(Json)).bind(id)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}

impl Store {
    /// [`Tx::insert_notices`] as a transaction of its own. On SQLite every chunk's
    /// statement travels in one query, one hand-off to the writer's thread
    /// ([`crate::SqliteWriter::write_in_one`]), and what was inserted is counted from
    /// the ids returned.
    pub async fn store_notices(
        &self,
        notices: &[&NewNotice],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if notices.is_empty() {
            return Ok(0);
        }
        let Store::Sqlite { writer, .. } = self else {
            return self.store_notices_in_tx(notices, now).await;
        };
        if notices.len() > MAX_NOTICES_AT_ONCE {
            return self.store_notices_in_tx(notices, now).await;
        }
        let now = micros(now);
        let mut sql = String::new();
        for chunk in notices.chunks(NOTICES_PER_INSERT) {
            sql.push_str(&crate::anonymous_values_sql(
                INSERT_NOTICES,
                NOTICE_COLUMNS,
                chunk.len(),
            ));
            sql.push_str(" ON CONFLICT DO NOTHING RETURNING id;\n");
        }
        let inserted: Vec<String> = writer
            .write_in_one(sql.trim_end_matches(";\n"), async |c, text| {
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(text));
                for n in notices {
                    query = query
                        .bind(&n.id)
                        .bind(&n.idempotency_key)
                        .bind(&n.event_id)
                        .bind(&n.event_kind)
                        .bind(&n.rule_id)
                        .bind(&n.rules_version)
                        .bind(&n.recipient_id)
                        .bind(&n.recipient_role)
                        .bind(&n.recipient_name)
                        .bind(n.member_id.clone())
                        .bind(&n.channel)
                        .bind(&n.destination)
                        .bind(&n.template_id)
                        .bind(n.template_version)
                        .bind(&n.language)
                        .bind(&n.subject)
                        .bind(n.priority)
                        .bind(n.planned.as_ref().map(Json))
                        .bind(n.rendered.as_ref().map(Json))
                        .bind(&n.state)
                        .bind(&n.last_error)
                        .bind(now)
                        .bind(now)
                        .bind(now);
                }
                query.fetch_all(c).await
            })
            .await?;
        Ok(u64::try_from(inserted.len()).unwrap_or(u64::MAX))
    }

    async fn store_notices_in_tx(
        &self,
        notices: &[&NewNotice],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = tx.insert_notices(notices, now).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Claims up to `limit` due notices for a fresh owner until `now + lease`, and
    /// opens an attempt for each (closing as abandoned any attempt a dead worker left
    /// open). Concurrent dispatchers never get the same notice while its lease runs.
    pub async fn claim_notices(
        &self,
        limit: u32,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<(String, Vec<LeasedNotice>), StoreError> {
        let now = micros(now);
        let owner = uuid::Uuid::now_v7().to_string();
        let writer = match self {
            Store::Sqlite { writer, .. } => writer,
            Store::Postgres { pool, .. } => {
                // One statement, a transaction of its own.
                let rows = sqlx::query_as(CLAIM_POSTGRES)
                    .bind(&owner)
                    .bind(now + lease)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?;
                return Ok((owner, rows));
            }
        };
        // The claim, the attempts closed and opened, in one hand-off.
        let text = format!(
            "{CLAIM_SQLITE} RETURNING id;\n{CLOSE_ABANDONED_SQLITE};\n{OPEN_ATTEMPTS_SQLITE}"
        );
        let claimed: Vec<String> = writer
            .write_in_one(&text, async |c, text| {
                sqlx::query_scalar(sqlx::AssertSqlSafe(text))
                    .bind(&owner)
                    .bind(now + lease)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(c)
                    .await
            })
            .await?;
        if claimed.is_empty() {
            return Ok((owner, Vec::new()));
        }
        let rows = self.leased_notices(&owner).await?;
        Ok((owner, rows))
    }

    /// When the oldest pending notice was stored, of either priority: a claim takes
    /// notices someone waits on first, so under a backlog the oldest of the others
    /// can be far older than any notice claimed. Two index probes.
    pub async fn oldest_pending_notice(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_scalar(
            "SELECT MIN(at) FROM (
                SELECT (SELECT created_at FROM notice WHERE state = 'pending' AND priority = 0
                        ORDER BY created_at LIMIT 1) AS at
                UNION ALL
                SELECT (SELECT created_at FROM notice WHERE state = 'pending' AND priority = 1
                        ORDER BY created_at LIMIT 1)) oldest")
            .fetch_one(c).await)?)
    }

    /// The notices leased to `owner`, read on SQLite on a read connection once the
    /// claim committed, so the writer is not held while their rendered content is read
    /// and decoded; only their owner changes leased notices. (PostgreSQL's claim
    /// returns them itself.)
    async fn leased_notices(&self, owner: &str) -> Result<Vec<LeasedNotice>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(
            "SELECT id, idempotency_key, event_id, channel, attempts, tries, next_attempt_at,
                created_at, CAST(rendered AS TEXT) AS rendered
             FROM notice WHERE lease_owner = $1 AND state = 'sending'
             ORDER BY priority, created_at, id")
            .bind(owner).fetch_all(c).await)?)
    }

    /// Records how the attempt on a claimed notice ended. Returns false when the lease
    /// was lost (another dispatcher took the notice over), in which case nothing
    /// changes.
    pub async fn finish_notice(
        &self,
        id: &str,
        owner: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let finished = self.finish_notices(&[(id, outcome)], owner, now).await?;
        Ok(finished == [true])
    }

    /// Records the outcomes of several claimed notices in one transaction; one flag
    /// per notice, in order, false where the lease was lost (that notice is left as
    /// it is).
    pub async fn finish_notices(
        &self,
        outcomes: &[(&str, &DeliveryOutcome)],
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        // Sent notices (nearly all) are recorded together. A round of sent notices
        // alone is recorded at once: on SQLite in one hand-off to the writer's thread,
        // on PostgreSQL in one statement.
        let sent: Vec<(&str, &str, &str)> = outcomes
            .iter()
            .filter_map(|(id, outcome)| match outcome {
                DeliveryOutcome::Sent { reference, detail } => {
                    Some((*id, reference.as_str(), detail.as_str()))
                }
                _ => None,
            })
            .collect();
        if sent.len() == outcomes.len() && sent.len() <= SENT_PER_STATEMENT {
            let recorded = finish_sent_at_once(self, &sent, owner, now).await?;
            return Ok(sent
                .iter()
                .map(|(id, _, _)| recorded.iter().any(|r| r == id))
                .collect());
        }
        let mut tx = self.begin().await?;
        let mut recorded = std::collections::HashSet::new();
        for chunk in sent.chunks(SENT_PER_STATEMENT) {
            recorded.extend(tx.finish_sent_notices(chunk, owner, now).await?);
        }
        let mut finished = Vec::with_capacity(outcomes.len());
        for (id, outcome) in outcomes {
            finished.push(match outcome {
                DeliveryOutcome::Sent { .. } => recorded.contains(*id),
                _ => tx.finish_notice(id, owner, outcome, now).await?,
            });
        }
        if finished.contains(&true) {
            tx.commit().await?;
        } else {
            tx.rollback_quietly().await;
        }
        Ok(finished)
    }

    pub async fn get_notice(&self, id: &str) -> Result<NoticeRecord, StoreError> {
        let row: Option<NoticeRecord> = on_db!(self, c => sqlx::query_as(select_notice!("WHERE id = $1"))
            .bind(id).fetch_optional(c).await)?;
        row.ok_or_else(|| StoreError::NotFound {
            kind: "notice",
            id: id.to_owned(),
        })
    }

    /// Every attempt on a notice, oldest first.
    pub async fn notice_attempts(&self, id: &str) -> Result<Vec<NoticeAttempt>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(
            "SELECT notice_id, number, started_at, finished_at, outcome, detail
             FROM notice_attempt WHERE notice_id = $1 ORDER BY number")
            .bind(id).fetch_all(c).await)?)
    }

    /// The notices an event produced, in key order.
    pub async fn notices_for_event(&self, event_id: &str) -> Result<Vec<NoticeRecord>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(select_notice!(
            "WHERE event_id = $1 ORDER BY idempotency_key"))
            .bind(event_id).fetch_all(c).await)?)
    }

    /// A recipient's notices (everyone's when `recipient` is None), newest first,
    /// keyset-paged on (created_at, id).
    pub async fn list_notices(
        &self,
        recipient: Option<&str>,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<NoticeRecord>, StoreError> {
        let (before_at, before_id) = decode_token(page_token);
        let rows: Vec<NoticeRecord> = on_db!(self, c => sqlx::query_as(select_notice!(
            "WHERE ($1 = '' OR recipient_id = $1)
               AND (created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"))
            .bind(recipient.unwrap_or_default()).bind(before_at).bind(before_id)
            .bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        Ok(page_of(rows, page_size))
    }

    /// Failed and dead notices (or only those in `state`), newest first.
    pub async fn list_failed_notices(
        &self,
        state: Option<&str>,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<NoticeRecord>, StoreError> {
        let (before_at, before_id) = decode_token(page_token);
        let rows: Vec<NoticeRecord> = on_db!(self, c => sqlx::query_as(select_notice!(
            "WHERE (($1 = '' AND state IN ('failed', 'dead')) OR state = $1)
               AND (created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"))
            .bind(state.unwrap_or_default()).bind(before_at).bind(before_id)
            .bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        Ok(page_of(rows, page_size))
    }

    /// Notices created in `[from, to)`, counted by channel and state.
    pub async fn notice_counts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<NoticeCount>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(
            "SELECT channel, state, COUNT(*) AS count FROM notice
             WHERE created_at >= $1 AND created_at < $2
             GROUP BY channel, state ORDER BY channel, state")
            .bind(from).bind(to).fetch_all(c).await)?)
    }
}

fn page_of(rows: Vec<NoticeRecord>, page_size: u32) -> Page<NoticeRecord> {
    Page::of(rows, page_size, NoticeRecord::page_token)
}

impl NoticeRecord {
    /// The token of the page after this notice in [`Store::list_notices`] and
    /// [`Store::list_failed_notices`].
    pub fn page_token(&self) -> String {
        encode_token(self.created_at, &self.id)
    }

    /// About how many bytes the notice takes: its documents and texts.
    pub fn stored_bytes(&self) -> usize {
        let docs = [&self.planned, &self.rendered]
            .into_iter()
            .flatten()
            .map(|d| json_bytes(&d.0))
            .sum::<usize>();
        let texts = [
            &self.recipient_name,
            &self.destination,
            &self.subject,
            &self.receipt_detail,
            &self.last_error,
        ]
        .into_iter()
        .map(String::len)
        .sum::<usize>();
        docs + texts + 512
    }
}
