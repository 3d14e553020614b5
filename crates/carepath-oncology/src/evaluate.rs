//! Evaluating a whole treatment plan against the catalogue: which situation it is in,
//! which regimen it is (or is closest to), every variance from that regimen, supportive
//! care, a cheaper site of service, and the on-pathway alternatives.
//!
//! Pure and deterministic: the same catalogue and plan always give the same
//! evaluation, findings in the same order. Nothing here decides a case; blocking
//! findings send the plan to a physician reviewer, and only a plan on pathway with no
//! open finding is approved without one.

use carepath_core::Invalid;
use serde::{Deserialize, Serialize};

use crate::catalogue::{
    Cancer, Catalogue, Component, Criterion, GapKind, NormalisedContext, Regimen, Situation,
    SupportKind, join,
};
use crate::lines::{ServiceLine, display_name, is_supportive_only, service_lines};
use crate::model::{CycleCount, EmetogenicRisk, Measures, SiteOfService, named_enum};
use crate::plan::{PlannedDrug, TreatmentPlan};
use crate::supportive::{DoseOf, GrowthFactorNeed, SupportiveNeeds, needs};

/// What a finding is about, as a stable code clients can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingCode {
    /// No cancer in the catalogue covers the diagnosis code.
    NoPathwayForDiagnosis,
    /// The cancer has pathways, but none for this situation.
    NoPathwayForSituation,
    /// The regimen is on pathway only for a different situation.
    RegimenNotOnPathway,
    /// A criterion the situation depends on was not reported.
    InformationMissing,
    StageMismatch,
    BiomarkerMismatch,
    HistologyMismatch,
    LineOfTherapyMismatch,
    IntentMismatch,
    PerformanceStatusOutOfRange,
    MissingComponent,
    ExtraComponent,
    DoseAboveTolerance,
    /// Advisory: reductions for toxicity or organ function are routine.
    DoseBelowTolerance,
    /// The plan's dose basis cannot be compared with the regimen's (AUC against mg/m²
    /// without the measurements to convert).
    DoseBasisMismatch,
    /// The days within the cycle differ (weekly against day 1 only).
    ScheduleMismatch,
    CycleLengthMismatch,
    CyclesExceedRegimen,
    GrowthFactorMissing,
    GrowthFactorRecommended,
    GrowthFactorNotIndicated,
    AntiemeticMissing,
    AntiemeticBeyondRisk,
    SiteOfServiceSaving,
}

named_enum!(FindingCode, "finding code", {
    NoPathwayForDiagnosis => "no_pathway_for_diagnosis",
    NoPathwayForSituation => "no_pathway_for_situation",
    RegimenNotOnPathway => "regimen_not_on_pathway",
    InformationMissing => "information_missing",
    StageMismatch => "stage_mismatch",
    BiomarkerMismatch => "biomarker_mismatch",
    HistologyMismatch => "histology_mismatch",
    LineOfTherapyMismatch => "line_of_therapy_mismatch",
    IntentMismatch => "intent_mismatch",
    PerformanceStatusOutOfRange => "performance_status_out_of_range",
    MissingComponent => "missing_component",
    ExtraComponent => "extra_component",
    DoseAboveTolerance => "dose_above_tolerance",
    DoseBelowTolerance => "dose_below_tolerance",
    DoseBasisMismatch => "dose_basis_mismatch",
    ScheduleMismatch => "schedule_mismatch",
    CycleLengthMismatch => "cycle_length_mismatch",
    CyclesExceedRegimen => "cycles_exceed_regimen",
    GrowthFactorMissing => "growth_factor_missing",
    GrowthFactorRecommended => "growth_factor_recommended",
    GrowthFactorNotIndicated => "growth_factor_not_indicated",
    AntiemeticMissing => "antiemetic_missing",
    AntiemeticBeyondRisk => "antiemetic_beyond_risk",
    SiteOfServiceSaving => "site_of_service_saving",
});

/// Whether a finding holds the plan for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Open until a reviewer resolves it; the plan is not approved automatically.
    Blocking,
    /// Shown to the provider and reviewer; does not stop approval.
    Advisory,
}

named_enum!(Severity, "severity", {
    Blocking => "blocking",
    Advisory => "advisory",
});

/// One thing the evaluation noticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    /// One lowercase sentence for the provider and reviewer.
    pub message: String,
    /// The drug id or code, or the criterion, the finding is about.
    pub subject: Option<String>,
    /// The catalogue sources behind it, so a reviewer can check the basis.
    pub references: Vec<String>,
}

