//! The precertification list through the real server, on both backends: an answer for
//! every category of the shipped list, plan-level differences, rule-list versions
//! validated, activated and in force from their date without a restart, and gold
//! cards earned, used and lost.

use carepath_app::precert::PrecertEngine;
use carepath_core::Role;
use carepath_proto::{
    common::v1::Setting,
    directory::v1::ProviderKind,
    precert::v1::{self as pb, precert_service_client::PrecertServiceClient},
};
use carepath_tests::{
    TestDb, TestServer, contract_tests,
    precert::{IMAGING_IN, INTERNIST, MEMBER, client, flag, line, mri},
};
use chrono::Duration;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

contract_tests!(
    every_category_of_the_list_answers_through_the_server,
    a_new_list_version_is_validated_activated_and_in_force_from_its_date,
    gold_cards_are_earned_used_and_lost,
);

const NON_PCM_MEMBER: &str = "M100006"; // PLAN-OAP: no Preferred Care Management

fn stay(code: &str, kind: ProviderKind) -> pb::ServiceLine {
    pb::ServiceLine {
        facility_kind: kind as i32,
        ..line(code, Setting::Inpatient)
    }
}

fn admitted(admission: pb::Admission, kind: ProviderKind) -> pb::ServiceLine {
    pb::ServiceLine {
        admission: admission as i32,
        ..stay("99221", kind)
    }
}

fn delivery(code: &str, how: pb::Delivery, hours: u32) -> pb::ServiceLine {
    pb::ServiceLine {
        delivery: how as i32,
        length_of_stay_hours: hours,
        ..stay(code, ProviderKind::AcuteHospital)
    }
}

fn batch(member: &str, lines: Vec<pb::ServiceLine>) -> pb::BatchCheckRequirementsRequest {
    pb::BatchCheckRequirementsRequest {
        member_id: member.into(),
        rendering_provider_npi: INTERNIST.into(),
        diagnoses: vec!["G43.909".into()],
        lines,
    }
}

