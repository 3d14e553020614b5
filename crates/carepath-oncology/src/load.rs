//! Loading the catalogue from TOML files and checking every entry, so a data mistake is
//! reported at start with the file and entry named, not discovered mid-review.
//!
//! A catalogue may be split across files however its editors like (one file per
//! cancer, one for drugs, one for supportive care). Lists (`drugs`, `regimens`,
//! `cancers`, …) are merged across files; the single sections (`[catalogue]`,
//! `[growth_factor]`, `[antiemetics]`, `[site_of_service]`) may appear in one file
//! only. Ids are global, so a situation in one file may list a regimen from another.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use carepath_core::{Icd10Code, ServiceCode, ServiceCodeKind};
use chrono::NaiveDate;
use serde::Deserialize;

use crate::catalogue::{
    AntiemeticEscalation, AntiemeticLevel, AntiemeticRules, BiomarkerRequirement, Cancer,
    Catalogue, Component, Drug, DrugClass, GrowthFactorRule, HcpcsBilling, Icd10Range, Index,
    Regimen, SiteCost, Situation, SupportKind, TypicalDose,
};
use crate::model::{
    BiomarkerCondition, CycleCount, DaySchedule, DoseBasis, EmetogenicRisk, FebrileNeutropeniaRisk,
    Intent, LineOfTherapy, PharmacyCode, Route, SiteOfService, StageGroup, canonical_biomarker,
};
use crate::plan::RiskFactor;

/// The shipped, illustrative catalogue (see `data/oncology/README.md`).
const SHIPPED: &[(&str, &str)] = &[
    (
        "catalogue.toml",
        include_str!("../../../data/oncology/catalogue.toml"),
    ),
    (
        "drugs.toml",
        include_str!("../../../data/oncology/drugs.toml"),
    ),
    (
        "supportive-care.toml",
        include_str!("../../../data/oncology/supportive-care.toml"),
    ),
    (
        "breast.toml",
        include_str!("../../../data/oncology/breast.toml"),
    ),
    (
        "lung.toml",
        include_str!("../../../data/oncology/lung.toml"),
    ),
    (
        "gastrointestinal.toml",
        include_str!("../../../data/oncology/gastrointestinal.toml"),
    ),
    (
        "lymphoma.toml",
        include_str!("../../../data/oncology/lymphoma.toml"),
    ),
    (
        "melanoma.toml",
        include_str!("../../../data/oncology/melanoma.toml"),
    ),
];

/// One thing wrong with the catalogue data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (as named to the loader) the problem is in.
    pub source_name: String,
    /// The entry, such as `regimen "tchp" components[1]`; `None` for file-level
    /// problems.
    pub entry: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "{}: {}: {}", self.source_name, entry, self.message),
            None => write!(f, "{}: {}", self.source_name, self.message),
        }
    }
}

