//! Walks the whole shipped catalogue: every regimen, planned exactly as written for its
//! own situation, is on pathway with nothing open; and every regimen's off-pathway
//! variants (extra drug, missing drug, dose 30% high, too many cycles, wrong
//! biomarker, wrong line) are found and named.

mod common;

use carepath_oncology::{
    BiomarkerCondition, Catalogue, CycleCount, Evaluation, FindingCode, LineOfTherapy, PlannedDrug,
    Regimen, Situation, TreatmentPlan, evaluate_plan,
};
use common::{all_pairs, cancer_of, drug_set, plan_for};
use proptest::prelude::*;

fn evaluate(catalogue: &Catalogue, plan: &TreatmentPlan) -> Evaluation {
    evaluate_plan(catalogue, plan).unwrap_or_else(|e| panic!("invalid plan: {e}"))
}

fn describe(e: &Evaluation) -> String {
    e.findings
        .iter()
        .map(|f| format!("{} ({}): {}", f.code, f.severity, f.message))
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[test]
fn shipped_catalogue_is_big_enough_and_labelled() {
    let catalogue = Catalogue::shipped();
    assert!(catalogue.cancers().len() >= 6);
    assert!(catalogue.regimens().len() >= 20);
    assert!(catalogue.notice().contains("Not clinical guidance"));
    for cancer in catalogue.cancers() {
        for s in &cancer.situations {
            // The wrong-biomarker walk below needs every situation to depend on one.
            assert!(!s.biomarkers.is_empty(), "{} has no biomarker", s.id);
        }
    }
}

#[test]
fn every_regimen_planned_as_written_is_on_pathway() {
    let catalogue = Catalogue::shipped();
    let pairs = all_pairs(&catalogue);
    assert!(pairs.len() >= 30);
    for (situation, regimen) in pairs {
        let plan = plan_for(&catalogue, situation, regimen);
        let e = evaluate(&catalogue, &plan);
        let label = format!("{} in {}:\n  {}", regimen.id, situation.id, describe(&e));
        assert!(e.on_pathway, "{label}");
        assert!(e.instant_approval(), "{label}");
        assert_eq!(e.open_findings().count(), 0, "{label}");
        let matched = e.matched.as_ref().unwrap();
        // A regimen listed in two situations may match under either; the drugs and
        // doses are what must match.
        assert_eq!(
            drug_set(catalogue.regimen(&matched.regimen_id).unwrap()),
            drug_set(regimen),
            "{label}"
        );
        assert!(e.situation_ids.contains(&situation.id), "{label}");
        assert_eq!(e.catalogue_version, catalogue.version());
    }
}

/// Regimens in the same cancer with the same drugs as `regimen`, and the situations
/// listing them: a variant must leave all of them to be off pathway.
fn twins<'a>(
    catalogue: &'a Catalogue,
    situation: &Situation,
    regimen: &Regimen,
) -> Vec<&'a Situation> {
    let set = drug_set(regimen);
    cancer_of(catalogue, &situation.id)
        .situations
        .iter()
        .filter(|s| {
            s.regimen_ids
                .iter()
                .any(|id| drug_set(catalogue.regimen(id).unwrap()) == set)
        })
        .collect()
}

fn some_regimen_has(catalogue: &Catalogue, mut drugs: Vec<String>) -> bool {
    drugs.sort();
    catalogue.regimens().iter().any(|r| drug_set(r) == drugs)
}

/// An anticancer drug not in the regimen whose addition makes no other regimen.
fn unrelated_drug(catalogue: &Catalogue, regimen: &Regimen) -> PlannedDrug {
    let supportive: Vec<&String> = catalogue
        .drug_classes()
        .iter()
        .flat_map(|c| &c.drug_ids)
        .collect();
    let in_regimen = drug_set(regimen);
    let drug = catalogue
        .drugs()
        .iter()
        .find(|d| {
            let mut with = in_regimen.clone();
            with.push(d.id.clone());
            !supportive.contains(&&d.id)
                && !in_regimen.contains(&d.id)
                && !some_regimen_has(catalogue, with)
        })
        .unwrap();
    let first = &regimen.components[0];
    PlannedDrug {
        code: common::code_for(catalogue, &drug.id, carepath_oncology::Route::Intravenous),
        name: None,
        dose: 100.0,
        basis: carepath_oncology::DoseBasis::Mg,
        days: first.days.clone(),
        cycle_length_days: first.cycle_length_days,
        cycles: first.cycles,
    }
}

