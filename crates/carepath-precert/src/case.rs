//! The precertification case: a serializable aggregate and the state machine that is
//! the only way to change it.
//!
//! ```text
//! received ─┬─> approved
//!           ├─> pended_information ──(information received: automation again)──┐
//!           └─> pended_review ─(claim)─> in_review ─┬─> approved              │
//!                     ^  <────────────(release)─────┤─> partially_approved ─┐  │
//!                     └─────────────<───────────────┘─> denied ─────────────┤  │
//!  after an adverse decision:                                               │  │
//!    peer_to_peer_requested ─> peer_to_peer_scheduled ─> (decision stands | approved)
//!    reconsideration (new information; automation again) ─> approved | pended_review
//!    appeal_requested ─> appeal_upheld | appeal_overturned
//!  withdrawn: by the requester before a decision, or after 15 business days
//!  without the information asked for.
//! ```
//!
//! Every command takes the caller and `now`, checks the transition (a typed
//! [`WorkflowError::IllegalTransition`], FAILED_PRECONDITION at the edge) and the
//! caller's right to make it ([`WorkflowError::PermissionDenied`], PERMISSION_DENIED),
//! appends a history entry and returns the events to publish. A decision, once made,
//! is never edited: later paths append new decisions.

use std::collections::BTreeMap;
use std::fmt;

use carepath_core::{Actor, BusinessCalendar, Invalid, Role, Specialty, StaffId, Urgency};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::check::Requirement;
use crate::clock::{
    APPEAL_FILING_DAYS, Due, EXPEDITED_APPEAL_HOURS, STANDARD_APPEAL_DAYS, appeal_due,
    appeal_filing_deadline, decision_due, information_due, post_service_due, withdraw_after,
};
use crate::dates::after_the_fact;
use crate::determine::{
    ApprovalBasis, CaseOutcome, Determination, DetermineError, LineOutcome, Missing, PendReason,
    PendedFor, RecordRef, ReviewReason, Submission, case_outcome, determine,
};
use crate::goldcard::GoldCards;
use crate::limits;
use crate::load::RuleBook;
use crate::rules::{Answer, named};

/// Event kinds published by the case, one constant each so producers and consumers
/// share the spelling.
pub mod event_kinds {
    pub const SUBMITTED: &str = "precert.case.submitted";
    pub const INFORMATION_REQUESTED: &str = "precert.case.information_requested";
    pub const INFORMATION_RECEIVED: &str = "precert.case.information_received";
    pub const PENDED_FOR_REVIEW: &str = "precert.case.pended_for_review";
    pub const CLAIMED: &str = "precert.case.claimed";
    pub const APPROVED: &str = "precert.case.approved";
    pub const PARTIALLY_APPROVED: &str = "precert.case.partially_approved";
    pub const DENIED: &str = "precert.case.denied";
    pub const PEER_TO_PEER_REQUESTED: &str = "precert.case.peer_to_peer_requested";
    pub const PEER_TO_PEER_SCHEDULED: &str = "precert.case.peer_to_peer_scheduled";
    pub const PEER_TO_PEER_COMPLETED: &str = "precert.case.peer_to_peer_completed";
    pub const RECONSIDERED: &str = "precert.case.reconsidered";
    pub const APPEAL_REQUESTED: &str = "precert.case.appeal_requested";
    pub const APPEAL_DECIDED: &str = "precert.case.appeal_decided";
    pub const WITHDRAWN: &str = "precert.case.withdrawn";
    /// A notification after the fact (an emergency admission) was received: not a
    /// coverage decision.
    pub const NOTIFICATION_RECEIVED: &str = "precert.case.notification_received";
}

/// The aggregate kind events are recorded under.
pub const AGGREGATE_KIND: &str = "precert_case";

/// The subject automation acts as in the history.
pub const AUTOMATION_SUBJECT: &str = "precert-automation";

named!(
    /// Where a case stands.
    CaseState, "case state", {
    Received => "received",
    Approved => "approved",
    PendedInformation => "pended_information",
    PendedReview => "pended_review",
    InReview => "in_review",
    PartiallyApproved => "partially_approved",
    Denied => "denied",
    PeerToPeerRequested => "peer_to_peer_requested",
    PeerToPeerScheduled => "peer_to_peer_scheduled",
    AppealRequested => "appeal_requested",
    AppealUpheld => "appeal_upheld",
    AppealOverturned => "appeal_overturned",
    Withdrawn => "withdrawn",
    NotificationReceived => "notification_received",
    RetrospectiveReview => "retrospective_review",
});

impl CaseState {
    /// Whether the plan owes a decision (the case counts towards lateness).
    pub fn awaits_plan(self) -> bool {
        matches!(
            self,
            CaseState::Received
                | CaseState::PendedReview
                | CaseState::RetrospectiveReview
                | CaseState::InReview
                | CaseState::AppealRequested
        )
    }

    /// Whether the case has reached a decision or been withdrawn and no path is left
    /// but the post-decision ones.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            CaseState::Approved
                | CaseState::AppealUpheld
                | CaseState::AppealOverturned
                | CaseState::Withdrawn
                | CaseState::NotificationReceived
        )
    }
}

named!(
    /// The commands, as named in history entries and errors.
    Action, "action", {
    Submit => "submit",
    Determine => "determine",
    RequestInformation => "request_information",
    SupplyInformation => "supply_information",
    Claim => "claim",
    Release => "release",
    Approve => "approve",
    ApproveInPart => "approve_in_part",
    Deny => "deny",
    RequestPeerToPeer => "request_peer_to_peer",
    SchedulePeerToPeer => "schedule_peer_to_peer",
    CompletePeerToPeer => "complete_peer_to_peer",
    Reconsider => "reconsider",
    Appeal => "appeal",
    DecideAppeal => "decide_appeal",
    Withdraw => "withdraw",
});

named!(
    /// Why an adverse decision was made (CMS-0057-F requires a specific reason).
    ReasonCode, "reason code", {
    /// The medical condition does not support the service.
    NotMedicallyNecessary => "not_medically_necessary",
    /// The records are incomplete or lack the clinical information needed.
    InsufficientDocumentation => "insufficient_documentation",
    ExperimentalOrInvestigational => "experimental_or_investigational",
    /// A lower level of care or another site of service is appropriate.
    LowerLevelOfCare => "lower_level_of_care",
    /// The service is not a benefit of the plan (including out-of-network care on a
    /// plan without out-of-network coverage).
    NotACoveredBenefit => "not_a_covered_benefit",
});

/// Who is acting: the authenticated actor plus, for reviewers, their specialty (from
/// the staff directory), which adverse decisions are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub actor: Actor,
    pub specialty: Option<Specialty>,
}

impl Caller {
    pub fn new(actor: Actor, specialty: Option<Specialty>) -> Self {
        Self { actor, specialty }
    }

    fn role(&self) -> Role {
        self.actor.role
    }

    fn staff(&self) -> Option<StaffRef> {
        Some(StaffRef {
            staff_id: self.actor.staff_id()?,
            role: self.actor.role,
            specialty: self.specialty.clone(),
        })
    }

    fn as_history(&self) -> HistoryActor {
        HistoryActor {
            role: self.actor.role,
            subject: self.actor.subject.clone(),
            specialty: self.specialty.clone(),
        }
    }
}

