//! The one mapping between a second-opinion request and its stored row, and the
//! area's policy: who may see a request and in what part.

use carepath_core::{Actor, MemberId, Role};
use carepath_secondopinion::{Party, SecondOpinionRequest};
use carepath_store::{OpinionRequestFilter, OpinionRequestRecord, Store, StoreError, Tx};
use chrono::{DateTime, Utc};

use crate::{
    error::{AppError, AppResult},
    pipeline::Aggregate,
};

/// The audit log's record kind of a second-opinion request.
pub const RECORD_KIND: &str = carepath_secondopinion::AGGREGATE_KIND;

/// Who may see a request, and in what part: the member (and the subscriber, for a
/// minor), the assigned lead physician, and nurse coordinators while it is open.
/// `None` for anyone else, who is told the request does not exist.
pub fn policy(actor: &Actor, request: &SecondOpinionRequest, now: DateTime<Utc>) -> Option<Party> {
    Party::of(actor, request, now)
}

/// The narrowest list of requests `actor` may ask for: members their own (and their
/// minor family members'), lead physicians the requests they lead, nurses the open
/// ones. `None` for every other role, who may not list requests. Each request listed
/// is still checked with [`policy`].
///
/// ```
/// use carepath_app::secondopinion::list_scope;
/// use carepath_core::{Actor, Role};
///
/// let member = Actor::new(Role::Member, "M100014").unwrap();
/// assert_eq!(list_scope(&member).unwrap().member_id.as_deref(), Some("M100014"));
/// let nurse = Actor::new(Role::Nurse, "RN-004").unwrap();
/// assert!(list_scope(&nurse).unwrap().open_only);
/// let admin = Actor::new(Role::Admin, "admin-1").unwrap();
/// assert!(list_scope(&admin).is_none());
/// ```
pub fn list_scope(actor: &Actor) -> Option<OpinionRequestFilter> {
    let mut filter = OpinionRequestFilter::default();
    match actor.role {
        Role::Member => filter.member_id = Some(actor.subject.clone()),
        Role::Provider => filter.physician_npi = Some(actor.subject.clone()),
        Role::Nurse => filter.open_only = true,
        _ => return None,
    }
    Some(filter)
}

/// The stored form of a request.
pub fn record_of(r: &SecondOpinionRequest) -> OpinionRequestRecord {
    OpinionRequestRecord {
        id: r.id.clone(),
        member_id: r.member_id.to_string(),
        status: r.status.as_str().to_owned(),
        diagnosis_group: r.diagnosis_group.clone(),
        physician_npi: r.physician.as_ref().map(|p| p.npi.to_string()),
        coordinator_id: r.coordinator.as_ref().map(ToString::to_string),
        received_at: r.received_at,
        due_at: r.due_at,
        awaiting_opinion: r.opinion.is_none(),
        doc: serde_json::to_value(r).expect("requests serialize"),
    }
}

/// The request a stored row holds.
pub fn request_of(record: &OpinionRequestRecord) -> AppResult<SecondOpinionRequest> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| AppError::Internal(format!("stored request {} unreadable: {e}", record.id)))
}

impl Aggregate for SecondOpinionRequest {
    const RECORD_KIND: &'static str = RECORD_KIND;
    const NOUN: &'static str = "second-opinion request";
    type Record = OpinionRequestRecord;

    fn member(&self) -> &MemberId {
        &self.member_id
    }

    fn from_record(record: &OpinionRequestRecord) -> AppResult<Self> {
        request_of(record)
    }

    fn to_record(&self, _previous: &OpinionRequestRecord) -> OpinionRequestRecord {
        record_of(self)
    }

    async fn load(store: &Store, id: &str) -> Result<OpinionRequestRecord, StoreError> {
        store.get_opinion_request(id).await
    }

    async fn load_for_update(tx: &mut Tx, id: &str) -> Result<OpinionRequestRecord, StoreError> {
        tx.opinion_request_for_update(id).await
    }

    async fn save(
        tx: &mut Tx,
        record: &OpinionRequestRecord,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        tx.update_opinion_request(record, at).await
    }
}