/// Why a catalogue was rejected: every problem found, so one round of fixes suffices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pathway catalogue: {}", crate::catalogue::join(self.problems.iter().map(ToString::to_string), "; "))]
pub struct CatalogueError {
    pub problems: Vec<Problem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    catalogue: Option<RawHeader>,
    #[serde(default)]
    sites: Vec<RawSite>,
    site_of_service: Option<RawReferences>,
    #[serde(default)]
    biomarker_aliases: BTreeMap<String, String>,
    #[serde(default)]
    drugs: Vec<RawDrug>,
    #[serde(default)]
    drug_classes: Vec<RawClass>,
    growth_factor: Option<RawGrowthFactor>,
    antiemetics: Option<RawAntiemetics>,
    #[serde(default)]
    cancers: Vec<RawCancer>,
    #[serde(default)]
    regimens: Vec<RawRegimen>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    version: String,
    effective_from: toml::value::Datetime,
    effective_until: Option<toml::value::Datetime>,
    notice: String,
    dose_tolerance_percent: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    site: String,
    relative_cost: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReferences {
    references: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrug {
    id: String,
    name: String,
    #[serde(default)]
    hcpcs: Vec<RawHcpcs>,
    #[serde(default)]
    pharmacy_codes: Vec<String>,
    typical_dose: Option<RawTypicalDose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHcpcs {
    code: String,
    /// The descriptor's billing unit: `"1 mg"`, `"0.5 mg"`, `"25 mcg"`.
    unit: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTypicalDose {
    dose: f64,
    basis: String,
    route: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    id: String,
    name: String,
    kind: String,
    drugs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrowthFactor {
    class: String,
    age_at_least: u8,
    performance_status_at_least: u8,
    risk_factors: Vec<String>,
    references: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAntiemetics {
    references: Vec<String>,
    high: RawLevel,
    moderate: RawLevel,
    low: RawLevel,
    minimal: RawLevel,
    #[serde(default)]
    escalations: Vec<RawEscalation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    any_of: Vec<String>,
    #[serde(default)]
    also_allowed: Vec<String>,
    max_classes: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    drug: String,
    basis: String,
    at_least: f64,
    applies_to: String,
    add_required: Vec<String>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCancer {
    id: String,
    name: String,
    oncotree: String,
    icd10: Vec<String>,
    situations: Vec<RawSituation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSituation {
    id: String,
    name: String,
    #[serde(default)]
    stage_groups: Vec<String>,
    #[serde(default)]
    biomarkers: BTreeMap<String, String>,
    #[serde(default)]
    histologies: Vec<String>,
    lines: Vec<String>,
    intent: String,
    performance_status: Option<[u8; 2]>,
    regimens: Vec<String>,
    #[serde(default)]
    references: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegimen {
    id: String,
    name: String,
    emetogenic_risk: String,
    febrile_neutropenia_risk: String,
    cost_per_cycle_usd: u32,
    #[serde(default)]
    sites: Vec<String>,
    references: Vec<String>,
    notes: Option<String>,
    cycle_length_days: Option<u16>,
    cycles: Option<RawCycles>,
    max_cycles: Option<u16>,
    components: Vec<RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    drug: String,
    route: String,
    dose: f64,
    loading_dose: Option<f64>,
    basis: String,
    max_dose_mg: Option<f64>,
    days: String,
    cycle_length_days: Option<u16>,
    cycles: Option<RawCycles>,
    max_cycles: Option<u16>,
    #[serde(default = "first_phase")]
    phase: u8,
    tolerance_percent: Option<f64>,
    note: Option<String>,
}

fn first_phase() -> u8 {
    1
}

/// `cycles = 6` or `cycles = "until_progression"`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawCycles {
    Count(u16),
    Text(String),
}

/// Collects problems while loading, so every one is reported at once.
struct Problems(Vec<Problem>);

impl Problems {
    fn file(&mut self, source: &str, message: impl Into<String>) {
        self.0.push(Problem {
            source_name: source.to_owned(),
            entry: None,
            message: message.into(),
        });
    }

    fn entry(&mut self, source: &str, entry: &str, message: impl Into<String>) {
        self.0.push(Problem {
            source_name: source.to_owned(),
            entry: Some(entry.to_owned()),
            message: message.into(),
        });
    }

    /// Parses with `r`, recording the error against the entry.
    fn check<T, E: fmt::Display>(
        &mut self,
        source: &str,
        entry: &str,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.entry(source, entry, e.to_string());
                None
            }
        }
    }
}

fn id_ok(id: &str) -> bool {
    (2..=48).contains(&id.len())
        && id.as_bytes()[0].is_ascii_lowercase()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

const ID_RULE: &str =
    "id must be 2 to 48 lowercase letters, digits, '-' or '_', starting with a letter";

fn toml_date(dt: &toml::value::Datetime) -> Result<NaiveDate, String> {
    match (dt.date, dt.time) {
        (Some(d), None) => {
            NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
                .ok_or_else(|| format!("{dt} is not a calendar date"))
        }
        _ => Err(format!(
            "{dt} must be a date without a time, such as 2026-01-01"
        )),
    }
}

fn billing_unit_mg(unit: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "billing unit {unit:?} must be an amount and mg or mcg, such as \"10 mg\" or \"25 mcg\""
        )
    };
    let t = unit.trim();
    let (amount, scale) = if let Some(a) = t.strip_suffix("mcg") {
        (a, 0.001)
    } else if let Some(a) = t.strip_suffix("mg") {
        (a, 1.0)
    } else {
        return Err(bad());
    };
    // Checked after scaling: a tiny amount of mcg can round to 0 mg.
    match amount.trim().parse::<f64>().map(|n| n * scale) {
        Ok(mg) if mg.is_finite() && mg > 0.0 => Ok(mg),
        _ => Err(bad()),
    }
}

fn cycles_of(raw: &RawCycles) -> Result<CycleCount, String> {
    match raw {
        RawCycles::Count(0) => Err("cycles must be at least 1".into()),
        RawCycles::Count(n) => Ok(CycleCount::Fixed(*n)),
        RawCycles::Text(t) if t.trim() == "until_progression" => Ok(CycleCount::UntilProgression),
        RawCycles::Text(t) => Err(format!(
            "cycles {t:?} must be a number of cycles or \"until_progression\""
        )),
    }
}

fn icd_range(text: &str) -> Result<Icd10Range, String> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let from = Icd10Code::parse(a).map_err(|e| format!("icd10 {text:?}: {e}"))?;
    let to = Icd10Code::parse(b).map_err(|e| format!("icd10 {text:?}: {e}"))?;
    if !from.in_range(&from, &to) {
        return Err(format!("icd10 range {text:?} ends before it starts"));
    }
    Ok(Icd10Range { from, to })
}

impl Catalogue {
    /// Loads and checks one catalogue version from its files, each given as a name
    /// (used in error messages) and its TOML text.
    pub fn from_toml_files(files: &[(&str, &str)]) -> Result<Self, CatalogueError> {
        let mut p = Problems(Vec::new());
        let mut parsed = Vec::new();
        for (name, text) in files {
            match toml::from_str::<RawFile>(text) {
                Ok(file) => parsed.push((*name, file)),
                // One line, so the message survives logs and gRPC status details.
                Err(e) => p.file(
                    name,
                    e.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            }
        }
        if !p.0.is_empty() {
            return Err(CatalogueError { problems: p.0 });
        }
        let catalogue = assemble(&parsed, &mut p);
        match catalogue {
            Some(c) if p.0.is_empty() => Ok(c),
            _ => Err(CatalogueError { problems: p.0 }),
        }
    }

    /// The catalogue shipped in `data/oncology/`: illustrative data, not clinical
    /// guidance, in the format a plan would load its licensed content in.
    pub fn shipped() -> Self {
        // The shipped files are checked by this crate's tests; failing here means the
        // binary was built from data that never passed them.
        Self::from_toml_files(SHIPPED).unwrap_or_else(|e| panic!("shipped oncology catalogue: {e}"))
    }

    /// The shipped files by name, for tools that show or re-check them.
    pub fn shipped_files() -> &'static [(&'static str, &'static str)] {
        SHIPPED
    }
}

/// Takes the one file holding a single section, reporting any second one.
fn single<'a, T>(
    parsed: &'a [(&'a str, RawFile)],
    p: &mut Problems,
    section: &str,
    get: impl Fn(&'a RawFile) -> Option<&'a T>,
) -> Option<(&'a str, &'a T)> {
    let mut found: Option<(&str, &T)> = None;
    for (name, file) in parsed {
        if let Some(v) = get(file) {
            match found {
                Some((first, _)) => {
                    p.file(name, format!("[{section}] is already given in {first}"))
                }
                None => found = Some((name, v)),
            }
        }
    }
    found
}

fn assemble(parsed: &[(&str, RawFile)], p: &mut Problems) -> Option<Catalogue> {
    let all_files = crate::catalogue::join(parsed.iter().map(|(n, _)| (*n).to_owned()), ", ");
    let header = single(parsed, p, "catalogue", |f| f.catalogue.as_ref());
    let growth = single(parsed, p, "growth_factor", |f| f.growth_factor.as_ref());
    let antiemetics = single(parsed, p, "antiemetics", |f| f.antiemetics.as_ref());
    let site_refs = single(parsed, p, "site_of_service", |f| f.site_of_service.as_ref());
    for (present, section) in [
        (header.is_some(), "catalogue"),
        (growth.is_some(), "growth_factor"),
        (antiemetics.is_some(), "antiemetics"),
    ] {
        if !present {
            p.file(&all_files, format!("no file has a [{section}] section"));
        }
    }

    // Header.
    let mut version = String::new();
    let mut effective_from = NaiveDate::MIN;
    let mut effective_until = None;
    let mut notice = String::new();
    let mut tolerance = 0.1;
    if let Some((src, h)) = header {
        let entry = "[catalogue]";
        version = h.version.trim().to_owned();
        if version.is_empty() {
            p.entry(src, entry, "version must not be empty");
        }
        notice = h.notice.trim().to_owned();
        if notice.is_empty() {
            p.entry(
                src,
                entry,
                "notice must say what the data is (licensed content, or illustrative)",
            );
        }
        if let Some(d) = p.check(src, entry, toml_date(&h.effective_from)) {
            effective_from = d;
        }
        if let Some(until) = &h.effective_until
            && let Some(d) = p.check(src, entry, toml_date(until))
        {
            if d < effective_from {
                p.entry(
                    src,
                    entry,
                    "effective_until must not be before effective_from",
                );
            }
            effective_until = Some(d);
        }
        if !(h.dose_tolerance_percent > 0.0 && h.dose_tolerance_percent < 100.0) {
            p.entry(
                src,
                entry,
                "dose_tolerance_percent must be more than 0 and less than 100",
            );
        }
        tolerance = h.dose_tolerance_percent / 100.0;
    }

    // Sites of service.
    let mut sites: Vec<SiteCost> = Vec::new();
    for (src, file) in parsed {
        for (i, raw) in file.sites.iter().enumerate() {
            let entry = format!("sites[{i}] ({})", raw.site);
            let Some(site) = p.check(src, &entry, SiteOfService::parse(&raw.site)) else {
                continue;
            };
            if !(raw.relative_cost.is_finite() && raw.relative_cost > 0.0) {
                p.entry(src, &entry, "relative_cost must be a positive number");
            }
            if sites.iter().any(|s| s.site == site) {
                p.entry(src, &entry, format!("site {site} is listed twice"));
            }
            sites.push(SiteCost {
                site,
                relative_cost: raw.relative_cost,
            });
        }
    }

    // Biomarker value aliases.
    let mut value_aliases = BTreeMap::new();
    for (src, file) in parsed {
        for (alias, canonical) in &file.biomarker_aliases {
            let alias = alias.trim().to_lowercase();
            if value_aliases
                .insert(alias.clone(), canonical.trim().to_lowercase())
                .is_some()
            {
                p.entry(
                    src,
                    &format!("biomarker_aliases.{alias}"),
                    "alias is defined twice",
                );
            }
        }
    }

    // Drugs.
    let mut drugs: Vec<Drug> = Vec::new();
    let mut drug_src: HashMap<String, &str> = HashMap::new();
    let mut code_owner: HashMap<String, String> = HashMap::new();
    for (src, file) in parsed {
        for raw in &file.drugs {
            let entry = format!("drug {:?}", raw.id);
            if !id_ok(&raw.id) {
                p.entry(src, &entry, ID_RULE);
            }
            if let Some(first) = drug_src.get(&raw.id) {
                p.entry(
                    src,
                    &entry,
                    format!("drug id is already defined in {first}"),
                );
                continue;
            }
            drug_src.insert(raw.id.clone(), src);
            let mut hcpcs = Vec::new();
            for h in &raw.hcpcs {
                let code = match ServiceCode::parse(&h.code) {
                    Ok(c) if c.kind() == ServiceCodeKind::Hcpcs => c,
                    Ok(_) => {
                        p.entry(
                            src,
                            &entry,
                            format!(
                                "{} is a cpt code; drugs are billed with hcpcs level ii codes",
                                h.code
                            ),
                        );
                        continue;
                    }
                    Err(e) => {
                        p.entry(src, &entry, format!("{:?}: {e}", h.code));
                        continue;
                    }
                };
                let Some(unit_mg) = p.check(src, &entry, billing_unit_mg(&h.unit)) else {
                    continue;
                };
                if let Some(owner) = code_owner.insert(code.as_str().to_owned(), raw.id.clone()) {
                    p.entry(
                        src,
                        &entry,
                        format!("code {code} already belongs to drug {owner:?}"),
                    );
                }
                hcpcs.push(HcpcsBilling { code, unit_mg });
            }
            let mut pharmacy_codes = Vec::new();
            for c in &raw.pharmacy_codes {
                let Some(code) = p.check(src, &entry, PharmacyCode::parse(c)) else {
                    continue;
                };
                if let Some(owner) = code_owner.insert(code.as_str().to_owned(), raw.id.clone()) {
                    p.entry(
                        src,
                        &entry,
                        format!("code {} already belongs to drug {owner:?}", code.as_str()),
                    );
                }
                pharmacy_codes.push(code);
            }
            if raw.hcpcs.is_empty() && raw.pharmacy_codes.is_empty() {
                p.entry(
                    src,
                    &entry,
                    "a drug needs at least one hcpcs code or pharmacy code, or no plan can name it",
                );
            }
            let typical_dose = raw.typical_dose.as_ref().and_then(|t| {
                let basis = p.check(src, &entry, DoseBasis::parse(&t.basis))?;
                let route = p.check(src, &entry, Route::parse(&t.route))?;
                if !(t.dose.is_finite() && t.dose > 0.0) {
                    p.entry(src, &entry, "typical_dose.dose must be a positive number");
                }
                Some(TypicalDose {
                    dose: t.dose,
                    basis,
                    route,
                })
            });
            drugs.push(Drug {
                id: raw.id.clone(),
                name: raw.name.trim().to_owned(),
                hcpcs,
                pharmacy_codes,
                typical_dose,
            });
        }
    }
    let drug_index: HashMap<&str, usize> = drugs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();

    // Supportive-care classes.
    let mut classes: Vec<DrugClass> = Vec::new();
    for (src, file) in parsed {
        for raw in &file.drug_classes {
            let entry = format!("drug class {:?}", raw.id);
            if !id_ok(&raw.id) {
                p.entry(src, &entry, ID_RULE);
            }
            if classes.iter().any(|c| c.id == raw.id) {
                p.entry(src, &entry, "drug class id is defined twice");
            }
            let kind = match raw.kind.trim() {
                "growth_factor" => SupportKind::GrowthFactor,
                "antiemetic" => SupportKind::Antiemetic,
                other => {
                    p.entry(
                        src,
                        &entry,
                        format!("kind {other:?} must be growth_factor or antiemetic"),
                    );
                    continue;
                }
            };
            for d in &raw.drugs {
                if !drug_index.contains_key(d.as_str()) {
                    p.entry(src, &entry, format!("unknown drug {d:?}"));
                }
            }
            if raw.drugs.is_empty() {
                p.entry(src, &entry, "a class needs at least one drug");
            }
            classes.push(DrugClass {
                id: raw.id.clone(),
                name: raw.name.trim().to_owned(),
                kind,
                drug_ids: raw.drugs.clone(),
            });
        }
    }
    let class_kind = |id: &str| classes.iter().find(|c| c.id == id).map(|c| c.kind);

    // Growth factor rule.
    let growth_factor = growth.map(|(src, g)| {
        let entry = "[growth_factor]";
        if class_kind(&g.class) != Some(SupportKind::GrowthFactor) {
            p.entry(
                src,
                entry,
                format!("class {:?} is not a growth_factor drug class", g.class),
            );
        }
        if g.performance_status_at_least > 4 {
            p.entry(src, entry, "performance_status_at_least must be 0 to 4");
        }
        let risk_factors = g
            .risk_factors
            .iter()
            .filter_map(|r| p.check(src, entry, RiskFactor::parse(r)))
            .collect();
        GrowthFactorRule {
            class_id: g.class.clone(),
            age_at_least: g.age_at_least,
            performance_status_at_least: g.performance_status_at_least,
            risk_factors,
            references: g.references.clone(),
        }
    });

    // Antiemetic rules.
    let antiemetic_rules = antiemetics.map(|(src, a)| {
        let check_classes = |entry: &str, ids: &[String], p: &mut Problems| {
            for id in ids {
                if class_kind(id) != Some(SupportKind::Antiemetic) {
                    p.entry(
                        src,
                        entry,
                        format!("class {id:?} is not an antiemetic drug class"),
                    );
                }
            }
        };
        let levels = EmetogenicRisk::ALL
            .iter()
            .map(|&risk| {
                let raw = match risk {
                    EmetogenicRisk::High => &a.high,
                    EmetogenicRisk::Moderate => &a.moderate,
                    EmetogenicRisk::Low => &a.low,
                    EmetogenicRisk::Minimal => &a.minimal,
                };
                let entry = format!("[antiemetics.{risk}]");
                check_classes(&entry, &raw.required, p);
                check_classes(&entry, &raw.any_of, p);
                check_classes(&entry, &raw.also_allowed, p);
                AntiemeticLevel {
                    risk,
                    required: raw.required.clone(),
                    any_of: raw.any_of.clone(),
                    also_allowed: raw.also_allowed.clone(),
                    max_classes: raw.max_classes,
                }
            })
            .collect();
        let escalations = a
            .escalations
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let entry = format!("antiemetics.escalations[{i}]");
                if !drug_index.contains_key(e.drug.as_str()) {
                    p.entry(src, &entry, format!("unknown drug {:?}", e.drug));
                }
                check_classes(&entry, &e.add_required, p);
                // TOML reads `nan`, which no dose is at least: the escalation would
                // silently never apply.
                if !(e.at_least.is_finite() && e.at_least >= 0.0) {
                    p.entry(src, &entry, "at_least must be a number, 0 or more");
                }
                let basis = p.check(src, &entry, DoseBasis::parse(&e.basis))?;
                let applies_to = p.check(src, &entry, EmetogenicRisk::parse(&e.applies_to))?;
                Some(AntiemeticEscalation {
                    drug_id: e.drug.clone(),
                    basis,
                    at_least: e.at_least,
                    applies_to,
                    add_required: e.add_required.clone(),
                    reason: e.reason.clone(),
                })
            })
            .collect();
        AntiemeticRules {
            levels,
            escalations,
            references: a.references.clone(),
        }
    });

