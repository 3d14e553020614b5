//! The second-opinion request: its states, who may act on it, the commands that move
//! it from submission to closure, and the events each step records.
//!
//! ```text
//! submitted ─questionnaire complete─> awaiting_records ─required records in─>
//! awaiting_assignment ─lead physician─> in_review ─opinion─> opinion_published
//! ─member reviewed─> opinion_reviewed ─nurse closes after follow-up─> closed
//! ```
//! Records may arrive before the questionnaire is complete; the request then moves on
//! as far as both allow. The turnaround clock starts when the records are complete.

use carepath_core::{
    Actor, Address, BusinessCalendar, ContactChannel, CountryCode, Icd10Code, Invalid, LanguageTag,
    MemberId, Npi, Role, Specialty, StaffId,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    catalogue::{Basis, DiagnosisGroup, RecordKind, RecordRequirement},
    questionnaire::{Answer, Checked},
};

/// The aggregate kind of events and audit entries.
pub const AGGREGATE_KIND: &str = "secondopinion_request";

/// Follow-up questions a member may ask after the opinion.
pub const MAX_FOLLOW_UP_QUESTIONS: usize = 3;

/// Longest free text accepted in an opinion, a message or a note.
pub const MAX_TEXT: usize = 20_000;

/// Largest record accepted, in bytes.
pub const MAX_RECORD_BYTES: u64 = 512 * 1024 * 1024;

/// Content types an uploaded record may have.
pub const CONTENT_TYPES: [&str; 6] = [
    "application/pdf",
    "image/jpeg",
    "image/png",
    "image/tiff",
    "application/dicom",
    "text/plain",
];

/// Longest file name of an uploaded record, in bytes.
pub const MAX_FILE_NAME: usize = 255;

/// Longest description of an uploaded record, in characters.
pub const MAX_DESCRIPTION: usize = 2_000;

/// Most records one request takes, uploaded and logged together: the request
/// document lists them all and is rewritten with each one, so its size stays bounded.
pub const MAX_RECORDS: usize = 50;

/// Event names, written once.
pub mod event_kinds {
    pub const SUBMITTED: &str = "secondopinion.request.submitted";
    pub const QUESTIONNAIRE_COMPLETED: &str = "secondopinion.request.questionnaire_completed";
    pub const RECORDS_MISSING: &str = "secondopinion.request.records_missing";
    pub const RECORDS_RECEIVED: &str = "secondopinion.request.records_received";
    pub const PHYSICIAN_ASSIGNED: &str = "secondopinion.request.physician_assigned";
    pub const CLOSED: &str = "secondopinion.request.closed";
    pub const RECORD_ADDED: &str = "secondopinion.record.received";
    pub const OPINION_PUBLISHED: &str = "secondopinion.opinion.published";
    pub const ADDENDUM_ADDED: &str = "secondopinion.opinion.addendum_added";
    pub const OPINION_REVIEWED: &str = "secondopinion.opinion.reviewed";
    pub const SHARED_WITH_DOCTOR: &str = "secondopinion.opinion.shared_with_doctor";
    pub const FOLLOW_UP_DONE: &str = "secondopinion.followup.done";
    pub const QUESTION_ASKED: &str = "secondopinion.question.asked";
    pub const QUESTION_ANSWERED: &str = "secondopinion.question.answered";
    pub const MESSAGE_POSTED: &str = "secondopinion.message.posted";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the questionnaire.
    Submitted,
    /// Questionnaire complete; waiting for required records.
    AwaitingRecords,
    /// Records complete; no expert free yet.
    AwaitingAssignment,
    /// A lead physician is reviewing.
    InReview,
    OpinionPublished,
    OpinionReviewed,
    Closed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Submitted,
        Status::AwaitingRecords,
        Status::AwaitingAssignment,
        Status::InReview,
        Status::OpinionPublished,
        Status::OpinionReviewed,
        Status::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "submitted",
            Status::AwaitingRecords => "awaiting_records",
            Status::AwaitingAssignment => "awaiting_assignment",
            Status::InReview => "in_review",
            Status::OpinionPublished => "opinion_published",
            Status::OpinionReviewed => "opinion_reviewed",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    fn before_opinion(self) -> bool {
        matches!(
            self,
            Status::Submitted
                | Status::AwaitingRecords
                | Status::AwaitingAssignment
                | Status::InReview
        )
    }

    fn after_opinion(self) -> bool {
        matches!(self, Status::OpinionPublished | Status::OpinionReviewed)
    }
}

