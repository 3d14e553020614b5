//! Fuzzes the precertification list loader: any text either loads to a list that a
//! rule book accepts and that answers checks, or is rejected with every error naming
//! the file. A loaded auto-approval criterion, written back in list syntax, must load
//! to the same criterion (answers and audit records show criteria in that syntax).

#![no_main]

use carepath_core::{Icd10Code, NetworkStatus, Plan, PlanId, ServiceCode, Setting};
use carepath_fuzz::assert_explained;
use carepath_precert::{
    Admission, Criterion, PlanFilter, Rule, RuleBook, RuleList, ServiceLine, StayThreshold,
};
use libfuzzer_sys::fuzz_target;

const SOURCE: &str = "fuzz.toml";

/// Checks at most this many rules per input, to keep runs fast on long lists.
const MAX_CHECKED_RULES: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let list = match RuleList::from_toml(SOURCE, text) {
        Ok(list) => list,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "rejected without an error: {text:?}");
            assert_explained(&errors.to_string(), text);
            for e in &errors.0 {
                assert_eq!(e.file, SOURCE);
                assert_explained(&e.problem.to_string(), text);
            }
            return;
        }
    };
    for rule in &list.rules {
        assert!(!rule.id.trim().is_empty(), "a rule without an id loaded");
        if let Some(criterion) = &rule.auto_approve {
            assert_reloads(rule, criterion);
        }
    }
    let twice = RuleBook::from_sources([(SOURCE, text), ("again.toml", text)])
        .expect_err("the same list version loaded twice");
    assert_explained(&twice.to_string(), text);

    let book = RuleBook::from_lists(vec![list]).expect("one list is never ambiguous");
    let list = &book.lists()[0];
    let plan = plan_for(&list.applies_to);
    for rule in list.rules.iter().take(MAX_CHECKED_RULES) {
        let (line, diagnoses) = line_for(rule, list.effective_from);
        let check = book
            .check(&plan, NetworkStatus::InNetwork, &line, &diagnoses)
            .expect("the list is in force on its first day for a plan it applies to");
        let answer = check.to_answer();
        assert!(!answer.explanation.trim().is_empty());
        serde_json::to_string(&answer).expect("an answer serializes");
        let out_of_network = book
            .check(&plan, NetworkStatus::OutOfNetwork, &line, &diagnoses)
            .expect("the list is in force");
        out_of_network.to_answer();
    }
});

/// A plan the list applies to.
fn plan_for(filter: &PlanFilter) -> Plan {
    let (id, pcm) = match filter {
        PlanFilter::AllPlans => (PlanId::parse("PLAN-FUZZ").expect("a plan id"), true),
        PlanFilter::PreferredCareManagement(pcm) => {
            (PlanId::parse("PLAN-FUZZ").expect("a plan id"), *pcm)
        }
        PlanFilter::PlanIds(ids) => (ids[0].clone(), false),
    };
    Plan {
        id,
        name: "Fuzz plan".into(),
        preferred_care_management: pcm,
        covers_out_of_network: false,
    }
}

/// A service line (and diagnoses) shaped after what the rule matches.
fn line_for(rule: &Rule, date: chrono::NaiveDate) -> (ServiceLine, Vec<Icd10Code>) {
    let m = &rule.matcher;
    let code = m
        .codes
        .first()
        .or_else(|| m.ranges.first().map(|r| &r.to))
        .cloned()
        .unwrap_or_else(|| ServiceCode::parse("99223").expect("a service code"));
    let line = ServiceLine {
        code,
        units: m.units_over.map_or(1, |u| u.saturating_add(1)),
        date_of_service: date,
        setting: m.settings.first().copied().unwrap_or(Setting::Outpatient),
        facility_kind: m.facility_kinds.first().copied(),
        length_of_stay_hours: m.length_of_stay.map(|t| match t {
            StayThreshold::OverHours(h) => h.saturating_add(1),
            StayThreshold::AtMostHours(h) => h,
        }),
        delivery: m.delivery,
        admission: m.admission.unwrap_or(Admission::Elective),
    };
    let diagnoses = m.diagnoses.iter().map(|r| r.from.clone()).collect();
    (line, diagnoses)
}

/// Writes `criterion` back into a minimal list with the rule's questions and loads it.
fn assert_reloads(rule: &Rule, criterion: &Criterion) {
    let questions: Vec<toml::Value> = rule
        .questions
        .iter()
        .map(|q| {
            let mut t = toml::Table::new();
            t.insert("id".into(), q.id.clone().into());
            t.insert("text".into(), q.text.clone().into());
            t.insert("answer".into(), q.answer.as_str().into());
            t.into()
        })
        .collect();
    let mut r = toml::Table::new();
    r.insert("id".into(), "R-1".into());
    r.insert("text".into(), "Round trip.".into());
    r.insert("category".into(), "advanced_imaging".into());
    r.insert("effect".into(), "required".into());
    r.insert("codes".into(), vec![toml::Value::from("70553")].into());
    r.insert("questions".into(), questions.into());
    r.insert(
        "auto_approve".into(),
        toml::Value::try_from(criterion).expect("a criterion serializes"),
    );
    let mut doc = toml::Table::new();
    doc.insert("id".into(), "round-trip".into());
    doc.insert("version".into(), "1".into());
    doc.insert("title".into(), "Round trip".into());
    doc.insert("effective_from".into(), "2026-01-01".into());
    doc.insert("notice".into(), "Round trip.".into());
    doc.insert("rules".into(), vec![toml::Value::from(r)].into());
    let text = toml::to_string(&doc).expect("the list serializes");
    let list = RuleList::from_toml("round-trip.toml", &text).unwrap_or_else(|e| {
        panic!(
            "criterion {criterion} of rule {} does not load again:\n{e}\n{text}",
            rule.id
        )
    });
    assert_eq!(
        list.rules[0].auto_approve.as_ref(),
        Some(criterion),
        "criterion of rule {} reads back differently from\n{text}",
        rule.id
    );
}
