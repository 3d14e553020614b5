//! Second-opinion requests into the application's commands. Incoming fields are
//! parsed into the second-opinion crate's types, every problem collected under the
//! path the caller sent.

use bytes::Bytes;
use carepath_app::{
    AppError, AppResult, PageRequest, page_size,
    secondopinion::{
        CheckEligibility, DoctorRef, DownloadRecord, ListRequests, LogRecord, RecordFollowUp,
        ShareWithDoctor, Submit, UploadRecord, records::MAX_CHUNK_BYTES,
    },
};
use carepath_core::{Address, CountryCode, Icd10Code, Invalid, LanguageTag, MemberId, Npi};
use carepath_proto::{common::v1 as common, directory::v1 as dir, secondopinion::v1 as pb};
use carepath_secondopinion::{
    Answer, AnswerValue, CONTENT_TYPES, DiagnosisVerdict, Doctor, FirstOpinion, FollowUpChannel,
    MAX_DESCRIPTION, MAX_FILE_NAME, MAX_RECORD_BYTES, OpinionDraft, QuestionResponse,
    RecordChannel, RecordKind, Status, TreatmentVerdict, check_text,
};
use chrono::NaiveDate;
use futures::{StreamExt, stream::BoxStream};
use tonic::Streaming;

use super::to_proto::{CHANNELS, kind_to_proto, status_to_proto};
use crate::convert::{optional, parse_date as date, required};