/// The verdict of a program that reviews a whole request (the oncology pathway
/// review): approve every line, or hold them all for its reviewers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramReview {
    pub approved: bool,
    /// What decided, e.g. `oncology-pathway:tchp` with the catalogue version.
    pub rule: String,
    /// The criteria that held (on pathway, no open findings), for the record.
    pub criteria: Vec<String>,
    /// Who must review when not approved.
    pub reviewer_specialty: Option<Specialty>,
}

/// A plan staff member as recorded on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffRef {
    pub staff_id: StaffId,
    pub role: Role,
    pub specialty: Option<Specialty>,
}

/// What the caller hands every command besides its own arguments: the calendar for
/// due times, the rules and exemptions for automation.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub calendar: &'a BusinessCalendar,
    pub rules: &'a RuleBook,
    pub gold_cards: &'a GoldCards,
}

/// Why a caller may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionReason {
    #[error("role {role} may not do this")]
    Role { role: Role },
    #[error("only the requesting provider or the member may do this")]
    NotTheRequester,
    #[error("the case is claimed by {claimed_by}")]
    NotTheClaimant { claimed_by: String },
    #[error("the service needs a {required} reviewer; the caller's specialty is {actual}")]
    SpecialtyMismatch { required: String, actual: String },
    #[error(
        "an appeal must be decided by a physician other than the one who made the adverse decision"
    )]
    SameReviewer,
    #[error("only the physician scheduled for the peer-to-peer may record its outcome")]
    NotTheScheduledPhysician,
}

/// The error code a workflow error maps to at the edge, decided here so the mapping is
/// written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    FailedPrecondition,
    PermissionDenied,
    InvalidArgument,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    /// The command is not allowed from the case's state.
    #[error("cannot {action} a case that is {state}")]
    IllegalTransition { action: Action, state: CaseState },
    /// The state allows the command but a condition does not hold yet or any more
    /// (the information is not overdue, the appeal window has closed).
    #[error("cannot {action}: {message}")]
    Precondition { action: Action, message: String },
    #[error("permission denied to {action}: {reason}")]
    PermissionDenied {
        action: Action,
        reason: PermissionReason,
    },
    #[error(transparent)]
    Invalid(Invalid),
    #[error(transparent)]
    Determine(#[from] DetermineError),
}

impl WorkflowError {
    pub fn code(&self) -> ErrorCode {
        match self {
            WorkflowError::IllegalTransition { .. } | WorkflowError::Precondition { .. } => {
                ErrorCode::FailedPrecondition
            }
            WorkflowError::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            WorkflowError::Invalid(_) => ErrorCode::InvalidArgument,
            WorkflowError::Determine(DetermineError::Invalid(_)) => ErrorCode::InvalidArgument,
            WorkflowError::Determine(DetermineError::Check(_)) => ErrorCode::FailedPrecondition,
        }
    }
}

impl From<Invalid> for WorkflowError {
    fn from(invalid: Invalid) -> Self {
        WorkflowError::Invalid(invalid)
    }
}

/// The reason, rationale and guideline every adverse decision must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdverseDetermination {
    pub reason_code: ReasonCode,
    /// The clinical judgement, in words the provider and member can follow.
    pub rationale: String,
    /// The guideline or criterion applied (`InterQual 2026 Imaging: Brain MRI`).
    pub guideline: String,
}

impl AdverseDetermination {
    /// Parses a reason code from the wire and checks the texts.
    pub fn new(reason_code: &str, rationale: &str, guideline: &str) -> Result<Self, Invalid> {
        let mut invalid = Invalid::new();
        let code = invalid.check("reason_code", ReasonCode::parse(reason_code));
        let adverse = Self {
            reason_code: code.unwrap_or(ReasonCode::NotMedicallyNecessary),
            rationale: rationale.trim().to_owned(),
            guideline: guideline.trim().to_owned(),
        };
        if let Err(e) = adverse.validate() {
            invalid.extend(e);
        }
        invalid.into_result().map(|()| adverse)
    }

    /// Rationale and guideline are required, must say something and are bounded.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        limits::check_text(
            &mut invalid,
            "rationale",
            &self.rationale,
            limits::MAX_RATIONALE,
        );
        limits::check_text(
            &mut invalid,
            "guideline",
            &self.guideline,
            limits::MAX_GUIDELINE,
        );
        if self.rationale.trim().chars().count() < 10 {
            invalid.push(
                "rationale",
                "must explain the clinical judgement (at least 10 characters)",
            );
        }
        if self.guideline.trim().is_empty() {
            invalid.push("guideline", "must name the guideline or criterion applied");
        }
        invalid.into_result()
    }
}

/// How much of one line a reviewer approves when approving in part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineApproval {
    pub line: usize,
    pub approved_units: u32,
    /// For stays: approved days, at most the requested length rounded up to days.
    #[serde(default)]
    pub approved_days: Option<u32>,
}

/// One line as decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDecision {
    pub line: usize,
    pub requested_units: u32,
    pub approved_units: u32,
    pub requested_days: Option<u32>,
    pub approved_days: Option<u32>,
}

/// What a decision concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionOutcome {
    Approved,
    PartiallyApproved,
    Denied,
}

/// At which point in the case the decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStage {
    Initial,
    PeerToPeer,
    Reconsideration,
    Appeal,
}

/// Who made a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecisionMaker {
    Automation,
    Staff(StaffRef),
}

/// A decision, appended to the case and never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: DecisionOutcome,
    pub stage: DecisionStage,
    pub by: DecisionMaker,
    pub at: DateTime<Utc>,
    /// The due time in force when the decision was made, so lateness can be reported
    /// after the clock has moved on.
    pub due_at: DateTime<Utc>,
    /// Required for every adverse outcome.
    pub adverse: Option<AdverseDetermination>,
    /// A note for approvals (automation records its basis here).
    pub note: String,
    pub lines: Vec<LineDecision>,
}

/// An open or answered request for information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InformationRequest {
    pub requested_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// From when the case may be withdrawn for want of the information.
    pub withdraw_after: DateTime<Utc>,
    pub missing: Missing,
    pub received_at: Option<DateTime<Utc>>,
}

/// A peer-to-peer discussion between the requesting physician and a plan physician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerToPeer {
    pub requested_at: DateTime<Utc>,
    pub requested_by: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub physician: Option<StaffRef>,
    pub outcome: Option<PeerToPeerOutcome>,
}

/// The result of a peer-to-peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerToPeerOutcome {
    DecisionStands,
    /// The plan physician approves the request in full.
    Overturned,
}

/// How fast an appeal must be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppealPriority {
    /// Due within 72 hours.
    Expedited,
    /// Due within 30 days.
    Standard,
}

/// What an appeal reviewer concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AppealDecision {
    /// The adverse decision stands; an adverse determination again.
    Upheld { adverse: AdverseDetermination },
    /// The request is approved in full.
    Overturned { rationale: String },
}

impl AppealDecision {
    /// The texts of the decision are bounded ([`limits`]).
    fn check_limits(&self) -> Result<(), Invalid> {
        match self {
            AppealDecision::Upheld { adverse } => adverse.validate(),
            AppealDecision::Overturned { rationale } => {
                limits::text("rationale", rationale, limits::MAX_RATIONALE)
            }
        }
    }
}

/// An appeal of an adverse decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appeal {
    pub requested_at: DateTime<Utc>,
    pub requested_by: String,
    pub priority: AppealPriority,
    pub due_at: DateTime<Utc>,
    pub reason: String,
    pub decision: Option<AppealDecision>,
    pub decided_by: Option<StaffRef>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// Why a case was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    ByRequester,
    /// The information asked for did not come within 15 business days.
    InformationNotReceived,
}

