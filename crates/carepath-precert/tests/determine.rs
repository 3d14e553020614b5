//! Automatic determination against the shipped lists: approvals, the exact list of
//! what is missing, review routing, gold cards, and the property that automation
//! never denies.

mod common;

use carepath_core::{Icd10Code, NetworkStatus, Npi, Setting, Urgency};
use carepath_precert::{
    Answer, ApprovalBasis, CaseOutcome, Category, DetermineError, Exemption, GoldCards,
    LineOutcome, PendReason, PendedFor, Requirement, ReviewReason, determine, shipped,
};
use chrono::NaiveDate;
use common::*;
use proptest::prelude::*;
use std::sync::LazyLock;

static BOOK: LazyLock<carepath_precert::RuleBook> = LazyLock::new(shipped);

fn only_line(outcome: &CaseOutcome, d: &carepath_precert::Determination) -> LineOutcome {
    assert_eq!(d.lines.len(), 1, "{outcome:?}");
    d.lines[0].outcome.clone()
}

#[test]
fn criteria_met_approves_at_once() {
    let book = shipped();
    let mut req = request(vec![line("70553", Setting::Outpatient)]);
    req.answers = answers(&[("red_flag_symptoms", Answer::Bool(true))]);
    req.records = vec![record("clinical_notes")];
    let d = determine(&book, &req, &GoldCards::default()).unwrap();
    assert_eq!(d.outcome, CaseOutcome::Approved);
    assert_eq!(
        only_line(&d.outcome, &d),
        LineOutcome::Approved {
            basis: ApprovalBasis::CriteriaMet {
                rule: "IMG-MRI".into(),
                criteria: vec!["red_flag_symptoms == true".into()],
            }
        }
    );
    assert_eq!(d.lines[0].list.version, "2026.1");
}

#[test]
fn missing_information_is_listed_exactly() {
    let book = shipped();
    let req = request(vec![line("70553", Setting::Outpatient)]);
    let d = determine(&book, &req, &GoldCards::default()).unwrap();
    let CaseOutcome::Pended { next, missing, .. } = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(*next, PendedFor::Information);
    let ids: Vec<&str> = missing.questions.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(ids, ["red_flag_symptoms", "conservative_therapy_weeks"]);
    assert_eq!(missing.documents.len(), 1);
    assert_eq!(missing.documents[0].id, "clinical_notes");
    assert!(missing.documents[0].text.starts_with("Clinical notes"));

    // One answer in, the other still missing; the document attached.
    let mut req = req;
    req.answers = answers(&[("red_flag_symptoms", Answer::Bool(false))]);
    req.records = vec![record("clinical_notes")];
    let d = determine(&book, &req, &GoldCards::default()).unwrap();
    let CaseOutcome::Pended { missing, .. } = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    let ids: Vec<&str> = missing.questions.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(ids, ["conservative_therapy_weeks"]);
    assert!(missing.documents.is_empty());

    // Red flags approve the MRI whatever the therapy: the therapy question is then not
    // asked (its enable_when), so only the document is missing.
    let mut flagged = request(vec![line("70553", Setting::Outpatient)]);
    flagged.answers = answers(&[("red_flag_symptoms", Answer::Bool(true))]);
    let d = determine(&book, &flagged, &GoldCards::default()).unwrap();
    let CaseOutcome::Pended { missing, .. } = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert!(missing.questions.is_empty(), "{missing:?}");
    assert_eq!(missing.documents[0].id, "clinical_notes");

    // Knee arthroplasty needs 12 weeks of therapy *and* joint-space loss: with 3 weeks
    // the criteria fail whatever the imaging shows, so that question is not asked;
    // only the missing imaging report is, for the reviewer.
    let mut knee = request(vec![line("27447", Setting::Outpatient)]);
    knee.answers = answers(&[("conservative_therapy_weeks", Answer::Number(3.0))]);
    knee.records = vec![record("conservative_therapy_record")];
    let d = determine(&book, &knee, &GoldCards::default()).unwrap();
    let CaseOutcome::Pended { next, missing, .. } = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(*next, PendedFor::Information);
    assert!(missing.questions.is_empty(), "{missing:?}");
    let docs: Vec<&str> = missing.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(docs, ["imaging_reports"]);
    // With the report attached it goes straight to an orthopaedic reviewer.
    knee.records.push(record("imaging_reports"));
    let d = determine(&book, &knee, &GoldCards::default()).unwrap();
    assert!(
        matches!(
            d.outcome,
            CaseOutcome::Pended {
                next: PendedFor::ClinicalReview,
                ..
            }
        ),
        "{:?}",
        d.outcome
    );
}

