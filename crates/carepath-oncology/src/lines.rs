//! The service lines a plan becomes on a precertification case: one per planned drug,
//! infused drugs as HCPCS lines with billing units under the medical benefit, oral
//! drugs under the pharmacy benefit.

use serde::{Deserialize, Serialize};

use crate::catalogue::Catalogue;
use crate::model::{Benefit, CycleCount, DoseBasis, DrugCode, named_enum};
use crate::plan::{PlannedDrug, TreatmentPlan};

/// Whether a line treats the cancer or supports the patient through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrugRole {
    Anticancer,
    Supportive,
}

named_enum!(DrugRole, "drug role", {
    Anticancer => "anticancer",
    Supportive => "supportive",
});

/// One line of a precertification case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceLine {
    pub benefit: Benefit,
    pub code: DrugCode,
    /// The catalogue drug the code names, if the catalogue knows it.
    pub drug_id: Option<String>,
    pub drug_name: String,
    pub role: DrugRole,
    pub dose: f64,
    pub basis: DoseBasis,
    /// The dose in mg, when the basis and the patient's measurements allow it.
    pub dose_mg: Option<f64>,
    /// HCPCS billing units for one administration (dose over the code's unit, rounded
    /// up); medical-benefit lines with a known dose only.
    pub units_per_administration: Option<u32>,
    pub administrations_per_cycle: u16,
    pub cycle_length_days: u16,
    pub cycles: CycleCount,
    /// Units for the whole authorization, when the number of cycles is fixed.
    pub total_units: Option<u32>,
}

/// HCPCS for an oral anticancer drug not otherwise specified: how oral lines appear on
/// the precertification case (the pharmacy id stays on the plan).
pub const ORAL_ANTICANCER: &str = "J8999";
/// HCPCS for an oral non-chemotherapy drug not otherwise specified.
pub const ORAL_SUPPORTIVE: &str = "J8499";

impl ServiceLine {
    /// The precertification code the line is billed under: its HCPCS code, or for a
    /// pharmacy drug the not-otherwise-specified oral code of its role.
    pub fn precert_code(&self) -> String {
        match (&self.code, self.role) {
            (DrugCode::Hcpcs(code), _) => code.to_string(),
            (_, DrugRole::Anticancer) => ORAL_ANTICANCER.to_owned(),
            _ => ORAL_SUPPORTIVE.to_owned(),
        }
    }

    /// The units the precertification case asks for: the whole authorization when
    /// the number of cycles is fixed, otherwise one cycle (at least one unit).
    pub fn precert_units(&self) -> u32 {
        // An absurd dose saturates (and fails the plan's checks) rather than overflowing.
        let per_cycle = self
            .units_per_administration
            .unwrap_or(1)
            .saturating_mul(u32::from(self.administrations_per_cycle.max(1)));
        self.total_units.unwrap_or(per_cycle).max(1)
    }
}

/// The service lines for a plan, drugs first and supportive care after, each in plan
/// order. Pure: the same plan always gives the same lines.
pub fn service_lines(catalogue: &Catalogue, plan: &TreatmentPlan) -> Vec<ServiceLine> {
    let measures = plan.patient.measures();
    let entries = plan
        .drugs
        .iter()
        .map(|d| (d, DrugRole::Anticancer))
        .chain(plan.supportive.iter().map(|d| (d, DrugRole::Supportive)));
    entries
        .map(|(d, listed_as)| {
            let drug_index = catalogue.index.drug_by_code.get(d.code.as_str()).copied();
            let role = match drug_index {
                Some(i) if is_supportive_only(catalogue, i) => DrugRole::Supportive,
                _ => listed_as,
            };
            let drug = drug_index.map(|i| &catalogue.drugs[i]);
            let dose_mg = d.basis.to_mg(d.dose, measures);
            let unit_mg = match &d.code {
                DrugCode::Hcpcs(code) => drug
                    .and_then(|drug| drug.hcpcs.iter().find(|h| &h.code == code))
                    .map(|h| h.unit_mg),
                DrugCode::Pharmacy(_) => None,
            };
            let units_per_administration = match (dose_mg, unit_mg) {
                (Some(mg), Some(unit)) => Some(billing_units(mg, unit)),
                _ => None,
            };
            // Saturating, as `billing_units` is: an absurd dose (or a billing unit of
            // a few picograms) gives an absurd count for review to question, not an
            // overflow.
            let total_units = match (units_per_administration, d.cycles) {
                (Some(u), CycleCount::Fixed(n)) => Some(
                    u.saturating_mul(u32::from(d.days.count()))
                        .saturating_mul(u32::from(n)),
                ),
                _ => None,
            };
            ServiceLine {
                benefit: d.code.benefit(),
                code: d.code.clone(),
                drug_id: drug.map(|d| d.id.clone()),
                drug_name: display_name(catalogue, d),
                role,
                dose: d.dose,
                basis: d.basis,
                dose_mg,
                units_per_administration,
                administrations_per_cycle: d.days.count(),
                cycle_length_days: d.cycle_length_days,
                cycles: d.cycles,
                total_units,
            }
        })
        .collect()
}

/// Whether a drug is only ever supportive care: in a supportive class and in no
/// regimen. Such a drug listed among the anticancer drugs is read as supportive care.
pub(crate) fn is_supportive_only(catalogue: &Catalogue, drug_index: usize) -> bool {
    !catalogue.index.classes_of_drug[drug_index].is_empty()
        && !catalogue.index.drug_in_regimens[drug_index]
}

/// The catalogue's name for a planned drug, else the name the plan gave, else its code.
pub(crate) fn display_name(catalogue: &Catalogue, d: &PlannedDrug) -> String {
    match catalogue.drug_for_code(&d.code) {
        Some(drug) => drug.name.clone(),
        None => d.name.clone().unwrap_or_else(|| d.code.to_string()),
    }
}

/// Units billed for `mg` when one unit is `unit_mg`: rounded up, since a partial unit
/// is billed whole, with a little slack so 150 mg of a 50 mg unit is 3, not 4.
fn billing_units(mg: f64, unit_mg: f64) -> u32 {
    let units = (mg / unit_mg - 1e-6).ceil();
    if units < 1.0 { 1 } else { units as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_doses_saturate_instead_of_overflowing() {
        let plan = TreatmentPlan {
            diagnosis: carepath_core::Icd10Code::parse("C50.911").unwrap(),
            cancer_id: None,
            context: Default::default(),
            patient: Default::default(),
            drugs: vec![PlannedDrug {
                code: DrugCode::parse("J9171").unwrap(),
                name: None,
                dose: 1e12,
                basis: DoseBasis::Mg,
                days: crate::model::DaySchedule::parse("1,8,15").unwrap(),
                cycle_length_days: 21,
                cycles: CycleCount::Fixed(6),
            }],
            supportive: vec![],
            site_of_service: None,
        };
        let lines = service_lines(&Catalogue::shipped(), &plan);
        assert_eq!(lines[0].units_per_administration, Some(u32::MAX));
        assert_eq!(lines[0].total_units, Some(u32::MAX));
    }

    #[test]
    fn billing_units_round_up() {
        assert_eq!(billing_units(150.0, 50.0), 3);
        assert_eq!(billing_units(151.0, 50.0), 4);
        assert_eq!(billing_units(0.2, 1.0), 1);
        assert_eq!(billing_units(6.0, 0.5), 12);
        assert_eq!(billing_units(0.25, 0.025), 10);
    }
}