/// The regimen the plan was matched to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimenMatch {
    pub regimen_id: String,
    pub regimen_name: String,
    /// The situation the regimen is on pathway for that is nearest the plan's.
    pub situation_id: String,
    pub situation_name: String,
    /// Whether the plan's situation is that situation.
    pub situation_fits: bool,
    /// Whether every component matched with no blocking variance.
    pub components_match: bool,
}

/// An on-pathway regimen for the plan's situation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub regimen_id: String,
    pub regimen_name: String,
    pub situation_id: String,
    /// 1 for the situation's most preferred regimen.
    pub preference: usize,
    pub cost_per_cycle_usd: u32,
    pub references: Vec<String>,
}

/// A cheaper site the same regimen may be given at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteSuggestion {
    pub planned: SiteOfService,
    pub suggested: SiteOfService,
    pub planned_relative_cost: f64,
    pub suggested_relative_cost: f64,
    pub saving_per_cycle_usd: u32,
    /// Cycles the saving is counted over; `None` when treatment is open-ended.
    pub cycles: Option<u16>,
    pub estimated_saving_usd: Option<u32>,
}

/// The outcome of reviewing one plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The catalogue version the plan was judged against, for the audit trail.
    pub catalogue_version: String,
    pub cancer_id: Option<String>,
    /// The situations the plan's clinical context fits.
    pub situation_ids: Vec<String>,
    /// The regimen is on pathway for the plan's situation and its components match.
    pub on_pathway: bool,
    pub matched: Option<RegimenMatch>,
    /// Situation, then components, then supportive care, then site of service.
    pub findings: Vec<Finding>,
    /// On-pathway regimens for the plan's situation, most preferred first (the
    /// matched regimen left out when the plan is on pathway).
    pub alternatives: Vec<Alternative>,
    pub supportive_needs: Option<SupportiveNeeds>,
    pub site_of_service: Option<SiteSuggestion>,
    pub service_lines: Vec<ServiceLine>,
}

impl Evaluation {
    /// Findings that hold the plan for review.
    pub fn open_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Blocking)
    }

    /// On pathway with nothing open: the plan can be approved at once and services
    /// scheduled.
    pub fn instant_approval(&self) -> bool {
        self.on_pathway && self.open_findings().next().is_none()
    }

    /// Whether any finding has this code.
    pub fn has(&self, code: FindingCode) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }
}

/// How a planned dose compares with the regimen's.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DoseCheck {
    Within,
    Above(f64),
    Below(f64),
    Incomparable,
}

/// How one planned drug compares with one component.
#[derive(Debug, Clone, Copy)]
struct ComponentCheck {
    dose: DoseCheck,
    days_match: bool,
    cycle_length_match: bool,
    cycles_within: bool,
}

impl ComponentCheck {
    fn blocking(&self) -> usize {
        usize::from(matches!(
            self.dose,
            DoseCheck::Above(_) | DoseCheck::Incomparable
        )) + usize::from(!self.days_match)
            + usize::from(!self.cycle_length_match)
            + usize::from(!self.cycles_within)
    }
}

/// How a plan's drugs line up with one regimen.
#[derive(Debug, Clone)]
struct Fit {
    /// Component index, plan entry index, comparison.
    pairs: Vec<(usize, usize, ComponentCheck)>,
    missing: Vec<usize>,
    /// Plan entries that are neither a component nor supportive care.
    extra: Vec<usize>,
    blocking: usize,
}

impl Fit {
    fn exact(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.blocking == 0
    }
}

/// A planned anticancer drug resolved against the catalogue.
struct Entry<'p> {
    drug: &'p PlannedDrug,
    drug_index: Option<usize>,
    /// Listed among the drugs but only ever supportive care.
    supportive: bool,
}

/// Evaluates a plan against one catalogue version.
///
/// Errors only on an invalid plan (every bad field named) or an unknown `cancer_id`;
/// a plan the catalogue has no pathway for is a valid plan with a blocking finding.
pub fn evaluate_plan(catalogue: &Catalogue, plan: &TreatmentPlan) -> Result<Evaluation, Invalid> {
    plan.validate()?;
    let cancer = match &plan.cancer_id {
        Some(id) => match catalogue.cancer(id.trim()) {
            Some(c) => Some(c),
            None => {
                let known = join(catalogue.cancers.iter().map(|c| c.id.clone()), ", ");
                return Err(Invalid::field(
                    "cancer_id",
                    format!("unknown cancer {id:?}; known: {known}"),
                ));
            }
        },
        None => catalogue.cancer_for_diagnosis(&plan.diagnosis),
    };
    let lines = service_lines(catalogue, plan);
    let Some(cancer) = cancer else {
        return Ok(Evaluation {
            catalogue_version: catalogue.version.clone(),
            cancer_id: None,
            situation_ids: Vec::new(),
            on_pathway: false,
            matched: None,
            findings: vec![Finding {
                code: FindingCode::NoPathwayForDiagnosis,
                severity: Severity::Blocking,
                message: format!(
                    "no pathway in catalogue {} covers diagnosis {}",
                    catalogue.version, plan.diagnosis
                ),
                subject: Some(plan.diagnosis.to_string()),
                references: Vec::new(),
            }],
            alternatives: Vec::new(),
            supportive_needs: None,
            site_of_service: None,
            service_lines: lines,
        });
    };
    Ok(Evaluator::new(catalogue, plan, cancer).run(lines))
}

