//! Review scenarios a provider or reviewer would recognise, each checked end to end:
//! TCHP at an office and at a hospital, supportive care under- and over-use, an
//! off-pathway lung plan, precertification lines, and determinism.

mod common;

use carepath_oncology::{
    Benefit, Catalogue, ClinicalContext, CycleCount, DoseBasis, DrugCode, DrugRole, Evaluation,
    FindingCode, PlannedDrug, RiskFactor, Severity, SiteOfService, TreatmentPlan, evaluate_plan,
    service_lines,
};
use common::{egfr_chemo_plan, icd, plan_for, tchp_plan};

fn evaluate(plan: &TreatmentPlan) -> Evaluation {
    evaluate_plan(&Catalogue::shipped(), plan).unwrap()
}

fn codes(e: &Evaluation) -> Vec<&'static str> {
    e.findings.iter().map(|f| f.code.as_str()).collect()
}

fn without(plan: &mut Vec<PlannedDrug>, code: &str) {
    plan.retain(|d| d.code.as_str() != code);
}

#[test]
fn tchp_at_an_office_with_full_supportive_care_is_approved_at_once() {
    let e = evaluate(&tchp_plan());
    assert!(e.on_pathway, "{:?}", codes(&e));
    assert!(e.instant_approval());
    assert_eq!(codes(&e), Vec::<&str>::new());
    let m = e.matched.as_ref().unwrap();
    assert_eq!(
        (m.regimen_id.as_str(), m.situation_id.as_str()),
        ("tchp", "breast-her2-early")
    );
    assert!(m.situation_fits && m.components_match);
    assert_eq!(e.cancer_id.as_deref(), Some("breast"));
    assert_eq!(e.catalogue_version, "2026.1-illustrative");
    // The situation's other regimen is still offered.
    let alternatives: Vec<_> = e
        .alternatives
        .iter()
        .map(|a| a.regimen_id.as_str())
        .collect();
    assert_eq!(alternatives, ["ac-thp"]);
    assert!(e.site_of_service.is_none());
}

#[test]
fn tchp_without_growth_factor_is_held_for_review() {
    let mut plan = tchp_plan();
    without(&mut plan.supportive, "J2506");
    let e = evaluate(&plan);
    assert!(e.on_pathway);
    assert!(!e.instant_approval());
    assert_eq!(codes(&e), ["growth_factor_missing"]);
    let f = &e.findings[0];
    assert_eq!(f.severity, Severity::Blocking);
    assert!(
        f.message.contains("high febrile-neutropenia risk"),
        "{}",
        f.message
    );
    assert!(!f.references.is_empty());
}

#[test]
fn tchp_at_hospital_outpatient_suggests_the_office_with_a_saving() {
    let mut plan = tchp_plan();
    plan.site_of_service = Some(SiteOfService::HospitalOutpatient);
    let e = evaluate(&plan);
    assert!(e.instant_approval(), "site of service is advisory");
    assert_eq!(codes(&e), ["site_of_service_saving"]);
    assert_eq!(e.findings[0].severity, Severity::Advisory);
    let s = e.site_of_service.as_ref().unwrap();
    assert_eq!(s.planned, SiteOfService::HospitalOutpatient);
    assert_eq!(s.suggested, SiteOfService::Office);
    // 16,000 a cycle at 1.0 against 0.72: 4,480 a cycle over 6 cycles.
    assert_eq!(s.saving_per_cycle_usd, 4480);
    assert_eq!(s.cycles, Some(6));
    assert_eq!(s.estimated_saving_usd, Some(26880));
    assert!(
        e.findings[0].message.contains("$26880"),
        "{}",
        e.findings[0].message
    );
}

#[test]
fn home_infusion_is_suggested_where_the_regimen_allows_it() {
    let catalogue = Catalogue::shipped();
    let cancer = catalogue.cancer("nsclc").unwrap();
    let situation = cancer
        .situations
        .iter()
        .find(|s| s.id == "nsclc-pdl1-high-first")
        .unwrap();
    let mut plan = plan_for(
        &catalogue,
        situation,
        catalogue.regimen("pembrolizumab-q3w").unwrap(),
    );
    plan.site_of_service = Some(SiteOfService::HospitalOutpatient);
    let e = evaluate_plan(&catalogue, &plan).unwrap();
    let s = e.site_of_service.unwrap();
    assert_eq!(s.suggested, SiteOfService::HomeInfusion);
    assert_eq!(s.saving_per_cycle_usd, 3850);
    assert_eq!(
        s.estimated_saving_usd, None,
        "open-ended treatment has no total"
    );
}