    // Regimens.
    let mut regimens: Vec<Regimen> = Vec::new();
    let mut regimen_src: HashMap<String, &str> = HashMap::new();
    for (src, file) in parsed {
        for raw in &file.regimens {
            let entry = format!("regimen {:?}", raw.id);
            if !id_ok(&raw.id) {
                p.entry(src, &entry, ID_RULE);
            }
            if let Some(first) = regimen_src.get(&raw.id) {
                p.entry(
                    src,
                    &entry,
                    format!("regimen id is already defined in {first}"),
                );
                continue;
            }
            regimen_src.insert(raw.id.clone(), src);
            if let Some(r) = regimen(src, &entry, raw, &drug_index, &drugs, &sites, p) {
                regimens.push(r);
            }
        }
    }
    let regimen_index: HashMap<String, usize> = regimens
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();

    // Cancers and their situations.
    let mut cancers: Vec<Cancer> = Vec::new();
    let mut cancer_src: Vec<&str> = Vec::new();
    let mut situation_ids: HashMap<String, &str> = HashMap::new();
    let mut used = vec![false; regimens.len()];
    for (src, file) in parsed {
        for raw in &file.cancers {
            let entry = format!("cancer {:?}", raw.id);
            if !id_ok(&raw.id) {
                p.entry(src, &entry, ID_RULE);
            }
            if let Some(i) = cancers.iter().position(|c| c.id == raw.id) {
                p.entry(
                    src,
                    &entry,
                    format!("cancer id is already defined in {}", cancer_src[i]),
                );
                continue;
            }
            let oncotree = raw.oncotree.trim().to_ascii_uppercase();
            if oncotree.is_empty() || !oncotree.bytes().all(|b| b.is_ascii_alphanumeric()) {
                p.entry(
                    src,
                    &entry,
                    "oncotree must be an oncotree code such as BREAST or NSCLC",
                );
            }
            let icd10: Vec<Icd10Range> = raw
                .icd10
                .iter()
                .filter_map(|t| p.check(src, &entry, icd_range(t)))
                .collect();
            if raw.icd10.is_empty() {
                p.entry(src, &entry, "a cancer needs at least one icd10 range");
            }
            let mut situations = Vec::new();
            for s in &raw.situations {
                let sentry = format!("{entry} situation {:?}", s.id);
                if let Some(first) = situation_ids.insert(s.id.clone(), src) {
                    p.entry(
                        src,
                        &sentry,
                        format!("situation id is already used in {first}"),
                    );
                }
                if let Some(sit) = situation(src, &sentry, s, &regimen_index, p) {
                    for &r in &sit.regimen_index {
                        used[r] = true;
                    }
                    situations.push(sit);
                }
            }
            if raw.situations.is_empty() {
                p.entry(src, &entry, "a cancer needs at least one situation");
            }
            cancers.push(Cancer {
                id: raw.id.clone(),
                name: raw.name.trim().to_owned(),
                oncotree,
                icd10,
                situations,
            });
            cancer_src.push(src);
        }
    }
    if cancers.is_empty() {
        p.file(&all_files, "the catalogue has no cancers");
    }
    for (i, r) in regimens.iter().enumerate() {
        if !used[i] {
            p.entry(
                regimen_src[&r.id],
                &format!("regimen {:?}", r.id),
                "no situation lists this regimen, so it is on no pathway",
            );
        }
    }
    // No diagnosis may belong to two cancers.
    for (i, a) in cancers.iter().enumerate() {
        for b in &cancers[i + 1..] {
            for ra in &a.icd10 {
                for rb in &b.icd10 {
                    if ra.contains(&rb.from) || rb.contains(&ra.from) {
                        p.entry(
                            cancer_src[i],
                            &format!("cancer {:?}", a.id),
                            format!("icd10 range {ra} overlaps {rb} of cancer {:?}", b.id),
                        );
                    }
                }
            }
        }
    }