impl WithdrawReason {
    /// How the case history words it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ByRequester => "withdrawn by the requester",
            Self::InformationNotReceived => {
                "withdrawn: the information asked for did not come within 15 business days"
            }
        }
    }
}

/// Who did something, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryActor {
    pub role: Role,
    pub subject: String,
    pub specialty: Option<Specialty>,
}

/// One transition: who, in which role, when, what and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub by: HistoryActor,
    pub action: Action,
    pub from: CaseState,
    pub to: CaseState,
    pub note: String,
}

pub use carepath_core::EventDraft;

/// A precertification case: the request, where it stands, every decision and the full
/// history. Storage keeps it as one JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecertCase {
    pub id: String,
    pub request: Submission,
    /// The requesting physician's specialty, for matching a peer-to-peer reviewer.
    pub requesting_specialty: Option<Specialty>,
    pub state: CaseState,
    pub received_at: DateTime<Utc>,
    /// When the decision now owed is due (restarted when information is received).
    pub due: Due,
    /// The due time set at receipt, for reporting decisions made after it.
    pub original_due: Due,
    /// The calendar due times were computed with.
    pub calendar_id: String,
    /// The latest automation result.
    pub determination: Option<Determination>,
    pub information_request: Option<InformationRequest>,
    pub claimed_by: Option<StaffRef>,
    pub decisions: Vec<Decision>,
    pub peer_to_peer: Option<PeerToPeer>,
    pub appeal: Option<Appeal>,
    pub withdrawn: Option<WithdrawReason>,
    /// Whether the request is for services already given (a retrospective review,
    /// on the post-service clock): automation never decides it.
    #[serde(default)]
    pub retrospective: bool,
    pub history: Vec<HistoryEntry>,
}

/// The outcome of a command: the events to publish with the change.
pub type Events = Vec<EventDraft>;

/// Sends every line of a retrospective request to a reviewer.
fn for_retrospective_review(determination: &mut Determination) {
    for line in &mut determination.lines {
        line.outcome = LineOutcome::Pended {
            reason: PendReason::NeedsClinicalReview {
                reason: ReviewReason::RetrospectiveRequest,
                reviewer_specialty: line.reviewer_specialty.clone(),
            },
        };
    }
    determination.outcome = case_outcome(&determination.lines);
}

/// Whether every line is a notification after the fact that automation let through.
fn is_notification(determination: &Determination) -> bool {
    !determination.lines.is_empty()
        && determination.lines.iter().all(|l| {
            l.requirement == Requirement::NotifyOnly
                && matches!(l.outcome, LineOutcome::Notified { .. })
        })
}

fn automation() -> HistoryActor {
    HistoryActor {
        role: Role::Service,
        subject: AUTOMATION_SUBJECT.to_owned(),
        specialty: None,
    }
}

fn deny(action: Action, reason: PermissionReason) -> WorkflowError {
    WorkflowError::PermissionDenied { action, reason }
}

fn require_role(caller: &Caller, action: Action, roles: &[Role]) -> Result<(), WorkflowError> {
    if roles.contains(&caller.role()) {
        Ok(())
    } else {
        Err(deny(
            action,
            PermissionReason::Role {
                role: caller.role(),
            },
        ))
    }
}

impl fmt::Display for StaffRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.staff_id, self.role)
    }
}

impl PrecertCase {
    /// Receives a request: validates it, stamps the due time, and leaves it in
    /// `received` for automation. Most callers want [`PrecertCase::submit`].
    ///
    /// The caller must be the requesting or servicing provider, the member, or plan
    /// intake staff (a nurse or administrator keying in a faxed request).
    pub fn receive(
        id: impl Into<String>,
        request: Submission,
        requesting_specialty: Option<Specialty>,
        caller: &Caller,
        calendar: &BusinessCalendar,
        now: DateTime<Utc>,
    ) -> Result<(PrecertCase, Events), WorkflowError> {
        let action = Action::Submit;
        let id = id.into();
        if id.trim().is_empty() {
            return Err(Invalid::field("id", "must not be empty").into());
        }
        let received = now.with_timezone(&calendar.timezone()).date_naive();
        let retrospective = request.lines.iter().any(|l| after_the_fact(l, received));
        let due = if retrospective {
            post_service_due(calendar, now)
        } else {
            decision_due(calendar, now, request.urgency)
        };
        let mut case = PrecertCase {
            id,
            request,
            requesting_specialty,
            state: CaseState::Received,
            received_at: now,
            due,
            original_due: due,
            calendar_id: calendar.id().to_owned(),
            determination: None,
            information_request: None,
            claimed_by: None,
            decisions: Vec::new(),
            peer_to_peer: None,
            appeal: None,
            withdrawn: None,
            retrospective,
            history: Vec::new(),
        };
        match caller.role() {
            Role::Nurse | Role::Admin => {}
            Role::Provider | Role::Member => case.require_requester(caller, action)?,
            role => return Err(deny(action, PermissionReason::Role { role })),
        }
        case.history.push(HistoryEntry {
            at: now,
            by: caller.as_history(),
            action,
            from: CaseState::Received,
            to: CaseState::Received,
            note: if retrospective {
                format!(
                    "received for services already given: a retrospective review; decision due {}",
                    due.at
                )
            } else {
                format!("received; decision due {}", due.at)
            },
        });
        let event = case.event(event_kinds::SUBMITTED, now, json!({}));
        Ok((case, vec![event]))
    }

    /// Receives a request and runs automation on it at once: the usual entry point.
    pub fn submit(
        id: impl Into<String>,
        request: Submission,
        requesting_specialty: Option<Specialty>,
        caller: &Caller,
        ctx: &Ctx<'_>,
        now: DateTime<Utc>,
    ) -> Result<(PrecertCase, Events), WorkflowError> {
        // Determine first so an invalid request leaves no case behind.
        let determination = determine(ctx.rules, &request, ctx.gold_cards)?;
        let (mut case, mut events) =
            PrecertCase::receive(id, request, requesting_specialty, caller, ctx.calendar, now)?;
        events.extend(case.apply_determination(determination, DecisionStage::Initial, ctx, now));
        Ok((case, events))
    }

    /// Receives a request whose lines a program's own review has judged as a whole
    /// (the oncology pathway review looks at the entire treatment plan). Validation,
    /// requirement checks and due times are as for [`PrecertCase::submit`]; each
    /// line's outcome is the program's: approved when the review approves the plan,
    /// otherwise pended for a reviewer of the review's specialty. Like automation, a
    /// program review never denies.
    pub fn submit_reviewed(
        id: impl Into<String>,
        request: Submission,
        requesting_specialty: Option<Specialty>,
        caller: &Caller,
        ctx: &Ctx<'_>,
        review: &ProgramReview,
        now: DateTime<Utc>,
    ) -> Result<(PrecertCase, Events), WorkflowError> {
        let mut determination = determine(ctx.rules, &request, ctx.gold_cards)?;
        for line in &mut determination.lines {
            line.outcome = if review.approved {
                LineOutcome::Approved {
                    basis: ApprovalBasis::CriteriaMet {
                        rule: review.rule.clone(),
                        criteria: review.criteria.clone(),
                    },
                }
            } else {
                LineOutcome::Pended {
                    reason: PendReason::OncologyReview {
                        rule: review.rule.clone(),
                        reviewer_specialty: review.reviewer_specialty.clone(),
                    },
                }
            };
            if !review.approved {
                line.reviewer_specialty = review.reviewer_specialty.clone();
            }
        }
        determination.outcome = case_outcome(&determination.lines);
        let (mut case, mut events) =
            PrecertCase::receive(id, request, requesting_specialty, caller, ctx.calendar, now)?;
        events.extend(case.apply_determination(determination, DecisionStage::Initial, ctx, now));
        Ok((case, events))
    }

