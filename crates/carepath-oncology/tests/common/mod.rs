//! Plan builders shared by the integration tests: a plan straight from a regimen and
//! its situation, with the supportive care the catalogue calls for, plus a few
//! hand-written plans.

#![allow(dead_code)]

use std::collections::BTreeMap;

use carepath_core::Icd10Code;
use carepath_oncology::{
    BiomarkerCondition, Catalogue, ClinicalContext, Component, CycleCount, DaySchedule, DoseBasis,
    DrugCode, GrowthFactorNeed, PatientFactors, PlannedDrug, Regimen, Route, Situation,
    TreatmentPlan,
};

/// A patient with every measurement conversion needs and no risk factors.
pub fn patient() -> PatientFactors {
    PatientFactors {
        age_years: Some(52),
        body_surface_area_m2: Some(1.8),
        weight_kg: Some(70.0),
        creatinine_clearance_ml_min: Some(95.0),
        risk_factors: Default::default(),
    }
}

/// A result that meets a biomarker condition.
pub fn meeting(condition: &BiomarkerCondition) -> String {
    match condition {
        BiomarkerCondition::Is(v) => v.clone(),
        BiomarkerCondition::AtLeast(t) => format!("{t}%"),
        BiomarkerCondition::Below(_) => "0%".into(),
    }
}

/// The context a situation's first listed values describe.
pub fn context_for(s: &Situation) -> ClinicalContext {
    ClinicalContext {
        stage_group: s.stage_groups.first().cloned(),
        biomarkers: s
            .biomarkers
            .iter()
            .map(|b| (b.name.clone(), meeting(&b.condition)))
            .collect::<BTreeMap<_, _>>(),
        histology: s.histologies.first().cloned(),
        line: s.lines.first().copied(),
        intent: Some(s.intent),
        performance_status: Some(s.performance_status.0),
    }
}

/// How a plan names a catalogue drug: its first HCPCS code when infused, its first
/// pharmacy code when oral.
pub fn code_for(catalogue: &Catalogue, drug_id: &str, route: Route) -> DrugCode {
    let drug = catalogue.drug(drug_id).unwrap();
    if route == Route::Oral || drug.hcpcs.is_empty() {
        DrugCode::Pharmacy(drug.pharmacy_codes[0].clone())
    } else {
        DrugCode::Hcpcs(drug.hcpcs[0].code.clone())
    }
}

/// A component as a provider would order it. Capped doses are written as the flat
/// milligrams the patient actually gets.
pub fn planned(catalogue: &Catalogue, c: &Component, p: &PatientFactors) -> PlannedDrug {
    let (dose, basis) = match (c.max_dose_mg, c.basis, p.body_surface_area_m2) {
        (Some(cap), DoseBasis::MgPerM2, Some(bsa)) => ((c.dose * bsa).min(cap), DoseBasis::Mg),
        _ => (c.dose, c.basis),
    };
    PlannedDrug {
        code: code_for(catalogue, &c.drug_id, c.route),
        name: None,
        dose,
        basis,
        days: c.days.clone(),
        cycle_length_days: c.cycle_length_days,
        cycles: c.cycles,
    }
}

fn supportive_drug(catalogue: &Catalogue, drug_id: &str, first: &Component) -> PlannedDrug {
    let drug = catalogue.drug(drug_id).unwrap();
    let typical = drug.typical_dose.unwrap();
    PlannedDrug {
        code: code_for(catalogue, drug_id, typical.route),
        name: None,
        dose: typical.dose,
        basis: typical.basis,
        days: DaySchedule::parse("1").unwrap(),
        cycle_length_days: first.cycle_length_days,
        cycles: first.cycles,
    }
}

fn first_drug_of(catalogue: &Catalogue, class_id: &str) -> String {
    let class = catalogue
        .drug_classes()
        .iter()
        .find(|c| c.id == class_id)
        .unwrap();
    class.drug_ids[0].clone()
}

/// The supportive care the catalogue calls for with this regimen and patient.
pub fn supportive_for(
    catalogue: &Catalogue,
    regimen: &Regimen,
    p: &PatientFactors,
    performance_status: Option<u8>,
) -> Vec<PlannedDrug> {
    let needs = catalogue
        .supportive_needs(&regimen.id, p, performance_status)
        .unwrap();
    let first = &regimen.components[0];
    let mut out = Vec::new();
    if matches!(
        needs.growth_factor,
        GrowthFactorNeed::Required | GrowthFactorNeed::Recommended
    ) {
        let class = &catalogue.growth_factor_rule().class_id;
        out.push(supportive_drug(
            catalogue,
            &first_drug_of(catalogue, class),
            first,
        ));
    }
    for class in &needs.antiemetics_required {
        out.push(supportive_drug(
            catalogue,
            &first_drug_of(catalogue, class),
            first,
        ));
    }
    if needs.antiemetics_required.is_empty()
        && let Some(class) = needs.antiemetics_any_of.first()
    {
        out.push(supportive_drug(
            catalogue,
            &first_drug_of(catalogue, class),
            first,
        ));
    }
    out
}

