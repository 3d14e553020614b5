//! The remote expert second opinion for carepath: who is eligible, the
//! condition-specific questionnaire, which records a condition needs, which expert
//! leads the review, and the request's workflow from submission to closure.
//!
//! Everything here is pure and synchronous: time is a parameter and the reference data
//! (`data/secondopinion/`) is handed in as text. The gRPC service, the record store and
//! the database build on these types.
//!
//! - Data: [`shipped`], [`Catalogue`] (groups, questionnaires, required records).
//! - Eligibility: [`check_eligibility`] → the qualifying [`DiagnosisGroup`] or an
//!   [`Ineligible`] reason.
//! - Questionnaires: [`Questionnaire::check`] validates answers.
//! - Matching: [`choose_expert`].
//! - Workflow: [`SecondOpinionRequest`] commands → [`EventDraft`]s; [`Party`] says who
//!   may see and do what.

mod catalogue;
mod eligibility;
mod matching;
mod questionnaire;
mod request;

pub use catalogue::{
    Basis, Catalogue, DiagnosisGroup, DiagnosisRange, FILES, LoadError, LoadErrors, RecordKind,
    RecordRequirement, Versions, shipped,
};
pub use eligibility::{EligibilityInput, Ineligible, check_eligibility};
pub use matching::{Conflicts, MatchInput, NoExpert, choose_expert};
pub use questionnaire::{
    Answer, AnswerValue, Checked, Condition, MAX_TEXT_ANSWER, Question, QuestionType, Questionnaire,
};
pub use request::{
    AGGREGATE_KIND, Addendum, CONTENT_TYPES, DiagnosisVerdict, Doctor, DoctorCopy, EventDraft,
    Expert, FirstOpinion, FollowUp, FollowUpChannel, FollowUpQuestion, HistoryEntry,
    MAX_DESCRIPTION, MAX_FILE_NAME, MAX_FOLLOW_UP_QUESTIONS, MAX_RECORD_BYTES, MAX_RECORDS,
    MAX_TEXT, MedicalRecord, NewRecord, NewRequest, Opinion, OpinionDraft, Party, QuestionResponse,
    QuestionnaireRef, RecordChannel, SecondOpinionRequest, Status, TreatmentVerdict, WorkflowError,
    check_text, event_kinds, may_request_for,
};
