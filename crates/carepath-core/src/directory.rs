//! The directory: plans, members, providers and staff, and the bundle they are
//! imported in.
//!
//! These types are also the JSON import format, so they reject unknown fields (a typo
//! in a data file is an error, not a silently ignored key) and let optional
//! collections be left out.

use std::collections::HashMap;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codes::{
    CountryCode, LanguageTag, MemberId, Npi, PlanId, Specialty, StaffId, named_enum,
};
use crate::invalid::Invalid;

/// The demo directory shipped with the project, so a server can start with realistic
/// data and no file path. Load it with [`DirectoryBundle::from_json`].
pub const DEMO_DIRECTORY_JSON: &str = include_str!("../../../data/demo/directory.json");

/// Longest free-text biography accepted, to keep directory entries a readable size.
const MAX_BIOGRAPHY_CHARS: usize = 2_000;

/// Oldest plausible age, to catch a mistyped year of birth.
const MAX_AGE_YEARS: i32 = 130;

/// What kind of provider this is; several rules (inpatient notification, site of
/// service for infusions) depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Physician,
    AcuteHospital,
    SkilledNursing,
    Rehabilitation,
    LongTermAcuteCare,
    Hospice,
    InfusionCenter,
    HomeInfusion,
    PhysicianOffice,
    DialysisFacility,
    ImagingCenter,
}

named_enum!(ProviderKind, "provider kind", {
    Physician => "physician",
    AcuteHospital => "acute_hospital",
    SkilledNursing => "skilled_nursing",
    Rehabilitation => "rehabilitation",
    LongTermAcuteCare => "long_term_acute_care",
    Hospice => "hospice",
    InfusionCenter => "infusion_center",
    HomeInfusion => "home_infusion",
    PhysicianOffice => "physician_office",
    DialysisFacility => "dialysis_facility",
    ImagingCenter => "imaging_center",
});

impl ProviderKind {
    /// Facilities bill for a place rather than a person; everything but an individual
    /// physician is one.
    pub fn is_facility(self) -> bool {
        self != ProviderKind::Physician
    }

    /// Facilities that admit patients, whose admissions need notification and
    /// concurrent review.
    pub fn is_inpatient_facility(self) -> bool {
        matches!(
            self,
            ProviderKind::AcuteHospital
                | ProviderKind::SkilledNursing
                | ProviderKind::Rehabilitation
                | ProviderKind::LongTermAcuteCare
                | ProviderKind::Hospice
        )
    }
}

/// Whether a provider is contracted with a member's plan, which decides cost share
/// and whether the plan pays at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkStatus {
    InNetwork,
    OutOfNetwork,
}

named_enum!(NetworkStatus, "network status", {
    InNetwork => "in_network",
    OutOfNetwork => "out_of_network",
});

/// A postal address, as printed on mailed notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Street lines in printing order.
    #[serde(default)]
    pub lines: Vec<String>,
    pub city: String,
    /// State, county or emirate, where the country uses one.
    #[serde(default)]
    pub region: Option<String>,
    /// Not every country has postal codes (the UAE does not).
    #[serde(default)]
    pub postal_code: Option<String>,
    pub country: CountryCode,
}

impl Address {
    /// Checks what a mailed notice needs: a city and no blank lines.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        for (i, line) in self.lines.iter().enumerate() {
            if line.trim().is_empty() {
                invalid.push(format!("lines[{i}]"), "must not be empty");
            }
        }
        require_text(&mut invalid, "city", &self.city);
        optional_text(&mut invalid, "region", self.region.as_deref());
        optional_text(&mut invalid, "postal_code", self.postal_code.as_deref());
        invalid.into_result()
    }
}

/// How someone prefers to receive notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactChannel {
    Mail,
    Email,
    Portal,
    Fax,
}

named_enum!(ContactChannel, "contact channel", {
    Mail => "mail",
    Email => "email",
    Portal => "portal",
    Fax => "fax",
});

/// A benefit plan, with the two properties utilization management depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: PlanId,
    pub name: String,
    /// Plans with Preferred Care Management route members through nurse case
    /// management; plans without it carry a higher employee cost share.
    pub preferred_care_management: bool,
    /// Whether out-of-network care is covered at all, or only emergencies.
    pub covers_out_of_network: bool,
}

