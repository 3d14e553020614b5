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
use carepath_core::{Clock, DomainEvent, Icd10Code, MemberId};
use carepath_store::{AuditOutcome, Store, Tx};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::record::{RECORD_KIND, row_of};
use crate::{
    context::{Caller, micros},
    error::{AppError, AppResult},
    outbox::EventHandler,
    pipeline::{Aggregate, append_events},
};

/// The consumer's name in the outbox.
pub const CONSUMER: &str = "cases-referrals";

/// What a referral did.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The case the referral reached, in full.
    pub case: ManagedCase,
    /// An open case of the same kind took it (or it had been placed before).
    pub absorbed: bool,
    /// The key had been seen before: nothing changed.
    pub duplicate: bool,
}

/// A referral ready to place.
#[derive(Debug, Clone)]
pub struct NewReferral {
    /// The idempotency key: `event:<id>` for a referral from an event, a fresh
    /// `manual:<uuid>` for one made by hand.
    pub key: String,
    /// The member referred.
    pub member_id: MemberId,
    /// The kind of case the referral asks for.
    pub kind: CaseKind,
    /// Who referred, why and when.
    pub referral: Referral,
    /// Decision support the referral asks for at once (a serious diagnosis).
    pub decision_support: Option<(DecisionReason, Option<Icd10Code>)>,
}

/// Places a referral in the open transaction: finds the case its key reached, or the
/// member's open case of the kind to absorb it, or opens a new case. Writes the case,
/// the key, the events and the audit entry; the caller commits.
pub async fn place(
    tx: &mut Tx,
    caller: &Caller,
    new: NewReferral,
    now: DateTime<Utc>,
) -> AppResult<Placed> {
    let now = micros(now);
    if let Some(id) = tx.referral_case(&new.key).await? {
        let record = tx.managed_case_for_update(&id).await?;
        return Ok(Placed {
            case: ManagedCase::from_record(&record)?,
            absorbed: true,
            duplicate: true,
        });
    }
    let existing = tx
        .open_managed_case_of_kind(new.member_id.as_str(), new.kind.as_str())
        .await?;
    let (mut case, mut events, absorbed) = match existing {
        Some(record) => {
            let mut case = ManagedCase::from_record(&record)?;
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
    if let Some((reason, diagnosis)) = new.decision_support {
        events.extend(case.add_referred_decision_support(&new.referral, reason, diagnosis, now));
    }
    let record = row_of(&case);
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
    /// A consumer writing to `store`, its referrals timed by `clock`.
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
        let caller = Caller::service(CONSUMER, &format!("outbox:{}", event.kind));
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
            Err(AppError::AlreadyExists { kind, id }) => {
                return Err(format!("{kind} {id} was opened concurrently; retrying"));
            }
            Err(e) => return Err(e.to_string()),
        };
        tx.commit().await.map_err(|e| e.to_string())?;
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
