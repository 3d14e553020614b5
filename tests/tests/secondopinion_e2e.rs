//! Remote expert second opinion end to end through the real server, on both backends:
//! the two stories (a member in the United Kingdom with chronic kidney failure, a
//! member in Dubai recommended for replacement of both knees), refusals, the upload
//! guarantees (a 100 MB record arrives whole; a wrong checksum keeps nothing), who may
//! see what, live status, questionnaires, lateness and the follow-up rules.

use std::path::{Path, PathBuf};

use carepath_app::secondopinion::records::{RecordStorage, sha256_hex};
use carepath_core::Role;
use carepath_proto::{
    directory::v1::{self as dir, directory_service_client::DirectoryServiceClient},
    secondopinion::v1::{
        self as pb, questionnaire_answer::Value,
        second_opinion_service_client::SecondOpinionServiceClient, upload_record_request::Part,
    },
};
use carepath_store::AuditQuery;
use carepath_tests::{TestDb, TestServer, contract_tests};
use futures::StreamExt;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

contract_tests!(
    the_uk_member_with_kidney_failure_is_reassured,
    the_dubai_member_gets_a_less_invasive_surgery_and_a_local_specialist,
    ineligible_requests_are_refused_with_the_reason,
    a_100_mb_upload_arrives_whole_with_its_checksum_verified,
    a_wrong_checksum_is_rejected_and_nothing_is_kept,
    a_second_member_cannot_read_the_first_members_records,
    watch_status_receives_every_change_and_a_reconnect_starts_with_the_current_status,
    answers_are_checked_against_the_questionnaire,
    only_the_lead_physician_publishes_once_and_late_requests_show,
    at_most_three_follow_up_questions_and_closing_waits_for_answers,
);

const UK_MEMBER: &str = "M100014";
const DUBAI_MEMBER: &str = "M100015";
const OTHER_MEMBER: &str = "M100016";
const UK_OWN_NEPHROLOGIST: &str = "1230457628";
const EXPERT_NEPHROLOGIST: &str = "1899844926";
const EXPERT_KNEE_SURGEON: &str = "1740286731";
const LOCAL_KNEE_SURGEON: &str = "1495212221";
const NURSE: &str = "RN-004";
const ARABIC_NURSE: &str = "RN-003";
const MIB: usize = 1024 * 1024;

type Client = SecondOpinionServiceClient<Channel>;

struct Ctx {
    server: TestServer,
    c: Client,
}

impl Ctx {
    async fn start(db: &TestDb) -> Ctx {
        let server = TestServer::start(db).await;
        let c = SecondOpinionServiceClient::new(server.channel().await)
            .max_decoding_message_size(8 * MIB)
            .max_encoding_message_size(8 * MIB);
        Ctx { server, c }
    }

    fn member(&self, id: &str) -> String {
        self.server.token(Role::Member, id)
    }

    fn provider(&self, npi: &str) -> String {
        self.server.token(Role::Provider, npi)
    }

    fn nurse(&self, id: &str) -> String {
        self.server.token(Role::Nurse, id)
    }

    fn req<T>(&self, token: &str, message: T) -> tonic::Request<T> {
        self.server.request(token, message)
    }

    async fn get(&mut self, token: &str, id: &str) -> Result<pb::SecondOpinion, tonic::Status> {
        let r = self
            .c
            .get_request(self.server.request(
                token,
                pb::GetRequestRequest {
                    request_id: id.into(),
                },
            ))
            .await?;
        Ok(r.into_inner().request.unwrap())
    }

    async fn upload(
        &mut self,
        token: &str,
        id: &str,
        (kind, name, content_type): (pb::RecordKind, &str, &str),
        bytes: Vec<u8>,
        declared_sha: Option<String>,
    ) -> Result<pb::UploadRecordResponse, tonic::Status> {
        let sha = declared_sha.unwrap_or_else(|| sha256_hex(&bytes));
        let mut messages = vec![pb::UploadRecordRequest {
            part: Some(Part::Header(pb::RecordHeader {
                request_id: id.into(),
                kind: kind as i32,
                file_name: name.into(),
                content_type: content_type.into(),
                size_bytes: bytes.len() as u64,
                sha256: sha,
                description: format!("{name} from the member"),
            })),
        }];
        for chunk in bytes.chunks(MIB) {
            messages.push(pb::UploadRecordRequest {
                part: Some(Part::Chunk(chunk.to_vec())),
            });
        }
        let r = self
            .c
            .upload_record(self.server.request(token, futures::stream::iter(messages)))
            .await?;
        Ok(r.into_inner())
    }

    async fn download(
        &mut self,
        token: &str,
        id: &str,
        record: &str,
    ) -> Result<(pb::Record, Vec<u8>), tonic::Status> {
        use pb::download_record_response::Part;
        let mut stream = self
            .c
            .download_record(self.server.request(
                token,
                pb::DownloadRecordRequest {
                    request_id: id.into(),
                    record_id: record.into(),
                },
            ))
            .await?
            .into_inner();
        let mut meta = None;
        let mut bytes = Vec::new();
        while let Some(m) = stream.next().await {
            match m?.part {
                Some(Part::Record(r)) => meta = Some(r),
                Some(Part::Chunk(c)) => {
                    // Whole messages of 1 MiB, not the store's small pieces.
                    assert!(c.len() == MIB || bytes.len() + c.len() == expected_len(&meta));
                    bytes.extend_from_slice(&c);
                }
                None => {}
            }
        }
        Ok((meta.expect("metadata first"), bytes))
    }
}

fn expected_len(meta: &Option<pb::Record>) -> usize {
    meta.as_ref().map_or(0, |m| m.size_bytes as usize)
}

