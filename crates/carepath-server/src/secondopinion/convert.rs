//! Conversions between the second-opinion contract and the second-opinion crate's
//! types. Incoming fields are collected under the path the caller sent.

use carepath_core::{
    Address, ContactChannel, CountryCode, Icd10Code, Invalid, LanguageTag, Npi, Provider,
};
use carepath_proto::{directory::v1 as dir, secondopinion::v1 as pb};
use carepath_secondopinion::{
    Answer, AnswerValue, Basis, DiagnosisVerdict, Doctor, FirstOpinion, FollowUpChannel,
    OpinionDraft, QuestionResponse, QuestionType, Questionnaire, RecordChannel, RecordKind,
    SecondOpinionRequest, Status, TreatmentVerdict,
};
use chrono::{DateTime, NaiveDate, Utc};

use crate::convert::{optional, required, timestamp};

fn ts(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

fn text(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_owned())
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

pub fn status_from_proto(v: i32) -> Option<Status> {
    Status::ALL.into_iter().find(|s| status_to_proto(*s) == v)
}

fn basis_to_proto(b: Basis) -> i32 {
    (match b {
        Basis::LifeThreatening => pb::Basis::LifeThreatening,
        Basis::LifeAltering => pb::Basis::LifeAltering,
        Basis::Serious => pb::Basis::Serious,
        Basis::Rare => pb::Basis::Rare,
        Basis::MajorSurgery => pb::Basis::MajorSurgery,
    }) as i32
}

pub fn basis(b: Basis) -> i32 {
    basis_to_proto(b)
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

pub fn kind_from_proto(invalid: &mut Invalid, field: &str, v: i32) -> Option<RecordKind> {
    let found = RecordKind::ALL.into_iter().find(|k| kind_to_proto(*k) == v);
    if found.is_none() {
        invalid.push(field, "must be a RECORD_KIND_* value");
    }
    found
}

fn channel_to_proto(c: RecordChannel) -> i32 {
    (match c {
        RecordChannel::Upload => pb::RecordChannel::Upload,
        RecordChannel::Fax => pb::RecordChannel::Fax,
        RecordChannel::Mail => pb::RecordChannel::Mail,
    }) as i32
}

pub fn logged_channel_from_proto(
    invalid: &mut Invalid,
    field: &str,
    v: i32,
) -> Option<RecordChannel> {
    match pb::RecordChannel::try_from(v) {
        Ok(pb::RecordChannel::Fax) => Some(RecordChannel::Fax),
        Ok(pb::RecordChannel::Mail) => Some(RecordChannel::Mail),
        _ => {
            invalid.push(field, "must be RECORD_CHANNEL_FAX or RECORD_CHANNEL_MAIL");
            None
        }
    }
}

pub fn follow_up_channel_from_proto(
    invalid: &mut Invalid,
    field: &str,
    v: i32,
) -> Option<FollowUpChannel> {
    match pb::FollowUpChannel::try_from(v) {
        Ok(pb::FollowUpChannel::Phone) => Some(FollowUpChannel::Phone),
        Ok(pb::FollowUpChannel::Email) => Some(FollowUpChannel::Email),
        _ => {
            invalid.push(
                field,
                "must be FOLLOW_UP_CHANNEL_PHONE or FOLLOW_UP_CHANNEL_EMAIL",
            );
            None
        }
    }
}

fn follow_up_channel_to_proto(c: FollowUpChannel) -> i32 {
    (match c {
        FollowUpChannel::Phone => pb::FollowUpChannel::Phone,
        FollowUpChannel::Email => pb::FollowUpChannel::Email,
    }) as i32
}

fn date(s: &str) -> Result<NaiveDate, &'static str> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a date as YYYY-MM-DD")
}

/// Parses a first opinion; `None` (with no violation) when none was given at all, so
/// eligibility can refuse it with its reason.
pub fn first_opinion(
    invalid: &mut Invalid,
    field: &str,
    f: Option<pb::FirstOpinion>,
    today: NaiveDate,
) -> Option<FirstOpinion> {
    let f = f?;
    if f == pb::FirstOpinion::default() {
        return None;
    }
    let npi = optional(
        invalid,
        &format!("{field}.physician_npi"),
        &f.physician_npi,
        Npi::parse,
    );
    if f.physician_name.trim().is_empty() && f.physician_npi.trim().is_empty() {
        invalid.push(
            format!("{field}.physician_name"),
            "name the physician who gave the first opinion (or give their NPI)",
        );
    }
    let given_on = required(invalid, &format!("{field}.given_on"), &f.given_on, date);
    if given_on.is_some_and(|d| d > today) {
        invalid.push(format!("{field}.given_on"), "must not be in the future");
    }
    if f.summary.trim().is_empty() {
        invalid.push(
            format!("{field}.summary"),
            "say what the first opinion concluded",
        );
    }
    Some(FirstOpinion {
        physician_npi: npi.flatten(),
        physician_name: f.physician_name.trim().to_owned(),
        practice: text(&f.practice),
        given_on: given_on?,
        summary: f.summary.trim().to_owned(),
    })
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

pub fn answers_from_proto(
    invalid: &mut Invalid,
    answers: Vec<pb::QuestionnaireAnswer>,
) -> Vec<Answer> {
    use pb::questionnaire_answer::Value;
    let mut out = Vec::new();
    for (i, a) in answers.into_iter().enumerate() {
        let field = format!("answers[{i}]");
        if a.question_id.trim().is_empty() {
            invalid.push(format!("{field}.question_id"), "is required");
            continue;
        }
        let value = match a.value {
            None => {
                invalid.push(format!("{field}.value"), "is required");
                continue;
            }
            Some(Value::Text(t)) => AnswerValue::Text(t.trim().to_owned()),
            Some(Value::YesNo(b)) => AnswerValue::YesNo(b),
            Some(Value::Number(n)) => AnswerValue::Number(n),
            Some(Value::Choice(c)) => AnswerValue::Choice(c.trim().to_owned()),
            Some(Value::Date(d)) => match date(d.trim()) {
                Ok(d) => AnswerValue::Date(d),
                Err(e) => {
                    invalid.push(format!("{field}.date"), e);
                    continue;
                }
            },
        };
        out.push(Answer {
            question_id: a.question_id.trim().to_owned(),
            value,
        });
    }
    out
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

pub fn opinion_from_proto(o: Option<pb::OpinionContent>) -> Result<OpinionDraft, Invalid> {
    let Some(o) = o else {
        return Err(Invalid::field("opinion", "is required"));
    };
    let mut invalid = Invalid::new();
    let diagnosis = match pb::DiagnosisVerdict::try_from(o.diagnosis) {
        Ok(pb::DiagnosisVerdict::Confirmed) => Some(DiagnosisVerdict::Confirmed),
        Ok(pb::DiagnosisVerdict::Refined) => Some(DiagnosisVerdict::Refined),
        Ok(pb::DiagnosisVerdict::Changed) => Some(DiagnosisVerdict::Changed),
        _ => {
            invalid.push(
                "opinion.diagnosis",
                "must be DIAGNOSIS_VERDICT_CONFIRMED, _REFINED or _CHANGED",
            );
            None
        }
    };
    let treatment = match pb::TreatmentVerdict::try_from(o.treatment) {
        Ok(pb::TreatmentVerdict::Confirmed) => Some(TreatmentVerdict::Confirmed),
        Ok(pb::TreatmentVerdict::Changed) => Some(TreatmentVerdict::Changed),
        _ => {
            invalid.push(
                "opinion.treatment",
                "must be TREATMENT_VERDICT_CONFIRMED or TREATMENT_VERDICT_CHANGED",
            );
            None
        }
    };
    let revised = optional(
        &mut invalid,
        "opinion.revised_diagnosis",
        &o.revised_diagnosis,
        Icd10Code::parse,
    );
    invalid.into_result()?;
    Ok(OpinionDraft {
        diagnosis: diagnosis.expect("checked"),
        revised_diagnosis: revised.flatten(),
        treatment: treatment.expect("checked"),
        treatment_recommendation: text(&o.treatment_recommendation),
        further_tests: o
            .further_tests
            .iter()
            .map(|t| t.trim().to_owned())
            .collect(),
        answers: o
            .answers
            .into_iter()
            .map(|a| QuestionResponse {
                question: a.question.trim().to_owned(),
                answer: a.answer.trim().to_owned(),
            })
            .collect(),
        narrative: o.narrative.trim().to_owned(),
    })
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

const CHANNELS: [(dir::ContactChannel, ContactChannel); 4] = [
    (dir::ContactChannel::Mail, ContactChannel::Mail),
    (dir::ContactChannel::Email, ContactChannel::Email),
    (dir::ContactChannel::Portal, ContactChannel::Portal),
    (dir::ContactChannel::Fax, ContactChannel::Fax),
];

fn address_from_proto(invalid: &mut Invalid, field: &str, a: dir::Address) -> Option<Address> {
    let country = required(
        invalid,
        &format!("{field}.country"),
        &a.country,
        CountryCode::parse,
    )?;
    let address = Address {
        lines: a.lines,
        city: a.city.trim().to_owned(),
        region: text(&a.region),
        postal_code: text(&a.postal_code),
        country,
    };
    if let Err(e) = address.validate() {
        invalid.extend(e.nest(field));
        return None;
    }
    Some(address)
}

fn address_to_proto(a: &Address) -> dir::Address {
    dir::Address {
        lines: a.lines.clone(),
        city: a.city.clone(),
        region: a.region.clone().unwrap_or_default(),
        postal_code: a.postal_code.clone().unwrap_or_default(),
        country: a.country.to_string(),
    }
}

/// A doctor given by hand (no NPI), checked field by field.
pub fn doctor_from_proto(invalid: &mut Invalid, d: pb::Doctor) -> Option<Doctor> {
    let field = "doctor";
    if d.name.trim().is_empty() {
        invalid.push(format!("{field}.name"), "is required");
    }
    let address = d
        .address
        .and_then(|a| address_from_proto(invalid, &format!("{field}.address"), a));
    let language = optional(
        invalid,
        &format!("{field}.language"),
        &d.language,
        LanguageTag::parse,
    );
    let channel = match d.preferred_channel {
        0 => None,
        v => {
            let c = dir::ContactChannel::try_from(v)
                .ok()
                .and_then(|c| CHANNELS.iter().find(|(p, _)| *p == c).map(|(_, x)| *x));
            if c.is_none() {
                invalid.push(
                    format!("{field}.preferred_channel"),
                    "must be a CONTACT_CHANNEL_* value",
                );
            }
            c
        }
    };
    if let Some(e) = text(&d.email)
        && !e.contains('@')
    {
        invalid.push(format!("{field}.email"), "must be an email address");
    }
    Some(Doctor {
        npi: None,
        name: d.name.trim().to_owned(),
        email: text(&d.email),
        fax: text(&d.fax),
        address,
        language: language.flatten(),
        preferred_channel: channel,
    })
}

/// A directory provider as the doctor a copy goes to.
pub fn doctor_from_provider(p: &Provider) -> Doctor {
    Doctor {
        npi: Some(p.npi.clone()),
        name: p.name.clone(),
        email: p.email.clone(),
        fax: p.fax.clone(),
        address: Some(p.address.clone()),
        language: p.languages.first().cloned(),
        preferred_channel: Some(p.preferred_channel),
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

/// The whole request as the contract shows it, lateness computed at `now`.
pub fn request_to_proto(r: &SecondOpinionRequest, now: DateTime<Utc>) -> pb::SecondOpinion {
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
        late: r.is_late(now),
        physician: r.physician.as_ref().map(|e| physician_to_proto(e, None)),
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
