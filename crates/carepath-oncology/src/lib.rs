//! Oncology pathway review: a versioned catalogue of evidence-based pathways loaded from
//! data, and a pure evaluation of a whole treatment plan against it.
//!
//! The catalogue ([`Catalogue`]) holds cancers (by ICD-10-CM range and OncoTree code),
//! the clinical situations each covers (stage, biomarkers, histology, line of therapy,
//! intent, performance status), the on-pathway regimens for each situation in
//! preference order, the drugs with their billing codes, supportive-care rules and
//! site-of-service costs. [`evaluate_plan`] matches a plan to its situation and to the
//! nearest regimen, and returns every variance as a [`Finding`] with a stable code, a
//! severity and the references behind it; a plan on pathway with no open finding can
//! be approved at once ([`Evaluation::instant_approval`]).
//!
//! Invariants: nothing here performs I/O beyond parsing text it is handed, reads a
//! clock, or depends on storage or the wire protocol; the same catalogue and plan
//! always give the same evaluation. The shipped data (`data/oncology/`) is
//! illustrative and not clinical guidance.

mod alternative;
mod catalogue;
mod evaluate;
mod lines;
mod load;
mod model;
mod plan;
mod supportive;
pub mod synthetic;
mod versions;

pub use alternative::adopt_alternative;
pub use catalogue::{
    AntiemeticEscalation, AntiemeticLevel, AntiemeticRules, BiomarkerRequirement, Cancer,
    Catalogue, Component, Drug, DrugClass, GrowthFactorRule, HcpcsBilling, Icd10Range,
    PathwayOption, Regimen, SiteCost, Situation, SupportKind, TypicalDose,
};
pub use evaluate::{
    Alternative, Evaluation, Finding, FindingCode, RegimenMatch, Severity, SiteSuggestion,
    evaluate_plan,
};
pub use lines::{DrugRole, ServiceLine, service_lines};
pub use load::{CatalogueError, Problem};
pub use model::{
    Benefit, BiomarkerCondition, CycleCount, DaySchedule, DoseBasis, DrugCode, EmetogenicRisk,
    FebrileNeutropeniaRisk, Intent, LineOfTherapy, PharmacyCode, Route, SiteOfService, StageGroup,
    ValueError, canonical_biomarker,
};
pub use plan::{ClinicalContext, PatientFactors, PlannedDrug, RiskFactor, TreatmentPlan};
pub use supportive::{GrowthFactorNeed, SupportiveNeeds};
pub use versions::CatalogueSet;