fn text(id: &str, v: &str) -> pb::QuestionnaireAnswer {
    pb::QuestionnaireAnswer {
        question_id: id.into(),
        value: Some(Value::Text(v.into())),
    }
}

fn choice(id: &str, v: &str) -> pb::QuestionnaireAnswer {
    pb::QuestionnaireAnswer {
        question_id: id.into(),
        value: Some(Value::Choice(v.into())),
    }
}

fn yes_no(id: &str, v: bool) -> pb::QuestionnaireAnswer {
    pb::QuestionnaireAnswer {
        question_id: id.into(),
        value: Some(Value::YesNo(v)),
    }
}

fn number(id: &str, v: f64) -> pb::QuestionnaireAnswer {
    pb::QuestionnaireAnswer {
        question_id: id.into(),
        value: Some(Value::Number(v)),
    }
}

fn kidney_request() -> pb::SubmitRequest {
    pb::SubmitRequest {
        member_id: UK_MEMBER.into(),
        diagnosis: "N18.4".into(),
        major_surgery_recommended: false,
        current_treatment: "A daily ACE inhibitor to slow further damage to the kidneys".into(),
        emergency: false,
        first_opinion: Some(pb::FirstOpinion {
            physician_npi: UK_OWN_NEPHROLOGIST.into(),
            physician_name: "Dr. Fiona MacAllister".into(),
            practice: String::new(),
            given_on: "2026-10-02".into(),
            summary: "Chronic kidney disease stage 4; continue a daily oral ACE inhibitor".into(),
        }),
    }
}

fn kidney_answers() -> Vec<pb::QuestionnaireAnswer> {
    vec![
        choice("stage", "4"),
        yes_no("on_dialysis", false),
        text("current_treatment", "Lisinopril 10 mg daily"),
        number("latest_egfr", 22.0),
        text(
            "questions_for_expert",
            "Is my treatment aggressive enough, or should I consider alternatives?",
        ),
    ]
}

fn knee_request() -> pb::SubmitRequest {
    pb::SubmitRequest {
        member_id: DUBAI_MEMBER.into(),
        diagnosis: "M17.0".into(),
        major_surgery_recommended: true,
        current_treatment: "Total replacement of both knees".into(),
        emergency: false,
        first_opinion: Some(pb::FirstOpinion {
            physician_npi: String::new(),
            physician_name: "Dr. Rashid Karim".into(),
            practice: "Dubai Bone and Joint Centre".into(),
            given_on: "2026-10-20".into(),
            summary: "Bilateral primary osteoarthritis of the knees; total knee replacement of both knees recommended".into(),
        }),
    }
}

fn knee_answers() -> Vec<pb::QuestionnaireAnswer> {
    vec![
        choice("knees_affected", "both"),
        number("pain_years", 6.0),
        yes_no("tried_physiotherapy", true),
        text(
            "non_surgical_results",
            "Physiotherapy and injections helped for a few months only",
        ),
        text("activity_goals", "Running every day"),
        text(
            "questions_for_expert",
            "Is replacing both knees the best option for me?",
        ),
    ]
}

async fn submit(ctx: &mut Ctx, token: &str, req: pb::SubmitRequest) -> pb::SecondOpinion {
    let r = ctx
        .c
        .submit(ctx.req(token, req))
        .await
        .unwrap()
        .into_inner();
    r.request.unwrap()
}