impl Plan {
    /// Checks the fields the code types cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        require_text(&mut invalid, "name", &self.name);
        invalid.into_result()
    }
}

/// A person covered by a plan: the subscriber or a covered family member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: MemberId,
    pub plan_id: PlanId,
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: NaiveDate,
    pub address: Address,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    /// The language notices and calls should be in.
    pub language: LanguageTag,
    pub preferred_channel: ContactChannel,
    /// `None` when this member is the subscriber; otherwise the subscriber whose
    /// coverage this family member shares.
    #[serde(default)]
    pub subscriber_id: Option<MemberId>,
}

impl Member {
    /// Checks names, contact details and that the date of birth is plausible as of
    /// `today` (passed in, since the core never reads the clock).
    pub fn validate(&self, today: NaiveDate) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        require_text(&mut invalid, "first_name", &self.first_name);
        require_text(&mut invalid, "last_name", &self.last_name);
        if self.date_of_birth > today {
            invalid.push(
                "date_of_birth",
                format!("must not be after today ({today})"),
            );
        } else if today.year() - self.date_of_birth.year() > MAX_AGE_YEARS {
            invalid.push(
                "date_of_birth",
                format!("must be within the last {MAX_AGE_YEARS} years"),
            );
        }
        if let Err(e) = self.address.validate() {
            invalid.extend(e.nest("address"));
        }
        check_email(&mut invalid, "email", self.email.as_deref());
        check_phone(&mut invalid, "phone", self.phone.as_deref());
        if self.preferred_channel == ContactChannel::Fax {
            invalid.push("preferred_channel", "members cannot be contacted by fax");
        } else {
            check_channel(
                &mut invalid,
                self.preferred_channel,
                &self.address,
                self.email.as_deref(),
                None,
            );
        }
        if self.subscriber_id.as_ref() == Some(&self.id) {
            invalid.push(
                "subscriber_id",
                "must name another member; leave it out for the subscriber",
            );
        }
        invalid.into_result()
    }

    /// Age in whole years on `on`, e.g. to tell a minor from an adult.
    pub fn age_on(&self, on: NaiveDate) -> u32 {
        on.years_since(self.date_of_birth).unwrap_or(0)
    }

    /// Whether this member is the subscriber rather than a covered family member.
    pub fn is_subscriber(&self) -> bool {
        self.subscriber_id.is_none()
    }
}

/// A physician or facility that requests services, identified by NPI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub npi: Npi,
    pub name: String,
    pub kind: ProviderKind,
    /// Required for physicians, so reviews can be matched to a peer of the same
    /// specialty; optional for facilities.
    #[serde(default)]
    pub specialty: Option<Specialty>,
    /// Plans this provider is contracted with; every other plan sees it as out of
    /// network.
    #[serde(default)]
    pub in_network_plans: Vec<PlanId>,
    #[serde(default)]
    pub languages: Vec<LanguageTag>,
    pub address: Address,
    /// The group practice a physician belongs to.
    #[serde(default)]
    pub practice: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub fax: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    pub preferred_channel: ContactChannel,
    /// A short professional biography, shown to members choosing a second-opinion
    /// expert.
    #[serde(default)]
    pub biography: Option<String>,
}

impl Provider {
    /// Whether this provider is in network for `plan`.
    pub fn network_status(&self, plan: &PlanId) -> NetworkStatus {
        if self.in_network_plans.contains(plan) {
            NetworkStatus::InNetwork
        } else {
            NetworkStatus::OutOfNetwork
        }
    }

    /// Whether the provider speaks `language` (region ignored, so `es-419` matches
    /// `es`).
    pub fn speaks(&self, language: &LanguageTag) -> bool {
        self.languages
            .iter()
            .any(|l| l.primary() == language.primary())
    }

