//! Coverage assertions: what the plan told an ordering provider about one order, by
//! id, so a later precertification request can cite the assertion it follows.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Store, StoreError, Tx, on_db, on_tx};

/// A coverage assertion as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageAssertionRecord {
    pub id: String,
    pub member_id: String,
    /// The practitioner who ordered.
    pub ordering_npi: String,
    /// Who asked (the audit subject).
    pub subject: String,
    /// The operation it was asked through (`cds-hooks/order-sign`).
    pub operation: String,
    pub created_at: DateTime<Utc>,
    /// The order as checked and the answer given.
    pub doc: Value,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    Json<Value>,
);

impl Tx {
    /// Stores a coverage assertion.
    pub async fn insert_coverage_assertion(
        &mut self,
        a: &CoverageAssertionRecord,
    ) -> Result<(), StoreError> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO coverage_assertion (id, member_id, ordering_npi, subject, operation, created_at, doc)
             VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&a.id).bind(&a.member_id).bind(&a.ordering_npi).bind(&a.subject)
            .bind(&a.operation).bind(a.created_at).bind(Json(&a.doc))
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}

impl Store {
    /// The coverage assertion `id`.
    pub async fn coverage_assertion(
        &self,
        id: &str,
    ) -> Result<CoverageAssertionRecord, StoreError> {
        let row: Option<Row> = on_db!(self, c => sqlx::query_as(
            "SELECT id, member_id, ordering_npi, subject, operation, created_at, doc
             FROM coverage_assertion WHERE id = $1")
            .bind(id).fetch_optional(c).await)?;
        let (id, member_id, ordering_npi, subject, operation, created_at, doc) =
            row.ok_or_else(|| StoreError::NotFound {
                kind: "coverage assertion",
                id: id.to_owned(),
            })?;
        Ok(CoverageAssertionRecord {
            id,
            member_id,
            ordering_npi,
            subject,
            operation,
            created_at,
            doc: doc.0,
        })
    }
}
