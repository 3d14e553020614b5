//! Documentation templates (Da Vinci DTR): a rule's form as a FHIR Questionnaire,
//! the `$questionnaire-package` answer, and reading the operation's input into the
//! application's request for forms.
//!
//! A Questionnaire holds one group of the rule's clinical questions (their ids are
//! the linkIds, so a QuestionnaireResponse's answers are the answers a PAS request
//! carries) and one group of attachments, one per document to send (their linkIds
//! are the document ids). Pure: no I/O.

use carepath_app::precert::{CoverageAssertion, FormFor, FormRequest};
use carepath_core::Invalid;
use carepath_precert::{AnswerKind, EnableValue, Form};
use serde_json::{Value, json};

use crate::{codes, json::Node, pas::FieldMap};

/// The linkId of the group of clinical questions.
pub const QUESTIONS_GROUP: &str = "questions";
/// The linkId of the group of documents.
pub const DOCUMENTS_GROUP: &str = "documents";

/// A Questionnaire's id: the rule and the list version (`IMG-MRI-2027.1`).
pub fn questionnaire_id(form: &Form) -> String {
    format!("{}-{}", form.rule.id, form.list_version)
}

/// The rule and list version a Questionnaire id names.
pub fn parse_questionnaire_id(id: &str) -> Option<(String, String)> {
    let (rule, version) = id.rsplit_once('-')?;
    (!rule.is_empty() && !version.is_empty()).then(|| (rule.to_owned(), version.to_owned()))
}

/// A Questionnaire's canonical URL, without its version.
pub fn questionnaire_url(base: &str, form: &Form) -> String {
    format!("{base}/Questionnaire/{}", form.rule.id)
}

/// The FHIR item type of an answer kind.
fn item_type(kind: AnswerKind, has_options: bool) -> &'static str {
    match kind {
        AnswerKind::Bool => "boolean",
        AnswerKind::Number => "decimal",
        AnswerKind::Text => "string",
        AnswerKind::Code if has_options => "choice",
        AnswerKind::Code => "string",
    }
}

/// A rule's form as a Questionnaire.
pub fn questionnaire(form: &Form, base: &str) -> Value {
    let questions: Vec<Value> = form
        .questions
        .iter()
        .map(|q| {
            let mut item = json!({
                "linkId": q.id,
                "text": q.text,
                "type": item_type(q.answer, !q.options.is_empty()),
                "required": true,
            });
            if !q.options.is_empty() {
                item["answerOption"] = q
                    .options
                    .iter()
                    .map(|o| {
                        json!({"valueCoding": {
                            "system": format!("{}:{}", codes::CAREPATH_ANSWER, q.id),
                            "code": o,
                            "display": o.replace('_', " "),
                        }})
                    })
                    .collect();
            }
            if let Some(when) = &q.enable_when {
                let mut condition = json!({
                    "question": when.question,
                    "operator": if when.equals { "=" } else { "!=" },
                });
                match &when.value {
                    EnableValue::Bool(b) => condition["answerBoolean"] = json!(b),
                    EnableValue::Text(t) => {
                        let coded = form
                            .questions
                            .iter()
                            .any(|o| o.id == when.question && !o.options.is_empty());
                        if coded {
                            condition["answerCoding"] = json!({
                                "system": format!("{}:{}", codes::CAREPATH_ANSWER, when.question),
                                "code": t,
                            });
                        } else {
                            condition["answerString"] = json!(t);
                        }
                    }
                }
                item["enableWhen"] = json!([condition]);
            }
            item
        })
        .collect();
    let documents: Vec<Value> = form
        .documents
        .iter()
        .map(|d| {
            json!({
                "linkId": d.id,
                "text": d.text,
                "type": "attachment",
                "required": true,
            })
        })
        .collect();
    let mut items = Vec::new();
    if !questions.is_empty() {
        items.push(json!({
            "linkId": QUESTIONS_GROUP,
            "text": "Clinical questions",
            "type": "group",
            "item": questions,
        }));
    }
    if !documents.is_empty() {
        items.push(json!({
            "linkId": DOCUMENTS_GROUP,
            "text": "Documents to send",
            "type": "group",
            "item": documents,
        }));
    }
    json!({
        "resourceType": "Questionnaire",
        "id": questionnaire_id(form),
        "meta": {"profile": [codes::PROFILE_DTR_QUESTIONNAIRE]},
        "url": questionnaire_url(base, form),
        "version": form.list_version,
        "name": form.rule.id.replace('-', "_"),
        "title": form.rule.text,
        "status": "active",
        "subjectType": ["Patient"],
        "description": format!(
            "What to answer and send with a prior authorization request under rule {} of list {} version {}. {}",
            form.rule.id, form.list_id, form.list_version, form.notice
        ),
        "code": [{"system": codes::CAREPATH_RULE, "code": form.rule.id}],
        "item": items,
    })
}