#[test]
fn unmet_criteria_go_to_a_reviewer_of_the_named_specialty() {
    let book = shipped();
    let mut req = request(vec![line("70553", Setting::Outpatient)]);
    req.answers = answers(&[
        ("red_flag_symptoms", Answer::Bool(false)),
        ("conservative_therapy_weeks", Answer::Number(2.0)),
    ]);
    req.records = vec![record("clinical_notes")];
    let d = determine(&book, &req, &GoldCards::default()).unwrap();
    let LineOutcome::Pended {
        reason:
            PendReason::NeedsClinicalReview {
                reason,
                reviewer_specialty,
            },
    } = only_line(&d.outcome, &d)
    else {
        panic!("{d:?}")
    };
    assert_eq!(
        reason,
        ReviewReason::CriteriaNotMet {
            rule: "IMG-MRI".into(),
            unmet: vec![
                "red_flag_symptoms == true".into(),
                "conservative_therapy_weeks >= 6".into()
            ],
        }
    );
    assert_eq!(reviewer_specialty.unwrap().as_str(), "radiology");
    assert!(matches!(
        d.outcome,
        CaseOutcome::Pended {
            next: PendedFor::ClinicalReview,
            ..
        }
    ));
}

#[test]
fn review_always_waits_for_documents_first() {
    let book = shipped();
    let req = request(vec![line("22612", Setting::Outpatient)]);
    let d = determine(&book, &req, &GoldCards::default()).unwrap();
    assert!(matches!(
        only_line(&d.outcome, &d),
        LineOutcome::Pended {
            reason: PendReason::NeedsInformation { .. }
        }
    ));
    let mut req = req;
    req.records = [
        "imaging_reports",
        "conservative_therapy_record",
        "clinical_notes",
    ]
    .iter()
    .map(|d| record(d))
    .collect();
    let d = determine(&book, &req, &GoldCards::default()).unwrap();
    assert_eq!(
        only_line(&d.outcome, &d),
        LineOutcome::Pended {
            reason: PendReason::NeedsClinicalReview {
                reason: ReviewReason::ReviewAlways {
                    rule: "SURG-SPINE-FUSION".into()
                },
                reviewer_specialty: Some(carepath_core::Specialty::parse("neurosurgery").unwrap()),
            }
        }
    );
}

#[test]
fn gold_card_skips_criteria_and_documents() {
    let book = shipped();
    let req = request(vec![line("70553", Setting::Outpatient)]);
    let cards = GoldCards::new([Exemption {
        id: "GC-1".into(),
        npi: Npi::parse(PROVIDER_NPI).unwrap(),
        category: Category::AdvancedImaging,
        granted_on: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        review_by: NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
    }]);
    let d = determine(&book, &req, &cards).unwrap();
    assert_eq!(
        only_line(&d.outcome, &d),
        LineOutcome::Approved {
            basis: ApprovalBasis::GoldCard {
                exemption: "GC-1".into(),
                rule: "IMG-MRI".into()
            }
        }
    );
    // The exemption is per category and never covers a program rule.
    let req = request(vec![line("22612", Setting::Outpatient)]);
    assert!(!determine(&book, &req, &cards).unwrap().is_approved());
}

#[test]
fn oncology_exemptions_and_network() {
    let book = shipped();
    let d = determine(
        &book,
        &request(vec![line("J9355", Setting::Outpatient)]),
        &GoldCards::default(),
    )
    .unwrap();
    assert!(matches!(
        d.outcome,
        CaseOutcome::Pended {
            next: PendedFor::OncologyReview,
            ..
        }
    ));

    let d = determine(
        &book,
        &request(vec![line("90834", Setting::Office)]),
        &GoldCards::default(),
    )
    .unwrap();
    assert_eq!(
        only_line(&d.outcome, &d),
        LineOutcome::Approved {
            basis: ApprovalBasis::NotRequired {
                rule: Some("BH-ROUTINE-OUTPATIENT".into())
            }
        }
    );

    let mut req = request(vec![line("70553", Setting::Outpatient)]);
    req.plan.covers_out_of_network = false;
    req.servicing_provider.network = NetworkStatus::OutOfNetwork;
    let d = determine(&book, &req, &GoldCards::default()).unwrap();
    assert_eq!(
        only_line(&d.outcome, &d),
        LineOutcome::Pended {
            reason: PendReason::NeedsClinicalReview {
                reason: ReviewReason::OutOfNetworkNotCovered,
                reviewer_specialty: None,
            }
        }
    );
}

#[test]
fn case_outcome_is_the_union_and_information_comes_first() {
    let book = shipped();
    let mut req = request(vec![
        line("70553", Setting::Outpatient),
        line("J9355", Setting::Outpatient),
        line("90834", Setting::Office),
    ]);
    req.records = vec![record("clinical_notes")];
    let d = determine(&book, &req, &GoldCards::default()).unwrap();
    let CaseOutcome::Pended {
        next,
        reasons,
        missing,
    } = &d.outcome
    else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(*next, PendedFor::Information);
    assert_eq!(reasons.len(), 2);
    assert_eq!(missing.questions.len(), 2);
    assert!(matches!(d.lines[2].outcome, LineOutcome::Approved { .. }));
}