    /// Runs automation on a received case.
    pub fn run_automation(
        &mut self,
        ctx: &Ctx<'_>,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        self.expect(Action::Determine, &[CaseState::Received])?;
        let determination = determine(ctx.rules, &self.request, ctx.gold_cards)?;
        Ok(self.apply_determination(determination, DecisionStage::Initial, ctx, now))
    }

    /// A reviewer asks for more information (from `pended_review`, or from
    /// `in_review` by the reviewer holding the case).
    pub fn request_information(
        &mut self,
        caller: &Caller,
        missing: Missing,
        ctx: &Ctx<'_>,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::RequestInformation;
        missing.check_limits()?;
        self.expect(
            action,
            &[
                CaseState::PendedReview,
                CaseState::RetrospectiveReview,
                CaseState::InReview,
            ],
        )?;
        require_role(caller, action, &[Role::Nurse, Role::PhysicianReviewer])?;
        if self.state == CaseState::InReview {
            self.require_claimant(caller, action)?;
        }
        if missing.is_empty() {
            return Err(Invalid::field("missing", "name at least one question or document").into());
        }
        self.claimed_by = None;
        Ok(vec![self.ask_for_information(
            missing,
            caller.as_history(),
            ctx.calendar,
            now,
        )])
    }

    /// The requester (or intake staff) supplies answers and records; automation runs
    /// again and the decision clock restarts (2 business days, CAQH CORE 278).
    pub fn supply_information(
        &mut self,
        caller: &Caller,
        answers: BTreeMap<String, Answer>,
        records: Vec<RecordRef>,
        ctx: &Ctx<'_>,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::SupplyInformation;
        self.expect(action, &[CaseState::PendedInformation])?;
        match caller.role() {
            Role::Nurse | Role::Admin => {}
            _ => self.require_requester(caller, action)?,
        }
        let determination = self.with_new_information(answers, records, ctx)?;
        if let Some(request) = &mut self.information_request {
            request.received_at = Some(now);
        }
        self.due = if self.retrospective {
            post_service_due(ctx.calendar, now)
        } else {
            decision_due(ctx.calendar, now, self.request.urgency)
        };
        let from = self.state;
        self.state = CaseState::Received;
        self.history.push(HistoryEntry {
            at: now,
            by: caller.as_history(),
            action,
            from,
            to: CaseState::Received,
            note: format!("information received; decision due {}", self.due.at),
        });
        let mut events = vec![self.event(event_kinds::INFORMATION_RECEIVED, now, json!({}))];
        events.extend(self.apply_determination(determination, DecisionStage::Initial, ctx, now));
        Ok(events)
    }

    /// A nurse or physician reviewer takes the case.
    pub fn claim(&mut self, caller: &Caller, now: DateTime<Utc>) -> Result<Events, WorkflowError> {
        let action = Action::Claim;
        self.expect(
            action,
            &[CaseState::PendedReview, CaseState::RetrospectiveReview],
        )?;
        require_role(caller, action, &[Role::Nurse, Role::PhysicianReviewer])?;
        let staff = caller.staff().ok_or_else(|| {
            deny(
                action,
                PermissionReason::Role {
                    role: caller.role(),
                },
            )
        })?;
        self.claimed_by = Some(staff.clone());
        self.record(
            caller,
            action,
            CaseState::InReview,
            now,
            format!("claimed by {staff}"),
        );
        Ok(vec![self.event(
            event_kinds::CLAIMED,
            now,
            json!({ "reviewer": staff_json(&staff) }),
        )])
    }

    /// The reviewer holding the case (or an administrator) puts it back in the queue.
    pub fn release(
        &mut self,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::Release;
        self.expect(action, &[CaseState::InReview])?;
        if caller.role() != Role::Admin {
            self.require_claimant(caller, action)?;
        }
        self.claimed_by = None;
        let queue = self.review_queue_state();
        self.record(caller, action, queue, now, "released to the queue".into());
        Ok(Vec::new())
    }

    /// The reviewer holding the case approves it in full. Nurses may approve.
    pub fn approve(
        &mut self,
        caller: &Caller,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::Approve;
        limits::text("note", note, limits::MAX_NOTE)?;
        self.expect(action, &[CaseState::InReview])?;
        require_role(caller, action, &[Role::Nurse, Role::PhysicianReviewer])?;
        let staff = self.require_claimant(caller, action)?;
        if note.trim().is_empty() {
            return Err(Invalid::field("note", "say on what basis the request is approved").into());
        }
        let decision = Decision {
            outcome: DecisionOutcome::Approved,
            stage: self.stage(),
            by: DecisionMaker::Staff(staff),
            at: now,
            due_at: self.due.at,
            adverse: None,
            note: note.trim().to_owned(),
            lines: self.full_lines(),
        };
        Ok(vec![self.decide(
            caller,
            action,
            decision,
            CaseState::Approved,
        )])
    }

    /// A physician reviewer holding the case denies it.
    pub fn deny(
        &mut self,
        caller: &Caller,
        adverse: AdverseDetermination,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::Deny;
        self.expect(action, &[CaseState::InReview])?;
        let staff = self.adverse_decider(caller, action, None)?;
        adverse.validate()?;
        let decision = Decision {
            outcome: DecisionOutcome::Denied,
            stage: self.stage(),
            by: DecisionMaker::Staff(staff),
            at: now,
            due_at: self.due.at,
            adverse: Some(adverse),
            note: String::new(),
            lines: self
                .full_lines()
                .into_iter()
                .map(|l| LineDecision {
                    approved_units: 0,
                    approved_days: l.requested_days.map(|_| 0),
                    ..l
                })
                .collect(),
        };
        Ok(vec![self.decide(
            caller,
            action,
            decision,
            CaseState::Denied,
        )])
    }

