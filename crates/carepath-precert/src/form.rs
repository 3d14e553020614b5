//! The form a requester fills in for one rule: its clinical questions and the
//! documents to send, versioned with the rule list. Documentation templates (a FHIR
//! Questionnaire, a screen) are rendered from it, and the answers they collect are
//! the answers a submission carries.

use serde::{Deserialize, Serialize};

use crate::check::{CheckAnswer, DocumentRequest, Requirement, RuleSummary};
use crate::load::RuleBook;
use crate::rules::{Question, RuleList};

/// What to fill in for one rule of one list version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Form {
    /// The list the rule belongs to.
    pub list_id: String,
    /// The list version the form belongs to: a new version may ask other questions.
    pub list_version: String,
    /// The rule the form is for.
    pub rule: RuleSummary,
    /// The rule's clinical questions, in order; answers are keyed by their ids.
    pub questions: Vec<Question>,
    /// The documents to send with the request.
    pub documents: Vec<DocumentRequest>,
    /// The list's label (illustrative administrative rules, not clinical guidance).
    pub notice: String,
}

impl Form {
    /// The form of `rule_id` on `list`, if the list has that rule and it asks for
    /// anything.
    pub fn of_rule(list: &RuleList, rule_id: &str) -> Option<Form> {
        let rule = list.rules.iter().find(|r| r.id == rule_id)?;
        let form = Form {
            list_id: list.id.clone(),
            list_version: list.version.clone(),
            rule: RuleSummary::of(rule),
            questions: rule.questions.clone(),
            documents: rule
                .documents
                .iter()
                .map(|d| DocumentRequest {
                    id: d.clone(),
                    text: list.document_text(d).to_owned(),
                })
                .collect(),
            notice: list.notice.clone(),
        };
        form.asks_anything().then_some(form)
    }

    /// The form a check's answer calls for: precertification is required here, the
    /// plan decides it (no program takes the request), and the rule asks for answers
    /// or documents.
    pub fn of_answer(answer: &CheckAnswer) -> Option<Form> {
        let rule = answer.rule.as_ref()?;
        if answer.requirement != Requirement::Required || answer.program.is_some() {
            return None;
        }
        let form = Form {
            list_id: answer.list.id.clone(),
            list_version: answer.list.version.clone(),
            rule: rule.clone(),
            questions: answer.questions.clone(),
            documents: answer.documents.clone(),
            notice: answer.notice.clone(),
        };
        form.asks_anything().then_some(form)
    }

    fn asks_anything(&self) -> bool {
        !self.questions.is_empty() || !self.documents.is_empty()
    }
}

impl RuleBook {
    /// The form of `rule_id` on version `version` of a list, or, without a version,
    /// on the newest version that has the rule.
    pub fn form(&self, rule_id: &str, version: Option<&str>) -> Option<Form> {
        self.lists()
            .iter()
            .rev()
            .filter(|l| version.is_none_or(|v| l.version == v))
            .find_map(|l| Form::of_rule(l, rule_id))
    }
}

#[cfg(test)]
mod tests {
    use crate::shipped;

    #[test]
    fn the_mri_form_asks_the_rule_s_questions_and_documents() {
        let book = shipped();
        let form = book.form("IMG-MRI", Some("2027.1")).expect("the MRI rule");
        assert_eq!(form.list_version, "2027.1");
        let ids: Vec<&str> = form.questions.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["red_flag_symptoms", "conservative_therapy_weeks"]);
        assert_eq!(form.documents[0].id, "clinical_notes");
        // Without a version: the newest list that has the rule.
        let newest = book.form("IMG-MRI", None).unwrap();
        let latest = book
            .lists()
            .iter()
            .map(|l| l.version.as_str())
            .max()
            .unwrap();
        assert_eq!(newest.list_version, latest);
        assert!(book.form("IMG-MRI", Some("1999.1")).is_none());
        assert!(book.form("NO-SUCH-RULE", None).is_none());
        // A rule that asks nothing has no form.
        assert!(book.form("BH-ROUTINE-OUTPATIENT", None).is_none());
    }
}