struct Evaluator<'a, 'p> {
    catalogue: &'a Catalogue,
    plan: &'p TreatmentPlan,
    cancer: &'a Cancer,
    ctx: NormalisedContext<'p>,
    entries: Vec<Entry<'p>>,
    measures: Measures,
    findings: Vec<Finding>,
}

impl<'a, 'p> Evaluator<'a, 'p> {
    fn new(catalogue: &'a Catalogue, plan: &'p TreatmentPlan, cancer: &'a Cancer) -> Self {
        let entries = plan
            .drugs
            .iter()
            .map(|drug| {
                let drug_index = catalogue
                    .index
                    .drug_by_code
                    .get(drug.code.as_str())
                    .copied();
                Entry {
                    drug,
                    drug_index,
                    supportive: drug_index.is_some_and(|i| is_supportive_only(catalogue, i)),
                }
            })
            .collect();
        Self {
            catalogue,
            plan,
            cancer,
            ctx: catalogue.normalise(&plan.context),
            entries,
            measures: plan.patient.measures(),
            findings: Vec::new(),
        }
    }

    fn run(mut self, lines: Vec<ServiceLine>) -> Evaluation {
        let fitting: Vec<&Situation> = self
            .cancer
            .situations
            .iter()
            .filter(|s| s.gap_count(&self.ctx) == 0)
            .collect();

        // Fits are computed once per regimen, however many situations list it.
        let mut fits: Vec<(usize, Fit)> = Vec::new();
        for s in &self.cancer.situations {
            for &r in &s.regimen_index {
                if !fits.iter().any(|(i, _)| *i == r) {
                    fits.push((r, self.fit(&self.catalogue.regimens[r])));
                }
            }
        }
        let fit_of = |r: usize| {
            &fits
                .iter()
                .find(|(i, _)| *i == r)
                .expect("every listed regimen has a fit")
                .1
        };

        // The nearest (situation, regimen) pair explains the plan. Nearest means the
        // fewest structural differences (drugs missing or extra, situation criteria
        // missed), then the fewest dose and schedule variances; an exact match in a
        // fitting situation has none and wins. Remaining ties go to the regimen whose
        // drugs are exactly the plan's (naming "this regimen, other situation" rather
        // than "that regimen, one drug short": the alternatives show the latter), then
        // to more matched drugs, then catalogue and preference order.
        type Key = (usize, usize, usize, usize);
        let mut chosen: Option<(Key, &Situation, usize)> = None;
        for s in &self.cancer.situations {
            let gaps = s.gap_count(&self.ctx);
            for &r in &s.regimen_index {
                let fit = fit_of(r);
                let drugs_off = fit.missing.len() + fit.extra.len();
                let key = (
                    drugs_off + gaps,
                    fit.blocking,
                    drugs_off,
                    usize::MAX - fit.pairs.len(),
                );
                if chosen.as_ref().is_none_or(|(k, _, _)| key < *k) {
                    chosen = Some((key, s, r));
                }
            }
        }
        let chosen = chosen.map(|(_, s, r)| (s, r));

        if fitting.is_empty() {
            self.no_situation_fits();
        }
        let Some((situation, r)) = chosen else {
            return self.finish(fitting, None, false, None, None, lines);
        };
        let regimen = &self.catalogue.regimens[r];
        let fit = fit_of(r).clone();
        let situation_fits = situation.gap_count(&self.ctx) == 0;
        if !situation_fits {
            self.situation_findings(situation, regimen);
        }
        self.component_findings(regimen, &fit);
        let on_pathway =
            situation_fits && fit.missing.is_empty() && fit.extra.is_empty() && fit.blocking == 0;
        let needs = self.supportive_findings(regimen, &fit);
        let site = if on_pathway {
            self.site_of_service(regimen, &fit)
        } else {
            None
        };
        let matched = RegimenMatch {
            regimen_id: regimen.id.clone(),
            regimen_name: regimen.name.clone(),
            situation_id: situation.id.clone(),
            situation_name: situation.name.clone(),
            situation_fits,
            components_match: fit.exact(),
        };
        self.finish(
            fitting,
            Some((matched, r)),
            on_pathway,
            Some(needs),
            site,
            lines,
        )
    }

