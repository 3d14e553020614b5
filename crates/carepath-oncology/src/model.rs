//! The small value types both the catalogue and a treatment plan are written in: lines
//! of therapy, intents, stage groups, biomarker conditions, dose bases, day schedules,
//! cycle counts, drug codes and sites of service.
//!
//! Each parses from the plain text used in the data files and in requests, and is only
//! built valid, so the evaluation never re-checks shapes.

use std::fmt;

use carepath_core::{ServiceCode, ServiceCodeKind, Setting};
use serde::{Deserialize, Serialize};

/// Why a value in a data file or a plan was rejected. Messages are lowercase and say what
/// a valid value looks like, since they go straight back to whoever wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub(crate) String);

/// Implements `as_str`, `parse`, `Display`, `FromStr` and string serde for a fieldless
/// enum from one table, so data-file names and wire names cannot drift apart.
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The snake_case name used in data files, JSON and messages.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// Parses the name (case-insensitive; a few spellings are accepted).
            pub fn parse(s: &str) -> Result<Self, $crate::model::ValueError> {
                let lower = s.trim().to_ascii_lowercase();
                match lower.as_str() {
                    $($name $(| $alias)* => Ok($ty::$variant),)+
                    other => Err($crate::model::ValueError(format!(
                        "unknown {} {:?}; expected one of: {}",
                        $what,
                        other,
                        concat!($($name, ", "),+).trim_end_matches(", ")
                    ))),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::model::ValueError;
            fn from_str(s: &str) -> Result<Self, $crate::model::ValueError> {
                Self::parse(s)
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use named_enum;

/// Where in the course of the disease a regimen is given (HemOnc's "setting"; mCODE has
/// no such field, so it is ours to model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineOfTherapy {
    First,
    Second,
    Third,
    /// Fourth line or later: pathways rarely distinguish beyond it.
    Fourth,
    Adjuvant,
    Neoadjuvant,
    Maintenance,
}

named_enum!(LineOfTherapy, "line of therapy", {
    First => "first" | "1" | "first_line",
    Second => "second" | "2" | "second_line",
    Third => "third" | "3" | "third_line",
    Fourth => "fourth" | "4" | "fourth_line" | "fourth_or_later",
    Adjuvant => "adjuvant",
    Neoadjuvant => "neoadjuvant",
    Maintenance => "maintenance",
});

/// Treatment intent, as mCODE records it on a medication request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Intent {
    Curative,
    Palliative,
}

named_enum!(Intent, "treatment intent", {
    Curative => "curative",
    Palliative => "palliative",
});

/// How likely a regimen is to cause vomiting without prophylaxis; decides the
/// antiemetics a plan should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EmetogenicRisk {
    Minimal,
    Low,
    Moderate,
    High,
}

named_enum!(EmetogenicRisk, "emetogenic risk", {
    Minimal => "minimal",
    Low => "low",
    Moderate => "moderate",
    High => "high",
});

/// A regimen's febrile-neutropenia risk band: high above 20%, intermediate 10 to 20%,
/// low below 10%. Decides growth-factor prophylaxis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FebrileNeutropeniaRisk {
    Low,
    Intermediate,
    High,
}

named_enum!(FebrileNeutropeniaRisk, "febrile-neutropenia risk", {
    Low => "low",
    Intermediate => "intermediate",
    High => "high",
});

/// How a drug reaches the patient. Informational: the benefit a drug is paid under
/// follows from its code, not its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    Intravenous,
    Subcutaneous,
    Intramuscular,
    Oral,
}

named_enum!(Route, "route", {
    Intravenous => "iv" | "intravenous",
    Subcutaneous => "sc" | "subcutaneous",
    Intramuscular => "im" | "intramuscular",
    Oral => "oral" | "po",
});

/// Where infused drugs are given. The cost table and a regimen's allowed sites are
/// written in these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SiteOfService {
    Inpatient,
    HospitalOutpatient,
    Office,
    HomeInfusion,
}

named_enum!(SiteOfService, "site of service", {
    Inpatient => "inpatient",
    HospitalOutpatient => "hospital_outpatient" | "outpatient",
    Office => "office",
    HomeInfusion => "home_infusion" | "home",
});

impl From<SiteOfService> for Setting {
    fn from(site: SiteOfService) -> Setting {
        match site {
            SiteOfService::Inpatient => Setting::Inpatient,
            SiteOfService::HospitalOutpatient => Setting::Outpatient,
            SiteOfService::Office => Setting::Office,
            SiteOfService::HomeInfusion => Setting::Home,
        }
    }
}

