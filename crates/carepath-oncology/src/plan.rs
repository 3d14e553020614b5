//! A treatment plan as a provider submits it: the diagnosis and clinical situation,
//! the patient factors supportive care depends on, every drug with its dose and
//! schedule, and where the infusions will be given.
//!
//! Doses are stated per dosing day with their basis (mg/m², mg/kg, AUC, flat mg), the
//! way orders are written; the evaluation compares like with like and converts only
//! when the bases differ and the patient's measurements allow it.

use std::collections::{BTreeMap, BTreeSet};

use carepath_core::{Icd10Code, Invalid};
use serde::{Deserialize, Serialize};

use crate::model::{
    CycleCount, DaySchedule, DoseBasis, DrugCode, Intent, LineOfTherapy, Measures, SiteOfService,
    StageGroup, named_enum,
};

/// The clinical situation a plan is for. Also used, partly filled, as a filter when
/// listing pathways.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicalContext {
    #[serde(default)]
    pub stage_group: Option<StageGroup>,
    /// Biomarker name to result (`HER2` → `positive`, `PD-L1` → `≥50%`). Names match
    /// ignoring case and punctuation; results go through the catalogue's aliases.
    #[serde(default)]
    pub biomarkers: BTreeMap<String, String>,
    /// OncoTree histology code (`LUAD`).
    #[serde(default)]
    pub histology: Option<String>,
    #[serde(default)]
    pub line: Option<LineOfTherapy>,
    #[serde(default)]
    pub intent: Option<Intent>,
    /// ECOG performance status, 0 to 4.
    #[serde(default)]
    pub performance_status: Option<u8>,
}

/// Patient factors that raise febrile-neutropenia risk (ASCO's list, age aside, which
/// is read from [`PatientFactors::age_years`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RiskFactor {
    AdvancedDisease,
    PriorChemotherapyOrRadiation,
    CytopeniaOrMarrowInvolvement,
    ActiveInfection,
    OpenWoundOrRecentSurgery,
    PoorPerformanceStatus,
    RenalDysfunction,
    LiverDysfunction,
    PoorNutritionalStatus,
}

named_enum!(RiskFactor, "risk factor", {
    AdvancedDisease => "advanced_disease",
    PriorChemotherapyOrRadiation => "prior_chemotherapy_or_radiation",
    CytopeniaOrMarrowInvolvement => "cytopenia_or_marrow_involvement",
    ActiveInfection => "active_infection",
    OpenWoundOrRecentSurgery => "open_wound_or_recent_surgery",
    PoorPerformanceStatus => "poor_performance_status",
    RenalDysfunction => "renal_dysfunction",
    LiverDysfunction => "liver_dysfunction",
    PoorNutritionalStatus => "poor_nutritional_status",
});

/// What the evaluation needs to know about the patient beyond the situation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientFactors {
    #[serde(default)]
    pub age_years: Option<u8>,
    /// Converts mg/m² to mg for billing units and for plans written in another basis.
    #[serde(default)]
    pub body_surface_area_m2: Option<f64>,
    #[serde(default)]
    pub weight_kg: Option<f64>,
    /// For carboplatin's Calvert formula.
    #[serde(default)]
    pub creatinine_clearance_ml_min: Option<f64>,
    #[serde(default)]
    pub risk_factors: BTreeSet<RiskFactor>,
}

impl PatientFactors {
    pub(crate) fn measures(&self) -> Measures {
        Measures {
            bsa_m2: self.body_surface_area_m2,
            weight_kg: self.weight_kg,
            creatinine_clearance_ml_min: self.creatinine_clearance_ml_min,
        }
    }
}

/// One drug in the plan with its dose and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedDrug {
    /// HCPCS code for infused drugs, pharmacy id for oral ones.
    pub code: DrugCode,
    /// The name the provider used, for messages about drugs the catalogue lacks.
    #[serde(default)]
    pub name: Option<String>,
    /// Per dosing day, in `basis`.
    pub dose: f64,
    pub basis: DoseBasis,
    pub days: DaySchedule,
    pub cycle_length_days: u16,
    pub cycles: CycleCount,
}

/// A whole treatment plan for one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreatmentPlan {
    pub diagnosis: Icd10Code,
    /// Names the catalogue cancer directly, when the diagnosis code alone does not
    /// decide it.
    #[serde(default)]
    pub cancer_id: Option<String>,
    #[serde(default)]
    pub context: ClinicalContext,
    #[serde(default)]
    pub patient: PatientFactors,
    /// Anticancer drugs. A drug listed here that the catalogue classes as supportive
    /// care (an antiemetic, a growth factor) and that the regimen does not contain is
    /// read as supportive care.
    pub drugs: Vec<PlannedDrug>,
    #[serde(default)]
    pub supportive: Vec<PlannedDrug>,
    /// Where infused drugs will be given; `None` for all-oral plans.
    #[serde(default)]
    pub site_of_service: Option<SiteOfService>,
}

