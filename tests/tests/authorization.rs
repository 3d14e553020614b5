//! Who may call what, over every RPC of every carepath service, on both backends.
//!
//! The table below gives, for each method of the compiled contracts, the answer each
//! kind of caller must get: the provider of the record, another provider, the member
//! of the record, another member, a nurse, a physician reviewer and an admin. A call
//! without a token must always be UNAUTHENTICATED. Every call is a real request aimed
//! at a real record made beforehand through the RPCs, the way its owners make it, so
//! "allowed" is never confused with "not found".
//!
//! Answers are read as:
//! - UNAUTHENTICATED: unauthenticated;
//! - PERMISSION_DENIED: denied (the caller may know the record exists, or the call is
//!   not for its role);
//! - NOT_FOUND: hidden (a record the caller may not see does not exist for them), and
//!   so is a list that answers without the record;
//! - anything else: allowed, including INVALID_ARGUMENT or FAILED_PRECONDITION from
//!   checks made after the caller was let in.
//!
//! Every call aimed at the member a caller is refused is made again for a member who
//! does not exist, and must be answered the same way (the same code and message, the
//! id aside): a refusal says nothing of whether the member exists.
//!
//! A method of the contracts without a row fails the test, and so does a row naming no
//! method; every difference between the table and the server is listed at once.

use std::{collections::BTreeSet, fmt, time::Duration};

use carepath_app::secondopinion::records::sha256_hex;
use carepath_core::Role;
use carepath_oncology::{
    Catalogue, ClinicalContext, Intent, LineOfTherapy, PatientFactors, SiteOfService, StageGroup,
    TreatmentPlan, adopt_alternative,
};
use carepath_proto::{
    audit::v1::{self as apb, audit_service_client::AuditServiceClient},
    cases::v1::{self as cpb, case_service_client::CaseServiceClient},
    common::v1::{PageRequest, Setting, Urgency},
    directory::v1::{self as dpb, directory_service_client::DirectoryServiceClient},
    notify::v1::{self as npb, notification_service_client::NotificationServiceClient},
    oncology::v1::{self as opb, oncology_service_client::OncologyServiceClient},
    precert::v1::{self as ppb, precert_service_client::PrecertServiceClient},
    secondopinion::v1::{self as spb, second_opinion_service_client::SecondOpinionServiceClient},
};
use carepath_server::{convert::timestamp, oncology::plan_to_proto};
use carepath_store::AuditQuery;
use carepath_tests::{ServerOptions, TestDb, TestServer, contract_tests};
use prost::Message as _;
use tonic::{Code, Request, Response, Status, transport::Channel};

contract_tests!(
    every_rpc_answers_each_kind_of_caller_as_the_table_says,
    a_reused_request_id_or_a_linked_id_reveals_nothing,
);

/// The member whose records the callers reach for (subscriber of a family of three).
const MEMBER: &str = "M100001";
/// A member id no member has.
const GHOST_MEMBER: &str = "M999999";
/// A member of another household.
const OTHER_MEMBER: &str = "M100020";
/// Requests and services the member's precertification cases.
const IMAGING: &str = "1184649790";
/// The member's oncologist: treats her, submits her oncology plans, may see her case.
const ONCOLOGIST: &str = "1381083801";
/// A family physician with no part in any of the member's records.
const OTHER_PROVIDER: &str = "1500125129";
const NURSE: &str = "RN-001";
const ANOTHER_NURSE: &str = "RN-004";
/// Radiologists, as the member's imaging requests need.
const REVIEWER: &str = "MD-RAD-01";
const SECOND_REVIEWER: &str = "MD-RAD-02";
const ADMIN: &str = "AD-001";

/// What a caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Unauthenticated,
    Denied,
    Hidden,
    Allowed,
}

use Answer::{Allowed as A, Denied as D, Hidden as H};

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Answer::Unauthenticated => "unauthenticated",
            Answer::Denied => "denied",
            Answer::Hidden => "hidden",
            Answer::Allowed => "allowed",
        })
    }
}

/// Who calls, relative to the record the call is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    OwnProvider,
    OtherProvider,
    OwnMember,
    OtherMember,
    Nurse,
    Reviewer,
    Admin,
    NoToken,
}

/// The table's columns, in order.
const COLUMNS: [Caller; 7] = [
    Caller::OwnProvider,
    Caller::OtherProvider,
    Caller::OwnMember,
    Caller::OtherMember,
    Caller::Nurse,
    Caller::Reviewer,
    Caller::Admin,
];

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Caller::OwnProvider => "provider of the record",
            Caller::OtherProvider => "another provider",
            Caller::OwnMember => "member of the record",
            Caller::OtherMember => "another member",
            Caller::Nurse => "nurse",
            Caller::Reviewer => "physician reviewer",
            Caller::Admin => "admin",
            Caller::NoToken => "no token",
        })
    }
}

/// Which record a row's calls are aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// The records made once at the start; the row's calls leave them usable.
    Base,
    /// A record made for the row; refused callers go first, the one(s) allowed last.
    Own,
    /// A record made for the refused callers, and a fresh one for each caller allowed,
    /// so one allowed change does not stand in the way of the next.
    OwnEach,
}

use Setup::{Base, Own, OwnEach};

struct Row {
    method: &'static str,
    setup: Setup,
    /// Provider of the record, another provider, member of the record, another
    /// member, nurse, physician reviewer, admin.
    expect: [Answer; 7],
}

const fn row(method: &'static str, setup: Setup, expect: [Answer; 7]) -> Row {
    Row {
        method,
        setup,
        expect,
    }
}

const ALL: [Answer; 7] = [A, A, A, A, A, A, A];
const ADMIN_ONLY: [Answer; 7] = [D, D, D, D, D, D, A];
const STAFF: [Answer; 7] = [D, D, D, D, A, A, A];
/// Care-plan work: the case's nurse and supervisors.
const CASE_WORK: [Answer; 7] = [D, D, D, D, A, D, A];
/// Care-plan work on a case: its nurse and supervisors; nobody else knows it exists.
const CASE_TEAM: [Answer; 7] = [D, H, D, H, A, H, A];
/// A second-opinion request's parties: its lead physician, its member, nurses;
/// nobody else knows it exists.
const OPINION_PARTIES: [Answer; 7] = [A, H, A, H, A, H, H];
/// Coordination of a second-opinion request: nurses; the other parties are refused.
const OPINION_NURSE: [Answer; 7] = [D, H, D, H, A, H, H];
/// The lead physician's part in a second-opinion request.
const OPINION_PHYSICIAN: [Answer; 7] = [A, H, D, H, D, H, H];
/// The member's part in a second-opinion request.
const OPINION_MEMBER: [Answer; 7] = [D, H, A, H, D, H, H];
/// Only members ask for second opinions; another member's id is as if unknown.
const MEMBER_ASKS: [Answer; 7] = [D, D, A, H, D, D, D];
/// The requesting provider's part in a precertification case or oncology plan.
const PROVIDER_ONLY: [Answer; 7] = [A, H, D, H, D, D, D];
/// Physician reviewers' decisions on a precertification case.
const PRECERT_REVIEWER: [Answer; 7] = [D, H, D, H, D, A, D];
const NURSE_ONLY: [Answer; 7] = [D, D, D, D, A, D, D];
const REVIEWER_ONLY: [Answer; 7] = [D, D, D, D, D, A, D];

const DIR: &str = "carepath.directory.v1.DirectoryService/";
const PRE: &str = "carepath.precert.v1.PrecertService/";
const ONC: &str = "carepath.oncology.v1.OncologyService/";
const CAS: &str = "carepath.cases.v1.CaseService/";
const SOP: &str = "carepath.secondopinion.v1.SecondOpinionService/";
const NOT: &str = "carepath.notify.v1.NotificationService/";
const AUD: &str = "carepath.audit.v1.AuditService/";