impl From<Setting> for SiteOfService {
    /// A precertification case's setting read as a site of service; "outpatient" means
    /// a hospital outpatient department, the setting site-of-service review targets.
    fn from(setting: Setting) -> SiteOfService {
        match setting {
            Setting::Inpatient => SiteOfService::Inpatient,
            Setting::Outpatient => SiteOfService::HospitalOutpatient,
            Setting::Office => SiteOfService::Office,
            Setting::Home => SiteOfService::HomeInfusion,
        }
    }
}

/// What a dose is expressed per. Plans and regimens compare like with like; when they
/// differ, the patient's body surface area, weight or creatinine clearance converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DoseBasis {
    /// Milligrams per square metre of body surface area.
    MgPerM2,
    /// Milligrams per kilogram of body weight.
    MgPerKg,
    /// Micrograms per kilogram of body weight (filgrastim).
    McgPerKg,
    /// Target area under the curve (mg/mL·min) for carboplatin, dosed with the Calvert
    /// formula.
    Auc,
    /// A flat dose in milligrams.
    Mg,
    /// A flat dose in micrograms.
    Mcg,
}

named_enum!(DoseBasis, "dose basis", {
    MgPerM2 => "mg/m2" | "mg/m²" | "mg_per_m2",
    MgPerKg => "mg/kg" | "mg_per_kg",
    McgPerKg => "mcg/kg" | "mcg_per_kg" | "µg/kg",
    Auc => "auc",
    Mg => "mg",
    Mcg => "mcg" | "µg",
});

/// The largest creatinine clearance the Calvert formula is fed, as carboplatin labelling
/// advises, so an overestimated clearance cannot overdose.
const MAX_CALVERT_CLEARANCE: f64 = 125.0;

/// The patient measurements dose conversion needs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Measures {
    pub bsa_m2: Option<f64>,
    pub weight_kg: Option<f64>,
    pub creatinine_clearance_ml_min: Option<f64>,
}

impl DoseBasis {
    /// Milligrams a dose of `amount` in this basis comes to, when the patient's
    /// measurements allow it.
    pub(crate) fn to_mg(self, amount: f64, m: Measures) -> Option<f64> {
        match self {
            DoseBasis::Mg => Some(amount),
            DoseBasis::Mcg => Some(amount / 1000.0),
            DoseBasis::MgPerM2 => m.bsa_m2.map(|bsa| amount * bsa),
            DoseBasis::MgPerKg => m.weight_kg.map(|w| amount * w),
            DoseBasis::McgPerKg => m.weight_kg.map(|w| amount * w / 1000.0),
            DoseBasis::Auc => m
                .creatinine_clearance_ml_min
                .map(|c| amount * (c.min(MAX_CALVERT_CLEARANCE) + 25.0)),
        }
    }

    /// The inverse of [`DoseBasis::to_mg`].
    pub(crate) fn amount_for_mg(self, mg: f64, m: Measures) -> Option<f64> {
        match self {
            DoseBasis::Mg => Some(mg),
            DoseBasis::Mcg => Some(mg * 1000.0),
            DoseBasis::MgPerM2 => m.bsa_m2.map(|bsa| mg / bsa),
            DoseBasis::MgPerKg => m.weight_kg.map(|w| mg / w),
            DoseBasis::McgPerKg => m.weight_kg.map(|w| mg * 1000.0 / w),
            DoseBasis::Auc => m
                .creatinine_clearance_ml_min
                .map(|c| mg / (c.min(MAX_CALVERT_CLEARANCE) + 25.0)),
        }
    }
}

/// The days of a cycle a drug is given on, such as `1`, `1,8,15` or `1-21`.
///
/// Kept sorted and free of duplicates, so two schedules compare equal whenever they
/// name the same days however they were written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DaySchedule(Vec<u16>);