    /// A physician reviewer holding the case approves fewer units or days than asked.
    /// Lines not listed are approved as requested.
    pub fn approve_in_part(
        &mut self,
        caller: &Caller,
        approvals: &[LineApproval],
        adverse: AdverseDetermination,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::ApproveInPart;
        self.expect(action, &[CaseState::InReview])?;
        // Who may decide is settled before what they sent is checked.
        require_role(caller, action, &[Role::PhysicianReviewer])?;
        self.require_claimant(caller, action)?;
        let mut invalid = Invalid::new();
        let mut lines = self.full_lines();
        let mut reduced = Vec::new();
        for (i, a) in approvals.iter().enumerate() {
            let field = format!("lines[{i}]");
            let Some(line) = lines.get_mut(a.line) else {
                invalid.push(
                    format!("{field}.line"),
                    format!("no line {} on this case", a.line),
                );
                continue;
            };
            if reduced.contains(&a.line) {
                invalid.push(
                    format!("{field}.line"),
                    format!("line {} is listed twice", a.line),
                );
                continue;
            }
            if a.approved_units > line.requested_units {
                invalid.push(
                    format!("{field}.approved_units"),
                    format!(
                        "must not exceed the {} units requested",
                        line.requested_units
                    ),
                );
            }
            match (a.approved_days, line.requested_days) {
                (Some(days), Some(requested)) if days > requested => invalid.push(
                    format!("{field}.approved_days"),
                    format!("must not exceed the {requested} days requested"),
                ),
                (Some(_), None) => invalid.push(
                    format!("{field}.approved_days"),
                    "the line is not a stay; approve units only",
                ),
                _ => {}
            }
            line.approved_units = a.approved_units.min(line.requested_units);
            if let Some(days) = a.approved_days {
                line.approved_days = Some(days);
            }
            reduced.push(a.line);
        }
        let fewer = lines
            .iter()
            .any(|l| l.approved_units < l.requested_units || l.approved_days < l.requested_days);
        let some = lines.iter().any(|l| l.approved_units > 0);
        if invalid.is_empty() && !fewer {
            invalid.push(
                "lines",
                "approves everything requested; approve the case instead",
            );
        }
        if invalid.is_empty() && !some {
            invalid.push("lines", "approves nothing; deny the case instead");
        }
        if let Err(e) = adverse.validate() {
            invalid.extend(e);
        }
        invalid.into_result()?;
        let reduced_lines: Vec<usize> = lines
            .iter()
            .filter(|l| l.approved_units < l.requested_units || l.approved_days < l.requested_days)
            .map(|l| l.line)
            .collect();
        let staff = self.adverse_decider(caller, action, Some(&reduced_lines))?;
        let decision = Decision {
            outcome: DecisionOutcome::PartiallyApproved,
            stage: self.stage(),
            by: DecisionMaker::Staff(staff),
            at: now,
            due_at: self.due.at,
            adverse: Some(adverse),
            note: String::new(),
            lines,
        };
        Ok(vec![self.decide(
            caller,
            action,
            decision,
            CaseState::PartiallyApproved,
        )])
    }

    /// The requesting provider asks to discuss an adverse decision with a plan
    /// physician. Offered once per case.
    pub fn request_peer_to_peer(
        &mut self,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::RequestPeerToPeer;
        self.expect(action, &[CaseState::Denied, CaseState::PartiallyApproved])?;
        require_role(caller, action, &[Role::Provider])?;
        self.require_requester(caller, action)?;
        if self.peer_to_peer.is_some() {
            return Err(WorkflowError::Precondition {
                action,
                message: "a peer-to-peer has already been held or requested for this case".into(),
            });
        }
        self.peer_to_peer = Some(PeerToPeer {
            requested_at: now,
            requested_by: caller.actor.subject.clone(),
            scheduled_for: None,
            physician: None,
            outcome: None,
        });
        self.record(
            caller,
            action,
            CaseState::PeerToPeerRequested,
            now,
            "peer-to-peer requested".into(),
        );
        Ok(vec![self.event(
            event_kinds::PEER_TO_PEER_REQUESTED,
            now,
            json!({ "required_specialty": self.peer_specialty().map(|s| s.to_string()) }),
        )])
    }

    /// Plan staff schedule the peer-to-peer with a physician reviewer of the same
    /// specialty as the requesting physician (or, when that is unknown, as the
    /// physician who made the decision).
    pub fn schedule_peer_to_peer(
        &mut self,
        caller: &Caller,
        physician: StaffRef,
        scheduled_for: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::SchedulePeerToPeer;
        self.expect(action, &[CaseState::PeerToPeerRequested])?;
        require_role(
            caller,
            action,
            &[Role::Admin, Role::Nurse, Role::PhysicianReviewer],
        )?;
        if physician.role != Role::PhysicianReviewer {
            return Err(deny(
                action,
                PermissionReason::Role {
                    role: physician.role,
                },
            ));
        }
        if let Some(required) = self.peer_specialty()
            && physician.specialty.as_ref() != Some(&required)
        {
            return Err(deny(
                action,
                PermissionReason::SpecialtyMismatch {
                    required: required.to_string(),
                    actual: specialty_name(physician.specialty.as_ref()),
                },
            ));
        }
        if scheduled_for <= now {
            return Err(Invalid::field("scheduled_for", "must be in the future").into());
        }
        if let Some(p2p) = &mut self.peer_to_peer {
            p2p.scheduled_for = Some(scheduled_for);
            p2p.physician = Some(physician.clone());
        }
        self.record(
            caller,
            action,
            CaseState::PeerToPeerScheduled,
            now,
            format!("peer-to-peer with {physician} at {scheduled_for}"),
        );
        Ok(vec![self.event(
            event_kinds::PEER_TO_PEER_SCHEDULED,
            now,
            json!({ "scheduled_for": scheduled_for, "physician": staff_json(&physician) }),
        )])
    }

    /// The scheduled physician records the outcome: the decision stands, or it is
    /// overturned and the request approved (a new decision; the old one is kept).
    pub fn complete_peer_to_peer(
        &mut self,
        caller: &Caller,
        outcome: PeerToPeerOutcome,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::CompletePeerToPeer;
        limits::text("note", note, limits::MAX_NOTE)?;
        self.expect(action, &[CaseState::PeerToPeerScheduled])?;
        let scheduled = self
            .peer_to_peer
            .as_ref()
            .and_then(|p| p.physician.as_ref())
            .map(|p| p.staff_id.clone());
        let Some(staff) = caller
            .staff()
            .filter(|s| Some(&s.staff_id) == scheduled.as_ref())
        else {
            return Err(deny(action, PermissionReason::NotTheScheduledPhysician));
        };
        if note.trim().is_empty() {
            return Err(Invalid::field("note", "summarise the discussion").into());
        }
        if let Some(p2p) = &mut self.peer_to_peer {
            p2p.outcome = Some(outcome);
        }
        let completed = self.event(
            event_kinds::PEER_TO_PEER_COMPLETED,
            now,
            json!({ "outcome": outcome, "note": note.trim() }),
        );
        match outcome {
            PeerToPeerOutcome::DecisionStands => {
                let back = self.last_adverse_state();
                self.record(
                    caller,
                    action,
                    back,
                    now,
                    format!("decision stands: {}", note.trim()),
                );
                Ok(vec![completed])
            }
            PeerToPeerOutcome::Overturned => {
                let decision = Decision {
                    outcome: DecisionOutcome::Approved,
                    stage: DecisionStage::PeerToPeer,
                    by: DecisionMaker::Staff(staff),
                    at: now,
                    due_at: self.due.at,
                    adverse: None,
                    note: note.trim().to_owned(),
                    lines: self.full_lines(),
                };
                let approved = self.decide(caller, action, decision, CaseState::Approved);
                Ok(vec![completed, approved])
            }
        }
    }

    /// The requester sends the missing details after an adverse decision; automation
    /// runs again and either approves or returns the case to review.
    pub fn reconsider(
        &mut self,
        caller: &Caller,
        answers: BTreeMap<String, Answer>,
        records: Vec<RecordRef>,
        ctx: &Ctx<'_>,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::Reconsider;
        self.expect(
            action,
            &[
                CaseState::Denied,
                CaseState::PartiallyApproved,
                CaseState::PeerToPeerRequested,
            ],
        )?;
        self.require_requester(caller, action)?;
        let determination = self.with_new_information(answers, records, ctx)?;
        self.due = decision_due(ctx.calendar, now, self.request.urgency);
        let from = self.state;
        self.state = CaseState::Received;
        self.history.push(HistoryEntry {
            at: now,
            by: caller.as_history(),
            action,
            from,
            to: CaseState::Received,
            note: "new clinical information for reconsideration".into(),
        });
        let mut events = vec![self.event(event_kinds::RECONSIDERED, now, json!({}))];
        events.extend(self.apply_determination(
            determination,
            DecisionStage::Reconsideration,
            ctx,
            now,
        ));
        Ok(events)
    }