    /// Checks names, contact details, and that the preferred channel can be used.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        require_text(&mut invalid, "name", &self.name);
        if self.kind == ProviderKind::Physician && self.specialty.is_none() {
            invalid.push("specialty", "physicians need a specialty");
        }
        for (i, plan) in self.in_network_plans.iter().enumerate() {
            if self.in_network_plans[..i].contains(plan) {
                invalid.push(
                    format!("in_network_plans[{i}]"),
                    format!("duplicate plan {plan}"),
                );
            }
        }
        if let Err(e) = self.address.validate() {
            invalid.extend(e.nest("address"));
        }
        optional_text(&mut invalid, "practice", self.practice.as_deref());
        check_phone(&mut invalid, "phone", self.phone.as_deref());
        check_phone(&mut invalid, "fax", self.fax.as_deref());
        check_email(&mut invalid, "email", self.email.as_deref());
        optional_text(&mut invalid, "biography", self.biography.as_deref());
        if let Some(bio) = &self.biography
            && bio.chars().count() > MAX_BIOGRAPHY_CHARS
        {
            invalid.push(
                "biography",
                format!("must be at most {MAX_BIOGRAPHY_CHARS} characters"),
            );
        }
        check_channel(
            &mut invalid,
            self.preferred_channel,
            &self.address,
            self.email.as_deref(),
            self.fax.as_deref(),
        );
        invalid.into_result()
    }
}

/// What a staff member may do in reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Nurse,
    PhysicianReviewer,
    Admin,
}

named_enum!(StaffRole, "staff role", {
    Nurse => "nurse",
    PhysicianReviewer => "physician_reviewer",
    Admin => "admin",
});

/// A nurse, physician reviewer or administrator working for the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staff {
    pub id: StaffId,
    pub name: String,
    pub role: StaffRole,
    /// For reviewers, the expertise an adverse decision must be made with; for nurses,
    /// the programme they work in.
    #[serde(default)]
    pub specialty: Option<Specialty>,
    #[serde(default)]
    pub languages: Vec<LanguageTag>,
    /// Physician reviewers are licensed physicians and carry an NPI.
    #[serde(default)]
    pub npi: Option<Npi>,
}

impl Staff {
    /// Checks the name, and that physician reviewers have the NPI and specialty an
    /// adverse decision is recorded with.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        require_text(&mut invalid, "name", &self.name);
        if self.role == StaffRole::PhysicianReviewer {
            if self.npi.is_none() {
                invalid.push("npi", "physician reviewers need an npi");
            }
            if self.specialty.is_none() {
                invalid.push("specialty", "physician reviewers need a specialty");
            }
        }
        invalid.into_result()
    }

    /// Whether the staff member speaks `language` (region ignored).
    pub fn speaks(&self, language: &LanguageTag) -> bool {
        self.languages
            .iter()
            .any(|l| l.primary() == language.primary())
    }
}

/// Why a directory document could not be read, naming the source and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {}{message}", entry.as_deref().map(|e| format!("{e}: ")).unwrap_or_default())]
pub struct DirectoryError {
    /// Where the document came from (a file name, or "demo").
    pub source_name: String,
    /// The entry at fault, e.g. `providers[3] (1234567893)`; `None` when the document
    /// as a whole could not be read.
    pub entry: Option<String>,
    pub message: String,
}

/// A whole directory, as imported from JSON: `{ "plans": [...], "members": [...],
/// "providers": [...], "staff": [...] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryBundle {
    #[serde(default)]
    pub plans: Vec<Plan>,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub providers: Vec<Provider>,
    #[serde(default)]
    pub staff: Vec<Staff>,
}

/// The bundle with entries not yet decoded, so a decoding error can name its entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    #[serde(default)]
    plans: Vec<serde_json::Value>,
    #[serde(default)]
    members: Vec<serde_json::Value>,
    #[serde(default)]
    providers: Vec<serde_json::Value>,
    #[serde(default)]
    staff: Vec<serde_json::Value>,
}

impl DirectoryBundle {
    /// Reads a bundle, naming `source_name` and the failing entry (`members[4]
    /// (M100005)`) in any error. Does not check cross-references; call
    /// [`DirectoryBundle::validate`] for that.
    pub fn from_json(source_name: &str, text: &str) -> Result<Self, DirectoryError> {
        let raw: RawBundle = serde_json::from_str(text).map_err(|e| DirectoryError {
            source_name: source_name.to_owned(),
            entry: None,
            message: e.to_string(),
        })?;
        Ok(Self {
            plans: decode_entries(source_name, "plans", "id", raw.plans)?,
            members: decode_entries(source_name, "members", "id", raw.members)?,
            providers: decode_entries(source_name, "providers", "npi", raw.providers)?,
            staff: decode_entries(source_name, "staff", "id", raw.staff)?,
        })
    }