impl TreatmentPlan {
    /// Checks the numbers a request can get wrong, collecting every problem with the
    /// offending field named. Shapes (codes, bases, schedules) were checked when the
    /// plan was built.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        if let Some(id) = &self.cancer_id
            && id.trim().is_empty()
        {
            invalid.push("cancer_id", "must not be empty when given");
        }
        if let Some(ps) = self.context.performance_status
            && ps > 4
        {
            invalid.push(
                "context.performance_status",
                "ecog performance status must be 0 to 4",
            );
        }
        let p = &self.patient;
        if let Some(age) = p.age_years
            && age > 125
        {
            invalid.push("patient.age_years", "must be at most 125");
        }
        for (field, value, max) in [
            ("patient.body_surface_area_m2", p.body_surface_area_m2, 4.0),
            ("patient.weight_kg", p.weight_kg, 400.0),
            (
                "patient.creatinine_clearance_ml_min",
                p.creatinine_clearance_ml_min,
                400.0,
            ),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0 && v <= max)
            {
                invalid.push(field, format!("must be more than 0 and at most {max}"));
            }
        }
        if self.drugs.is_empty() {
            invalid.push("drugs", "a plan must list at least one drug");
        }
        for (list, drugs) in [("drugs", &self.drugs), ("supportive", &self.supportive)] {
            for (i, d) in drugs.iter().enumerate() {
                let field = |name: &str| format!("{list}[{i}].{name}");
                if !(d.dose.is_finite() && d.dose > 0.0) {
                    invalid.push(field("dose"), "must be a positive number");
                }
                if d.cycle_length_days == 0 {
                    invalid.push(field("cycle_length_days"), "must be at least 1");
                } else if d.days.last() > d.cycle_length_days {
                    invalid.push(
                        field("days"),
                        format!(
                            "day {} falls outside a {}-day cycle",
                            d.days.last(),
                            d.cycle_length_days
                        ),
                    );
                }
                if d.cycles == CycleCount::Fixed(0) {
                    invalid.push(field("cycles"), "must be at least 1");
                }
            }
        }
        invalid.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drug(dose: f64) -> PlannedDrug {
        PlannedDrug {
            code: DrugCode::parse("J9171").unwrap(),
            name: None,
            dose,
            basis: DoseBasis::MgPerM2,
            days: DaySchedule::parse("1").unwrap(),
            cycle_length_days: 21,
            cycles: CycleCount::Fixed(6),
        }
    }

    #[test]
    fn validation_names_every_bad_field() {
        let mut bad = drug(-1.0);
        bad.days = DaySchedule::parse("22").unwrap();
        bad.cycles = CycleCount::Fixed(0);
        let plan = TreatmentPlan {
            diagnosis: Icd10Code::parse("C50.911").unwrap(),
            cancer_id: None,
            context: ClinicalContext {
                performance_status: Some(5),
                ..Default::default()
            },
            patient: PatientFactors {
                body_surface_area_m2: Some(0.0),
                ..Default::default()
            },
            drugs: vec![drug(75.0), bad],
            supportive: vec![],
            site_of_service: None,
        };
        let err = plan.validate().unwrap_err();
        let fields: Vec<_> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "context.performance_status",
                "patient.body_surface_area_m2",
                "drugs[1].dose",
                "drugs[1].days",
                "drugs[1].cycles"
            ]
        );
    }

    #[test]
    fn plans_read_from_json() {
        let json = r#"{
            "diagnosis": "C50.911",
            "context": {"biomarkers": {"HER2": "positive"}, "line": "neoadjuvant", "intent": "curative"},
            "drugs": [{"code": "J9171", "dose": 75, "basis": "mg/m2", "days": "1",
                       "cycle_length_days": 21, "cycles": {"fixed": 6}},
                      {"code": "osimertinib", "dose": 80, "basis": "mg", "days": "1-28",
                       "cycle_length_days": 28, "cycles": "until_progression"}],
            "site_of_service": "office"
        }"#;
        let plan: TreatmentPlan = serde_json::from_str(json).unwrap();
        assert_eq!(plan.drugs[1].cycles, CycleCount::UntilProgression);
        assert_eq!(plan.context.line, Some(LineOfTherapy::Neoadjuvant));
        assert!(plan.validate().is_ok());
    }
}
