//! Second-opinion requests, each kept as a JSON document (the workflow aggregate) with
//! the columns lists, watchers and expert matching need, and the secure messages on
//! each request.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{
    Backend, Page, Store, StoreError, Tx, on_db, on_tx,
    page::{decode_token, decode_token_or, encode_token, far_future, far_past, json_bytes},
};

/// A request as stored: the indexed columns and the aggregate document.
#[derive(Debug, Clone, PartialEq)]
pub struct OpinionRequestRecord {
    pub id: String,
    pub member_id: String,
    pub status: String,
    pub diagnosis_group: String,
    pub physician_npi: Option<String>,
    pub coordinator_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    /// True until the opinion is published: what lateness and expert load count.
    pub awaiting_opinion: bool,
    pub doc: Value,
}

/// Filters of [`Store::list_opinion_requests`]; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct OpinionRequestFilter {
    pub member_id: Option<String>,
    pub physician_npi: Option<String>,
    pub status: Option<String>,
    /// Leave out closed requests.
    pub open_only: bool,
    /// Only requests still awaiting their opinion whose due time is before this.
    pub due_before: Option<DateTime<Utc>>,
}

/// A secure message on a request.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OpinionMessageRecord {
    pub id: String,
    pub request_id: String,
    pub author_role: String,
    pub author_id: String,
    pub body: String,
    pub sent_at: DateTime<Utc>,
}

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    bool,
    Json<Value>,
);

fn record(row: Row) -> OpinionRequestRecord {
    let (
        id,
        member_id,
        status,
        diagnosis_group,
        physician_npi,
        coordinator_id,
        received_at,
        due_at,
        awaiting_opinion,
        doc,
    ) = row;
    OpinionRequestRecord {
        id,
        member_id,
        status,
        diagnosis_group,
        physician_npi,
        coordinator_id,
        received_at,
        due_at,
        awaiting_opinion,
        doc: doc.0,
    }
}

macro_rules! select_request {
    ($where:literal) => {
        concat!(
            "SELECT id, member_id, status, diagnosis_group, physician_npi, coordinator_id, received_at, due_at, awaiting_opinion, doc FROM secondopinion_request ",
            $where
        )
    };
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "second-opinion request",
        id: id.to_owned(),
    }
}

impl OpinionRequestRecord {
    /// The token of the page after this request in [`Store::list_opinion_requests`].
    pub fn page_token(&self) -> String {
        encode_token(self.received_at, &self.id)
    }

    /// About how many bytes the request takes (its document, written out).
    pub fn stored_bytes(&self) -> usize {
        json_bytes(&self.doc)
    }
}

impl OpinionMessageRecord {
    /// The token of the page after this message in [`Store::list_opinion_messages`].
    pub fn page_token(&self) -> String {
        encode_token(self.sent_at, &self.id)
    }

    /// About how many bytes the message takes.
    pub fn stored_bytes(&self) -> usize {
        self.body.len() + self.id.len() + self.request_id.len() + self.author_id.len() + 64
    }
}