/// The opinion the member already has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstOpinion {
    /// Set when the physician is in the directory.
    pub physician_npi: Option<Npi>,
    pub physician_name: String,
    pub practice: Option<String>,
    pub given_on: NaiveDate,
    /// What the first opinion said.
    pub summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordChannel {
    Upload,
    Fax,
    Mail,
}

impl RecordChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordChannel::Upload => "upload",
            RecordChannel::Fax => "fax",
            RecordChannel::Mail => "mail",
        }
    }
}

/// A record received for the request: an uploaded file (kept in the object store
/// under `object_key`) or a fax or mail logged by staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MedicalRecord {
    pub id: String,
    pub kind: RecordKind,
    pub channel: RecordChannel,
    pub description: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub size_bytes: u64,
    /// Lowercase hex SHA-256 of the file, verified on arrival.
    pub sha256: Option<String>,
    pub object_key: Option<String>,
    pub received_at: DateTime<Utc>,
    pub received_by: Actor,
}

/// The lead physician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expert {
    pub npi: Npi,
    pub name: String,
    pub specialty: Specialty,
    pub practice: Option<String>,
    pub assigned_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisVerdict {
    Confirmed,
    Refined,
    Changed,
}

impl DiagnosisVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosisVerdict::Confirmed => "confirmed",
            DiagnosisVerdict::Refined => "refined",
            DiagnosisVerdict::Changed => "changed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreatmentVerdict {
    Confirmed,
    Changed,
}

impl TreatmentVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            TreatmentVerdict::Confirmed => "confirmed",
            TreatmentVerdict::Changed => "changed",
        }
    }
}

/// The physician's answer to one of the member's questions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionResponse {
    pub question: String,
    pub answer: String,
}

/// What a physician writes; checked by [`OpinionDraft::check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpinionDraft {
    pub diagnosis: DiagnosisVerdict,
    /// Required when the diagnosis is refined or changed.
    pub revised_diagnosis: Option<Icd10Code>,
    pub treatment: TreatmentVerdict,
    /// Required when the treatment plan is changed (e.g. a less invasive procedure).
    pub treatment_recommendation: Option<String>,
    pub further_tests: Vec<String>,
    pub answers: Vec<QuestionResponse>,
    pub narrative: String,
}

impl OpinionDraft {
    /// Field paths are relative to the opinion.
    pub fn check(&self, first_diagnosis: &Icd10Code) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        match (self.diagnosis, &self.revised_diagnosis) {
            (DiagnosisVerdict::Confirmed, Some(_)) => invalid.push(
                "revised_diagnosis",
                "must be empty when the diagnosis is confirmed",
            ),
            (DiagnosisVerdict::Refined | DiagnosisVerdict::Changed, None) => invalid.push(
                "revised_diagnosis",
                "is required when the diagnosis is refined or changed",
            ),
            (DiagnosisVerdict::Refined | DiagnosisVerdict::Changed, Some(d))
                if d == first_diagnosis =>
            {
                invalid.push(
                    "revised_diagnosis",
                    "must differ from the diagnosis under review",
                );
            }
            _ => {}
        }
        match (self.treatment, self.treatment_recommendation.as_deref()) {
            (TreatmentVerdict::Changed, None) => invalid.push(
                "treatment_recommendation",
                "is required when the treatment plan is changed",
            ),
            (_, Some(t)) => text(&mut invalid, "treatment_recommendation", t),
            _ => {}
        }
        for (i, t) in self.further_tests.iter().enumerate() {
            text(&mut invalid, &format!("further_tests[{i}]"), t);
        }
        for (i, a) in self.answers.iter().enumerate() {
            text(&mut invalid, &format!("answers[{i}].question"), &a.question);
            text(&mut invalid, &format!("answers[{i}].answer"), &a.answer);
        }
        text(&mut invalid, "narrative", &self.narrative);
        invalid.into_result()
    }
}

/// A published opinion. Never edited; addenda follow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opinion {
    #[serde(flatten)]
    pub draft: OpinionDraft,
    pub physician_npi: Npi,
    pub published_at: DateTime<Utc>,
    /// Whether it was published after its due time.
    pub late: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addendum {
    pub number: u32,
    pub text: String,
    pub physician_npi: Npi,
    pub added_at: DateTime<Utc>,
    /// The follow-up question it answers, if any.
    pub answers_question: Option<u32>,
}