#[test]
fn egfr_mutant_lung_cancer_on_chemotherapy_is_off_pathway_with_osimertinib_offered_first() {
    let e = evaluate(&egfr_chemo_plan());
    assert!(!e.on_pathway);
    assert!(!e.instant_approval());
    assert_eq!(codes(&e), ["regimen_not_on_pathway", "biomarker_mismatch"]);
    let m = e.matched.as_ref().unwrap();
    assert_eq!(m.regimen_id, "carbo-pem-pembro");
    assert!(!m.situation_fits && m.components_match);
    assert!(
        e.findings[1].message.contains("EGFR is mutated"),
        "{}",
        e.findings[1].message
    );
    assert_eq!(e.situation_ids, ["nsclc-egfr-metastatic-first"]);
    assert_eq!(e.alternatives[0].regimen_id, "osimertinib");
    assert_eq!(e.alternatives[0].preference, 1);
}

#[test]
fn a_biosimilar_is_the_same_drug() {
    let mut plan = tchp_plan();
    plan.drugs[2].code = DrugCode::parse("Q5116").unwrap();
    assert!(evaluate(&plan).instant_approval());
}

#[test]
fn doses_in_another_basis_convert_when_the_patient_is_measured() {
    // Carboplatin AUC 6 with clearance 95 is 6 × (95 + 25) = 720 mg.
    let mut plan = tchp_plan();
    plan.drugs[1].dose = 720.0;
    plan.drugs[1].basis = DoseBasis::Mg;
    assert!(evaluate(&plan).instant_approval());

    plan.patient.creatinine_clearance_ml_min = None;
    let e = evaluate(&plan);
    assert_eq!(codes(&e), ["dose_basis_mismatch"]);
    assert!(!e.on_pathway);
}

#[test]
fn reduced_dose_is_advisory_and_raised_dose_blocks() {
    let mut plan = tchp_plan();
    plan.drugs[0].dose = 60.0;
    let e = evaluate(&plan);
    assert_eq!(codes(&e), ["dose_below_tolerance"]);
    assert!(e.instant_approval());
    assert!(
        e.findings[0].message.contains("20% below"),
        "{}",
        e.findings[0].message
    );

    plan.drugs[0].dose = 100.0;
    let e = evaluate(&plan);
    assert_eq!(codes(&e), ["dose_above_tolerance"]);
    assert!(!e.on_pathway);
}

#[test]
fn weekly_schedule_and_cycle_length_changes_are_named() {
    let mut plan = tchp_plan();
    plan.drugs[0].days = carepath_oncology::DaySchedule::parse("1,8").unwrap();
    plan.drugs[1].cycle_length_days = 14;
    let e = evaluate(&plan);
    assert_eq!(codes(&e), ["schedule_mismatch", "cycle_length_mismatch"]);
}

#[test]
fn missing_her2_status_asks_for_information() {
    let mut plan = tchp_plan();
    plan.context.biomarkers.remove("HER2");
    let e = evaluate(&plan);
    assert!(!e.on_pathway);
    assert_eq!(
        codes(&e),
        [
            "no_pathway_for_situation",
            "regimen_not_on_pathway",
            "information_missing"
        ]
    );
    assert_eq!(e.findings[2].subject.as_deref(), Some("HER2"));
    assert!(e.alternatives.is_empty());
}

