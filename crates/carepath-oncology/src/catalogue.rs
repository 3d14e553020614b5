//! The pathway catalogue: cancers, the clinical situations each covers, the on-pathway
//! regimens for each situation in preference order, the drugs they use, supportive-care
//! rules and the relative cost of each site of service.
//!
//! A [`Catalogue`] is one version of the data, valid from its effective date; it is
//! only built by the loader ([`Catalogue::from_toml_files`]), which checks every entry,
//! so lookups here never fail on malformed data.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use carepath_core::{Icd10Code, ServiceCode};
use chrono::NaiveDate;
use serde::Serialize;

use crate::model::{
    BiomarkerCondition, CycleCount, DaySchedule, DoseBasis, DrugCode, EmetogenicRisk,
    FebrileNeutropeniaRisk, Intent, LineOfTherapy, PharmacyCode, Route, SiteOfService, StageGroup,
    canonical_biomarker,
};
use crate::plan::{ClinicalContext, RiskFactor};

/// One version of the pathway catalogue.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub(crate) version: String,
    pub(crate) effective_from: NaiveDate,
    pub(crate) effective_until: Option<NaiveDate>,
    pub(crate) notice: String,
    /// Fraction (0.10 for ±10%) a planned dose may differ from the regimen's.
    pub(crate) dose_tolerance: f64,
    pub(crate) sites: Vec<SiteCost>,
    pub(crate) site_references: Vec<String>,
    /// Reported biomarker spellings (lowercase) and the canonical value they mean.
    pub(crate) value_aliases: BTreeMap<String, String>,
    pub(crate) drugs: Vec<Drug>,
    pub(crate) classes: Vec<DrugClass>,
    pub(crate) growth_factor: GrowthFactorRule,
    pub(crate) antiemetics: AntiemeticRules,
    pub(crate) cancers: Vec<Cancer>,
    pub(crate) regimens: Vec<Regimen>,
    pub(crate) index: Index,
}

/// Lookups built once at load so an evaluation does no scans over the whole
/// catalogue.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    pub drug_by_id: HashMap<String, usize>,
    /// Keyed by [`DrugCode::as_str`]: HCPCS codes uppercase, pharmacy ids lowercase.
    pub drug_by_code: HashMap<String, usize>,
    /// For each drug, the supportive-care classes it belongs to.
    pub classes_of_drug: Vec<Vec<usize>>,
    /// For each drug, whether any regimen uses it as a component; a supportive drug
    /// that no regimen uses is read as supportive care wherever a plan lists it.
    pub drug_in_regimens: Vec<bool>,
    pub regimen_by_id: HashMap<String, usize>,
    pub cancer_by_id: HashMap<String, usize>,
    /// ICD-10-CM category (`C50`) to the cancers with a range touching it.
    pub cancers_by_category: HashMap<String, Vec<usize>>,
}

/// The relative cost of giving the same infusion at one site; hospital outpatient is
/// usually the reference at 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SiteCost {
    pub site: SiteOfService,
    pub relative_cost: f64,
}

/// A drug the catalogue knows, with every code a plan may name it by.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Drug {
    /// Lowercase generic name used as the key in regimens and classes (`docetaxel`).
    pub id: String,
    pub name: String,
    /// Codes billed under the medical benefit, reference product and biosimilars alike.
    pub hcpcs: Vec<HcpcsBilling>,
    /// Ids dispensed under the pharmacy benefit.
    pub pharmacy_codes: Vec<PharmacyCode>,
    /// The usual dose, for supportive drugs whose dose the pathway does not review but
    /// whose billing units a precertification line needs.
    pub typical_dose: Option<TypicalDose>,
}

/// One HCPCS code and the amount one billing unit stands for (`J9045`: 50 mg).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HcpcsBilling {
    pub code: ServiceCode,
    /// The descriptor's unit in milligrams (25 mcg is 0.025).
    pub unit_mg: f64,
}

/// A drug's usual dose and route.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TypicalDose {
    pub dose: f64,
    pub basis: DoseBasis,
    pub route: Route,
}