    /// The demo directory shipped with the project.
    pub fn demo() -> Result<Self, DirectoryError> {
        Self::from_json("data/demo/directory.json", DEMO_DIRECTORY_JSON)
    }

    /// Validates every entry and the references between them: each member's plan and
    /// subscriber exist, family members share their subscriber's plan, provider
    /// networks name known plans, and no id is used twice.
    pub fn validate(&self, today: NaiveDate) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();

        let plans = index_unique(&mut invalid, "plans", "plan", &self.plans, |p| &p.id);
        for (i, plan) in self.plans.iter().enumerate() {
            if let Err(e) = plan.validate() {
                invalid.extend(e.nest(&format!("plans[{i}]")));
            }
        }

        let members = index_unique(&mut invalid, "members", "member", &self.members, |m| &m.id);
        for (i, member) in self.members.iter().enumerate() {
            let at = format!("members[{i}]");
            if let Err(e) = member.validate(today) {
                invalid.extend(e.nest(&at));
            }
            if !plans.contains_key(&member.plan_id) {
                invalid.push(
                    format!("{at}.plan_id"),
                    format!("unknown plan {}", member.plan_id),
                );
            }
            let Some(subscriber_id) = &member.subscriber_id else {
                continue;
            };
            let field = format!("{at}.subscriber_id");
            match members.get(subscriber_id).map(|&j| &self.members[j]) {
                None => invalid.push(field, format!("unknown member {subscriber_id}")),
                Some(subscriber) if !subscriber.is_subscriber() => invalid.push(
                    field,
                    format!("{subscriber_id} is itself a covered family member, not a subscriber"),
                ),
                Some(subscriber) if subscriber.plan_id != member.plan_id => invalid.push(
                    field,
                    format!(
                        "subscriber {subscriber_id} is on plan {}, not {}",
                        subscriber.plan_id, member.plan_id
                    ),
                ),
                Some(_) => {}
            }
        }

        index_unique(&mut invalid, "providers", "npi", &self.providers, |p| {
            &p.npi
        });
        for (i, provider) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            if let Err(e) = provider.validate() {
                invalid.extend(e.nest(&at));
            }
            for (j, plan) in provider.in_network_plans.iter().enumerate() {
                if !plans.contains_key(plan) {
                    invalid.push(
                        format!("{at}.in_network_plans[{j}]"),
                        format!("unknown plan {plan}"),
                    );
                }
            }
        }

        index_unique(&mut invalid, "staff", "staff id", &self.staff, |s| &s.id);
        for (i, staff) in self.staff.iter().enumerate() {
            if let Err(e) = staff.validate() {
                invalid.extend(e.nest(&format!("staff[{i}]")));
            }
        }

        invalid.into_result()
    }
}

fn decode_entries<T: DeserializeOwned>(
    source_name: &str,
    list: &str,
    key: &str,
    values: Vec<serde_json::Value>,
) -> Result<Vec<T>, DirectoryError> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let label = match value.get(key).and_then(serde_json::Value::as_str) {
                Some(id) => format!("{list}[{i}] ({id})"),
                None => format!("{list}[{i}]"),
            };
            serde_json::from_value(value).map_err(|e| DirectoryError {
                source_name: source_name.to_owned(),
                entry: Some(label),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Maps each key to its first position, recording a violation for every repeat.
fn index_unique<'a, T, K: Eq + std::hash::Hash + fmt::Display>(
    invalid: &mut Invalid,
    list: &str,
    what: &str,
    items: &'a [T],
    key: impl Fn(&'a T) -> &'a K,
) -> HashMap<&'a K, usize> {
    let mut seen = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let k = key(item);
        if let Some(first) = seen.get(k) {
            invalid.push(
                format!("{list}[{i}]"),
                format!("duplicate {what} {k} (also {list}[{first}])"),
            );
        } else {
            seen.insert(k, i);
        }
    }
    seen
}