/// A draft QuestionnaireResponse to a Questionnaire, for the order and coverage it is
/// filled in for, carrying the coverage information of the assertion that called for
/// it.
fn draft_response(form: &Form, base: &str, assertion: Option<&CoverageAssertion>) -> Value {
    let mut response = json!({
        "resourceType": "QuestionnaireResponse",
        "meta": {"profile": [codes::PROFILE_DTR_RESPONSE]},
        "questionnaire": format!("{}|{}", questionnaire_url(base, form), form.list_version),
        "status": "in-progress",
    });
    if let Some(a) = assertion {
        response["subject"] = json!({"identifier": {
            "system": codes::CAREPATH_MEMBER, "value": a.member_id.as_str()}});
        response["extension"] = json!([{
            "url": codes::EXT_COVERAGE_INFORMATION,
            "extension": [
                {"url": "coverage-assertion-id", "valueString": a.id},
                {"url": "date", "valueDate": a.asserted_on.to_string()},
            ],
        }]);
    }
    response
}

/// The `$questionnaire-package` answer: a collection Bundle per form (its
/// Questionnaire first, then a draft QuestionnaireResponse), and an outcome when
/// nothing is to be filled in.
pub fn package(forms: &[FormFor], base: &str) -> Value {
    let mut parameters: Vec<Value> = forms
        .iter()
        .map(|f| {
            let q = questionnaire(&f.form, base);
            json!({
                "name": "PackageBundle",
                "resource": {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [
                        {"fullUrl": format!("{base}/Questionnaire/{}", questionnaire_id(&f.form)), "resource": q},
                        {"resource": draft_response(&f.form, base, f.assertion.as_ref())},
                    ],
                },
            })
        })
        .collect();
    if forms.is_empty() {
        parameters.push(json!({
            "name": "Outcome",
            "resource": crate::outcome::operation_outcome([(
                "informational",
                "nothing to fill in: the orders need no documentation for prior authorization (or a gold card satisfies it)".to_owned(),
                None,
            )]),
        }));
    }
    json!({"resourceType": "Parameters", "parameter": parameters})
}

