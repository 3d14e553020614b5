//! Precertification (prior authorization) for carepath: the plan's lists as versioned
//! data, the requirement check, automatic determination, the case workflow, due
//! clocks, gold carding and reporting metrics.
//!
//! Everything here is pure and synchronous: time is always a parameter, nothing reads
//! the wall clock, and the only I/O is [`RuleBook::from_dir`] reading list files. The
//! gRPC service and storage build on these types; errors carry a [`ErrorCode`] so the
//! edge maps them to status codes in one place.
//!
//! - Rules: [`shipped`], [`RuleBook`], [`RuleList`], [`Rule`] (`data/precert/*.toml`).
//! - Check: [`RuleBook::check`] → [`Check`] (borrowed) / [`CheckAnswer`] (owned).
//! - Determination: [`determine`] → [`Determination`]; automation never denies.
//! - Workflow: [`PrecertCase`] commands → [`EventDraft`]s.
//! - Clocks: [`decision_due`], [`information_due`], [`withdraw_after`], [`is_late`].
//! - Forms: [`Form`], what a requester fills in for one rule (questions, documents).
//! - Gold cards: [`goldcard::evaluate`] → [`GoldCards`].
//! - Metrics: [`metrics::metrics`] over [`CaseSummary`].

mod case;
mod check;
mod clock;
mod dates;
mod determine;
mod form;
pub mod goldcard;
mod index;
pub mod limits;
mod load;
pub mod metrics;
mod rules;
mod synthetic;

pub use case::{
    AGGREGATE_KIND, AUTOMATION_SUBJECT, Action, AdverseDetermination, Appeal, AppealDecision,
    AppealPriority, Caller, CaseState, Ctx, Decision, DecisionMaker, DecisionOutcome,
    DecisionStage, ErrorCode, EventDraft, Events, HistoryActor, HistoryEntry, InformationRequest,
    LineApproval, LineDecision, PeerToPeer, PeerToPeerOutcome, PermissionReason, PrecertCase,
    ProgramReview, ReasonCode, StaffRef, WithdrawReason, WorkflowError, event_kinds, is_late,
};
pub use check::{
    Check, CheckAnswer, CheckError, DocumentRequest, Requirement, Responsible, RuleSummary,
    ServiceLine, check_list,
};
pub use clock::{
    APPEAL_FILING_DAYS, Due, DueBasis, EXPEDITED_APPEAL_HOURS, INFORMATION_BUSINESS_DAYS,
    ROUTINE_BUSINESS_DAYS, ROUTINE_CEILING_HOURS, STANDARD_APPEAL_DAYS, URGENT_CEILING_HOURS,
    URGENT_INFORMATION_HOURS, appeal_due, appeal_filing_deadline, decision_due, information_due,
    post_service_due, withdraw_after,
};
pub use clock::{
    AUTHORIZATION_VALID_DAYS, EXTERNAL_REVIEW_DAYS, POST_SERVICE_DAYS, authorization_valid_through,
    external_review_deadline,
};
pub use dates::{Purpose, Retrospective, ServiceDateError, ServiceDates, after_the_fact};
pub use determine::{
    ApprovalBasis, CaseOutcome, Determination, DetermineError, LineDetermination, LineOutcome,
    Missing, MissingQuestion, PendReason, PendedFor, ProviderParty, RecordRef, ReviewReason,
    Submission, case_outcome, determine,
};
pub use form::Form;
pub use goldcard::{DecisionRecord, Exemption, GoldCards};
pub use load::{LoadError, LoadErrors, Problem, RuleBook, shipped};
pub use metrics::CaseSummary;
pub use rules::{
    Admission, Answer, AnswerKind, Category, CodeRange, Comparison, Criterion, Delivery,
    DiagnosisRange, Effect, EnableValue, EnableWhen, ListRef, Literal, Matcher, Op, PlanFilter,
    Program, Question, Rule, RuleList, StayThreshold,
};
pub use synthetic::{Lcg, synthetic_codes, synthetic_list};

pub use limits::{MAX_LINES, MAX_REQUEST_ID, MAX_UNITS};