    fn finish(
        self,
        fitting: Vec<&Situation>,
        matched: Option<(RegimenMatch, usize)>,
        on_pathway: bool,
        supportive_needs: Option<SupportiveNeeds>,
        site_of_service: Option<SiteSuggestion>,
        service_lines: Vec<ServiceLine>,
    ) -> Evaluation {
        let mut alternatives: Vec<Alternative> = Vec::new();
        for s in &fitting {
            for (rank, &r) in s.regimen_index.iter().enumerate() {
                let skip = on_pathway && matched.as_ref().is_some_and(|(_, m)| *m == r);
                let regimen = &self.catalogue.regimens[r];
                if skip || alternatives.iter().any(|a| a.regimen_id == regimen.id) {
                    continue;
                }
                alternatives.push(Alternative {
                    regimen_id: regimen.id.clone(),
                    regimen_name: regimen.name.clone(),
                    situation_id: s.id.clone(),
                    preference: rank + 1,
                    cost_per_cycle_usd: regimen.cost_per_cycle_usd,
                    references: regimen.references.clone(),
                });
            }
        }
        Evaluation {
            catalogue_version: self.catalogue.version.clone(),
            cancer_id: Some(self.cancer.id.clone()),
            situation_ids: fitting.iter().map(|s| s.id.clone()).collect(),
            on_pathway,
            matched: matched.map(|(m, _)| m),
            findings: self.findings,
            alternatives,
            supportive_needs,
            site_of_service,
            service_lines,
        }
    }

    fn push(
        &mut self,
        code: FindingCode,
        severity: Severity,
        subject: Option<String>,
        message: String,
        references: &[String],
    ) {
        self.findings.push(Finding {
            code,
            severity,
            message,
            subject,
            references: references.to_vec(),
        });
    }

    /// Lines the plan's drugs up with a regimen's components, drug by drug; where a
    /// drug appears twice (fluorouracil bolus and infusion) each component takes the
    /// planned entry it differs from least.
    fn fit(&self, regimen: &Regimen) -> Fit {
        // Every same-drug pairing, closest first; most drugs appear once, so this is
        // about as long as the regimen.
        let mut candidates: Vec<(usize, usize, usize, ComponentCheck)> = Vec::new();
        for (ci, c) in regimen.components.iter().enumerate() {
            for (ei, e) in self.entries.iter().enumerate() {
                if e.drug_index == Some(c.drug_index) {
                    let check = self.check(c, e.drug);
                    candidates.push((check.blocking(), ci, ei, check));
                }
            }
        }
        candidates.sort_by_key(|&(cost, ci, ei, _)| (cost, ci, ei));
        let mut component_used = vec![false; regimen.components.len()];
        let mut entry_used = vec![false; self.entries.len()];
        let mut pairs = Vec::new();
        let mut blocking = 0;
        for (cost, ci, ei, check) in candidates {
            if component_used[ci] || entry_used[ei] {
                continue;
            }
            component_used[ci] = true;
            entry_used[ei] = true;
            blocking += cost;
            pairs.push((ci, ei, check));
        }
        pairs.sort_by_key(|&(ci, _, _)| ci);
        let missing = (0..regimen.components.len())
            .filter(|&ci| !component_used[ci])
            .collect();
        let extra = (0..self.entries.len())
            .filter(|&ei| !entry_used[ei] && !self.entries[ei].supportive)
            .collect();
        Fit {
            pairs,
            missing,
            extra,
            blocking,
        }
    }

    fn check(&self, c: &Component, d: &PlannedDrug) -> ComponentCheck {
        let tolerance = c
            .tolerance_percent
            .map_or(self.catalogue.dose_tolerance, |t| t / 100.0);
        let dose = match self.dose_ratio(c, d) {
            None => DoseCheck::Incomparable,
            Some(r) if r > 1.0 + tolerance + 1e-9 => DoseCheck::Above(r),
            Some(r) if r < 1.0 - tolerance - 1e-9 => DoseCheck::Below(r),
            Some(_) => DoseCheck::Within,
        };
        let cycles_within = match (c.cycles, d.cycles) {
            (CycleCount::Fixed(max), CycleCount::Fixed(n)) => n <= max,
            (CycleCount::Fixed(_), CycleCount::UntilProgression) => false,
            (CycleCount::UntilProgression, CycleCount::Fixed(n)) => {
                c.max_cycles.is_none_or(|m| n <= m)
            }
            (CycleCount::UntilProgression, CycleCount::UntilProgression) => true,
        };
        ComponentCheck {
            dose,
            days_match: c.days == d.days,
            cycle_length_match: c.cycle_length_days == d.cycle_length_days,
            cycles_within,
        }
    }