    let mut catalogue = Catalogue {
        version,
        effective_from,
        effective_until,
        notice,
        dose_tolerance: tolerance,
        sites,
        site_references: site_refs
            .map(|(_, r)| r.references.clone())
            .unwrap_or_default(),
        value_aliases,
        drugs,
        classes,
        growth_factor: growth_factor?,
        antiemetics: antiemetic_rules?,
        cancers,
        regimens,
        index: Index::default(),
    };
    build_index(&mut catalogue);
    Some(catalogue)
}

fn regimen(
    src: &str,
    entry: &str,
    raw: &RawRegimen,
    drug_index: &HashMap<&str, usize>,
    drugs: &[Drug],
    sites: &[SiteCost],
    p: &mut Problems,
) -> Option<Regimen> {
    let emetogenic_risk = p.check(src, entry, EmetogenicRisk::parse(&raw.emetogenic_risk));
    let fn_risk = p.check(
        src,
        entry,
        FebrileNeutropeniaRisk::parse(&raw.febrile_neutropenia_risk),
    );
    let mut regimen_sites = Vec::new();
    for s in &raw.sites {
        let Some(site) = p.check(src, entry, SiteOfService::parse(s)) else {
            continue;
        };
        if !sites.iter().any(|c| c.site == site) {
            p.entry(
                src,
                entry,
                format!("site {site} has no relative cost in [[sites]]"),
            );
        }
        regimen_sites.push(site);
    }
    if raw.references.is_empty() {
        p.entry(src, entry, "a regimen needs at least one reference");
    }
    if raw.components.is_empty() {
        p.entry(src, entry, "a regimen needs at least one component");
    }
    let default_cycles = raw
        .cycles
        .as_ref()
        .and_then(|c| p.check(src, entry, cycles_of(c)));
    let mut components = Vec::new();
    for (i, c) in raw.components.iter().enumerate() {
        let centry = format!("{entry} components[{i}] ({})", c.drug);
        let Some(&drug_index) = drug_index.get(c.drug.as_str()) else {
            p.entry(src, &centry, format!("unknown drug {:?}", c.drug));
            continue;
        };
        let route = p.check(src, &centry, Route::parse(&c.route));
        let basis = p.check(src, &centry, DoseBasis::parse(&c.basis));
        let days = p.check(src, &centry, DaySchedule::parse(&c.days));
        let cycles = match &c.cycles {
            Some(raw) => p.check(src, &centry, cycles_of(raw)),
            None => default_cycles,
        };
        let Some(cycle_length_days) = c.cycle_length_days.or(raw.cycle_length_days) else {
            p.entry(
                src,
                &centry,
                "give cycle_length_days on the component or the regimen",
            );
            continue;
        };
        let (Some(route), Some(basis), Some(days), Some(cycles)) = (route, basis, days, cycles)
        else {
            if c.cycles.is_none() && raw.cycles.is_none() {
                p.entry(src, &centry, "give cycles on the component or the regimen");
            }
            continue;
        };
        if cycle_length_days == 0 || days.last() > cycle_length_days {
            p.entry(
                src,
                &centry,
                format!("days {days} do not fit a {cycle_length_days}-day cycle"),
            );
        }
        for (name, v) in [
            ("dose", Some(c.dose)),
            ("loading_dose", c.loading_dose),
            ("max_dose_mg", c.max_dose_mg),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                p.entry(src, &centry, format!("{name} must be a positive number"));
            }
        }
        if let Some(t) = c.tolerance_percent
            && !(t > 0.0 && t < 100.0)
        {
            p.entry(
                src,
                &centry,
                "tolerance_percent must be more than 0 and less than 100",
            );
        }
        // A regimen-wide cap applies to the open-ended components only.
        let max_cycles = c.max_cycles.or(raw
            .max_cycles
            .filter(|_| cycles == CycleCount::UntilProgression));
        if max_cycles.is_some() && cycles != CycleCount::UntilProgression {
            p.entry(
                src,
                &centry,
                "max_cycles only applies to cycles = \"until_progression\"",
            );
        }
        let drug = &drugs[drug_index];
        let billable = if route == Route::Oral {
            !drug.pharmacy_codes.is_empty()
        } else {
            !drug.hcpcs.is_empty()
        };
        if !billable {
            p.entry(
                src,
                &centry,
                format!(
                    "drug {:?} has no {} code for a {route} component",
                    drug.id,
                    if route == Route::Oral {
                        "pharmacy"
                    } else {
                        "hcpcs"
                    }
                ),
            );
        }
        components.push(Component {
            drug_id: c.drug.clone(),
            route,
            dose: c.dose,
            loading_dose: c.loading_dose,
            basis,
            max_dose_mg: c.max_dose_mg,
            days,
            cycle_length_days,
            cycles,
            max_cycles,
            phase: c.phase,
            tolerance_percent: c.tolerance_percent,
            note: c.note.clone(),
            drug_index,
        });
    }
    let infused = components.iter().any(|c| c.route != Route::Oral);
    if infused && regimen_sites.is_empty() {
        p.entry(
            src,
            entry,
            "a regimen with infused drugs must list the sites it may be given at",
        );
    }
    if !infused && !regimen_sites.is_empty() {
        p.entry(
            src,
            entry,
            "an all-oral regimen has no site of service; leave sites empty",
        );
    }
    Some(Regimen {
        id: raw.id.clone(),
        name: raw.name.trim().to_owned(),
        components,
        emetogenic_risk: emetogenic_risk?,
        febrile_neutropenia_risk: fn_risk?,
        cost_per_cycle_usd: raw.cost_per_cycle_usd,
        sites: regimen_sites,
        references: raw.references.clone(),
        notes: raw.notes.clone(),
    })
}

