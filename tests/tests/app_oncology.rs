//! Oncology use cases through the application layer directly, without gRPC, on both
//! backends: a plan on pathway approved at once and its retry, the refusals, adopting
//! an alternative (the first plan's case withdrawn through the precertification
//! filing), and stored evaluations of the earlier encoded shape converted.

use std::{collections::BTreeMap, sync::Arc};

use carepath_app::{
    AppError, Caller,
    oncology::{AcceptAlternative, Oncology, PlanUpgrade, SubmitPlan, upgrade_stored_plans},
    precert::PrecertEngine,
};
use carepath_core::{Actor, Icd10Code, MemberId, Npi, Role, Urgency};
use carepath_oncology::{
    Catalogue, ClinicalContext, Intent, LineOfTherapy, PatientFactors, SiteOfService, StageGroup,
    TreatmentPlan, adopt_alternative,
};
use carepath_precert::CaseState;
use carepath_tests::{TestDb, contract_tests};

contract_tests!(
    a_plan_on_pathway_is_approved_at_once_and_a_retry_returns_it,
    callers_without_standing_are_refused,
    adopting_an_alternative_withdraws_the_first_case,
    evaluations_stored_encoded_are_converted_once,
);

const ONCOLOGIST: &str = "1381083801";
const MEMBER: &str = "M100001";

struct Fixture {
    oncology: Oncology,
    _keys: tempfile::TempDir,
}

async fn fixture(db: &TestDb) -> Fixture {
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    Fixture {
        oncology: Oncology::new(app, engine, Arc::new(Catalogue::shipped())),
        _keys: keys,
    }
}

fn caller(role: Role, subject: &str) -> Caller {
    Caller::new(Actor::new(role, subject).unwrap(), "test")
}

fn context(
    stage: &str,
    markers: &[(&str, &str)],
    line: LineOfTherapy,
    intent: Intent,
    histology: Option<&str>,
) -> ClinicalContext {
    ClinicalContext {
        stage_group: Some(StageGroup::parse(stage).unwrap()),
        biomarkers: markers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        histology: histology.map(str::to_owned),
        line: Some(line),
        intent: Some(intent),
        performance_status: Some(0),
    }
}

/// A plan that is exactly `regimen` for the situation `context` describes.
fn plan(diagnosis: &str, context: ClinicalContext, regimen: &str) -> TreatmentPlan {
    let base = TreatmentPlan {
        diagnosis: Icd10Code::parse(diagnosis).unwrap(),
        cancer_id: None,
        context,
        patient: PatientFactors {
            age_years: Some(52),
            body_surface_area_m2: Some(1.8),
            weight_kg: Some(70.0),
            creatinine_clearance_ml_min: Some(95.0),
            risk_factors: Default::default(),
        },
        drugs: Vec::new(),
        supportive: Vec::new(),
        site_of_service: Some(SiteOfService::Office),
    };
    adopt_alternative(&Catalogue::shipped(), &base, regimen).unwrap()
}

fn tchp() -> TreatmentPlan {
    let ctx = context(
        "II",
        &[("HER2", "positive")],
        LineOfTherapy::Neoadjuvant,
        Intent::Curative,
        None,
    );
    plan("C50.911", ctx, "tchp")
}

fn egfr_chemo() -> TreatmentPlan {
    let ctx = context(
        "IV",
        &[("EGFR", "mutated")],
        LineOfTherapy::First,
        Intent::Palliative,
        Some("LUAD"),
    );
    plan("C34.90", ctx, "carbo-pem-pembro")
}

fn submission(request_id: &str, plan: TreatmentPlan) -> SubmitPlan {
    SubmitPlan {
        request_id: request_id.into(),
        member_id: MemberId::parse(MEMBER).unwrap(),
        treating_provider: Npi::parse(ONCOLOGIST).unwrap(),
        servicing_provider: None,
        urgency: Urgency::Urgent,
        start_date: "2026-12-01".parse().unwrap(),
        plan,
    }
}

async fn a_plan_on_pathway_is_approved_at_once_and_a_retry_returns_it(db: &TestDb) {
    let f = fixture(db).await;
    let oncologist = caller(Role::Provider, ONCOLOGIST);

    let evaluation = f
        .oncology
        .evaluate_plan(&oncologist, &tchp())
        .await
        .unwrap();
    assert!(evaluation.evaluation.instant_approval());
    assert!(!evaluation.notice.is_empty());

    let submitted = f
        .oncology
        .submit_plan(&oncologist, submission("app-onc-1", tchp()))
        .await
        .unwrap();
    assert!(submitted.created);
    let plan = submitted.plan;
    assert_eq!(plan.case.state, CaseState::Approved);
    assert_eq!(
        plan.evaluation, evaluation,
        "the evaluation said is the one stored"
    );
    assert_eq!(plan.case_request_id, "oncology:app-onc-1");
    assert_eq!(
        db.event_kinds("oncology_plan", &plan.id).await,
        vec!["oncology.plan.submitted"]
    );

    let retry = f
        .oncology
        .submit_plan(&oncologist, submission("app-onc-1", tchp()))
        .await
        .unwrap();
    assert!(!retry.created);
    assert_eq!(retry.plan.id, plan.id);

    let member = caller(Role::Member, MEMBER);
    let read = f.oncology.get_plan(&member, &plan.id).await.unwrap();
    assert_eq!(read.case.id, plan.case.id);
    assert_eq!(read.plan, plan.plan);
}