/// Who may call what. Columns: provider of the record, another provider, member of the
/// record, another member, nurse, physician reviewer, admin. The provider of a record
/// is the requesting and servicing provider of a precertification case, the treating
/// provider of an oncology plan, the provider the member let see her managed case, and
/// the lead physician of a second-opinion request. The notice is the member's own.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // Directory: admins write; anyone reads plans and providers; members read their own
    // record and their family's; staff read members and staff.
    row("carepath.directory.v1.DirectoryService/UpsertPlan", Base, ADMIN_ONLY),
    row("carepath.directory.v1.DirectoryService/GetPlan", Base, ALL),
    row("carepath.directory.v1.DirectoryService/ListPlans", Base, ALL),
    row("carepath.directory.v1.DirectoryService/UpsertMember", Base, ADMIN_ONLY),
    row("carepath.directory.v1.DirectoryService/GetMember", Base, [D, D, A, H, A, A, A]),
    row("carepath.directory.v1.DirectoryService/ListMembers", Base, [D, D, A, D, A, A, A]),
    row("carepath.directory.v1.DirectoryService/UpsertProvider", Base, ADMIN_ONLY),
    row("carepath.directory.v1.DirectoryService/GetProvider", Base, ALL),
    row("carepath.directory.v1.DirectoryService/ListProviders", Base, ALL),
    row("carepath.directory.v1.DirectoryService/UpsertStaff", Base, ADMIN_ONLY),
    row("carepath.directory.v1.DirectoryService/GetStaff", Base, STAFF),
    row("carepath.directory.v1.DirectoryService/ListStaff", Base, STAFF),
    // Precertification: providers check, submit and follow their own cases; members
    // their own; nurses and physician reviewers work the queue; only physician
    // reviewers deny, hold peer-to-peers and decide appeals; admins run gold cards and
    // rule lists.
    row("carepath.precert.v1.PrecertService/CheckRequirement", Base, [A, A, A, D, A, D, A]),
    row("carepath.precert.v1.PrecertService/BatchCheckRequirements", Base, [A, A, A, D, A, D, A]),
    row("carepath.precert.v1.PrecertService/Submit", Base, [A, D, A, D, A, D, A]),
    row("carepath.precert.v1.PrecertService/GetCase", Base, [A, H, A, H, A, A, A]),
    row("carepath.precert.v1.PrecertService/ListCases", Base, [A, H, A, D, A, A, A]),
    row("carepath.precert.v1.PrecertService/SupplyInformation", OwnEach, [A, H, A, H, A, D, A]),
    row("carepath.precert.v1.PrecertService/WithdrawCase", OwnEach, [A, H, A, H, D, D, D]),
    row("carepath.precert.v1.PrecertService/ListReviewQueue", Own, STAFF),
    row("carepath.precert.v1.PrecertService/ClaimCase", OwnEach, [D, H, D, H, A, A, D]),
    row("carepath.precert.v1.PrecertService/ReleaseCase", OwnEach, [D, H, D, H, D, A, A]),
    row("carepath.precert.v1.PrecertService/RequestInformation", OwnEach, [D, H, D, H, A, A, D]),
    row("carepath.precert.v1.PrecertService/RecordDecision", Own, REVIEWER_ONLY),
    row("carepath.precert.v1.PrecertService/RequestPeerToPeer", Own, PROVIDER_ONLY),
    row("carepath.precert.v1.PrecertService/SchedulePeerToPeer", Own, PRECERT_REVIEWER),
    row("carepath.precert.v1.PrecertService/CompletePeerToPeer", Own, PRECERT_REVIEWER),
    row("carepath.precert.v1.PrecertService/RequestReconsideration", OwnEach, [A, H, A, H, D, D, D]),
    row("carepath.precert.v1.PrecertService/RequestAppeal", OwnEach, [A, H, A, H, D, D, D]),
    row("carepath.precert.v1.PrecertService/DecideAppeal", Own, PRECERT_REVIEWER),
    row("carepath.precert.v1.PrecertService/EvaluateGoldCards", Base, ADMIN_ONLY),
    row("carepath.precert.v1.PrecertService/ListGoldCards", Base, [A, D, D, D, A, A, A]),
    row("carepath.precert.v1.PrecertService/GetMetrics", Base, STAFF),
    row("carepath.precert.v1.PrecertService/ListRuleLists", Base, ALL),
    row("carepath.precert.v1.PrecertService/ValidateRuleList", Base, ADMIN_ONLY),
    row("carepath.precert.v1.PrecertService/ActivateRuleList", Base, ADMIN_ONLY),
    // Oncology: the treating provider or intake staff submit; those entitled to the
    // case read the plan; only the treating provider adopts an alternative; the
    // guidelines are open to every caller.
    row("carepath.oncology.v1.OncologyService/EvaluatePlan", Base, ALL),
    row("carepath.oncology.v1.OncologyService/SubmitPlan", Base, [A, D, D, D, A, D, A]),
    row("carepath.oncology.v1.OncologyService/GetPlan", Base, [A, H, A, H, A, A, A]),
    row("carepath.oncology.v1.OncologyService/AcceptAlternative", Own, PROVIDER_ONLY),
    row("carepath.oncology.v1.OncologyService/ListPathways", Base, ALL),
    row("carepath.oncology.v1.OncologyService/GetPathway", Base, ALL),
    // Case management: the case's nurse and supervisors work it; the member and the
    // provider she agreed to see it; nobody else knows it exists.
    row("carepath.cases.v1.CaseService/OpenCase", Base, [A, A, A, D, A, D, A]),
    row("carepath.cases.v1.CaseService/GetCase", Base, [A, H, A, H, A, H, A]),
    row("carepath.cases.v1.CaseService/ListCases", Base, [A, H, A, D, A, D, A]),
    row("carepath.cases.v1.CaseService/ClaimCase", Own, NURSE_ONLY),
    row("carepath.cases.v1.CaseService/AssignCase", Own, ADMIN_ONLY),
    row("carepath.cases.v1.CaseService/MoveCase", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/CloseCase", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/DeclineCase", OwnEach, [D, H, A, H, A, H, A]),
    row("carepath.cases.v1.CaseService/AddGoal", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/UpdateGoal", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/AddTask", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/UpdateTask", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/RecordInteraction", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/RecordTransition", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/ArrangeService", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/UpdateService", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/RequestDecisionSupport", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/FindSpecialists", Base, CASE_TEAM),
    row("carepath.cases.v1.CaseService/AssessCareAbroad", OwnEach, CASE_TEAM),
    row("carepath.cases.v1.CaseService/RecordConsent", OwnEach, [D, H, A, H, A, H, A]),
    row("carepath.cases.v1.CaseService/RateCase", Own, [D, H, A, H, D, H, D]),
    row("carepath.cases.v1.CaseService/GetSatisfactionReport", Base, ADMIN_ONLY),
    row("carepath.cases.v1.CaseService/GetWorkList", Base, CASE_WORK),
    // Second opinion: the member asks, answers, uploads and reads; the lead physician
    // reviews and answers; nurses coordinate while the request is open; physician
    // reviewers and admins have no part in it.
    row("carepath.secondopinion.v1.SecondOpinionService/CheckEligibility", Base, MEMBER_ASKS),
    row("carepath.secondopinion.v1.SecondOpinionService/Submit", Base, MEMBER_ASKS),
    row("carepath.secondopinion.v1.SecondOpinionService/GetQuestionnaire", Base, OPINION_PARTIES),
    row("carepath.secondopinion.v1.SecondOpinionService/AnswerQuestionnaire", Own, [H, H, A, H, D, H, H]),
    row("carepath.secondopinion.v1.SecondOpinionService/UploadRecord", Base, [D, H, A, H, A, H, H]),
    row("carepath.secondopinion.v1.SecondOpinionService/LogRecord", Base, OPINION_NURSE),
    row("carepath.secondopinion.v1.SecondOpinionService/DownloadRecord", Base, OPINION_PARTIES),
    row("carepath.secondopinion.v1.SecondOpinionService/GetPhysician", Base, OPINION_PARTIES),
    row("carepath.secondopinion.v1.SecondOpinionService/Coordinate", Base, OPINION_NURSE),
    row("carepath.secondopinion.v1.SecondOpinionService/PublishOpinion", Own, OPINION_PHYSICIAN),
    row("carepath.secondopinion.v1.SecondOpinionService/AddAddendum", Own, OPINION_PHYSICIAN),
    row("carepath.secondopinion.v1.SecondOpinionService/MarkReviewed", Own, OPINION_MEMBER),
    row("carepath.secondopinion.v1.SecondOpinionService/ShareWithDoctor", Own, OPINION_MEMBER),
    row("carepath.secondopinion.v1.SecondOpinionService/RecordFollowUp", Own, OPINION_NURSE),
    row("carepath.secondopinion.v1.SecondOpinionService/AskQuestion", Own, OPINION_MEMBER),
    row("carepath.secondopinion.v1.SecondOpinionService/AnswerQuestion", Own, OPINION_PHYSICIAN),
    row("carepath.secondopinion.v1.SecondOpinionService/Close", Own, OPINION_NURSE),
    row("carepath.secondopinion.v1.SecondOpinionService/PostMessage", Base, OPINION_PARTIES),
    row("carepath.secondopinion.v1.SecondOpinionService/ListMessages", Base, OPINION_PARTIES),
    row("carepath.secondopinion.v1.SecondOpinionService/GetRequest", Base, OPINION_PARTIES),
    row("carepath.secondopinion.v1.SecondOpinionService/ListRequests", Base, [A, H, A, H, A, D, D]),
    row("carepath.secondopinion.v1.SecondOpinionService/WatchStatus", Base, OPINION_PARTIES),
    // Notices: each recipient reads their own; admins read every notice, work the
    // failed list and read the delivery report.
    row("carepath.notify.v1.NotificationService/ListNotices", Base, [D, D, A, D, D, D, A]),
    row("carepath.notify.v1.NotificationService/GetNotice", Base, [H, H, A, H, H, H, A]),
    row("carepath.notify.v1.NotificationService/ResendNotice", Base, ADMIN_ONLY),
    row("carepath.notify.v1.NotificationService/ListFailedNotices", Base, ADMIN_ONLY),
    row("carepath.notify.v1.NotificationService/GetDeliveryReport", Base, ADMIN_ONLY),
    // The audit log: admins only, searched for the record's member.
    row("carepath.audit.v1.AuditService/SearchAudit", Base, ADMIN_ONLY),
    row("carepath.audit.v1.AuditService/VerifyAudit", Base, ADMIN_ONLY),
];