fn text(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

pub fn status_from_proto(v: i32) -> Option<Status> {
    Status::ALL.into_iter().find(|s| status_to_proto(*s) == v)
}

pub fn kind_from_proto(invalid: &mut Invalid, field: &str, v: i32) -> Option<RecordKind> {
    let found = RecordKind::ALL.into_iter().find(|k| kind_to_proto(*k) == v);
    if found.is_none() {
        invalid.push(field, "must be a RECORD_KIND_* value");
    }
    found
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

/// A page request; its size is checked by the use case.
pub fn page(p: Option<common::PageRequest>) -> PageRequest {
    let p = p.unwrap_or_default();
    PageRequest {
        token: p.page_token,
        size: p.page_size,
    }
}

/// An eligibility check; `today` is the latest day a first opinion may be from.
pub fn check_eligibility(
    req: pb::CheckEligibilityRequest,
    today: NaiveDate,
) -> Result<CheckEligibility, Invalid> {
    let mut invalid = Invalid::new();
    let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
    let diagnosis = required(&mut invalid, "diagnosis", &req.diagnosis, Icd10Code::parse);
    let first = first_opinion(&mut invalid, "first_opinion", req.first_opinion, today);
    invalid.into_result()?;
    Ok(CheckEligibility {
        member_id: member_id.expect("checked"),
        diagnosis: diagnosis.expect("checked"),
        major_surgery_recommended: req.major_surgery_recommended,
        emergency: req.emergency,
        first_opinion: first,
    })
}

/// A new request; `today` is the latest day a first opinion may be from.
pub fn submit(req: pb::SubmitRequest, today: NaiveDate) -> Result<Submit, Invalid> {
    let mut invalid = Invalid::new();
    let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
    let diagnosis = required(&mut invalid, "diagnosis", &req.diagnosis, Icd10Code::parse);
    let first = first_opinion(&mut invalid, "first_opinion", req.first_opinion, today);
    if let Err(e) = check_text("current_treatment", &req.current_treatment) {
        invalid.extend(e);
    }
    invalid.into_result()?;
    Ok(Submit {
        member_id: member_id.expect("checked"),
        diagnosis: diagnosis.expect("checked"),
        major_surgery_recommended: req.major_surgery_recommended,
        emergency: req.emergency,
        current_treatment: req.current_treatment,
        first_opinion: first,
    })
}

/// The request id and the answers of a questionnaire.
pub fn answer_questionnaire(
    req: pb::AnswerQuestionnaireRequest,
) -> Result<(String, Vec<Answer>), Invalid> {
    let mut invalid = Invalid::new();
    let answers = answers_from_proto(&mut invalid, req.answers);
    invalid.into_result()?;
    Ok((req.request_id, answers))
}

/// A record logged by a nurse coordinator.
pub fn log_record(req: pb::LogRecordRequest) -> Result<LogRecord, Invalid> {
    let mut invalid = Invalid::new();
    let kind = kind_from_proto(&mut invalid, "kind", req.kind);
    let channel = logged_channel_from_proto(&mut invalid, "channel", req.channel);
    if let Err(e) = check_text("description", &req.description) {
        invalid.extend(e);
    }
    invalid.into_result()?;
    Ok(LogRecord {
        request_id: req.request_id,
        kind: kind.expect("checked"),
        channel: channel.expect("checked"),
        description: req.description,
    })
}

/// An upload: its header (the first message), checked, and the bytes of the
/// messages after it.
pub async fn upload(
    mut stream: Streaming<pb::UploadRecordRequest>,
) -> AppResult<(UploadRecord, BoxStream<'static, AppResult<Bytes>>)> {
    use pb::upload_record_request::Part;
    let first = stream.message().await.map_err(|s| {
        AppError::field(
            "header",
            format!("the upload stream failed: {}", s.message()),
        )
    })?;
    let Some(pb::UploadRecordRequest {
        part: Some(Part::Header(header)),
    }) = first
    else {
        return Err(AppError::field(
            "header",
            "the first message of an upload must be its header",
        ));
    };
    let mut invalid = Invalid::new();
    let id = header.request_id.trim().to_owned();
    if id.is_empty() {
        invalid.push("header.request_id", "is required");
    }
    let kind = kind_from_proto(&mut invalid, "header.kind", header.kind);
    let file_name = header.file_name.trim().to_owned();
    if file_name.is_empty() {
        invalid.push("header.file_name", "is required");
    } else if file_name.len() > MAX_FILE_NAME || file_name.contains(['/', '\\', '\0']) {
        invalid.push(
            "header.file_name",
            format!("must be a plain file name of at most {MAX_FILE_NAME} bytes"),
        );
    }
    let content_type = header.content_type.trim().to_ascii_lowercase();
    if !CONTENT_TYPES.contains(&content_type.as_str()) {
        invalid.push(
            "header.content_type",
            format!("must be one of {}", CONTENT_TYPES.join(", ")),
        );
    }
    if header.size_bytes == 0 || header.size_bytes > MAX_RECORD_BYTES {
        invalid.push(
            "header.size_bytes",
            format!("must be between 1 and {MAX_RECORD_BYTES} bytes"),
        );
    }
    let sha256 = header.sha256.trim().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        invalid.push("header.sha256", "must be 64 hexadecimal characters");
    }
    if header.description.chars().count() > MAX_DESCRIPTION {
        invalid.push(
            "header.description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        );
    }
    invalid.into_result()?;
    let cmd = UploadRecord {
        request_id: id,
        kind: kind.expect("checked"),
        file_name,
        content_type,
        size_bytes: header.size_bytes,
        sha256,
        description: header.description,
    };
    let chunks = stream.map(|m| match m {
        Ok(pb::UploadRecordRequest {
            part: Some(Part::Chunk(bytes)),
        }) if bytes.len() <= MAX_CHUNK_BYTES => Ok(Bytes::from(bytes)),
        Ok(pb::UploadRecordRequest {
            part: Some(Part::Chunk(_)),
        }) => Err(AppError::field(
            "chunk",
            format!("a chunk may hold at most {MAX_CHUNK_BYTES} bytes"),
        )),
        Ok(_) => Err(AppError::field(
            "header",
            "only the first message of an upload is a header",
        )),
        Err(s) => Err(AppError::field(
            "chunk",
            format!("the upload stream failed: {}", s.message()),
        )),
    });
    Ok((cmd, chunks.boxed()))
}

pub fn download(req: pb::DownloadRecordRequest) -> DownloadRecord {
    DownloadRecord {
        request_id: req.request_id,
        record_id: req.record_id,
    }
}

/// The doctor a copy goes to: a directory provider by NPI, or one given by hand.
pub fn share(req: pb::ShareWithDoctorRequest) -> AppResult<ShareWithDoctor> {
    let Some(given) = req.doctor else {
        return Err(AppError::field("doctor", "is required"));
    };
    let mut invalid = Invalid::new();
    let doctor = if given.npi.trim().is_empty() {
        doctor_from_proto(&mut invalid, given).map(|d| DoctorRef::Given(Box::new(d)))
    } else {
        invalid
            .check("doctor.npi", Npi::parse(&given.npi))
            .map(DoctorRef::Directory)
    };
    invalid.into_result()?;
    Ok(ShareWithDoctor {
        request_id: req.request_id,
        doctor: doctor.expect("checked"),
        consent: req.consent,
    })
}

pub fn follow_up(req: pb::RecordFollowUpRequest) -> Result<RecordFollowUp, Invalid> {
    let mut invalid = Invalid::new();
    let channel = follow_up_channel_from_proto(&mut invalid, "channel", req.channel);
    invalid.into_result()?;
    Ok(RecordFollowUp {
        request_id: req.request_id,
        channel: channel.expect("checked"),
        notes: req.notes,
        member_understands: req.member_understands,
    })
}

/// Which requests to list.
pub fn list_requests(req: pb::ListRequestsRequest) -> AppResult<ListRequests> {
    let page = page(req.page);
    page_size(page.size, "page.page_size")?;
    let status = match req.status {
        0 => None,
        v => Some(
            status_from_proto(v)
                .ok_or_else(|| AppError::field("status", "must be a STATUS_* value"))?,
        ),
    };
    Ok(ListRequests {
        status,
        late_only: req.late_only,
        page,
    })
}