/// The cancer a situation belongs to.
pub fn cancer_of<'a>(
    catalogue: &'a Catalogue,
    situation_id: &str,
) -> &'a carepath_oncology::Cancer {
    catalogue
        .cancers()
        .iter()
        .find(|c| c.situations.iter().any(|s| s.id == situation_id))
        .unwrap()
}

/// A plan that is exactly `regimen` in `situation`, with its supportive care.
pub fn plan_for(catalogue: &Catalogue, situation: &Situation, regimen: &Regimen) -> TreatmentPlan {
    let cancer = cancer_of(catalogue, &situation.id);
    let p = patient();
    let context = context_for(situation);
    let supportive = supportive_for(catalogue, regimen, &p, context.performance_status);
    TreatmentPlan {
        diagnosis: cancer.icd10[0].from.clone(),
        cancer_id: None,
        drugs: regimen
            .components
            .iter()
            .map(|c| planned(catalogue, c, &p))
            .collect(),
        supportive,
        context,
        patient: p,
        site_of_service: regimen.sites.first().copied(),
    }
}

/// Every situation and regimen on pathway in it, in catalogue order.
pub fn all_pairs(catalogue: &Catalogue) -> Vec<(&Situation, &Regimen)> {
    let mut out = Vec::new();
    for cancer in catalogue.cancers() {
        for s in &cancer.situations {
            for id in &s.regimen_ids {
                out.push((s, catalogue.regimen(id).unwrap()));
            }
        }
    }
    out
}

/// A regimen's drugs, sorted, for comparing regimens by what they contain.
pub fn drug_set(regimen: &Regimen) -> Vec<String> {
    let mut ids: Vec<String> = regimen
        .components
        .iter()
        .map(|c| c.drug_id.clone())
        .collect();
    ids.sort();
    ids
}

/// The TCHP plan of the acceptance scenarios: HER2-positive stage II breast cancer,
/// neoadjuvant, at an office, with pegfilgrastim and four-drug antiemetic prophylaxis.
pub fn tchp_plan() -> TreatmentPlan {
    let json = r#"{
        "diagnosis": "C50.911",
        "context": {
            "stage_group": "IIA",
            "biomarkers": {"HER2": "positive", "ER": "negative", "HR": "negative"},
            "histology": "IDC",
            "line": "neoadjuvant",
            "intent": "curative",
            "performance_status": 0
        },
        "patient": {"age_years": 52, "body_surface_area_m2": 1.8, "weight_kg": 70,
                    "creatinine_clearance_ml_min": 95},
        "drugs": [
            {"code": "J9171", "dose": 75, "basis": "mg/m2", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 6}},
            {"code": "J9045", "dose": 6, "basis": "auc", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 6}},
            {"code": "J9355", "dose": 6, "basis": "mg/kg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 6}},
            {"code": "J9306", "dose": 420, "basis": "mg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 6}}
        ],
        "supportive": [
            {"code": "J2506", "dose": 6, "basis": "mg", "days": "2", "cycle_length_days": 21, "cycles": {"fixed": 6}},
            {"code": "J1453", "dose": 150, "basis": "mg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 6}},
            {"code": "J2469", "dose": 0.25, "basis": "mg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 6}},
            {"code": "J1100", "dose": 12, "basis": "mg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 6}},
            {"code": "olanzapine", "dose": 5, "basis": "mg", "days": "1-4", "cycle_length_days": 21, "cycles": {"fixed": 6}}
        ],
        "site_of_service": "office"
    }"#;
    serde_json::from_str(json).unwrap()
}

/// Carboplatin, pemetrexed and pembrolizumab first line for EGFR-mutant lung
/// adenocarcinoma: off pathway, osimertinib is.
pub fn egfr_chemo_plan() -> TreatmentPlan {
    let json = r#"{
        "diagnosis": "C34.11",
        "context": {
            "stage_group": "IVA",
            "biomarkers": {"EGFR": "exon 19 deletion", "ALK": "negative", "PD-L1": "10%"},
            "histology": "LUAD",
            "line": "first",
            "intent": "palliative",
            "performance_status": 1
        },
        "patient": {"age_years": 61, "body_surface_area_m2": 1.9, "weight_kg": 78,
                    "creatinine_clearance_ml_min": 80},
        "drugs": [
            {"code": "J9045", "dose": 5, "basis": "auc", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 4}},
            {"code": "J9305", "dose": 500, "basis": "mg/m2", "days": "1", "cycle_length_days": 21, "cycles": "until_progression"},
            {"code": "J9271", "dose": 200, "basis": "mg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 35}}
        ],
        "supportive": [
            {"code": "J1453", "dose": 150, "basis": "mg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 4}},
            {"code": "J2405", "dose": 8, "basis": "mg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 4}},
            {"code": "J1100", "dose": 12, "basis": "mg", "days": "1", "cycle_length_days": 21, "cycles": {"fixed": 4}}
        ],
        "site_of_service": "office"
    }"#;
    serde_json::from_str(json).unwrap()
}

pub fn icd(code: &str) -> Icd10Code {
    Icd10Code::parse(code).unwrap()
}

pub fn fixed(n: u16) -> CycleCount {
    CycleCount::Fixed(n)
}
