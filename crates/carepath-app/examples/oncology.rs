//! Evaluates a whole treatment plan against the shipped pathway catalogue and submits
//! it, on an embedded SQLite database holding the demo directory, without any server.
//!
//! `cargo run -p carepath-app --example oncology`

use std::{collections::BTreeMap, sync::Arc};

use carepath_app::{
    Caller,
    oncology::{Oncology, SubmitPlan},
    precert::PrecertEngine,
    setup,
};
use carepath_core::{Actor, Icd10Code, MemberId, Npi, Role, Urgency};
use carepath_oncology::{
    Catalogue, ClinicalContext, Intent, LineOfTherapy, PatientFactors, SiteOfService, StageGroup,
    TreatmentPlan, adopt_alternative,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An embedded database in a temporary folder, with the demo directory.
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("carepath.db").display());
    let app = setup::embedded(
        setup::open_store(&url).await?,
        &dir.path().join("carepath.key.pem"),
    )?;
    setup::load_demo(&app).await?;
    let now = app.now();
    let engine = PrecertEngine::load(&app.store).await?;
    let catalogue = Arc::new(Catalogue::shipped());
    let oncology = Oncology::new(app, engine, catalogue.clone());

    // The member's oncologist plans TCHP for HER2-positive stage II breast cancer.
    let base = TreatmentPlan {
        diagnosis: Icd10Code::parse("C50.911")?,
        cancer_id: None,
        context: ClinicalContext {
            stage_group: Some(StageGroup::parse("II")?),
            biomarkers: BTreeMap::from([("HER2".to_owned(), "positive".to_owned())]),
            histology: None,
            line: Some(LineOfTherapy::Neoadjuvant),
            intent: Some(Intent::Curative),
            performance_status: Some(0),
        },
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
    let plan = adopt_alternative(&catalogue, &base, "tchp")?;
    let oncologist = Caller::new(Actor::new(Role::Provider, "1381083801")?, "example");

    let evaluation = oncology.evaluate_plan(&oncologist, &plan).await?;
    println!(
        "evaluated against catalogue {}: on pathway {}, approved at once {}",
        evaluation.evaluation.catalogue_version,
        evaluation.evaluation.on_pathway,
        evaluation.evaluation.instant_approval()
    );

    let submitted = oncology
        .submit_plan(
            &oncologist,
            SubmitPlan {
                request_id: "example-1".into(),
                member_id: MemberId::parse("M100001")?,
                treating_provider: Npi::parse("1381083801")?,
                servicing_provider: None,
                urgency: Urgency::Routine,
                start_date: now.date_naive() + chrono::Duration::days(7),
                plan,
            },
        )
        .await?;
    let case = &submitted.plan.case;
    println!(
        "plan {} submitted: precertification case {} is {}",
        submitted.plan.id,
        case.id,
        case.state.as_str()
    );
    for line in &case.request.lines {
        println!("  {} x{}", line.code, line.units);
    }
    println!("{}", evaluation.notice);
    Ok(())
}