/// The member's own doctor, who gets a copy of the opinion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doctor {
    pub npi: Option<Npi>,
    pub name: String,
    pub email: Option<String>,
    pub fax: Option<String>,
    pub address: Option<Address>,
    pub language: Option<LanguageTag>,
    pub preferred_channel: Option<ContactChannel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorCopy {
    pub doctor: Doctor,
    /// The member's consent, recorded with who gave it and when.
    pub consent_by: Actor,
    pub consent_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpChannel {
    Phone,
    Email,
}

impl FollowUpChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowUpChannel::Phone => "phone",
            FollowUpChannel::Email => "email",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    pub nurse_id: StaffId,
    pub channel: FollowUpChannel,
    pub notes: String,
    pub member_understands: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpQuestion {
    pub number: u32,
    pub text: String,
    pub asked_by: Actor,
    pub asked_at: DateTime<Utc>,
    pub answer: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: String,
    /// The status after the step.
    pub status: Status,
    pub note: String,
}

/// The questionnaire a request answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionnaireRef {
    pub id: String,
    pub version: u32,
}

/// A second-opinion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondOpinionRequest {
    pub id: String,
    pub member_id: MemberId,
    /// The subscriber, when the member is a covered family member.
    pub subscriber_id: Option<MemberId>,
    pub member_date_of_birth: NaiveDate,
    pub member_language: LanguageTag,
    pub member_country: CountryCode,
    pub requested_by: Actor,
    pub diagnosis: Icd10Code,
    pub diagnosis_group: String,
    /// The group's name, as notices show it.
    pub condition: String,
    pub basis: Basis,
    pub major_surgery_recommended: bool,
    pub current_treatment: String,
    pub first_opinion: FirstOpinion,
    pub data_versions: crate::catalogue::Versions,
    pub questionnaire: QuestionnaireRef,
    pub answers: Vec<Answer>,
    pub missing_answers: Vec<String>,
    pub required_records: Vec<RecordRequirement>,
    pub records: Vec<MedicalRecord>,
    pub status: Status,
    pub received_at: DateTime<Utc>,
    pub turnaround_business_days: u32,
    pub records_complete_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
    pub physician: Option<Expert>,
    pub coordinator: Option<StaffId>,
    pub opinion: Option<Opinion>,
    pub addenda: Vec<Addendum>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub doctor_copies: Vec<DoctorCopy>,
    pub follow_ups: Vec<FollowUp>,
    pub questions: Vec<FollowUpQuestion>,
    pub closing_note: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub history: Vec<HistoryEntry>,
}

/// Why a command cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The caller may see the request but not do this.
    #[error("{0}")]
    NotAllowed(String),
    #[error("cannot {action} while the request is {status}")]
    WrongState {
        action: &'static str,
        status: &'static str,
    },
    /// A rule of the service forbids it now.
    #[error("{0}")]
    Rule(String),
}

/// How the caller relates to a request; decides what they may see and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// The member the request is for.
    Member,
    /// The subscriber, acting for a minor family member.
    Subscriber,
    /// The assigned lead physician.
    Physician(Npi),
    /// A nurse coordinator (any nurse, while the request is open).
    Nurse(StaffId),
}

impl Party {
    /// How `actor` relates to `request` at `now`, or `None`: nobody else may see it.
    pub fn of(actor: &Actor, request: &SecondOpinionRequest, now: DateTime<Utc>) -> Option<Party> {
        match actor.role {
            Role::Member => {
                let id = actor.member_id()?;
                if id == request.member_id {
                    return Some(Party::Member);
                }
                let minor = request.is_minor_on(now.date_naive());
                (request.subscriber_id.as_ref() == Some(&id) && minor).then_some(Party::Subscriber)
            }
            Role::Provider => {
                let npi = actor.provider_npi()?;
                request
                    .physician
                    .as_ref()
                    .is_some_and(|p| p.npi == npi)
                    .then_some(Party::Physician(npi))
            }
            Role::Nurse => {
                let id = actor.staff_id()?;
                (request.status != Status::Closed).then_some(Party::Nurse(id))
            }
            Role::PhysicianReviewer | Role::Admin | Role::Service => None,
        }
    }

    fn is_member_side(&self) -> bool {
        matches!(self, Party::Member | Party::Subscriber)
    }
}

/// Whether `actor` may ask for a second opinion for a member with these details:
/// members for themselves, subscribers for their minor family members.
pub fn may_request_for(
    actor: &Actor,
    member_id: &MemberId,
    subscriber_id: Option<&MemberId>,
    date_of_birth: NaiveDate,
    today: NaiveDate,
) -> bool {
    let Some(caller) = actor.member_id() else {
        return false;
    };
    if &caller == member_id {
        return true;
    }
    subscriber_id == Some(&caller) && today.years_since(date_of_birth).unwrap_or(0) < 18
}

pub use carepath_core::EventDraft;

/// What a new request is made from, already parsed.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub id: String,
    pub member: carepath_core::Member,
    pub requested_by: Actor,
    pub diagnosis: Icd10Code,
    pub major_surgery_recommended: bool,
    pub current_treatment: String,
    pub first_opinion: FirstOpinion,
}