    /// The requester appeals an adverse decision, within 180 days of it. Expedited
    /// appeals are due in 72 hours, standard ones in 30 days.
    pub fn appeal(
        &mut self,
        caller: &Caller,
        priority: AppealPriority,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::Appeal;
        limits::text("reason", reason, limits::MAX_NOTE)?;
        self.expect(
            action,
            &[
                CaseState::Denied,
                CaseState::PartiallyApproved,
                CaseState::PeerToPeerRequested,
            ],
        )?;
        self.require_requester(caller, action)?;
        if self.appeal.is_some() {
            return Err(WorkflowError::Precondition {
                action,
                message: "this case has already been appealed".into(),
            });
        }
        if let Some(last) = self.last_adverse_decision()
            && now > appeal_filing_deadline(last.at)
        {
            return Err(WorkflowError::Precondition {
                action,
                message: format!(
                    "the {APPEAL_FILING_DAYS}-day appeal window closed at {}",
                    appeal_filing_deadline(last.at)
                ),
            });
        }
        if reason.trim().is_empty() {
            return Err(Invalid::field("reason", "say why the decision should change").into());
        }
        let due_at = appeal_due(now, priority == AppealPriority::Expedited);
        self.appeal = Some(Appeal {
            requested_at: now,
            requested_by: caller.actor.subject.clone(),
            priority,
            due_at,
            reason: reason.trim().to_owned(),
            decision: None,
            decided_by: None,
            decided_at: None,
        });
        self.record(
            caller,
            action,
            CaseState::AppealRequested,
            now,
            format!("appeal due {due_at}"),
        );
        Ok(vec![self.event(
            event_kinds::APPEAL_REQUESTED,
            now,
            json!({ "priority": priority, "appeal_due_at": due_at, "reason": reason.trim() }),
        )])
    }

    /// A physician reviewer other than the one who made the adverse decision decides
    /// the appeal.
    pub fn decide_appeal(
        &mut self,
        caller: &Caller,
        decision: AppealDecision,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::DecideAppeal;
        decision.check_limits()?;
        self.expect(action, &[CaseState::AppealRequested])?;
        require_role(caller, action, &[Role::PhysicianReviewer])?;
        let staff = caller.staff().ok_or_else(|| {
            deny(
                action,
                PermissionReason::Role {
                    role: caller.role(),
                },
            )
        })?;
        let prior_deciders: Vec<&StaffId> = self
            .decisions
            .iter()
            .filter(|d| d.adverse.is_some())
            .filter_map(|d| match &d.by {
                DecisionMaker::Staff(s) => Some(&s.staff_id),
                DecisionMaker::Automation => None,
            })
            .collect();
        if prior_deciders.contains(&&staff.staff_id) {
            return Err(deny(action, PermissionReason::SameReviewer));
        }
        self.require_specialty(caller, action, None)?;
        let (to, record) = match &decision {
            AppealDecision::Upheld { adverse } => {
                adverse.validate()?;
                (
                    CaseState::AppealUpheld,
                    Decision {
                        outcome: self
                            .last_adverse_decision()
                            .map_or(DecisionOutcome::Denied, |d| d.outcome),
                        stage: DecisionStage::Appeal,
                        by: DecisionMaker::Staff(staff.clone()),
                        at: now,
                        due_at: self.appeal.as_ref().map_or(self.due.at, |a| a.due_at),
                        adverse: Some(adverse.clone()),
                        note: String::new(),
                        lines: self
                            .last_adverse_decision()
                            .map_or_else(Vec::new, |d| d.lines.clone()),
                    },
                )
            }
            AppealDecision::Overturned { rationale } => {
                if rationale.trim().is_empty() {
                    return Err(
                        Invalid::field("rationale", "say why the decision is overturned").into(),
                    );
                }
                (
                    CaseState::AppealOverturned,
                    Decision {
                        outcome: DecisionOutcome::Approved,
                        stage: DecisionStage::Appeal,
                        by: DecisionMaker::Staff(staff.clone()),
                        at: now,
                        due_at: self.appeal.as_ref().map_or(self.due.at, |a| a.due_at),
                        adverse: None,
                        note: rationale.trim().to_owned(),
                        lines: self.full_lines(),
                    },
                )
            }
        };
        if let Some(appeal) = &mut self.appeal {
            appeal.decision = Some(decision.clone());
            appeal.decided_by = Some(staff.clone());
            appeal.decided_at = Some(now);
        }
        let payload = json!({
            "outcome": if to == CaseState::AppealUpheld { "upheld" } else { "overturned" },
            "decision": decision,
            "decided_by": staff_json(&staff),
            "external_review_available": to == CaseState::AppealUpheld,
        });
        self.decisions.push(record);
        self.record(
            caller,
            action,
            to,
            now,
            format!(
                "appeal {}",
                if to == CaseState::AppealUpheld {
                    "upheld"
                } else {
                    "overturned"
                }
            ),
        );
        Ok(vec![self.event(event_kinds::APPEAL_DECIDED, now, payload)])
    }

    /// Withdraws a case: by the requester before a decision, or by the plan (a service
    /// or administrator) once the information asked for is 15 business days overdue.
    /// `note` is the requester's own words, if any; it is kept in the history and the
    /// event.
    pub fn withdraw(
        &mut self,
        caller: &Caller,
        reason: WithdrawReason,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Events, WorkflowError> {
        let action = Action::Withdraw;
        limits::text("reason", note, limits::MAX_NOTE)?;
        match reason {
            WithdrawReason::ByRequester => {
                self.expect(
                    action,
                    &[
                        CaseState::Received,
                        CaseState::PendedInformation,
                        CaseState::PendedReview,
                        CaseState::RetrospectiveReview,
                        CaseState::InReview,
                    ],
                )?;
                self.require_requester(caller, action)?;
            }
            WithdrawReason::InformationNotReceived => {
                self.expect(action, &[CaseState::PendedInformation])?;
                require_role(caller, action, &[Role::Service, Role::Admin])?;
                let after = self.information_request.as_ref().map(|r| r.withdraw_after);
                if after.is_none_or(|after| now < after) {
                    return Err(WorkflowError::Precondition {
                        action,
                        message: format!(
                            "the information is not overdue until {}",
                            after.map_or_else(|| "it is asked for".to_owned(), |a| a.to_string())
                        ),
                    });
                }
            }
        }
        let note = note.trim();
        let why = reason.describe();
        self.withdrawn = Some(reason);
        self.claimed_by = None;
        self.record(
            caller,
            action,
            CaseState::Withdrawn,
            now,
            if note.is_empty() {
                why.to_owned()
            } else {
                format!("{why}: {note}")
            },
        );
        Ok(vec![self.event(
            event_kinds::WITHDRAWN,
            now,
            json!({ "reason": reason, "note": note }),
        )])
    }

    /// The decision the plan owes next, as the review queue orders it: how urgent and
    /// when due. While an appeal waits that is the appeal's (an expedited appeal is
    /// urgent, due within 72 hours); otherwise the request's own.
    pub fn owed(&self) -> (Urgency, DateTime<Utc>) {
        match (&self.appeal, self.state) {
            (Some(a), CaseState::AppealRequested) => {
                let urgency = if a.priority == AppealPriority::Expedited {
                    Urgency::Urgent
                } else {
                    Urgency::Routine
                };
                (urgency, a.due_at)
            }
            _ => (self.request.urgency, self.due.at),
        }
    }

    /// Whether the plan owes a decision and its due time has passed.
    pub fn is_late(&self, now: DateTime<Utc>) -> bool {
        match self.state {
            CaseState::AppealRequested => self.appeal.as_ref().is_some_and(|a| now > a.due_at),
            state if state.awaits_plan() => now > self.due.at,
            _ => false,
        }
    }

    /// The most recent decision, if any.
    pub fn current_decision(&self) -> Option<&Decision> {
        self.decisions.last()
    }

    // ---- internals ----

    fn expect(&self, action: Action, allowed: &[CaseState]) -> Result<(), WorkflowError> {
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(WorkflowError::IllegalTransition {
                action,
                state: self.state,
            })
        }
    }