fn situation(
    src: &str,
    entry: &str,
    s: &RawSituation,
    regimen_index: &HashMap<String, usize>,
    p: &mut Problems,
) -> Option<Situation> {
    if !id_ok(&s.id) {
        p.entry(src, entry, ID_RULE);
    }
    let stage_groups = s
        .stage_groups
        .iter()
        .filter_map(|g| p.check(src, entry, StageGroup::parse(g)))
        .collect();
    let biomarkers = s
        .biomarkers
        .iter()
        .filter_map(|(name, cond)| {
            let condition = p.check(src, entry, BiomarkerCondition::parse(cond))?;
            let key = canonical_biomarker(name);
            if key.is_empty() {
                p.entry(
                    src,
                    entry,
                    format!("biomarker name {name:?} has no letters or digits"),
                );
            }
            Some(BiomarkerRequirement {
                name: name.clone(),
                key,
                condition,
            })
        })
        .collect();
    let lines: Vec<LineOfTherapy> = s
        .lines
        .iter()
        .filter_map(|l| p.check(src, entry, LineOfTherapy::parse(l)))
        .collect();
    if s.lines.is_empty() {
        p.entry(src, entry, "a situation needs at least one line of therapy");
    }
    let intent = p.check(src, entry, Intent::parse(&s.intent));
    let performance_status = match s.performance_status {
        None => (0, 4),
        Some([lo, hi]) => {
            if lo > hi || hi > 4 {
                p.entry(
                    src,
                    entry,
                    "performance_status must be [low, high] within 0 to 4",
                );
            }
            (lo, hi)
        }
    };
    let mut regimen_idx = Vec::new();
    for id in &s.regimens {
        match regimen_index.get(id) {
            Some(&i) if regimen_idx.contains(&i) => {
                p.entry(src, entry, format!("regimen {id:?} is listed twice"));
            }
            Some(&i) => regimen_idx.push(i),
            None => p.entry(src, entry, format!("unknown regimen {id:?}")),
        }
    }
    if s.regimens.is_empty() {
        p.entry(src, entry, "a situation needs at least one regimen");
    }
    Some(Situation {
        id: s.id.clone(),
        name: s.name.trim().to_owned(),
        stage_groups,
        biomarkers,
        histologies: s
            .histologies
            .iter()
            .map(|h| h.trim().to_ascii_uppercase())
            .collect(),
        lines,
        intent: intent?,
        performance_status,
        regimen_ids: s.regimens.clone(),
        references: s.references.clone(),
        regimen_index: regimen_idx,
    })
}