#[test]
fn supportive_care_under_and_over_use() {
    let catalogue = Catalogue::shipped();
    let pair = |situation: &str, regimen: &str| {
        let cancer = catalogue
            .cancers()
            .iter()
            .find(|c| c.situations.iter().any(|s| s.id == situation))
            .unwrap();
        let s = cancer
            .situations
            .iter()
            .find(|s| s.id == situation)
            .unwrap();
        let regimen = catalogue.regimen(regimen).unwrap();
        let mut plan = plan_for(&catalogue, s, regimen);
        // At the cheapest site allowed, so only supportive care is in question.
        plan.site_of_service = regimen.sites.last().copied();
        plan
    };
    let drug = |code: &str, dose: f64| PlannedDrug {
        code: DrugCode::parse(code).unwrap(),
        name: None,
        dose,
        basis: DoseBasis::Mg,
        days: carepath_oncology::DaySchedule::parse("1").unwrap(),
        cycle_length_days: 28,
        cycles: CycleCount::Fixed(1),
    };

    // Intermediate risk and 70 years old: growth factor advised, not required.
    let mut rchop = pair("dlbcl-first", "r-chop");
    rchop.patient.age_years = Some(70);
    rchop.supportive.retain(|d| d.code.as_str() != "J2506");
    let e = evaluate_plan(&catalogue, &rchop).unwrap();
    assert_eq!(codes(&e), ["growth_factor_recommended"]);
    assert!(e.instant_approval());
    assert!(
        e.findings[0].message.contains("age 70"),
        "{}",
        e.findings[0].message
    );

    // Intermediate risk, no risk factor, growth factor given anyway: advisory.
    let mut rchop = pair("dlbcl-first", "r-chop");
    rchop.supportive.push(drug("J2506", 6.0));
    let e = evaluate_plan(&catalogue, &rchop).unwrap();
    assert_eq!(codes(&e), ["growth_factor_not_indicated"]);
    assert_eq!(e.findings[0].severity, Severity::Advisory);

    // A reported risk factor counts like age.
    let mut rchop = pair("dlbcl-first", "r-chop");
    rchop
        .patient
        .risk_factors
        .insert(RiskFactor::PriorChemotherapyOrRadiation);
    let e = evaluate_plan(&catalogue, &rchop).unwrap();
    assert_eq!(codes(&e), ["growth_factor_recommended"]);

    // Low risk oral regimen with pegfilgrastim and ondansetron: over-use both ways.
    let mut osimertinib = pair("nsclc-egfr-metastatic-first", "osimertinib");
    osimertinib.supportive = vec![drug("J2506", 6.0), drug("ondansetron", 8.0)];
    let e = evaluate_plan(&catalogue, &osimertinib).unwrap();
    assert_eq!(
        codes(&e),
        ["growth_factor_not_indicated", "antiemetic_beyond_risk"]
    );
    assert_eq!(e.findings[0].severity, Severity::Blocking);
    assert_eq!(e.findings[1].severity, Severity::Advisory);

    // Carboplatin AUC 5 raises moderate to three drugs: an NK1 antagonist is missing.
    let mut cpp = pair("nsclc-nonsquamous-first", "carbo-pem-pembro");
    without(&mut cpp.supportive, "J1453");
    let e = evaluate_plan(&catalogue, &cpp).unwrap();
    assert_eq!(codes(&e), ["antiemetic_missing"]);
    assert!(
        e.findings[0].message.contains("carboplatin AUC 4 or more"),
        "{}",
        e.findings[0].message
    );
    assert_eq!(e.findings[0].severity, Severity::Blocking);

    // An antiemetic listed among the drugs is read as supportive care, not an extra drug.
    let mut tchp = tchp_plan();
    let dexamethasone = tchp.supportive.remove(3);
    tchp.drugs.push(dexamethasone);
    let e = evaluate_plan(&catalogue, &tchp).unwrap();
    assert!(e.instant_approval(), "{:?}", codes(&e));
}

#[test]
fn unknown_diagnosis_has_no_pathway_and_unknown_cancer_is_invalid() {
    let mut plan = tchp_plan();
    plan.diagnosis = icd("C61");
    let e = evaluate(&plan);
    assert_eq!(codes(&e), ["no_pathway_for_diagnosis"]);
    assert!(e.cancer_id.is_none() && !e.instant_approval());
    assert_eq!(
        e.service_lines.len(),
        9,
        "lines are still produced for the case"
    );

    plan.cancer_id = Some("breast".into());
    assert!(
        evaluate(&plan).instant_approval(),
        "the cancer id overrides the code"
    );

    plan.cancer_id = Some("prostate".into());
    let err = evaluate_plan(&Catalogue::shipped(), &plan).unwrap_err();
    assert_eq!(err.violations[0].field, "cancer_id");

    plan.cancer_id = None;
    plan.drugs[0].dose = f64::NAN;
    let err = evaluate_plan(&Catalogue::shipped(), &plan).unwrap_err();
    assert_eq!(err.violations[0].field, "drugs[0].dose");
}