/// The record an upload or a log entry adds.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub id: String,
    pub kind: RecordKind,
    pub channel: RecordChannel,
    pub description: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub size_bytes: u64,
    pub sha256: Option<String>,
    pub object_key: Option<String>,
}

fn text(invalid: &mut Invalid, field: &str, value: &str) {
    if value.trim().is_empty() {
        invalid.push(field, "must not be empty");
    } else if value.chars().count() > MAX_TEXT {
        invalid.push(field, format!("must be at most {MAX_TEXT} characters"));
    }
}

/// Checks a free-text field a command takes.
pub fn check_text(field: &str, value: &str) -> Result<(), Invalid> {
    let mut invalid = Invalid::new();
    text(&mut invalid, field, value);
    invalid.into_result()
}

impl SecondOpinionRequest {
    /// Opens a request for an eligible member (see
    /// [`crate::eligibility::check_eligibility`]).
    pub fn open(
        new: NewRequest,
        group: &DiagnosisGroup,
        catalogue: &crate::Catalogue,
        now: DateTime<Utc>,
    ) -> (SecondOpinionRequest, Vec<EventDraft>) {
        let questionnaire = catalogue
            .questionnaire_for(&group.id)
            .expect("every group has a questionnaire (checked at load)");
        let missing_answers = questionnaire
            .check(&[])
            .map(|c| c.missing)
            .unwrap_or_default();
        let member = &new.member;
        let request = SecondOpinionRequest {
            id: new.id,
            member_id: member.id.clone(),
            subscriber_id: member.subscriber_id.clone(),
            member_date_of_birth: member.date_of_birth,
            member_language: member.language.clone(),
            member_country: member.address.country.clone(),
            requested_by: new.requested_by.clone(),
            diagnosis: new.diagnosis,
            diagnosis_group: group.id.clone(),
            condition: group.name.clone(),
            basis: group.basis,
            major_surgery_recommended: new.major_surgery_recommended,
            current_treatment: new.current_treatment,
            first_opinion: new.first_opinion,
            data_versions: catalogue.versions.clone(),
            questionnaire: QuestionnaireRef {
                id: questionnaire.id.clone(),
                version: questionnaire.version,
            },
            answers: Vec::new(),
            missing_answers,
            required_records: catalogue.requirements_for(&group.id),
            records: Vec::new(),
            status: Status::Submitted,
            received_at: now,
            turnaround_business_days: group.turnaround_business_days,
            records_complete_at: None,
            due_at: None,
            physician: None,
            coordinator: None,
            opinion: None,
            addenda: Vec::new(),
            reviewed_at: None,
            doctor_copies: Vec::new(),
            follow_ups: Vec::new(),
            questions: Vec::new(),
            closing_note: None,
            closed_at: None,
            history: vec![HistoryEntry {
                at: now,
                actor: new.requested_by,
                action: "submitted".into(),
                status: Status::Submitted,
                note: format!("{} ({})", group.name, group.basis.as_str()),
            }],
        };
        let payload = json!({
            "request_id": request.id,
            "condition": request.condition,
            "member_id": request.member_id,
            "diagnosis": request.diagnosis,
            "diagnosis_group": request.diagnosis_group,
            "major_surgery": request.major_surgery_recommended,
            "country": request.member_country,
        });
        let events = vec![EventDraft {
            kind: event_kinds::SUBMITTED,
            aggregate_kind: AGGREGATE_KIND,
            aggregate_id: request.id.clone(),
            member_id: request.member_id.clone(),
            occurred_at: now,
            payload,
        }];
        (request, events)
    }

    pub fn is_minor_on(&self, today: NaiveDate) -> bool {
        today.years_since(self.member_date_of_birth).unwrap_or(0) < 18
    }

    /// Whether the opinion is overdue: records complete, due time passed, no opinion.
    pub fn is_late(&self, now: DateTime<Utc>) -> bool {
        self.opinion.is_none() && self.due_at.is_some_and(|due| now > due)
    }

    /// Required records not yet met by a received record.
    pub fn missing_records(&self) -> Vec<&RecordRequirement> {
        self.required_records
            .iter()
            .filter(|req| !self.records.iter().any(|r| req.kinds.contains(&r.kind)))
            .collect()
    }

    /// A version number for watchers: grows with every step.
    pub fn version(&self) -> u64 {
        self.history.len() as u64
    }

    fn base(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("request_id".into(), json!(self.id));
        m.insert("condition".into(), json!(self.condition));
        m
    }