    /// Planned dose over expected dose, against the maintenance or the loading dose,
    /// whichever is nearer. `None` when the bases cannot be compared.
    fn dose_ratio(&self, c: &Component, d: &PlannedDrug) -> Option<f64> {
        let mut best: Option<f64> = None;
        for target in std::iter::once(c.dose).chain(c.loading_dose) {
            let r = self.ratio_to(c, target, d)?;
            if best.is_none_or(|b| (r - 1.0).abs() < (b - 1.0).abs()) {
                best = Some(r);
            }
        }
        best
    }

    fn ratio_to(&self, c: &Component, target: f64, d: &PlannedDrug) -> Option<f64> {
        let m = self.measures;
        if let Some(cap) = c.max_dose_mg
            && let Some(planned_mg) = d.basis.to_mg(d.dose, m)
        {
            // Without the measurements to size the dose, a flat order is judged
            // against the cap, the usual way such drugs are ordered.
            let expected_mg = c.basis.to_mg(target, m).map_or(cap, |e| e.min(cap));
            return Some(planned_mg / expected_mg);
        }
        if d.basis == c.basis {
            return Some(d.dose / target);
        }
        let planned_mg = d.basis.to_mg(d.dose, m)?;
        Some(c.basis.amount_for_mg(planned_mg, m)? / target)
    }

    fn no_situation_fits(&mut self) {
        let message = format!(
            "no {} pathway situation fits this plan's {}",
            self.cancer.name.to_lowercase(),
            describe_context(&self.ctx)
        );
        self.push(
            FindingCode::NoPathwayForSituation,
            Severity::Blocking,
            None,
            message,
            &[],
        );
    }

    fn situation_findings(&mut self, situation: &Situation, regimen: &Regimen) {
        let mut gaps = Vec::new();
        situation.check(&self.ctx, |criterion, kind| gaps.push((criterion, kind)));
        let refs = &situation.references;
        self.push(
            FindingCode::RegimenNotOnPathway,
            Severity::Blocking,
            Some(regimen.id.clone()),
            format!(
                "{} is on pathway for {}, which this plan does not fit",
                regimen.name,
                situation.name.to_lowercase()
            ),
            refs,
        );
        for (criterion, kind) in gaps {
            let expected = situation.expected(criterion);
            let (name, reported) = self.reported(situation, criterion);
            let (code, message) = match kind {
                GapKind::NotReported => (
                    FindingCode::InformationMissing,
                    format!("{name} was not reported; the pathway requires {expected}"),
                ),
                GapKind::Differs => (
                    match criterion {
                        Criterion::Stage => FindingCode::StageMismatch,
                        Criterion::Biomarker(_) => FindingCode::BiomarkerMismatch,
                        Criterion::Histology => FindingCode::HistologyMismatch,
                        Criterion::Line => FindingCode::LineOfTherapyMismatch,
                        Criterion::Intent => FindingCode::IntentMismatch,
                        Criterion::PerformanceStatus => FindingCode::PerformanceStatusOutOfRange,
                    },
                    format!("{name} is {reported}; {} requires {expected}", regimen.name),
                ),
            };
            self.push(code, Severity::Blocking, Some(name), message, refs);
        }
    }