async fn answer(
    ctx: &mut Ctx,
    token: &str,
    id: &str,
    answers: Vec<pb::QuestionnaireAnswer>,
) -> pb::SecondOpinion {
    ctx.c
        .answer_questionnaire(ctx.req(
            token,
            pb::AnswerQuestionnaireRequest {
                request_id: id.into(),
                answers,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

/// A request of the UK member that has reached review with its expert.
async fn kidney_in_review(ctx: &mut Ctx) -> String {
    let member = ctx.member(UK_MEMBER);
    let r = submit(ctx, &member, kidney_request()).await;
    answer(ctx, &member, &r.id, kidney_answers()).await;
    ctx.upload(
        &member,
        &r.id,
        (pb::RecordKind::LabResult, "labs.pdf", "application/pdf"),
        b"eGFR 22".to_vec(),
        None,
    )
    .await
    .unwrap();
    let done = ctx
        .upload(
            &member,
            &r.id,
            (
                pb::RecordKind::ClinicalReport,
                "letter.pdf",
                "application/pdf",
            ),
            b"clinic letter".to_vec(),
            None,
        )
        .await
        .unwrap()
        .request
        .unwrap();
    assert_eq!(done.status, pb::Status::InReview as i32);
    r.id
}

fn confirm_opinion() -> pb::OpinionContent {
    pb::OpinionContent {
        diagnosis: pb::DiagnosisVerdict::Confirmed as i32,
        revised_diagnosis: String::new(),
        treatment: pb::TreatmentVerdict::Confirmed as i32,
        treatment_recommendation: String::new(),
        further_tests: vec!["Urine albumin-to-creatinine ratio every three months".into()],
        answers: vec![pb::QuestionResponse {
            question: "Is my treatment aggressive enough?".into(),
            answer: "Yes: an ACE inhibitor at this dose is the standard of care at stage 4.".into(),
        }],
        narrative: "The records support chronic kidney disease stage 4. The current plan is appropriate; no change is recommended.".into(),
    }
}

async fn publish(
    ctx: &mut Ctx,
    npi: &str,
    id: &str,
    opinion: pb::OpinionContent,
) -> Result<pb::SecondOpinion, tonic::Status> {
    let token = ctx.provider(npi);
    Ok(ctx
        .c
        .publish_opinion(ctx.req(
            &token,
            pb::PublishOpinionRequest {
                request_id: id.into(),
                opinion: Some(opinion),
            },
        ))
        .await?
        .into_inner()
        .request
        .unwrap())
}

async fn follow_up(
    ctx: &mut Ctx,
    nurse: &str,
    id: &str,
    channel: pb::FollowUpChannel,
) -> Result<pb::SecondOpinion, tonic::Status> {
    let token = ctx.nurse(nurse);
    Ok(ctx
        .c
        .record_follow_up(ctx.req(
            &token,
            pb::RecordFollowUpRequest {
                request_id: id.into(),
                channel: channel as i32,
                notes: "Went through the opinion with the member, who understood it".into(),
                member_understands: true,
            },
        ))
        .await?
        .into_inner()
        .request
        .unwrap())
}

async fn close(ctx: &mut Ctx, nurse: &str, id: &str) -> Result<pb::SecondOpinion, tonic::Status> {
    let token = ctx.nurse(nurse);
    Ok(ctx
        .c
        .close(ctx.req(
            &token,
            pb::CloseRequest {
                request_id: id.into(),
                closing_note: "Opinion understood; no further questions".into(),
            },
        ))
        .await?
        .into_inner()
        .request
        .unwrap())
}

async fn event_kinds(db: &TestDb, id: &str) -> Vec<(String, serde_json::Value)> {
    db.store
        .events_for("secondopinion_request", id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            assert!(e.member_id.is_some(), "{} has no member", e.kind);
            (e.kind, e.payload)
        })
        .collect()
}

fn payload<'a>(events: &'a [(String, serde_json::Value)], kind: &str) -> &'a serde_json::Value {
    &events
        .iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no {kind} event"))
        .1
}

fn field(status: &tonic::Status) -> String {
    status
        .get_details_bad_request()
        .map(|d| d.field_violations[0].field.clone())
        .unwrap_or_default()
}

async fn the_uk_member_with_kidney_failure_is_reassured(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let member = ctx.member(UK_MEMBER);

    let eligible = ctx
        .c
        .check_eligibility(ctx.req(
            &member,
            pb::CheckEligibilityRequest {
                member_id: UK_MEMBER.into(),
                diagnosis: "N18.4".into(),
                first_opinion: kidney_request().first_opinion,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(eligible.eligible, "{eligible:?}");
    assert_eq!(eligible.diagnosis_group, "chronic_kidney_disease");

    let submitted = ctx
        .c
        .submit(ctx.req(&member, kidney_request()))
        .await
        .unwrap()
        .into_inner();
    let r = submitted.request.unwrap();
    assert_eq!(r.status, pb::Status::Submitted as i32);
    assert_eq!(
        submitted.questionnaire.unwrap().id,
        "chronic_kidney_disease"
    );
    let id = r.id.clone();

    let mut watch = ctx
        .c
        .watch_status(ctx.req(
            &member,
            pb::WatchStatusRequest {
                request_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert!(first.snapshot);
    assert_eq!(first.status, pb::Status::Submitted as i32);

    let r = answer(&mut ctx, &member, &id, kidney_answers()).await;
    assert_eq!(r.status, pb::Status::AwaitingRecords as i32);
    let missing: Vec<_> = r
        .required_records
        .iter()
        .filter(|x| !x.received)
        .map(|x| x.id.as_str())
        .collect();
    assert_eq!(missing, ["kidney_labs", "nephrology_notes"]);

    let labs = ctx
        .upload(
            &member,
            &id,
            (
                pb::RecordKind::LabResult,
                "kidney-labs.pdf",
                "application/pdf",
            ),
            b"%PDF eGFR 22, creatinine 2.9".to_vec(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        labs.request.unwrap().status,
        pb::Status::AwaitingRecords as i32
    );
    let notes = ctx
        .upload(
            &member,
            &id,
            (
                pb::RecordKind::ClinicalReport,
                "nephrology-letter.pdf",
                "application/pdf",
            ),
            b"%PDF clinic letter".to_vec(),
            None,
        )
        .await
        .unwrap()
        .request
        .unwrap();
    assert_eq!(notes.status, pb::Status::InReview as i32);
    assert!(notes.due_at.is_some());
    let physician = ctx
        .c
        .get_physician(ctx.req(
            &member,
            pb::GetPhysicianRequest {
                request_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .physician
        .unwrap();
    assert_eq!(physician.npi, EXPERT_NEPHROLOGIST);
    assert_eq!(physician.specialty, "nephrology");
    assert!(
        physician.biography.contains("chronic kidney disease"),
        "{}",
        physician.biography
    );

    // The expert reads the records before writing.
    let expert = ctx.provider(EXPERT_NEPHROLOGIST);
    let record_id = notes.records[0].id.clone();
    let (meta, bytes) = ctx.download(&expert, &id, &record_id).await.unwrap();
    assert_eq!(meta.file_name, "kidney-labs.pdf");
    assert_eq!(bytes, b"%PDF eGFR 22, creatinine 2.9");

    // A nurse coordinator takes the request on.
    let nurse = ctx.nurse(NURSE);
    let coordinated = ctx
        .c
        .coordinate(ctx.req(
            &nurse,
            pb::CoordinateRequest {
                request_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(coordinated.coordinator_id, NURSE);

    // A secure message from the member, answered by the nurse.
    ctx.c
        .post_message(ctx.req(
            &member,
            pb::PostMessageRequest {
                request_id: id.clone(),
                body: "When will the opinion be ready?".into(),
            },
        ))
        .await
        .unwrap();
    ctx.c
        .post_message(ctx.req(
            &nurse,
            pb::PostMessageRequest {
                request_id: id.clone(),
                body: "Within ten business days of your complete records.".into(),
            },
        ))
        .await
        .unwrap();
    let messages = ctx
        .c
        .list_messages(ctx.req(
            &expert,
            pb::ListMessagesRequest {
                request_id: id.clone(),
                page: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .messages;
    let authors: Vec<_> = messages.iter().map(|m| m.author_role.as_str()).collect();
    assert_eq!(authors, ["member", "nurse"]);

    let published = publish(&mut ctx, EXPERT_NEPHROLOGIST, &id, confirm_opinion())
        .await
        .unwrap();
    assert_eq!(published.status, pb::Status::OpinionPublished as i32);
    let opinion = published.opinion.unwrap().content.unwrap();
    assert_eq!(opinion.diagnosis, pb::DiagnosisVerdict::Confirmed as i32);
    assert_eq!(opinion.treatment, pb::TreatmentVerdict::Confirmed as i32);

    let reviewed = ctx
        .c
        .mark_reviewed(ctx.req(
            &member,
            pb::MarkReviewedRequest {
                request_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(reviewed.status, pb::Status::OpinionReviewed as i32);
    follow_up(&mut ctx, NURSE, &id, pb::FollowUpChannel::Phone)
        .await
        .unwrap();
    let closed = close(&mut ctx, NURSE, &id).await.unwrap();
    assert_eq!(closed.status, pb::Status::Closed as i32);

    let mut seen = Vec::new();
    while let Some(change) = watch.next().await {
        seen.push(pb::Status::try_from(change.unwrap().status).unwrap());
    }
    assert_eq!(
        seen,
        [
            pb::Status::AwaitingRecords,
            pb::Status::AwaitingAssignment,
            pb::Status::InReview,
            pb::Status::OpinionPublished,
            pb::Status::OpinionReviewed,
            pb::Status::Closed,
        ]
    );

    let full = ctx.get(&member, &id).await.unwrap();
    let actions: Vec<_> = full.history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "submitted",
            "answers_saved",
            "questionnaire_completed",
            "record_received",
            "record_received",
            "records_complete",
            "physician_assigned",
            "coordinator_assigned",
            "opinion_published",
            "opinion_reviewed",
            "follow_up_done",
            "closed",
        ]
    );

    let events = event_kinds(db, &id).await;
    let kinds: Vec<_> = events
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| {
            k.starts_with("secondopinion.request")
                || k.starts_with("secondopinion.opinion")
                || k.starts_with("secondopinion.followup")
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "secondopinion.request.submitted",
            "secondopinion.request.questionnaire_completed",
            "secondopinion.request.records_missing",
            "secondopinion.request.records_received",
            "secondopinion.request.physician_assigned",
            "secondopinion.opinion.published",
            "secondopinion.opinion.reviewed",
            "secondopinion.followup.done",
            "secondopinion.request.closed",
        ]
    );
    let submitted = payload(&events, "secondopinion.request.submitted");
    assert_eq!(submitted["member_id"], UK_MEMBER);
    assert_eq!(submitted["diagnosis"], "N18.4");
    assert_eq!(submitted["diagnosis_group"], "chronic_kidney_disease");
    assert_eq!(submitted["major_surgery"], false);
    assert_eq!(submitted["country"], "GB");
    assert_eq!(submitted["condition"], "Chronic kidney disease");
    let missing = payload(&events, "secondopinion.request.records_missing");
    assert_eq!(missing["missing_records"].as_array().unwrap().len(), 2);
    let assigned = payload(&events, "secondopinion.request.physician_assigned");
    assert_eq!(assigned["physician_name"], "Dr. Samuel Adeyemi");
    assert_eq!(assigned["physician_specialty"], "nephrology");
    let published = payload(&events, "secondopinion.opinion.published");
    assert_eq!(published["request_id"], id.as_str());
    assert_eq!(published["nurse_id"], NURSE);
    let closed = payload(&events, "secondopinion.request.closed");
    assert_eq!(
        closed["closing_note"],
        "Opinion understood; no further questions"
    );

    // Closed: nurses no longer see it; the member still does.
    let gone = ctx.get(&nurse, &id).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    ctx.get(&member, &id).await.unwrap();
    ctx.server.stop().await;
}

async fn the_dubai_member_gets_a_less_invasive_surgery_and_a_local_specialist(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let member = ctx.member(DUBAI_MEMBER);
    let r = submit(&mut ctx, &member, knee_request()).await;
    let id = r.id.clone();
    assert_eq!(r.basis, pb::Basis::MajorSurgery as i32);
    let r = answer(&mut ctx, &member, &id, knee_answers()).await;
    assert_eq!(r.status, pb::Status::AwaitingRecords as i32);

    // The X-rays are uploaded; the surgeon's notes arrive by fax and are logged.
    let xray = vec![0x49, 0x49, 0x2a, 0x00, 1, 2, 3, 4, 5, 6, 7, 8];
    let up = ctx
        .upload(
            &member,
            &id,
            (pb::RecordKind::Xray, "knees-standing.tiff", "image/tiff"),
            xray.clone(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(up.record.unwrap().sha256, sha256_hex(&xray));
    let nurse = ctx.nurse(ARABIC_NURSE);
    let logged = ctx
        .c
        .log_record(ctx.req(
            &nurse,
            pb::LogRecordRequest {
                request_id: id.clone(),
                kind: pb::RecordKind::ClinicalReport as i32,
                channel: pb::RecordChannel::Fax as i32,
                description:
                    "Surgeon's notes recommending bilateral knee replacement, 3 pages".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let r = logged.request.unwrap();
    assert_eq!(r.status, pb::Status::InReview as i32);
    assert_eq!(r.coordinator_id, ARABIC_NURSE);
    let physician = ctx
        .c
        .get_physician(ctx.req(
            &member,
            pb::GetPhysicianRequest {
                request_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .physician
        .unwrap();
    assert_eq!(physician.npi, EXPERT_KNEE_SURGEON);
    assert!(physician.languages.contains(&"ar".to_string()));

    let expert = ctx.provider(EXPERT_KNEE_SURGEON);
    let (_, bytes) = ctx.download(&expert, &id, &r.records[0].id).await.unwrap();
    assert_eq!(bytes, xray);

    let opinion = pb::OpinionContent {
        diagnosis: pb::DiagnosisVerdict::Confirmed as i32,
        treatment: pb::TreatmentVerdict::Changed as i32,
        treatment_recommendation: "Arthroscopic surgery with partial (unicompartmental) replacement instead of total replacement of both knees: equally effective, lower risk, much shorter recovery".into(),
        further_tests: vec!["MRI of both knees to confirm the damage is confined to the medial compartments".into()],
        narrative: "Surgery is the right course, but a less invasive procedure is recommended.".into(),
        ..Default::default()
    };
    let published = publish(&mut ctx, EXPERT_KNEE_SURGEON, &id, opinion)
        .await
        .unwrap();
    assert_eq!(
        published.opinion.unwrap().content.unwrap().treatment,
        pb::TreatmentVerdict::Changed as i32
    );

    // A copy for the member's own doctor, with consent.
    let no_consent = ctx
        .c
        .share_with_doctor(ctx.req(
            &member,
            pb::ShareWithDoctorRequest {
                request_id: id.clone(),
                doctor: Some(pb::Doctor {
                    name: "Dr. Rashid Karim".into(),
                    email: "r.karim@example.org".into(),
                    ..Default::default()
                }),
                consent: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(no_consent.code(), Code::InvalidArgument);
    assert_eq!(field(&no_consent), "consent");
    let shared = ctx
        .c
        .share_with_doctor(ctx.req(
            &member,
            pb::ShareWithDoctorRequest {
                request_id: id.clone(),
                doctor: Some(pb::Doctor {
                    name: "Dr. Rashid Karim".into(),
                    email: "r.karim@example.org".into(),
                    address: Some(dir::Address {
                        lines: vec!["Dubai Bone and Joint Centre, Building 27".into()],
                        city: "Dubai".into(),
                        region: "Dubai".into(),
                        country: "AE".into(),
                        ..Default::default()
                    }),
                    language: "en".into(),
                    preferred_channel: dir::ContactChannel::Email as i32,
                    ..Default::default()
                }),
                consent: true,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(shared.doctor_copies.len(), 1);
    assert_eq!(
        shared.doctor_copies[0].consent_by,
        format!("member:{DUBAI_MEMBER}")
    );

    // Case management finds a qualified specialist in her country.
    let mut directory = DirectoryServiceClient::new(ctx.server.channel().await);
    let local = directory
        .list_providers(ctx.req(
            &member,
            dir::ListProvidersRequest {
                specialty: "orthopaedic_surgery".into(),
                country: "AE".into(),
                in_network_for_plan: "PLAN-GLOBAL".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .providers;
    let npis: Vec<_> = local.iter().map(|p| p.npi.as_str()).collect();
    assert_eq!(npis, [LOCAL_KNEE_SURGEON]);

    // A follow-up question, answered by the expert as an addendum.
    ctx.c
        .ask_question(ctx.req(
            &member,
            pb::AskQuestionRequest {
                request_id: id.clone(),
                question: "Can the surgery be done in Dubai?".into(),
            },
        ))
        .await
        .unwrap();
    let answered = ctx
        .c
        .answer_question(ctx.req(
            &expert,
            pb::AnswerQuestionRequest {
                request_id: id.clone(),
                question_number: 1,
                answer: "Yes, by a knee specialist experienced in partial replacement.".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(answered.addenda[0].answers_question, 1);

    follow_up(&mut ctx, ARABIC_NURSE, &id, pb::FollowUpChannel::Email)
        .await
        .unwrap();
    let closed = close(&mut ctx, ARABIC_NURSE, &id).await.unwrap();
    assert_eq!(closed.status, pb::Status::Closed as i32);

    let events = event_kinds(db, &id).await;
    let submitted = payload(&events, "secondopinion.request.submitted");
    assert_eq!(submitted["diagnosis"], "M17.0");
    assert_eq!(submitted["diagnosis_group"], "knee_osteoarthritis");
    assert_eq!(submitted["major_surgery"], true);
    assert_eq!(submitted["country"], "AE");
    let published = payload(&events, "secondopinion.opinion.published");
    assert_eq!(published["physician_name"], "Dr. Nadia Haddad");
    assert_eq!(published["nurse_id"], ARABIC_NURSE);
    let shared = payload(&events, "secondopinion.opinion.shared_with_doctor");
    assert_eq!(shared["request_id"], id.as_str());
    assert_eq!(shared["physician_specialty"], "orthopaedic_surgery");
    assert_eq!(shared["doctor"]["name"], "Dr. Rashid Karim");
    assert_eq!(shared["doctor"]["email"], "r.karim@example.org");
    assert_eq!(shared["doctor"]["address"]["country"], "AE");
    assert_eq!(shared["doctor"]["preferred_channel"], "email");
    assert!(
        shared["opinion_text"]
            .as_str()
            .unwrap()
            .contains("partial (unicompartmental) replacement")
    );
    assert!(
        events
            .iter()
            .any(|(k, _)| k == "secondopinion.followup.done")
    );
    ctx.server.stop().await;
}

async fn ineligible_requests_are_refused_with_the_reason(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let member = ctx.member(UK_MEMBER);
    let cases = [
        (
            pb::SubmitRequest {
                first_opinion: None,
                ..kidney_request()
            },
            "no_first_opinion",
        ),
        (
            pb::SubmitRequest {
                emergency: true,
                ..kidney_request()
            },
            "emergency",
        ),
        (
            pb::SubmitRequest {
                diagnosis: "J06.9".into(),
                ..kidney_request()
            },
            "diagnosis_not_qualifying",
        ),
        (
            pb::SubmitRequest {
                member_id: DUBAI_MEMBER.into(),
                major_surgery_recommended: false,
                ..knee_request()
            },
            "major_surgery_not_recommended",
        ),
    ];
    for (req, code) in cases {
        let token = ctx.member(&req.member_id.clone());
        let err = ctx.c.submit(ctx.req(&token, req)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{code}");
        assert!(err.message().contains(code), "{code}: {}", err.message());
    }
    let no_first = ctx
        .c
        .check_eligibility(ctx.req(
            &member,
            pb::CheckEligibilityRequest {
                member_id: UK_MEMBER.into(),
                diagnosis: "N18.4".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!no_first.eligible);
    assert_eq!(no_first.reason_code, "no_first_opinion");
    assert!(no_first.reason.contains("first opinion"));

    // A half-given first opinion names its fields.
    let mut partial = kidney_request();
    partial.first_opinion.as_mut().unwrap().given_on = String::new();
    partial.first_opinion.as_mut().unwrap().summary = String::new();
    let err = ctx.c.submit(ctx.req(&member, partial)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["first_opinion.given_on", "first_opinion.summary"]);

    // Members ask for themselves (or a minor in their family), nobody else.
    let err = ctx
        .c
        .submit(ctx.req(
            &member,
            pb::SubmitRequest {
                member_id: OTHER_MEMBER.into(),
                ..kidney_request()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let nurse = ctx.nurse(NURSE);
    let err = ctx
        .c
        .submit(ctx.req(&nurse, kidney_request()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Nothing was stored.
    let listed = ctx
        .c
        .list_requests(ctx.req(&member, pb::ListRequestsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.requests.is_empty());

    // A subscriber may ask for a minor family member.
    let parent = ctx.member("M100001");
    let child = submit(
        &mut ctx,
        &parent,
        pb::SubmitRequest {
            member_id: "M100003".into(),
            ..kidney_request()
        },
    )
    .await;
    ctx.get(&parent, &child.id).await.unwrap();
    ctx.get(&ctx.member("M100003"), &child.id).await.unwrap();
    ctx.server.stop().await;
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn a_100_mb_upload_arrives_whole_with_its_checksum_verified(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let member = ctx.member(UK_MEMBER);
    let r = submit(&mut ctx, &member, kidney_request()).await;
    let big: Vec<u8> = (0..100 * MIB)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect();
    let sha = sha256_hex(&big);
    let up = ctx
        .upload(
            &member,
            &r.id,
            (pb::RecordKind::Mri, "kidney-mri.dcm", "application/dicom"),
            big.clone(),
            None,
        )
        .await
        .unwrap();
    let record = up.record.unwrap();
    assert_eq!(record.size_bytes, 100 * MIB as u64);
    assert_eq!(record.sha256, sha);
    let (_, back) = ctx.download(&member, &r.id, &record.id).await.unwrap();
    assert_eq!(back.len(), big.len());
    assert_eq!(sha256_hex(&back), sha);
    let folder = RecordStorage::default_folder(&db.store);
    let kept = files_under(&folder);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::metadata(&kept[0]).unwrap().len(), 100 * MIB as u64);
    drop(std::fs::remove_dir_all(&folder));
    ctx.server.stop().await;
}

async fn a_wrong_checksum_is_rejected_and_nothing_is_kept(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let member = ctx.member(UK_MEMBER);
    let r = submit(&mut ctx, &member, kidney_request()).await;
    let bytes = vec![7u8; 3 * MIB + 17];
    let wrong = sha256_hex(b"something else");
    let err = ctx
        .upload(
            &member,
            &r.id,
            (pb::RecordKind::LabResult, "labs.pdf", "application/pdf"),
            bytes.clone(),
            Some(wrong),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(field(&err), "header.sha256");
    assert!(err.message().contains(&sha256_hex(&bytes)));

    let folder = RecordStorage::default_folder(&db.store);
    assert_eq!(files_under(&folder), Vec::<PathBuf>::new());
    let after = ctx.get(&member, &r.id).await.unwrap();
    assert!(after.records.is_empty());
    assert_eq!(after.history.len(), 1);
    let events = event_kinds(db, &r.id).await;
    assert_eq!(events.len(), 1, "{events:?}");

    // Bad headers are refused before any byte is read.
    let err = ctx
        .upload(
            &member,
            &r.id,
            (
                pb::RecordKind::LabResult,
                "../../etc/passwd",
                "application/x-sh",
            ),
            b"x".to_vec(),
            Some("zz".into()),
        )
        .await
        .unwrap_err();
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(
        fields,
        ["header.file_name", "header.content_type", "header.sha256"]
    );
    assert_eq!(files_under(&folder), Vec::<PathBuf>::new());
    ctx.server.stop().await;
}

async fn a_second_member_cannot_read_the_first_members_records(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let id = kidney_in_review(&mut ctx).await;
    let owner = ctx.member(UK_MEMBER);
    let record = ctx.get(&owner, &id).await.unwrap().records[0].id.clone();

    let outsiders = [
        ctx.member(OTHER_MEMBER),
        ctx.provider(UK_OWN_NEPHROLOGIST),
        ctx.server.token(Role::PhysicianReviewer, "MD-NEP-01"),
        ctx.server.token(Role::Admin, "AD-001"),
    ];
    for token in &outsiders {
        assert_eq!(
            ctx.get(token, &id).await.unwrap_err().code(),
            Code::NotFound
        );
        assert_eq!(
            ctx.download(token, &id, &record).await.unwrap_err().code(),
            Code::NotFound
        );
        let watch = ctx
            .c
            .watch_status(ctx.req(
                token,
                pb::WatchStatusRequest {
                    request_id: id.clone(),
                },
            ))
            .await;
        assert_eq!(watch.unwrap_err().code(), Code::NotFound);
        let post = ctx
            .c
            .post_message(ctx.req(
                token,
                pb::PostMessageRequest {
                    request_id: id.clone(),
                    body: "hello".into(),
                },
            ))
            .await;
        assert_eq!(post.unwrap_err().code(), Code::NotFound);
    }
    let other = ctx.member(OTHER_MEMBER);
    let listed = ctx
        .c
        .list_requests(ctx.req(&other, pb::ListRequestsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.requests.is_empty());
    let err = ctx
        .upload(
            &other,
            &id,
            (pb::RecordKind::Other, "x.pdf", "application/pdf"),
            b"x".to_vec(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The lead physician and the owner may read; every read and refusal is audited.
    let expert = ctx.provider(EXPERT_NEPHROLOGIST);
    ctx.download(&expert, &id, &record).await.unwrap();
    ctx.download(&owner, &id, &record).await.unwrap();
    let audit = db
        .store
        .search_audit(
            &AuditQuery {
                member_id: Some(UK_MEMBER.into()),
                ..Default::default()
            },
            0,
            500,
        )
        .await
        .unwrap();
    let reads: Vec<_> = audit
        .iter()
        .filter(|a| a.entry.record_kind == "secondopinion_record")
        .map(|a| (a.entry.subject.as_str(), a.entry.outcome.as_str()))
        .collect();
    assert!(
        reads.contains(&(EXPERT_NEPHROLOGIST, "allowed")),
        "{reads:?}"
    );
    assert!(reads.contains(&(UK_MEMBER, "allowed")), "{reads:?}");
    let denied = audit
        .iter()
        .filter(|a| a.entry.subject == OTHER_MEMBER && a.entry.outcome.as_str() == "denied")
        .count();
    assert!(denied >= 4, "{denied}");
    ctx.server.stop().await;
}

async fn watch_status_receives_every_change_and_a_reconnect_starts_with_the_current_status(
    db: &TestDb,
) {
    let mut ctx = Ctx::start(db).await;
    let member = ctx.member(DUBAI_MEMBER);
    let r = submit(&mut ctx, &member, knee_request()).await;
    let id = r.id.clone();
    let nurse = ctx.nurse(ARABIC_NURSE);
    let mut watch = ctx
        .c
        .watch_status(ctx.req(
            &nurse,
            pb::WatchStatusRequest {
                request_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(watch.next().await.unwrap().unwrap().snapshot);

    answer(&mut ctx, &member, &id, knee_answers()).await;
    let change = watch.next().await.unwrap().unwrap();
    assert_eq!(change.status, pb::Status::AwaitingRecords as i32);
    assert!(!change.snapshot);
    drop(watch);

    // Reconnecting: the current status first.
    let mut watch = ctx
        .c
        .watch_status(ctx.req(
            &member,
            pb::WatchStatusRequest {
                request_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let snapshot = watch.next().await.unwrap().unwrap();
    assert!(snapshot.snapshot);
    assert_eq!(snapshot.status, pb::Status::AwaitingRecords as i32);
    ctx.upload(
        &member,
        &id,
        (pb::RecordKind::Xray, "x.png", "image/png"),
        vec![1, 2, 3],
        None,
    )
    .await
    .unwrap();
    ctx.upload(
        &member,
        &id,
        (
            pb::RecordKind::ClinicalReport,
            "notes.pdf",
            "application/pdf",
        ),
        vec![4, 5],
        None,
    )
    .await
    .unwrap();
    let a = watch.next().await.unwrap().unwrap();
    let b = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (a.status, b.status),
        (
            pb::Status::AwaitingAssignment as i32,
            pb::Status::InReview as i32
        )
    );
    assert!(a.version > snapshot.version && b.version > a.version);
    ctx.server.stop().await;
}

async fn answers_are_checked_against_the_questionnaire(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let member = ctx.member(UK_MEMBER);
    let r = submit(&mut ctx, &member, kidney_request()).await;
    let q = ctx
        .c
        .get_questionnaire(ctx.req(
            &member,
            pb::GetQuestionnaireRequest {
                request_id: r.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .questionnaire
        .unwrap();
    let dialysis_kind = q
        .questions
        .iter()
        .find(|x| x.id == "dialysis_kind")
        .unwrap();
    assert_eq!(
        (
            dialysis_kind.when_question.as_str(),
            dialysis_kind.when_equals.as_str()
        ),
        ("on_dialysis", "yes")
    );

    let err = ctx
        .c
        .answer_questionnaire(ctx.req(
            &member,
            pb::AnswerQuestionnaireRequest {
                request_id: r.id.clone(),
                answers: vec![choice("stage", "7"), text("on_dialysis", "no")],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["answers[0].value", "answers[1].value"]);

    // Saved, but the request waits for the required answers.
    let mut partial = kidney_answers();
    partial[1] = yes_no("on_dialysis", true);
    let r2 = answer(&mut ctx, &member, &r.id, partial).await;
    assert_eq!(r2.status, pb::Status::Submitted as i32);
    assert_eq!(r2.missing_answers, ["dialysis_kind"]);
    // Records may arrive meanwhile; the request still does not move on.
    ctx.upload(
        &member,
        &r.id,
        (pb::RecordKind::LabResult, "l.pdf", "application/pdf"),
        vec![1],
        None,
    )
    .await
    .unwrap();
    let r3 = ctx
        .upload(
            &member,
            &r.id,
            (pb::RecordKind::ClinicalReport, "c.pdf", "application/pdf"),
            vec![2],
            None,
        )
        .await
        .unwrap()
        .request
        .unwrap();
    assert_eq!(r3.status, pb::Status::Submitted as i32);

    let mut full = kidney_answers();
    full[1] = yes_no("on_dialysis", true);
    full.push(choice("dialysis_kind", "haemodialysis"));
    let done = answer(&mut ctx, &member, &r.id, full).await;
    assert_eq!(done.status, pb::Status::InReview as i32);
    assert!(done.missing_answers.is_empty());
    // Once complete, answers are fixed.
    let err = ctx
        .c
        .answer_questionnaire(ctx.req(
            &member,
            pb::AnswerQuestionnaireRequest {
                request_id: r.id.clone(),
                answers: kidney_answers(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    ctx.server.stop().await;
}

async fn only_the_lead_physician_publishes_once_and_late_requests_show(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let id = kidney_in_review(&mut ctx).await;
    let nurse = ctx.nurse(NURSE);

    // Another provider cannot even see it; the nurse sees it but cannot publish.
    let err = publish(&mut ctx, UK_OWN_NEPHROLOGIST, &id, confirm_opinion())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = ctx
        .c
        .publish_opinion(ctx.req(
            &nurse,
            pb::PublishOpinionRequest {
                request_id: id.clone(),
                opinion: Some(confirm_opinion()),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A changed diagnosis needs the new one.
    let mut changed = confirm_opinion();
    changed.diagnosis = pb::DiagnosisVerdict::Changed as i32;
    let err = publish(&mut ctx, EXPERT_NEPHROLOGIST, &id, changed)
        .await
        .unwrap_err();
    assert_eq!(field(&err), "opinion.revised_diagnosis");

    // Past its due time it is late, and nurses see it in the late list.
    let due = ctx.get(&nurse, &id).await.unwrap().due_at.unwrap();
    ctx.server
        .clock
        .set(chrono::DateTime::from_timestamp(due.seconds + 3600, 0).unwrap());
    let late = ctx
        .c
        .list_requests(ctx.req(
            &nurse,
            pb::ListRequestsRequest {
                late_only: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(late.len(), 1);
    assert!(late[0].late);

    let mut refined = confirm_opinion();
    refined.diagnosis = pb::DiagnosisVerdict::Refined as i32;
    refined.revised_diagnosis = "N18.5".into();
    let published = publish(&mut ctx, EXPERT_NEPHROLOGIST, &id, refined)
        .await
        .unwrap();
    assert!(published.opinion.unwrap().late);
    assert!(!published.late);
    let err = publish(&mut ctx, EXPERT_NEPHROLOGIST, &id, confirm_opinion())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("addendum"));
    let expert = ctx.provider(EXPERT_NEPHROLOGIST);
    let with = ctx
        .c
        .add_addendum(ctx.req(
            &expert,
            pb::AddAddendumRequest {
                request_id: id.clone(),
                text: "The latest eGFR places this at stage 5.".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(with.addenda.len(), 1);
    assert_eq!(
        with.opinion.unwrap().content.unwrap().revised_diagnosis,
        "N18.5"
    );
    let late = ctx
        .c
        .list_requests(ctx.req(
            &nurse,
            pb::ListRequestsRequest {
                late_only: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert!(late.is_empty());
    let mine = ctx
        .c
        .list_requests(ctx.req(&expert, pb::ListRequestsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(mine.len(), 1);
    ctx.server.stop().await;
}

async fn at_most_three_follow_up_questions_and_closing_waits_for_answers(db: &TestDb) {
    let mut ctx = Ctx::start(db).await;
    let id = kidney_in_review(&mut ctx).await;
    let member = ctx.member(UK_MEMBER);
    let err = ctx
        .c
        .ask_question(ctx.req(
            &member,
            pb::AskQuestionRequest {
                request_id: id.clone(),
                question: "Too early?".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    publish(&mut ctx, EXPERT_NEPHROLOGIST, &id, confirm_opinion())
        .await
        .unwrap();
    for i in 1..=3 {
        ctx.c
            .ask_question(ctx.req(
                &member,
                pb::AskQuestionRequest {
                    request_id: id.clone(),
                    question: format!("Question {i}?"),
                },
            ))
            .await
            .unwrap();
    }
    let err = ctx
        .c
        .ask_question(ctx.req(
            &member,
            pb::AskQuestionRequest {
                request_id: id.clone(),
                question: "A fourth?".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("at most 3"));

    let err = close(&mut ctx, NURSE, &id).await.unwrap_err();
    assert!(
        err.message().contains("follow-up must be recorded"),
        "{}",
        err.message()
    );
    follow_up(&mut ctx, NURSE, &id, pb::FollowUpChannel::Phone)
        .await
        .unwrap();
    let err = close(&mut ctx, NURSE, &id).await.unwrap_err();
    assert!(
        err.message().contains("question 1 is not answered"),
        "{}",
        err.message()
    );
    let expert = ctx.provider(EXPERT_NEPHROLOGIST);
    for n in 1..=3 {
        ctx.c
            .answer_question(ctx.req(
                &expert,
                pb::AnswerQuestionRequest {
                    request_id: id.clone(),
                    question_number: n,
                    answer: format!("Answer {n}."),
                },
            ))
            .await
            .unwrap();
    }
    // The member cannot close it; the nurse can.
    let err = ctx
        .c
        .close(ctx.req(
            &member,
            pb::CloseRequest {
                request_id: id.clone(),
                closing_note: "done".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        close(&mut ctx, NURSE, &id).await.unwrap().status,
        pb::Status::Closed as i32
    );
    ctx.server.stop().await;
}