    fn event(&self, kind: &'static str, at: DateTime<Utc>, extra: Value) -> EventDraft {
        let mut payload = self.base();
        if let Value::Object(extra) = extra {
            payload.extend(extra);
        }
        EventDraft {
            kind,
            aggregate_kind: AGGREGATE_KIND,
            aggregate_id: self.id.clone(),
            member_id: self.member_id.clone(),
            occurred_at: at,
            payload: Value::Object(payload),
        }
    }

    fn log(&mut self, at: DateTime<Utc>, actor: &Actor, action: &str, note: impl Into<String>) {
        self.history.push(HistoryEntry {
            at,
            actor: actor.clone(),
            action: action.into(),
            status: self.status,
            note: note.into(),
        });
    }

    fn expect_member_side(party: &Party, what: &str) -> Result<(), WorkflowError> {
        if party.is_member_side() {
            Ok(())
        } else {
            Err(WorkflowError::NotAllowed(format!(
                "only the member may {what}"
            )))
        }
    }

    fn expect_nurse(party: &Party, what: &str) -> Result<StaffId, WorkflowError> {
        match party {
            Party::Nurse(id) => Ok(id.clone()),
            _ => Err(WorkflowError::NotAllowed(format!(
                "only a nurse coordinator may {what}"
            ))),
        }
    }

    fn expect_physician(&self, party: &Party, what: &str) -> Result<Npi, WorkflowError> {
        match party {
            Party::Physician(npi) if self.physician.as_ref().is_some_and(|p| &p.npi == npi) => {
                Ok(npi.clone())
            }
            _ => Err(WorkflowError::NotAllowed(format!(
                "only the assigned lead physician may {what}"
            ))),
        }
    }

    fn wrong_state(&self, action: &'static str) -> WorkflowError {
        WorkflowError::WrongState {
            action,
            status: self.status.as_str(),
        }
    }

    /// Moves the request on as far as answers and records allow: to awaiting records
    /// once the questionnaire is complete, then to awaiting assignment once the
    /// records are, starting the turnaround clock.
    fn progress(
        &mut self,
        calendar: &BusinessCalendar,
        actor: &Actor,
        now: DateTime<Utc>,
        events: &mut Vec<EventDraft>,
    ) {
        if self.status == Status::Submitted && self.missing_answers.is_empty() {
            self.status = Status::AwaitingRecords;
            self.log(now, actor, "questionnaire_completed", "");
            events.push(self.event(event_kinds::QUESTIONNAIRE_COMPLETED, now, json!({})));
            let missing: Vec<String> = self
                .missing_records()
                .iter()
                .map(|r| r.label.clone())
                .collect();
            if !missing.is_empty() {
                events.push(self.event(
                    event_kinds::RECORDS_MISSING,
                    now,
                    json!({ "missing_records": missing }),
                ));
            }
        }
        if self.status == Status::AwaitingRecords && self.missing_records().is_empty() {
            let due = calendar.business_deadline(now, self.turnaround_business_days);
            self.status = Status::AwaitingAssignment;
            self.records_complete_at = Some(now);
            self.due_at = Some(due);
            self.log(
                now,
                actor,
                "records_complete",
                format!("opinion due {}", due.to_rfc3339()),
            );
            events.push(self.event(
                event_kinds::RECORDS_RECEIVED,
                now,
                json!({ "due_at": due, "records": self.records.len() }),
            ));
        }
    }

    /// Saves the member's answers (replacing earlier ones). Answers must be
    /// well-formed; required questions may still be open, and the request does not go
    /// further until they are answered.
    pub fn answer_questionnaire(
        &mut self,
        party: &Party,
        actor: &Actor,
        checked: Checked,
        calendar: &BusinessCalendar,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        Self::expect_member_side(party, "answer the questionnaire")?;
        if self.status != Status::Submitted {
            return Err(self.wrong_state("change the questionnaire"));
        }
        self.answers = checked.answers;
        self.missing_answers = checked.missing;
        let note = if self.missing_answers.is_empty() {
            String::from("complete")
        } else {
            format!("still required: {}", self.missing_answers.join(", "))
        };
        self.log(now, actor, "answers_saved", note);
        let mut events = Vec::new();
        self.progress(calendar, actor, now, &mut events);
        Ok(events)
    }

    /// Whether records may be added now (before the opinion).
    pub fn accepts_records(&self) -> bool {
        self.status.before_opinion()
    }