#[test]
fn service_lines_split_medical_and_pharmacy_with_billing_units() {
    let plan = tchp_plan();
    let lines = service_lines(&Catalogue::shipped(), &plan);
    let line = |code: &str| lines.iter().find(|l| l.code.as_str() == code).unwrap();
    let cases = [
        // code, units per administration, total units: docetaxel 75 × 1.8 = 135 mg of
        // 1 mg units; carboplatin 720 mg of 50 mg; trastuzumab 420 mg of 10 mg;
        // pertuzumab 420 mg of 1 mg; pegfilgrastim 6 mg of 0.5 mg; palonosetron
        // 0.25 mg of 25 mcg.
        ("J9171", 135, 810),
        ("J9045", 15, 90),
        ("J9355", 42, 252),
        ("J9306", 420, 2520),
        ("J2506", 12, 72),
        ("J2469", 10, 60),
    ];
    for (code, per, total) in cases {
        let l = line(code);
        assert_eq!(l.benefit, Benefit::Medical, "{code}");
        assert_eq!(l.units_per_administration, Some(per), "{code}");
        assert_eq!(l.total_units, Some(total), "{code}");
    }
    assert_eq!(line("J9171").role, DrugRole::Anticancer);
    assert_eq!(line("J2506").role, DrugRole::Supportive);
    let olanzapine = line("olanzapine");
    assert_eq!(olanzapine.benefit, Benefit::Pharmacy);
    assert_eq!(olanzapine.units_per_administration, None);
    assert_eq!(olanzapine.administrations_per_cycle, 4);
    assert_eq!(evaluate(&plan).service_lines, lines);
}

#[test]
fn pathways_list_by_situation_and_filter() {
    let catalogue = Catalogue::shipped();
    let all = catalogue
        .pathway("nsclc", &ClinicalContext::default())
        .unwrap();
    assert_eq!(all.len(), 8);
    let mut egfr = ClinicalContext::default();
    egfr.biomarkers.insert("egfr".into(), "L858R".into());
    let options = catalogue.pathway("nsclc", &egfr).unwrap();
    let ids: Vec<_> = options
        .iter()
        .map(|o| (o.situation.id.as_str(), o.regimen.id.as_str()))
        .collect();
    // Situations that do not depend on EGFR stay listed: the filter did not say the
    // tumour is ALK-negative.
    assert_eq!(
        ids,
        [
            ("nsclc-egfr-metastatic-first", "osimertinib"),
            ("nsclc-egfr-adjuvant", "osimertinib-adjuvant"),
            ("nsclc-alk-metastatic-first", "alectinib"),
            ("nsclc-alk-metastatic-first", "lorlatinib"),
        ]
    );
    egfr.line = Some(carepath_oncology::LineOfTherapy::Adjuvant);
    let options = catalogue.pathway("nsclc", &egfr).unwrap();
    assert_eq!(options.len(), 1);
    assert_eq!(options[0].regimen.id, "osimertinib-adjuvant");
    assert_eq!(options[0].preference, 1);
    assert!(catalogue.pathway("prostate", &egfr).is_none());
}

#[test]
fn diagnosis_codes_find_their_cancer() {
    let catalogue = Catalogue::shipped();
    let cases = [
        ("C50.911", Some("breast")),
        ("C34.90", Some("nsclc")),
        ("C18.7", Some("colorectal")),
        ("C20", Some("colorectal")),
        ("C16.0", Some("gastric")),
        ("C83.35", Some("dlbcl")),
        ("C83.1", None),
        ("C43.9", Some("melanoma")),
        ("C21.0", None),
    ];
    for (code, cancer) in cases {
        assert_eq!(
            catalogue
                .cancer_for_diagnosis(&icd(code))
                .map(|c| c.id.as_str()),
            cancer,
            "{code}"
        );
    }
}

#[test]
fn evaluation_is_deterministic() {
    // Two separately loaded catalogues hash differently; the output must not care.
    let first = Catalogue::shipped();
    let second = Catalogue::shipped();
    for plan in [tchp_plan(), egfr_chemo_plan()] {
        let a = serde_json::to_string(&evaluate_plan(&first, &plan).unwrap()).unwrap();
        let b = serde_json::to_string(&evaluate_plan(&second, &plan).unwrap()).unwrap();
        let c = serde_json::to_string(&evaluate_plan(&first, &plan).unwrap()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
    }
}

#[test]
fn evaluation_serializes_with_stable_codes() {
    let e = evaluate(&egfr_chemo_plan());
    let json: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(json["findings"][1]["code"], "biomarker_mismatch");
    assert_eq!(json["findings"][1]["severity"], "blocking");
    assert_eq!(json["alternatives"][0]["regimen_id"], "osimertinib");
    for code in FindingCode::ALL {
        assert_eq!(FindingCode::parse(code.as_str()), Ok(*code));
    }
}
