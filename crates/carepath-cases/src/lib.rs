//! Nurse case management for carepath: referrals (by hand and from other areas'
//! events), the case through its phases, nurse assignment, the care plan (goals, tasks,
//! interaction log), transitions of care, arranged services, decision support for
//! serious diagnoses and members abroad, and member satisfaction.
//!
//! Everything here is pure and synchronous: time is always a parameter, nothing reads
//! the wall clock, nothing does I/O. The gRPC service and storage build on these types;
//! [`CaseError`] says whether a refusal is a permission, a state or an input problem,
//! so the edge maps it to a status in one place.
//!
//! - Referrals: [`referral_from_event`] → [`AutoReferral`]; [`ManagedCase::open`] and
//!   [`ManagedCase::absorb`].
//! - Workflow: [`ManagedCase`] commands → [`EventDraft`]s; phases in
//!   [`phase_move_allowed`]; task states in [`TaskStatus::may_become`].
//! - Who sees what: [`ManagedCase::view_for`].
//! - Assignment: [`choose_nurse`] within [`DEFAULT_CASELOAD_CAP`].
//! - Satisfaction: [`satisfaction::report`].

mod assign;
mod case;
mod model;
mod referral;
pub mod satisfaction;

pub use assign::{DEFAULT_CASELOAD_CAP, NurseCandidate, choose_nurse, has_capacity};
pub use case::{
    AGGREGATE_KIND, ArrangedService, Assignment, Caller, CareAbroadAssessment, CareTransition,
    CaseError, Consent, DecisionSupport, EventDraft, Goal, HistoryEntry, Interaction, MAX_TEXT,
    ManagedCase, NewDecisionSupport, NewGoal, NewInteraction, NewService, NewTask, NewTransition,
    NurseRef, Referral, Satisfaction, Task, TaskChange, View, event_kinds, phase_move_allowed,
};
pub use model::{
    CareAbroad, CareSetting, CaseKind, DecisionReason, GoalStatus, InteractionChannel, Outcome,
    Phase, Priority, ReferralSource, ServiceKind, ServiceState, TaskStatus, UnknownName,
};
pub use referral::{
    AutoReferral, ONCOLOGY_PLAN_SUBMITTED, PRECERT_APPROVED, REFERRAL_EVENT_KINDS, ReferralError,
    SECOND_OPINION_SUBMITTED, TRANSITION_CATEGORIES, referral_from_event,
};
pub use satisfaction::SatisfactionReport;
