//! Precertification cases: each kept as a JSON document (the workflow aggregate) with
//! the columns that lists, the review queue and idempotent submission need; gold-card
//! status; and rule-list versions activated by admins.

use carepath_core::{Member, MemberId, Npi, Plan, Provider};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{
    Backend, Page, Store, StoreError, Tx, conflict_on_unique,
    directory::decode,
    on_db, on_tx,
    page::{decode_token, decode_token_or, encode_token, far_future, far_past, json_bytes},
};

/// What a request needs to know before it is decided, read at once by
/// [`Store::submission_parties`]: each part is `None` when it does not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionParties {
    /// The id of the case already made under the request key (a retry).
    pub existing_case: Option<String>,
    pub member: Option<Member>,
    /// The member's plan.
    pub plan: Option<Plan>,
    pub requesting: Option<Provider>,
    pub servicing: Option<Provider>,
}

/// A case as stored: the indexed columns and the aggregate document.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRecord {
    pub id: String,
    /// `<submitting caller>:<its request id>`, unique (see
    /// `carepath_app::precert::submit::request_key`).
    pub request_key: String,
    pub member_id: String,
    pub requesting_npi: String,
    pub servicing_npi: String,
    pub status: String,
    /// How urgent the decision the plan owes next is (an expedited appeal is urgent);
    /// orders the review queue with `due_at`.
    pub urgency: String,
    /// `review` while waiting for or in clinical review, `information` while waiting
    /// for the provider, empty otherwise.
    pub queue: String,
    pub reviewer_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub doc: Value,
}

/// Filters of [`Store::list_cases`]; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub member_id: Option<String>,
    /// Cases this provider requested or services.
    pub provider_npi: Option<String>,
    pub status: Option<String>,
    pub received_from: Option<DateTime<Utc>>,
    pub received_to: Option<DateTime<Utc>>,
}

/// A provider's gold-card standing for one service category.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GoldCardRecord {
    pub npi: String,
    pub category: String,
    pub exempt: bool,
    pub requests: i64,
    pub approvals: i64,
    pub evaluated_at: DateTime<Utc>,
    pub window_start: DateTime<Utc>,
    /// The exemption in force as JSON, empty when not exempt.
    pub exemption: String,
    /// How the standing changed at the last evaluation.
    pub change: String,
}

/// A rule-list version an admin activated, kept so it survives restarts.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RuleListRecord {
    pub list_id: String,
    pub version: String,
    pub effective_from: NaiveDate,
    pub source_name: String,
    pub source: String,
    pub activated_by: String,
    pub activated_at: DateTime<Utc>,
}

type CaseRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Json<Value>,
);

fn record(row: CaseRow) -> CaseRecord {
    let (
        id,
        request_key,
        member_id,
        requesting_npi,
        servicing_npi,
        status,
        urgency,
        queue,
        reviewer_id,
        received_at,
        due_at,
        decided_at,
        doc,
    ) = row;
    CaseRecord {
        id,
        request_key,
        member_id,
        requesting_npi,
        servicing_npi,
        status,
        urgency,
        queue,
        reviewer_id,
        received_at,
        due_at,
        decided_at,
        doc: doc.0,
    }
}

macro_rules! select_case {
    ($where:literal) => {
        concat!(
            "SELECT id, request_key, member_id, requesting_npi, servicing_npi, status, urgency, queue, reviewer_id, received_at, due_at, decided_at, doc FROM precert_case ",
            $where
        )
    };
}

impl CaseRecord {
    /// The token of the page after this case in [`Store::list_cases`].
    pub fn page_token(&self) -> String {
        encode_token(self.received_at, &self.id)
    }

    /// The token of the page after this case in [`Store::review_queue`]: urgent
    /// before routine, then by due time and id.
    pub fn queue_token(&self) -> String {
        let rank = if self.urgency == "urgent" { 0 } else { 1 };
        format!("{rank}/{}", encode_token(self.due_at, &self.id))
    }

    /// About how many bytes the case takes (its document, written out).
    pub fn stored_bytes(&self) -> usize {
        json_bytes(&self.doc)
    }
}