fn require_text(invalid: &mut Invalid, field: &str, value: &str) {
    if value.trim().is_empty() {
        invalid.push(field, "must not be empty");
    }
}

fn optional_text(invalid: &mut Invalid, field: &str, value: Option<&str>) {
    if value.is_some_and(|v| v.trim().is_empty()) {
        invalid.push(field, "must not be empty when given; leave it out instead");
    }
}

/// A deliberately loose email check: one `@` with something on each side and a dot in
/// the domain. Deliverability is the mail system's business.
fn check_email(invalid: &mut Invalid, field: &str, value: Option<&str>) {
    let Some(email) = value else { return };
    let ok = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !ok {
        invalid.push(field, "must be an email address such as name@example.org");
    }
}

/// Phone and fax numbers as people write them: digits with spaces, `+`, `-`, `.`
/// and parentheses, at least 7 digits.
fn check_phone(invalid: &mut Invalid, field: &str, value: Option<&str>) {
    let Some(phone) = value else { return };
    let allowed = phone
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '.' | '(' | ')'));
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    if !allowed || !(7..=15).contains(&digits) {
        invalid.push(
            field,
            "must be a phone number of 7 to 15 digits, such as +1 860 555 0142",
        );
    }
}

fn check_channel(
    invalid: &mut Invalid,
    channel: ContactChannel,
    address: &Address,
    email: Option<&str>,
    fax: Option<&str>,
) {
    match channel {
        ContactChannel::Mail if address.lines.is_empty() => {
            invalid.push("address.lines", "a street address is needed to send mail");
        }
        ContactChannel::Email if email.is_none() => {
            invalid.push(
                "email",
                "an email address is needed when email is preferred",
            );
        }
        ContactChannel::Fax if fax.is_none() => {
            invalid.push("fax", "a fax number is needed when fax is preferred");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
    }

    fn demo() -> DirectoryBundle {
        DirectoryBundle::demo().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn demo_directory_is_valid() {
        let bundle = demo();
        if let Err(e) = bundle.validate(today()) {
            panic!("{e}");
        }
    }

    #[test]
    fn demo_directory_covers_what_the_demos_need() {
        let bundle = demo();
        assert!(bundle.plans.len() >= 3);
        assert!(bundle.plans.iter().any(|p| !p.preferred_care_management));
        assert!(bundle.plans.iter().any(|p| !p.covers_out_of_network));
        assert!(bundle.members.len() >= 20);
        assert!(bundle.providers.len() >= 30);
        for kind in ProviderKind::ALL {
            assert!(
                bundle.providers.iter().any(|p| p.kind == *kind),
                "no provider of kind {kind}"
            );
        }
        let country = |c: &str| CountryCode::parse(c).unwrap();
        assert!(
            bundle
                .members
                .iter()
                .any(|m| m.address.country == country("GB"))
        );
        assert!(
            bundle
                .members
                .iter()
                .any(|m| m.address.country == country("AE"))
        );
        assert!(
            bundle
                .members
                .iter()
                .any(|m| !m.is_subscriber() && m.age_on(today()) < 18)
        );
        let specialty = |s: &str| Some(Specialty::parse(s).unwrap());
        let oncologists = bundle
            .providers
            .iter()
            .filter(|p| p.specialty == specialty("medical_oncology"))
            .count();
        assert!(oncologists >= 3);
        assert!(bundle.providers.iter().any(|p| {
            p.specialty == specialty("orthopaedic_surgery")
                && p.address.country == country("AE")
                && p.speaks(&LanguageTag::parse("ar").unwrap())
                && !p.in_network_plans.is_empty()
        }));
        assert!(bundle.providers.iter().any(|p| {
            p.specialty == specialty("nephrology") && p.address.country == country("GB")
        }));
        let staff_with = |role: StaffRole| bundle.staff.iter().filter(|s| s.role == role).count();
        assert!(staff_with(StaffRole::Nurse) >= 4);
        assert!(staff_with(StaffRole::PhysicianReviewer) >= 5);
        assert!(staff_with(StaffRole::Admin) >= 2);
    }

    #[test]
    fn a_bad_npi_names_its_entry() {
        let text = DEMO_DIRECTORY_JSON.replacen(
            &format!("\"npi\": \"{}\"", demo().providers[2].npi),
            &format!("\"npi\": \"{}\"", "1234567890"),
            1,
        );
        assert_ne!(text, DEMO_DIRECTORY_JSON);
        let err = DirectoryBundle::from_json("directory.json", &text).unwrap_err();
        assert_eq!(err.entry.as_deref(), Some("providers[2] (1234567890)"));
        assert!(
            err.to_string().starts_with(
                "directory.json: providers[2] (1234567890): npi check digit does not match"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = DirectoryBundle::from_json(
            "x.json",
            r#"{"plans": [{"id": "PLAN-A", "name": "A", "preferred_care_management": true, "covers_out_of_network": true, "colour": "red"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.entry.as_deref(), Some("plans[0] (PLAN-A)"));
        assert!(err.message.contains("unknown field `colour`"), "{err}");

        let err = DirectoryBundle::from_json("x.json", r#"{"doctors": []}"#).unwrap_err();
        assert_eq!(err.entry, None);
    }

    #[test]
    fn broken_references_are_reported() {
        let mut bundle = demo();
        let subscriber = bundle
            .members
            .iter()
            .position(|m| m.is_subscriber())
            .unwrap();
        let family = bundle
            .members
            .iter()
            .position(|m| !m.is_subscriber())
            .unwrap();
        bundle.members[subscriber].plan_id = PlanId::parse("PLAN-NOPE").unwrap();
        bundle.members[family].subscriber_id = Some(MemberId::parse("M999999").unwrap());
        bundle.providers[0]
            .in_network_plans
            .push(PlanId::parse("PLAN-GONE").unwrap());
        let dup = bundle.staff[0].clone();
        bundle.staff.push(dup);
        let n = bundle.staff.len() - 1;

        let err = bundle.validate(today()).unwrap_err();
        let fields: Vec<_> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert!(
            fields.contains(&format!("members[{subscriber}].plan_id").as_str()),
            "{err}"
        );
        assert!(
            fields.contains(&format!("members[{family}].subscriber_id").as_str()),
            "{err}"
        );
        let last = bundle.providers[0].in_network_plans.len() - 1;
        assert!(
            fields.contains(&format!("providers[0].in_network_plans[{last}]").as_str()),
            "{err}"
        );
        assert!(fields.contains(&format!("staff[{n}]").as_str()), "{err}");
    }

    fn member() -> Member {
        serde_json::from_str(
            r#"{
                "id": "M100001", "plan_id": "PLAN-A", "first_name": " ", "last_name": "Doe",
                "date_of_birth": "2030-01-01",
                "address": {"lines": [""], "city": "", "country": "us"},
                "email": "not-an-email", "phone": "call me",
                "language": "en", "preferred_channel": "fax", "subscriber_id": null
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn member_validation_names_fields() {
        let err = member().validate(today()).unwrap_err();
        let fields: Vec<_> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "first_name",
                "date_of_birth",
                "address.lines[0]",
                "address.city",
                "email",
                "phone",
                "preferred_channel"
            ]
        );
    }

    #[test]
    fn network_status_follows_the_plan_list() {
        let bundle = demo();
        let provider = bundle
            .providers
            .iter()
            .find(|p| !p.in_network_plans.is_empty())
            .unwrap();
        let plan = &provider.in_network_plans[0];
        assert_eq!(provider.network_status(plan), NetworkStatus::InNetwork);
        assert_eq!(
            provider.network_status(&PlanId::parse("PLAN-ELSEWHERE").unwrap()),
            NetworkStatus::OutOfNetwork
        );
    }

    #[test]
    fn provider_kinds_round_trip() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()), Ok(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
        assert!(ProviderKind::AcuteHospital.is_inpatient_facility());
        assert!(ProviderKind::InfusionCenter.is_facility());
        assert!(!ProviderKind::InfusionCenter.is_inpatient_facility());
        assert!(!ProviderKind::Physician.is_facility());
        assert_eq!(
            ProviderKind::parse("clinic").unwrap_err().to_string(),
            "unknown provider kind \"clinic\"; expected one of: physician, acute_hospital, skilled_nursing, rehabilitation, long_term_acute_care, hospice, infusion_center, home_infusion, physician_office, dialysis_facility, imaging_center"
        );
    }
}
