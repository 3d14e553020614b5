//! Referrals into case management: the one path every referral takes (by hand or from
//! an event), and the outbox consumer that turns oncology plans, inpatient approvals and
//! second-opinion requests into cases.
//!
//! Idempotency: each referral carries a key (the event id for automatic ones) stored
//! with the case it reached, in the same transaction as the case. A redelivered event
//! finds its key and changes nothing; a new referral for a member with an open case of
//! the same kind is absorbed by that case.

use std::sync::Arc;

use carepath_cases::{
    AutoReferral, CaseKind, DecisionReason, ManagedCase, REFERRAL_EVENT_KINDS, Referral,
    referral_from_event,
};
use carepath_core::{Actor, Clock, DomainEvent, Icd10Code, MemberId, Role};
use carepath_store::{AuditOutcome, ManagedCaseRecord, Store, StoreError, Tx};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{RECORD_KIND, append_events, micros, record_of};
use crate::{context::Caller, error::ApiError, outbox::EventHandler};

/// The consumer's name in the outbox.
pub const CONSUMER: &str = "cases-referrals";

/// What a referral did.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub case: ManagedCase,
    /// An open case of the same kind took it (or it had been placed before).
    pub absorbed: bool,
    /// The key had been seen before: nothing changed.
    pub duplicate: bool,
}

/// A referral ready to place.
#[derive(Debug, Clone)]
pub struct NewReferral {
    pub key: String,
    pub member_id: MemberId,
    pub kind: CaseKind,
    pub referral: Referral,
    pub decision_support: Option<(DecisionReason, Option<Icd10Code>)>,
}

fn case_of(record: &ManagedCaseRecord) -> Result<ManagedCase, ApiError> {
    super::case_of(record)
}

/// Places a referral in the open transaction: finds the case its key reached, or the
/// member's open case of the kind to absorb it, or opens a new case. Writes the case,
/// the key, the events and the audit entry; the caller commits.
pub async fn place(
    tx: &mut Tx,
    caller: &Caller,
    new: NewReferral,
    now: DateTime<Utc>,
) -> Result<Placed, ApiError> {
    let now = micros(now);
    if let Some(id) = tx.referral_case(&new.key).await? {
        let record = tx.managed_case_for_update(&id).await?;
        return Ok(Placed {
            case: case_of(&record)?,
            absorbed: true,
            duplicate: true,
        });
    }
    let existing = tx
        .open_managed_case_of_kind(new.member_id.as_str(), new.kind.as_str())
        .await?;
    let (case, mut events, absorbed) = match existing {
        Some(record) => {
            let mut case = case_of(&record)?;
            let events = case.absorb(new.referral.clone(), now);
            (case, events, true)
        }
        None => {
            let id = format!("CM-{}", uuid::Uuid::now_v7().simple());
            let (case, events) = ManagedCase::open(
                id,
                new.member_id.clone(),
                new.kind,
                new.referral.clone(),
                now,
            );
            (case, events, false)
        }
    };
    let mut case = case;
    if let Some((reason, diagnosis)) = new.decision_support {
        events.extend(case.add_referred_decision_support(&new.referral, reason, diagnosis, now));
    }
    let record = record_of(&case);
    if absorbed {
        tx.update_managed_case(&record, now).await?;
    } else {
        tx.insert_managed_case(&record, now).await?;
    }
    tx.insert_referral(&new.key, &case.id, now).await?;
    append_events(tx, events).await?;
    tx.append_audit(
        &caller.audit_entry(
            RECORD_KIND,
            &case.id,
            Some(&case.member_id),
            AuditOutcome::Allowed,
        ),
        now,
    )
    .await?;
    Ok(Placed {
        case,
        absorbed,
        duplicate: false,
    })
}

/// The outbox consumer that opens cases from other areas' events.
#[derive(Debug, Clone)]
pub struct ReferralConsumer {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl ReferralConsumer {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        ReferralConsumer { store, clock }
    }

    async fn handle_event(&self, event: &DomainEvent) -> Result<(), String> {
        let Some(AutoReferral {
            member_id,
            kind,
            referral,
            decision_support,
        }) = referral_from_event(event).map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let caller = Caller {
            actor: Actor::new(Role::Service, CONSUMER).map_err(|e| e.to_string())?,
            operation: format!("outbox:{}", event.kind),
        };
        let new = NewReferral {
            key: format!("event:{}", event.id),
            member_id,
            kind,
            referral,
            decision_support,
        };
        let mut tx = self.store.begin().await.map_err(|e| e.to_string())?;
        let placed = match place(&mut tx, &caller, new, self.clock.now()).await {
            Ok(p) => p,
            // Another worker opened the member's case of this kind at the same moment:
            // the retry absorbs the referral into it.
            Err(ApiError::AlreadyExists { kind, id }) => {
                return Err(format!("{kind} {id} was opened concurrently; retrying"));
            }
            Err(e) => return Err(e.to_string()),
        };
        tx.commit().await.map_err(|e: StoreError| e.to_string())?;
        tracing::info!(
            case_id = %placed.case.id,
            absorbed = placed.absorbed,
            duplicate = placed.duplicate,
            kind = %placed.case.kind,
            "referral placed"
        );
        Ok(())
    }
}

impl EventHandler for ReferralConsumer {
    fn consumer(&self) -> &'static str {
        CONSUMER
    }

    fn prefixes(&self) -> &'static [&'static str] {
        REFERRAL_EVENT_KINDS
    }

    fn handle<'a>(&'a self, event: &'a DomainEvent) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.handle_event(event))
    }
}