impl DaySchedule {
    /// Accepts comma-separated days and inclusive ranges (`1-5,8`), each day 1 or more.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            ValueError(format!(
                "days {s:?} must be day numbers and ranges such as \"1\", \"1,8,15\" or \"1-21\""
            ))
        };
        let mut days = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (from, to) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let from: u16 = from.parse().map_err(|_| bad())?;
            let to: u16 = to.parse().map_err(|_| bad())?;
            if from == 0 || to < from {
                return Err(bad());
            }
            days.extend(from..=to);
        }
        days.sort_unstable();
        days.dedup();
        Ok(Self(days))
    }

    /// A schedule from explicit day numbers, as a request may carry them.
    pub fn from_days(days: impl IntoIterator<Item = u16>) -> Result<Self, ValueError> {
        let mut days: Vec<u16> = days.into_iter().collect();
        if days.is_empty() || days.contains(&0) {
            return Err(ValueError(
                "days must list at least one day, counting from 1".into(),
            ));
        }
        days.sort_unstable();
        days.dedup();
        Ok(Self(days))
    }

    /// The days, ascending.
    pub fn days(&self) -> &[u16] {
        &self.0
    }

    /// How many administrations one cycle holds.
    pub fn count(&self) -> u16 {
        self.0.len() as u16
    }

    /// The last day, to check a schedule fits its cycle.
    pub fn last(&self) -> u16 {
        self.0.last().copied().unwrap_or(1)
    }
}

impl fmt::Display for DaySchedule {
    /// Compact form: runs of three or more consecutive days become ranges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.0.len() {
            let start = self.0[i];
            let mut j = i;
            while j + 1 < self.0.len() && self.0[j + 1] == self.0[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if j >= i + 2 {
                write!(f, "{start}-{}", self.0[j])?;
                i = j + 1;
            } else {
                write!(f, "{start}")?;
                i += 1;
            }
        }
        Ok(())
    }
}

impl Serialize for DaySchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DaySchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How many cycles a drug is given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleCount {
    /// A fixed number of cycles.
    Fixed(u16),
    /// Until the disease progresses or toxicity stops it; a regimen may still cap it
    /// (pembrolizumab for two years), see `Component::max_cycles`.
    UntilProgression,
}

impl fmt::Display for CycleCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CycleCount::Fixed(n) => write!(f, "{n} cycles"),
            CycleCount::UntilProgression => f.write_str("until progression"),
        }
    }
}

/// An AJCC / Ann Arbor stage group such as `IIIA` or `IV`: a Roman numeral (or `0`)
/// and an optional sub-group.
///
/// A pathway written for `III` covers `IIIA`, `IIIB` and `IIIC`; one written for `IIIA`
/// covers only that.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageGroup {
    numeral: u8,
    sub: String,
}

impl StageGroup {
    /// Accepts `0`, `I` to `IV` (or `1` to `4`), an optional `stage ` prefix, and a
    /// sub-group of letters and digits (`IIIA`, `IA1`).
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            ValueError(format!(
                "stage group {s:?} must be 0 or I to IV with an optional sub-group, such as IIIA"
            ))
        };
        let upper = s.trim().to_ascii_uppercase();
        let rest = upper.strip_prefix("STAGE").unwrap_or(&upper).trim();
        let (numeral, sub) = [
            ("IV", 4),
            ("III", 3),
            ("II", 2),
            ("I", 1),
            ("4", 4),
            ("3", 3),
            ("2", 2),
            ("1", 1),
            ("0", 0),
        ]
        .iter()
        .find_map(|(prefix, n)| rest.strip_prefix(prefix).map(|sub| (*n, sub)))
        .ok_or_else(bad)?;
        if sub.len() > 3 || !sub.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        // "IIA" must not read as numeral I and sub-group "IA".
        if sub.starts_with('I') || sub.starts_with('V') {
            return Err(bad());
        }
        Ok(Self {
            numeral,
            sub: sub.to_owned(),
        })
    }

    /// Whether this (more specific) stage falls in `group`.
    pub fn within(&self, group: &StageGroup) -> bool {
        self.numeral == group.numeral && self.sub.starts_with(group.sub.as_str())
    }
}

impl fmt::Display for StageGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let numeral = ["0", "I", "II", "III", "IV"][usize::from(self.numeral)];
        write!(f, "{numeral}{}", self.sub)
    }
}

impl Serialize for StageGroup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StageGroup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A biomarker name in canonical form: uppercase letters and digits only, so `PD-L1`,
/// `pd-l1` and `PDL1` are one marker.
pub fn canonical_biomarker(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// What a pathway situation requires of one biomarker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BiomarkerCondition {
    /// A categorical result, lowercase (`positive`, `mutated`, `msi-h`).
    Is(String),
    /// A percentage or score at or above the threshold (PD-L1 tumour proportion `≥50%`).
    AtLeast(f64),
    /// A percentage or score below the threshold.
    Below(f64),
}

