//! Nurse case management: cases kept as JSON documents (the aggregate) with the columns
//! lists, queues and caseloads need; the referral keys that make automatic referrals
//! idempotent; member ratings for the satisfaction report.
//!
//! At most one open case of a kind exists per member (a unique partial index), so two
//! referrals racing for the same member end in one case.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{
    Backend, Page, Store, StoreError, Tx, conflict_on_unique, on_db, on_tx,
    page::{decode_token, encode_token, json_bytes},
};

/// A case as stored: the indexed columns and the aggregate document.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedCaseRecord {
    pub id: String,
    pub member_id: String,
    pub kind: String,
    pub phase: String,
    /// `None` while the case waits in the unassigned queue.
    pub nurse_id: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub doc: Value,
}

/// Filters of [`Store::list_managed_cases`]; `None` and `false` mean "any".
#[derive(Debug, Clone, Default)]
pub struct ManagedCaseFilter {
    pub member_id: Option<String>,
    pub nurse_id: Option<String>,
    pub kind: Option<String>,
    pub phase: Option<String>,
    /// Only open cases without a nurse.
    pub unassigned_only: bool,
    pub open_only: bool,
    /// Restricts to what this nurse may see: their own cases and the unassigned queue.
    pub visible_to_nurse: Option<String>,
}

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Json<Value>,
);

fn record(
    (id, member_id, kind, phase, nurse_id, opened_at, closed_at, doc): Row,
) -> ManagedCaseRecord {
    ManagedCaseRecord {
        id,
        member_id,
        kind,
        phase,
        nurse_id,
        opened_at,
        closed_at,
        doc: doc.0,
    }
}

macro_rules! select_case {
    ($where:literal) => {
        concat!(
            "SELECT id, member_id, kind, phase, nurse_id, opened_at, closed_at, doc FROM cm_case ",
            $where
        )
    };
}

impl ManagedCaseRecord {
    /// The token of the page after this case in [`Store::list_managed_cases`].
    pub fn page_token(&self) -> String {
        encode_token(self.opened_at, &self.id)
    }

    /// About how many bytes the case takes (its document, written out).
    pub fn stored_bytes(&self) -> usize {
        json_bytes(&self.doc)
    }
}

impl Tx {
    /// Inserts a new case. A second open case of the same kind for the member is a
    /// [`StoreError::Conflict`].
    pub async fn insert_managed_case(
        &mut self,
        case: &ManagedCaseRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = on_tx!(self, c => sqlx::query(
            "INSERT INTO cm_case (id, member_id, kind, phase, nurse_id, opened_at, closed_at, doc, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&case.id).bind(&case.member_id).bind(&case.kind).bind(&case.phase)
            .bind(case.nurse_id.clone()).bind(case.opened_at).bind(case.closed_at)
            .bind(Json(&case.doc)).bind(now)
            .execute(c).await.map(|r| r.rows_affected()));
        result.map_err(|e| {
            conflict_on_unique(e, "open case", &format!("{}/{}", case.member_id, case.kind))
        })?;
        Ok(())
    }

    /// Reads a case for update (the row stays locked on PostgreSQL until the
    /// transaction ends).
    pub async fn managed_case_for_update(
        &mut self,
        id: &str,
    ) -> Result<ManagedCaseRecord, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => select_case!("WHERE id = $1"),
            Backend::Postgres => select_case!("WHERE id = $1 FOR UPDATE"),
        };
        let row: Option<Row> =
            on_tx!(self, c => sqlx::query_as(sql).bind(id).fetch_optional(c).await)?;
        row.map(record).ok_or_else(|| StoreError::NotFound {
            kind: "case",
            id: id.to_owned(),
        })
    }

    /// The member's open case of `kind`, locked for update, if there is one.
    pub async fn open_managed_case_of_kind(
        &mut self,
        member_id: &str,
        kind: &str,
    ) -> Result<Option<ManagedCaseRecord>, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                select_case!("WHERE member_id = $1 AND kind = $2 AND closed_at IS NULL")
            }
            Backend::Postgres => {
                select_case!("WHERE member_id = $1 AND kind = $2 AND closed_at IS NULL FOR UPDATE")
            }
        };
        let row: Option<Row> = on_tx!(self, c => sqlx::query_as(sql)
            .bind(member_id).bind(kind).fetch_optional(c).await)?;
        Ok(row.map(record))
    }

    /// Replaces a case's columns and document.
    pub async fn update_managed_case(
        &mut self,
        case: &ManagedCaseRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query(
            "UPDATE cm_case SET phase = $2, nurse_id = $3, closed_at = $4, doc = $5, updated_at = $6
             WHERE id = $1")
            .bind(&case.id).bind(&case.phase).bind(case.nurse_id.clone()).bind(case.closed_at)
            .bind(Json(&case.doc)).bind(now)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The case a referral key already reached, if any.
    pub async fn referral_case(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, String>(
            "SELECT case_id FROM cm_referral WHERE referral_key = $1")
            .bind(key).fetch_optional(c).await)?)
    }

    /// Records that a referral reached a case. A key seen before is a
    /// [`StoreError::Conflict`].
    pub async fn insert_referral(
        &mut self,
        key: &str,
        case_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = on_tx!(self, c => sqlx::query(
            "INSERT INTO cm_referral (referral_key, case_id, received_at) VALUES ($1, $2, $3)")
            .bind(key).bind(case_id).bind(at)
            .execute(c).await.map(|r| r.rows_affected()));
        result.map_err(|e| conflict_on_unique(e, "referral", key))?;
        Ok(())
    }

    /// Keeps a member's rating for the satisfaction report.
    pub async fn insert_rating(
        &mut self,
        case_id: &str,
        member_id: &str,
        rating: u8,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = on_tx!(self, c => sqlx::query(
            "INSERT INTO cm_rating (case_id, member_id, rating, rated_at) VALUES ($1, $2, $3, $4)")
            .bind(case_id).bind(member_id).bind(i32::from(rating)).bind(at)
            .execute(c).await.map(|r| r.rows_affected()));
        result.map_err(|e| conflict_on_unique(e, "rating", case_id))?;
        Ok(())
    }
}

