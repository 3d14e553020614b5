//! Condition-specific questionnaires and the validation of a member's answers: types,
//! options, ranges, and which questions are asked given earlier answers.

use carepath_core::Invalid;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// How a question is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionType {
    Text,
    YesNo,
    Number,
    Date,
    Choice,
}

impl QuestionType {
    pub fn as_str(self) -> &'static str {
        match self {
            QuestionType::Text => "text",
            QuestionType::YesNo => "yes_no",
            QuestionType::Number => "number",
            QuestionType::Date => "date",
            QuestionType::Choice => "choice",
        }
    }
}

/// Asks a question only when an earlier question got a given answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub question: String,
    /// `yes`/`no` for a yes-no question, an option for a choice.
    pub equals: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub id: String,
    pub text: String,
    #[serde(rename = "type")]
    pub kind: QuestionType,
    pub required: bool,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub when: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Questionnaire {
    pub id: String,
    pub version: u32,
    pub group: String,
    pub title: String,
    #[serde(rename = "question")]
    pub questions: Vec<Question>,
}

/// An answer as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum AnswerValue {
    Text(String),
    YesNo(bool),
    Number(f64),
    Date(NaiveDate),
    Choice(String),
}

impl AnswerValue {
    fn kind(&self) -> QuestionType {
        match self {
            AnswerValue::Text(_) => QuestionType::Text,
            AnswerValue::YesNo(_) => QuestionType::YesNo,
            AnswerValue::Number(_) => QuestionType::Number,
            AnswerValue::Date(_) => QuestionType::Date,
            AnswerValue::Choice(_) => QuestionType::Choice,
        }
    }