async fn every_category_of_the_list_answers_through_the_server(db: &TestDb) {
    use ProviderKind::*;
    use Setting::*;
    use pb::Requirement::{NotRequired, NotifyOnly, Required};
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, INTERNIST);

    // (line, requirement, deciding rule, its category)
    let table: Vec<(pb::ServiceLine, pb::Requirement, &str, &str)> = vec![
        (
            line("70553", Outpatient),
            Required,
            "IMG-MRI",
            "advanced_imaging",
        ),
        (
            line("72196", Outpatient),
            Required,
            "IMG-MRI",
            "advanced_imaging",
        ),
        (
            line("74160", Outpatient),
            Required,
            "IMG-CT",
            "advanced_imaging",
        ),
        (
            line("78608", Outpatient),
            Required,
            "IMG-PET",
            "advanced_imaging",
        ),
        (
            stay("27447", AcuteHospital),
            Required,
            "INPT-ACUTE",
            "inpatient_admission",
        ),
        (
            stay("99221", SkilledNursing),
            Required,
            "INPT-SNF",
            "inpatient_admission",
        ),
        (
            stay("99221", Rehabilitation),
            Required,
            "INPT-REHAB",
            "inpatient_admission",
        ),
        (
            stay("99221", LongTermAcuteCare),
            Required,
            "INPT-LTAC",
            "inpatient_admission",
        ),
        (
            stay("99221", Hospice),
            Required,
            "INPT-HOSPICE",
            "inpatient_admission",
        ),
        (
            admitted(pb::Admission::Transfer, SkilledNursing),
            Required,
            "INPT-TRANSFER",
            "inpatient_transfer",
        ),
        (
            admitted(pb::Admission::Emergency, AcuteHospital),
            NotifyOnly,
            "INPT-EMERGENCY",
            "inpatient_admission",
        ),
        (
            line("G0378", Outpatient),
            Required,
            "OBS-STAY",
            "observation_stay",
        ),
        (
            delivery("59400", pb::Delivery::Vaginal, 72),
            Required,
            "MAT-VAGINAL-EXTENDED",
            "maternity_stay",
        ),
        (
            delivery("59400", pb::Delivery::Vaginal, 36),
            NotRequired,
            "MAT-VAGINAL-ROUTINE",
            "maternity_stay",
        ),
        (
            delivery("59510", pb::Delivery::Caesarean, 100),
            Required,
            "MAT-CAESAREAN-EXTENDED",
            "maternity_stay",
        ),
        (
            delivery("59510", pb::Delivery::Caesarean, 90),
            NotRequired,
            "MAT-CAESAREAN-ROUTINE",
            "maternity_stay",
        ),
        (
            line("0042T", Outpatient),
            Required,
            "EXP-CATEGORY-III",
            "experimental",
        ),
        (
            line("15823", Outpatient),
            Required,
            "COS-FACE-BODY",
            "cosmetic",
        ),
        (
            line("19357", Outpatient),
            Required,
            "REC-BREAST",
            "reconstructive",
        ),
        (
            line("29881", Outpatient),
            Required,
            "SURG-KNEE-ARTHROSCOPY",
            "outpatient_surgery",
        ),
        (
            line("J1745", Office),
            Required,
            "DRUG-INJECTABLE",
            "injectable_drug",
        ),
        (
            line("J3030", Home),
            NotRequired,
            "DRUG-SELF-INJECTABLE",
            "injectable_drug",
        ),
        (
            line("J9355", Outpatient),
            Required,
            "ONC-INFUSED",
            "oncology",
        ),
        (
            line("E0601", Home),
            Required,
            "DME-GENERAL",
            "durable_medical_equipment",
        ),
        (line("G0299", Home), Required, "HOME-HEALTH", "home_health"),
        (
            line("S9500", Home),
            Required,
            "HOME-INFUSION",
            "home_infusion",
        ),
        (
            line("S9338", Home),
            Required,
            "HOME-INFUSION",
            "home_infusion",
        ),
        (line("90935", Outpatient), Required, "DIALYSIS", "dialysis"),
        (line("L5301", Office), Required, "PROS-LIMB", "prosthetics"),
        (
            line("92507", Office),
            Required,
            "SPEECH-THERAPY",
            "speech_therapy",
        ),
        (
            line("58970", Outpatient),
            Required,
            "INFERTILITY",
            "infertility",
        ),
        (
            line("93306", Outpatient),
            Required,
            "CARD-ECHO",
            "diagnostic_cardiology",
        ),
        (
            line("77385", Outpatient),
            Required,
            "RADIATION-THERAPY",
            "radiation_therapy",
        ),
        (
            line("64483", Outpatient),
            Required,
            "PAIN-INTERVENTIONS",
            "pain_management",
        ),
        (
            line("90834", Office),
            NotRequired,
            "BH-ROUTINE-OUTPATIENT",
            "behavioral_health",
        ),
        (
            line("90870", Outpatient),
            Required,
            "BH-INTENSIVE",
            "behavioral_health",
        ),
    ];
    let lines = table.iter().map(|(l, ..)| l.clone()).collect();
    let answers = c
        .batch_check_requirements(server.request(&token, batch(MEMBER, lines)))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert_eq!(answers.len(), table.len());
    for ((l, requirement, rule, category), a) in table.iter().zip(&answers) {
        let cited = a.rule.as_ref().unwrap_or_else(|| panic!("{l:?}: no rule"));
        assert_eq!(
            (a.requirement(), cited.id.as_str(), cited.category.as_str()),
            (*requirement, *rule, *category),
            "{} ({:?}): {}",
            l.service_code,
            l.setting(),
            a.explanation
        );
        assert_eq!(a.list_version, "2026.1", "{}", l.service_code);
        assert!(
            !cited.text.is_empty(),
            "{}: the rule's text",
            l.service_code
        );
        if *requirement == Required {
            assert_eq!(
                a.responsible(),
                pb::Responsible::Provider,
                "{}",
                l.service_code
            );
            assert!(!a.documents.is_empty(), "{}: what to send", l.service_code);
        }
    }
    let oncology = &answers[table.iter().position(|t| t.2 == "ONC-INFUSED").unwrap()];
    assert_eq!(oncology.program, "oncology");
    assert!(
        oncology.questions.is_empty(),
        "the oncology review asks its own"
    );
    // The questions to answer with the request, so it can be approved at once.
    let questions: Vec<_> = answers[0]
        .questions
        .iter()
        .map(|q| (q.id.as_str(), q.answer_type.as_str(), q.text.is_empty()))
        .collect();
    assert_eq!(
        questions,
        [
            ("red_flag_symptoms", "bool", false),
            ("conservative_therapy_weeks", "number", false)
        ]
    );
    let routine = &answers[table
        .iter()
        .position(|t| t.2 == "MAT-VAGINAL-ROUTINE")
        .unwrap()];
    assert!(
        routine.questions.is_empty(),
        "nothing to ask when not required"
    );

    // Oral immunosuppressants are not injectables: no rule at all.
    let oral = c
        .batch_check_requirements(server.request(&token, batch(MEMBER, vec![line("J7502", Home)])))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert_eq!(
        (oral[0].requirement(), oral[0].rule.is_none()),
        (NotRequired, true)
    );

    // The plan-level difference: a knee arthroscopy with meniscectomy needs
    // precertification only on a plan without Preferred Care Management.
    let scope = vec![line("29870", Outpatient)];
    let pcm = c
        .batch_check_requirements(server.request(&token, batch(MEMBER, scope.clone())))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert_eq!(pcm[0].requirement(), NotRequired, "{}", pcm[0].explanation);
    let non_pcm = c
        .batch_check_requirements(server.request(&token, batch(NON_PCM_MEMBER, scope)))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert_eq!(
        (
            non_pcm[0].requirement(),
            non_pcm[0].rule.as_ref().map(|r| r.id.as_str())
        ),
        (Required, Some("SURG-KNEE-SCOPE-NON-PCM")),
        "{}",
        non_pcm[0].explanation
    );

    // An inpatient stay must say which kind of facility: the stay rules depend on it.
    let err = c
        .batch_check_requirements(
            server.request(&token, batch(MEMBER, vec![line("99221", Inpatient)])),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["lines[0].facility_kind"]);
    server.stop().await;
}