/// Reads `$questionnaire-package` input: the coverage assertion ids of the orders'
/// coverage information (or of a `context` id), and the Questionnaire canonicals
/// asked for (`{base}/Questionnaire/{rule}[|version]`).
pub fn form_request(parameters: &Value) -> Result<(FormRequest, FieldMap), Invalid> {
    let mut invalid = Invalid::new();
    let root = Node::resource(parameters);
    if root.path() != "Parameters" {
        return Err(Invalid::field(
            "Parameters",
            "send a Parameters resource (coverage, order, questionnaire, context)",
        ));
    }
    let mut request = FormRequest::default();
    let mut fields = FieldMap::new("Parameters");
    let params = root.list("parameter");
    if !params.iter().any(|p| p.str("name") == Some("coverage")) {
        invalid.push(
            root.child_path("parameter"),
            "a coverage parameter (the member's Coverage) is required",
        );
    }
    for p in &params {
        match p.str("name") {
            Some("order") => {
                let Some(resource) = p.get("resource") else {
                    invalid.push(
                        p.child_path("resource"),
                        "an order parameter holds a resource",
                    );
                    continue;
                };
                for info in resource.extensions(codes::EXT_COVERAGE_INFORMATION) {
                    if let Some(id) = info
                        .extensions("coverage-assertion-id")
                        .first()
                        .and_then(|e| e.str("valueString"))
                    {
                        fields.insert(
                            format!("assertions[{}]", request.assertions.len()),
                            info.path(),
                        );
                        request.assertions.push(id.to_owned());
                    }
                }
            }
            Some("context") => {
                if let Some(id) = p.str("valueString") {
                    fields.insert(
                        format!("assertions[{}]", request.assertions.len()),
                        p.child_path("valueString"),
                    );
                    request.assertions.push(id.to_owned());
                }
            }
            Some("questionnaire") => {
                let path = p.child_path("valueCanonical");
                let Some(canonical) = p.str("valueCanonical") else {
                    invalid.push(path, "is required");
                    continue;
                };
                let (url, version) = match canonical.split_once('|') {
                    Some((url, version)) => (url, Some(version.to_owned())),
                    None => (canonical, None),
                };
                match url.rsplit_once("/Questionnaire/") {
                    Some((_, rule)) if !rule.is_empty() && !rule.contains('/') => {
                        fields.insert(format!("rules[{}]", request.rules.len()), &path);
                        request.rules.push((rule.to_owned(), version));
                    }
                    _ => invalid.push(
                        path,
                        "is not a carepath Questionnaire (…/Questionnaire/<rule>)",
                    ),
                }
            }
            _ => {}
        }
    }
    request.assertions.dedup();
    if request.assertions.is_empty() && request.rules.is_empty() && invalid.is_empty() {
        invalid.push(
            root.child_path("parameter"),
            "name an order carrying carepath's coverage information, a context (coverage assertion id) or a questionnaire",
        );
    }
    invalid.into_result()?;
    Ok((request, fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use carepath_precert::shipped;

    #[test]
    fn the_mri_form_becomes_a_questionnaire_with_a_dependent_question() {
        let form = shipped().form("IMG-MRI", Some("2027.1")).unwrap();
        let q = questionnaire(&form, "http://x/fhir");
        assert_eq!(q["id"], "IMG-MRI-2027.1");
        assert_eq!(q["url"], "http://x/fhir/Questionnaire/IMG-MRI");
        assert_eq!(q["version"], "2027.1");
        let questions = &q["item"][0]["item"];
        assert_eq!(questions[0]["linkId"], "red_flag_symptoms");
        assert_eq!(questions[0]["type"], "boolean");
        assert_eq!(questions[1]["type"], "decimal");
        assert_eq!(
            questions[1]["enableWhen"],
            json!([{"question": "red_flag_symptoms", "operator": "=", "answerBoolean": false}])
        );
        let documents = &q["item"][1]["item"];
        assert_eq!(documents[0]["linkId"], "clinical_notes");
        assert_eq!(documents[0]["type"], "attachment");
        assert_eq!(
            parse_questionnaire_id("IMG-MRI-2027.1"),
            Some(("IMG-MRI".into(), "2027.1".into()))
        );
    }

    #[test]
    fn a_code_question_with_options_is_a_choice() {
        let form = shipped().form("IMG-PET", Some("2027.1"));
        let form = form.or_else(|| {
            shipped().lists().iter().rev().find_map(|l| {
                l.rules
                    .iter()
                    .find(|r| r.questions.iter().any(|q| !q.options.is_empty()))
                    .and_then(|r| Form::of_rule(l, &r.id))
            })
        });
        let form = form.expect("a rule with a code question");
        let q = questionnaire(&form, "http://x/fhir");
        let choice = q["item"][0]["item"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "choice")
            .expect("a choice item");
        assert!(!choice["answerOption"].as_array().unwrap().is_empty());
    }

    #[test]
    fn package_input_names_assertions_and_questionnaires() {
        let parameters = json!({"resourceType": "Parameters", "parameter": [
            {"name": "coverage", "resource": {"resourceType": "Coverage", "subscriberId": "M100001"}},
            {"name": "order", "resource": {"resourceType": "ServiceRequest", "extension": [
                {"url": codes::EXT_COVERAGE_INFORMATION, "extension": [
                    {"url": "coverage-assertion-id", "valueString": "CA-1"}]}]}},
            {"name": "questionnaire", "valueCanonical": "http://x/fhir/Questionnaire/IMG-MRI|2027.1"},
        ]});
        let (request, fields) = form_request(&parameters).unwrap();
        assert_eq!(request.assertions, ["CA-1"]);
        assert_eq!(
            request.rules,
            [("IMG-MRI".to_owned(), Some("2027.1".to_owned()))]
        );
        assert_eq!(
            fields.expression("rules[0]"),
            "Parameters.parameter[2].valueCanonical"
        );
        let bare = json!({"resourceType": "Parameters", "parameter": [
            {"name": "questionnaire", "valueCanonical": "http://elsewhere/Library/x"}]});
        let invalid = form_request(&bare).unwrap_err();
        let fields: Vec<&str> = invalid
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "Parameters.parameter",
                "Parameters.parameter[0].valueCanonical"
            ]
        );
    }
}
