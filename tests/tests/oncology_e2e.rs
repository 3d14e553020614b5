//! Oncology pathway review end to end through the real server, on both backends:
//! instant approval on pathway, supportive-care and site-of-service findings, an
//! off-pathway plan pended with its alternatives, adopting an alternative, the
//! early referral event, the guideline look-up, and who may see a plan.

use std::collections::BTreeMap;

use carepath_core::{Icd10Code, Role};
use carepath_oncology::{
    Catalogue, ClinicalContext, Intent, LineOfTherapy, PatientFactors, SiteOfService, StageGroup,
    TreatmentPlan, adopt_alternative,
};
use carepath_proto::{
    common::v1::Urgency,
    oncology::v1::{self as pb, oncology_service_client::OncologyServiceClient},
    precert::v1::CaseStatus,
};
use carepath_server::oncology::plan_to_proto;
use carepath_tests::{TestDb, TestServer, contract_tests};
use tonic::{Code, transport::Channel};

contract_tests!(
    a_tchp_plan_on_pathway_at_an_office_is_approved_at_once,
    missing_growth_factor_support_is_flagged_and_pended,
    a_hospital_outpatient_plan_gets_a_site_of_service_suggestion,
    an_off_pathway_egfr_plan_is_pended_with_osimertinib_offered_and_can_adopt_it,
    providers_can_look_up_the_pathways,
    plans_are_visible_only_to_those_entitled,
);

const ONCOLOGIST: &str = "1381083801";
const MEMBER: &str = "M100001";

fn patient() -> PatientFactors {
    PatientFactors {
        age_years: Some(52),
        body_surface_area_m2: Some(1.8),
        weight_kg: Some(70.0),
        creatinine_clearance_ml_min: Some(95.0),
        risk_factors: Default::default(),
    }
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
fn plan(
    diagnosis: &str,
    context: ClinicalContext,
    regimen: &str,
    site: Option<SiteOfService>,
) -> TreatmentPlan {
    let base = TreatmentPlan {
        diagnosis: Icd10Code::parse(diagnosis).unwrap(),
        cancer_id: None,
        context,
        patient: patient(),
        drugs: Vec::new(),
        supportive: Vec::new(),
        site_of_service: site,
    };
    adopt_alternative(&Catalogue::shipped(), &base, regimen).unwrap()
}

fn her2_tchp(site: SiteOfService) -> TreatmentPlan {
    let ctx = context(
        "II",
        &[("HER2", "positive")],
        LineOfTherapy::Neoadjuvant,
        Intent::Curative,
        None,
    );
    plan("C50.911", ctx, "tchp", Some(site))
}

fn submit(request_id: &str, plan: &TreatmentPlan) -> pb::SubmitPlanRequest {
    pb::SubmitPlanRequest {
        request_id: request_id.into(),
        member_id: MEMBER.into(),
        treating_provider_npi: ONCOLOGIST.into(),
        servicing_provider_npi: String::new(),
        urgency: Urgency::Urgent as i32,
        start_date: "2026-12-01".into(),
        plan: Some(plan_to_proto(plan)),
    }
}

fn client(channel: Channel) -> OncologyServiceClient<Channel> {
    OncologyServiceClient::new(channel)
}

async fn a_tchp_plan_on_pathway_at_an_office_is_approved_at_once(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, ONCOLOGIST);
    let tchp = her2_tchp(SiteOfService::Office);
    assert!(
        tchp.supportive
            .iter()
            .any(|d| d.code.to_string() == "J2506"),
        "pegfilgrastim is part of the plan"
    );

    let submitted = c
        .submit_plan(server.request(&token, submit("onc-1", &tchp)))
        .await
        .unwrap()
        .into_inner();
    assert!(submitted.created);
    let p = submitted.plan.unwrap();
    let evaluation = p.evaluation.unwrap();
    assert!(
        evaluation.on_pathway && evaluation.instant_approval,
        "{:?}",
        evaluation.findings
    );
    assert_eq!(evaluation.matched_regimen_id, "tchp");
    let case = p.case.unwrap();
    assert_eq!(case.status(), CaseStatus::Approved);
    assert_eq!(case.lines.len(), evaluation.lines.len());
    assert!(case.lines.iter().all(|l| l.outcome == "approved"));

    let again = c
        .submit_plan(server.request(&token, submit("onc-1", &tchp)))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.plan.unwrap().id, p.id);

    let events = db.store.events_for("oncology_plan", &p.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "oncology.plan.submitted");
    assert_eq!(events[0].member_id.as_ref().unwrap().as_str(), MEMBER);
    assert_eq!(events[0].payload["precert_case_id"], case.id);
    server.stop().await;
}