#[test]
fn bad_requests_are_invalid_with_fields() {
    let book = shipped();
    let mut req = request(vec![line("70553", Setting::Outpatient)]);
    req.answers = answers(&[("red_flag_symptoms", Answer::Text("yes".into()))]);
    req.lines[0].units = 0;
    let Err(DetermineError::Invalid(invalid)) = determine(&book, &req, &GoldCards::default())
    else {
        panic!("expected invalid")
    };
    let fields: Vec<&str> = invalid
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["lines[0].units"]);
    req.lines[0].units = 1;
    let Err(DetermineError::Invalid(invalid)) = determine(&book, &req, &GoldCards::default())
    else {
        panic!("expected invalid")
    };
    assert_eq!(invalid.violations[0].field, "answers.red_flag_symptoms");
    assert_eq!(invalid.violations[0].description, "must be a bool answer");
    assert!(matches!(
        determine(&book, &request(Vec::new()), &GoldCards::default()),
        Err(DetermineError::Invalid(_))
    ));
}

const CODES: &[&str] = &[
    "70553", "74160", "78815", "27447", "29881", "29870", "63030", "22612", "43775", "J1745",
    "J3030", "J9355", "J8521", "E0784", "E0601", "K0856", "L5301", "L8030", "G0299", "S9500",
    "90935", "92507", "58970", "93306", "93458", "78452", "77385", "64483", "90834", "90870",
    "0042T", "15823", "19357", "21210", "30520", "G0378", "59400", "59510", "99213", "99221",
];
const QUESTIONS: &[&str] = &[
    "red_flag_symptoms",
    "conservative_therapy_weeks",
    "mechanical_symptoms",
    "inpatient_level_of_care_documented",
    "expected_length_of_stay_days",
    "site_of_care",
    "labelled_indication",
    "bmi",
    "maternal_or_newborn_complication",
    "homebound",
];
const DOCS: &[&str] = &[
    "clinical_notes",
    "imaging_reports",
    "physician_order",
    "treatment_plan",
];

fn answer_for(question: &str, seed: u32) -> Answer {
    let kinds = BOOK.question_kinds().get(question).copied();
    match kinds {
        Some(carepath_precert::AnswerKind::Bool) => Answer::Bool(seed.is_multiple_of(2)),
        Some(carepath_precert::AnswerKind::Number) => Answer::Number(f64::from(seed % 50)),
        _ => Answer::Code(["office", "hospital_outpatient", "home"][seed as usize % 3].into()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn automation_never_denies(
        codes in proptest::collection::vec(0..CODES.len(), 1..5),
        settings in proptest::collection::vec(0..4usize, 5),
        facility in proptest::option::of(0..5usize),
        answered in proptest::collection::vec((0..QUESTIONS.len(), any::<u32>()), 0..6),
        docs in proptest::collection::vec(0..DOCS.len(), 0..3),
        los in proptest::option::of(0u32..200),
        oon in any::<bool>(),
        covers in any::<bool>(),
        urgent in any::<bool>(),
        cancer in any::<bool>(),
        emergency in any::<bool>(),
    ) {
        use carepath_core::ProviderKind::*;
        let book = &*BOOK;
        let kinds = [AcuteHospital, SkilledNursing, Rehabilitation, LongTermAcuteCare, Hospice];
        let lines = codes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut l = line(CODES[*c], Setting::ALL[settings[i]]);
                l.facility_kind = facility.map(|f| kinds[f]);
                l.length_of_stay_hours = los;
                l.delivery = los.map(|h| if h.is_multiple_of(2) { carepath_precert::Delivery::Vaginal } else { carepath_precert::Delivery::Caesarean });
                if emergency { l.admission = carepath_precert::Admission::Emergency; }
                l
            })
            .collect();
        let mut req = request(lines);
        req.plan.covers_out_of_network = covers;
        if oon { req.servicing_provider.network = NetworkStatus::OutOfNetwork; }
        if urgent { req.urgency = Urgency::Urgent; }
        if cancer { req.diagnoses.push(Icd10Code::parse("C50.911").unwrap()); }
        req.answers = answered.iter().map(|(q, seed)| (QUESTIONS[*q].to_owned(), answer_for(QUESTIONS[*q], *seed))).collect();
        req.records = docs.iter().map(|d| record(DOCS[*d])).collect();

        let d = determine(book, &req, &GoldCards::default()).unwrap();
        // No outcome type has a denied variant; the serialized form must not either.
        let json = serde_json::to_string(&d).unwrap();
        prop_assert!(!json.contains("denied") && !json.contains("Denied"), "{}", json);
        let all_approved = d.lines.iter().all(|l| matches!(l.outcome, LineOutcome::Approved { .. } | LineOutcome::Notified { .. }));
        // Only a notification after the fact is received without a decision.
        let notified_as_told = d.lines.iter().all(|l| {
            matches!(l.outcome, LineOutcome::Notified { .. }) == (l.requirement == Requirement::NotifyOnly)
        });
        prop_assert!(notified_as_told, "{:?}", d.lines);
        prop_assert_eq!(d.outcome == CaseOutcome::Approved, all_approved);
        if let CaseOutcome::Pended { next, missing, .. } = &d.outcome {
            prop_assert_eq!(*next == PendedFor::Information, !missing.is_empty());
        }
        prop_assert_eq!(d.lines.len(), req.lines.len());
    }
}