/// What a supportive-care class is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportKind {
    GrowthFactor,
    Antiemetic,
}

/// A named group of interchangeable supportive drugs (every 5-HT3 antagonist).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DrugClass {
    pub id: String,
    pub name: String,
    pub kind: SupportKind,
    pub drug_ids: Vec<String>,
}

/// When primary growth-factor prophylaxis is expected.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GrowthFactorRule {
    /// The class whose drugs count as growth-factor prophylaxis.
    pub class_id: String,
    /// Age at or above which an intermediate-risk regimen calls for prophylaxis.
    pub age_at_least: u8,
    /// ECOG performance status at or above which the patient counts as at risk.
    pub performance_status_at_least: u8,
    /// Reported patient factors that count as risk.
    pub risk_factors: Vec<RiskFactor>,
    pub references: Vec<String>,
}

/// The antiemetic classes expected for one emetogenic risk level.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AntiemeticLevel {
    pub risk: EmetogenicRisk,
    /// Every one of these classes.
    pub required: Vec<String>,
    /// At least one of these, when not empty.
    pub any_of: Vec<String>,
    /// Classes that may be added without counting as over-use.
    pub also_allowed: Vec<String>,
    /// The most antiemetic classes expected in all; more is over-use.
    pub max_classes: Option<u8>,
}

/// A drug and dose that raise a regimen's antiemetic needs (carboplatin at AUC 4 or
/// more gets an NK1 antagonist added to the two-drug combination).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AntiemeticEscalation {
    pub drug_id: String,
    pub basis: DoseBasis,
    pub at_least: f64,
    pub applies_to: EmetogenicRisk,
    pub add_required: Vec<String>,
    pub reason: String,
}

/// Antiemetic prophylaxis by emetogenic risk.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AntiemeticRules {
    /// One level per [`EmetogenicRisk`], in `EmetogenicRisk::ALL` order.
    pub levels: Vec<AntiemeticLevel>,
    pub escalations: Vec<AntiemeticEscalation>,
    pub references: Vec<String>,
}

impl AntiemeticRules {
    pub(crate) fn level(&self, risk: EmetogenicRisk) -> &AntiemeticLevel {
        // The loader stores exactly one level per risk, in ALL order.
        &self.levels[risk as usize]
    }
}

/// A cancer the catalogue has pathways for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Cancer {
    pub id: String,
    pub name: String,
    /// OncoTree code (`BREAST`, `NSCLC`, `DLBCLNOS`).
    pub oncotree: String,
    /// Diagnosis codes that mean this cancer; no two cancers overlap.
    pub icd10: Vec<Icd10Range>,
    /// In the order a reviewer reads them; earlier situations list their regimens
    /// first among alternatives.
    pub situations: Vec<Situation>,
}

/// An inclusive, hierarchical ICD-10-CM range (`C18`–`C20`, `C83.3`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Icd10Range {
    pub from: Icd10Code,
    pub to: Icd10Code,
}

impl Icd10Range {
    /// Whether the code is in the range; see [`Icd10Code::in_range`].
    pub fn contains(&self, code: &Icd10Code) -> bool {
        code.in_range(&self.from, &self.to)
    }
}

impl fmt::Display for Icd10Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// A clinical situation within a cancer and the regimens on pathway for it.
///
/// Every criterion present must hold for a plan to be in the situation; an empty list
/// (stage groups, histologies) means "any".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Situation {
    pub id: String,
    pub name: String,
    pub stage_groups: Vec<StageGroup>,
    pub biomarkers: Vec<BiomarkerRequirement>,
    /// OncoTree histology codes, uppercase.
    pub histologies: Vec<String>,
    pub lines: Vec<LineOfTherapy>,
    pub intent: Intent,
    /// Inclusive ECOG range.
    pub performance_status: (u8, u8),
    /// On-pathway regimens, most preferred first.
    pub regimen_ids: Vec<String>,
    pub references: Vec<String>,
    #[serde(skip)]
    pub(crate) regimen_index: Vec<usize>,
}

