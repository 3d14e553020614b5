//! Checks whether a brain MRI needs precertification, submits it with the answer the
//! rule's criteria ask for, and prints the decision: the application layer on an
//! embedded SQLite database holding the demo directory, without any server.
//!
//! `cargo run -p carepath-app --example precert`

use carepath_app::{
    Caller,
    precert::{
        Precert, PrecertEngine,
        submit::{CheckRequest, SubmitRequest},
    },
    setup,
};
use carepath_core::{Actor, Icd10Code, MemberId, Npi, Role, ServiceCode, Setting, Urgency};
use carepath_precert::{Answer, RecordRef, ServiceLine};

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
    let precert = Precert::new(app.clone(), PrecertEngine::load(&app.store).await?);

    // The demo imaging centre asks for a brain MRI for member M100001 in two weeks.
    let imaging = Npi::parse("1184649790")?;
    let caller = Caller::new(Actor::new(Role::Provider, imaging.as_str())?, "example");
    let member = MemberId::parse("M100001")?;
    let line = ServiceLine {
        code: ServiceCode::parse("70553")?,
        units: 1,
        date_of_service: app.now().date_naive() + chrono::Duration::days(14),
        setting: Setting::Outpatient,
        facility_kind: None,
        length_of_stay_hours: None,
        delivery: None,
        admission: Default::default(),
    };
    let diagnoses = vec![Icd10Code::parse("G43.909")?];

    let check = precert
        .check(
            &caller,
            CheckRequest {
                member_id: member.clone(),
                rendering_npi: imaging.clone(),
                diagnoses: diagnoses.clone(),
                lines: vec![line.clone()],
            },
        )
        .await?;
    for answer in &check {
        let rule = answer.rule.as_ref().map_or("none", |r| r.id.as_str());
        println!(
            "check: {:?}, asked by the {:?}, rule {rule}, list {} {}",
            answer.requirement, answer.responsible, answer.list.id, answer.list.version
        );
        for question in &answer.questions {
            println!("  question {}: {}", question.id, question.text);
        }
        for document in &answer.documents {
            println!("  send {}: {}", document.id, document.text);
        }
    }

    let submitted = precert
        .submit(
            &caller,
            SubmitRequest {
                request_id: "example-mri-1".into(),
                member_id: member,
                requesting_npi: imaging.clone(),
                servicing_npi: imaging,
                lines: vec![line],
                diagnoses,
                urgency: Urgency::Routine,
                answers: vec![("red_flag_symptoms".into(), Answer::Bool(true))],
                records: vec![RecordRef {
                    id: "note-1".into(),
                    document: "clinical_notes".into(),
                }],
                coverage_assertions: Vec::new(),
            },
        )
        .await?;
    let case = &submitted.case.case;
    println!("case {} is {}", case.id, case.state.as_str());
    for decision in &case.decisions {
        println!(
            "  decided {:?} by {:?} at {}",
            decision.outcome, decision.by, decision.at
        );
    }
    Ok(())
}