fn assert_off(e: &Evaluation, code: FindingCode, label: &str) {
    let label = format!("{label}:\n  {}", describe(e));
    assert!(!e.on_pathway, "{label}");
    assert!(!e.instant_approval(), "{label}");
    assert!(e.has(code), "expected {code}; {label}");
    let finding = e.findings.iter().find(|f| f.code == code).unwrap();
    assert!(!finding.message.is_empty());
    assert!(
        e.open_findings().any(|f| f.code == code),
        "{code} should block; {label}"
    );
}

#[test]
fn extra_drug_is_named() {
    let catalogue = Catalogue::shipped();
    for (situation, regimen) in all_pairs(&catalogue) {
        let mut plan = plan_for(&catalogue, situation, regimen);
        let extra = unrelated_drug(&catalogue, regimen);
        let code = extra.code.to_string();
        plan.drugs.push(extra);
        let e = evaluate(&catalogue, &plan);
        assert_off(
            &e,
            FindingCode::ExtraComponent,
            &format!("{} + {code}", regimen.id),
        );
        let finding = e
            .findings
            .iter()
            .find(|f| f.code == FindingCode::ExtraComponent)
            .unwrap();
        assert_eq!(finding.subject.as_deref(), Some(code.as_str()));
    }
}

#[test]
fn missing_drug_is_named() {
    let catalogue = Catalogue::shipped();
    for (situation, regimen) in all_pairs(&catalogue) {
        let mut plan = plan_for(&catalogue, situation, regimen);
        let ids: Vec<String> = regimen
            .components
            .iter()
            .map(|c| c.drug_id.clone())
            .collect();
        let removed = if ids.len() == 1 {
            // A single-drug regimen without its drug: the plan gives something else.
            plan.drugs[0] = unrelated_drug(&catalogue, regimen);
            0
        } else {
            // From the last drug back: the backbone drugs come first in the data, and
            // removing one a sibling regimen shares leaves an unambiguous nearest.
            let i = (0..ids.len())
                .rev()
                .find(|&i| {
                    let mut rest = ids.clone();
                    rest.remove(i);
                    !some_regimen_has(&catalogue, rest)
                })
                .unwrap_or_else(|| panic!("{}: every removal is another regimen", regimen.id));
            plan.drugs.remove(i);
            i
        };
        let e = evaluate(&catalogue, &plan);
        let label = format!("{} without {}", regimen.id, ids[removed]);
        assert_off(&e, FindingCode::MissingComponent, &label);
        if ids.len() == 1 || e.matched.as_ref().unwrap().regimen_id != regimen.id {
            // Another regimen can be just as near (R-CHP is one drug from R-CHOP and
            // from Pola-R-CHP); it is then the one whose missing drug is named.
            continue;
        }
        assert!(
            e.findings
                .iter()
                .any(|f| f.code == FindingCode::MissingComponent
                    && f.subject.as_deref() == Some(ids[removed].as_str())),
            "{label}: {}",
            describe(&e)
        );
    }
}

#[test]
fn dose_thirty_percent_high_is_named() {
    let catalogue = Catalogue::shipped();
    for (situation, regimen) in all_pairs(&catalogue) {
        let mut plan = plan_for(&catalogue, situation, regimen);
        let i = regimen
            .components
            .iter()
            .position(|c| c.loading_dose.is_none())
            .unwrap();
        plan.drugs[i].dose *= 1.3;
        let e = evaluate(&catalogue, &plan);
        let label = format!(
            "{} with {} at 130%",
            regimen.id, regimen.components[i].drug_id
        );
        assert_off(&e, FindingCode::DoseAboveTolerance, &label);
    }
}

#[test]
fn too_many_cycles_are_named_wherever_the_regimen_has_a_limit() {
    let catalogue = Catalogue::shipped();
    let mut limited = 0;
    for (situation, regimen) in all_pairs(&catalogue) {
        let mut plan = plan_for(&catalogue, situation, regimen);
        let mut changed = false;
        for (d, c) in plan.drugs.iter_mut().zip(&regimen.components) {
            d.cycles = match (c.cycles, c.max_cycles) {
                (CycleCount::Fixed(n), _) => CycleCount::Fixed(n + 1),
                (CycleCount::UntilProgression, Some(max)) => CycleCount::Fixed(max + 1),
                (CycleCount::UntilProgression, None) => continue,
            };
            changed = true;
        }
        if !changed {
            // Open-ended regimens without a cap cannot be given for too long.
            assert!(
                regimen
                    .components
                    .iter()
                    .all(|c| c.cycles == CycleCount::UntilProgression)
            );
            continue;
        }
        limited += 1;
        let e = evaluate(&catalogue, &plan);
        assert_off(
            &e,
            FindingCode::CyclesExceedRegimen,
            &format!("{} with more cycles", regimen.id),
        );
    }
    assert!(limited >= 20, "only {limited} regimens have a cycle limit");
}