impl Tx {
    /// Inserts a new case. A second case with the same request key is a
    /// [`StoreError::Conflict`].
    pub async fn insert_case(
        &mut self,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = on_tx!(self, c => sqlx::query(
            "INSERT INTO precert_case (id, request_key, member_id, requesting_npi, servicing_npi, status, urgency, queue, reviewer_id, received_at, due_at, decided_at, doc, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
            .bind(&case.id).bind(&case.request_key).bind(&case.member_id).bind(&case.requesting_npi)
            .bind(&case.servicing_npi).bind(&case.status).bind(&case.urgency).bind(&case.queue)
            .bind(case.reviewer_id.clone()).bind(case.received_at).bind(case.due_at).bind(case.decided_at)
            .bind(Json(&case.doc)).bind(now)
            .execute(c).await.map(|r| r.rows_affected()));
        result.map_err(|e| conflict_on_unique(e, "precert case", &case.request_key))?;
        Ok(())
    }

    /// Reads a case for update: on PostgreSQL the row stays locked until the
    /// transaction ends, so concurrent transitions of one case queue.
    pub async fn case_for_update(&mut self, id: &str) -> Result<CaseRecord, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => select_case!("WHERE id = $1"),
            Backend::Postgres => select_case!("WHERE id = $1 FOR UPDATE"),
        };
        let row: Option<CaseRow> =
            on_tx!(self, c => sqlx::query_as(sql).bind(id).fetch_optional(c).await)?;
        row.map(record).ok_or_else(|| StoreError::NotFound {
            kind: "precert case",
            id: id.to_owned(),
        })
    }

    /// Replaces a case's columns and document.
    pub async fn update_case(
        &mut self,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query(
            "UPDATE precert_case SET status = $2, queue = $3, reviewer_id = $4, due_at = $5, decided_at = $6, doc = $7, updated_at = $8, urgency = $9
             WHERE id = $1")
            .bind(&case.id).bind(&case.status).bind(&case.queue).bind(case.reviewer_id.clone())
            .bind(case.due_at).bind(case.decided_at).bind(Json(&case.doc)).bind(now).bind(&case.urgency)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records a provider's gold-card standing for a category.
    pub async fn upsert_gold_card(&mut self, card: &GoldCardRecord) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO precert_gold_card (npi, category, exempt, requests, approvals, evaluated_at, window_start, exemption, change)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (npi, category) DO UPDATE SET exempt = excluded.exempt, requests = excluded.requests,
                approvals = excluded.approvals, evaluated_at = excluded.evaluated_at, window_start = excluded.window_start,
                exemption = excluded.exemption, change = excluded.change")
            .bind(&card.npi).bind(&card.category).bind(card.exempt).bind(card.requests).bind(card.approvals)
            .bind(card.evaluated_at).bind(card.window_start).bind(&card.exemption).bind(&card.change)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Keeps an activated rule-list version.
    pub async fn insert_rule_list(&mut self, list: &RuleListRecord) -> Result<(), StoreError> {
        let result = on_tx!(self, c => sqlx::query(
            "INSERT INTO precert_rule_list (list_id, version, effective_from, source_name, source, activated_by, activated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&list.list_id).bind(&list.version).bind(list.effective_from).bind(&list.source_name)
            .bind(&list.source).bind(&list.activated_by).bind(list.activated_at)
            .execute(c).await.map(|r| r.rows_affected()));
        result.map_err(|e| {
            conflict_on_unique(
                e,
                "rule list version",
                &format!("{} {}", list.list_id, list.version),
            )
        })?;
        Ok(())
    }
}

/// Most cases [`Store::get_cases`] reads at once.
pub const CASES_PER_READ: usize = 256;

impl Store {
    pub async fn get_case(&self, id: &str) -> Result<CaseRecord, StoreError> {
        let row: Option<CaseRow> = on_db!(self, c => sqlx::query_as(select_case!("WHERE id = $1")).bind(id).fetch_optional(c).await)?;
        row.map(record).ok_or_else(|| StoreError::NotFound {
            kind: "precert case",
            id: id.to_owned(),
        })
    }

    /// The cases among `ids` that are stored, in one read (at most
    /// [`CASES_PER_READ`] ids a call; more are an error).
    pub async fn get_cases(&self, ids: &[&str]) -> Result<Vec<CaseRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.len() > CASES_PER_READ {
            return Err(StoreError::Invalid {
                field: "ids",
                reason: format!(
                    "at most {CASES_PER_READ} cases are read at once, {} asked",
                    ids.len()
                ),
            });
        }
        let sql = format!(
            "{} WHERE id IN ({})",
            select_case!(""),
            crate::placeholder_list(ids.len())
        );
        let rows: Vec<CaseRow> = on_db!(self, c => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(c).await
        })?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// The case already made under `request_key` (if any), the member with their plan,
    /// and the two providers, in one read.
    pub async fn submission_parties(
        &self,
        request_key: &str,
        member: &MemberId,
        requesting: &Npi,
        servicing: &Npi,
    ) -> Result<SubmissionParties, StoreError> {
        type Row = (
            Option<String>,
            Option<Json<Value>>,
            Option<Json<Value>>,
            Option<Json<Value>>,
            Option<Json<Value>>,
        );
        let (existing_case, member_doc, plan_doc, requesting_doc, servicing_doc): Row = on_db!(self, c => sqlx::query_as(
                "SELECT (SELECT id FROM precert_case WHERE request_key = $1),
                        (SELECT doc FROM member WHERE id = $2),
                        (SELECT p.doc FROM plan p JOIN member m ON m.plan_id = p.id WHERE m.id = $2),
                        (SELECT doc FROM provider WHERE npi = $3),
                        (SELECT doc FROM provider WHERE npi = $4)")
                .bind(request_key).bind(member.as_str()).bind(requesting.as_str())
                .bind(servicing.as_str())
                .fetch_one(c).await)?;
        Ok(SubmissionParties {
            existing_case,
            member: decode_some("member", member.as_str(), member_doc)?,
            plan: decode_some("plan", member.as_str(), plan_doc)?,
            requesting: decode_some("provider", requesting.as_str(), requesting_doc)?,
            servicing: decode_some("provider", servicing.as_str(), servicing_doc)?,
        })
    }

    /// The id of the case already made under `request_key`, if any.
    pub async fn case_id_by_request_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_scalar(
            "SELECT id FROM precert_case WHERE request_key = $1")
            .bind(key).fetch_optional(c).await)?)
    }

    pub async fn case_by_request_key(&self, key: &str) -> Result<Option<CaseRecord>, StoreError> {
        let row: Option<CaseRow> = on_db!(self, c => sqlx::query_as(select_case!("WHERE request_key = $1")).bind(key).fetch_optional(c).await)?;
        Ok(row.map(record))
    }

    /// Cases matching `filter`, newest first, keyset-paged on (received_at, id).
    pub async fn list_cases(
        &self,
        filter: &CaseFilter,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<CaseRecord>, StoreError> {
        let (before_at, before_id) = decode_token(page_token);
        // A provider's cases are read through the two provider indexes, each in the
        // list's order, and merged: with `requesting_npi = $2 OR servicing_npi = $2`
        // among the optional filters, the plan walked every case by receipt time to
        // find a provider's, all of them for a provider with few.
        let sql = match filter.provider_npi.as_deref() {
            Some(npi) if !npi.is_empty() => select_case!(
                "WHERE id IN (
                   SELECT id FROM (SELECT id FROM precert_case WHERE requesting_npi = $2
                       AND ($1 = '' OR member_id = $1) AND ($3 = '' OR status = $3)
                       AND received_at >= $4 AND received_at < $5
                       AND (received_at < $6 OR (received_at = $6 AND id < $7))
                     ORDER BY received_at DESC, id DESC LIMIT $8) AS requested
                   UNION
                   SELECT id FROM (SELECT id FROM precert_case WHERE servicing_npi = $2
                       AND ($1 = '' OR member_id = $1) AND ($3 = '' OR status = $3)
                       AND received_at >= $4 AND received_at < $5
                       AND (received_at < $6 OR (received_at = $6 AND id < $7))
                     ORDER BY received_at DESC, id DESC LIMIT $8) AS serviced)
                 ORDER BY received_at DESC, id DESC LIMIT $8"
            ),
            _ => select_case!(
                "WHERE ($1 = '' OR member_id = $1)
                   AND ($2 = '' OR requesting_npi = $2 OR servicing_npi = $2)
                   AND ($3 = '' OR status = $3)
                   AND received_at >= $4 AND received_at < $5
                   AND (received_at < $6 OR (received_at = $6 AND id < $7))
                 ORDER BY received_at DESC, id DESC LIMIT $8"
            ),
        };
        let rows: Vec<CaseRow> = on_db!(self, c => sqlx::query_as(sql)
            .bind(filter.member_id.clone().unwrap_or_default())
            .bind(filter.provider_npi.clone().unwrap_or_default())
            .bind(filter.status.clone().unwrap_or_default())
            .bind(filter.received_from.unwrap_or(far_past()))
            .bind(filter.received_to.unwrap_or(far_future()))
            .bind(before_at)
            .bind(before_id.clone())
            .bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        Ok(page_of(rows, page_size, CaseRecord::page_token))
    }

    /// The clinical review queue: urgent before routine, then by due time.
    pub async fn review_queue(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page<CaseRecord>, StoreError> {
        // Keyed on (rank, due_at, id) like every other list (CaseRecord::queue_token),
        // so a page may end anywhere and the next starts right after it.
        let (rank, after) = page_token
            .split_once('/')
            .and_then(|(rank, rest)| Some((rank.parse::<i64>().ok()?, rest)))
            .unwrap_or((-1, ""));
        let (after_at, after_id) = decode_token_or(after, far_past());
        let rows: Vec<CaseRow> = on_db!(self, c => sqlx::query_as(select_case!(
            "WHERE queue = 'review'
               AND (CASE urgency WHEN 'urgent' THEN 0 ELSE 1 END > $1
                    OR (CASE urgency WHEN 'urgent' THEN 0 ELSE 1 END = $1
                        AND (due_at > $2 OR (due_at = $2 AND id > $3))))
             ORDER BY CASE urgency WHEN 'urgent' THEN 0 ELSE 1 END, due_at, id
             LIMIT $4"))
            .bind(rank).bind(after_at).bind(after_id)
            .bind(i64::from(page_size) + 1)
            .fetch_all(c).await)?;
        Ok(page_of(rows, page_size, CaseRecord::queue_token))
    }

    /// Cases received in `[from, to)`, for metrics: one page of at most `limit`,
    /// ordered by (received_at, id), after `after` (the last case of the page before).
    pub async fn cases_received_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        let (after_at, after_id) = after.unwrap_or((from, String::new()));
        let rows: Vec<CaseRow> = on_db!(self, c => sqlx::query_as(select_case!(
            "WHERE received_at >= $1 AND received_at < $2
               AND (received_at > $3 OR (received_at = $3 AND id > $4))
             ORDER BY received_at, id LIMIT $5"))
            .bind(from).bind(to).bind(after_at).bind(after_id).bind(i64::from(limit))
            .fetch_all(c).await)?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// Cases decided in `[from, to)`, for gold carding: one page of at most `limit`,
    /// ordered by (decided_at, id), after `after` (the last case of the page before).
    pub async fn cases_decided_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        let (after_at, after_id) = after.unwrap_or((from, String::new()));
        let rows: Vec<CaseRow> = on_db!(self, c => sqlx::query_as(select_case!(
            "WHERE decided_at >= $1 AND decided_at < $2
               AND (decided_at > $3 OR (decided_at = $3 AND id > $4))
             ORDER BY decided_at, id LIMIT $5"))
            .bind(from).bind(to).bind(after_at).bind(after_id).bind(i64::from(limit))
            .fetch_all(c).await)?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// Every case in a queue (`review`, `information`), soonest due first.
    pub async fn cases_in_queue(&self, queue: &str) -> Result<Vec<CaseRecord>, StoreError> {
        let rows: Vec<CaseRow> = on_db!(self, c => sqlx::query_as(select_case!(
            "WHERE queue = $1 ORDER BY due_at, id"))
            .bind(queue).fetch_all(c).await)?;
        Ok(rows.into_iter().map(record).collect())
    }

    pub async fn gold_cards(&self, npi: Option<&str>) -> Result<Vec<GoldCardRecord>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(
            "SELECT npi, category, exempt, CAST(requests AS BIGINT) AS requests, CAST(approvals AS BIGINT) AS approvals,
                    evaluated_at, window_start, exemption, change FROM precert_gold_card
             WHERE ($1 = '' OR npi = $1) ORDER BY npi, category")
            .bind(npi.unwrap_or_default()).fetch_all(c).await)?)
    }

    /// One page of gold-card standings, by NPI then category, after `after` (the
    /// previous page's token; empty for the first page).
    pub async fn gold_cards_page(
        &self,
        npi: Option<&str>,
        after: &str,
        page_size: u32,
    ) -> Result<Page<GoldCardRecord>, StoreError> {
        let (after_npi, after_category) = after.split_once('/').unwrap_or((after, ""));
        let rows: Vec<GoldCardRecord> = on_db!(self, c => sqlx::query_as(
            "SELECT npi, category, exempt, CAST(requests AS BIGINT) AS requests, CAST(approvals AS BIGINT) AS approvals,
                    evaluated_at, window_start, exemption, change FROM precert_gold_card
             WHERE ($1 = '' OR npi = $1) AND (npi > $2 OR (npi = $2 AND category > $3))
             ORDER BY npi, category LIMIT $4")
            .bind(npi.unwrap_or_default()).bind(after_npi).bind(after_category)
            .bind(i64::from(page_size) + 1).fetch_all(c).await)?;
        Ok(crate::directory::paginate(
            rows.into_iter()
                .map(|r| (format!("{}/{}", r.npi, r.category), r))
                .collect(),
            page_size,
        ))
    }

    pub async fn rule_lists(&self) -> Result<Vec<RuleListRecord>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(
            "SELECT list_id, version, effective_from, source_name, source, activated_by, activated_at
             FROM precert_rule_list ORDER BY list_id, effective_from")
            .fetch_all(c).await)?)
    }
}

/// A document that may be absent, decoded when present.
fn decode_some<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    id: &str,
    doc: Option<Json<Value>>,
) -> Result<Option<T>, StoreError> {
    doc.map(|doc| decode(kind, id, doc)).transpose()
}

fn page_of(
    rows: Vec<CaseRow>,
    page_size: u32,
    token: impl Fn(&CaseRecord) -> String,
) -> Page<CaseRecord> {
    Page::of(rows.into_iter().map(record).collect(), page_size, token)
}
