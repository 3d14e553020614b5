//! Adopting an on-pathway alternative: the same patient and situation with the
//! drugs of another regimen, written as a provider would order them, and the
//! supportive care the catalogue calls for with it.

use carepath_core::Invalid;

use crate::{
    Catalogue, Component, DaySchedule, DoseBasis, DrugCode, GrowthFactorNeed, PlannedDrug, Route,
    TreatmentPlan,
};

/// How a plan names a catalogue drug: its first HCPCS code when infused, its first
/// pharmacy id when taken by mouth.
fn code_for(catalogue: &Catalogue, drug_id: &str, route: Route) -> Option<DrugCode> {
    let drug = catalogue.drug(drug_id)?;
    if route == Route::Oral || drug.hcpcs.is_empty() {
        drug.pharmacy_codes.first().cloned().map(DrugCode::Pharmacy)
    } else {
        drug.hcpcs.first().map(|h| DrugCode::Hcpcs(h.code.clone()))
    }
}

/// A component as ordered; a capped per-m² dose is written as the flat milligrams
/// given when the body surface area is known.
fn planned(catalogue: &Catalogue, c: &Component, plan: &TreatmentPlan) -> Option<PlannedDrug> {
    let (dose, basis) = match (c.max_dose_mg, c.basis, plan.patient.body_surface_area_m2) {
        (Some(cap), DoseBasis::MgPerM2, Some(bsa)) => ((c.dose * bsa).min(cap), DoseBasis::Mg),
        _ => (c.dose, c.basis),
    };
    Some(PlannedDrug {
        code: code_for(catalogue, &c.drug_id, c.route)?,
        name: None,
        dose,
        basis,
        days: c.days.clone(),
        cycle_length_days: c.cycle_length_days,
        cycles: c.cycles,
    })
}

fn supportive_drug(
    catalogue: &Catalogue,
    class_id: &str,
    first: &Component,
) -> Option<PlannedDrug> {
    let class = catalogue.drug_classes().iter().find(|c| c.id == class_id)?;
    let drug_id = class.drug_ids.first()?;
    let typical = catalogue.drug(drug_id)?.typical_dose?;
    Some(PlannedDrug {
        code: code_for(catalogue, drug_id, typical.route)?,
        name: None,
        dose: typical.dose,
        basis: typical.basis,
        days: DaySchedule::parse("1").ok()?,
        cycle_length_days: first.cycle_length_days,
        cycles: first.cycles,
    })
}

/// `plan` with `regimen_id`'s drugs and the supportive care the regimen needs for this
/// patient; the situation, patient and site stay as they were (the site moves to the
/// regimen's first allowed site when the planned one is not allowed).
pub fn adopt_alternative(
    catalogue: &Catalogue,
    plan: &TreatmentPlan,
    regimen_id: &str,
) -> Result<TreatmentPlan, Invalid> {
    let regimen = catalogue.regimen(regimen_id).ok_or_else(|| {
        Invalid::field(
            "regimen_id",
            format!(
                "no regimen {regimen_id:?} in catalogue {}",
                catalogue.version()
            ),
        )
    })?;
    let drugs = regimen
        .components
        .iter()
        .map(|c| planned(catalogue, c, plan))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            Invalid::field(
                "regimen_id",
                "the regimen names a drug the catalogue cannot code",
            )
        })?;
    let mut supportive = Vec::new();
    if let (Some(needs), Some(first)) = (
        catalogue.supportive_needs(&regimen.id, &plan.patient, plan.context.performance_status),
        regimen.components.first(),
    ) {
        if matches!(
            needs.growth_factor,
            GrowthFactorNeed::Required | GrowthFactorNeed::Recommended
        ) {
            supportive.extend(supportive_drug(
                catalogue,
                &catalogue.growth_factor_rule().class_id,
                first,
            ));
        }
        for class in &needs.antiemetics_required {
            supportive.extend(supportive_drug(catalogue, class, first));
        }
        if needs.antiemetics_required.is_empty()
            && let Some(class) = needs.antiemetics_any_of.first()
        {
            supportive.extend(supportive_drug(catalogue, class, first));
        }
    }
    let site_of_service = match plan.site_of_service {
        Some(site) if regimen.sites.contains(&site) => Some(site),
        _ => regimen.sites.first().copied(),
    };
    Ok(TreatmentPlan {
        drugs,
        supportive,
        site_of_service,
        ..plan.clone()
    })
}