/// A result that fails `condition` and every twin situation's condition on the same
/// marker.
fn failing_value(twins: &[&Situation], key: &str) -> Option<String> {
    let candidates = [
        "negative", "positive", "mutated", "msi-h", "mss", "0%", "1-49%", "100%",
    ];
    candidates
        .iter()
        .find(|v| {
            twins.iter().all(|s| {
                s.biomarkers
                    .iter()
                    .find(|b| b.key == key)
                    .is_some_and(|b| !accepts(&b.condition, v))
            })
        })
        .map(|v| (*v).to_owned())
}

fn accepts(condition: &BiomarkerCondition, value: &str) -> bool {
    condition.accepts(value)
}

#[test]
fn wrong_biomarker_is_named() {
    let catalogue = Catalogue::shipped();
    for (situation, regimen) in all_pairs(&catalogue) {
        let twins = twins(&catalogue, situation, regimen);
        let (name, value) = situation
            .biomarkers
            .iter()
            .find_map(|b| failing_value(&twins, &b.key).map(|v| (b.name.clone(), v)))
            .unwrap_or_else(|| {
                panic!(
                    "{} in {}: no biomarker value takes it off pathway",
                    regimen.id, situation.id
                )
            });
        let mut plan = plan_for(&catalogue, situation, regimen);
        plan.context.biomarkers.insert(name.clone(), value.clone());
        let e = evaluate(&catalogue, &plan);
        let label = format!("{} in {} with {name} {value}", regimen.id, situation.id);
        assert_off(&e, FindingCode::BiomarkerMismatch, &label);
        assert_off(&e, FindingCode::RegimenNotOnPathway, &label);
    }
}

#[test]
fn wrong_line_is_named() {
    let catalogue = Catalogue::shipped();
    for (situation, regimen) in all_pairs(&catalogue) {
        let twins = twins(&catalogue, situation, regimen);
        let line = LineOfTherapy::ALL
            .iter()
            .copied()
            .find(|l| twins.iter().all(|s| !s.lines.contains(l)))
            .unwrap();
        let mut plan = plan_for(&catalogue, situation, regimen);
        plan.context.line = Some(line);
        let e = evaluate(&catalogue, &plan);
        let label = format!("{} in {} as {line} line", regimen.id, situation.id);
        assert_off(&e, FindingCode::LineOfTherapyMismatch, &label);
        assert_off(&e, FindingCode::RegimenNotOnPathway, &label);
    }
}

fn pair_strategy() -> impl Strategy<Value = usize> {
    let n = all_pairs(&Catalogue::shipped()).len();
    0..n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any regimen, with every dose anywhere within tolerance, any adult age, any
    /// performance status its situation allows and any site it may be given at, is on
    /// pathway with nothing open once the supportive care it calls for is added.
    #[test]
    fn on_pathway_within_tolerance(
        pair in pair_strategy(),
        factors in proptest::collection::vec(0.91f64..1.09, 8),
        age in 18u8..95,
        ps_step in 0u8..5,
        site_pick in 0usize..3,
    ) {
        let catalogue = Catalogue::shipped();
        let pairs = all_pairs(&catalogue);
        let (situation, regimen) = pairs[pair];
        let mut plan = plan_for(&catalogue, situation, regimen);
        let (lo, hi) = situation.performance_status;
        let ps = lo + ps_step % (hi - lo + 1);
        plan.context.performance_status = Some(ps);
        plan.patient.age_years = Some(age);
        plan.supportive = common::supportive_for(&catalogue, regimen, &plan.patient, Some(ps));
        for (d, f) in plan.drugs.iter_mut().zip(factors.iter().cycle()) {
            d.dose *= f;
        }
        if !regimen.sites.is_empty() {
            plan.site_of_service = Some(regimen.sites[site_pick % regimen.sites.len()]);
        }
        let e = evaluate(&catalogue, &plan);
        prop_assert!(e.on_pathway, "{} in {}:\n  {}", regimen.id, situation.id, describe(&e));
        prop_assert!(e.instant_approval(), "{} in {}:\n  {}", regimen.id, situation.id, describe(&e));
    }
}