/// Every ICD-10-CM category (letter, digit, letter or digit) from `from` to `to`
/// inclusive, so a range can be indexed by the categories it touches.
fn categories_between(from: &str, to: &str) -> Vec<String> {
    const THIRD: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = Vec::new();
    for a in b'A'..=b'Z' {
        if a < from[0] || a > to[0] {
            continue;
        }
        for b in b'0'..=b'9' {
            for &c in THIRD {
                let cat = [a, b, c];
                if cat.as_slice() >= from && cat.as_slice() <= to {
                    out.push(String::from_utf8_lossy(&cat).into_owned());
                }
            }
        }
    }
    out
}

/// Builds the lookups an evaluation relies on. Also used by the benchmark generator,
/// which assembles catalogues in code.
pub(crate) fn build_index(c: &mut Catalogue) {
    let mut index = Index::default();
    for (i, d) in c.drugs.iter().enumerate() {
        index.drug_by_id.insert(d.id.clone(), i);
        for h in &d.hcpcs {
            index.drug_by_code.insert(h.code.as_str().to_owned(), i);
        }
        for code in &d.pharmacy_codes {
            index.drug_by_code.insert(code.as_str().to_owned(), i);
        }
    }
    index.classes_of_drug = vec![Vec::new(); c.drugs.len()];
    for (ci, class) in c.classes.iter().enumerate() {
        for d in &class.drug_ids {
            if let Some(&di) = index.drug_by_id.get(d) {
                index.classes_of_drug[di].push(ci);
            }
        }
    }
    index.drug_in_regimens = vec![false; c.drugs.len()];
    for (i, r) in c.regimens.iter().enumerate() {
        index.regimen_by_id.insert(r.id.clone(), i);
        for comp in &r.components {
            index.drug_in_regimens[comp.drug_index] = true;
        }
    }
    for (i, cancer) in c.cancers.iter().enumerate() {
        index.cancer_by_id.insert(cancer.id.clone(), i);
        for range in &cancer.icd10 {
            for cat in categories_between(range.from.category(), range.to.category()) {
                let list = index.cancers_by_category.entry(cat).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
    }
    c.index = index;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_cover_ranges() {
        assert_eq!(categories_between("C50", "C50"), ["C50"]);
        let colorectal = categories_between("C18", "C20");
        for cat in ["C18", "C19", "C20"] {
            assert!(colorectal.contains(&cat.to_owned()), "{cat}");
        }
        assert!(!colorectal.contains(&"C17".to_owned()));
        assert!(!colorectal.contains(&"C21".to_owned()));
        assert!(categories_between("C7A", "C7B").contains(&"C7A".to_owned()));
    }

    #[test]
    fn billing_units_read_mg_and_mcg() {
        assert_eq!(billing_unit_mg("10 mg"), Ok(10.0));
        assert_eq!(billing_unit_mg("0.5 mg"), Ok(0.5));
        assert_eq!(billing_unit_mg("25 mcg"), Ok(0.025));
        assert!(billing_unit_mg("1 unit").is_err());
        assert!(billing_unit_mg("0 mg").is_err());
        assert!(billing_unit_mg("1e-322 mcg").is_err());
    }
}
