//! Health data never reaches the logs, on both backends.
//!
//! Runs the real `carepath serve --demo` binary with the carepath crates and the
//! request layer logging at DEBUG, drives every area end to end (precertification
//! with a denial, an oncology plan, a managed case, a second opinion to its published
//! opinion, notices by email, fax, letter and portal, and refused calls), then scans
//! everything the server wrote for each demo member's names, member id and date of
//! birth. The logs are JSON lines, as in production.
//!
//! The same run publishes its domain events to NATS JetStream (a stream of its own):
//! every published event is scanned for each demo member's names, date of birth,
//! address and email, none of which a published event may carry.
//!
//! The binary is the one `cargo build --workspace --bins` puts beside this test's own
//! executable (`target/<profile>/carepath`).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use carepath_app::secondopinion::records::sha256_hex;
use carepath_core::{Actor, Role};
use carepath_oncology::{
    Catalogue, ClinicalContext, Intent, LineOfTherapy, PatientFactors, SiteOfService, StageGroup,
    TreatmentPlan, adopt_alternative,
};
use carepath_proto::{
    cases::v1::{self as cpb, case_service_client::CaseServiceClient},
    common::v1::{PageRequest, Setting, Urgency},
    directory::v1::{self as dpb, directory_service_client::DirectoryServiceClient},
    notify::v1::{self as npb, notification_service_client::NotificationServiceClient},
    oncology::v1::{self as opb, oncology_service_client::OncologyServiceClient},
    precert::v1::{self as ppb, precert_service_client::PrecertServiceClient},
    secondopinion::v1::{self as spb, second_opinion_service_client::SecondOpinionServiceClient},
};
use carepath_server::{auth::Authenticator, oncology::plan_to_proto};
use carepath_tests::{
    TestDb, contract_tests,
    nats::TestStream,
    notify_support::{FaxGateway, SmtpServer, free_port},
    process::{ServerProcess, binary},
};
use chrono::{NaiveDate, Utc};
use tonic::{Code, Request, transport::Channel};

contract_tests!(health_data_never_reaches_the_logs);

/// The carepath crates and the per-call spans and events of the request layer at
/// DEBUG; everything else at INFO.
const LOG_FILTER: &str = "info,carepath=debug,carepath_server=debug,carepath_store=debug,\
carepath_core=debug,carepath_precert=debug,carepath_oncology=debug,carepath_cases=debug,\
carepath_secondopinion=debug,carepath_notify=debug,tower_http=debug";

const DANA: &str = "M100001"; // email
const ROSA: &str = "M100004"; // letters by post
const GREGORY: &str = "M100006"; // portal
const EVELYN: &str = "M100020"; // another household
const IMAGING: &str = "1184649790";
const ONCOLOGIST: &str = "1381083801"; // prefers fax
const NURSE: &str = "RN-001";
const RADIOLOGIST: &str = "MD-RAD-01";
const ADMIN: &str = "AD-001";

/// A demo member as the directory file has them.
struct Person {
    id: String,
    first: String,
    last: String,
    born: String,
    address_lines: Vec<String>,
    email: String,
}