    /// The form conditions compare against.
    pub fn as_condition_value(&self) -> String {
        match self {
            AnswerValue::YesNo(true) => "yes".into(),
            AnswerValue::YesNo(false) => "no".into(),
            AnswerValue::Text(s) | AnswerValue::Choice(s) => s.clone(),
            AnswerValue::Number(n) => n.to_string(),
            AnswerValue::Date(d) => d.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub question_id: String,
    pub value: AnswerValue,
}

/// Longest free-text answer accepted.
pub const MAX_TEXT_ANSWER: usize = 4_000;

/// The outcome of checking answers that are each well-formed.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The answers kept, in questionnaire order.
    pub answers: Vec<Answer>,
    /// Required questions still unanswered, in questionnaire order.
    pub missing: Vec<String>,
}

impl Questionnaire {
    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == id)
    }

    /// Checks `answers` (field paths `answers[i]`): each must answer a question of
    /// this questionnaire that is asked given the other answers, with a value of its
    /// type. Well-formed answers come back with the required questions still open.
    pub fn check(&self, answers: &[Answer]) -> Result<Checked, Invalid> {
        let mut invalid = Invalid::new();
        for (i, a) in answers.iter().enumerate() {
            let field = format!("answers[{i}]");
            let Some(q) = self.question(&a.question_id) else {
                invalid.push(
                    format!("{field}.question_id"),
                    format!("{} is not a question of {}", a.question_id, self.id),
                );
                continue;
            };
            if answers[..i].iter().any(|b| b.question_id == a.question_id) {
                invalid.push(format!("{field}.question_id"), "answered twice");
                continue;
            }
            if a.value.kind() != q.kind {
                invalid.push(
                    format!("{field}.value"),
                    format!("{} needs a {} answer", q.id, q.kind.as_str()),
                );
                continue;
            }
            match &a.value {
                AnswerValue::Text(t) if t.trim().is_empty() => {
                    invalid.push(format!("{field}.value"), "must not be empty");
                }
                AnswerValue::Text(t) if t.chars().count() > MAX_TEXT_ANSWER => {
                    invalid.push(
                        format!("{field}.value"),
                        format!("must be at most {MAX_TEXT_ANSWER} characters"),
                    );
                }
                AnswerValue::Choice(c) if !q.options.contains(c) => invalid.push(
                    format!("{field}.value"),
                    format!("must be one of {}", q.options.join(", ")),
                ),
                AnswerValue::Number(n) if !n.is_finite() => {
                    invalid.push(format!("{field}.value"), "must be a number");
                }
                AnswerValue::Number(n) if q.min.is_some_and(|m| *n < m) => invalid.push(
                    format!("{field}.value"),
                    format!("must be at least {}", q.min.unwrap_or_default()),
                ),
                AnswerValue::Number(n) if q.max.is_some_and(|m| *n > m) => invalid.push(
                    format!("{field}.value"),
                    format!("must be at most {}", q.max.unwrap_or_default()),
                ),
                _ => {}
            }
        }
        invalid.into_result()?;

        let mut invalid = Invalid::new();
        let mut kept = Vec::new();
        let mut missing = Vec::new();
        for q in &self.questions {
            let given = answers.iter().position(|a| a.question_id == q.id);
            let asked = q.when.as_ref().is_none_or(|c| {
                kept.iter().any(|a: &Answer| {
                    a.question_id == c.question && a.value.as_condition_value() == c.equals
                })
            });
            match (given, asked) {
                (Some(i), false) => invalid.push(
                    format!("answers[{i}].question_id"),
                    format!("{} is not asked given the earlier answers", q.id),
                ),
                (Some(i), true) => kept.push(answers[i].clone()),
                (None, true) if q.required => missing.push(q.id.clone()),
                (None, _) => {}
            }
        }
        invalid.into_result()?;
        Ok(Checked {
            answers: kept,
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckd() -> Questionnaire {
        crate::shipped()
            .questionnaire_for("chronic_kidney_disease")
            .unwrap()
            .clone()
    }

    fn a(id: &str, value: AnswerValue) -> Answer {
        Answer {
            question_id: id.into(),
            value,
        }
    }

    #[test]
    fn required_questions_follow_earlier_answers() {
        let q = ckd();
        let base = vec![
            a("stage", AnswerValue::Choice("5".into())),
            a(
                "current_treatment",
                AnswerValue::Text("ACE inhibitor".into()),
            ),
            a(
                "questions_for_expert",
                AnswerValue::Text("Is this enough?".into()),
            ),
        ];
        let mut not_on_dialysis = base.clone();
        not_on_dialysis.push(a("on_dialysis", AnswerValue::YesNo(false)));
        assert!(q.check(&not_on_dialysis).unwrap().missing.is_empty());

        let mut on_dialysis = base.clone();
        on_dialysis.push(a("on_dialysis", AnswerValue::YesNo(true)));
        assert_eq!(q.check(&on_dialysis).unwrap().missing, ["dialysis_kind"]);

        assert_eq!(q.check(&base).unwrap().missing, ["on_dialysis"]);
        assert_eq!(
            q.check(&[]).unwrap().missing,
            [
                "stage",
                "on_dialysis",
                "current_treatment",
                "questions_for_expert"
            ]
        );
    }

    #[test]
    fn bad_answers_name_their_field() {
        let q = ckd();
        let cases: Vec<(Vec<Answer>, &str, &str)> = vec![
            (
                vec![a("stage", AnswerValue::Choice("7".into()))],
                "answers[0].value",
                "must be one of 1, 2, 3a, 3b, 4, 5, not told",
            ),
            (
                vec![a("stage", AnswerValue::Text("5".into()))],
                "answers[0].value",
                "stage needs a choice answer",
            ),
            (
                vec![a("latest_egfr", AnswerValue::Number(400.0))],
                "answers[0].value",
                "must be at most 150",
            ),
            (
                vec![a("shoe_size", AnswerValue::Number(9.0))],
                "answers[0].question_id",
                "shoe_size is not a question of chronic_kidney_disease",
            ),
            (
                vec![
                    a("on_dialysis", AnswerValue::YesNo(false)),
                    a("dialysis_kind", AnswerValue::Choice("peritoneal".into())),
                ],
                "answers[1].question_id",
                "dialysis_kind is not asked given the earlier answers",
            ),
        ];
        for (answers, field, description) in cases {
            let err = q.check(&answers).unwrap_err();
            assert_eq!(err.violations[0].field, field, "{answers:?}");
            assert_eq!(err.violations[0].description, description, "{answers:?}");
        }
    }
}