impl Tx {
    pub async fn insert_opinion_request(
        &mut self,
        r: &OpinionRequestRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO secondopinion_request (id, member_id, status, diagnosis_group, physician_npi, coordinator_id, received_at, due_at, awaiting_opinion, doc, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
            .bind(&r.id).bind(&r.member_id).bind(&r.status).bind(&r.diagnosis_group)
            .bind(r.physician_npi.clone()).bind(r.coordinator_id.clone()).bind(r.received_at)
            .bind(r.due_at).bind(r.awaiting_opinion).bind(Json(&r.doc)).bind(now)
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(|e| crate::conflict_on_unique(e, "second-opinion request", &r.id))?;
        Ok(())
    }

    /// Reads a request for update: on PostgreSQL the row stays locked until the
    /// transaction ends, so concurrent steps on one request queue.
    pub async fn opinion_request_for_update(
        &mut self,
        id: &str,
    ) -> Result<OpinionRequestRecord, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => select_request!("WHERE id = $1"),
            Backend::Postgres => select_request!("WHERE id = $1 FOR UPDATE"),
        };
        let row: Option<Row> =
            on_tx!(self, c => sqlx::query_as(sql).bind(id).fetch_optional(c).await)?;
        row.map(record).ok_or_else(|| not_found(id))
    }

    pub async fn update_opinion_request(
        &mut self,
        r: &OpinionRequestRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query(
            "UPDATE secondopinion_request SET status = $2, physician_npi = $3, coordinator_id = $4, due_at = $5,
                awaiting_opinion = $6, doc = $7, updated_at = $8
             WHERE id = $1")
            .bind(&r.id).bind(&r.status).bind(r.physician_npi.clone()).bind(r.coordinator_id.clone())
            .bind(r.due_at).bind(r.awaiting_opinion).bind(Json(&r.doc)).bind(now)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn insert_opinion_message(
        &mut self,
        m: &OpinionMessageRecord,
    ) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO secondopinion_message (id, request_id, author_role, author_id, body, sent_at)
             VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&m.id).bind(&m.request_id).bind(&m.author_role).bind(&m.author_id)
            .bind(&m.body).bind(m.sent_at)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Open requests each expert leads that still await an opinion, for matching
    /// inside the assigning transaction.
    pub async fn expert_load(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(on_tx!(self, c => sqlx::query_as(
            "SELECT physician_npi, COUNT(*) FROM secondopinion_request
             WHERE physician_npi IS NOT NULL AND awaiting_opinion AND status <> 'closed'
             GROUP BY physician_npi ORDER BY physician_npi")
            .fetch_all(c).await)?)
    }
}

impl Store {
    pub async fn get_opinion_request(&self, id: &str) -> Result<OpinionRequestRecord, StoreError> {
        let row: Option<Row> = on_db!(self, c => sqlx::query_as(select_request!("WHERE id = $1"))
            .bind(id).fetch_optional(c).await)?;
        row.map(record).ok_or_else(|| not_found(id))
    }

    /// Requests matching `filter`, newest first, keyset-paged on (received_at, id).
    pub async fn list_opinion_requests(
        &self,
        filter: &OpinionRequestFilter,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<OpinionRequestRecord>, StoreError> {
        let (before_at, before_id) = decode_token(page_token);
        let rows: Vec<Row> = on_db!(self, c => sqlx::query_as(select_request!(
            "WHERE ($1 = '' OR member_id = $1)
               AND ($2 = '' OR physician_npi = $2)
               AND ($3 = '' OR status = $3)
               AND ($4 = FALSE OR status <> 'closed')
               AND ($5 = FALSE OR (awaiting_opinion AND due_at < $6))
               AND (received_at < $7 OR (received_at = $7 AND id < $8))
             ORDER BY received_at DESC, id DESC LIMIT $9"))
            .bind(filter.member_id.clone().unwrap_or_default())
            .bind(filter.physician_npi.clone().unwrap_or_default())
            .bind(filter.status.clone().unwrap_or_default())
            .bind(filter.open_only)
            .bind(filter.due_before.is_some())
            .bind(filter.due_before.unwrap_or(far_future()))
            .bind(before_at)
            .bind(before_id.clone())
            .bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        let items: Vec<OpinionRequestRecord> = rows.into_iter().map(record).collect();
        Ok(Page::of(items, page_size, OpinionRequestRecord::page_token))
    }

    /// A request's messages, oldest first, keyset-paged on (sent_at, id).
    pub async fn list_opinion_messages(
        &self,
        request_id: &str,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<OpinionMessageRecord>, StoreError> {
        let (after_at, after_id) = decode_token_or(page_token, far_past());
        let rows: Vec<OpinionMessageRecord> = on_db!(self, c => sqlx::query_as(
            "SELECT id, request_id, author_role, author_id, body, sent_at FROM secondopinion_message
             WHERE request_id = $1 AND (sent_at > $2 OR (sent_at = $2 AND id > $3))
             ORDER BY sent_at, id LIMIT $4")
            .bind(request_id).bind(after_at).bind(after_id).bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        Ok(Page::of(rows, page_size, OpinionMessageRecord::page_token))
    }
}

impl Store {
    /// The database file of a SQLite store (`None` on PostgreSQL or in memory), so
    /// files that belong with the data (uploaded records) can default to its folder.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match self {
            Store::Sqlite { writer, .. } => {
                let options = writer.connect_options();
                let path = options.get_filename();
                (!path.as_os_str().is_empty() && path != std::path::Path::new(":memory:"))
                    .then(|| path.to_path_buf())
            }
            Store::Postgres { .. } => None,
        }
    }

    /// The database name of a PostgreSQL store.
    pub fn postgres_database(&self) -> Option<String> {
        match self {
            Store::Postgres { pool, .. } => {
                pool.connect_options().get_database().map(str::to_owned)
            }
            Store::Sqlite { .. } => None,
        }
    }
}