    /// Providers act for the case when they are its requesting or servicing provider;
    /// members when it is theirs.
    fn require_requester(&self, caller: &Caller, action: Action) -> Result<(), WorkflowError> {
        let ok = match caller.role() {
            Role::Provider => caller.actor.provider_npi().is_some_and(|npi| {
                npi == self.request.requesting_provider.npi
                    || npi == self.request.servicing_provider.npi
            }),
            Role::Member => caller.actor.member_id().as_ref() == Some(&self.request.member_id),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(deny(action, PermissionReason::NotTheRequester))
        }
    }

    fn require_claimant(&self, caller: &Caller, action: Action) -> Result<StaffRef, WorkflowError> {
        let staff = caller.staff().ok_or_else(|| {
            deny(
                action,
                PermissionReason::Role {
                    role: caller.role(),
                },
            )
        })?;
        match &self.claimed_by {
            Some(claimant) if claimant.staff_id == staff.staff_id => Ok(staff),
            Some(claimant) => Err(deny(
                action,
                PermissionReason::NotTheClaimant {
                    claimed_by: claimant.to_string(),
                },
            )),
            None => Err(WorkflowError::Precondition {
                action,
                message: "the case is not claimed".into(),
            }),
        }
    }

    /// Adverse decisions: a physician reviewer, holding the case, with the specialty
    /// every affected line's rule names.
    fn adverse_decider(
        &self,
        caller: &Caller,
        action: Action,
        lines: Option<&[usize]>,
    ) -> Result<StaffRef, WorkflowError> {
        require_role(caller, action, &[Role::PhysicianReviewer])?;
        let staff = self.require_claimant(caller, action)?;
        self.require_specialty(caller, action, lines)?;
        Ok(staff)
    }

    /// The caller's specialty must match the reviewer specialty of each line concerned
    /// (all lines when `lines` is `None`).
    fn require_specialty(
        &self,
        caller: &Caller,
        action: Action,
        lines: Option<&[usize]>,
    ) -> Result<(), WorkflowError> {
        let Some(determination) = &self.determination else {
            return Ok(());
        };
        for line in &determination.lines {
            if lines.is_some_and(|only| !only.contains(&line.line)) {
                continue;
            }
            if let Some(required) = &line.reviewer_specialty
                && caller.specialty.as_ref() != Some(required)
            {
                return Err(deny(
                    action,
                    PermissionReason::SpecialtyMismatch {
                        required: required.to_string(),
                        actual: specialty_name(caller.specialty.as_ref()),
                    },
                ));
            }
        }
        Ok(())
    }

    fn with_new_information(
        &mut self,
        answers: BTreeMap<String, Answer>,
        records: Vec<RecordRef>,
        ctx: &Ctx<'_>,
    ) -> Result<Determination, WorkflowError> {
        if answers.is_empty() && records.is_empty() {
            return Err(Invalid::field("answers", "send at least one answer or record").into());
        }
        let mut request = self.request.clone();
        request.answers.extend(answers);
        for record in records {
            if !request.records.iter().any(|r| r.id == record.id) {
                request.records.push(record);
            }
        }
        let determination = determine(ctx.rules, &request, ctx.gold_cards)?;
        self.request = request;
        Ok(determination)
    }

    /// Moves a `received` case on according to automation.
    ///
    /// A retrospective request is never decided by the rules: every line goes to a
    /// reviewer. A request all of whose lines are notifications after the fact (an
    /// emergency admission) is received as a notification, not approved: no coverage
    /// decision is made.
    fn apply_determination(
        &mut self,
        mut determination: Determination,
        stage: DecisionStage,
        ctx: &Ctx<'_>,
        now: DateTime<Utc>,
    ) -> Events {
        if self.retrospective {
            for_retrospective_review(&mut determination);
        }
        let notification = stage == DecisionStage::Initial && is_notification(&determination);
        let outcome = determination.outcome.clone();
        let note = summarize(&determination);
        self.determination = Some(determination);
        if notification {
            self.push_history(
                automation(),
                Action::Determine,
                CaseState::NotificationReceived,
                now,
                format!("notification received; no coverage decision is made. {note}"),
            );
            return vec![self.event(event_kinds::NOTIFICATION_RECEIVED, now, json!({}))];
        }
        match outcome {
            CaseOutcome::Approved => {
                let decision = Decision {
                    outcome: DecisionOutcome::Approved,
                    stage,
                    by: DecisionMaker::Automation,
                    at: now,
                    due_at: self.due.at,
                    adverse: None,
                    note,
                    lines: self.full_lines(),
                };
                let by = automation();
                vec![self.decide_as(by, Action::Determine, decision, CaseState::Approved)]
            }
            // After an adverse decision new information goes to a reviewer, who can
            // still ask for more; only a fresh request waits for information first.
            CaseOutcome::Pended {
                next: PendedFor::Information,
                missing,
                ..
            } if stage != DecisionStage::Reconsideration => {
                vec![self.ask_for_information(missing, automation(), ctx.calendar, now)]
            }
            CaseOutcome::Pended { next, .. } => {
                let queue = self.review_queue_state();
                self.push_history(automation(), Action::Determine, queue, now, note);
                vec![self.event(
                    event_kinds::PENDED_FOR_REVIEW,
                    now,
                    json!({
                        "pended_for": next,
                        "retrospective": self.retrospective,
                        "determination": self.determination,
                    }),
                )]
            }
        }
    }

    /// The state a case waiting for a reviewer is in: a retrospective review keeps
    /// its own.
    fn review_queue_state(&self) -> CaseState {
        if self.retrospective {
            CaseState::RetrospectiveReview
        } else {
            CaseState::PendedReview
        }
    }

    fn ask_for_information(
        &mut self,
        missing: Missing,
        by: HistoryActor,
        calendar: &BusinessCalendar,
        now: DateTime<Utc>,
    ) -> EventDraft {
        let request = InformationRequest {
            requested_at: now,
            due_at: information_due(calendar, now, self.request.urgency),
            withdraw_after: withdraw_after(calendar, now),
            missing,
            received_at: None,
        };
        let note = format!("information requested; answer due {}", request.due_at);
        let payload = json!({
            "missing": request.missing,
            "information_due_at": request.due_at,
            "withdraw_after": request.withdraw_after,
        });
        self.information_request = Some(request);
        self.push_history(
            by,
            Action::RequestInformation,
            CaseState::PendedInformation,
            now,
            note,
        );
        self.event(event_kinds::INFORMATION_REQUESTED, now, payload)
    }

