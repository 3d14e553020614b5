//! Conversions between protobuf messages and domain types, shared by every service.
//!
//! Incoming messages are parsed into validated domain types; every problem is collected
//! under the field path the caller sent (`member.address.country`), so one answer names
//! every bad field. Outgoing conversions cannot fail.

use carepath_core::{
    Address, ContactChannel, CountryCode, Invalid, LanguageTag, Member, MemberId, Npi, Plan,
    PlanId, Provider, ProviderKind, Setting, Specialty, Staff, StaffId, StaffRole, Urgency,
};
use carepath_proto::{common::v1 as common, directory::v1 as pb};
use chrono::{DateTime, NaiveDate, Utc};

/// Parses a required text field into a domain type, recording a violation if absent
/// or malformed.
pub fn required<T, E: std::fmt::Display>(
    invalid: &mut Invalid,
    field: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Option<T> {
    if value.trim().is_empty() {
        invalid.push(field, "is required");
        return None;
    }
    invalid.check(field, parse(value.trim()))
}

/// Parses an optional text field: empty means `None`.
pub fn optional<T, E: std::fmt::Display>(
    invalid: &mut Invalid,
    field: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Option<Option<T>> {
    if value.trim().is_empty() {
        return Some(None);
    }
    invalid.check(field, parse(value.trim())).map(Some)
}

fn text(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// The snake_case name serde gives a unit enum value, for contract fields that carry a
/// domain name as text.
pub fn json_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The first second a protobuf timestamp may name: 0001-01-01T00:00:00Z.
pub const TIMESTAMP_MIN_SECONDS: i64 = -62_135_596_800;
/// The last second a protobuf timestamp may name: 9999-12-31T23:59:59Z.
pub const TIMESTAMP_MAX_SECONDS: i64 = 253_402_300_799;

/// The instant a protobuf timestamp names, to the nanosecond; `None` when it names
/// none: nanos outside 0..1e9, or seconds outside the range `google.protobuf.Timestamp`
/// defines (years 1 to 9999), which stored times could not be compared with.
pub fn instant(t: prost_types::Timestamp) -> Option<DateTime<Utc>> {
    if !(TIMESTAMP_MIN_SECONDS..=TIMESTAMP_MAX_SECONDS).contains(&t.seconds) {
        return None;
    }
    u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
}

/// Reads an optional timestamp field; one that names no instant is an error naming
/// the field.
pub fn optional_instant(
    invalid: &mut Invalid,
    field: &str,
    value: Option<prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    let t = value?;
    let at = instant(t);
    if at.is_none() {
        invalid.push(
            field,
            "is not a valid timestamp (seconds from 0001-01-01 to 9999-12-31, nanos from 0 to 999,999,999)",
        );
    }
    at
}

pub fn urgency_from_proto(v: i32, field: &str, invalid: &mut Invalid) -> Option<Urgency> {
    match common::Urgency::try_from(v) {
        Ok(common::Urgency::Urgent) => Some(Urgency::Urgent),
        Ok(common::Urgency::Routine) => Some(Urgency::Routine),
        _ => {
            invalid.push(field, "must be URGENCY_URGENT or URGENCY_ROUTINE");
            None
        }
    }
}

pub fn urgency_to_proto(u: Urgency) -> i32 {
    match u {
        Urgency::Urgent => common::Urgency::Urgent as i32,
        Urgency::Routine => common::Urgency::Routine as i32,
    }
}

pub fn setting_from_proto(v: i32, field: &str, invalid: &mut Invalid) -> Option<Setting> {
    match common::Setting::try_from(v) {
        Ok(common::Setting::Inpatient) => Some(Setting::Inpatient),
        Ok(common::Setting::Outpatient) => Some(Setting::Outpatient),
        Ok(common::Setting::Office) => Some(Setting::Office),
        Ok(common::Setting::Home) => Some(Setting::Home),
        _ => {
            invalid.push(field, "must be one of SETTING_INPATIENT, SETTING_OUTPATIENT, SETTING_OFFICE, SETTING_HOME");
            None
        }
    }
}

pub fn setting_to_proto(s: Setting) -> i32 {
    (match s {
        Setting::Inpatient => common::Setting::Inpatient,
        Setting::Outpatient => common::Setting::Outpatient,
        Setting::Office => common::Setting::Office,
        Setting::Home => common::Setting::Home,
    }) as i32
}

const PROVIDER_KINDS: [(pb::ProviderKind, ProviderKind); 11] = [
    (pb::ProviderKind::Physician, ProviderKind::Physician),
    (pb::ProviderKind::AcuteHospital, ProviderKind::AcuteHospital),
    (
        pb::ProviderKind::SkilledNursing,
        ProviderKind::SkilledNursing,
    ),
    (
        pb::ProviderKind::Rehabilitation,
        ProviderKind::Rehabilitation,
    ),
    (
        pb::ProviderKind::LongTermAcuteCare,
        ProviderKind::LongTermAcuteCare,
    ),
    (pb::ProviderKind::Hospice, ProviderKind::Hospice),
    (
        pb::ProviderKind::InfusionCenter,
        ProviderKind::InfusionCenter,
    ),
    (pb::ProviderKind::HomeInfusion, ProviderKind::HomeInfusion),
    (
        pb::ProviderKind::PhysicianOffice,
        ProviderKind::PhysicianOffice,
    ),
    (
        pb::ProviderKind::DialysisFacility,
        ProviderKind::DialysisFacility,
    ),
    (pb::ProviderKind::ImagingCenter, ProviderKind::ImagingCenter),
];

pub fn provider_kind_from_proto(v: i32) -> Option<ProviderKind> {
    let kind = pb::ProviderKind::try_from(v).ok()?;
    PROVIDER_KINDS
        .iter()
        .find(|(p, _)| *p == kind)
        .map(|(_, d)| *d)
}

pub fn provider_kind_to_proto(kind: ProviderKind) -> i32 {
    PROVIDER_KINDS
        .iter()
        .find(|(_, d)| *d == kind)
        .map_or(0, |(p, _)| *p as i32)
}

const CHANNELS: [(pb::ContactChannel, ContactChannel); 4] = [
    (pb::ContactChannel::Mail, ContactChannel::Mail),
    (pb::ContactChannel::Email, ContactChannel::Email),
    (pb::ContactChannel::Portal, ContactChannel::Portal),
    (pb::ContactChannel::Fax, ContactChannel::Fax),
];

fn channel_from_proto(v: i32, field: &str, invalid: &mut Invalid) -> Option<ContactChannel> {
    let found = pb::ContactChannel::try_from(v)
        .ok()
        .and_then(|c| CHANNELS.iter().find(|(p, _)| *p == c).map(|(_, d)| *d));
    if found.is_none() {
        invalid.push(field, "must be one of CONTACT_CHANNEL_MAIL, CONTACT_CHANNEL_EMAIL, CONTACT_CHANNEL_PORTAL, CONTACT_CHANNEL_FAX");
    }
    found
}

fn channel_to_proto(c: ContactChannel) -> i32 {
    CHANNELS
        .iter()
        .find(|(_, d)| *d == c)
        .map_or(0, |(p, _)| *p as i32)
}

const STAFF_ROLES: [(pb::StaffRole, StaffRole); 3] = [
    (pb::StaffRole::Nurse, StaffRole::Nurse),
    (
        pb::StaffRole::PhysicianReviewer,
        StaffRole::PhysicianReviewer,
    ),
    (pb::StaffRole::Admin, StaffRole::Admin),
];

pub fn staff_role_from_proto(v: i32) -> Option<StaffRole> {
    let role = pb::StaffRole::try_from(v).ok()?;
    STAFF_ROLES
        .iter()
        .find(|(p, _)| *p == role)
        .map(|(_, d)| *d)
}

fn staff_role_to_proto(r: StaffRole) -> i32 {
    STAFF_ROLES
        .iter()
        .find(|(_, d)| *d == r)
        .map_or(0, |(p, _)| *p as i32)
}

fn languages(values: &[String], field: &str, invalid: &mut Invalid) -> Vec<LanguageTag> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, l)| invalid.check(&format!("{field}[{i}]"), LanguageTag::parse(l)))
        .collect()
}