/// One biomarker a situation depends on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BiomarkerRequirement {
    /// As written in the data (`PD-L1`), for messages.
    pub name: String,
    /// [`canonical_biomarker`] of the name, for matching.
    pub key: String,
    pub condition: BiomarkerCondition,
}

/// A treatment regimen: its components and cycle signature, risks, cost and sources.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Regimen {
    pub id: String,
    pub name: String,
    pub components: Vec<Component>,
    pub emetogenic_risk: EmetogenicRisk,
    pub febrile_neutropenia_risk: FebrileNeutropeniaRisk,
    /// Illustrative cost of one cycle at a site of relative cost 1.0, in whole dollars.
    pub cost_per_cycle_usd: u32,
    /// Sites the infused part may be given at; empty for all-oral regimens.
    pub sites: Vec<SiteOfService>,
    pub references: Vec<String>,
    pub notes: Option<String>,
}

impl Regimen {
    /// Whether any component is billed under the medical benefit, which is what makes
    /// site of service matter.
    pub fn has_infused_component(&self) -> bool {
        self.components.iter().any(|c| c.route != Route::Oral)
    }
}

/// One drug in a regimen, with its own cycle signature so sequential parts (AC then
/// paclitaxel) and drugs continued past the chemotherapy (trastuzumab) fit one shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Component {
    pub drug_id: String,
    pub route: Route,
    /// Per dosing day: a drug taken twice daily states the daily total.
    pub dose: f64,
    /// A first-cycle loading dose (trastuzumab 8 mg/kg before 6 mg/kg).
    pub loading_dose: Option<f64>,
    pub basis: DoseBasis,
    /// An absolute cap in mg (vincristine 2 mg).
    pub max_dose_mg: Option<f64>,
    pub days: DaySchedule,
    pub cycle_length_days: u16,
    pub cycles: CycleCount,
    /// A cap on open-ended treatment (pembrolizumab for up to 35 cycles).
    pub max_cycles: Option<u16>,
    /// 1 for the first part of a sequential regimen, 2 for the next, and so on.
    pub phase: u8,
    /// Overrides the catalogue's dose tolerance, in percent.
    pub tolerance_percent: Option<f64>,
    pub note: Option<String>,
    #[serde(skip)]
    pub(crate) drug_index: usize,
}

/// One on-pathway option: a regimen, the situation it is on pathway for, and its place
/// in that situation's preference order.
#[derive(Debug, Clone, Copy)]
pub struct PathwayOption<'a> {
    pub cancer: &'a Cancer,
    pub situation: &'a Situation,
    /// 1 for the most preferred.
    pub preference: usize,
    pub regimen: &'a Regimen,
}

/// A reported clinical context in the canonical form situations are checked against.
pub(crate) struct NormalisedContext<'a> {
    pub stage: Option<&'a StageGroup>,
    /// Canonical biomarker key and aliased lowercase value.
    pub biomarkers: Vec<(String, String)>,
    pub histology: Option<String>,
    pub line: Option<LineOfTherapy>,
    pub intent: Option<Intent>,
    pub performance_status: Option<u8>,
}

/// Which criterion of a situation a plan misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Criterion {
    Stage,
    Biomarker(usize),
    Histology,
    Line,
    Intent,
    PerformanceStatus,
}

/// Whether a criterion was reported and differs, or was not reported at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapKind {
    Differs,
    NotReported,
}