async fn callers_without_standing_are_refused(db: &TestDb) {
    let f = fixture(db).await;
    let oncologist = caller(Role::Provider, ONCOLOGIST);
    let member = caller(Role::Member, MEMBER);

    let err = f
        .oncology
        .submit_plan(&member, submission("app-onc-2", tchp()))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");

    let plan = f
        .oncology
        .submit_plan(&oncologist, submission("app-onc-2", tchp()))
        .await
        .unwrap()
        .plan;
    let stranger = caller(Role::Provider, "1500125129");
    let err = f.oncology.get_plan(&stranger, &plan.id).await.unwrap_err();
    assert!(matches!(err, AppError::NotFound { .. }), "{err:?}");
    let err = f
        .oncology
        .submit_plan(&stranger, submission("app-onc-2", tchp()))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");

    let err = f.oncology.get_plan(&oncologist, "  ").await.unwrap_err();
    assert!(matches!(err, AppError::Invalid(_)), "{err:?}");

    // The plan is on pathway: nothing was offered to adopt.
    let err = f
        .oncology
        .accept_alternative(
            &oncologist,
            AcceptAlternative {
                plan_id: plan.id.clone(),
                regimen_id: "tchp".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Invalid(_)), "{err:?}");
}

async fn adopting_an_alternative_withdraws_the_first_case(db: &TestDb) {
    let f = fixture(db).await;
    let oncologist = caller(Role::Provider, ONCOLOGIST);
    let first = f
        .oncology
        .submit_plan(&oncologist, submission("app-onc-egfr", egfr_chemo()))
        .await
        .unwrap()
        .plan;
    assert_eq!(first.case.state, CaseState::PendedReview);
    let offered = &first.evaluation.evaluation.alternatives[0].regimen_id;
    assert_eq!(offered, "osimertinib");

    let nurse = caller(Role::Nurse, "RN-001");
    let err = f
        .oncology
        .accept_alternative(
            &nurse,
            AcceptAlternative {
                plan_id: first.id.clone(),
                regimen_id: offered.clone(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");

    let second = f
        .oncology
        .accept_alternative(
            &oncologist,
            AcceptAlternative {
                plan_id: first.id.clone(),
                regimen_id: offered.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.replaces_plan_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(second.request_id, "app-onc-egfr:alt:osimertinib");
    assert!(second.evaluation.evaluation.on_pathway);
    let old = f.oncology.get_plan(&oncologist, &first.id).await.unwrap();
    assert_eq!(old.case.state, CaseState::Withdrawn);
    assert!(
        db.event_kinds("precert_case", &first.case.id)
            .await
            .iter()
            .any(|k| k.ends_with("withdrawn")),
        "the withdrawal is published"
    );
}

async fn evaluations_stored_encoded_are_converted_once(db: &TestDb) {
    let f = fixture(db).await;
    let oncologist = caller(Role::Provider, ONCOLOGIST);
    let plan = f
        .oncology
        .submit_plan(&oncologist, submission("app-onc-3", egfr_chemo()))
        .await
        .unwrap()
        .plan;

    // Put the row back in the earlier shape: the evaluation a hex string, no notice.
    let record = db.store.get_plan_record(&plan.id).await.unwrap();
    let mut doc = record.doc.0.clone();
    doc["evaluation"] = serde_json::json!("0a1332303236");
    doc.as_object_mut().unwrap().remove("notice");
    let mut tx = db.store.begin().await.unwrap();
    tx.replace_plan_doc(&plan.id, &carepath_store::Json(doc))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        db.store
            .plans_with_encoded_evaluation()
            .await
            .unwrap()
            .len(),
        1
    );

    // Read before the upgrade: evaluated again, the same as was said.
    let read = f.oncology.get_plan(&oncologist, &plan.id).await.unwrap();
    assert_eq!(read.evaluation, plan.evaluation);

    let catalogue = Catalogue::shipped();
    let done = upgrade_stored_plans(&db.store, &catalogue).await.unwrap();
    assert_eq!(
        done,
        PlanUpgrade {
            converted: 1,
            kept: 0
        }
    );
    assert!(
        db.store
            .plans_with_encoded_evaluation()
            .await
            .unwrap()
            .is_empty()
    );
    let stored = db.store.get_plan_record(&plan.id).await.unwrap();
    assert!(stored.doc.0["evaluation"].is_object());
    let read = f.oncology.get_plan(&oncologist, &plan.id).await.unwrap();
    assert_eq!(read.evaluation, plan.evaluation);
    assert_eq!(
        upgrade_stored_plans(&db.store, &catalogue).await.unwrap(),
        PlanUpgrade::default(),
        "a second run has nothing to do"
    );
}
