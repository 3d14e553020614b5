//! Supportive care a regimen calls for: growth-factor prophylaxis from its
//! febrile-neutropenia risk and the patient's risk factors, and antiemetic classes from
//! its emetogenic risk. The rules are catalogue data; this module only applies them.

use serde::{Deserialize, Serialize};

use crate::catalogue::{Catalogue, Regimen};
use crate::model::{DoseBasis, EmetogenicRisk, FebrileNeutropeniaRisk};
use crate::plan::PatientFactors;

/// Whether primary growth-factor prophylaxis is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrowthFactorNeed {
    /// High febrile-neutropenia risk: prophylaxis is expected.
    Required,
    /// Intermediate risk with at least one patient risk factor: prophylaxis is advised.
    Recommended,
    /// Intermediate risk without risk factors: not routinely given.
    NotRoutine,
    /// Low risk: prophylaxis is not indicated.
    NotIndicated,
}

/// The supportive care one regimen calls for, for one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupportiveNeeds {
    pub febrile_neutropenia_risk: FebrileNeutropeniaRisk,
    pub growth_factor: GrowthFactorNeed,
    /// Why the patient counts as at risk (`age 70 (65 or over)`, `prior_chemotherapy_or_radiation`).
    pub patient_risk: Vec<String>,
    pub emetogenic_risk: EmetogenicRisk,
    /// Antiemetic classes all expected, escalations included.
    pub antiemetics_required: Vec<String>,
    /// At least one of these is expected, when not empty.
    pub antiemetics_any_of: Vec<String>,
    /// Every antiemetic class that is not over-use.
    pub antiemetics_allowed: Vec<String>,
    pub antiemetics_max_classes: Option<u8>,
    /// Why the antiemetic need was raised above the regimen's level, if it was.
    pub escalation: Option<String>,
}

/// A dose of one drug, for checking escalation rules against what is actually planned.
pub(crate) struct DoseOf<'a> {
    pub drug_id: &'a str,
    pub dose: f64,
    pub basis: DoseBasis,
}

impl Catalogue {
    /// The supportive care a regimen calls for at its own doses, for showing with the
    /// pathway or pre-filling an order. `None` for an unknown regimen.
    pub fn supportive_needs(
        &self,
        regimen_id: &str,
        patient: &PatientFactors,
        performance_status: Option<u8>,
    ) -> Option<SupportiveNeeds> {
        let regimen = self.regimen(regimen_id)?;
        Some(needs(self, regimen, &[], patient, performance_status))
    }
}

/// The needs of `regimen`, escalations judged on `planned` doses where the plan gives
/// the drug in the rule's basis and on the regimen's own doses otherwise.
pub(crate) fn needs(
    catalogue: &Catalogue,
    regimen: &Regimen,
    planned: &[DoseOf<'_>],
    patient: &PatientFactors,
    performance_status: Option<u8>,
) -> SupportiveNeeds {
    let rule = &catalogue.growth_factor;
    let mut patient_risk = Vec::new();
    if let Some(age) = patient.age_years
        && age >= rule.age_at_least
    {
        patient_risk.push(format!("age {age} ({} or over)", rule.age_at_least));
    }
    if let Some(ps) = performance_status
        && ps >= rule.performance_status_at_least
    {
        patient_risk.push(format!("ecog performance status {ps}"));
    }
    for factor in &patient.risk_factors {
        if rule.risk_factors.contains(factor) {
            patient_risk.push(factor.as_str().to_owned());
        }
    }
    let growth_factor = match regimen.febrile_neutropenia_risk {
        FebrileNeutropeniaRisk::High => GrowthFactorNeed::Required,
        FebrileNeutropeniaRisk::Intermediate if !patient_risk.is_empty() => {
            GrowthFactorNeed::Recommended
        }
        FebrileNeutropeniaRisk::Intermediate => GrowthFactorNeed::NotRoutine,
        FebrileNeutropeniaRisk::Low => GrowthFactorNeed::NotIndicated,
    };

    let level = catalogue.antiemetics.level(regimen.emetogenic_risk);
    let mut required = level.required.clone();
    let mut escalation = None;
    for esc in &catalogue.antiemetics.escalations {
        if esc.applies_to != regimen.emetogenic_risk {
            continue;
        }
        let from_plan = planned
            .iter()
            .find(|d| d.drug_id == esc.drug_id && d.basis == esc.basis)
            .map(|d| d.dose);
        let from_regimen = || {
            regimen
                .components
                .iter()
                .find(|c| c.drug_id == esc.drug_id && c.basis == esc.basis)
                .map(|c| c.dose)
        };
        let Some(dose) = from_plan.or_else(from_regimen) else {
            continue;
        };
        if dose >= esc.at_least {
            for class in &esc.add_required {
                if !required.contains(class) {
                    required.push(class.clone());
                }
            }
            escalation = Some(esc.reason.clone());
        }
    }
    let mut allowed = required.clone();
    for class in level.any_of.iter().chain(&level.also_allowed) {
        if !allowed.contains(class) {
            allowed.push(class.clone());
        }
    }
    SupportiveNeeds {
        febrile_neutropenia_risk: regimen.febrile_neutropenia_risk,
        growth_factor,
        patient_risk,
        emetogenic_risk: regimen.emetogenic_risk,
        antiemetics_required: required,
        antiemetics_any_of: level.any_of.clone(),
        antiemetics_allowed: allowed,
        antiemetics_max_classes: level.max_classes,
        escalation,
    }
}
