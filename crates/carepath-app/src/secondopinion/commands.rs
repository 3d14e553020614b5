//! What the second-opinion use cases take and answer: commands of domain types,
//! already checked, and the views they return.

use carepath_core::{Icd10Code, MemberId, Npi, Provider};
use carepath_secondopinion::{
    DiagnosisGroup, Doctor, FirstOpinion, FollowUpChannel, Ineligible, Questionnaire,
    RecordChannel, RecordKind, SecondOpinionRequest, Status,
};

use crate::context::PageRequest;

/// Whether a member qualifies: [`super::SecondOpinion::check_eligibility`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckEligibility {
    /// The member the second opinion would be for.
    pub member_id: MemberId,
    /// The diagnosis the first opinion was about.
    pub diagnosis: Icd10Code,
    /// Whether the first opinion recommended major surgery.
    pub major_surgery_recommended: bool,
    /// An emergency is never eligible: the member is told to seek care at once.
    pub emergency: bool,
    /// `None` when no first opinion was given (eligibility refuses with its reason).
    pub first_opinion: Option<FirstOpinion>,
}

/// The answer of an eligibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligibility {
    /// The diagnosis group the diagnosis falls in, if any (the one it qualifies under
    /// when eligible).
    pub group: Option<DiagnosisGroup>,
    /// Why the member is not eligible; `None` when they are.
    pub ineligible: Option<Ineligible>,
}

impl Eligibility {
    /// Whether the member may submit a request.
    pub fn eligible(&self) -> bool {
        self.ineligible.is_none()
    }
}

/// A new request: [`super::SecondOpinion::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// The member the request is for (the caller, or their minor family member).
    pub member_id: MemberId,
    /// The diagnosis the first opinion was about.
    pub diagnosis: Icd10Code,
    /// Whether the first opinion recommended major surgery.
    pub major_surgery_recommended: bool,
    /// An emergency is never eligible.
    pub emergency: bool,
    /// The member's current treatment, as they describe it (checked text).
    pub current_treatment: String,
    /// The first opinion; `None` is refused as ineligible.
    pub first_opinion: Option<FirstOpinion>,
}

/// A request as a caller is shown it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    /// The request.
    pub request: SecondOpinionRequest,
    /// Whether the opinion is late at the time of the answer.
    pub late: bool,
    /// The lead physician's directory entry, where the answer shows their profile.
    pub physician: Option<Provider>,
}

/// A submitted request and the questionnaire the member answers next.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The request as stored.
    pub request: RequestView,
    /// The questionnaire of its diagnosis group, if one is loaded.
    pub questionnaire: Option<Questionnaire>,
}

/// A record added to a request (uploaded or logged) and the request after it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordAdded {
    /// The record added, as the request holds it.
    pub record: Option<carepath_secondopinion::MedicalRecord>,
    /// The request after the record was added.
    pub request: RequestView,
}

/// A record received by fax or mail, logged by a nurse coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The request the record is for.
    pub request_id: String,
    /// What kind of record it is.
    pub kind: RecordKind,
    /// Fax or mail.
    pub channel: RecordChannel,
    /// What was received (checked text).
    pub description: String,
}

/// The doctor a member sends the opinion to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoctorRef {
    /// A provider of the directory, by NPI.
    Directory(Npi),
    /// A doctor given by hand, already checked.
    Given(Box<Doctor>),
}

/// The member's consent to send the opinion to a doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareWithDoctor {
    /// The request whose opinion is sent.
    pub request_id: String,
    /// Who receives the copy.
    pub doctor: DoctorRef,
    /// The member's consent; without it nothing is sent.
    pub consent: bool,
}

/// A nurse's follow-up with the member after the opinion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFollowUp {
    /// The request followed up.
    pub request_id: String,
    /// How the nurse reached the member.
    pub channel: FollowUpChannel,
    /// What was said.
    pub notes: String,
    /// Whether the member understands the opinion.
    pub member_understands: bool,
}

/// Which requests to list: [`super::SecondOpinion::list_requests`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequests {
    /// Only requests in this status; `None` for any.
    pub status: Option<Status>,
    /// Only requests whose opinion is overdue now.
    pub late_only: bool,
    /// Which page.
    pub page: PageRequest,
}
