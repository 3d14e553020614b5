//! Fuzzes the second-opinion reference data loader and questionnaire answers.
//!
//! One input holds files by name (see `carepath_fuzz::split_files`): `groups.toml`,
//! `questionnaires.toml` (the default for text before any header), `records.toml`,
//! and optionally `answers.json`, a JSON array of answers. A file the input does not
//! hold is taken from the shipped data. The data either loads, and every questionnaire
//! then checks answers without panicking and explains each rejection, or it is
//! rejected with every problem explained.

#![no_main]

use carepath_fuzz::{assert_explained, split_files};
use carepath_secondopinion::{
    Answer, AnswerValue, Catalogue, FILES, Question, QuestionType, Questionnaire,
};
use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;

const SHIPPED: [&str; 3] = [
    include_str!("../../data/secondopinion/groups.toml"),
    include_str!("../../data/secondopinion/questionnaires.toml"),
    include_str!("../../data/secondopinion/records.toml"),
];

/// Checks answers for at most this many questionnaires per input.
const MAX_CHECKED: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = split_files(text, "questionnaires.toml");
    let file = |i: usize| {
        let name = FILES[i];
        let text = files
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map_or(SHIPPED[i], |(_, t)| *t);
        (name, text)
    };
    let catalogue = match Catalogue::load(file(0), file(1), file(2)) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.0.is_empty(), "rejected without a problem");
            assert_explained(&e.to_string(), text);
            for p in &e.0 {
                assert_explained(&p.message, text);
                assert!(FILES.contains(&p.file.as_str()), "unknown file {}", p.file);
            }
            return;
        }
    };
    let given: Option<Vec<Answer>> = files
        .iter()
        .find(|(n, _)| *n == "answers.json")
        .and_then(|(_, json)| serde_json::from_str(json).ok());
    for group in catalogue.groups() {
        assert!(!group.id.trim().is_empty(), "a group without an id loaded");
        for range in &group.diagnoses {
            assert!(catalogue.group_of(&range.from).is_some(), "{range:?}");
        }
        let Some(questionnaire) = catalogue.questionnaire_for(&group.id) else {
            panic!("group {} loaded without a questionnaire", group.id);
        };
        let requirements = catalogue.requirements_for(&group.id);
        assert!(
            !requirements.is_empty(),
            "group {} requires no record",
            group.id
        );
        for r in &requirements {
            assert!(
                !r.id.trim().is_empty(),
                "a requirement without an id loaded"
            );
            assert!(
                !r.label.trim().is_empty(),
                "requirement {} has no label",
                r.id
            );
        }
        assert_sound(questionnaire);
    }
    for group in catalogue.groups().iter().take(MAX_CHECKED) {
        let Some(questionnaire) = catalogue.questionnaire_for(&group.id) else {
            continue;
        };
        let answers = match &given {
            Some(answers) => answers.clone(),
            None => questionnaire.questions.iter().map(answer_to).collect(),
        };
        match questionnaire.check(&answers) {
            Ok(checked) => {
                for a in &checked.answers {
                    assert!(questionnaire.question(&a.question_id).is_some());
                }
                for id in &checked.missing {
                    assert!(questionnaire.question(id).is_some_and(|q| q.required));
                }
            }
            Err(invalid) => {
                assert!(!invalid.violations.is_empty(), "rejected without a reason");
                for v in &invalid.violations {
                    assert_explained(&v.field, text);
                    assert_explained(&v.description, text);
                }
            }
        }
    }
});

/// What a loaded questionnaire must be: named, and with bounds a number can be
/// compared against.
fn assert_sound(q: &Questionnaire) {
    assert!(
        !q.id.trim().is_empty(),
        "a questionnaire without an id loaded"
    );
    assert!(
        !q.title.trim().is_empty(),
        "questionnaire {} has no title",
        q.id
    );
    for question in &q.questions {
        for bound in [question.min, question.max].into_iter().flatten() {
            assert!(
                bound.is_finite(),
                "question {} of {} loaded with bound {bound}",
                question.id,
                q.id
            );
        }
    }
}

/// An answer of the question's type, within its bounds.
fn answer_to(q: &Question) -> Answer {
    let value = match q.kind {
        QuestionType::Text => AnswerValue::Text("Fuzz".into()),
        QuestionType::YesNo => AnswerValue::YesNo(true),
        QuestionType::Number => AnswerValue::Number(q.min.or(q.max).unwrap_or(1.0)),
        QuestionType::Date => {
            AnswerValue::Date(NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date"))
        }
        QuestionType::Choice => AnswerValue::Choice(q.options.first().cloned().unwrap_or_default()),
    };
    Answer {
        question_id: q.id.clone(),
        value,
    }
}