impl Store {
    pub async fn get_managed_case(&self, id: &str) -> Result<ManagedCaseRecord, StoreError> {
        let row: Option<Row> = on_db!(self, c => sqlx::query_as(select_case!("WHERE id = $1"))
            .bind(id).fetch_optional(c).await)?;
        row.map(record).ok_or_else(|| StoreError::NotFound {
            kind: "case",
            id: id.to_owned(),
        })
    }

    /// Cases matching `filter`, newest first, one page at a time.
    pub async fn list_managed_cases(
        &self,
        filter: &ManagedCaseFilter,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<ManagedCaseRecord>, StoreError> {
        let f = |o: &Option<String>| o.clone().unwrap_or_default();
        let (before_at, before_id) = decode_token(page_token);
        let rows: Vec<Row> = on_db!(self, c => sqlx::query_as(select_case!(
            "WHERE ($1 = '' OR member_id = $1) AND ($2 = '' OR nurse_id = $2)
               AND ($3 = '' OR kind = $3) AND ($4 = '' OR phase = $4)
               AND ($5 = 0 OR (nurse_id IS NULL AND closed_at IS NULL))
               AND ($6 = 0 OR closed_at IS NULL)
               AND ($7 = '' OR nurse_id = $7 OR nurse_id IS NULL)
               AND (opened_at < $8 OR (opened_at = $8 AND id < $9))
             ORDER BY opened_at DESC, id DESC LIMIT $10"))
            .bind(f(&filter.member_id)).bind(f(&filter.nurse_id)).bind(f(&filter.kind))
            .bind(f(&filter.phase)).bind(i64::from(filter.unassigned_only))
            .bind(i64::from(filter.open_only)).bind(f(&filter.visible_to_nurse))
            .bind(before_at).bind(before_id.clone()).bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        let items: Vec<ManagedCaseRecord> = rows.into_iter().map(record).collect();
        Ok(Page::of(items, page_size, ManagedCaseRecord::page_token))
    }

    /// Open cases per nurse, for assignment by caseload.
    pub async fn caseloads(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(
            "SELECT nurse_id, COUNT(*) FROM cm_case
             WHERE nurse_id IS NOT NULL AND closed_at IS NULL GROUP BY nurse_id ORDER BY nurse_id")
            .fetch_all(c).await)?)
    }

    /// Every open case assigned to `nurse_id` (bounded by the caseload cap).
    pub async fn open_managed_cases_of(
        &self,
        nurse_id: &str,
    ) -> Result<Vec<ManagedCaseRecord>, StoreError> {
        let rows: Vec<Row> = on_db!(self, c => sqlx::query_as(select_case!(
            "WHERE nurse_id = $1 AND closed_at IS NULL ORDER BY opened_at, id"))
            .bind(nurse_id).fetch_all(c).await)?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// Open cases waiting for a nurse.
    pub async fn unassigned_case_count(&self) -> Result<i64, StoreError> {
        Ok(on_db!(self, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM cm_case WHERE nurse_id IS NULL AND closed_at IS NULL")
            .fetch_one(c).await)?)
    }

    /// Ratings given in `[from, to)`.
    pub async fn ratings_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<i32>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_scalar(
            "SELECT rating FROM cm_rating WHERE rated_at >= $1 AND rated_at < $2 ORDER BY rated_at")
            .bind(from).bind(to).fetch_all(c).await)?)
    }
}