impl BiomarkerCondition {
    /// Reads `positive`, `≥50%` / `>=50`, or `<1%`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        if let Some(rest) = t.strip_prefix(">=").or_else(|| t.strip_prefix('≥')) {
            return parse_number(rest).map(BiomarkerCondition::AtLeast);
        }
        if let Some(rest) = t.strip_prefix('<') {
            return parse_number(rest).map(BiomarkerCondition::Below);
        }
        if t.is_empty() {
            return Err(ValueError("biomarker value must not be empty".into()));
        }
        Ok(BiomarkerCondition::Is(t.to_lowercase()))
    }

    /// Whether a reported result meets this condition. The evaluation first puts the
    /// result through the catalogue's alias table (`pos` is `positive`); this compares
    /// the canonical value.
    pub fn accepts(&self, value: &str) -> bool {
        match self {
            BiomarkerCondition::Is(expected) => expected == value,
            BiomarkerCondition::AtLeast(t) => {
                matches!(ReportedRange::parse(value), Some(r) if r.low >= *t)
            }
            BiomarkerCondition::Below(t) => {
                matches!(ReportedRange::parse(value), Some(r) if r.high < *t)
            }
        }
    }
}

impl fmt::Display for BiomarkerCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BiomarkerCondition::Is(v) => f.write_str(v),
            BiomarkerCondition::AtLeast(t) => write!(f, "≥{t}"),
            BiomarkerCondition::Below(t) => write!(f, "<{t}"),
        }
    }
}

fn parse_number(s: &str) -> Result<f64, ValueError> {
    let t = s.trim().trim_end_matches('%').trim();
    match t.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(ValueError(format!(
            "{s:?} must be a non-negative number, optionally with %"
        ))),
    }
}

/// A reported numeric result as the interval it stands for: `60%` is exactly 60, `≥50%`
/// is 50 and above, `<1%` is below 1, `1-49%` is 1 to 49.
struct ReportedRange {
    low: f64,
    high: f64,
}

impl ReportedRange {
    fn parse(value: &str) -> Option<Self> {
        let v = value.trim();
        if let Some(rest) = v.strip_prefix(">=").or_else(|| v.strip_prefix('≥')) {
            let low = parse_number(rest).ok()?;
            return Some(Self {
                low,
                high: f64::INFINITY,
            });
        }
        if let Some(rest) = v.strip_prefix('<') {
            let high = parse_number(rest).ok()?;
            // Strictly below: nudge down so "<50%" fails an "at least 50" test and
            // passes a "below 50" one.
            return Some(Self {
                low: 0.0,
                high: high - f64::EPSILON * high.max(1.0),
            });
        }
        if let Some((a, b)) = v.split_once('-') {
            let low = parse_number(a).ok()?;
            let high = parse_number(b).ok()?;
            return (low <= high).then_some(Self { low, high });
        }
        let n = parse_number(v).ok()?;
        Some(Self { low: n, high: n })
    }
}

/// A pharmacy (oral drug) identifier: a lowercase generic name or an `rxnorm:`-style id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PharmacyCode(String);

impl PharmacyCode {
    /// Accepts 2 to 64 letters, digits, `-`, `_`, `:` or `.`, starting with a letter;
    /// stored lowercase.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let t = s.trim().to_ascii_lowercase();
        let ok = (2..=64).contains(&t.len())
            && t.as_bytes()[0].is_ascii_lowercase()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'));
        if !ok {
            return Err(ValueError(format!(
                "pharmacy drug id {s:?} must be 2 to 64 letters, digits, '-', '_', ':' or '.', starting with a letter (e.g. osimertinib, rxnorm:1721560)"
            )));
        }
        Ok(Self(t))
    }

    /// The canonical (lowercase) form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for PharmacyCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// How a plan names a drug: a HCPCS Level II code for drugs billed under the medical
/// benefit (`J9355`), or a pharmacy id for drugs dispensed under the pharmacy benefit
/// (`osimertinib`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DrugCode {
    Hcpcs(ServiceCode),
    Pharmacy(PharmacyCode),
}

impl DrugCode {
    /// A HCPCS Level II code if the text is one, otherwise a pharmacy id.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        if let Ok(code) = ServiceCode::parse(s)
            && code.kind() == ServiceCodeKind::Hcpcs
        {
            return Ok(DrugCode::Hcpcs(code));
        }
        PharmacyCode::parse(s).map(DrugCode::Pharmacy)
    }

    /// The code as written on the wire: the HCPCS code uppercase, the pharmacy id
    /// lowercase.
    pub fn as_str(&self) -> &str {
        match self {
            DrugCode::Hcpcs(code) => code.as_str(),
            DrugCode::Pharmacy(id) => id.as_str(),
        }
    }

    /// The benefit a drug named this way is paid under.
    pub fn benefit(&self) -> Benefit {
        match self {
            DrugCode::Hcpcs(_) => Benefit::Medical,
            DrugCode::Pharmacy(_) => Benefit::Pharmacy,
        }
    }
}