    /// Checks that `party` may add a record through `channel` now, so an upload can
    /// be refused before any bytes are kept.
    pub fn may_add_record(
        &self,
        party: &Party,
        channel: RecordChannel,
    ) -> Result<(), WorkflowError> {
        match channel {
            RecordChannel::Upload
                if !(party.is_member_side() || matches!(party, Party::Nurse(_))) =>
            {
                return Err(WorkflowError::NotAllowed(
                    "only the member or a nurse coordinator may upload records".into(),
                ));
            }
            RecordChannel::Fax | RecordChannel::Mail if !matches!(party, Party::Nurse(_)) => {
                return Err(WorkflowError::NotAllowed(
                    "only a nurse coordinator may log records received by fax or mail".into(),
                ));
            }
            _ => {}
        }
        if !self.accepts_records() {
            return Err(self.wrong_state("add records"));
        }
        if self.records.len() >= MAX_RECORDS {
            return Err(WorkflowError::Rule(format!(
                "a request takes at most {MAX_RECORDS} records; this one has them all"
            )));
        }
        Ok(())
    }

    /// Adds a received record and moves the request on if it completes the records.
    pub fn add_record(
        &mut self,
        party: &Party,
        actor: &Actor,
        record: NewRecord,
        calendar: &BusinessCalendar,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        self.may_add_record(party, record.channel)?;
        if let Party::Nurse(id) = party
            && self.coordinator.is_none()
        {
            self.coordinator = Some(id.clone());
        }
        let record = MedicalRecord {
            id: record.id,
            kind: record.kind,
            channel: record.channel,
            description: record.description,
            file_name: record.file_name,
            content_type: record.content_type,
            size_bytes: record.size_bytes,
            sha256: record.sha256,
            object_key: record.object_key,
            received_at: now,
            received_by: actor.clone(),
        };
        let mut events = vec![self.event(
            event_kinds::RECORD_ADDED,
            now,
            json!({
                "record_id": record.id,
                "kind": record.kind.as_str(),
                "channel": record.channel.as_str(),
                "size_bytes": record.size_bytes,
            }),
        )];
        let note = format!("{} by {}", record.kind.as_str(), record.channel.as_str());
        self.records.push(record);
        self.log(now, actor, "record_received", note);
        self.progress(calendar, actor, now, &mut events);
        Ok(events)
    }

    /// Assigns the lead physician chosen by [`crate::choose_expert`].
    pub fn assign(
        &mut self,
        actor: &Actor,
        expert: Expert,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        if self.status != Status::AwaitingAssignment {
            return Err(self.wrong_state("assign a physician"));
        }
        let note = format!("{} ({})", expert.name, expert.npi);
        let payload = json!({
            "physician_npi": expert.npi,
            "physician_name": expert.name,
            "physician_specialty": expert.specialty,
        });
        self.physician = Some(expert);
        self.status = Status::InReview;
        self.log(now, actor, "physician_assigned", note);
        Ok(vec![self.event(
            event_kinds::PHYSICIAN_ASSIGNED,
            now,
            payload,
        )])
    }

    /// A nurse takes on coordination of the request.
    pub fn coordinate(
        &mut self,
        party: &Party,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        let id = Self::expect_nurse(party, "coordinate a request")?;
        self.coordinator = Some(id.clone());
        self.log(now, actor, "coordinator_assigned", id.to_string());
        Ok(Vec::new())
    }

    /// Publishes the opinion; only the lead physician, only once.
    pub fn publish(
        &mut self,
        party: &Party,
        actor: &Actor,
        draft: OpinionDraft,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        let npi = self.expect_physician(party, "publish the opinion")?;
        if self.opinion.is_some() {
            return Err(WorkflowError::Rule(
                "the opinion is already published; it is not edited, add an addendum instead"
                    .into(),
            ));
        }
        if self.status != Status::InReview {
            return Err(self.wrong_state("publish the opinion"));
        }
        draft
            .check(&self.diagnosis)
            .map_err(|e| e.nest("opinion"))?;
        let late = self.due_at.is_some_and(|due| now > due);
        let note = format!(
            "diagnosis {}, treatment {}",
            draft.diagnosis.as_str(),
            draft.treatment.as_str()
        );
        self.opinion = Some(Opinion {
            draft,
            physician_npi: npi,
            published_at: now,
            late,
        });
        self.status = Status::OpinionPublished;
        self.log(now, actor, "opinion_published", note);
        let physician = self.physician.clone().expect("assigned");
        let extra = json!({
            "physician_name": physician.name,
            "physician_specialty": physician.specialty,
            "nurse_id": self.coordinator,
            "late": late,
        });
        Ok(vec![self.event(event_kinds::OPINION_PUBLISHED, now, extra)])
    }