fn list_2028(shipped_2027: &str, version: &str, from: &str) -> String {
    let text = shipped_2027
        .replace("version = \"2027.1\"", &format!("version = \"{version}\""))
        .replace(
            "effective_from = 2027-01-01",
            &format!("effective_from = {from}"),
        )
        .replace(
            "text = \"Outpatient MRI and MR angiography need precertification.\"",
            "text = \"Outpatient MRI needs precertification (2028 wording).\"",
        );
    assert_ne!(text, shipped_2027, "the edits apply to the shipped file");
    text
}

async fn a_new_list_version_is_validated_activated_and_in_force_from_its_date(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let admin = server.token(Role::Admin, "AD-001");
    let provider = server.token(Role::Provider, IMAGING_IN);
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/precert/standard-2027.toml"
    ))
    .unwrap();
    let next = list_2028(&shipped, "2028.1", "2028-01-01");
    // Another process on the same database, loaded before the activation.
    let other = PrecertEngine::load(&db.store).await.unwrap();
    let standard_versions = |engine: &PrecertEngine| -> Vec<(String, Option<String>)> {
        engine
            .rules()
            .lists()
            .iter()
            .filter(|l| l.id == "standard")
            .map(|l| (l.version.clone(), l.effective_to.map(|d| d.to_string())))
            .collect()
    };
    assert_eq!(standard_versions(&other).len(), 2);

    // Only admins manage lists.
    let err = c
        .activate_rule_list(server.request(
            &provider,
            pb::ActivateRuleListRequest {
                source_name: "standard-2028.toml".into(),
                source: next.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A broken rule is named with its file and rule.
    let broken = next.replacen(
        "category = \"advanced_imaging\"",
        "category = \"advanced_imagery\"",
        1,
    );
    let v = c
        .validate_rule_list(server.request(
            &admin,
            pb::ValidateRuleListRequest {
                source_name: "standard-2028.toml".into(),
                source: broken,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!v.valid);
    assert!(
        v.errors
            .iter()
            .any(|e| e.starts_with("standard-2028.toml") && e.contains("advanced_imagery")),
        "{:?}",
        v.errors
    );

    // A second version starting the same day as 2027.1 would leave two in force.
    let twin = list_2028(&shipped, "2027.2", "2027-01-01");
    let v = c
        .validate_rule_list(server.request(
            &admin,
            pb::ValidateRuleListRequest {
                source_name: "twin.toml".into(),
                source: twin,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!v.valid);
    assert!(
        v.errors.iter().any(|e| e.contains("overlaps")),
        "{:?}",
        v.errors
    );

    let v = c
        .validate_rule_list(server.request(
            &admin,
            pb::ValidateRuleListRequest {
                source_name: "standard-2028.toml".into(),
                source: next.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(v.valid, "{:?}", v.errors);

    let activated = c
        .activate_rule_list(server.request(
            &admin,
            pb::ActivateRuleListRequest {
                source_name: "standard-2028.toml".into(),
                source: next.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .list
        .unwrap();
    assert_eq!(
        (
            activated.list_id.as_str(),
            activated.version.as_str(),
            activated.effective_from.as_str(),
            activated.effective_to.as_str(),
            activated.in_force,
            activated.source.as_str(),
        ),
        ("standard", "2028.1", "2028-01-01", "", false, "AD-001")
    );
    // The same version again is refused.
    let err = c
        .activate_rule_list(server.request(
            &admin,
            pb::ActivateRuleListRequest {
                source_name: "standard-2028.toml".into(),
                source: next,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let versions = |lists: &[pb::RuleListVersion]| -> Vec<(String, String, bool)> {
        lists
            .iter()
            .filter(|l| l.list_id == "standard")
            .map(|l| (l.version.clone(), l.effective_to.clone(), l.in_force))
            .collect()
    };
    let listed = c
        .list_rule_lists(server.request(&admin, pb::ListRuleListsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .lists;
    assert_eq!(
        versions(&listed),
        [
            ("2026.1".into(), "2026-12-31".into(), true),
            ("2027.1".into(), "2027-12-31".into(), false),
            ("2028.1".into(), String::new(), false),
        ]
    );

    // Answers follow the date of service, at once and without a restart.
    let mri_on = |date: &str| pb::CheckRequirementRequest {
        member_id: MEMBER.into(),
        rendering_provider_npi: IMAGING_IN.into(),
        diagnoses: vec!["G43.909".into()],
        line: Some(pb::ServiceLine {
            date_of_service: date.into(),
            ..line("70553", Setting::Outpatient)
        }),
    };
    for (date, version, text) in [
        (
            "2027-12-31",
            "2027.1",
            "Outpatient MRI and MR angiography need precertification.",
        ),
        (
            "2028-01-01",
            "2028.1",
            "Outpatient MRI needs precertification (2028 wording).",
        ),
    ] {
        let a = c
            .check_requirement(server.request(&provider, mri_on(date)))
            .await
            .unwrap()
            .into_inner()
            .answer
            .unwrap();
        assert_eq!(
            (a.list_version.as_str(), a.rule.unwrap().text.as_str()),
            (version, text),
            "date of service {date}"
        );
    }

    // The other process takes the new version at its next refresh (every minute).
    other.refresh(&db.store).await.unwrap();
    assert_eq!(
        standard_versions(&other),
        [
            ("2026.1".into(), Some("2026-12-31".into())),
            ("2027.1".into(), Some("2027-12-31".into())),
            ("2028.1".into(), None),
        ]
    );

    // On its date the new version is the one in force.
    server
        .clock
        .set("2028-01-01T06:00:00Z".parse().expect("instant"));
    let listed = c
        .list_rule_lists(server.request(&admin, pb::ListRuleListsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .lists;
    assert_eq!(
        versions(&listed)
            .into_iter()
            .filter(|v| v.2)
            .map(|v| v.0)
            .collect::<Vec<_>>(),
        ["2028.1"]
    );
    server.stop().await;
}

/// The shared MRI on `date`, without answers or documents.
fn bare_mri(request_id: &str, date: &str) -> pb::SubmitRequest {
    let mut req = mri(request_id, Vec::new());
    req.records.clear();
    req.lines[0].date_of_service = date.into();
    req
}

/// A request that meets the MRI rule's criteria, with the notes it asks for.
fn meets_criteria(request_id: &str) -> pb::SubmitRequest {
    mri(request_id, vec![flag("red_flag_symptoms", true)])
}

async fn gold_cards_are_earned_used_and_lost(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let admin = server.token(Role::Admin, "AD-001");
    let provider = server.token(Role::Provider, IMAGING_IN);
    let imaging = |cards: &[pb::GoldCard]| -> pb::GoldCard {
        cards
            .iter()
            .find(|g| g.provider_npi == IMAGING_IN && g.category == "advanced_imaging")
            .cloned()
            .expect("the imaging centre's standing")
    };
    let evaluate = async |c: &mut PrecertServiceClient<Channel>| {
        c.evaluate_gold_cards(server.request(&admin, pb::EvaluateGoldCardsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .gold_cards
    };

    // Four approvals are too few to judge.
    for i in 0..4 {
        let case = c
            .submit(server.request(&provider, meets_criteria(&format!("gc-{i}"))))
            .await
            .unwrap()
            .into_inner()
            .case
            .unwrap();
        assert_eq!(case.status(), pb::CaseStatus::Approved);
    }
    let card = imaging(&evaluate(&mut c).await);
    assert_eq!(
        (card.exempt, card.requests, card.change.as_str()),
        (false, 4, "not_exempt")
    );

    // Without answers the request waits for them.
    let waiting = c
        .submit(server.request(&provider, bare_mri("gc-before", "2026-12-01")))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(waiting.status(), pb::CaseStatus::PendedInformation);

    // A fifth approval: 5 of 5 over six months earns the exemption.
    c.submit(server.request(&provider, meets_criteria("gc-4")))
        .await
        .unwrap();
    let card = imaging(&evaluate(&mut c).await);
    assert_eq!(
        (
            card.exempt,
            card.requests,
            card.approvals,
            card.change.as_str()
        ),
        (true, 5, 5, "gained")
    );
    assert!((card.approval_rate - 1.0).abs() < 1e-9);
    // Another process on the database takes the exemption at its next refresh.
    let other = PrecertEngine::load(&db.store).await.unwrap();
    assert_eq!(other.gold_cards().len(), 1);
    let listed = c
        .list_gold_cards(server.request(
            &admin,
            pb::ListGoldCardsRequest {
                provider_npi: IMAGING_IN.into(),
                page: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .gold_cards;
    assert!(imaging(&listed).exempt);

    // Now the same request without answers or records is approved at once, as a gold
    // card approval.
    let approved = c
        .submit(server.request(&provider, bare_mri("gc-after", "2026-12-01")))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(approved.status(), pb::CaseStatus::Approved);
    assert_eq!(approved.lines[0].approval_basis, "gold_card");
    assert_eq!(approved.decisions[0].decided_by, "automation");

    // Seven months on, none of those decisions is in the window: the exemption is lost
    // (its own gold-card approval does not count towards keeping it).
    server.clock.advance(Duration::days(213));
    let card = imaging(&evaluate(&mut c).await);
    assert_eq!(
        (card.exempt, card.requests, card.change.as_str()),
        (false, 0, "lost")
    );
    let date = (server.clock_now() + Duration::days(7))
        .format("%Y-%m-%d")
        .to_string();
    let later = c
        .submit(server.request(&provider, bare_mri("gc-later", &date)))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(later.status(), pb::CaseStatus::PendedInformation);
    assert!(later.decisions.is_empty());
    server.stop().await;
}