    /// Appends a decision, moves the case and builds the decision event.
    fn decide(
        &mut self,
        caller: &Caller,
        action: Action,
        decision: Decision,
        to: CaseState,
    ) -> EventDraft {
        self.decide_as(caller.as_history(), action, decision, to)
    }

    fn decide_as(
        &mut self,
        by: HistoryActor,
        action: Action,
        decision: Decision,
        to: CaseState,
    ) -> EventDraft {
        let kind = match decision.outcome {
            DecisionOutcome::Approved => event_kinds::APPROVED,
            DecisionOutcome::PartiallyApproved => event_kinds::PARTIALLY_APPROVED,
            DecisionOutcome::Denied => event_kinds::DENIED,
        };
        let at = decision.at;
        let note = match &decision.adverse {
            Some(a) => format!("{}: {} ({})", a.reason_code, a.rationale, a.guideline),
            None => decision.note.clone(),
        };
        let mut payload = json!({
            "decision": decision,
            "decided_by": match &decision.by {
                DecisionMaker::Automation => json!({ "kind": "automation" }),
                DecisionMaker::Staff(s) => staff_json(s),
            },
            "late": at > decision.due_at,
        });
        if let Some(adverse) = &decision.adverse {
            payload["reason_code"] = json!(adverse.reason_code);
            payload["rationale"] = json!(adverse.rationale);
            payload["guideline"] = json!(adverse.guideline);
            payload["appeal_instructions"] = json!({
                "appeal_by": appeal_filing_deadline(at),
                "standard_appeal_decision_days": STANDARD_APPEAL_DAYS,
                "expedited_appeal_decision_hours": EXPEDITED_APPEAL_HOURS,
                "peer_to_peer_available": self.peer_to_peer.is_none(),
                "peer_to_peer_specialty": self.peer_specialty_for(&decision).map(|s| s.to_string()),
                "reconsideration_available": true,
                "external_review_available": true,
                "criteria_free_on_request": true,
            });
        }
        self.claimed_by = None;
        self.decisions.push(decision);
        self.push_history(by, action, to, at, note);
        self.event(kind, at, payload)
    }

    fn record(
        &mut self,
        caller: &Caller,
        action: Action,
        to: CaseState,
        now: DateTime<Utc>,
        note: String,
    ) {
        self.push_history(caller.as_history(), action, to, now, note);
    }

    fn push_history(
        &mut self,
        by: HistoryActor,
        action: Action,
        to: CaseState,
        at: DateTime<Utc>,
        note: String,
    ) {
        self.history.push(HistoryEntry {
            at,
            by,
            action,
            from: self.state,
            to,
            note,
        });
        self.state = to;
    }

    /// The decision stage a reviewer's decision belongs to.
    fn stage(&self) -> DecisionStage {
        if self.history.iter().any(|h| h.action == Action::Reconsider) {
            DecisionStage::Reconsideration
        } else {
            DecisionStage::Initial
        }
    }

    /// Every line, approved as requested.
    fn full_lines(&self) -> Vec<LineDecision> {
        self.request
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let days = l.length_of_stay_hours.map(|h| h.div_ceil(24));
                LineDecision {
                    line: i,
                    requested_units: l.units,
                    approved_units: l.units,
                    requested_days: days,
                    approved_days: days,
                }
            })
            .collect()
    }

    fn last_adverse_decision(&self) -> Option<&Decision> {
        self.decisions.iter().rev().find(|d| d.adverse.is_some())
    }

    fn last_adverse_state(&self) -> CaseState {
        match self.last_adverse_decision().map(|d| d.outcome) {
            Some(DecisionOutcome::PartiallyApproved) => CaseState::PartiallyApproved,
            _ => CaseState::Denied,
        }
    }

    fn peer_specialty(&self) -> Option<Specialty> {
        self.last_adverse_decision()
            .and_then(|d| self.peer_specialty_for(d))
    }

    fn peer_specialty_for(&self, decision: &Decision) -> Option<Specialty> {
        self.requesting_specialty
            .clone()
            .or_else(|| match &decision.by {
                DecisionMaker::Staff(s) => s.specialty.clone(),
                DecisionMaker::Automation => None,
            })
    }

    /// An event with the fields every notifier needs, plus `extra`.
    fn event(&self, kind: &'static str, at: DateTime<Utc>, extra: Value) -> EventDraft {
        let services: Vec<Value> = self
            .request
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let line = self.determination.as_ref().and_then(|d| d.lines.get(i));
                json!({
                    "line": i,
                    "code": l.code,
                    "units": l.units,
                    "date_of_service": l.date_of_service,
                    "setting": l.setting,
                    "rule_id": line.and_then(|d| d.rule.as_ref()).map(|r| r.id.clone()),
                    "category": line.and_then(|d| d.rule.as_ref()).map(|r| r.category),
                    "list": line.map(|d| json!({ "id": d.list.id, "version": d.list.version })),
                })
            })
            .collect();
        let mut payload = json!({
            "case_id": self.id,
            "member_id": self.request.member_id,
            "plan_id": self.request.plan.id,
            "requesting_provider": self.request.requesting_provider.npi,
            "servicing_provider": self.request.servicing_provider.npi,
            "urgency": self.request.urgency,
            "state": self.state,
            "received_at": self.received_at,
            "due_at": self.due.at,
            "services": services,
            "diagnoses": self.request.diagnoses,
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut payload, extra) {
            base.extend(extra);
        }
        EventDraft {
            kind,
            aggregate_kind: AGGREGATE_KIND,
            aggregate_id: self.id.clone(),
            member_id: self.request.member_id.clone(),
            occurred_at: at,
            payload,
        }
    }
}

fn staff_json(s: &StaffRef) -> Value {
    json!({ "staff_id": s.staff_id, "role": s.role, "specialty": s.specialty })
}

fn specialty_name(s: Option<&Specialty>) -> String {
    s.map_or_else(|| "none".to_owned(), |s| s.to_string())
}

/// One line per service line for the history: its outcome in a few words.
fn summarize(d: &Determination) -> String {
    let parts: Vec<String> = d
        .lines
        .iter()
        .map(|l| {
            let what = match &l.outcome {
                LineOutcome::Approved { basis } => format!("approved ({})", basis_name(basis)),
                LineOutcome::Pended { reason } => format!("pended ({})", pend_name(reason)),
                LineOutcome::Notified { .. } => "notification received".to_owned(),
            };
            let rule = l.rule.as_ref().map_or("no rule", |r| r.id.as_str());
            format!(
                "line {} {} [{rule}, list {} {}]: {what}",
                l.line, l.code, l.list.id, l.list.version
            )
        })
        .collect();
    parts.join("; ")
}

fn basis_name(b: &ApprovalBasis) -> &'static str {
    use crate::determine::ApprovalBasis::*;
    match b {
        NotRequired { .. } => "not required",
        CriteriaMet { .. } => "criteria met",
        GoldCard { .. } => "gold card",
    }
}

fn pend_name(p: &PendReason) -> &'static str {
    use crate::determine::PendReason::*;
    match p {
        NeedsInformation { .. } => "needs information",
        NeedsClinicalReview { .. } => "clinical review",
        OncologyReview { .. } => "oncology review",
    }
}

/// Whether `case` is late at `now`; see [`PrecertCase::is_late`].
pub fn is_late(case: &PrecertCase, now: DateTime<Utc>) -> bool {
    case.is_late(now)
}