fn demo_members() -> Vec<Person> {
    let text = include_str!("../../data/demo/directory.json");
    let json: serde_json::Value = serde_json::from_str(text).expect("demo directory");
    json["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let field = |name: &str| m[name].as_str().expect(name).to_owned();
            Person {
                id: field("id"),
                first: field("first_name"),
                last: field("last_name"),
                born: field("date_of_birth"),
                address_lines: m["address"]["lines"]
                    .as_array()
                    .expect("address lines")
                    .iter()
                    .map(|l| l.as_str().expect("line").to_owned())
                    .collect(),
                email: m["email"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

/// Where `needle` occurs in `text` as a whole word, ignoring case: one line each.
fn occurrences(text: &str, needle: &str) -> Vec<String> {
    let needle = needle.to_lowercase();
    let mut hits = Vec::new();
    for line in text.lines() {
        let lower = line.to_lowercase();
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at;
            let end = start + needle.len();
            let before = lower[..start].chars().next_back();
            let after = lower[end..].chars().next();
            if !before.is_some_and(char::is_alphanumeric)
                && !after.is_some_and(char::is_alphanumeric)
            {
                hits.push(line.to_owned());
                break;
            }
            from = end;
        }
    }
    hits
}

struct Flow {
    channel: Channel,
    auth: Authenticator,
    today: NaiveDate,
}

impl Flow {
    fn token(&self, role: Role, subject: &str) -> String {
        let actor = Actor::new(role, subject).expect("actor");
        self.auth
            .mint(&actor, Utc::now(), chrono::Duration::hours(1))
            .expect("mint")
    }

    fn req<T>(&self, role: Role, subject: &str, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(Duration::from_secs(20));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token(role, subject))
                .parse()
                .expect("ascii"),
        );
        request
    }

    fn day(&self, offset: i64) -> String {
        (self.today + chrono::Duration::days(offset))
            .format("%Y-%m-%d")
            .to_string()
    }

    fn mri(&self, member: &str, answers: Vec<ppb::ClinicalAnswer>) -> ppb::SubmitRequest {
        ppb::SubmitRequest {
            request_id: format!("mri-{}", uuid::Uuid::now_v7().simple()),
            member_id: member.into(),
            requesting_provider_npi: IMAGING.into(),
            servicing_provider_npi: IMAGING.into(),
            lines: vec![ppb::ServiceLine {
                service_code: "70553".into(),
                units: 1,
                date_of_service: self.day(14),
                setting: Setting::Outpatient as i32,
                ..Default::default()
            }],
            diagnoses: vec!["G43.909".into()],
            urgency: Urgency::Routine as i32,
            answers,
            records: vec![ppb::RecordReference {
                id: "note-1".into(),
                document: "clinical_notes".into(),
            }],
        }
    }

    async fn directory(&self) {
        let mut c = DirectoryServiceClient::new(self.channel.clone());
        c.get_member(self.req(
            Role::Admin,
            ADMIN,
            dpb::GetMemberRequest { id: DANA.into() },
        ))
        .await
        .expect("read a member");
        c.list_members(self.req(
            Role::Member,
            DANA,
            dpb::ListMembersRequest {
                subscriber_id: DANA.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list the family");
    }

    async fn precert(&self) -> String {
        let mut c = PrecertServiceClient::new(self.channel.clone());
        let flag = |id: &str, v: bool| ppb::ClinicalAnswer {
            question_id: id.into(),
            value: Some(ppb::clinical_answer::Value::Flag(v)),
        };
        let weeks = ppb::ClinicalAnswer {
            question_id: "conservative_therapy_weeks".into(),
            value: Some(ppb::clinical_answer::Value::Number(2.0)),
        };
        c.check_requirement(self.req(
            Role::Provider,
            IMAGING,
            ppb::CheckRequirementRequest {
                member_id: DANA.into(),
                rendering_provider_npi: IMAGING.into(),
                diagnoses: vec!["G43.909".into()],
                line: self.mri(DANA, vec![]).lines.pop(),
            },
        ))
        .await
        .expect("check");
        let approved = c
            .submit(self.req(
                Role::Provider,
                IMAGING,
                self.mri(DANA, vec![flag("red_flag_symptoms", true)]),
            ))
            .await
            .expect("submit")
            .into_inner()
            .case
            .expect("case");
        c.get_case(self.req(
            Role::Member,
            DANA,
            ppb::GetCaseRequest {
                id: approved.id.clone(),
            },
        ))
        .await
        .expect("the member reads her case");

        // Information asked for and supplied, for the member who gets letters.
        let pended = c
            .submit(self.req(Role::Provider, IMAGING, self.mri(ROSA, vec![])))
            .await
            .expect("submit")
            .into_inner()
            .case
            .expect("case");
        c.supply_information(self.req(
            Role::Provider,
            IMAGING,
            ppb::SupplyInformationRequest {
                case_id: pended.id,
                answers: vec![flag("red_flag_symptoms", true)],
                records: vec![],
            },
        ))
        .await
        .expect("supply");

        // A denial, with its letters to the provider and the member.
        let review = c
            .submit(self.req(
                Role::Provider,
                IMAGING,
                self.mri(ROSA, vec![flag("red_flag_symptoms", false), weeks]),
            ))
            .await
            .expect("submit")
            .into_inner()
            .case
            .expect("case");
        c.claim_case(self.req(
            Role::PhysicianReviewer,
            RADIOLOGIST,
            ppb::ClaimCaseRequest {
                case_id: review.id.clone(),
            },
        ))
        .await
        .expect("claim");
        c.record_decision(self.req(
            Role::PhysicianReviewer,
            RADIOLOGIST,
            ppb::RecordDecisionRequest {
                case_id: review.id.clone(),
                outcome: ppb::DecisionOutcome::Denied as i32,
                reason_code: "not_medically_necessary".into(),
                rationale: "No red-flag symptoms and two weeks of therapy.".into(),
                guideline: "Advanced imaging criteria, section 3 (illustrative)".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("deny");
        c.list_cases(self.req(Role::Member, ROSA, ppb::ListCasesRequest::default()))
            .await
            .expect("the member lists her cases");
        approved.id
    }

    async fn oncology(&self) {
        let mut c = OncologyServiceClient::new(self.channel.clone());
        let base = TreatmentPlan {
            diagnosis: carepath_core::Icd10Code::parse("C50.911").expect("code"),
            cancer_id: None,
            context: ClinicalContext {
                stage_group: Some(StageGroup::parse("II").expect("stage")),
                biomarkers: [("HER2".to_owned(), "positive".to_owned())]
                    .into_iter()
                    .collect(),
                histology: None,
                line: Some(LineOfTherapy::Neoadjuvant),
                intent: Some(Intent::Curative),
                performance_status: Some(0),
            },
            patient: PatientFactors {
                age_years: Some(55),
                body_surface_area_m2: Some(1.8),
                weight_kg: Some(70.0),
                creatinine_clearance_ml_min: Some(95.0),
                risk_factors: Default::default(),
            },
            drugs: Vec::new(),
            supportive: Vec::new(),
            site_of_service: Some(SiteOfService::Office),
        };
        let plan = adopt_alternative(&Catalogue::shipped(), &base, "tchp").expect("tchp");
        let submitted = c
            .submit_plan(self.req(
                Role::Provider,
                ONCOLOGIST,
                opb::SubmitPlanRequest {
                    request_id: "onc-1".into(),
                    member_id: DANA.into(),
                    treating_provider_npi: ONCOLOGIST.into(),
                    servicing_provider_npi: String::new(),
                    urgency: Urgency::Urgent as i32,
                    start_date: self.day(14),
                    plan: Some(plan_to_proto(&plan)),
                },
            ))
            .await
            .expect("submit the plan")
            .into_inner()
            .plan
            .expect("plan");
        c.get_plan(self.req(Role::Member, DANA, opb::GetPlanRequest { id: submitted.id }))
            .await
            .expect("the member reads her plan");
    }

    async fn managed_case(&self) {
        let mut c = CaseServiceClient::new(self.channel.clone());
        let opened = c
            .open_case(self.req(
                Role::Nurse,
                NURSE,
                cpb::OpenCaseRequest {
                    member_id: GREGORY.into(),
                    kind: cpb::CaseKind::General as i32,
                    reason: "Help with a new diagnosis".into(),
                    diagnosis: "E11.9".into(),
                },
            ))
            .await
            .expect("open a case")
            .into_inner();
        let case_id = opened.case_id;
        c.claim_case(self.req(
            Role::Nurse,
            NURSE,
            cpb::ClaimCaseRequest {
                case_id: case_id.clone(),
            },
        ))
        .await
        .expect("claim");
        c.add_goal(self.req(
            Role::Nurse,
            NURSE,
            cpb::AddGoalRequest {
                case_id: case_id.clone(),
                description: "Checks blood sugar daily".into(),
                target_date: self.day(60),
            },
        ))
        .await
        .expect("goal");
        c.record_interaction(self.req(
            Role::Nurse,
            NURSE,
            cpb::RecordInteractionRequest {
                case_id: case_id.clone(),
                channel: cpb::InteractionChannel::Call as i32,
                summary: "Went through the new medication".into(),
                notify_member: true,
                ..Default::default()
            },
        ))
        .await
        .expect("interaction");
        c.get_case(self.req(Role::Member, GREGORY, cpb::GetCaseRequest { case_id }))
            .await
            .expect("the member reads her case");
    }

    async fn second_opinion(&self) {
        use spb::questionnaire_answer::Value;
        let mut c = SecondOpinionServiceClient::new(self.channel.clone());
        let request = c
            .submit(self.req(
                Role::Member,
                DANA,
                spb::SubmitRequest {
                    member_id: DANA.into(),
                    diagnosis: "C50.911".into(),
                    major_surgery_recommended: false,
                    current_treatment: "Chemotherapy before surgery".into(),
                    emergency: false,
                    first_opinion: Some(spb::FirstOpinion {
                        physician_npi: ONCOLOGIST.into(),
                        given_on: self.day(-30),
                        summary: "Early breast cancer".into(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .expect("ask for a second opinion")
            .into_inner()
            .request
            .expect("request");
        let id = request.id;
        let answer = |q: &str, value: Value| spb::QuestionnaireAnswer {
            question_id: q.into(),
            value: Some(value),
        };
        c.answer_questionnaire(self.req(
            Role::Member,
            DANA,
            spb::AnswerQuestionnaireRequest {
                request_id: id.clone(),
                answers: vec![
                    answer("diagnosed_on", Value::Date(self.day(-40))),
                    answer("treatment_started", Value::YesNo(false)),
                    answer("questions_for_expert", Value::Text("Is this right?".into())),
                ],
            },
        ))
        .await
        .expect("answer");
        let mut physician = String::new();
        for (kind, name, content_type) in [
            (spb::RecordKind::PathologySlide, "biopsy.tiff", "image/tiff"),
            (spb::RecordKind::Ct, "staging.dcm", "application/dicom"),
            (
                spb::RecordKind::ClinicalReport,
                "notes.pdf",
                "application/pdf",
            ),
        ] {
            use spb::upload_record_request::Part;
            let bytes = format!("{name} for the expert").into_bytes();
            let messages = vec![
                spb::UploadRecordRequest {
                    part: Some(Part::Header(spb::RecordHeader {
                        request_id: id.clone(),
                        kind: kind as i32,
                        file_name: name.into(),
                        content_type: content_type.into(),
                        size_bytes: bytes.len() as u64,
                        sha256: sha256_hex(&bytes),
                        description: String::new(),
                    })),
                },
                spb::UploadRecordRequest {
                    part: Some(Part::Chunk(bytes)),
                },
            ];
            let uploaded = c
                .upload_record(self.req(Role::Member, DANA, futures::stream::iter(messages)))
                .await
                .expect("upload")
                .into_inner();
            if let Some(p) = uploaded.request.and_then(|r| r.physician) {
                physician = p.npi;
            }
        }
        assert!(!physician.is_empty(), "records complete: a lead physician");
        c.post_message(self.req(
            Role::Member,
            DANA,
            spb::PostMessageRequest {
                request_id: id.clone(),
                body: "Should I bring my scans on a disc?".into(),
            },
        ))
        .await
        .expect("message");
        c.publish_opinion(self.req(
            Role::Provider,
            &physician,
            spb::PublishOpinionRequest {
                request_id: id.clone(),
                opinion: Some(spb::OpinionContent {
                    diagnosis: spb::DiagnosisVerdict::Confirmed as i32,
                    treatment: spb::TreatmentVerdict::Confirmed as i32,
                    narrative: "The records support the diagnosis and the plan.".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("publish");
        c.share_with_doctor(self.req(
            Role::Member,
            DANA,
            spb::ShareWithDoctorRequest {
                request_id: id.clone(),
                doctor: Some(spb::Doctor {
                    npi: ONCOLOGIST.into(),
                    ..Default::default()
                }),
                consent: true,
            },
        ))
        .await
        .expect("share");
        c.get_request(self.req(
            Role::Member,
            DANA,
            spb::GetRequestRequest { request_id: id },
        ))
        .await
        .expect("the member reads her request");
    }

    /// Calls that are refused; their answers name records, so their logging is
    /// scanned too.
    async fn refusals(&self, precert_case: &str) {
        let mut directory = DirectoryServiceClient::new(self.channel.clone());
        let err = directory
            .get_member(self.req(
                Role::Member,
                EVELYN,
                dpb::GetMemberRequest { id: DANA.into() },
            ))
            .await
            .expect_err("another member's record");
        assert_eq!(err.code(), Code::NotFound);
        let mut precert = PrecertServiceClient::new(self.channel.clone());
        let err = precert
            .get_case(self.req(
                Role::Member,
                EVELYN,
                ppb::GetCaseRequest {
                    id: precert_case.into(),
                },
            ))
            .await
            .expect_err("another member's case");
        assert_eq!(err.code(), Code::NotFound);
        let err = precert
            .submit(self.req(Role::Member, EVELYN, self.mri(DANA, vec![])))
            .await
            .expect_err("a request for someone else");
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = precert
            .get_case(Request::new(ppb::GetCaseRequest {
                id: precert_case.into(),
            }))
            .await
            .expect_err("no token");
        assert_eq!(err.code(), Code::Unauthenticated);
    }

    /// Reads the members' notices once every one has been tried on its channel.
    async fn notices(&self) {
        let mut c = NotificationServiceClient::new(self.channel.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = c
                .list_notices(self.req(
                    Role::Admin,
                    ADMIN,
                    npb::ListNoticesRequest {
                        recipient_id: String::new(),
                        page: Some(PageRequest {
                            page_size: 500,
                            page_token: String::new(),
                        }),
                    },
                ))
                .await
                .expect("list notices")
                .into_inner()
                .notices;
            let waiting = all
                .iter()
                .filter(|n| n.state == npb::DeliveryState::Pending as i32)
                .count();
            let told = [DANA, ROSA, GREGORY]
                .iter()
                .all(|m| all.iter().any(|n| n.recipient_id == format!("member:{m}")));
            if told && waiting == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "notices still waiting after 30 s: {waiting} of {} ({told})",
                all.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for member in [DANA, ROSA, GREGORY] {
            let mine = c
                .list_notices(self.req(Role::Member, member, npb::ListNoticesRequest::default()))
                .await
                .expect("the member's notices")
                .into_inner()
                .notices;
            for notice in mine {
                c.get_notice(self.req(
                    Role::Member,
                    member,
                    npb::GetNoticeRequest { id: notice.id },
                ))
                .await
                .expect("read a notice");
            }
        }
    }
}

async fn health_data_never_reaches_the_logs(db: &TestDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(free_port(), &dir.path().join("smtp"), Duration::ZERO);
    let fax = FaxGateway::start(&dir.path().join("fax"));
    let key = dir.path().join("signing.pem");
    let auth = Authenticator::with_local_key(&key).expect("signing key");
    let stream = TestStream::new("logscan");
    let mut command = Command::new(binary("carepath", Some("--nats-subject-prefix")));
    command
        .args(["serve", "--demo", "--database-url", &db.url])
        .args(stream.flags())
        .arg("--signing-key")
        .arg(&key)
        .arg("--records-dir")
        .arg(dir.path().join("records"))
        .arg("--print-batch-dir")
        .arg(dir.path().join("print"))
        .args(["--smtp-port", &smtp.port.to_string()])
        .args(["--fax-gateway-url", &fax.url])
        .env("CAREPATH_LOG", LOG_FILTER);
    let server = ServerProcess::start("carepath", command);
    let channel = server.channel().await;

    let flow = Flow {
        channel,
        auth,
        today: Utc::now().date_naive(),
    };
    flow.directory().await;
    let case = flow.precert().await;
    flow.oncology().await;
    flow.managed_case().await;
    flow.second_opinion().await;
    flow.refusals(&case).await;
    flow.notices().await;
    assert!(!smtp.messages().is_empty(), "emails went out");
    assert!(!fax.faxes().is_empty(), "faxes went out");
    relay_drained(db).await;
    let logs = server.terminate().join("\n");
    let published = stream.messages().await;
    stream.delete().await;

    // The scan cannot pass on an empty or silent log.
    for expected in [
        "carepath listening",
        r#""method":"/carepath.precert.v1.PrecertService/Submit""#,
        r#""method":"/carepath.secondopinion.v1.SecondOpinionService/UploadRecord""#,
        "started processing request",
        "authenticated",
        "notices stored",
        "notice sent",
        "unauthenticated call refused",
    ] {
        assert!(
            logs.contains(expected),
            "the log has no {expected:?}; it reads:\n{logs}"
        );
    }

    let mut hits = Vec::new();
    for person in demo_members() {
        for (what, needle) in [
            ("member id", &person.id),
            ("first name", &person.first),
            ("last name", &person.last),
            ("date of birth", &person.born),
        ] {
            for line in occurrences(&logs, needle) {
                hits.push(format!("{what} {needle:?} of {}: {line}", person.id));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "{} log lines carry a member's health data:\n{}",
        hits.len(),
        hits.join("\n")
    );

    // Published events: ids and codes only. The scan cannot pass on an empty stream
    // or one without the areas driven above.
    let kinds: std::collections::BTreeSet<String> = published
        .iter()
        .filter_map(|m| m.body["type"].as_str().map(str::to_owned))
        .collect();
    for expected in [
        "carepath.directory.member.upserted",
        "carepath.precert.case.denied",
        "carepath.oncology.plan.submitted",
        "carepath.cases.case.opened",
        "carepath.secondopinion.opinion.published",
    ] {
        assert!(
            kinds.contains(expected),
            "no {expected} was published: {kinds:?}"
        );
    }
    let text = published
        .iter()
        .map(|m| m.raw.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut leaks = Vec::new();
    for person in demo_members() {
        let mut needles = vec![
            ("first name", &person.first),
            ("last name", &person.last),
            ("date of birth", &person.born),
            ("email", &person.email),
        ];
        needles.extend(person.address_lines.iter().map(|l| ("address", l)));
        for (what, needle) in needles.into_iter().filter(|(_, n)| !n.is_empty()) {
            for line in occurrences(&text, needle) {
                leaks.push(format!("{what} {needle:?} of {}: {line}", person.id));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} published events carry a member's personal data:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// Waits until the event relay has published everything owed.
async fn relay_drained(db: &TestDb) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = db
            .store
            .outbox_stats(carepath_app::events::relay::CONSUMER)
            .await
            .expect("relay stats");
        if stats.pending == 0 && stats.done > 0 {
            assert_eq!(stats.dead, 0, "the relay parked events as dead");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the relay still owes {} events",
            stats.pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn whole_words_are_found_regardless_of_case() {
    let text = "a Dana b\nmember:M100001 done\nM1000010\nTransitions\ndana.whitcombe@example.org";
    assert_eq!(occurrences(text, "Dana").len(), 2);
    assert_eq!(occurrences(text, "M100001").len(), 1);
    assert!(occurrences(text, "Tran").is_empty());
    assert_eq!(occurrences(text, "Whitcombe").len(), 1);
}
