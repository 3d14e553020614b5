//! FHIR backend-service clients: who may ask for an access token with a signed
//! assertion (their public keys and the scopes they may be granted), and the ids of
//! the assertions already used, so that a replayed assertion is refused by every
//! process sharing the database.

use chrono::{DateTime, Utc};

use crate::{Page, Store, StoreError, Tx, directory::paginate, on_db, on_tx};

/// Most expired assertion ids removed each time a new one is recorded: the table
/// shrinks as fast as it grows without one insert paying for a long backlog.
pub const ASSERTION_PURGE_BATCH: i64 = 100;

/// A registered client as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FhirClientRecord {
    pub client_id: String,
    pub name: String,
    /// The provider the client acts for.
    pub npi: String,
    /// The client's JSON Web Key Set, as JSON text.
    pub jwks: String,
    /// The scopes the client may be granted, space-separated.
    pub scopes: String,
    pub active: bool,
    pub registered_at: DateTime<Utc>,
    /// The subject of whoever registered (or last replaced) the client.
    pub registered_by: String,
}

const SELECT_CLIENT: &str = "SELECT client_id, name, npi, jwks, scopes, active, registered_at, registered_by FROM fhir_client";

impl Tx {
    /// Registers a client, or replaces the one registered under the same id; true
    /// when it is new.
    pub async fn upsert_fhir_client(
        &mut self,
        client: &FhirClientRecord,
    ) -> Result<bool, StoreError> {
        let existing: i64 = on_tx!(self, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM fhir_client WHERE client_id = $1")
            .bind(&client.client_id).fetch_one(c).await)?;
        on_tx!(self, c => sqlx::query(
            "INSERT INTO fhir_client (client_id, name, npi, jwks, scopes, active, registered_at, registered_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, npi = excluded.npi,
                jwks = excluded.jwks, scopes = excluded.scopes, active = excluded.active,
                registered_at = excluded.registered_at, registered_by = excluded.registered_by")
            .bind(&client.client_id).bind(&client.name).bind(&client.npi).bind(&client.jwks)
            .bind(&client.scopes).bind(client.active).bind(client.registered_at)
            .bind(&client.registered_by)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(existing == 0)
    }

    /// Records that `client_id` used the assertion `jti`, valid until `expires_at`;
    /// false when that assertion was used before and has not yet expired at `now`
    /// (a replay). Up to [`ASSERTION_PURGE_BATCH`] expired ids go in the same
    /// transaction.
    pub async fn record_client_assertion(
        &mut self,
        client_id: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        on_tx!(self, c => sqlx::query(
            "DELETE FROM fhir_client_assertion WHERE (client_id, jti) IN
                (SELECT client_id, jti FROM fhir_client_assertion WHERE expires_at < $1
                 ORDER BY expires_at LIMIT $2)")
            .bind(now).bind(ASSERTION_PURGE_BATCH)
            .execute(c).await.map(|r| r.rows_affected()))?;
        // An id whose earlier use has expired (and is not yet purged) may be used again.
        let recorded = on_tx!(self, c => sqlx::query(
            "INSERT INTO fhir_client_assertion (client_id, jti, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at
             WHERE fhir_client_assertion.expires_at < $4")
            .bind(client_id).bind(jti).bind(expires_at).bind(now)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(recorded == 1)
    }
}

impl Store {
    /// The client registered under `client_id`.
    pub async fn get_fhir_client(&self, client_id: &str) -> Result<FhirClientRecord, StoreError> {
        let row: Option<FhirClientRecord> = on_db!(self, c => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("{SELECT_CLIENT} WHERE client_id = $1")))
            .bind(client_id).fetch_optional(c).await)?;
        row.ok_or_else(|| StoreError::NotFound {
            kind: "fhir client",
            id: client_id.to_owned(),
        })
    }

    /// One page of the clients by id, after `after` (the previous page's token;
    /// empty for the first page).
    pub async fn list_fhir_clients(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<Page<FhirClientRecord>, StoreError> {
        let rows: Vec<FhirClientRecord> = on_db!(self, c => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("{SELECT_CLIENT} WHERE client_id > $1 ORDER BY client_id LIMIT $2")))
            .bind(after).bind(i64::from(page_size) + 1).fetch_all(c).await)?;
        Ok(paginate(
            rows.into_iter().map(|r| (r.client_id.clone(), r)).collect(),
            page_size,
        ))
    }
}