fn address_from_proto(
    a: Option<pb::Address>,
    field: &str,
    invalid: &mut Invalid,
) -> Option<Address> {
    let Some(a) = a else {
        invalid.push(field, "is required");
        return None;
    };
    let country = required(
        invalid,
        &format!("{field}.country"),
        &a.country,
        CountryCode::parse,
    )?;
    let address = Address {
        lines: a.lines,
        city: a.city,
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

fn address_to_proto(a: &Address) -> pb::Address {
    pb::Address {
        lines: a.lines.clone(),
        city: a.city.clone(),
        region: a.region.clone().unwrap_or_default(),
        postal_code: a.postal_code.clone().unwrap_or_default(),
        country: a.country.to_string(),
    }
}

/// Runs an entity's own validation, nesting its violations under `field`.
fn validated<T>(
    entity: T,
    field: &str,
    invalid: &mut Invalid,
    check: impl FnOnce(&T) -> Result<(), Invalid>,
) -> Option<T> {
    match check(&entity) {
        Ok(()) => Some(entity),
        Err(e) => {
            invalid.extend(e.nest(field));
            None
        }
    }
}

pub fn plan_from_proto(p: Option<pb::Plan>) -> Result<Plan, Invalid> {
    let mut invalid = Invalid::new();
    let Some(p) = p else {
        return Err(Invalid::field("plan", "is required"));
    };
    let id = required(&mut invalid, "plan.id", &p.id, PlanId::parse);
    let plan = id.map(|id| Plan {
        id,
        name: p.name.trim().to_owned(),
        preferred_care_management: p.preferred_care_management,
        covers_out_of_network: p.covers_out_of_network,
    });
    let plan = plan.and_then(|plan| validated(plan, "plan", &mut invalid, Plan::validate));
    invalid.into_result()?;
    Ok(plan.expect("no violations means every field parsed"))
}

pub fn plan_to_proto(p: &Plan) -> pb::Plan {
    pb::Plan {
        id: p.id.to_string(),
        name: p.name.clone(),
        preferred_care_management: p.preferred_care_management,
        covers_out_of_network: p.covers_out_of_network,
    }
}

/// A calendar date as every contract writes it (`YYYY-MM-DD`).
pub fn parse_date(s: &str) -> Result<NaiveDate, &'static str> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a date as YYYY-MM-DD")
}

pub fn member_from_proto(m: Option<pb::Member>, today: NaiveDate) -> Result<Member, Invalid> {
    let Some(m) = m else {
        return Err(Invalid::field("member", "is required"));
    };
    let mut invalid = Invalid::new();
    let id = required(&mut invalid, "member.id", &m.id, MemberId::parse);
    let plan_id = required(&mut invalid, "member.plan_id", &m.plan_id, PlanId::parse);
    let dob = required(
        &mut invalid,
        "member.date_of_birth",
        &m.date_of_birth,
        parse_date,
    );
    let address = address_from_proto(m.address, "member.address", &mut invalid);
    let language = required(
        &mut invalid,
        "member.language",
        &m.language,
        LanguageTag::parse,
    );
    let channel = channel_from_proto(
        m.preferred_channel,
        "member.preferred_channel",
        &mut invalid,
    );
    let subscriber = optional(
        &mut invalid,
        "member.subscriber_id",
        &m.subscriber_id,
        MemberId::parse,
    );
    if let (
        Some(id),
        Some(plan_id),
        Some(date_of_birth),
        Some(address),
        Some(language),
        Some(preferred_channel),
        Some(subscriber_id),
    ) = (id, plan_id, dob, address, language, channel, subscriber)
    {
        let member = Member {
            id,
            plan_id,
            first_name: m.first_name.trim().to_owned(),
            last_name: m.last_name.trim().to_owned(),
            date_of_birth,
            address,
            email: text(&m.email),
            phone: text(&m.phone),
            language,
            preferred_channel,
            subscriber_id,
        };
        if let Some(member) = validated(member, "member", &mut invalid, |m| m.validate(today)) {
            invalid.into_result()?;
            return Ok(member);
        }
    }
    Err(invalid)
}

pub fn member_to_proto(m: &Member) -> pb::Member {
    pb::Member {
        id: m.id.to_string(),
        plan_id: m.plan_id.to_string(),
        first_name: m.first_name.clone(),
        last_name: m.last_name.clone(),
        date_of_birth: m.date_of_birth.format("%Y-%m-%d").to_string(),
        address: Some(address_to_proto(&m.address)),
        email: m.email.clone().unwrap_or_default(),
        phone: m.phone.clone().unwrap_or_default(),
        language: m.language.to_string(),
        preferred_channel: channel_to_proto(m.preferred_channel),
        subscriber_id: m
            .subscriber_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

pub fn provider_from_proto(p: Option<pb::Provider>) -> Result<Provider, Invalid> {
    let Some(p) = p else {
        return Err(Invalid::field("provider", "is required"));
    };
    let mut invalid = Invalid::new();
    let npi = required(&mut invalid, "provider.npi", &p.npi, Npi::parse);
    let kind = provider_kind_from_proto(p.kind);
    if kind.is_none() {
        invalid.push(
            "provider.kind",
            "must be a PROVIDER_KIND_* value other than UNSPECIFIED",
        );
    }
    let specialty = optional(
        &mut invalid,
        "provider.specialty",
        &p.specialty,
        Specialty::parse,
    );
    let plans: Vec<PlanId> = p
        .in_network_plans
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            invalid.check(
                &format!("provider.in_network_plans[{i}]"),
                PlanId::parse(id),
            )
        })
        .collect();
    let langs = languages(&p.languages, "provider.languages", &mut invalid);
    let address = address_from_proto(p.address, "provider.address", &mut invalid);
    let channel = channel_from_proto(
        p.preferred_channel,
        "provider.preferred_channel",
        &mut invalid,
    );
    if let (Some(npi), Some(kind), Some(specialty), Some(address), Some(preferred_channel)) =
        (npi, kind, specialty, address, channel)
    {
        let provider = Provider {
            npi,
            name: p.name.trim().to_owned(),
            kind,
            specialty,
            in_network_plans: plans,
            languages: langs,
            address,
            practice: text(&p.practice),
            phone: text(&p.phone),
            fax: text(&p.fax),
            email: text(&p.email),
            preferred_channel,
            biography: text(&p.biography),
        };
        if let Some(provider) = validated(provider, "provider", &mut invalid, Provider::validate) {
            invalid.into_result()?;
            return Ok(provider);
        }
    }
    Err(invalid)
}

pub fn provider_to_proto(p: &Provider) -> pb::Provider {
    pb::Provider {
        npi: p.npi.to_string(),
        name: p.name.clone(),
        kind: provider_kind_to_proto(p.kind),
        specialty: p
            .specialty
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        in_network_plans: p.in_network_plans.iter().map(ToString::to_string).collect(),
        languages: p.languages.iter().map(ToString::to_string).collect(),
        address: Some(address_to_proto(&p.address)),
        practice: p.practice.clone().unwrap_or_default(),
        phone: p.phone.clone().unwrap_or_default(),
        fax: p.fax.clone().unwrap_or_default(),
        email: p.email.clone().unwrap_or_default(),
        preferred_channel: channel_to_proto(p.preferred_channel),
        biography: p.biography.clone().unwrap_or_default(),
    }
}

pub fn staff_from_proto(s: Option<pb::Staff>) -> Result<Staff, Invalid> {
    let Some(s) = s else {
        return Err(Invalid::field("staff", "is required"));
    };
    let mut invalid = Invalid::new();
    let id = required(&mut invalid, "staff.id", &s.id, StaffId::parse);
    let role = staff_role_from_proto(s.role);
    if role.is_none() {
        invalid.push(
            "staff.role",
            "must be STAFF_ROLE_NURSE, STAFF_ROLE_PHYSICIAN_REVIEWER or STAFF_ROLE_ADMIN",
        );
    }
    let specialty = optional(
        &mut invalid,
        "staff.specialty",
        &s.specialty,
        Specialty::parse,
    );
    let npi = optional(&mut invalid, "staff.npi", &s.npi, Npi::parse);
    let langs = languages(&s.languages, "staff.languages", &mut invalid);
    if let (Some(id), Some(role), Some(specialty), Some(npi)) = (id, role, specialty, npi) {
        let staff = Staff {
            id,
            name: s.name.trim().to_owned(),
            role,
            specialty,
            languages: langs,
            npi,
        };
        if let Some(staff) = validated(staff, "staff", &mut invalid, Staff::validate) {
            invalid.into_result()?;
            return Ok(staff);
        }
    }
    Err(invalid)
}

pub fn staff_to_proto(s: &Staff) -> pb::Staff {
    pb::Staff {
        id: s.id.to_string(),
        name: s.name.clone(),
        role: staff_role_to_proto(s.role),
        specialty: s
            .specialty
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        languages: s.languages.iter().map(ToString::to_string).collect(),
        npi: s.npi.as_ref().map(ToString::to_string).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_outside_the_protobuf_range_name_no_instant() {
        let at = |seconds, nanos| instant(prost_types::Timestamp { seconds, nanos });
        assert!(at(TIMESTAMP_MIN_SECONDS, 0).is_some());
        assert!(at(TIMESTAMP_MAX_SECONDS, 999_999_999).is_some());
        assert_eq!(
            at(TIMESTAMP_MAX_SECONDS, 0).unwrap().to_rfc3339(),
            "9999-12-31T23:59:59+00:00"
        );
        assert!(at(TIMESTAMP_MIN_SECONDS - 1, 0).is_none());
        assert!(at(TIMESTAMP_MAX_SECONDS + 1, 0).is_none());
        // Year 20000, which chrono could represent but no stored time compares with.
        assert!(at(568_971_820_800, 0).is_none());
        assert!(at(0, -1).is_none());
        assert!(at(0, 1_000_000_000).is_none());
        let mut invalid = Invalid::new();
        let none = optional_instant(
            &mut invalid,
            "received_from",
            Some(prost_types::Timestamp {
                seconds: 568_971_820_800,
                nanos: 0,
            }),
        );
        assert!(none.is_none());
        assert_eq!(invalid.violations[0].field, "received_from");
    }

    fn member() -> pb::Member {
        pb::Member {
            id: "M100001".into(),
            plan_id: "PLAN-A".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            date_of_birth: "1970-01-31".into(),
            address: Some(pb::Address {
                lines: vec!["1 Main St".into()],
                city: "Hartford".into(),
                region: "CT".into(),
                postal_code: "06103".into(),
                country: "US".into(),
            }),
            email: "ada@example.org".into(),
            phone: String::new(),
            language: "en".into(),
            preferred_channel: pb::ContactChannel::Email as i32,
            subscriber_id: String::new(),
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn a_member_round_trips() {
        let parsed = member_from_proto(Some(member()), today()).unwrap();
        assert_eq!(member_to_proto(&parsed), member());
    }

    #[test]
    fn every_bad_member_field_is_named() {
        let mut m = member();
        m.id = String::new();
        m.date_of_birth = "31/01/1970".into();
        m.address.as_mut().unwrap().country = "Narnia".into();
        m.preferred_channel = 0;
        let err = member_from_proto(Some(m), today()).unwrap_err();
        let fields: Vec<_> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "member.id",
                "member.date_of_birth",
                "member.address.country",
                "member.preferred_channel"
            ]
        );
    }

    #[test]
    fn a_malformed_npi_names_the_field() {
        let p = pb::Provider {
            npi: "1234567890".into(),
            name: "Dr Who".into(),
            kind: pb::ProviderKind::Physician as i32,
            specialty: "cardiology".into(),
            address: member().address,
            preferred_channel: pb::ContactChannel::Fax as i32,
            fax: "555-0100".into(),
            ..Default::default()
        };
        let err = provider_from_proto(Some(p)).unwrap_err();
        assert_eq!(err.violations[0].field, "provider.npi");
    }

    #[test]
    fn every_provider_kind_maps_both_ways() {
        for (_, kind) in PROVIDER_KINDS {
            assert_eq!(
                provider_kind_from_proto(provider_kind_to_proto(kind)),
                Some(kind)
            );
        }
    }
}
