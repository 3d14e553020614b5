//! Builders shared by the integration tests: a plan, providers and requests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use carepath_core::{
    Icd10Code, MemberId, NetworkStatus, Npi, Plan, PlanId, ServiceCode, Setting, Urgency,
};
use carepath_precert::{Admission, Answer, ProviderParty, RecordRef, ServiceLine, Submission};
use chrono::{DateTime, NaiveDate, Utc};

pub const PROVIDER_NPI: &str = "1234567893";
pub const FACILITY_NPI: &str = "1245319599";
pub const MEMBER: &str = "M100001";

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

pub fn plan() -> Plan {
    Plan {
        id: PlanId::parse("PLAN-PCM-OAP").unwrap(),
        name: "Open Access Plus with PCM".into(),
        preferred_care_management: true,
        covers_out_of_network: true,
    }
}

pub fn line(code: &str, setting: Setting) -> ServiceLine {
    ServiceLine {
        code: ServiceCode::parse(code).unwrap(),
        units: 1,
        date_of_service: NaiveDate::from_ymd_opt(2026, 3, 16).unwrap(),
        setting,
        facility_kind: None,
        length_of_stay_hours: None,
        delivery: None,
        admission: Admission::Elective,
    }
}

pub fn request(lines: Vec<ServiceLine>) -> Submission {
    Submission {
        member_id: MemberId::parse(MEMBER).unwrap(),
        plan: plan(),
        requesting_provider: ProviderParty {
            npi: Npi::parse(PROVIDER_NPI).unwrap(),
            network: NetworkStatus::InNetwork,
        },
        servicing_provider: ProviderParty {
            npi: Npi::parse(FACILITY_NPI).unwrap(),
            network: NetworkStatus::InNetwork,
        },
        lines,
        diagnoses: vec![Icd10Code::parse("G43.909").unwrap()],
        urgency: Urgency::Routine,
        answers: BTreeMap::new(),
        records: Vec::new(),
        coverage_assertions: Vec::new(),
    }
}

pub fn answers(pairs: &[(&str, Answer)]) -> BTreeMap<String, Answer> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

pub fn record(document: &str) -> RecordRef {
    RecordRef {
        id: format!("DOC-{document}"),
        document: document.to_owned(),
    }
}
