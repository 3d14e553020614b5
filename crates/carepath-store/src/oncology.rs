//! Submitted oncology plans: the plan and its evaluation as a JSON document, linked to
//! the precertification case that covers the plan's lines.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Store, StoreError, Tx, conflict_on_unique, on_db, on_tx};

/// A submitted plan as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PlanRecord {
    pub id: String,
    /// `<treating npi>:<client request id>`, unique.
    pub request_key: String,
    pub member_id: String,
    pub treating_npi: String,
    pub precert_case_id: String,
    pub replaces_plan_id: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub doc: Json<Value>,
}

const SELECT_PLAN: &str = "SELECT id, request_key, member_id, treating_npi, precert_case_id, replaces_plan_id, submitted_at, doc FROM oncology_plan";

impl Tx {
    /// Inserts a plan; a second plan with the same request key is a conflict.
    pub async fn insert_plan(&mut self, plan: &PlanRecord) -> Result<(), StoreError> {
        let result = on_tx!(self, c => sqlx::query(
            "INSERT INTO oncology_plan (id, request_key, member_id, treating_npi, precert_case_id, replaces_plan_id, submitted_at, doc)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(&plan.id).bind(&plan.request_key).bind(&plan.member_id).bind(&plan.treating_npi)
            .bind(&plan.precert_case_id).bind(plan.replaces_plan_id.clone()).bind(plan.submitted_at).bind(&plan.doc)
            .execute(c).await.map(|r| r.rows_affected()));
        result.map_err(|e| conflict_on_unique(e, "oncology plan", &plan.request_key))?;
        Ok(())
    }
}

impl Store {
    pub async fn get_plan_record(&self, id: &str) -> Result<PlanRecord, StoreError> {
        let row: Option<PlanRecord> = on_db!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_PLAN} WHERE id = $1"))).bind(id).fetch_optional(c).await)?;
        row.ok_or_else(|| StoreError::NotFound {
            kind: "oncology plan",
            id: id.to_owned(),
        })
    }

    pub async fn plan_by_request_key(&self, key: &str) -> Result<Option<PlanRecord>, StoreError> {
        Ok(
            on_db!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_PLAN} WHERE request_key = $1"))).bind(key).fetch_optional(c).await)?,
        )
    }
}

impl Tx {
    /// Replaces the document of a stored plan (a change of its stored shape; the
    /// plan's other columns never change).
    pub async fn replace_plan_doc(
        &mut self,
        id: &str,
        doc: &Json<Value>,
    ) -> Result<(), StoreError> {
        let updated = on_tx!(self, c => sqlx::query("UPDATE oncology_plan SET doc = $1 WHERE id = $2")
            .bind(doc).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        if updated == 0 {
            return Err(StoreError::NotFound {
                kind: "oncology plan",
                id: id.to_owned(),
            });
        }
        Ok(())
    }
}

impl Store {
    /// Plans whose document holds its evaluation as a string: the shape written
    /// before evaluations were stored as documents (a hex-encoded message).
    pub async fn plans_with_encoded_evaluation(&self) -> Result<Vec<PlanRecord>, StoreError> {
        let filter = match self.backend() {
            crate::Backend::Sqlite => "json_type(doc, '$.evaluation') = 'text'",
            crate::Backend::Postgres => "jsonb_typeof(doc -> 'evaluation') = 'string'",
        };
        Ok(
            on_db!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_PLAN} WHERE {filter} ORDER BY id"))).fetch_all(c).await)?,
        )
    }
}