/// Every method of every `carepath.*` service in the compiled descriptor set, as
/// `package.Service/Method`.
fn contract_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(carepath_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptor set decodes");
    let mut methods = BTreeSet::new();
    for file in &set.file {
        let package = file.package();
        if !package.starts_with("carepath.") {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                methods.insert(format!("{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    methods
}

/// A record the calls are aimed at, and who it belongs to.
#[derive(Debug, Clone, Default)]
struct Target {
    id: String,
    member: String,
    provider: String,
    /// A part of the record the call names: a record, goal, task, arranged service,
    /// decision-support request or alternative regimen.
    item: String,
    /// A message on a second-opinion request.
    message: String,
}

impl Target {
    fn new(id: impl Into<String>, provider: &str) -> Target {
        Target {
            id: id.into(),
            member: MEMBER.into(),
            provider: provider.into(),
            ..Default::default()
        }
    }
}

/// The directory records as the admin read them, written back unchanged.
struct DirectoryRecords {
    plan: dpb::Plan,
    member: dpb::Member,
    provider: dpb::Provider,
    staff: dpb::Staff,
}

/// The records made once at the start.
struct Records {
    directory: DirectoryRecords,
    member: Target,
    precert: Target,
    plan: Target,
    case: Target,
    opinion: Target,
    notice: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PrecertStage {
    Approved,
    PendedInformation,
    PendedReview,
    Claimed,
    Denied,
    PeerToPeerRequested,
    PeerToPeerScheduled,
    AppealRequested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaseStage {
    Queued,
    Assigned,
    WithGoal,
    WithTask,
    WithService,
    WithDecisionSupport,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum OpinionStage {
    Submitted,
    InReview,
    Published,
    QuestionAsked,
    FollowedUp,
}

/// Unwraps a set-up call, saying which one failed.
fn done<T>(result: Result<Response<T>, Status>, what: &str) -> T {
    match result {
        Ok(r) => r.into_inner(),
        Err(s) => panic!(
            "set-up step failed: {what}: {:?}: {}",
            s.code(),
            s.message()
        ),
    }
}

fn page() -> Option<PageRequest> {
    Some(PageRequest {
        page_size: 500,
        page_token: String::new(),
    })
}

fn flag(id: &str, value: bool) -> ppb::ClinicalAnswer {
    ppb::ClinicalAnswer {
        question_id: id.into(),
        value: Some(ppb::clinical_answer::Value::Flag(value)),
    }
}

fn number(id: &str, value: f64) -> ppb::ClinicalAnswer {
    ppb::ClinicalAnswer {
        question_id: id.into(),
        value: Some(ppb::clinical_answer::Value::Number(value)),
    }
}

fn mri_line() -> ppb::ServiceLine {
    ppb::ServiceLine {
        service_code: "70553".into(),
        units: 1,
        date_of_service: "2026-12-01".into(),
        setting: Setting::Outpatient as i32,
        ..Default::default()
    }
}

/// The member's brain MRI, asked for by the imaging center; a fresh request id each
/// time.
fn mri(answers: Vec<ppb::ClinicalAnswer>) -> ppb::SubmitRequest {
    ppb::SubmitRequest {
        request_id: format!("mri-{}", uuid::Uuid::now_v7().simple()),
        member_id: MEMBER.into(),
        requesting_provider_npi: IMAGING.into(),
        servicing_provider_npi: IMAGING.into(),
        lines: vec![mri_line()],
        diagnoses: vec!["G43.909".into()],
        urgency: Urgency::Routine as i32,
        answers,
        records: vec![ppb::RecordReference {
            id: "note-1".into(),
            document: "clinical_notes".into(),
        }],
    }
}

fn treatment(on_pathway: bool) -> TreatmentPlan {
    let patient = PatientFactors {
        age_years: Some(55),
        body_surface_area_m2: Some(1.8),
        weight_kg: Some(70.0),
        creatinine_clearance_ml_min: Some(95.0),
        risk_factors: Default::default(),
    };
    let (diagnosis, stage, markers, line, intent, histology, regimen) = if on_pathway {
        (
            "C50.911",
            "II",
            ("HER2", "positive"),
            LineOfTherapy::Neoadjuvant,
            Intent::Curative,
            None,
            "tchp",
        )
    } else {
        (
            "C34.90",
            "IV",
            ("EGFR", "mutated"),
            LineOfTherapy::First,
            Intent::Palliative,
            Some("LUAD".to_owned()),
            "carbo-pem-pembro",
        )
    };
    let base = TreatmentPlan {
        diagnosis: carepath_core::Icd10Code::parse(diagnosis).expect("diagnosis"),
        cancer_id: None,
        context: ClinicalContext {
            stage_group: Some(StageGroup::parse(stage).expect("stage")),
            biomarkers: [(markers.0.to_owned(), markers.1.to_owned())]
                .into_iter()
                .collect(),
            histology,
            line: Some(line),
            intent: Some(intent),
            performance_status: Some(0),
        },
        patient,
        drugs: Vec::new(),
        supportive: Vec::new(),
        site_of_service: Some(SiteOfService::Office),
    };
    adopt_alternative(&Catalogue::shipped(), &base, regimen).expect("a catalogue regimen")
}

fn plan_request(request_id: &str, servicing: &str) -> opb::SubmitPlanRequest {
    opb::SubmitPlanRequest {
        request_id: request_id.into(),
        member_id: MEMBER.into(),
        treating_provider_npi: ONCOLOGIST.into(),
        servicing_provider_npi: servicing.into(),
        urgency: Urgency::Urgent as i32,
        start_date: "2026-12-01".into(),
        plan: Some(plan_to_proto(&treatment(true))),
    }
}

fn first_opinion() -> spb::FirstOpinion {
    spb::FirstOpinion {
        physician_npi: ONCOLOGIST.into(),
        physician_name: String::new(),
        practice: String::new(),
        given_on: "2026-10-15".into(),
        summary: "Early breast cancer; chemotherapy before surgery recommended".into(),
    }
}

fn opinion_request() -> spb::SubmitRequest {
    spb::SubmitRequest {
        member_id: MEMBER.into(),
        diagnosis: "C50.911".into(),
        major_surgery_recommended: false,
        current_treatment: "Chemotherapy before surgery".into(),
        emergency: false,
        first_opinion: Some(first_opinion()),
    }
}

fn questionnaire_answers() -> Vec<spb::QuestionnaireAnswer> {
    use spb::questionnaire_answer::Value;
    let answer = |id: &str, value: Value| spb::QuestionnaireAnswer {
        question_id: id.into(),
        value: Some(value),
    };
    vec![
        answer("diagnosed_on", Value::Date("2026-10-01".into())),
        answer("treatment_started", Value::YesNo(false)),
        answer(
            "questions_for_expert",
            Value::Text("Is chemotherapy before surgery right for me?".into()),
        ),
    ]
}

fn opinion_content() -> spb::OpinionContent {
    spb::OpinionContent {
        diagnosis: spb::DiagnosisVerdict::Confirmed as i32,
        revised_diagnosis: String::new(),
        treatment: spb::TreatmentVerdict::Confirmed as i32,
        treatment_recommendation: String::new(),
        further_tests: Vec::new(),
        answers: Vec::new(),
        narrative: "The records support the diagnosis and the plan; no change is recommended."
            .into(),
    }
}

fn upload_messages(
    request_id: &str,
    kind: spb::RecordKind,
    file_name: &str,
    content_type: &str,
) -> Vec<spb::UploadRecordRequest> {
    use spb::upload_record_request::Part;
    let bytes = format!("{file_name} for the expert").into_bytes();
    vec![
        spb::UploadRecordRequest {
            part: Some(Part::Header(spb::RecordHeader {
                request_id: request_id.into(),
                kind: kind as i32,
                file_name: file_name.into(),
                content_type: content_type.into(),
                size_bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                description: String::new(),
            })),
        },
        spb::UploadRecordRequest {
            part: Some(Part::Chunk(bytes)),
        },
    ]
}

/// The running server, a channel to it, and the records made at the start.
struct Cx {
    server: TestServer,
    channel: Channel,
}

impl Cx {
    fn token(&self, role: Role, subject: &str) -> String {
        self.server.token(role, subject)
    }

    fn admin(&self) -> String {
        self.token(Role::Admin, ADMIN)
    }

    /// The token of `who` relative to `target`.
    fn caller_token(&self, who: Caller, target: &Target) -> Option<String> {
        Some(match who {
            Caller::OwnProvider => self.token(Role::Provider, &target.provider),
            Caller::OtherProvider => self.token(Role::Provider, OTHER_PROVIDER),
            Caller::OwnMember => self.token(Role::Member, &target.member),
            Caller::OtherMember => self.token(Role::Member, OTHER_MEMBER),
            Caller::Nurse => self.token(Role::Nurse, NURSE),
            Caller::Reviewer => self.token(Role::PhysicianReviewer, REVIEWER),
            Caller::Admin => self.admin(),
            Caller::NoToken => return None,
        })
    }

    /// `message` with the bearer token, if any, and a deadline.
    fn req<T>(&self, token: Option<&str>, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(Duration::from_secs(20));
        if let Some(token) = token {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("ascii token"),
            );
        }
        request
    }

    fn directory(&self) -> DirectoryServiceClient<Channel> {
        DirectoryServiceClient::new(self.channel.clone())
    }

    fn precert(&self) -> PrecertServiceClient<Channel> {
        PrecertServiceClient::new(self.channel.clone())
    }

    fn oncology(&self) -> OncologyServiceClient<Channel> {
        OncologyServiceClient::new(self.channel.clone())
    }

    fn cases(&self) -> CaseServiceClient<Channel> {
        CaseServiceClient::new(self.channel.clone())
    }

    fn opinions(&self) -> SecondOpinionServiceClient<Channel> {
        SecondOpinionServiceClient::new(self.channel.clone())
    }

    fn notices(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(self.channel.clone())
    }

    fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }

    // ---- records, made through the RPCs as their owners make them ----

    async fn directory_records(&self) -> DirectoryRecords {
        let admin = self.admin();
        let a = Some(admin.as_str());
        let member = done(
            self.directory()
                .get_member(self.req(a, dpb::GetMemberRequest { id: MEMBER.into() }))
                .await,
            "read the member",
        )
        .member
        .expect("member");
        let plan = done(
            self.directory()
                .get_plan(self.req(
                    a,
                    dpb::GetPlanRequest {
                        id: member.plan_id.clone(),
                    },
                ))
                .await,
            "read the plan",
        )
        .plan
        .expect("plan");
        let provider = done(
            self.directory()
                .get_provider(self.req(
                    a,
                    dpb::GetProviderRequest {
                        npi: IMAGING.into(),
                    },
                ))
                .await,
            "read the provider",
        )
        .provider
        .expect("provider");
        let staff = done(
            self.directory()
                .get_staff(self.req(a, dpb::GetStaffRequest { id: NURSE.into() }))
                .await,
            "read the nurse",
        )
        .staff
        .expect("staff");
        DirectoryRecords {
            plan,
            member,
            provider,
            staff,
        }
    }

    async fn precert_case(&self, stage: PrecertStage) -> Target {
        use PrecertStage::*;
        let provider = self.token(Role::Provider, IMAGING);
        let p = Some(provider.as_str());
        let reviewer = self.token(Role::PhysicianReviewer, REVIEWER);
        let second = self.token(Role::PhysicianReviewer, SECOND_REVIEWER);
        let answers = match stage {
            Approved => vec![flag("red_flag_symptoms", true)],
            PendedInformation => Vec::new(),
            _ => vec![
                flag("red_flag_symptoms", false),
                number("conservative_therapy_weeks", 2.0),
            ],
        };
        let case = done(
            self.precert().submit(self.req(p, mri(answers))).await,
            "submit a precertification request",
        )
        .case
        .expect("case");
        let id = case.id.clone();
        let case_id = || id.clone();
        if stage == Claimed {
            done(
                self.precert()
                    .claim_case(self.req(
                        Some(&reviewer),
                        ppb::ClaimCaseRequest { case_id: case_id() },
                    ))
                    .await,
                "claim the case",
            );
        }
        if stage >= Denied {
            done(
                self.precert()
                    .claim_case(
                        self.req(Some(&second), ppb::ClaimCaseRequest { case_id: case_id() }),
                    )
                    .await,
                "claim the case",
            );
            done(
                self.precert()
                    .record_decision(self.req(
                        Some(&second),
                        ppb::RecordDecisionRequest {
                            case_id: case_id(),
                            outcome: ppb::DecisionOutcome::Denied as i32,
                            reason_code: "not_medically_necessary".into(),
                            rationale: "No red-flag symptoms and two weeks of therapy.".into(),
                            guideline: "Advanced imaging criteria, section 3 (illustrative)".into(),
                            ..Default::default()
                        },
                    ))
                    .await,
                "deny the case",
            );
        }
        if matches!(stage, PeerToPeerRequested | PeerToPeerScheduled) {
            done(
                self.precert()
                    .request_peer_to_peer(
                        self.req(p, ppb::RequestPeerToPeerRequest { case_id: case_id() }),
                    )
                    .await,
                "ask for a peer-to-peer",
            );
        }
        if stage == PeerToPeerScheduled {
            done(
                self.precert()
                    .schedule_peer_to_peer(self.req(
                        Some(&reviewer),
                        ppb::SchedulePeerToPeerRequest {
                            case_id: case_id(),
                            scheduled_for: Some(timestamp(
                                self.server.clock_now() + chrono::Duration::days(1),
                            )),
                        },
                    ))
                    .await,
                "schedule the peer-to-peer",
            );
        }
        if stage == AppealRequested {
            done(
                self.precert()
                    .request_appeal(self.req(
                        p,
                        ppb::RequestAppealRequest {
                            case_id: case_id(),
                            expedited: false,
                            reason: "The headaches are getting worse".into(),
                        },
                    ))
                    .await,
                "appeal",
            );
        }
        let status = done(
            self.precert()
                .get_case(self.req(Some(&self.admin()), ppb::GetCaseRequest { id: case_id() }))
                .await,
            "read the case",
        )
        .case
        .expect("case")
        .status();
        let want = match stage {
            Approved => ppb::CaseStatus::Approved,
            PendedInformation => ppb::CaseStatus::PendedInformation,
            PendedReview => ppb::CaseStatus::PendedReview,
            Claimed => ppb::CaseStatus::InReview,
            Denied => ppb::CaseStatus::Denied,
            PeerToPeerRequested => ppb::CaseStatus::PeerToPeerRequested,
            PeerToPeerScheduled => ppb::CaseStatus::PeerToPeerScheduled,
            AppealRequested => ppb::CaseStatus::AppealRequested,
        };
        assert_eq!(status, want, "precertification case for {stage:?}");
        Target::new(id, IMAGING)
    }

    async fn oncology_plan(&self, on_pathway: bool) -> Target {
        let oncologist = self.token(Role::Provider, ONCOLOGIST);
        let mut request = plan_request(&format!("onc-{}", uuid::Uuid::now_v7().simple()), "");
        request.plan = Some(plan_to_proto(&treatment(on_pathway)));
        let plan = done(
            self.oncology()
                .submit_plan(self.req(Some(&oncologist), request))
                .await,
            "submit an oncology plan",
        )
        .plan
        .expect("plan");
        let evaluation = plan.evaluation.expect("evaluation");
        assert_eq!(evaluation.on_pathway, on_pathway);
        let mut target = Target::new(plan.id, ONCOLOGIST);
        if !on_pathway {
            target.item = evaluation
                .alternatives
                .first()
                .expect("alternatives offered")
                .regimen_id
                .clone();
        }
        target
    }

    async fn managed_case(&self, kind: cpb::CaseKind, stage: CaseStage) -> Target {
        let admin = self.admin();
        let a = Some(admin.as_str());
        let opened = done(
            self.cases()
                .open_case(self.req(
                    a,
                    cpb::OpenCaseRequest {
                        member_id: MEMBER.into(),
                        kind: kind as i32,
                        reason: "Support through treatment".into(),
                        diagnosis: String::new(),
                    },
                ))
                .await,
            "open a case",
        );
        assert!(!opened.absorbed, "a fresh case, not an earlier open one");
        let id = opened.case_id;
        let mut target = Target::new(id.clone(), ONCOLOGIST);
        let case_id = || id.clone();
        done(
            self.cases()
                .record_consent(self.req(
                    a,
                    cpb::RecordConsentRequest {
                        case_id: case_id(),
                        provider_npi: ONCOLOGIST.into(),
                        granted: true,
                    },
                ))
                .await,
            "record the member's consent",
        );
        if stage == CaseStage::Queued {
            return target;
        }
        done(
            self.cases()
                .assign_case(self.req(
                    a,
                    cpb::AssignCaseRequest {
                        case_id: case_id(),
                        nurse_id: NURSE.into(),
                        reason: "Oncology nurse".into(),
                    },
                ))
                .await,
            "assign the case",
        );
        match stage {
            CaseStage::Queued | CaseStage::Assigned => {}
            CaseStage::WithGoal => {
                target.item = done(
                    self.cases()
                        .add_goal(self.req(
                            a,
                            cpb::AddGoalRequest {
                                case_id: case_id(),
                                description: "Completes chemotherapy on schedule".into(),
                                target_date: "2027-03-01".into(),
                            },
                        ))
                        .await,
                    "add a goal",
                )
                .goal
                .expect("goal")
                .id;
            }
            CaseStage::WithTask => {
                target.item = done(
                    self.cases()
                        .add_task(self.req(
                            a,
                            cpb::AddTaskRequest {
                                case_id: case_id(),
                                title: "Call after the first cycle".into(),
                                owner: NURSE.into(),
                                due_date: "2026-12-15".into(),
                                ..Default::default()
                            },
                        ))
                        .await,
                    "add a task",
                )
                .task
                .expect("task")
                .id;
            }
            CaseStage::WithService => {
                target.item = done(
                    self.cases()
                        .arrange_service(self.req(
                            a,
                            cpb::ArrangeServiceRequest {
                                case_id: case_id(),
                                kind: cpb::ServiceKind::HomeHealthCare as i32,
                                description: "Home nursing visits after each cycle".into(),
                                ..Default::default()
                            },
                        ))
                        .await,
                    "arrange a service",
                )
                .service
                .expect("service")
                .id;
            }
            CaseStage::WithDecisionSupport => {
                target.item = done(
                    self.cases()
                        .request_decision_support(self.req(
                            a,
                            cpb::RequestDecisionSupportRequest {
                                case_id: case_id(),
                                reason: cpb::DecisionReason::SeriousDiagnosis as i32,
                                specialty: "medical_oncology".into(),
                                ..Default::default()
                            },
                        ))
                        .await,
                    "ask for decision support",
                )
                .decision_support
                .expect("decision support")
                .id;
            }
            CaseStage::Closed => {
                done(
                    self.cases()
                        .close_case(self.req(
                            a,
                            cpb::CloseCaseRequest {
                                case_id: case_id(),
                                outcome: cpb::Outcome::Unreachable as i32,
                                note: "No answer after three calls".into(),
                            },
                        ))
                        .await,
                    "close the case",
                );
            }
        }
        target
    }

    /// Closes a case made for one row, so the next row's referral opens a new one.
    async fn close_case(&self, target: &Target) {
        // Rows that close the case themselves leave nothing to do.
        let _ = self
            .cases()
            .close_case(self.req(
                Some(&self.admin()),
                cpb::CloseCaseRequest {
                    case_id: target.id.clone(),
                    outcome: cpb::Outcome::Unreachable as i32,
                    note: "Done".into(),
                },
            ))
            .await;
    }

    async fn upload(
        &self,
        token: Option<&str>,
        messages: Vec<spb::UploadRecordRequest>,
    ) -> Result<spb::UploadRecordResponse, Status> {
        Ok(self
            .opinions()
            .upload_record(self.req(token, futures::stream::iter(messages)))
            .await?
            .into_inner())
    }

    async fn opinion(&self, stage: OpinionStage, expert: &str) -> Target {
        use OpinionStage::*;
        let member = self.token(Role::Member, MEMBER);
        let m = Some(member.as_str());
        let request = done(
            self.opinions().submit(self.req(m, opinion_request())).await,
            "ask for a second opinion",
        )
        .request
        .expect("request");
        let mut target = Target::new(request.id.clone(), expert);
        if stage == Submitted {
            return target;
        }
        let id = request.id;
        done(
            self.opinions()
                .answer_questionnaire(self.req(
                    m,
                    spb::AnswerQuestionnaireRequest {
                        request_id: id.clone(),
                        answers: questionnaire_answers(),
                    },
                ))
                .await,
            "answer the questionnaire",
        );
        let mut last = None;
        for (kind, name, content_type) in [
            (spb::RecordKind::PathologySlide, "biopsy.tiff", "image/tiff"),
            (spb::RecordKind::Ct, "staging-ct.dcm", "application/dicom"),
            (
                spb::RecordKind::ClinicalReport,
                "oncology-notes.pdf",
                "application/pdf",
            ),
        ] {
            let uploaded = self
                .upload(m, upload_messages(&id, kind, name, content_type))
                .await
                .unwrap_or_else(|s| panic!("upload {name}: {:?}: {}", s.code(), s.message()));
            if target.item.is_empty() {
                target.item = uploaded.record.expect("record").id;
            }
            last = uploaded.request;
        }
        let request = last.expect("request");
        assert_eq!(
            request.status(),
            spb::Status::InReview,
            "records complete: a lead physician reviews"
        );
        target.provider = request.physician.expect("lead physician").npi;
        let physician = self.token(Role::Provider, &target.provider);
        if stage >= Published {
            done(
                self.opinions()
                    .publish_opinion(self.req(
                        Some(&physician),
                        spb::PublishOpinionRequest {
                            request_id: id.clone(),
                            opinion: Some(opinion_content()),
                        },
                    ))
                    .await,
                "publish the opinion",
            );
        }
        if stage == QuestionAsked {
            done(
                self.opinions()
                    .ask_question(self.req(
                        m,
                        spb::AskQuestionRequest {
                            request_id: id.clone(),
                            question: "How many cycles before surgery?".into(),
                        },
                    ))
                    .await,
                "ask a follow-up question",
            );
        }
        if stage == FollowedUp {
            done(
                self.opinions()
                    .record_follow_up(self.req(
                        Some(&self.token(Role::Nurse, NURSE)),
                        spb::RecordFollowUpRequest {
                            request_id: id.clone(),
                            channel: spb::FollowUpChannel::Phone as i32,
                            notes: "Went through the opinion with the member".into(),
                            member_understands: true,
                        },
                    ))
                    .await,
                "record the follow-up",
            );
        }
        target
    }

    /// A notice addressed to the member, once the notifier has stored one.
    async fn member_notice(&self) -> Target {
        let recipient = format!("member:{MEMBER}");
        for _ in 0..100 {
            let page = self
                .server
                .app
                .store
                .list_notices(Some(&recipient), "", 50)
                .await
                .expect("list notices");
            if let Some(notice) = page.items.last() {
                return Target::new(notice.id.clone(), IMAGING);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no notice for {recipient} after 10 s");
    }

    async fn records(&self) -> Records {
        let directory = self.directory_records().await;
        let precert = self.precert_case(PrecertStage::Approved).await;
        let plan = self.oncology_plan(true).await;
        let case = self
            .managed_case(cpb::CaseKind::General, CaseStage::WithTask)
            .await;
        let mut opinion = self.opinion(OpinionStage::InReview, "").await;
        opinion.message = done(
            self.opinions()
                .post_message(self.req(
                    Some(&self.token(Role::Member, MEMBER)),
                    spb::PostMessageRequest {
                        request_id: opinion.id.clone(),
                        body: "Should I bring my scans on a disc as well?".into(),
                    },
                ))
                .await,
            "post a message",
        )
        .message
        .expect("message")
        .id;
        let notice = self.member_notice().await;
        Records {
            directory,
            member: Target::new(MEMBER, IMAGING),
            precert,
            plan,
            case,
            opinion,
            notice,
        }
    }

    /// The record a `Base` row's calls are aimed at.
    fn base_target(records: &Records, method: &str) -> Target {
        let service = method.split('/').next().unwrap_or_default();
        match format!("{service}/").as_str() {
            DIR => records.member.clone(),
            PRE => records.precert.clone(),
            ONC => records.plan.clone(),
            CAS => records.case.clone(),
            SOP => records.opinion.clone(),
            NOT | AUD => records.notice.clone(),
            other => panic!("no records for {other}"),
        }
    }

    /// A record made for one row of the table.
    async fn prepare(&self, records: &Records, method: &str) -> Target {
        use PrecertStage as P;
        let name = method.rsplit('/').next().unwrap_or_default();
        let expert = records.opinion.provider.as_str();
        if method.starts_with(PRE) {
            let stage = match name {
                "SupplyInformation" => P::PendedInformation,
                "WithdrawCase" | "ListReviewQueue" | "ClaimCase" | "RequestInformation" => {
                    P::PendedReview
                }
                "ReleaseCase" | "RecordDecision" => P::Claimed,
                "RequestPeerToPeer" | "RequestReconsideration" | "RequestAppeal" => P::Denied,
                "SchedulePeerToPeer" => P::PeerToPeerRequested,
                "CompletePeerToPeer" => P::PeerToPeerScheduled,
                "DecideAppeal" => P::AppealRequested,
                other => panic!("no precertification set-up for {other}"),
            };
            return self.precert_case(stage).await;
        }
        if method.starts_with(ONC) {
            return self.oncology_plan(false).await;
        }
        if method.starts_with(CAS) {
            let stage = match name {
                "ClaimCase" => CaseStage::Queued,
                "UpdateGoal" => CaseStage::WithGoal,
                "UpdateTask" => CaseStage::WithTask,
                "UpdateService" => CaseStage::WithService,
                "AssessCareAbroad" => CaseStage::WithDecisionSupport,
                "RateCase" => CaseStage::Closed,
                _ => CaseStage::Assigned,
            };
            return self.managed_case(cpb::CaseKind::Maternity, stage).await;
        }
        if method.starts_with(SOP) {
            let stage = match name {
                "AnswerQuestionnaire" => OpinionStage::Submitted,
                "PublishOpinion" => OpinionStage::InReview,
                "AnswerQuestion" => OpinionStage::QuestionAsked,
                "Close" => OpinionStage::FollowedUp,
                _ => OpinionStage::Published,
            };
            return self.opinion(stage, expert).await;
        }
        panic!("no set-up for {method}");
    }

    /// Undoes what a row's own record holds on to.
    async fn finish(&self, method: &str, target: &Target) {
        if method.starts_with(CAS) {
            self.close_case(target).await;
        }
    }

    // ---- the calls: one real request per method, aimed at `t` ----

    /// Calls `method` as the bearer of `token`; `Ok(false)` is an answer that leaves
    /// the record out.
    async fn call(
        &self,
        records: &Records,
        method: &str,
        token: Option<&str>,
        t: &Target,
    ) -> Result<bool, Status> {
        let (service, name) = method.split_once('/').expect("package.Service/Method");
        match format!("{service}/").as_str() {
            DIR => self.call_directory(records, name, token, t).await,
            PRE => self.call_precert(name, token, t).await,
            ONC => self.call_oncology(name, token, t).await,
            CAS => self.call_cases(name, token, t).await,
            SOP => self.call_opinions(name, token, t).await,
            NOT => self.call_notices(name, token, t).await,
            AUD => self.call_audit(name, token, t).await,
            _ => Err(Status::unimplemented(format!(
                "the test has no call for {method}"
            ))),
        }
    }

    async fn call_directory(
        &self,
        records: &Records,
        name: &str,
        token: Option<&str>,
        t: &Target,
    ) -> Result<bool, Status> {
        let mut c = self.directory();
        let dir = &records.directory;
        match name {
            "UpsertPlan" => {
                let plan = Some(dir.plan.clone());
                c.upsert_plan(self.req(token, dpb::UpsertPlanRequest { plan }))
                    .await?;
            }
            "GetPlan" => {
                let id = dir.plan.id.clone();
                c.get_plan(self.req(token, dpb::GetPlanRequest { id }))
                    .await?;
            }
            "ListPlans" => {
                c.list_plans(self.req(token, dpb::ListPlansRequest { page: page() }))
                    .await?;
            }
            "UpsertMember" => {
                let member = Some(dir.member.clone());
                c.upsert_member(self.req(token, dpb::UpsertMemberRequest { member }))
                    .await?;
            }
            "GetMember" => {
                let id = t.member.clone();
                c.get_member(self.req(token, dpb::GetMemberRequest { id }))
                    .await?;
            }
            "ListMembers" => {
                let members = c
                    .list_members(self.req(
                        token,
                        dpb::ListMembersRequest {
                            page: page(),
                            plan_id: String::new(),
                            subscriber_id: t.member.clone(),
                        },
                    ))
                    .await?
                    .into_inner()
                    .members;
                // The member's covered family.
                return Ok(!members.is_empty());
            }
            "UpsertProvider" => {
                let provider = Some(dir.provider.clone());
                c.upsert_provider(self.req(token, dpb::UpsertProviderRequest { provider }))
                    .await?;
            }
            "GetProvider" => {
                let npi = t.provider.clone();
                c.get_provider(self.req(token, dpb::GetProviderRequest { npi }))
                    .await?;
            }
            "ListProviders" => {
                c.list_providers(self.req(
                    token,
                    dpb::ListProvidersRequest {
                        page: page(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "UpsertStaff" => {
                let staff = Some(dir.staff.clone());
                c.upsert_staff(self.req(token, dpb::UpsertStaffRequest { staff }))
                    .await?;
            }
            "GetStaff" => {
                let id = dir.staff.id.clone();
                c.get_staff(self.req(token, dpb::GetStaffRequest { id }))
                    .await?;
            }
            "ListStaff" => {
                c.list_staff(self.req(
                    token,
                    dpb::ListStaffRequest {
                        page: page(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            other => return Err(Status::unimplemented(format!("no call for {other}"))),
        }
        Ok(true)
    }

    async fn call_precert(
        &self,
        name: &str,
        token: Option<&str>,
        t: &Target,
    ) -> Result<bool, Status> {
        let mut c = self.precert();
        let case_id = t.id.clone();
        match name {
            "CheckRequirement" => {
                c.check_requirement(self.req(
                    token,
                    ppb::CheckRequirementRequest {
                        member_id: t.member.clone(),
                        rendering_provider_npi: IMAGING.into(),
                        diagnoses: vec!["G43.909".into()],
                        line: Some(mri_line()),
                    },
                ))
                .await?;
            }
            "BatchCheckRequirements" => {
                c.batch_check_requirements(self.req(
                    token,
                    ppb::BatchCheckRequirementsRequest {
                        member_id: t.member.clone(),
                        rendering_provider_npi: IMAGING.into(),
                        diagnoses: vec!["G43.909".into()],
                        lines: vec![mri_line()],
                    },
                ))
                .await?;
            }
            "Submit" => {
                c.submit(self.req(token, mri(vec![flag("red_flag_symptoms", true)])))
                    .await?;
            }
            "GetCase" => {
                c.get_case(self.req(token, ppb::GetCaseRequest { id: case_id }))
                    .await?;
            }
            "ListCases" => {
                let cases = c
                    .list_cases(self.req(
                        token,
                        ppb::ListCasesRequest {
                            page: page(),
                            member_id: t.member.clone(),
                            ..Default::default()
                        },
                    ))
                    .await?
                    .into_inner()
                    .cases;
                return Ok(cases.iter().any(|x| x.id == t.id));
            }
            "SupplyInformation" => {
                c.supply_information(self.req(
                    token,
                    ppb::SupplyInformationRequest {
                        case_id,
                        answers: vec![flag("red_flag_symptoms", true)],
                        records: Vec::new(),
                    },
                ))
                .await?;
            }
            "WithdrawCase" => {
                c.withdraw_case(self.req(
                    token,
                    ppb::WithdrawCaseRequest {
                        case_id,
                        reason: "The member moved the appointment".into(),
                    },
                ))
                .await?;
            }
            "ListReviewQueue" => {
                let cases = c
                    .list_review_queue(
                        self.req(token, ppb::ListReviewQueueRequest { page: page() }),
                    )
                    .await?
                    .into_inner()
                    .cases;
                return Ok(cases.iter().any(|x| x.id == t.id));
            }
            "ClaimCase" => {
                c.claim_case(self.req(token, ppb::ClaimCaseRequest { case_id }))
                    .await?;
            }
            "ReleaseCase" => {
                c.release_case(self.req(token, ppb::ReleaseCaseRequest { case_id }))
                    .await?;
            }
            "RequestInformation" => {
                c.request_information(self.req(
                    token,
                    ppb::RequestInformationRequest {
                        case_id,
                        missing: vec![ppb::RequiredItem {
                            id: "imaging_reports".into(),
                            text: "Reports of earlier imaging of the head".into(),
                        }],
                    },
                ))
                .await?;
            }
            "RecordDecision" => {
                c.record_decision(self.req(
                    token,
                    ppb::RecordDecisionRequest {
                        case_id,
                        outcome: ppb::DecisionOutcome::Denied as i32,
                        reason_code: "not_medically_necessary".into(),
                        rationale: "No red-flag symptoms and two weeks of therapy.".into(),
                        guideline: "Advanced imaging criteria, section 3 (illustrative)".into(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "RequestPeerToPeer" => {
                c.request_peer_to_peer(self.req(token, ppb::RequestPeerToPeerRequest { case_id }))
                    .await?;
            }
            "SchedulePeerToPeer" => {
                let at = timestamp(self.server.clock_now() + chrono::Duration::days(1));
                c.schedule_peer_to_peer(self.req(
                    token,
                    ppb::SchedulePeerToPeerRequest {
                        case_id,
                        scheduled_for: Some(at),
                    },
                ))
                .await?;
            }
            "CompletePeerToPeer" => {
                c.complete_peer_to_peer(self.req(
                    token,
                    ppb::CompletePeerToPeerRequest {
                        case_id,
                        overturned: false,
                        note: "Discussed; no new findings".into(),
                    },
                ))
                .await?;
            }
            "RequestReconsideration" => {
                c.request_reconsideration(self.req(
                    token,
                    ppb::RequestReconsiderationRequest {
                        case_id,
                        answers: vec![flag("red_flag_symptoms", true)],
                        records: Vec::new(),
                    },
                ))
                .await?;
            }
            "RequestAppeal" => {
                c.request_appeal(self.req(
                    token,
                    ppb::RequestAppealRequest {
                        case_id,
                        expedited: false,
                        reason: "The headaches are getting worse".into(),
                    },
                ))
                .await?;
            }
            "DecideAppeal" => {
                c.decide_appeal(self.req(
                    token,
                    ppb::DecideAppealRequest {
                        case_id,
                        overturn: true,
                        rationale: "New symptoms support the imaging".into(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "EvaluateGoldCards" => {
                c.evaluate_gold_cards(self.req(token, ppb::EvaluateGoldCardsRequest {}))
                    .await?;
            }
            "ListGoldCards" => {
                c.list_gold_cards(self.req(
                    token,
                    ppb::ListGoldCardsRequest {
                        provider_npi: t.provider.clone(),
                        page: None,
                    },
                ))
                .await?;
            }
            "GetMetrics" => {
                c.get_metrics(self.req(token, ppb::GetMetricsRequest::default()))
                    .await?;
            }
            "ListRuleLists" => {
                c.list_rule_lists(self.req(token, ppb::ListRuleListsRequest { page: None }))
                    .await?;
            }
            "ValidateRuleList" => {
                c.validate_rule_list(self.req(
                    token,
                    ppb::ValidateRuleListRequest {
                        source_name: "pilot-2099.toml".into(),
                        source: future_rule_list(),
                    },
                ))
                .await?;
            }
            "ActivateRuleList" => {
                c.activate_rule_list(self.req(
                    token,
                    ppb::ActivateRuleListRequest {
                        source_name: "pilot-2099.toml".into(),
                        source: future_rule_list(),
                    },
                ))
                .await?;
            }
            other => return Err(Status::unimplemented(format!("no call for {other}"))),
        }
        Ok(true)
    }

    async fn call_oncology(
        &self,
        name: &str,
        token: Option<&str>,
        t: &Target,
    ) -> Result<bool, Status> {
        let mut c = self.oncology();
        match name {
            "EvaluatePlan" => {
                let plan = Some(plan_to_proto(&treatment(true)));
                c.evaluate_plan(self.req(token, opb::EvaluatePlanRequest { plan }))
                    .await?;
            }
            "SubmitPlan" => {
                let id = format!("onc-{}", uuid::Uuid::now_v7().simple());
                c.submit_plan(self.req(token, plan_request(&id, "")))
                    .await?;
            }
            "GetPlan" => {
                c.get_plan(self.req(token, opb::GetPlanRequest { id: t.id.clone() }))
                    .await?;
            }
            "AcceptAlternative" => {
                c.accept_alternative(self.req(
                    token,
                    opb::AcceptAlternativeRequest {
                        plan_id: t.id.clone(),
                        regimen_id: t.item.clone(),
                    },
                ))
                .await?;
            }
            "ListPathways" => {
                c.list_pathways(self.req(token, opb::ListPathwaysRequest { page: None }))
                    .await?;
            }
            "GetPathway" => {
                c.get_pathway(self.req(
                    token,
                    opb::GetPathwayRequest {
                        cancer_id: "breast".into(),
                        context: None,
                    },
                ))
                .await?;
            }
            other => return Err(Status::unimplemented(format!("no call for {other}"))),
        }
        Ok(true)
    }

    async fn call_cases(
        &self,
        name: &str,
        token: Option<&str>,
        t: &Target,
    ) -> Result<bool, Status> {
        let mut c = self.cases();
        let case_id = t.id.clone();
        match name {
            "OpenCase" => {
                c.open_case(self.req(
                    token,
                    cpb::OpenCaseRequest {
                        member_id: t.member.clone(),
                        kind: cpb::CaseKind::Transitions as i32,
                        reason: "Going home after surgery".into(),
                        diagnosis: String::new(),
                    },
                ))
                .await?;
            }
            "GetCase" => {
                c.get_case(self.req(token, cpb::GetCaseRequest { case_id }))
                    .await?;
            }
            "ListCases" => {
                let cases = c
                    .list_cases(self.req(
                        token,
                        cpb::ListCasesRequest {
                            member_id: t.member.clone(),
                            page: page(),
                            ..Default::default()
                        },
                    ))
                    .await?
                    .into_inner()
                    .cases;
                return Ok(cases.iter().any(|x| x.id == t.id));
            }
            "ClaimCase" => {
                c.claim_case(self.req(token, cpb::ClaimCaseRequest { case_id }))
                    .await?;
            }
            "AssignCase" => {
                c.assign_case(self.req(
                    token,
                    cpb::AssignCaseRequest {
                        case_id,
                        nurse_id: ANOTHER_NURSE.into(),
                        reason: "Caseload balance".into(),
                    },
                ))
                .await?;
            }
            "MoveCase" => {
                c.move_case(self.req(
                    token,
                    cpb::MoveCaseRequest {
                        case_id,
                        phase: cpb::Phase::Assessment as i32,
                        note: "Screened".into(),
                    },
                ))
                .await?;
            }
            "CloseCase" => {
                c.close_case(self.req(
                    token,
                    cpb::CloseCaseRequest {
                        case_id,
                        outcome: cpb::Outcome::Unreachable as i32,
                        note: "No answer after three calls".into(),
                    },
                ))
                .await?;
            }
            "DeclineCase" => {
                c.decline_case(self.req(
                    token,
                    cpb::DeclineCaseRequest {
                        case_id,
                        note: "Prefers to manage on her own".into(),
                    },
                ))
                .await?;
            }
            "AddGoal" => {
                c.add_goal(self.req(
                    token,
                    cpb::AddGoalRequest {
                        case_id,
                        description: "Knows whom to call at night".into(),
                        target_date: "2027-01-15".into(),
                    },
                ))
                .await?;
            }
            "UpdateGoal" => {
                c.update_goal(self.req(
                    token,
                    cpb::UpdateGoalRequest {
                        case_id,
                        goal_id: t.item.clone(),
                        status: cpb::GoalStatus::Met as i32,
                    },
                ))
                .await?;
            }
            "AddTask" => {
                c.add_task(self.req(
                    token,
                    cpb::AddTaskRequest {
                        case_id,
                        title: "Send the medication list".into(),
                        due_date: "2026-12-10".into(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "UpdateTask" => {
                c.update_task(self.req(
                    token,
                    cpb::UpdateTaskRequest {
                        case_id,
                        task_id: t.item.clone(),
                        status: cpb::TaskStatus::InProgress as i32,
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "RecordInteraction" => {
                c.record_interaction(self.req(
                    token,
                    cpb::RecordInteractionRequest {
                        case_id,
                        channel: cpb::InteractionChannel::Call as i32,
                        summary: "Talked through the treatment calendar".into(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "RecordTransition" => {
                c.record_transition(self.req(
                    token,
                    cpb::RecordTransitionRequest {
                        case_id,
                        from_setting: cpb::CareSetting::AcuteHospital as i32,
                        to_setting: cpb::CareSetting::Home as i32,
                        discharge_date: "2026-11-20".into(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "ArrangeService" => {
                c.arrange_service(self.req(
                    token,
                    cpb::ArrangeServiceRequest {
                        case_id,
                        kind: cpb::ServiceKind::CaregiverRespite as i32,
                        description: "Respite for her husband on treatment days".into(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "UpdateService" => {
                c.update_service(self.req(
                    token,
                    cpb::UpdateServiceRequest {
                        case_id,
                        service_id: t.item.clone(),
                        state: cpb::ServiceState::Arranged as i32,
                        precert_case_id: String::new(),
                    },
                ))
                .await?;
            }
            "RequestDecisionSupport" => {
                c.request_decision_support(self.req(
                    token,
                    cpb::RequestDecisionSupportRequest {
                        case_id,
                        reason: cpb::DecisionReason::SeriousDiagnosis as i32,
                        specialty: "surgical_oncology".into(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "FindSpecialists" => {
                c.find_specialists(self.req(
                    token,
                    cpb::FindSpecialistsRequest {
                        case_id,
                        specialty: "medical_oncology".into(),
                        country: String::new(),
                        page: page(),
                    },
                ))
                .await?;
            }
            "AssessCareAbroad" => {
                c.assess_care_abroad(self.req(
                    token,
                    cpb::AssessCareAbroadRequest {
                        case_id,
                        decision_support_id: t.item.clone(),
                        recommendation: cpb::CareAbroad::LocalCareAppropriate as i32,
                        rationale: "Treatment is available close to home".into(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "RecordConsent" => {
                c.record_consent(self.req(
                    token,
                    cpb::RecordConsentRequest {
                        case_id,
                        provider_npi: t.provider.clone(),
                        granted: true,
                    },
                ))
                .await?;
            }
            "RateCase" => {
                c.rate_case(self.req(
                    token,
                    cpb::RateCaseRequest {
                        case_id,
                        rating: 5,
                        comment: "Very helpful".into(),
                    },
                ))
                .await?;
            }
            "GetSatisfactionReport" => {
                c.get_satisfaction_report(
                    self.req(token, cpb::GetSatisfactionReportRequest::default()),
                )
                .await?;
            }
            "GetWorkList" => {
                let list = c
                    .get_work_list(self.req(
                        token,
                        cpb::GetWorkListRequest {
                            nurse_id: NURSE.into(),
                        },
                    ))
                    .await?
                    .into_inner();
                return Ok(list
                    .overdue_tasks
                    .iter()
                    .chain(&list.upcoming_tasks)
                    .any(|task| task.case_id == t.id));
            }
            other => return Err(Status::unimplemented(format!("no call for {other}"))),
        }
        Ok(true)
    }

    async fn call_opinions(
        &self,
        name: &str,
        token: Option<&str>,
        t: &Target,
    ) -> Result<bool, Status> {
        let mut c = self.opinions();
        let request_id = t.id.clone();
        match name {
            "CheckEligibility" => {
                c.check_eligibility(self.req(
                    token,
                    spb::CheckEligibilityRequest {
                        member_id: t.member.clone(),
                        diagnosis: "C50.911".into(),
                        first_opinion: Some(first_opinion()),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "Submit" => {
                c.submit(self.req(token, opinion_request())).await?;
            }
            "GetQuestionnaire" => {
                c.get_questionnaire(self.req(token, spb::GetQuestionnaireRequest { request_id }))
                    .await?;
            }
            "AnswerQuestionnaire" => {
                c.answer_questionnaire(self.req(
                    token,
                    spb::AnswerQuestionnaireRequest {
                        request_id,
                        answers: questionnaire_answers(),
                    },
                ))
                .await?;
            }
            "UploadRecord" => {
                self.upload(
                    token,
                    upload_messages(
                        &request_id,
                        spb::RecordKind::LabResult,
                        "blood-count.pdf",
                        "application/pdf",
                    ),
                )
                .await?;
            }
            "LogRecord" => {
                c.log_record(self.req(
                    token,
                    spb::LogRecordRequest {
                        request_id,
                        kind: spb::RecordKind::PathologySlide as i32,
                        channel: spb::RecordChannel::Mail as i32,
                        description: "Original biopsy slides by courier".into(),
                    },
                ))
                .await?;
            }
            "DownloadRecord" => {
                let mut stream = c
                    .download_record(self.req(
                        token,
                        spb::DownloadRecordRequest {
                            request_id,
                            record_id: t.item.clone(),
                        },
                    ))
                    .await?
                    .into_inner();
                let first = stream.message().await?;
                return Ok(matches!(
                    first.and_then(|m| m.part),
                    Some(spb::download_record_response::Part::Record(r)) if r.id == t.item
                ));
            }
            "GetPhysician" => {
                c.get_physician(self.req(token, spb::GetPhysicianRequest { request_id }))
                    .await?;
            }
            "Coordinate" => {
                c.coordinate(self.req(token, spb::CoordinateRequest { request_id }))
                    .await?;
            }
            "PublishOpinion" => {
                c.publish_opinion(self.req(
                    token,
                    spb::PublishOpinionRequest {
                        request_id,
                        opinion: Some(opinion_content()),
                    },
                ))
                .await?;
            }
            "AddAddendum" => {
                c.add_addendum(self.req(
                    token,
                    spb::AddAddendumRequest {
                        request_id,
                        text: "The pathology was reviewed a second time; no change.".into(),
                    },
                ))
                .await?;
            }
            "MarkReviewed" => {
                c.mark_reviewed(self.req(token, spb::MarkReviewedRequest { request_id }))
                    .await?;
            }
            "ShareWithDoctor" => {
                c.share_with_doctor(self.req(
                    token,
                    spb::ShareWithDoctorRequest {
                        request_id,
                        doctor: Some(spb::Doctor {
                            npi: ONCOLOGIST.into(),
                            ..Default::default()
                        }),
                        consent: true,
                    },
                ))
                .await?;
            }
            "RecordFollowUp" => {
                c.record_follow_up(self.req(
                    token,
                    spb::RecordFollowUpRequest {
                        request_id,
                        channel: spb::FollowUpChannel::Email as i32,
                        notes: "Sent a summary and a number to call".into(),
                        member_understands: true,
                    },
                ))
                .await?;
            }
            "AskQuestion" => {
                c.ask_question(self.req(
                    token,
                    spb::AskQuestionRequest {
                        request_id,
                        question: "Should the lymph nodes be imaged again?".into(),
                    },
                ))
                .await?;
            }
            "AnswerQuestion" => {
                c.answer_question(self.req(
                    token,
                    spb::AnswerQuestionRequest {
                        request_id,
                        question_number: 1,
                        answer: "Four cycles, then surgery.".into(),
                    },
                ))
                .await?;
            }
            "Close" => {
                c.close(self.req(
                    token,
                    spb::CloseRequest {
                        request_id,
                        closing_note: "Opinion understood".into(),
                    },
                ))
                .await?;
            }
            "PostMessage" => {
                c.post_message(self.req(
                    token,
                    spb::PostMessageRequest {
                        request_id,
                        body: "A note on the request".into(),
                    },
                ))
                .await?;
            }
            "ListMessages" => {
                let messages = c
                    .list_messages(self.req(
                        token,
                        spb::ListMessagesRequest {
                            request_id,
                            page: page(),
                        },
                    ))
                    .await?
                    .into_inner()
                    .messages;
                return Ok(messages.iter().any(|m| m.id == t.message));
            }
            "GetRequest" => {
                c.get_request(self.req(token, spb::GetRequestRequest { request_id }))
                    .await?;
            }
            "ListRequests" => {
                let requests = c
                    .list_requests(self.req(
                        token,
                        spb::ListRequestsRequest {
                            page: page(),
                            ..Default::default()
                        },
                    ))
                    .await?
                    .into_inner()
                    .requests;
                return Ok(requests.iter().any(|r| r.id == t.id));
            }
            "WatchStatus" => {
                let mut stream = c
                    .watch_status(self.req(token, spb::WatchStatusRequest { request_id }))
                    .await?
                    .into_inner();
                let first = stream.message().await?;
                return Ok(first.is_some_and(|m| m.request_id == t.id));
            }
            other => return Err(Status::unimplemented(format!("no call for {other}"))),
        }
        Ok(true)
    }

    async fn call_notices(
        &self,
        name: &str,
        token: Option<&str>,
        t: &Target,
    ) -> Result<bool, Status> {
        let mut c = self.notices();
        match name {
            "ListNotices" => {
                let notices = c
                    .list_notices(self.req(
                        token,
                        npb::ListNoticesRequest {
                            recipient_id: format!("member:{}", t.member),
                            page: page(),
                        },
                    ))
                    .await?
                    .into_inner()
                    .notices;
                return Ok(notices.iter().any(|n| n.id == t.id));
            }
            "GetNotice" => {
                c.get_notice(self.req(token, npb::GetNoticeRequest { id: t.id.clone() }))
                    .await?;
            }
            "ResendNotice" => {
                c.resend_notice(self.req(
                    token,
                    npb::ResendNoticeRequest {
                        id: t.id.clone(),
                        reason: "The member asked for it again".into(),
                    },
                ))
                .await?;
            }
            "ListFailedNotices" => {
                c.list_failed_notices(self.req(
                    token,
                    npb::ListFailedNoticesRequest {
                        state: 0,
                        page: page(),
                    },
                ))
                .await?;
            }
            "GetDeliveryReport" => {
                let now = self.server.clock_now();
                c.get_delivery_report(self.req(
                    token,
                    npb::GetDeliveryReportRequest {
                        from: Some(timestamp(now - chrono::Duration::days(30))),
                        to: Some(timestamp(now + chrono::Duration::days(1))),
                    },
                ))
                .await?;
            }
            other => return Err(Status::unimplemented(format!("no call for {other}"))),
        }
        Ok(true)
    }

    async fn call_audit(
        &self,
        name: &str,
        token: Option<&str>,
        t: &Target,
    ) -> Result<bool, Status> {
        let mut c = self.audit();
        match name {
            "SearchAudit" => {
                c.search_audit(self.req(
                    token,
                    apb::SearchAuditRequest {
                        member_id: t.member.clone(),
                        ..Default::default()
                    },
                ))
                .await?;
            }
            "VerifyAudit" => {
                c.verify_audit(self.req(token, apb::VerifyAuditRequest {}))
                    .await?;
            }
            other => return Err(Status::unimplemented(format!("no call for {other}"))),
        }
        Ok(true)
    }
}

/// A valid rule list of its own that takes effect far in the future, so activating it
/// changes no answer the other rows depend on.
fn future_rule_list() -> String {
    include_str!("../../data/precert/standard-2027.toml")
        .replacen("id = \"standard\"", "id = \"pilot\"", 1)
        .replacen(
            "applies_to = \"all\"",
            "applies_to = { plan_ids = [\"PLAN-GLOBAL\"] }",
            1,
        )
        .replacen("version = \"2027.1\"", "version = \"2099.1\"", 1)
        .replacen(
            "effective_from = 2027-01-01",
            "effective_from = 2099-01-01",
            1,
        )
}

/// How an answer reads, with the status for the report.
fn classify(result: &Result<bool, Status>) -> (Answer, String) {
    match result {
        Ok(true) => (Answer::Allowed, "OK".into()),
        Ok(false) => (Answer::Hidden, "OK, without the record".into()),
        Err(s) => {
            let answer = match s.code() {
                Code::Unauthenticated => Answer::Unauthenticated,
                Code::PermissionDenied => Answer::Denied,
                Code::NotFound => Answer::Hidden,
                _ => Answer::Allowed,
            };
            (answer, format!("{:?}: {}", s.code(), s.message()))
        }
    }
}

async fn every_rpc_answers_each_kind_of_caller_as_the_table_says(db: &TestDb) {
    // The table covers the contracts exactly, before anything is called.
    let methods = contract_methods();
    assert!(
        !methods.is_empty(),
        "the descriptor set lists carepath's methods"
    );
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for row in TABLE {
        if !named.insert(row.method) {
            problems.push(format!("{}: more than one row", row.method));
        }
        if !methods.contains(row.method) {
            problems.push(format!(
                "{}: a row for a method the contracts do not have",
                row.method
            ));
        }
        if !row.expect.contains(&Answer::Allowed) {
            problems.push(format!(
                "{}: nobody is allowed, so the record is never shown to be real",
                row.method
            ));
        }
    }
    for method in &methods {
        if !named.contains(method.as_str()) {
            problems.push(format!("{method}: no row says who may call it"));
        }
    }

    // Every caller of the table makes hundreds of calls in seconds, which a person's
    // rate limit is there to stop: it is off here (tests/tests/overload.rs tests it).
    let options = ServerOptions {
        limits: carepath_server::Limits {
            per_person: None,
            ..carepath_server::Limits::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(db, options).await;
    let channel = server.channel().await;
    let cx = Cx { server, channel };
    let records = cx.records().await;

    // Every problem is reported at once: the table's own, then each call answered
    // otherwise than the table says.
    let mut mismatches = Vec::new();
    let mut calls = 0;
    for row in TABLE.iter().filter(|r| methods.contains(r.method)) {
        let mut order: Vec<(Caller, Answer)> = vec![(Caller::NoToken, Answer::Unauthenticated)];
        order.extend(COLUMNS.into_iter().zip(row.expect));
        // Refused callers first: an allowed change may not make later refusals moot.
        order.sort_by_key(|(_, expected)| *expected == Answer::Allowed);
        let shared = match row.setup {
            Base => Cx::base_target(&records, row.method),
            Own | OwnEach => cx.prepare(&records, row.method).await,
        };
        let mut shared_open = row.setup != Base;
        for (who, expected) in order {
            let fresh = row.setup == OwnEach && expected == Answer::Allowed;
            if fresh && shared_open {
                // The refused callers are done with it; a case open of the same kind
                // would take the next referral in.
                cx.finish(row.method, &shared).await;
                shared_open = false;
            }
            let target = if fresh {
                cx.prepare(&records, row.method).await
            } else {
                shared.clone()
            };
            let token = cx.caller_token(who, &target);
            let result = cx
                .call(&records, row.method, token.as_deref(), &target)
                .await;
            calls += 1;
            let (got, detail) = classify(&result);
            if got != expected {
                mismatches.push(format!(
                    "{} {who}: expected {expected} got {got} ({detail})",
                    row.method
                ));
            }
            // A refused caller gets the same answer for a member who does not exist.
            let refused = matches!(got, Answer::Denied | Answer::Hidden);
            if refused && row.setup == Base && who != Caller::OwnMember {
                let ghost = Target {
                    member: GHOST_MEMBER.into(),
                    ..target.clone()
                };
                let token = cx.caller_token(who, &ghost);
                let again = cx
                    .call(&records, row.method, token.as_deref(), &ghost)
                    .await;
                let (ghost_got, ghost_detail) = classify(&again);
                let ghost_detail = ghost_detail.replace(GHOST_MEMBER, &target.member);
                if (ghost_got, &ghost_detail) != (got, &detail) {
                    mismatches.push(format!(
                        "{} {who}: {got} ({detail}) for {}, but {ghost_got} ({ghost_detail}) \
                         for a member who does not exist",
                        row.method, target.member
                    ));
                }
            }
            if fresh {
                cx.finish(row.method, &target).await;
            }
        }
        if shared_open {
            cx.finish(row.method, &shared).await;
        }
    }
    assert!(
        problems.is_empty() && mismatches.is_empty(),
        "the table does not match the contracts ({} problems), and {} of {calls} calls \
         were not answered as it says:\n{}",
        problems.len(),
        mismatches.len(),
        problems
            .iter()
            .chain(&mismatches)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(calls, methods.len() * 8, "every method, every caller");

    // A refused read of the member's records is in the audit log as denied.
    let audit = db
        .store
        .search_audit(
            &AuditQuery {
                subject: Some(OTHER_MEMBER.into()),
                ..Default::default()
            },
            0,
            5000,
        )
        .await
        .expect("audit");
    for (rpc, kind, id) in [
        (
            "PrecertService/GetCase",
            "precert_case",
            records.precert.id.as_str(),
        ),
        ("DirectoryService/GetMember", "member", MEMBER),
        (
            "CaseService/GetCase",
            "managed_case",
            records.case.id.as_str(),
        ),
    ] {
        assert!(
            audit.iter().any(|a| a.entry.rpc.ends_with(rpc)
                && a.entry.record_kind == kind
                && a.entry.record_id == id
                && a.entry.member_id.as_deref() == Some(MEMBER)
                && a.entry.outcome.as_str() == "denied"),
            "the other member's refused {rpc} of {id} is audited as denied: {audit:#?}"
        );
    }
    cx.server.stop().await;
}

async fn a_reused_request_id_or_a_linked_id_reveals_nothing(db: &TestDb) {
    let server = TestServer::start(db).await;
    let channel = server.channel().await;
    let cx = Cx { server, channel };
    let oncologist = cx.token(Role::Provider, ONCOLOGIST);
    let other = cx.token(Role::Provider, OTHER_PROVIDER);

    // Another provider who names himself as the servicing provider of the oncologist's
    // request id does not get her plan back.
    let mine = done(
        cx.oncology()
            .submit_plan(cx.req(Some(&oncologist), plan_request("onc-reused", "")))
            .await,
        "submit the plan",
    )
    .plan
    .expect("plan");
    let theirs = cx
        .oncology()
        .submit_plan(cx.req(Some(&other), plan_request("onc-reused", OTHER_PROVIDER)))
        .await;
    match theirs {
        Ok(r) => panic!(
            "another provider got the plan {:?} by reusing its request id",
            r.into_inner().plan.map(|p| p.id)
        ),
        Err(s) => assert_eq!(s.code(), Code::AlreadyExists, "{}", s.message()),
    }
    let again = done(
        cx.oncology()
            .submit_plan(cx.req(Some(&oncologist), plan_request("onc-reused", "")))
            .await,
        "the oncologist's retry",
    );
    assert!(!again.created);
    assert_eq!(again.plan.expect("plan").id, mine.id);

    // Precertification request ids are each caller's own: another provider reusing
    // the imaging center's id files a request of its own and sees nothing of the
    // imaging center's case.
    let imaging = cx.token(Role::Provider, IMAGING);
    let mut request = mri(vec![flag("red_flag_symptoms", true)]);
    let mine = done(
        cx.precert()
            .submit(cx.req(Some(&imaging), request.clone()))
            .await,
        "submit the request",
    )
    .case
    .expect("case");
    request.servicing_provider_npi = OTHER_PROVIDER.into();
    let theirs = done(
        cx.precert().submit(cx.req(Some(&other), request)).await,
        "the other provider's request under the same id",
    );
    assert!(theirs.created, "the other provider's request was not filed");
    assert_ne!(theirs.case.expect("case").id, mine.id);

    // A caller who may not see a managed case learns nothing from it, not even
    // whether a precertification case it names exists.
    let case = cx
        .managed_case(cpb::CaseKind::General, CaseStage::WithService)
        .await;
    let stranger = cx.token(Role::Member, OTHER_MEMBER);
    let precert_case_id = "PA-does-not-exist";
    let arranged = cx
        .cases()
        .arrange_service(cx.req(
            Some(&stranger),
            cpb::ArrangeServiceRequest {
                case_id: case.id.clone(),
                kind: cpb::ServiceKind::HomeHealthCare as i32,
                description: "Home visits".into(),
                precert_case_id: precert_case_id.into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("a stranger arranges nothing");
    assert_eq!(arranged.code(), Code::NotFound, "{}", arranged.message());
    let updated = cx
        .cases()
        .update_service(cx.req(
            Some(&stranger),
            cpb::UpdateServiceRequest {
                case_id: case.id.clone(),
                service_id: case.item.clone(),
                state: 0,
                precert_case_id: precert_case_id.into(),
            },
        ))
        .await
        .expect_err("a stranger updates nothing");
    assert_eq!(updated.code(), Code::NotFound, "{}", updated.message());
    cx.server.stop().await;
}