    /// Adds an addendum to the published opinion.
    pub fn add_addendum(
        &mut self,
        party: &Party,
        actor: &Actor,
        addendum: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        let npi = self.expect_physician(party, "add an addendum")?;
        if !self.status.after_opinion() {
            return Err(self.wrong_state("add an addendum"));
        }
        check_text("text", &addendum)?;
        let number = self.addenda.len() as u32 + 1;
        self.addenda.push(Addendum {
            number,
            text: addendum,
            physician_npi: npi,
            added_at: now,
            answers_question: None,
        });
        self.log(now, actor, "addendum_added", format!("addendum {number}"));
        Ok(vec![self.event(
            event_kinds::ADDENDUM_ADDED,
            now,
            json!({ "addendum": number }),
        )])
    }

    /// The member has read the opinion.
    pub fn mark_reviewed(
        &mut self,
        party: &Party,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        Self::expect_member_side(party, "mark the opinion reviewed")?;
        if self.status != Status::OpinionPublished {
            return Err(self.wrong_state("mark the opinion reviewed"));
        }
        self.reviewed_at = Some(now);
        self.status = Status::OpinionReviewed;
        self.log(now, actor, "opinion_reviewed", "");
        Ok(vec![self.event(
            event_kinds::OPINION_REVIEWED,
            now,
            json!({}),
        )])
    }

    /// Sends a copy of the opinion to the member's own doctor, with consent.
    pub fn share_with_doctor(
        &mut self,
        party: &Party,
        actor: &Actor,
        doctor: Doctor,
        consent: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        Self::expect_member_side(party, "send the opinion to a doctor")?;
        if !consent {
            return Err(WorkflowError::Invalid(Invalid::field(
                "consent",
                "the member's consent is needed to send the opinion to a doctor",
            )));
        }
        if !self.status.after_opinion() {
            return Err(self.wrong_state("send the opinion to a doctor"));
        }
        if doctor.email.is_none() && doctor.fax.is_none() && doctor.address.is_none() {
            return Err(WorkflowError::Invalid(Invalid::field(
                "doctor",
                "needs an email, a fax number or a postal address to send the copy to",
            )));
        }
        let physician = self.physician.clone().expect("assigned before an opinion");
        let opinion_text = self.opinion_text();
        let payload = json!({
            "physician_name": physician.name,
            "physician_specialty": physician.specialty,
            "opinion_text": opinion_text,
            "doctor": doctor_json(&doctor),
        });
        self.log(now, actor, "shared_with_doctor", doctor.name.clone());
        self.doctor_copies.push(DoctorCopy {
            doctor,
            consent_by: actor.clone(),
            consent_at: now,
        });
        Ok(vec![self.event(
            event_kinds::SHARED_WITH_DOCTOR,
            now,
            payload,
        )])
    }

    /// A nurse coordinator records the follow-up call or email.
    pub fn record_follow_up(
        &mut self,
        party: &Party,
        actor: &Actor,
        channel: FollowUpChannel,
        notes: String,
        member_understands: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        let nurse = Self::expect_nurse(party, "record a follow-up")?;
        if !self.status.after_opinion() {
            return Err(self.wrong_state("record a follow-up"));
        }
        check_text("notes", &notes)?;
        if self.coordinator.is_none() {
            self.coordinator = Some(nurse.clone());
        }
        self.follow_ups.push(FollowUp {
            nurse_id: nurse.clone(),
            channel,
            notes,
            member_understands,
            at: now,
        });
        self.log(now, actor, "follow_up_done", channel.as_str());
        Ok(vec![self.event(
            event_kinds::FOLLOW_UP_DONE,
            now,
            json!({
                "nurse_id": nurse,
                "channel": channel.as_str(),
                "member_understands": member_understands,
            }),
        )])
    }

    /// The member asks a follow-up question about the opinion (at most three).
    pub fn ask_question(
        &mut self,
        party: &Party,
        actor: &Actor,
        question: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        Self::expect_member_side(party, "ask a follow-up question")?;
        if !self.status.after_opinion() {
            return Err(self.wrong_state("ask a follow-up question"));
        }
        check_text("question", &question)?;
        if self.questions.len() >= MAX_FOLLOW_UP_QUESTIONS {
            return Err(WorkflowError::Rule(format!(
                "at most {MAX_FOLLOW_UP_QUESTIONS} follow-up questions may be asked"
            )));
        }
        let number = self.questions.len() as u32 + 1;
        self.questions.push(FollowUpQuestion {
            number,
            text: question,
            asked_by: actor.clone(),
            asked_at: now,
            answer: None,
            answered_at: None,
        });
        self.log(now, actor, "question_asked", format!("question {number}"));
        Ok(vec![self.event(
            event_kinds::QUESTION_ASKED,
            now,
            json!({ "question": number }),
        )])
    }