impl fmt::Display for DrugCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DrugCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DrugCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Which side of the plan pays for a drug: infused drugs under the medical benefit
/// (precertified as HCPCS lines), oral drugs under the pharmacy benefit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Benefit {
    Medical,
    Pharmacy,
}

named_enum!(Benefit, "benefit", {
    Medical => "medical",
    Pharmacy => "pharmacy",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_schedules_normalise() {
        let cases = [
            ("1", "1", 1),
            ("1,8,15", "1,8,15", 3),
            ("1-21", "1-21", 21),
            ("15, 1, 8, 8", "1,8,15", 3),
            ("1-5,8", "1-5,8", 6),
            ("1,2", "1,2", 2),
        ];
        for (input, shown, count) in cases {
            let d = DaySchedule::parse(input).unwrap();
            assert_eq!(d.to_string(), shown, "{input}");
            assert_eq!(d.count(), count, "{input}");
        }
        for input in ["", "0", "3-1", "a", "1,,2", "1-"] {
            assert!(DaySchedule::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn stage_groups_nest() {
        let s = |t: &str| StageGroup::parse(t).unwrap();
        assert!(s("IIIA").within(&s("III")));
        assert!(!s("IIIA").within(&s("II")));
        assert!(!s("IIA").within(&s("I")));
        assert!(s("stage iv").within(&s("IV")));
        assert!(s("3B").within(&s("III")));
        assert!(!s("III").within(&s("IIIA")));
        assert_eq!(s("iiib").to_string(), "IIIB");
        for bad in ["", "V", "IIII", "X", "IIIABCD"] {
            assert!(StageGroup::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn biomarker_conditions() {
        let c = |t: &str| BiomarkerCondition::parse(t).unwrap();
        let cases = [
            (">=50%", "60%", true),
            ("≥50%", "≥50%", true),
            (">=50%", "50", true),
            (">=50%", "<50%", false),
            (">=50%", "1-49%", false),
            ("<50%", "1-49%", true),
            ("<50%", "<50%", true),
            ("<50%", "50%", false),
            (">=50%", "positive", false),
            ("positive", "positive", true),
            ("Positive", "positive", true),
            ("positive", "negative", false),
        ];
        for (cond, value, ok) in cases {
            assert_eq!(c(cond).accepts(value), ok, "{cond} vs {value}");
        }
        assert_eq!(canonical_biomarker("PD-L1"), "PDL1");
        assert_eq!(canonical_biomarker("her2"), "HER2");
    }

    #[test]
    fn dose_bases_convert_through_milligrams() {
        let m = Measures {
            bsa_m2: Some(2.0),
            weight_kg: Some(70.0),
            creatinine_clearance_ml_min: Some(200.0),
        };
        assert_eq!(DoseBasis::MgPerM2.to_mg(75.0, m), Some(150.0));
        assert_eq!(DoseBasis::MgPerKg.to_mg(6.0, m), Some(420.0));
        // Calvert with clearance capped at 125: 6 × 150.
        assert_eq!(DoseBasis::Auc.to_mg(6.0, m), Some(900.0));
        assert_eq!(DoseBasis::Auc.amount_for_mg(900.0, m), Some(6.0));
        assert_eq!(DoseBasis::MgPerM2.to_mg(75.0, Measures::default()), None);
        assert_eq!(DoseBasis::parse("mg/m²"), Ok(DoseBasis::MgPerM2));
    }

    #[test]
    fn drug_codes_pick_their_benefit() {
        let j = DrugCode::parse("j9355").unwrap();
        assert_eq!(j.as_str(), "J9355");
        assert_eq!(j.benefit(), Benefit::Medical);
        let oral = DrugCode::parse("Osimertinib").unwrap();
        assert_eq!(oral.as_str(), "osimertinib");
        assert_eq!(oral.benefit(), Benefit::Pharmacy);
        assert!(DrugCode::parse("70553").is_err());
        assert!(DrugCode::parse("").is_err());
    }

    #[test]
    fn sites_map_to_core_settings() {
        for site in SiteOfService::ALL {
            assert_eq!(SiteOfService::from(Setting::from(*site)), *site);
        }
    }
}