async fn missing_growth_factor_support_is_flagged_and_pended(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, ONCOLOGIST);
    let mut tchp = her2_tchp(SiteOfService::Office);
    tchp.supportive.retain(|d| d.code.to_string() != "J2506");

    let evaluated = c
        .evaluate_plan(server.request(
            &token,
            pb::EvaluatePlanRequest {
                plan: Some(plan_to_proto(&tchp)),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .evaluation
        .unwrap();
    let finding = evaluated
        .findings
        .iter()
        .find(|f| f.code == "growth_factor_missing")
        .expect("growth factor finding");
    assert!(finding.blocking);
    assert!(!evaluated.instant_approval);

    let case = c
        .submit_plan(server.request(&token, submit("onc-2", &tchp)))
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap()
        .case
        .unwrap();
    assert_eq!(
        case.status(),
        CaseStatus::PendedReview,
        "held for an oncologist, never denied"
    );
    assert!(case.decisions.is_empty());
    server.stop().await;
}

async fn a_hospital_outpatient_plan_gets_a_site_of_service_suggestion(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, ONCOLOGIST);
    let tchp = her2_tchp(SiteOfService::HospitalOutpatient);
    let evaluation = c
        .evaluate_plan(server.request(
            &token,
            pb::EvaluatePlanRequest {
                plan: Some(plan_to_proto(&tchp)),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .evaluation
        .unwrap();
    let site = evaluation
        .site_of_service
        .expect("a cheaper site is suggested");
    assert_eq!(site.planned, "hospital_outpatient");
    assert_ne!(site.suggested, "hospital_outpatient");
    assert!(site.saving_per_cycle_usd > 0 && site.estimated_saving_usd > 0);
    assert!(
        evaluation
            .findings
            .iter()
            .any(|f| f.code == "site_of_service_saving" && !f.blocking)
    );
    server.stop().await;
}

async fn an_off_pathway_egfr_plan_is_pended_with_osimertinib_offered_and_can_adopt_it(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, ONCOLOGIST);
    let ctx = context(
        "IV",
        &[("EGFR", "mutated")],
        LineOfTherapy::First,
        Intent::Palliative,
        Some("LUAD"),
    );
    let chemo = plan(
        "C34.90",
        ctx,
        "carbo-pem-pembro",
        Some(SiteOfService::Office),
    );

    let first = c
        .submit_plan(server.request(&token, submit("onc-egfr", &chemo)))
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    let evaluation = first.evaluation.clone().unwrap();
    assert!(!evaluation.on_pathway);
    assert_eq!(
        evaluation
            .alternatives
            .first()
            .map(|a| a.regimen_id.as_str()),
        Some("osimertinib"),
        "{:?}",
        evaluation.alternatives
    );
    let case = first.case.clone().unwrap();
    assert_eq!(case.status(), CaseStatus::PendedReview);
    let events = db
        .store
        .events_for("oncology_plan", &first.id)
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "oncology.plan.submitted")
            .count(),
        1,
        "the early case-management referral is in the outbox"
    );

    let err = c
        .accept_alternative(server.request(
            &token,
            pb::AcceptAlternativeRequest {
                plan_id: first.id.clone(),
                regimen_id: "tchp".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "only offered alternatives"
    );
    let adopted = c
        .accept_alternative(server.request(
            &token,
            pb::AcceptAlternativeRequest {
                plan_id: first.id.clone(),
                regimen_id: "osimertinib".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(adopted.replaces_plan_id, first.id);
    assert!(adopted.evaluation.as_ref().unwrap().instant_approval);
    assert_eq!(
        adopted.case.as_ref().unwrap().status(),
        CaseStatus::Approved
    );
    let old = c
        .get_plan(server.request(
            &token,
            pb::GetPlanRequest {
                id: first.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    let old_case = old.case.unwrap();
    assert_eq!(old_case.status(), CaseStatus::Withdrawn);
    assert_eq!(
        old_case.history.last().unwrap().note,
        format!(
            "withdrawn by the requester: replaced by the revised plan {}",
            adopted.id
        )
    );
    server.stop().await;
}

async fn providers_can_look_up_the_pathways(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, "1159891922");
    let all = c
        .list_pathways(server.request(&token, pb::ListPathwaysRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(all.cancers.len() >= 6);
    assert!(all.notice.to_lowercase().contains("illustrative"));
    let her2 = c
        .get_pathway(server.request(
            &token,
            pb::GetPathwayRequest {
                cancer_id: "breast".into(),
                context: Some(pb::ClinicalContext {
                    biomarkers: [("HER2".to_owned(), "positive".to_owned())].into(),
                    line: "neoadjuvant".into(),
                    performance_status: -1,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        her2.regimens.first().map(|r| r.regimen_id.as_str()),
        Some("tchp")
    );
    assert!(
        her2.regimens[0]
            .components
            .iter()
            .any(|c| c.codes.contains(&"J9355".to_owned())),
        "trastuzumab J9355 is a component"
    );
    let err = c
        .get_pathway(server.request(
            &token,
            pb::GetPathwayRequest {
                cancer_id: "nope".into(),
                context: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

async fn plans_are_visible_only_to_those_entitled(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, ONCOLOGIST);
    let p = c
        .submit_plan(server.request(&token, submit("onc-vis", &her2_tchp(SiteOfService::Office))))
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    let get = |t: &str| server.request(t, pb::GetPlanRequest { id: p.id.clone() });
    assert!(
        c.get_plan(get(&server.token(Role::Member, MEMBER)))
            .await
            .is_ok()
    );
    assert!(
        c.get_plan(get(&server.token(Role::PhysicianReviewer, "MD-ONC-01")))
            .await
            .is_ok()
    );
    assert_eq!(
        c.get_plan(get(&server.token(Role::Provider, "1715260232")))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        c.get_plan(get(&server.token(Role::Member, "M100014")))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let err = c
        .submit_plan(server.request(
            &server.token(Role::Member, MEMBER),
            submit("onc-m", &her2_tchp(SiteOfService::Office)),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    server.stop().await;
}