    /// The lead physician answers a follow-up question; the answer is also kept as an
    /// addendum to the opinion.
    pub fn answer_question(
        &mut self,
        party: &Party,
        actor: &Actor,
        number: u32,
        answer: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        let npi = self.expect_physician(party, "answer a follow-up question")?;
        if !self.status.after_opinion() {
            return Err(self.wrong_state("answer a follow-up question"));
        }
        check_text("answer", &answer)?;
        let Some(q) = self.questions.iter_mut().find(|q| q.number == number) else {
            return Err(WorkflowError::Invalid(Invalid::field(
                "question_number",
                format!("no follow-up question {number}"),
            )));
        };
        if q.answer.is_some() {
            return Err(WorkflowError::Rule(format!(
                "follow-up question {number} is already answered"
            )));
        }
        q.answer = Some(answer.clone());
        q.answered_at = Some(now);
        let addendum = self.addenda.len() as u32 + 1;
        self.addenda.push(Addendum {
            number: addendum,
            text: answer,
            physician_npi: npi,
            added_at: now,
            answers_question: Some(number),
        });
        self.log(
            now,
            actor,
            "question_answered",
            format!("question {number}"),
        );
        Ok(vec![self.event(
            event_kinds::QUESTION_ANSWERED,
            now,
            json!({ "question": number, "addendum": addendum }),
        )])
    }

    /// A nurse coordinator closes the request once the follow-up is done and every
    /// follow-up question is answered.
    pub fn close(
        &mut self,
        party: &Party,
        actor: &Actor,
        note: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, WorkflowError> {
        Self::expect_nurse(party, "close a request")?;
        if !self.status.after_opinion() {
            return Err(self.wrong_state("close"));
        }
        check_text("closing_note", &note)?;
        if self.follow_ups.is_empty() {
            return Err(WorkflowError::Rule(
                "the nurse follow-up must be recorded before the request closes".into(),
            ));
        }
        if let Some(q) = self.questions.iter().find(|q| q.answer.is_none()) {
            return Err(WorkflowError::Rule(format!(
                "follow-up question {} is not answered yet",
                q.number
            )));
        }
        self.status = Status::Closed;
        self.closed_at = Some(now);
        self.closing_note = Some(note.clone());
        self.log(now, actor, "closed", note.clone());
        Ok(vec![self.event(
            event_kinds::CLOSED,
            now,
            json!({ "closing_note": note }),
        )])
    }

    /// The opinion as plain text, with its addenda: what a doctor's copy says.
    pub fn opinion_text(&self) -> String {
        let Some(o) = &self.opinion else {
            return String::new();
        };
        let d = &o.draft;
        let mut out = format!(
            "Second opinion on {} ({})\n\nDiagnosis: {}",
            self.condition,
            self.diagnosis,
            d.diagnosis.as_str()
        );
        if let Some(rev) = &d.revised_diagnosis {
            out.push_str(&format!(" — {rev}"));
        }
        out.push_str(&format!("\nTreatment plan: {}", d.treatment.as_str()));
        if let Some(rec) = &d.treatment_recommendation {
            out.push_str(&format!(" — {rec}"));
        }
        if !d.further_tests.is_empty() {
            out.push_str(&format!("\nFurther tests: {}", d.further_tests.join("; ")));
        }
        for a in &d.answers {
            out.push_str(&format!("\n\nQ: {}\nA: {}", a.question, a.answer));
        }
        out.push_str(&format!("\n\n{}", d.narrative));
        for a in &self.addenda {
            out.push_str(&format!("\n\nAddendum {}: {}", a.number, a.text));
        }
        out
    }
}

fn doctor_json(d: &Doctor) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(npi) = &d.npi {
        m.insert("npi".into(), json!(npi));
    }
    m.insert("name".into(), json!(d.name));
    if let Some(e) = &d.email {
        m.insert("email".into(), json!(e));
    }
    if let Some(f) = &d.fax {
        m.insert("fax".into(), json!(f));
    }
    if let Some(a) = &d.address {
        let mut address = serde_json::Map::new();
        address.insert("lines".into(), json!(a.lines));
        address.insert("city".into(), json!(a.city));
        if let Some(r) = &a.region {
            address.insert("region".into(), json!(r));
        }
        if let Some(p) = &a.postal_code {
            address.insert("postal_code".into(), json!(p));
        }
        address.insert("country".into(), json!(a.country));
        m.insert("address".into(), Value::Object(address));
    }
    if let Some(l) = &d.language {
        m.insert("language".into(), json!(l));
    }
    if let Some(c) = d.preferred_channel {
        m.insert("preferred_channel".into(), json!(c.as_str()));
    }
    Value::Object(m)
}