    /// The criterion's name and the plan's value for it, for messages.
    fn reported(&self, situation: &Situation, criterion: Criterion) -> (String, String) {
        let ctx = &self.ctx;
        match criterion {
            Criterion::Stage => (
                "stage".into(),
                ctx.stage.map(ToString::to_string).unwrap_or_default(),
            ),
            Criterion::Biomarker(i) => {
                let req = &situation.biomarkers[i];
                let value = ctx
                    .biomarkers
                    .iter()
                    .find(|(k, _)| *k == req.key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                (req.name.clone(), value)
            }
            Criterion::Histology => (
                "histology".into(),
                ctx.histology.clone().unwrap_or_default(),
            ),
            Criterion::Line => (
                "line of therapy".into(),
                ctx.line.map(|l| l.as_str().to_owned()).unwrap_or_default(),
            ),
            Criterion::Intent => (
                "intent".into(),
                ctx.intent
                    .map(|i| i.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            Criterion::PerformanceStatus => (
                "performance status".into(),
                ctx.performance_status
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ),
        }
    }

    fn component_findings(&mut self, regimen: &Regimen, fit: &Fit) {
        let refs = &regimen.references;
        let catalogue = self.catalogue;
        for &ci in &fit.missing {
            let c = &regimen.components[ci];
            let name = &catalogue.drugs[c.drug_index].name;
            self.push(
                FindingCode::MissingComponent,
                Severity::Blocking,
                Some(c.drug_id.clone()),
                format!(
                    "{} includes {name} {} {} on days {} every {} days; the plan does not",
                    regimen.name,
                    num(c.dose),
                    c.basis,
                    c.days,
                    c.cycle_length_days
                ),
                refs,
            );
        }
        for &(ci, ei, check) in &fit.pairs {
            let c = &regimen.components[ci];
            let d = self.entries[ei].drug;
            let name = catalogue.drugs[c.drug_index].name.clone();
            let subject = Some(c.drug_id.clone());
            let tolerance = c
                .tolerance_percent
                .unwrap_or(catalogue.dose_tolerance * 100.0);
            let planned = format!("{name} {} {}", num(d.dose), d.basis);
            let expected = match c.loading_dose {
                Some(l) => format!("{} {} (loading {})", num(c.dose), c.basis, num(l)),
                None => format!("{} {}", num(c.dose), c.basis),
            };
            match check.dose {
                DoseCheck::Within => {}
                DoseCheck::Above(r) => self.push(
                    FindingCode::DoseAboveTolerance,
                    Severity::Blocking,
                    subject.clone(),
                    format!("{planned} is {}% above the regimen's {expected} (tolerance ±{}%)", num((r - 1.0) * 100.0), num(tolerance)),
                    refs,
                ),
                DoseCheck::Below(r) => self.push(
                    FindingCode::DoseBelowTolerance,
                    Severity::Advisory,
                    subject.clone(),
                    format!("{planned} is {}% below the regimen's {expected} (tolerance ±{}%)", num((1.0 - r) * 100.0), num(tolerance)),
                    refs,
                ),
                DoseCheck::Incomparable => self.push(
                    FindingCode::DoseBasisMismatch,
                    Severity::Blocking,
                    subject.clone(),
                    format!("{planned} cannot be compared with the regimen's {expected}; give the dose in {} or the patient's measurements", c.basis),
                    refs,
                ),
            }
            if !check.days_match {
                self.push(
                    FindingCode::ScheduleMismatch,
                    Severity::Blocking,
                    subject.clone(),
                    format!("{name} is planned on days {} of each cycle; the regimen gives it on days {}", d.days, c.days),
                    refs,
                );
            }
            if !check.cycle_length_match {
                self.push(
                    FindingCode::CycleLengthMismatch,
                    Severity::Blocking,
                    subject.clone(),
                    format!(
                        "{name} is planned every {} days; the regimen's cycle is {} days",
                        d.cycle_length_days, c.cycle_length_days
                    ),
                    refs,
                );
            }
            if !check.cycles_within {
                let limit = match (c.cycles, c.max_cycles) {
                    (CycleCount::UntilProgression, Some(m)) => {
                        format!("until progression, at most {m} cycles")
                    }
                    (cycles, _) => cycles.to_string(),
                };
                self.push(
                    FindingCode::CyclesExceedRegimen,
                    Severity::Blocking,
                    subject,
                    format!(
                        "{name} is planned for {}; the regimen gives {limit}",
                        d.cycles
                    ),
                    refs,
                );
            }
        }
        for &ei in &fit.extra {
            let d = self.entries[ei].drug;
            let name = display_name(catalogue, d);
            self.push(
                FindingCode::ExtraComponent,
                Severity::Blocking,
                Some(d.code.to_string()),
                format!("{name} ({}) is not part of {}", d.code, regimen.name),
                refs,
            );
        }
    }

    /// The catalogue classes of every supportive drug in the plan.
    fn supportive_classes(&self, fit: &Fit) -> Vec<usize> {
        let paired = |ei: usize| fit.pairs.iter().any(|(_, e, _)| *e == ei);
        let listed_as_drugs = self
            .entries
            .iter()
            .enumerate()
            .filter(|(ei, e)| e.supportive && !paired(*ei))
            .filter_map(|(_, e)| e.drug_index);
        let listed_as_supportive = self.plan.supportive.iter().filter_map(|d| {
            self.catalogue
                .index
                .drug_by_code
                .get(d.code.as_str())
                .copied()
        });
        let mut classes: Vec<usize> = Vec::new();
        for drug in listed_as_drugs.chain(listed_as_supportive) {
            for &c in &self.catalogue.index.classes_of_drug[drug] {
                if !classes.contains(&c) {
                    classes.push(c);
                }
            }
        }
        classes.sort_unstable();
        classes
    }

    fn supportive_findings(&mut self, regimen: &Regimen, fit: &Fit) -> SupportiveNeeds {
        let catalogue = self.catalogue;
        let planned: Vec<DoseOf<'_>> = fit
            .pairs
            .iter()
            .map(|&(ci, ei, _)| DoseOf {
                drug_id: &regimen.components[ci].drug_id,
                dose: self.entries[ei].drug.dose,
                basis: self.entries[ei].drug.basis,
            })
            .collect();
        let needs = needs(
            catalogue,
            regimen,
            &planned,
            &self.plan.patient,
            self.plan.context.performance_status,
        );
        let present = self.supportive_classes(fit);
        let class = |i: usize| &catalogue.classes[i];

        let rule = &catalogue.growth_factor;
        let has_growth_factor = present.iter().any(|&i| class(i).id == rule.class_id);
        let risk = regimen.febrile_neutropenia_risk;
        let gf = match (needs.growth_factor, has_growth_factor) {
            (GrowthFactorNeed::Required, false) => Some((
                FindingCode::GrowthFactorMissing,
                Severity::Blocking,
                format!(
                    "{} has {risk} febrile-neutropenia risk; primary growth-factor prophylaxis is expected and the plan has none",
                    regimen.name
                ),
            )),
            (GrowthFactorNeed::Recommended, false) => Some((
                FindingCode::GrowthFactorRecommended,
                Severity::Advisory,
                format!(
                    "{} has intermediate febrile-neutropenia risk and the patient has risk factors ({}); growth-factor prophylaxis is advised",
                    regimen.name,
                    needs.patient_risk.join(", ")
                ),
            )),
            (GrowthFactorNeed::NotRoutine, true) => Some((
                FindingCode::GrowthFactorNotIndicated,
                Severity::Advisory,
                format!(
                    "{} has intermediate febrile-neutropenia risk and no patient risk factor was reported; growth-factor prophylaxis is not routine",
                    regimen.name
                ),
            )),
            (GrowthFactorNeed::NotIndicated, true) => Some((
                FindingCode::GrowthFactorNotIndicated,
                Severity::Blocking,
                format!(
                    "{} has low febrile-neutropenia risk; primary growth-factor prophylaxis is not indicated",
                    regimen.name
                ),
            )),
            _ => None,
        };
        if let Some((code, severity, message)) = gf {
            self.push(
                code,
                severity,
                Some(rule.class_id.clone()),
                message,
                &rule.references,
            );
        }

        let antiemetics: Vec<&str> = present
            .iter()
            .map(|&i| class(i))
            .filter(|c| c.kind == SupportKind::Antiemetic)
            .map(|c| c.id.as_str())
            .collect();
        let refs = &catalogue.antiemetics.references;
        let class_name = |id: &str| {
            catalogue
                .classes
                .iter()
                .find(|c| c.id == id)
                .map_or(id.to_owned(), |c| c.name.clone())
        };
        let emetogenic = regimen.emetogenic_risk;
        let under_severity = if emetogenic >= EmetogenicRisk::Moderate {
            Severity::Blocking
        } else {
            Severity::Advisory
        };
        let level = match &needs.escalation {
            Some(reason) => format!("{emetogenic} emetogenic risk ({reason})"),
            None => format!("{emetogenic} emetogenic risk"),
        };
        let missing: Vec<String> = needs
            .antiemetics_required
            .iter()
            .filter(|c| !antiemetics.contains(&c.as_str()))
            .map(|c| class_name(c))
            .collect();
        if !missing.is_empty() {
            self.push(
                FindingCode::AntiemeticMissing,
                under_severity,
                Some(join(
                    needs
                        .antiemetics_required
                        .iter()
                        .filter(|c| !antiemetics.contains(&c.as_str()))
                        .cloned(),
                    ",",
                )),
                format!(
                    "{} has {level}; the plan lacks {}",
                    regimen.name,
                    missing.join(", ")
                ),
                refs,
            );
        }
        if !needs.antiemetics_any_of.is_empty()
            && !needs
                .antiemetics_any_of
                .iter()
                .any(|c| antiemetics.contains(&c.as_str()))
        {
            self.push(
                FindingCode::AntiemeticMissing,
                under_severity,
                Some(needs.antiemetics_any_of.join(",")),
                format!(
                    "{} has {level}; one of {} is expected",
                    regimen.name,
                    join(needs.antiemetics_any_of.iter().map(|c| class_name(c)), ", ")
                ),
                refs,
            );
        }
        let beyond: Vec<&str> = antiemetics
            .iter()
            .copied()
            .filter(|c| !needs.antiemetics_allowed.iter().any(|a| a == c))
            .collect();
        let too_many = needs
            .antiemetics_max_classes
            .is_some_and(|m| antiemetics.len() > usize::from(m));
        if !beyond.is_empty() || too_many {
            let what = if beyond.is_empty() {
                format!("{} antiemetic classes", antiemetics.len())
            } else {
                join(beyond.iter().map(|c| class_name(c)), ", ")
            };
            self.push(
                FindingCode::AntiemeticBeyondRisk,
                Severity::Advisory,
                Some(join(beyond.iter().map(|c| (*c).to_owned()), ",")),
                format!(
                    "{} has {level}; {what} goes beyond the prophylaxis it calls for",
                    regimen.name
                ),
                refs,
            );
        }
        needs
    }

    fn site_of_service(&mut self, regimen: &Regimen, fit: &Fit) -> Option<SiteSuggestion> {
        let catalogue = self.catalogue;
        let planned = self.plan.site_of_service?;
        if !regimen.has_infused_component() {
            return None;
        }
        let planned_cost = catalogue.site_cost(planned)?;
        let (suggested, suggested_cost) = regimen
            .sites
            .iter()
            .filter_map(|&s| catalogue.site_cost(s).map(|c| (s, c)))
            .filter(|(_, c)| *c < planned_cost)
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        let saving_per_cycle = (f64::from(regimen.cost_per_cycle_usd)
            * (planned_cost - suggested_cost))
            .round() as u32;
        // Counted over the longest fixed course among the infused drugs; open-ended
        // treatment has no total.
        let mut cycles = Some(0u16);
        for &(ci, ei, _) in &fit.pairs {
            if regimen.components[ci].route == crate::model::Route::Oral {
                continue;
            }
            cycles = match (cycles, self.entries[ei].drug.cycles) {
                (Some(max), CycleCount::Fixed(n)) => Some(max.max(n)),
                _ => None,
            };
        }
        let cycles = cycles.filter(|&n| n > 0);
        let estimated_saving_usd = cycles.map(|n| saving_per_cycle * u32::from(n));
        let message = match estimated_saving_usd {
            Some(total) => format!(
                "{} may be given at {suggested} instead of {planned}: about ${saving_per_cycle} less per cycle, ${total} over {} cycles",
                regimen.name,
                cycles.unwrap_or_default()
            ),
            None => format!(
                "{} may be given at {suggested} instead of {planned}: about ${saving_per_cycle} less per cycle",
                regimen.name
            ),
        };
        self.push(
            FindingCode::SiteOfServiceSaving,
            Severity::Advisory,
            Some(suggested.as_str().to_owned()),
            message,
            &catalogue.site_references,
        );
        Some(SiteSuggestion {
            planned,
            suggested,
            planned_relative_cost: planned_cost,
            suggested_relative_cost: suggested_cost,
            saving_per_cycle_usd: saving_per_cycle,
            cycles,
            estimated_saving_usd,
        })
    }
}

/// The reported context in a few words, for the no-situation message.
fn describe_context(ctx: &NormalisedContext<'_>) -> String {
    let mut parts = Vec::new();
    if let Some(s) = ctx.stage {
        parts.push(format!("stage {s}"));
    }
    for (k, v) in &ctx.biomarkers {
        parts.push(format!("{k} {v}"));
    }
    if let Some(h) = &ctx.histology {
        parts.push(format!("histology {h}"));
    }
    if let Some(l) = ctx.line {
        parts.push(format!("line {l}"));
    }
    if let Some(i) = ctx.intent {
        parts.push(format!("{i} intent"));
    }
    if let Some(p) = ctx.performance_status {
        parts.push(format!("ecog {p}"));
    }
    if parts.is_empty() {
        "situation (nothing reported)".into()
    } else {
        parts.join(", ")
    }
}

/// A number for messages: whole numbers without decimals, others to two places.
fn num(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(num(75.0), "75");
        assert_eq!(num(5.4), "5.4");
        assert_eq!(num(29.999999), "30");
        assert_eq!(num(25.925925), "25.93");
        assert_eq!(num(0.25), "0.25");
    }
}
