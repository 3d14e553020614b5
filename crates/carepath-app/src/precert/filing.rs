//! Precertification cases filed and withdrawn on behalf of another area's use case,
//! inside that use case's transaction.
//!
//! A program that reviews a request itself (oncology pathway review judges a whole
//! treatment plan) files the case its review decided, and withdraws the case of a
//! request its own revision replaced. These functions are the only way such cases are
//! written: the case is built by the precertification domain
//! ([`PrecertCase::submit_reviewed`], [`PrecertCase::withdraw`]) and stored through
//! the one mapping of a case to its row ([`crate::precert::record`]), so no other area
//! touches a case row.

use carepath_core::Specialty;
use carepath_precert::{Ctx, PrecertCase, ProgramReview, Submission, WithdrawReason};
use carepath_store::Tx;
use chrono::{DateTime, Utc};

use crate::{
    App, Caller,
    error::AppResult,
    pipeline::{Aggregate, append_events},
    precert::{PrecertEngine, record_of},
};

/// A request a program has already reviewed, to be filed as a precertification case.
#[derive(Debug, Clone)]
pub struct ReviewedRequest {
    /// The request as the precertification domain takes it.
    pub submission: Submission,
    /// The requesting provider's specialty, as the directory lists it.
    pub requesting_specialty: Option<Specialty>,
    /// What the program's review decided, and on which rule and criteria.
    pub review: ProgramReview,
    /// The idempotency key the case is filed under (`<requester>:<request id>`).
    pub request_key: String,
}

/// Files a program-reviewed request as a new case inside `tx`: the case is decided by
/// [`PrecertCase::submit_reviewed`] against the rules and exemptions in force, stored,
/// and its events written to the outbox. Nothing is committed here.
///
/// A case already filed under the same key is a conflict
/// ([`crate::AppError::AlreadyExists`]) when the transaction writes it.
pub async fn file_reviewed(
    app: &App,
    engine: &PrecertEngine,
    tx: &mut Tx,
    caller: &Caller,
    request: ReviewedRequest,
    now: DateTime<Utc>,
) -> AppResult<PrecertCase> {
    let who = carepath_precert::Caller::new(caller.actor.clone(), None);
    let rules = engine.rules();
    let gold_cards = engine.gold_cards();
    let ctx = Ctx {
        calendar: &app.calendar,
        rules: &rules,
        gold_cards: &gold_cards,
    };
    let case_id = format!("PA-{}", uuid::Uuid::now_v7().simple());
    let (case, events) = PrecertCase::submit_reviewed(
        case_id,
        request.submission,
        request.requesting_specialty,
        &who,
        &ctx,
        &request.review,
        now,
    )?;
    tx.insert_case(&record_of(&case, &request.request_key), now)
        .await?;
    append_events(tx, events).await?;
    Ok(case)
}

/// Withdraws, inside `tx`, the case `case_id` of a request its requester revised:
/// the case is read under lock, withdrawn by the requester with a note naming
/// `replaced_by` (the revision), stored, and its events written to the outbox.
/// Nothing is committed here. A case past withdrawal is refused by the domain.
pub async fn withdraw_replaced(
    tx: &mut Tx,
    caller: &Caller,
    case_id: &str,
    replaced_by: &str,
    now: DateTime<Utc>,
) -> AppResult<PrecertCase> {
    let who = carepath_precert::Caller::new(caller.actor.clone(), None);
    let previous = PrecertCase::load_for_update(tx, case_id).await?;
    let mut case = PrecertCase::from_record(&previous)?;
    let events = case.withdraw(
        &who,
        WithdrawReason::ByRequester,
        &format!("replaced by the revised plan {replaced_by}"),
        now,
    )?;
    PrecertCase::save(tx, &case.to_record(&previous), now).await?;
    append_events(tx, events).await?;
    Ok(case)
}