impl Situation {
    /// Calls `gap` for every criterion the context does not meet, in a fixed order.
    pub(crate) fn check(
        &self,
        ctx: &NormalisedContext<'_>,
        mut gap: impl FnMut(Criterion, GapKind),
    ) {
        if !self.stage_groups.is_empty() {
            match ctx.stage {
                None => gap(Criterion::Stage, GapKind::NotReported),
                Some(s) if !self.stage_groups.iter().any(|g| s.within(g)) => {
                    gap(Criterion::Stage, GapKind::Differs)
                }
                Some(_) => {}
            }
        }
        for (i, req) in self.biomarkers.iter().enumerate() {
            match ctx.biomarkers.iter().find(|(k, _)| *k == req.key) {
                None => gap(Criterion::Biomarker(i), GapKind::NotReported),
                Some((_, v)) if !req.condition.accepts(v) => {
                    gap(Criterion::Biomarker(i), GapKind::Differs)
                }
                Some(_) => {}
            }
        }
        if !self.histologies.is_empty() {
            match &ctx.histology {
                None => gap(Criterion::Histology, GapKind::NotReported),
                Some(h) if !self.histologies.iter().any(|x| x == h) => {
                    gap(Criterion::Histology, GapKind::Differs)
                }
                Some(_) => {}
            }
        }
        match ctx.line {
            None => gap(Criterion::Line, GapKind::NotReported),
            Some(l) if !self.lines.contains(&l) => gap(Criterion::Line, GapKind::Differs),
            Some(_) => {}
        }
        match ctx.intent {
            None => gap(Criterion::Intent, GapKind::NotReported),
            Some(i) if i != self.intent => gap(Criterion::Intent, GapKind::Differs),
            Some(_) => {}
        }
        let (lo, hi) = self.performance_status;
        if (lo, hi) != (0, 4) {
            match ctx.performance_status {
                None => gap(Criterion::PerformanceStatus, GapKind::NotReported),
                Some(ps) if ps < lo || ps > hi => {
                    gap(Criterion::PerformanceStatus, GapKind::Differs)
                }
                Some(_) => {}
            }
        }
    }

    /// How many criteria the context misses, for ranking near situations.
    pub(crate) fn gap_count(&self, ctx: &NormalisedContext<'_>) -> usize {
        let mut n = 0;
        self.check(ctx, |_, _| n += 1);
        n
    }

    /// What the situation expects for a criterion, for messages.
    pub(crate) fn expected(&self, criterion: Criterion) -> String {
        match criterion {
            Criterion::Stage => join(self.stage_groups.iter().map(ToString::to_string), " or "),
            Criterion::Biomarker(i) => self.biomarkers[i].condition.to_string(),
            Criterion::Histology => join(self.histologies.iter().cloned(), " or "),
            Criterion::Line => join(self.lines.iter().map(|l| l.as_str().to_owned()), " or "),
            Criterion::Intent => self.intent.as_str().to_owned(),
            Criterion::PerformanceStatus => {
                format!(
                    "{} to {}",
                    self.performance_status.0, self.performance_status.1
                )
            }
        }
    }
}

pub(crate) fn join(items: impl Iterator<Item = String>, sep: &str) -> String {
    let mut out = String::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(&item);
    }
    out
}

impl Catalogue {
    /// The version label (`2026.1-illustrative`), recorded with every evaluation.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The first day this version applies to.
    pub fn effective_from(&self) -> NaiveDate {
        self.effective_from
    }

    /// The last day this version applies to, if a successor is already scheduled.
    pub fn effective_until(&self) -> Option<NaiveDate> {
        self.effective_until
    }

    /// Whether this version applies on `date` (the date of service or of the request,
    /// chosen by the caller).
    pub fn is_effective_on(&self, date: NaiveDate) -> bool {
        date >= self.effective_from && self.effective_until.is_none_or(|until| date <= until)
    }

    /// The label the data carries about its status (the shipped data says it is
    /// illustrative and not clinical guidance); show it wherever pathways are shown.
    pub fn notice(&self) -> &str {
        &self.notice
    }

    /// The default dose tolerance, as a fraction (0.1 for ±10%).
    pub fn dose_tolerance(&self) -> f64 {
        self.dose_tolerance
    }

    /// Every cancer, in catalogue order.
    pub fn cancers(&self) -> &[Cancer] {
        &self.cancers
    }

    /// A cancer by id.
    pub fn cancer(&self, id: &str) -> Option<&Cancer> {
        self.index.cancer_by_id.get(id).map(|&i| &self.cancers[i])
    }

