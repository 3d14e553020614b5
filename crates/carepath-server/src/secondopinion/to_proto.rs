//! Second-opinion answers as the contract shows them (outgoing conversions cannot
//! fail).

use carepath_app::secondopinion::{
    Download, Eligibility, RecordAdded, RequestView, StatusChange, Submitted,
};
use carepath_core::{Address, ContactChannel, Provider};
use carepath_proto::{directory::v1 as dir, secondopinion::v1 as pb};
use carepath_secondopinion::{
    Answer, AnswerValue, Basis, DiagnosisVerdict, Doctor, FirstOpinion, FollowUpChannel,
    OpinionDraft, QuestionType, Questionnaire, RecordChannel, RecordKind, Status, TreatmentVerdict,
};
use carepath_store::OpinionMessageRecord;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream::BoxStream};
use tonic::Status as GrpcStatus;

use crate::{convert::timestamp, error::status_of};

fn ts(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

pub fn status_to_proto(s: Status) -> i32 {
    (match s {
        Status::Submitted => pb::Status::Submitted,
        Status::AwaitingRecords => pb::Status::AwaitingRecords,
        Status::AwaitingAssignment => pb::Status::AwaitingAssignment,
        Status::InReview => pb::Status::InReview,
        Status::OpinionPublished => pb::Status::OpinionPublished,
        Status::OpinionReviewed => pb::Status::OpinionReviewed,
        Status::Closed => pb::Status::Closed,
    }) as i32
}

pub fn basis_to_proto(b: Basis) -> i32 {
    (match b {
        Basis::LifeThreatening => pb::Basis::LifeThreatening,
        Basis::LifeAltering => pb::Basis::LifeAltering,
        Basis::Serious => pb::Basis::Serious,
        Basis::Rare => pb::Basis::Rare,
        Basis::MajorSurgery => pb::Basis::MajorSurgery,
    }) as i32
}

pub fn kind_to_proto(k: RecordKind) -> i32 {
    (match k {
        RecordKind::Xray => pb::RecordKind::Xray,
        RecordKind::Mri => pb::RecordKind::Mri,
        RecordKind::Ct => pb::RecordKind::Ct,
        RecordKind::PathologySlide => pb::RecordKind::PathologySlide,
        RecordKind::ClinicalReport => pb::RecordKind::ClinicalReport,
        RecordKind::LabResult => pb::RecordKind::LabResult,
        RecordKind::Other => pb::RecordKind::Other,
    }) as i32
}

fn channel_to_proto(c: RecordChannel) -> i32 {
    (match c {
        RecordChannel::Upload => pb::RecordChannel::Upload,
        RecordChannel::Fax => pb::RecordChannel::Fax,
        RecordChannel::Mail => pb::RecordChannel::Mail,
    }) as i32
}

fn follow_up_channel_to_proto(c: FollowUpChannel) -> i32 {
    (match c {
        FollowUpChannel::Phone => pb::FollowUpChannel::Phone,
        FollowUpChannel::Email => pb::FollowUpChannel::Email,
    }) as i32
}

pub fn first_opinion_to_proto(f: &FirstOpinion) -> pb::FirstOpinion {
    pb::FirstOpinion {
        physician_npi: f
            .physician_npi
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        physician_name: f.physician_name.clone(),
        practice: f.practice.clone().unwrap_or_default(),
        given_on: f.given_on.to_string(),
        summary: f.summary.clone(),
    }
}

fn answer_to_proto(a: &Answer) -> pb::QuestionnaireAnswer {
    use pb::questionnaire_answer::Value;
    let value = match &a.value {
        AnswerValue::Text(t) => Value::Text(t.clone()),
        AnswerValue::YesNo(b) => Value::YesNo(*b),
        AnswerValue::Number(n) => Value::Number(*n),
        AnswerValue::Date(d) => Value::Date(d.to_string()),
        AnswerValue::Choice(c) => Value::Choice(c.clone()),
    };
    pb::QuestionnaireAnswer {
        question_id: a.question_id.clone(),
        value: Some(value),
    }
}

pub fn questionnaire_to_proto(q: &Questionnaire) -> pb::Questionnaire {
    pb::Questionnaire {
        id: q.id.clone(),
        version: q.version,
        diagnosis_group: q.group.clone(),
        title: q.title.clone(),
        questions: q
            .questions
            .iter()
            .map(|x| pb::Question {
                id: x.id.clone(),
                text: x.text.clone(),
                r#type: (match x.kind {
                    QuestionType::Text => pb::QuestionType::Text,
                    QuestionType::YesNo => pb::QuestionType::YesNo,
                    QuestionType::Number => pb::QuestionType::Number,
                    QuestionType::Date => pb::QuestionType::Date,
                    QuestionType::Choice => pb::QuestionType::Choice,
                }) as i32,
                required: x.required,
                options: x.options.clone(),
                min: x.min,
                max: x.max,
                when_question: x
                    .when
                    .as_ref()
                    .map(|w| w.question.clone())
                    .unwrap_or_default(),
                when_equals: x
                    .when
                    .as_ref()
                    .map(|w| w.equals.clone())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

fn opinion_content_to_proto(d: &OpinionDraft) -> pb::OpinionContent {
    pb::OpinionContent {
        diagnosis: (match d.diagnosis {
            DiagnosisVerdict::Confirmed => pb::DiagnosisVerdict::Confirmed,
            DiagnosisVerdict::Refined => pb::DiagnosisVerdict::Refined,
            DiagnosisVerdict::Changed => pb::DiagnosisVerdict::Changed,
        }) as i32,
        revised_diagnosis: d
            .revised_diagnosis
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        treatment: (match d.treatment {
            TreatmentVerdict::Confirmed => pb::TreatmentVerdict::Confirmed,
            TreatmentVerdict::Changed => pb::TreatmentVerdict::Changed,
        }) as i32,
        treatment_recommendation: d.treatment_recommendation.clone().unwrap_or_default(),
        further_tests: d.further_tests.clone(),
        answers: d
            .answers
            .iter()
            .map(|a| pb::QuestionResponse {
                question: a.question.clone(),
                answer: a.answer.clone(),
            })
            .collect(),
        narrative: d.narrative.clone(),
    }
}

pub(super) const CHANNELS: [(dir::ContactChannel, ContactChannel); 4] = [
    (dir::ContactChannel::Mail, ContactChannel::Mail),
    (dir::ContactChannel::Email, ContactChannel::Email),
    (dir::ContactChannel::Portal, ContactChannel::Portal),
    (dir::ContactChannel::Fax, ContactChannel::Fax),
];

fn address_to_proto(a: &Address) -> dir::Address {
    dir::Address {
        lines: a.lines.clone(),
        city: a.city.clone(),
        region: a.region.clone().unwrap_or_default(),
        postal_code: a.postal_code.clone().unwrap_or_default(),
        country: a.country.to_string(),
    }
}

fn doctor_to_proto(d: &Doctor) -> pb::Doctor {
    pb::Doctor {
        npi: d.npi.as_ref().map(ToString::to_string).unwrap_or_default(),
        name: d.name.clone(),
        email: d.email.clone().unwrap_or_default(),
        fax: d.fax.clone().unwrap_or_default(),
        address: d.address.as_ref().map(address_to_proto),
        language: d
            .language
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        preferred_channel: d
            .preferred_channel
            .and_then(|c| {
                CHANNELS
                    .iter()
                    .find(|(_, x)| *x == c)
                    .map(|(p, _)| *p as i32)
            })
            .unwrap_or_default(),
    }
}

pub fn record_to_proto(r: &carepath_secondopinion::MedicalRecord) -> pb::Record {
    pb::Record {
        id: r.id.clone(),
        kind: kind_to_proto(r.kind),
        channel: channel_to_proto(r.channel),
        description: r.description.clone(),
        file_name: r.file_name.clone().unwrap_or_default(),
        content_type: r.content_type.clone().unwrap_or_default(),
        size_bytes: r.size_bytes,
        sha256: r.sha256.clone().unwrap_or_default(),
        received_at: Some(timestamp(r.received_at)),
        received_by: format!("{}:{}", r.received_by.role, r.received_by.subject),
    }
}

pub fn physician_to_proto(
    e: &carepath_secondopinion::Expert,
    provider: Option<&Provider>,
) -> pb::Physician {
    pb::Physician {
        npi: e.npi.to_string(),
        name: e.name.clone(),
        specialty: e.specialty.to_string(),
        practice: e.practice.clone().unwrap_or_default(),
        languages: provider
            .map(|p| p.languages.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        country: provider
            .map(|p| p.address.country.to_string())
            .unwrap_or_default(),
        biography: provider
            .and_then(|p| p.biography.clone())
            .unwrap_or_default(),
        assigned_at: Some(timestamp(e.assigned_at)),
    }
}

/// The whole request as the contract shows it.
pub fn request_to_proto(view: &RequestView) -> pb::SecondOpinion {
    let r = &view.request;
    pb::SecondOpinion {
        id: r.id.clone(),
        member_id: r.member_id.to_string(),
        status: status_to_proto(r.status),
        diagnosis: r.diagnosis.to_string(),
        diagnosis_group: r.diagnosis_group.clone(),
        condition: r.condition.clone(),
        basis: basis_to_proto(r.basis),
        major_surgery_recommended: r.major_surgery_recommended,
        current_treatment: r.current_treatment.clone(),
        first_opinion: Some(first_opinion_to_proto(&r.first_opinion)),
        questionnaire_id: r.questionnaire.id.clone(),
        questionnaire_version: r.questionnaire.version,
        answers: r.answers.iter().map(answer_to_proto).collect(),
        missing_answers: r.missing_answers.clone(),
        required_records: r
            .required_records
            .iter()
            .map(|req| pb::RequiredRecord {
                id: req.id.clone(),
                label: req.label.clone(),
                kinds: req.kinds.iter().map(|k| kind_to_proto(*k)).collect(),
                received: r.records.iter().any(|x| req.kinds.contains(&x.kind)),
            })
            .collect(),
        records: r.records.iter().map(record_to_proto).collect(),
        received_at: Some(timestamp(r.received_at)),
        records_complete_at: ts(r.records_complete_at),
        due_at: ts(r.due_at),
        late: view.late,
        physician: r
            .physician
            .as_ref()
            .map(|e| physician_to_proto(e, view.physician.as_ref())),
        coordinator_id: r
            .coordinator
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        opinion: r.opinion.as_ref().map(|o| pb::Opinion {
            content: Some(opinion_content_to_proto(&o.draft)),
            physician_npi: o.physician_npi.to_string(),
            published_at: Some(timestamp(o.published_at)),
            late: o.late,
        }),
        addenda: r
            .addenda
            .iter()
            .map(|a| pb::Addendum {
                number: a.number,
                text: a.text.clone(),
                physician_npi: a.physician_npi.to_string(),
                added_at: Some(timestamp(a.added_at)),
                answers_question: a.answers_question.unwrap_or(0),
            })
            .collect(),
        reviewed_at: ts(r.reviewed_at),
        doctor_copies: r
            .doctor_copies
            .iter()
            .map(|c| pb::DoctorCopy {
                doctor: Some(doctor_to_proto(&c.doctor)),
                consent_by: format!("{}:{}", c.consent_by.role, c.consent_by.subject),
                consent_at: Some(timestamp(c.consent_at)),
            })
            .collect(),
        follow_ups: r
            .follow_ups
            .iter()
            .map(|f| pb::FollowUp {
                nurse_id: f.nurse_id.to_string(),
                channel: follow_up_channel_to_proto(f.channel),
                notes: f.notes.clone(),
                member_understands: f.member_understands,
                at: Some(timestamp(f.at)),
            })
            .collect(),
        questions: r
            .questions
            .iter()
            .map(|q| pb::FollowUpQuestion {
                number: q.number,
                text: q.text.clone(),
                asked_at: Some(timestamp(q.asked_at)),
                answer: q.answer.clone().unwrap_or_default(),
                answered_at: ts(q.answered_at),
            })
            .collect(),
        closing_note: r.closing_note.clone().unwrap_or_default(),
        closed_at: ts(r.closed_at),
        history: r
            .history
            .iter()
            .map(|h| pb::HistoryEntry {
                at: Some(timestamp(h.at)),
                actor_role: h.actor.role.to_string(),
                actor_id: h.actor.subject.clone(),
                action: h.action.clone(),
                status: status_to_proto(h.status),
                note: h.note.clone(),
            })
            .collect(),
        data_version: format!(
            "groups {}, questionnaires {}, records {}",
            r.data_versions.groups, r.data_versions.questionnaires, r.data_versions.records
        ),
        requested_by: format!("{}:{}", r.requested_by.role, r.requested_by.subject),
    }
}

/// The answer of an eligibility check.
pub fn eligibility_to_proto(e: Eligibility) -> pb::CheckEligibilityResponse {
    let group = e.group.as_ref();
    let (name, id, basis) = (
        group.map(|g| g.name.clone()).unwrap_or_default(),
        group.map(|g| g.id.clone()).unwrap_or_default(),
        group.map(|g| basis_to_proto(g.basis)).unwrap_or_default(),
    );
    match e.ineligible {
        None => pb::CheckEligibilityResponse {
            eligible: true,
            diagnosis_group: id,
            condition: name,
            basis,
            ..Default::default()
        },
        Some(why) => pb::CheckEligibilityResponse {
            eligible: false,
            reason_code: why.code().into(),
            reason: why.to_string(),
            diagnosis_group: id,
            condition: name,
            basis,
        },
    }
}

pub fn submitted_to_proto(s: Submitted) -> pb::SubmitResponse {
    pb::SubmitResponse {
        request: Some(request_to_proto(&s.request)),
        questionnaire: s.questionnaire.as_ref().map(questionnaire_to_proto),
    }
}

/// The record added and the request after it.
pub fn record_added_to_proto(a: &RecordAdded) -> (Option<pb::Record>, Option<pb::SecondOpinion>) {
    (
        a.record.as_ref().map(record_to_proto),
        Some(request_to_proto(&a.request)),
    )
}

pub fn message_to_proto(m: &OpinionMessageRecord) -> pb::Message {
    pb::Message {
        id: m.id.clone(),
        request_id: m.request_id.clone(),
        author_role: m.author_role.clone(),
        author_id: m.author_id.clone(),
        body: m.body.clone(),
        sent_at: Some(timestamp(m.sent_at)),
    }
}

pub fn status_change_to_proto(c: StatusChange) -> pb::WatchStatusResponse {
    pb::WatchStatusResponse {
        request_id: c.request_id,
        status: status_to_proto(c.status),
        version: c.version,
        at: ts(c.at),
        action: c.action,
        snapshot: c.snapshot,
    }
}

/// A download as the contract streams it: the record first, then its bytes.
pub fn download_to_proto(
    d: Download,
) -> BoxStream<'static, Result<pb::DownloadRecordResponse, GrpcStatus>> {
    use pb::download_record_response::Part;
    let head = futures::stream::once(futures::future::ready(Ok(pb::DownloadRecordResponse {
        part: Some(Part::Record(record_to_proto(&d.record))),
    })));
    let body = d.bytes.map(|chunk| {
        chunk
            .map(|b| pb::DownloadRecordResponse {
                part: Some(Part::Chunk(b.into())),
            })
            .map_err(status_of)
    });
    head.chain(body).boxed()
}
