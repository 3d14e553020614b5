//! Requests the precertification end-to-end suites share: the demo parties they use,
//! service lines, clinical answers and the in-network MRI most of them submit.

use carepath_proto::{
    common::v1::{Setting, Urgency},
    directory::v1::ProviderKind,
    precert::v1::{
        self as pb, clinical_answer::Value, precert_service_client::PrecertServiceClient,
    },
};
use tonic::transport::Channel;

/// A member of PLAN-PCM-OAP (Preferred Care Management, covers out of network).
pub const MEMBER: &str = "M100001";
/// Clearview Imaging Center: in network, radiology.
pub const IMAGING_IN: &str = "1184649790";
/// Summit Advanced Imaging: out of network.
pub const IMAGING_OUT: &str = "1787245327";
/// An in-network internist.
pub const INTERNIST: &str = "1234358301";
/// Riverside General Hospital: in network, an acute hospital.
pub const HOSPITAL: &str = "1603758941";

pub fn client(channel: Channel) -> PrecertServiceClient<Channel> {
    PrecertServiceClient::new(channel)
}

/// One unit of `code` in `setting` on 2026-12-01.
pub fn line(code: &str, setting: Setting) -> pb::ServiceLine {
    pb::ServiceLine {
        service_code: code.into(),
        units: 1,
        date_of_service: "2026-12-01".into(),
        setting: setting as i32,
        ..Default::default()
    }
}

pub fn flag(id: &str, v: bool) -> pb::ClinicalAnswer {
    pb::ClinicalAnswer {
        question_id: id.into(),
        value: Some(Value::Flag(v)),
    }
}

pub fn number(id: &str, v: f64) -> pb::ClinicalAnswer {
    pb::ClinicalAnswer {
        question_id: id.into(),
        value: Some(Value::Number(v)),
    }
}

pub fn record(id: &str, document: &str) -> pb::RecordReference {
    pb::RecordReference {
        id: id.into(),
        document: document.into(),
    }
}

/// A routine in-network brain MRI with the clinical notes it asks for (rule IMG-MRI:
/// approved at once when there are red-flag symptoms or six weeks of conservative
/// therapy; radiology reviews otherwise).
pub fn mri(request_id: &str, answers: Vec<pb::ClinicalAnswer>) -> pb::SubmitRequest {
    pb::SubmitRequest {
        request_id: request_id.into(),
        member_id: MEMBER.into(),
        requesting_provider_npi: IMAGING_IN.into(),
        servicing_provider_npi: IMAGING_IN.into(),
        lines: vec![line("70553", Setting::Outpatient)],
        diagnoses: vec!["G43.909".into()],
        urgency: Urgency::Routine as i32,
        answers,
        records: vec![record("rec-1", "clinical_notes")],
    }
}

/// A planned stay of `days` days at Riverside General (an acute hospital, which takes
/// notices by fax), under rule INPT-ACUTE: approved at once for at most five days
/// with the level of care documented, for a reviewer beyond; case management follows
/// an approved stay with transition planning. Its date of service is [`line`]'s.
pub fn hospital_stay(request_id: &str, days: u32) -> pb::SubmitRequest {
    pb::SubmitRequest {
        request_id: request_id.into(),
        member_id: MEMBER.into(),
        requesting_provider_npi: HOSPITAL.into(),
        servicing_provider_npi: HOSPITAL.into(),
        lines: vec![pb::ServiceLine {
            facility_kind: ProviderKind::AcuteHospital as i32,
            length_of_stay_hours: days * 24,
            admission: pb::Admission::Elective as i32,
            ..line("99221", Setting::Inpatient)
        }],
        diagnoses: vec!["K57.20".into()],
        urgency: Urgency::Routine as i32,
        answers: vec![
            flag("inpatient_level_of_care_documented", true),
            number("expected_length_of_stay_days", f64::from(days)),
        ],
        records: vec![record("adm-1", "admission_notes")],
    }
}
