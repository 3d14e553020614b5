//! The one mapping between a managed case and its stored row.

use carepath_cases::ManagedCase;
use carepath_core::MemberId;
use carepath_store::{ManagedCaseRecord, Store, StoreError, Tx};
use chrono::{DateTime, Utc};

use crate::{
    error::{AppError, AppResult},
    pipeline::Aggregate,
};

/// The audit log's record kind of a managed case.
pub const RECORD_KIND: &str = "managed_case";

/// The stored form of a case (new or changed: the row holds nothing else).
pub(crate) fn row_of(case: &ManagedCase) -> ManagedCaseRecord {
    ManagedCaseRecord {
        id: case.id.clone(),
        member_id: case.member_id.to_string(),
        kind: case.kind.as_str().to_owned(),
        phase: case.phase.as_str().to_owned(),
        nurse_id: case.nurse.as_ref().map(|n| n.staff_id.to_string()),
        opened_at: case.opened_at,
        closed_at: case.closed_at,
        doc: serde_json::to_value(case).expect("cases serialize"),
    }
}

impl Aggregate for ManagedCase {
    const RECORD_KIND: &'static str = RECORD_KIND;
    const NOUN: &'static str = "case";
    type Record = ManagedCaseRecord;

    fn member(&self) -> &MemberId {
        &self.member_id
    }

    fn from_record(record: &ManagedCaseRecord) -> AppResult<Self> {
        serde_json::from_value(record.doc.clone())
            .map_err(|e| AppError::Internal(format!("stored case {} unreadable: {e}", record.id)))
    }

    fn to_record(&self, _previous: &ManagedCaseRecord) -> ManagedCaseRecord {
        row_of(self)
    }

    async fn load(store: &Store, id: &str) -> Result<ManagedCaseRecord, StoreError> {
        store.get_managed_case(id).await
    }

    async fn load_for_update(tx: &mut Tx, id: &str) -> Result<ManagedCaseRecord, StoreError> {
        tx.managed_case_for_update(id).await
    }

    async fn save(
        tx: &mut Tx,
        record: &ManagedCaseRecord,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        tx.update_managed_case(record, at).await
    }
}
