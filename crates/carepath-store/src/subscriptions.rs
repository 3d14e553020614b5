//! FHIR subscriptions (R4 Subscriptions Backport, rest-hook channel) and the
//! notifications owed to them.
//!
//! A subscription belongs to one provider NPI and counts the events it was handed
//! (`events_since_start`); each event becomes one notification carrying the count at
//! the time, unique by (subscription, source event), so a redelivered domain event
//! adds nothing and does not move the count.
//!
//! Notification states: `pending` (claimed under a lease while a delivery is under
//! way, due again at `next_attempt_at` after a failure) → `delivered` | `dead` (too
//! many failures) | `cancelled` (the subscription ended first). A delivery whose
//! worker died is claimed again once its lease runs out, so a receiver may see the
//! same event number twice (at least once, as the backport allows).

use chrono::{DateTime, Utc};

use crate::{
    Backend, Page, Store, StoreError, Tx, on_db, on_tx,
    page::{decode_token, encode_token, micros},
};

/// Most characters of a delivery error kept on a notification or subscription.
pub const MAX_DELIVERY_ERROR_CHARS: usize = 1024;

/// A subscription to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscriptionRecord {
    pub id: String,
    /// The NPI whose requests it follows.
    pub owner_npi: String,
    pub topic: String,
    pub endpoint: String,
    /// `full-resource` or `id-only`.
    pub content: String,
    /// One `Name: value` line sent with each notification.
    pub header: Option<String>,
    /// The subject of the caller who created it.
    pub created_by: String,
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubscriptionRecord {
    pub id: String,
    pub owner_npi: String,
    pub topic: String,
    pub endpoint: String,
    pub content: String,
    pub header: Option<String>,
    /// `active`, `error` (the last delivery failed) or `off` (ended).
    pub status: String,
    pub events_since_start: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A stored notification: one event owed to one subscription.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NotificationRecord {
    pub id: String,
    pub subscription_id: String,
    /// The subscription's event count once this event was counted (1, 2, ...).
    pub event_number: i64,
    /// The domain event that caused it.
    pub source_event_id: String,
    pub case_id: String,
    pub event_kind: String,
    pub occurred_at: DateTime<Utc>,
    /// `pending`, `delivered`, `dead` or `cancelled`.
    pub state: String,
    /// Failed attempts so far.
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// What recording a failed delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureRecorded {
    /// Due again at the retry time.
    Retrying,
    /// Out of attempts: kept on the dead list, never tried again.
    Dead,
    /// The lease was lost (another worker took the notification, or the subscription
    /// ended); nothing changed.
    LeaseLost,
}

macro_rules! select_subscription {
    ($rest:literal) => {
        concat!(
            "SELECT id, owner_npi, topic, endpoint, content, header, status, events_since_start, last_error, created_at, created_by, ended_at FROM fhir_subscription ",
            $rest
        )
    };
}

macro_rules! select_notification {
    ($rest:literal) => {
        concat!(
            "SELECT id, subscription_id, event_number, source_event_id, case_id, event_kind, occurred_at, state, attempts, next_attempt_at, lease_owner, lease_until, last_error, delivered_at, created_at FROM fhir_notification ",
            $rest
        )
    };
}

/// Leases due notifications: pending, due, and not leased (or leased by a worker whose
/// lease ran out), oldest due first, read from `fhir_notification_due`.
const CLAIM_SQLITE: &str = "UPDATE fhir_notification SET lease_owner = $1, lease_until = $2
    WHERE id IN (
        SELECT id FROM fhir_notification
        WHERE state = 'pending' AND next_attempt_at <= $3
          AND (lease_until IS NULL OR lease_until < $3)
        ORDER BY next_attempt_at, id LIMIT $4)";

const CLAIM_POSTGRES: &str = "UPDATE fhir_notification SET lease_owner = $1, lease_until = $2
    WHERE id IN (
        SELECT id FROM fhir_notification
        WHERE state = 'pending' AND next_attempt_at <= $3
          AND (lease_until IS NULL OR lease_until < $3)
        ORDER BY next_attempt_at, id LIMIT $4
        FOR UPDATE SKIP LOCKED)";

/// `error` cut to [`MAX_DELIVERY_ERROR_CHARS`].
fn bounded_error(error: &str) -> String {
    error.chars().take(MAX_DELIVERY_ERROR_CHARS).collect()
}

impl Tx {
    /// Holds the subscriptions of `owner_npi` until this transaction ends, so two
    /// creations cannot both pass the per-provider cap. SQLite has one writer, so only
    /// PostgreSQL needs the lock.
    pub async fn lock_subscriptions_of(&mut self, owner_npi: &str) -> Result<(), StoreError> {
        if let Tx::Postgres(t) = self {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('fhir_subscription:' || $1))")
                .bind(owner_npi)
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    /// How many subscriptions of `owner_npi` have not ended (active or in error).
    pub async fn count_active_subscriptions(&mut self, owner_npi: &str) -> Result<i64, StoreError> {
        Ok(on_tx!(self, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM fhir_subscription WHERE owner_npi = $1 AND status <> 'off'")
            .bind(owner_npi).fetch_one(c).await)?)
    }

    /// Stores a new, active subscription with no events yet.
    pub async fn insert_subscription(
        &mut self,
        s: &NewSubscriptionRecord,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionRecord, StoreError> {
        let now = micros(now);
        on_tx!(self, c => sqlx::query(
            "INSERT INTO fhir_subscription (id, owner_npi, topic, endpoint, content, header,
                status, events_since_start, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', 0, $7, $8)")
            .bind(&s.id).bind(&s.owner_npi).bind(&s.topic).bind(&s.endpoint).bind(&s.content)
            .bind(s.header.clone()).bind(now).bind(&s.created_by)
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(|e| crate::conflict_on_unique(e, "subscription", &s.id))?;
        Ok(SubscriptionRecord {
            id: s.id.clone(),
            owner_npi: s.owner_npi.clone(),
            topic: s.topic.clone(),
            endpoint: s.endpoint.clone(),
            content: s.content.clone(),
            header: s.header.clone(),
            status: "active".into(),
            events_since_start: 0,
            last_error: None,
            created_at: now,
            created_by: s.created_by.clone(),
            ended_at: None,
        })
    }

    /// Ends a subscription (status `off`) and cancels the notifications still owed to
    /// it. Returns false when it had already ended, in which case nothing changes.
    pub async fn end_subscription(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = micros(now);
        let ended = on_tx!(self, c => sqlx::query(
            "UPDATE fhir_subscription SET status = 'off', ended_at = $1
             WHERE id = $2 AND status <> 'off'")
            .bind(now).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        if ended == 0 {
            return Ok(false);
        }
        on_tx!(self, c => sqlx::query(
            "UPDATE fhir_notification SET state = 'cancelled', lease_owner = NULL, lease_until = NULL
             WHERE subscription_id = $1 AND state = 'pending'")
            .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(true)
    }
}

/// Most providers [`Store::subscribed_owners`] looks up at once.
pub const OWNERS_PER_READ: usize = 512;

impl Store {
    /// One subscription, whatever its status.
    pub async fn get_subscription(&self, id: &str) -> Result<SubscriptionRecord, StoreError> {
        let row: Option<SubscriptionRecord> = on_db!(self, c => sqlx::query_as(
            select_subscription!("WHERE id = $1"))
            .bind(id).fetch_optional(c).await)?;
        row.ok_or_else(|| StoreError::NotFound {
            kind: "subscription",
            id: id.to_owned(),
        })
    }

    /// The subscriptions of `owner_npi`, ended ones included, newest first, keyset-paged
    /// on (created_at, id).
    pub async fn list_subscriptions(
        &self,
        owner_npi: &str,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<SubscriptionRecord>, StoreError> {
        let (before_at, before_id) = decode_token(page_token);
        let rows: Vec<SubscriptionRecord> = on_db!(self, c => sqlx::query_as(select_subscription!(
            "WHERE owner_npi = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"))
            .bind(owner_npi).bind(before_at).bind(before_id).bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        Ok(Page::of(rows, page_size, |r| {
            encode_token(r.created_at, &r.id)
        }))
    }

    /// How many subscriptions of `owner_npi` have not ended (active or in error).
    pub async fn count_active_subscriptions(&self, owner_npi: &str) -> Result<i64, StoreError> {
        Ok(on_db!(self, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM fhir_subscription WHERE owner_npi = $1 AND status <> 'off'")
            .bind(owner_npi).fetch_one(c).await)?)
    }

    /// Which of the providers `owner_npis` have a subscription that is not off, in
    /// one read (at most [`OWNERS_PER_READ`] a call; more are an error).
    pub async fn subscribed_owners(
        &self,
        owner_npis: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if owner_npis.is_empty() {
            return Ok(Default::default());
        }
        if owner_npis.len() > OWNERS_PER_READ {
            return Err(StoreError::Invalid {
                field: "owner_npis",
                reason: format!(
                    "at most {OWNERS_PER_READ} providers are looked up at once, {} asked",
                    owner_npis.len()
                ),
            });
        }
        let sql = format!(
            "SELECT DISTINCT owner_npi FROM fhir_subscription
             WHERE owner_npi IN ({}) AND status <> 'off'",
            crate::placeholder_list(owner_npis.len())
        );
        let owners: Vec<String> = on_db!(self, c => {
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()));
            for npi in owner_npis {
                query = query.bind(*npi);
            }
            query.fetch_all(c).await
        })?;
        Ok(owners.into_iter().collect())
    }

    /// Hands one domain event to every subscription of `owner_npis` that has not
    /// ended, in one transaction: each such subscription counts the event and gets a
    /// pending notification numbered with the new count, due now. A subscription that
    /// already has a notification for `source_event_id` (a redelivered event) gets
    /// nothing and keeps its count. Returns how many notifications were added.
    pub async fn enqueue_notifications(
        &self,
        source_event_id: &str,
        case_id: &str,
        kind: &str,
        occurred_at: DateTime<Utc>,
        owner_npis: &[&str],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let now = micros(now);
        let mut owners: Vec<&str> = owner_npis.to_vec();
        owners.sort_unstable();
        owners.dedup();
        let mut tx = self.begin().await?;
        let mut subscriptions: Vec<String> = Vec::new();
        for owner in owners {
            let ids: Vec<String> = on_tx!(&mut tx, c => sqlx::query_scalar(
                "SELECT id FROM fhir_subscription WHERE owner_npi = $1 AND status <> 'off'
                 ORDER BY id")
                .bind(owner).fetch_all(c).await)?;
            subscriptions.extend(ids);
        }
        let mut added = 0;
        for subscription in &subscriptions {
            // The insert comes first: the unique (subscription, event) pair makes a
            // concurrent or repeated hand-over of the same event insert nothing (on
            // PostgreSQL the second waits for the first to commit), and only an
            // inserted notification moves the count.
            let id = uuid::Uuid::now_v7().to_string();
            let inserted = on_tx!(&mut tx, c => sqlx::query(
                "INSERT INTO fhir_notification (id, subscription_id, event_number, source_event_id,
                    case_id, event_kind, occurred_at, state, attempts, next_attempt_at, created_at)
                 VALUES ($1, $2, 0, $3, $4, $5, $6, 'pending', 0, $7, $7)
                 ON CONFLICT DO NOTHING")
                .bind(&id).bind(subscription).bind(source_event_id).bind(case_id).bind(kind)
                .bind(occurred_at).bind(now)
                .execute(c).await.map(|r| r.rows_affected()))?;
            if inserted == 0 {
                continue;
            }
            // The row lock this update takes on PostgreSQL orders concurrent events of
            // one subscription, so each gets its own number.
            let number: i64 = on_tx!(&mut tx, c => sqlx::query_scalar(
                "UPDATE fhir_subscription SET events_since_start = events_since_start + 1
                 WHERE id = $1 RETURNING events_since_start")
                .bind(subscription).fetch_one(c).await)?;
            on_tx!(&mut tx, c => sqlx::query(
                "UPDATE fhir_notification SET event_number = $1 WHERE id = $2")
                .bind(number).bind(&id).execute(c).await.map(|r| r.rows_affected()))?;
            added += 1;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Claims up to `limit` due notifications for a fresh owner until `now + lease`.
    /// Concurrent workers never get the same notification while its lease runs.
    pub async fn claim_notifications(
        &self,
        limit: u32,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<(String, Vec<NotificationRecord>), StoreError> {
        let now = micros(now);
        let owner = uuid::Uuid::now_v7().to_string();
        let sql = match self.backend() {
            Backend::Sqlite => CLAIM_SQLITE,
            Backend::Postgres => CLAIM_POSTGRES,
        };
        let mut tx = self.begin().await?;
        let claimed = on_tx!(&mut tx, c => sqlx::query(sql)
            .bind(&owner).bind(now + lease).bind(now).bind(i64::from(limit))
            .execute(c).await.map(|r| r.rows_affected()))?;
        if claimed == 0 {
            drop(tx);
            return Ok((owner, Vec::new()));
        }
        let rows: Vec<NotificationRecord> = on_tx!(&mut tx, c => sqlx::query_as(select_notification!(
            "WHERE lease_owner = $1 AND state = 'pending' ORDER BY next_attempt_at, id"))
            .bind(&owner).fetch_all(c).await)?;
        tx.commit().await?;
        Ok((owner, rows))
    }

    /// Records a delivery: the notification is delivered and its subscription, if in
    /// error, active again. Returns false when the lease was lost, in which case
    /// nothing changes.
    pub async fn mark_notification_delivered(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = micros(now);
        let mut tx = self.begin().await?;
        let subscription: Option<String> = on_tx!(&mut tx, c => sqlx::query_scalar(
            "UPDATE fhir_notification SET state = 'delivered', delivered_at = $1, last_error = NULL,
                lease_owner = NULL, lease_until = NULL
             WHERE id = $2 AND lease_owner = $3 AND state = 'pending'
             RETURNING subscription_id")
            .bind(now).bind(id).bind(owner).fetch_optional(c).await)?;
        let Some(subscription) = subscription else {
            return Ok(false);
        };
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE fhir_subscription SET status = 'active', last_error = NULL
             WHERE id = $1 AND status = 'error'")
            .bind(&subscription).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a failed delivery: one more failed attempt, due again at `retry_at`, or
    /// dead once `max_attempts` have failed. Either way its subscription goes to
    /// status `error` with `error` as its last error (until a later delivery
    /// succeeds).
    pub async fn mark_notification_failed(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        retry_at: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<FailureRecorded, StoreError> {
        let error = bounded_error(error);
        let mut tx = self.begin().await?;
        let row: Option<(String, String)> = on_tx!(&mut tx, c => sqlx::query_as(
            "UPDATE fhir_notification SET attempts = attempts + 1,
                state = CASE WHEN attempts + 1 >= $1 THEN 'dead' ELSE 'pending' END,
                next_attempt_at = $2, last_error = $3, lease_owner = NULL, lease_until = NULL
             WHERE id = $4 AND lease_owner = $5 AND state = 'pending'
             RETURNING subscription_id, state")
            .bind(max_attempts).bind(micros(retry_at)).bind(&error).bind(id).bind(owner)
            .fetch_optional(c).await)?;
        let Some((subscription, state)) = row else {
            return Ok(FailureRecorded::LeaseLost);
        };
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE fhir_subscription SET status = 'error', last_error = $1
             WHERE id = $2 AND status <> 'off'")
            .bind(&error).bind(&subscription).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(if state == "dead" {
            FailureRecorded::Dead
        } else {
            FailureRecorded::Retrying
        })
    }

    /// One notification.
    pub async fn get_notification(&self, id: &str) -> Result<NotificationRecord, StoreError> {
        let row: Option<NotificationRecord> = on_db!(self, c => sqlx::query_as(
            select_notification!("WHERE id = $1"))
            .bind(id).fetch_optional(c).await)?;
        row.ok_or_else(|| StoreError::NotFound {
            kind: "notification",
            id: id.to_owned(),
        })
    }

    /// The notifications of a subscription numbered after `after_number`, in number
    /// order, at most `limit`.
    pub async fn list_notifications(
        &self,
        subscription_id: &str,
        after_number: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(select_notification!(
            "WHERE subscription_id = $1 AND event_number > $2 ORDER BY event_number, id LIMIT $3"))
            .bind(subscription_id).bind(after_number).bind(i64::from(limit))
            .fetch_all(c).await)?)
    }

    /// Dead notifications, newest first, keyset-paged on (created_at, id).
    pub async fn list_dead_notifications(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<NotificationRecord>, StoreError> {
        let (before_at, before_id) = decode_token(page_token);
        let rows: Vec<NotificationRecord> = on_db!(self, c => sqlx::query_as(select_notification!(
            "WHERE state = 'dead' AND (created_at < $1 OR (created_at = $1 AND id < $2))
             ORDER BY created_at DESC, id DESC LIMIT $3"))
            .bind(before_at).bind(before_id).bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        Ok(Page::of(rows, page_size, |r| {
            encode_token(r.created_at, &r.id)
        }))
    }
}
