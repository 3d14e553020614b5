//! Fuzzes the pathway-catalogue loader: one input holds the catalogue's files (see
//! `carepath_fuzz::split_files`). It either loads to a catalogue whose numbers are all
//! usable and whose regimens, planned as written, evaluate; or it is rejected with
//! every problem explained.

#![no_main]

use std::collections::BTreeMap;

use carepath_core::Icd10Code;
use carepath_fuzz::{assert_explained, split_files};
use carepath_oncology::{
    BiomarkerCondition, Catalogue, ClinicalContext, DrugCode, PatientFactors, PlannedDrug, Route,
    Situation, TreatmentPlan, evaluate_plan, service_lines,
};
use libfuzzer_sys::fuzz_target;

/// Evaluates at most this many cancers per input, to keep runs fast.
const MAX_EVALUATED: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = split_files(text, "catalogue.toml");
    let catalogue = match Catalogue::from_toml_files(&files) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.problems.is_empty(), "rejected without a problem");
            assert_explained(&e.to_string(), text);
            for p in &e.problems {
                assert_explained(&p.message, text);
            }
            return;
        }
    };
    assert_numbers_usable(&catalogue);
    for cancer in catalogue.cancers().iter().take(MAX_EVALUATED) {
        let Some(situation) = cancer.situations.first() else {
            panic!("cancer {} loaded without a situation", cancer.id);
        };
        let plan = plan_for(&catalogue, &cancer.icd10[0].from, &cancer.id, situation);
        let evaluation = evaluate_plan(&catalogue, &plan)
            .unwrap_or_else(|e| panic!("a regimen as written is not a valid plan: {e}"));
        for f in &evaluation.findings {
            assert_explained(&f.message, text);
        }
        service_lines(&catalogue, &plan);
        catalogue.pathway(&cancer.id, &plan.context);
    }
});

/// Every number a review computes with must be finite, and divisors positive.
fn assert_numbers_usable(c: &Catalogue) {
    let tolerance = c.dose_tolerance();
    assert!(
        tolerance > 0.0 && tolerance < 1.0,
        "dose tolerance {tolerance}"
    );
    for s in c.site_costs() {
        assert!(
            s.relative_cost.is_finite() && s.relative_cost > 0.0,
            "{s:?}"
        );
    }
    for d in c.drugs() {
        for h in &d.hcpcs {
            assert!(h.unit_mg.is_finite() && h.unit_mg > 0.0, "{} {h:?}", d.id);
        }
        if let Some(t) = &d.typical_dose {
            assert!(t.dose.is_finite() && t.dose > 0.0, "{} {t:?}", d.id);
        }
    }
    for e in &c.antiemetic_rules().escalations {
        assert!(e.at_least.is_finite(), "escalation {e:?}");
    }
    for r in c.regimens() {
        for comp in &r.components {
            for v in [Some(comp.dose), comp.loading_dose, comp.max_dose_mg]
                .into_iter()
                .flatten()
            {
                assert!(v.is_finite() && v > 0.0, "{} {comp:?}", r.id);
            }
        }
    }
}

/// The situation's first regimen, planned exactly as written, for a patient in the
/// situation's first listed context.
fn plan_for(c: &Catalogue, diagnosis: &Icd10Code, cancer: &str, s: &Situation) -> TreatmentPlan {
    let regimen = c
        .regimen(&s.regimen_ids[0])
        .expect("a situation's regimens are in the catalogue");
    let drugs = regimen
        .components
        .iter()
        .map(|comp| {
            let drug = c.drug(&comp.drug_id).expect("a component's drug is known");
            let code = match drug.hcpcs.first() {
                Some(h) if comp.route != Route::Oral => DrugCode::Hcpcs(h.code.clone()),
                _ => DrugCode::Pharmacy(
                    drug.pharmacy_codes
                        .first()
                        .expect("an oral drug has a pharmacy code")
                        .clone(),
                ),
            };
            PlannedDrug {
                code,
                name: None,
                dose: comp.dose,
                basis: comp.basis,
                days: comp.days.clone(),
                cycle_length_days: comp.cycle_length_days,
                cycles: comp.cycles,
            }
        })
        .collect();
    let biomarkers = s
        .biomarkers
        .iter()
        .map(|b| {
            let value = match &b.condition {
                BiomarkerCondition::Is(v) => v.clone(),
                BiomarkerCondition::AtLeast(t) => format!("{t}%"),
                BiomarkerCondition::Below(_) => "0%".into(),
            };
            (b.name.clone(), value)
        })
        .collect::<BTreeMap<_, _>>();
    TreatmentPlan {
        diagnosis: diagnosis.clone(),
        cancer_id: Some(cancer.to_owned()),
        context: ClinicalContext {
            stage_group: s.stage_groups.first().cloned(),
            biomarkers,
            histology: s.histologies.first().cloned(),
            line: s.lines.first().copied(),
            intent: Some(s.intent),
            performance_status: Some(s.performance_status.0),
        },
        patient: PatientFactors {
            age_years: Some(52),
            body_surface_area_m2: Some(1.8),
            weight_kg: Some(70.0),
            creatinine_clearance_ml_min: Some(95.0),
            risk_factors: Default::default(),
        },
        drugs,
        supportive: Vec::new(),
        site_of_service: regimen.sites.first().copied(),
    }
}
