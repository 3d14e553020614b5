//! The bounds of everything a precertification request and its case keep, in one
//! place: a request past one is refused with the field named, before anything is
//! stored, so no case grows without bound and every answer that carries cases fits in
//! a message. SECURITY.md lists them.

use std::collections::BTreeMap;

use carepath_core::Invalid;

use crate::{Answer, RecordRef};

/// The longest id a requester may give a request (the key a retry is recognised by).
pub const MAX_REQUEST_ID: usize = 128;
/// Most lines one request may carry; a larger batch is a client bug.
pub const MAX_LINES: usize = 50;
/// Most units on one line, to catch a mistyped quantity before it reaches a reviewer.
pub const MAX_UNITS: u32 = 10_000;
/// Longest inpatient stay a line may ask for, in hours (a year): a larger figure is a
/// slip, not a stay.
pub const MAX_LENGTH_OF_STAY_HOURS: u32 = 365 * 24;
/// Most diagnoses one request names.
pub const MAX_DIAGNOSES: usize = 25;
/// Most answers to clinical questions a case holds.
pub const MAX_ANSWERS: usize = 100;
/// Longest question id, in characters.
pub const MAX_QUESTION_ID: usize = 64;
/// Longest text or code answer, in characters.
pub const MAX_TEXT_ANSWER: usize = 1_000;
/// Most record references a case holds, those sent later included.
pub const MAX_RECORDS: usize = 100;
/// Longest record id or document name of a record reference, in characters.
pub const MAX_RECORD_REF: usize = 128;
/// Longest note or reason (withdrawal, appeal, approval, peer-to-peer), in
/// characters.
pub const MAX_NOTE: usize = 4_000;
/// Longest rationale of a decision, in characters.
pub const MAX_RATIONALE: usize = 4_000;
/// Longest guideline or criterion named by a decision, in characters.
pub const MAX_GUIDELINE: usize = 500;
/// Most items one request for information lists.
pub const MAX_REQUESTED_ITEMS: usize = 50;

/// Names `field` when `value` is longer than `max` characters.
pub fn check_text(invalid: &mut Invalid, field: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        invalid.push(field, format!("must be at most {max} characters"));
    }
}

/// The figures of one service line: units from 1 to [`MAX_UNITS`], a length of stay
/// of at most [`MAX_LENGTH_OF_STAY_HOURS`]. `field` is the line's path (`lines[2]`).
pub fn check_line(invalid: &mut Invalid, field: &str, line: &crate::ServiceLine) {
    if line.units == 0 || line.units > MAX_UNITS {
        invalid.push(
            format!("{field}.units"),
            format!("must be between 1 and {MAX_UNITS}"),
        );
    }
    if line
        .length_of_stay_hours
        .is_some_and(|h| h > MAX_LENGTH_OF_STAY_HOURS)
    {
        invalid.push(
            format!("{field}.length_of_stay_hours"),
            format!("must be at most {MAX_LENGTH_OF_STAY_HOURS} hours (a year)"),
        );
    }
}

/// One text, checked on its own: `Err` names `field` when it is too long.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    let mut invalid = Invalid::new();
    check_text(&mut invalid, field, value, max);
    invalid.into_result()
}

/// The answers and record references a case would hold: how many, and each one's
/// length.
pub fn check_information(
    invalid: &mut Invalid,
    answers: &BTreeMap<String, Answer>,
    records: &[RecordRef],
) {
    if answers.len() > MAX_ANSWERS {
        invalid.push(
            "answers",
            format!("a case holds at most {MAX_ANSWERS} answers"),
        );
    }
    for (id, answer) in answers {
        let short: String = id.chars().take(MAX_QUESTION_ID).collect();
        check_text(invalid, "answers.question_id", id, MAX_QUESTION_ID);
        if let Answer::Text(t) | Answer::Code(t) = answer {
            check_text(invalid, &format!("answers.{short}"), t, MAX_TEXT_ANSWER);
        }
    }
    if records.len() > MAX_RECORDS {
        invalid.push(
            "records",
            format!("a case holds at most {MAX_RECORDS} records"),
        );
    }
    for (i, record) in records.iter().enumerate() {
        check_text(
            invalid,
            &format!("records[{i}].id"),
            &record.id,
            MAX_RECORD_REF,
        );
        check_text(
            invalid,
            &format!("records[{i}].document"),
            &record.document,
            MAX_RECORD_REF,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_names_its_field() {
        let mut answers = BTreeMap::new();
        answers.insert(
            "notes".to_owned(),
            Answer::Text("x".repeat(MAX_TEXT_ANSWER + 1)),
        );
        answers.insert("ok".to_owned(), Answer::Text("x".repeat(MAX_TEXT_ANSWER)));
        let records = vec![RecordRef {
            id: "r".repeat(MAX_RECORD_REF + 1),
            document: "clinical_notes".into(),
        }];
        let mut invalid = Invalid::new();
        check_information(&mut invalid, &answers, &records);
        let fields: Vec<_> = invalid
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["answers.notes", "records[0].id"]);

        let many: Vec<_> = (0..=MAX_RECORDS)
            .map(|i| RecordRef {
                id: format!("r{i}"),
                document: "d".into(),
            })
            .collect();
        let mut invalid = Invalid::new();
        check_information(&mut invalid, &BTreeMap::new(), &many);
        assert_eq!(invalid.violations[0].field, "records");

        assert!(text("note", &"é".repeat(MAX_NOTE), MAX_NOTE).is_ok());
        let long = text("note", &"é".repeat(MAX_NOTE + 1), MAX_NOTE).unwrap_err();
        assert_eq!(long.violations[0].field, "note");
    }
}