    /// The cancer a diagnosis code belongs to. Cancers' ranges never overlap, so there
    /// is at most one.
    pub fn cancer_for_diagnosis(&self, code: &Icd10Code) -> Option<&Cancer> {
        self.index
            .cancers_by_category
            .get(code.category())?
            .iter()
            .map(|&i| &self.cancers[i])
            .find(|c| c.icd10.iter().any(|r| r.contains(code)))
    }

    /// Every regimen, in catalogue order.
    pub fn regimens(&self) -> &[Regimen] {
        &self.regimens
    }

    /// A regimen by id.
    pub fn regimen(&self, id: &str) -> Option<&Regimen> {
        self.index.regimen_by_id.get(id).map(|&i| &self.regimens[i])
    }

    /// Every drug the catalogue knows.
    pub fn drugs(&self) -> &[Drug] {
        &self.drugs
    }

    /// A drug by id (`docetaxel`).
    pub fn drug(&self, id: &str) -> Option<&Drug> {
        self.index.drug_by_id.get(id).map(|&i| &self.drugs[i])
    }

    /// The drug a plan's code names, biosimilar codes included.
    pub fn drug_for_code(&self, code: &DrugCode) -> Option<&Drug> {
        self.index
            .drug_by_code
            .get(code.as_str())
            .map(|&i| &self.drugs[i])
    }

    /// Supportive-care classes (growth factors, antiemetic classes).
    pub fn drug_classes(&self) -> &[DrugClass] {
        &self.classes
    }

    /// The growth-factor prophylaxis rule.
    pub fn growth_factor_rule(&self) -> &GrowthFactorRule {
        &self.growth_factor
    }

    /// The antiemetic prophylaxis rules.
    pub fn antiemetic_rules(&self) -> &AntiemeticRules {
        &self.antiemetics
    }

    /// Relative cost of each site of service.
    pub fn site_costs(&self) -> &[SiteCost] {
        &self.sites
    }

    pub(crate) fn site_cost(&self, site: SiteOfService) -> Option<f64> {
        self.sites
            .iter()
            .find(|s| s.site == site)
            .map(|s| s.relative_cost)
    }

    /// The on-pathway regimens for a cancer, situation by situation and in preference
    /// order within each, for the situations a (possibly partial) context fits.
    ///
    /// A criterion the filter leaves out is not checked, so an empty filter lists the
    /// whole pathway. `None` when the cancer is unknown.
    pub fn pathway(
        &self,
        cancer_id: &str,
        filter: &ClinicalContext,
    ) -> Option<Vec<PathwayOption<'_>>> {
        let cancer = self.cancer(cancer_id)?;
        let ctx = self.normalise(filter);
        let mut out = Vec::new();
        for situation in &cancer.situations {
            let mut fits = true;
            situation.check(&ctx, |_, kind| fits &= kind == GapKind::NotReported);
            if !fits {
                continue;
            }
            for (rank, &r) in situation.regimen_index.iter().enumerate() {
                out.push(PathwayOption {
                    cancer,
                    situation,
                    preference: rank + 1,
                    regimen: &self.regimens[r],
                });
            }
        }
        Some(out)
    }

    /// A reported biomarker result in canonical form: lowercase, then through the
    /// alias table (`pos` is `positive`, `dmmr` is `msi-h`).
    pub(crate) fn canonical_value(&self, value: &str) -> String {
        let lower = value.trim().to_lowercase();
        match self.value_aliases.get(&lower) {
            Some(canonical) => canonical.clone(),
            None => lower,
        }
    }

    pub(crate) fn normalise<'a>(&self, ctx: &'a ClinicalContext) -> NormalisedContext<'a> {
        NormalisedContext {
            stage: ctx.stage_group.as_ref(),
            biomarkers: ctx
                .biomarkers
                .iter()
                .map(|(k, v)| (canonical_biomarker(k), self.canonical_value(v)))
                .collect(),
            histology: ctx
                .histology
                .as_ref()
                .map(|h| h.trim().to_ascii_uppercase()),
            line: ctx.line,
            intent: ctx.intent,
            performance_status: ctx.performance_status,
        }
    }
}
