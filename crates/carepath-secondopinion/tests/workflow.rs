//! The request workflow without I/O: who may do what, in which state, and the events
//! each step records.

use carepath_core::{
    Actor, BusinessCalendar, DirectoryBundle, Icd10Code, MemberId, Npi, Role, Specialty,
};
use carepath_secondopinion::{
    Answer, AnswerValue, DiagnosisVerdict, EligibilityInput, Expert, FirstOpinion, NewRecord,
    NewRequest, OpinionDraft, Party, RecordChannel, RecordKind, SecondOpinionRequest, Status,
    TreatmentVerdict, WorkflowError, check_eligibility, shipped,
};
use chrono::{DateTime, Utc};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn member(id: &str) -> Actor {
    Actor::new(Role::Member, id).unwrap()
}

fn open(member_id: &str) -> SecondOpinionRequest {
    let catalogue = shipped();
    let bundle = DirectoryBundle::demo().unwrap();
    let m = bundle
        .members
        .iter()
        .find(|m| m.id.as_str() == member_id)
        .unwrap()
        .clone();
    let diagnosis = Icd10Code::parse("N18.4").unwrap();
    let group = check_eligibility(
        &catalogue,
        EligibilityInput {
            diagnosis: &diagnosis,
            major_surgery_recommended: false,
            emergency: false,
            has_first_opinion: true,
        },
    )
    .unwrap();
    let (r, events) = SecondOpinionRequest::open(
        NewRequest {
            id: "SO-1".into(),
            member: m,
            requested_by: member(member_id),
            diagnosis,
            major_surgery_recommended: false,
            current_treatment: "ACE inhibitor".into(),
            first_opinion: FirstOpinion {
                physician_npi: None,
                physician_name: "Dr. A".into(),
                practice: None,
                given_on: "2026-10-01".parse().unwrap(),
                summary: "CKD 4".into(),
            },
        },
        group,
        &catalogue,
        at("2026-11-23T14:00:00Z"),
    );
    assert_eq!(events[0].kind, "secondopinion.request.submitted");
    r
}

fn record(kind: RecordKind) -> NewRecord {
    NewRecord {
        id: format!("R-{}", kind.as_str()),
        kind,
        channel: RecordChannel::Upload,
        description: String::new(),
        file_name: Some("f.pdf".into()),
        content_type: Some("application/pdf".into()),
        size_bytes: 1,
        sha256: Some("00".repeat(32)),
        object_key: Some("k".into()),
    }
}

fn answers() -> Vec<Answer> {
    let a = |id: &str, value| Answer {
        question_id: id.into(),
        value,
    };
    vec![
        a("stage", AnswerValue::Choice("4".into())),
        a("on_dialysis", AnswerValue::YesNo(false)),
        a(
            "current_treatment",
            AnswerValue::Text("ACE inhibitor".into()),
        ),
        a("questions_for_expert", AnswerValue::Text("Enough?".into())),
    ]
}

#[test]
fn a_request_moves_from_submission_to_closure() {
    let cal = BusinessCalendar::us_federal();
    let catalogue = shipped();
    let mut r = open("M100014");
    let me = member("M100014");
    let now = at("2026-11-23T15:00:00Z");
    let q = catalogue
        .questionnaire_for("chronic_kidney_disease")
        .unwrap();
    let ev = r
        .answer_questionnaire(&Party::Member, &me, q.check(&answers()).unwrap(), &cal, now)
        .unwrap();
    let kinds: Vec<_> = ev.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "secondopinion.request.questionnaire_completed",
            "secondopinion.request.records_missing"
        ]
    );
    r.add_record(
        &Party::Member,
        &me,
        record(RecordKind::LabResult),
        &cal,
        now,
    )
    .unwrap();
    assert_eq!(r.status, Status::AwaitingRecords);
    let ev = r
        .add_record(
            &Party::Member,
            &me,
            record(RecordKind::ClinicalReport),
            &cal,
            now,
        )
        .unwrap();
    assert_eq!(
        ev.last().unwrap().kind,
        "secondopinion.request.records_received"
    );
    assert_eq!(r.status, Status::AwaitingAssignment);
    // Ten business days from Monday 23 November 2026, over Thanksgiving.
    assert_eq!(r.due_at.unwrap(), cal.business_deadline(now, 10));
    assert!(r.due_at.unwrap() > at("2026-12-07T00:00:00Z"));

    let npi = Npi::parse("1899844926").unwrap();
    let system = Actor::new(Role::Service, "secondopinion-matching").unwrap();
    r.assign(
        &system,
        Expert {
            npi: npi.clone(),
            name: "Dr. Samuel Adeyemi".into(),
            specialty: Specialty::parse("nephrology").unwrap(),
            practice: None,
            assigned_at: now,
        },
        now,
    )
    .unwrap();
    let doctor = Actor::new(Role::Provider, "1899844926").unwrap();
    let party = Party::of(&doctor, &r, now).unwrap();
    let draft = OpinionDraft {
        diagnosis: DiagnosisVerdict::Confirmed,
        revised_diagnosis: None,
        treatment: TreatmentVerdict::Confirmed,
        treatment_recommendation: None,
        further_tests: vec![],
        answers: vec![],
        narrative: "Confirmed.".into(),
    };
    // The member cannot publish.
    assert!(matches!(
        r.publish(&Party::Member, &me, draft.clone(), now),
        Err(WorkflowError::NotAllowed(_))
    ));
    let ev = r.publish(&party, &doctor, draft.clone(), now).unwrap();
    assert_eq!(ev[0].payload["physician_specialty"], "nephrology");
    assert!(matches!(
        r.publish(&party, &doctor, draft, now),
        Err(WorkflowError::Rule(_))
    ));
    let nurse = Actor::new(Role::Nurse, "RN-004").unwrap();
    let nurse_party = Party::of(&nurse, &r, now).unwrap();
    assert!(matches!(
        r.close(&nurse_party, &nurse, "done".into(), now),
        Err(WorkflowError::Rule(_))
    ));
    r.record_follow_up(
        &nurse_party,
        &nurse,
        carepath_secondopinion::FollowUpChannel::Phone,
        "understood".into(),
        true,
        now,
    )
    .unwrap();
    let ev = r.close(&nurse_party, &nurse, "done".into(), now).unwrap();
    assert_eq!(ev[0].payload["closing_note"], "done");
    assert_eq!(r.status, Status::Closed);
    // Closed requests leave the nurses' view; the member keeps theirs.
    assert!(Party::of(&nurse, &r, now).is_none());
    assert_eq!(Party::of(&me, &r, now), Some(Party::Member));
}

#[test]
fn the_subscriber_sees_a_minor_s_request_only_while_a_minor() {
    let r = open("M100003");
    let parent = member("M100001");
    let now = at("2026-11-23T15:00:00Z");
    assert_eq!(Party::of(&parent, &r, now), Some(Party::Subscriber));
    let adult = at("2032-07-01T00:00:00Z");
    assert_eq!(Party::of(&parent, &r, adult), None);
    assert_eq!(
        Party::of(&member("M100002"), &r, now),
        None,
        "another member"
    );
    let _ = MemberId::parse("M100003").unwrap();
}
