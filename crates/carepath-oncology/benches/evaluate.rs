//! Times `evaluate_plan` on the shipped catalogue and on one 100 times larger, for an
//! on-pathway plan (TCHP) and an off-pathway one (chemotherapy for EGFR-mutant lung
//! cancer, which ranks every regimen of the cancer to explain itself).
//!
//! Run with `cargo bench -p carepath-oncology`; the target is under 20 µs per plan on
//! the shipped catalogue. Figures are recorded in this crate's README.

use std::hint::black_box;

use carepath_oncology::{Catalogue, TreatmentPlan, evaluate_plan, synthetic::scaled_catalogue};
use criterion::{Criterion, criterion_group, criterion_main};

fn plan(json: &str) -> TreatmentPlan {
    serde_json::from_str(json).expect("benchmark plan parses")
}

const TCHP: &str = r#"{
    "diagnosis": "C50.911",
    "context": {"stage_group": "IIA", "biomarkers": {"HER2": "positive", "HR": "negative"},
                "line": "neoadjuvant", "intent": "curative", "performance_status": 0},
    "patient": {"age_years": 52, "body_surface_area_m2": 1.8, "weight_kg": 70, "creatinine_clearance_ml_min": 95},
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
    "site_of_service": "hospital_outpatient"
}"#;

const EGFR_CHEMO: &str = r#"{
    "diagnosis": "C34.11",
    "context": {"stage_group": "IVA", "biomarkers": {"EGFR": "L858R", "ALK": "negative"},
                "histology": "LUAD", "line": "first", "intent": "palliative", "performance_status": 1},
    "patient": {"age_years": 61, "body_surface_area_m2": 1.9, "weight_kg": 78, "creatinine_clearance_ml_min": 80},
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

fn bench(c: &mut Criterion) {
    let shipped = Catalogue::shipped();
    let large = scaled_catalogue(&shipped, 100);
    let plans = [
        ("tchp_on_pathway", plan(TCHP)),
        ("egfr_chemo_off_pathway", plan(EGFR_CHEMO)),
    ];
    let mut group = c.benchmark_group("evaluate_plan");
    for (catalogue_name, catalogue) in [("shipped", &shipped), ("shipped_x100", &large)] {
        for (plan_name, plan) in &plans {
            group.bench_function(format!("{catalogue_name}/{plan_name}"), |b| {
                b.iter(|| evaluate_plan(black_box(catalogue), black_box(plan)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
