//! The one mapping between a precertification case and its stored row.

use carepath_core::MemberId;
use carepath_precert::{CaseState, PrecertCase};
use carepath_store::{CaseRecord, Store, StoreError, Tx};
use chrono::{DateTime, Utc};

use crate::{
    error::{AppError, AppResult},
    pipeline::Aggregate,
};

/// The audit log's record kind of a precertification case.
pub const RECORD_KIND: &str = "precert_case";

/// The audit log's record kind of a read of one member's list of cases (the record
/// id is the member's).
pub const LIST_KIND: &str = "precert_case_list";

/// The work queue a case in `state` waits in: `review` for a clinician, `information`
/// for the provider, none once nothing is owed.
pub fn queue_of(state: CaseState) -> &'static str {
    match state {
        CaseState::PendedReview
        | CaseState::RetrospectiveReview
        | CaseState::InReview
        | CaseState::AppealRequested
        | CaseState::PeerToPeerRequested => "review",
        CaseState::PendedInformation => "information",
        _ => "",
    }
}

/// The stored form of a case; `request_key` is the idempotency key it was filed
/// under.
pub fn record_of(case: &PrecertCase, request_key: &str) -> CaseRecord {
    let (urgency, due_at) = case.owed();
    CaseRecord {
        id: case.id.clone(),
        request_key: request_key.to_owned(),
        member_id: case.request.member_id.to_string(),
        requesting_npi: case.request.requesting_provider.npi.to_string(),
        servicing_npi: case.request.servicing_provider.npi.to_string(),
        status: case.state.as_str().to_owned(),
        urgency: urgency.as_str().to_owned(),
        queue: queue_of(case.state).to_owned(),
        reviewer_id: case.claimed_by.as_ref().map(|s| s.staff_id.to_string()),
        received_at: case.received_at,
        due_at,
        decided_at: case.decisions.first().map(|d| d.at),
        doc: serde_json::to_value(case).expect("cases serialize"),
    }
}

/// The case a stored row holds.
pub fn case_of(record: &CaseRecord) -> AppResult<PrecertCase> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| AppError::Internal(format!("stored case {} unreadable: {e}", record.id)))
}

/// The requester's own id of the request a row was filed under (the part of the
/// idempotency key after the requester).
pub fn request_id_of(record: &CaseRecord) -> &str {
    record.request_key.split_once(':').map_or("", |(_, id)| id)
}

impl Aggregate for PrecertCase {
    const RECORD_KIND: &'static str = RECORD_KIND;
    const NOUN: &'static str = "precert case";
    type Record = CaseRecord;

    fn member(&self) -> &MemberId {
        &self.request.member_id
    }

    fn from_record(record: &CaseRecord) -> AppResult<Self> {
        case_of(record)
    }

    fn to_record(&self, previous: &CaseRecord) -> CaseRecord {
        record_of(self, &previous.request_key)
    }

    async fn load(store: &Store, id: &str) -> Result<CaseRecord, StoreError> {
        store.get_case(id).await
    }

    async fn load_for_update(tx: &mut Tx, id: &str) -> Result<CaseRecord, StoreError> {
        tx.case_for_update(id).await
    }

    async fn save(tx: &mut Tx, record: &CaseRecord, at: DateTime<Utc>) -> Result<(), StoreError> {
        tx.update_case(record, at).await
    }
}
