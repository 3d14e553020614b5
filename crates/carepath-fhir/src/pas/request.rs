//! A PAS request Bundle read into the application's [`SubmitRequest`], and the map
//! from the application's field names back to the FHIR elements they came from.

use std::collections::HashMap;

use carepath_app::precert::SubmitRequest;
use carepath_core::{
    Icd10Code, Invalid, MemberId, Npi, ProviderKind, ServiceCode, Setting, Urgency,
};
use carepath_precert::{Admission, Answer, MAX_LINES, MAX_REQUEST_ID, RecordRef, ServiceLine};
use chrono::NaiveDate;
use serde_json::Value;

use crate::{
    codes,
    json::{Entries, Node},
};

/// Most supporting-information entries read from one Claim.
pub const MAX_SUPPORTING_INFO: usize = 100;
/// Most diagnoses read from one Claim.
pub const MAX_DIAGNOSES: usize = 25;
/// Most answers read from one QuestionnaireResponse.
pub const MAX_ANSWERS: usize = 200;

/// The Claim's identifier, echoed on the ClaimResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimIdentifier {
    /// The identifier's system, when the Claim gave one.
    pub system: Option<String>,
    /// The requester's id of the request.
    pub value: String,
}

/// A PAS request read: the use case's command, what the response echoes, and where
/// each of the command's fields came from.
#[derive(Debug, Clone)]
pub struct PasSubmission {
    /// The command for the precertification use case.
    pub request: SubmitRequest,
    /// The Claim's identifier.
    pub claim_identifier: ClaimIdentifier,
    /// The request Bundle's identifier, echoed on the response Bundle.
    pub bundle_identifier: Option<Value>,
    /// The application's field names and the FHIR elements they were read from.
    pub fields: FieldMap,
}

/// From the application's field names (`lines[0].service_code`) to the FHIR
/// elements they were read from (`Claim.item[0].productOrService`).
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    paths: HashMap<String, String>,
    fallback: String,
}

impl FieldMap {
    /// A map whose unknown fields name `fallback`.
    pub fn new(fallback: &str) -> Self {
        FieldMap {
            paths: HashMap::new(),
            fallback: fallback.to_owned(),
        }
    }

    /// Records that `field` came from `path`.
    pub fn insert(&mut self, field: impl Into<String>, path: impl Into<String>) {
        self.paths.insert(field.into(), path.into());
    }

    /// The FHIR element of an application field: the field itself, else its longest
    /// recorded prefix (`lines[0]` for `lines[0].units`), else the fallback.
    pub fn expression(&self, field: &str) -> String {
        let mut key = field;
        loop {
            if let Some(path) = self.paths.get(key) {
                return path.clone();
            }
            match key.rfind(['.', '[']) {
                Some(at) => key = &key[..at],
                None => return self.fallback.clone(),
            }
        }
    }
}

/// Reads a PAS request Bundle. Every problem is named by its FHIR element; nothing
/// is partly read.
pub fn submission(bundle: &Value) -> Result<PasSubmission, Invalid> {
    let mut invalid = Invalid::new();
    let entries = Entries::of(bundle);
    let claim = the_claim(bundle, &entries, "request")?;
    let mut fields = FieldMap::new("Claim");

    if claim.str("use") != Some("preauthorization") {
        invalid.push(claim.child_path("use"), "must be 'preauthorization'");
    }
    let claim_identifier = claim_identifier(&claim, &mut invalid);
    fields.insert("request_id", claim.child_path("identifier"));

    let (member_id, member_path) = member(&claim, &entries, &mut invalid);
    fields.insert("member_id", member_path);

    let requesting_path = claim.child_path("provider");
    let requesting = claim
        .get("provider")
        .and_then(|p| provider_npi(&p, &entries, &mut invalid));
    if claim.get("provider").is_none() {
        invalid.push(&requesting_path, "is required: the requesting provider");
    }
    fields.insert("requesting_provider_npi", &requesting_path);
    let care_team = claim.list("careTeam");
    let (servicing, servicing_path) = match care_team.first().and_then(|c| c.get("provider")) {
        Some(p) => (
            provider_npi(&p, &entries, &mut invalid),
            p.path().to_owned(),
        ),
        None => (requesting.clone(), requesting_path.clone()),
    };
    fields.insert("servicing_provider_npi", servicing_path);

    let items = claim.list("item");
    fields.insert("lines", claim.child_path("item"));
    if items.is_empty() {
        invalid.push(claim.child_path("item"), "at least one item is required");
    } else if items.len() > MAX_LINES {
        invalid.push(
            claim.child_path("item"),
            format!("at most {MAX_LINES} items"),
        );
    }
    let inpatient_claim = claim
        .get("type")
        .and_then(|t| t.code_in(&[codes::CLAIM_TYPE]))
        == Some("institutional");
    let lines: Vec<ServiceLine> = items
        .iter()
        .take(MAX_LINES)
        .enumerate()
        .filter_map(|(i, item)| {
            fields.insert(format!("lines[{i}]"), item.path());
            fields.insert(
                format!("lines[{i}].service_code"),
                item.child_path("productOrService"),
            );
            fields.insert(
                format!("lines[{i}].date_of_service"),
                item.child_path("servicedDate"),
            );
            fields.insert(format!("lines[{i}].units"), item.child_path("quantity"));
            for f in ["setting", "facility_kind"] {
                fields.insert(
                    format!("lines[{i}].{f}"),
                    item.child_path("locationCodeableConcept"),
                );
            }
            service_line(item, inpatient_claim, &mut invalid)
        })
        .collect();

    let diagnosis_nodes = claim.list("diagnosis");
    fields.insert("diagnoses", claim.child_path("diagnosis"));
    if diagnosis_nodes.is_empty() {
        invalid.push(
            claim.child_path("diagnosis"),
            "at least one ICD-10-CM diagnosis is required",
        );
    } else if diagnosis_nodes.len() > MAX_DIAGNOSES {
        invalid.push(
            claim.child_path("diagnosis"),
            format!("at most {MAX_DIAGNOSES} diagnoses"),
        );
    }
    let diagnoses: Vec<Icd10Code> = diagnosis_nodes
        .iter()
        .take(MAX_DIAGNOSES)
        .enumerate()
        .filter_map(|(i, d)| {
            let path = d.child_path("diagnosisCodeableConcept");
            fields.insert(format!("diagnoses[{i}]"), &path);
            let code = d
                .get("diagnosisCodeableConcept")
                .and_then(|c| c.code_in(&[codes::ICD10CM]));
            match code {
                Some(code) => parse(&mut invalid, &path, code, Icd10Code::parse),
                None => {
                    invalid.push(path, format!("needs a coding in {}", codes::ICD10CM));
                    None
                }
            }
        })
        .collect();

    let urgency = match claim
        .get("priority")
        .and_then(|p| p.code_in(&[codes::PROCESS_PRIORITY]))
    {
        Some("stat") => Urgency::Urgent,
        _ => Urgency::Routine,
    };

    let (answers, records, mut assertions) =
        supporting_info(&claim, &entries, &mut fields, &mut invalid);
    // The orders the items request may carry the coverage information given when
    // they were ordered (Da Vinci CRD).
    for item in &items {
        for service in item.extensions(codes::EXT_REQUESTED_SERVICE) {
            let Some(reference) = service.get("valueReference") else {
                continue;
            };
            if let Some(order) = entries.resolve(&reference) {
                coverage_assertions(&Node::resource(order), &mut assertions);
            }
        }
    }
    for (i, (_, path)) in assertions.iter().enumerate() {
        fields.insert(format!("coverage_assertions[{i}]"), path);
    }

    invalid.into_result()?;
    let (Some(member_id), Some(requesting), Some(servicing)) = (member_id, requesting, servicing)
    else {
        return Err(Invalid::field("Claim", "the request's parties are missing"));
    };
    Ok(PasSubmission {
        request: SubmitRequest {
            request_id: claim_identifier.value.clone(),
            member_id,
            requesting_npi: requesting,
            servicing_npi: servicing,
            lines,
            diagnoses,
            urgency,
            answers,
            records,
            coverage_assertions: assertions.into_iter().map(|(id, _)| id).collect(),
        },
        claim_identifier,
        bundle_identifier: bundle.get("identifier").cloned(),
        fields,
    })
}

/// The one Claim of a PAS Bundle (`kind`: request or inquiry).
pub(crate) fn the_claim<'a>(
    bundle: &Value,
    entries: &Entries<'a>,
    kind: &str,
) -> Result<Node<'a>, Invalid> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Invalid::field(
            "Bundle",
            format!("the body must be a PAS {kind} Bundle (resourceType Bundle)"),
        ));
    }
    match entries.of_type("Claim").as_slice() {
        [claim] => Ok(Node::resource(claim)),
        claims => Err(Invalid::field(
            "Bundle.entry",
            format!(
                "a PAS {kind} Bundle carries exactly one Claim (found {})",
                claims.len()
            ),
        )),
    }
}

/// The Claim's identifier: the first with a value, bounded.
pub(crate) fn claim_identifier(claim: &Node<'_>, invalid: &mut Invalid) -> ClaimIdentifier {
    let path = claim.child_path("identifier");
    let identifier = claim
        .list("identifier")
        .into_iter()
        .find(|i| i.str("value").is_some());
    let Some(identifier) = identifier else {
        invalid.push(path, "is required: the requester's id of the request");
        return ClaimIdentifier {
            system: None,
            value: String::new(),
        };
    };
    let value = identifier.str("value").unwrap_or_default();
    if value.len() > MAX_REQUEST_ID {
        invalid.push(
            identifier.child_path("value"),
            format!("must be at most {MAX_REQUEST_ID} characters"),
        );
    }
    ClaimIdentifier {
        system: identifier.str("system").map(str::to_owned),
        value: value.to_owned(),
    }
}

/// The member: the Patient's identifier in carepath's member-id system, else the
/// Coverage's subscriber id, else a Patient identifier typed MB (member number). Returns the member and the element it was read from.
pub(crate) fn member(
    claim: &Node<'_>,
    entries: &Entries<'_>,
    invalid: &mut Invalid,
) -> (Option<MemberId>, String) {
    let patient_path = claim.child_path("patient");
    let Some(patient_ref) = claim.get("patient") else {
        invalid.push(
            patient_path,
            "is required: a reference to the member's Patient",
        );
        return (None, "Claim.patient".into());
    };
    let Some(patient) = entries.resolve(&patient_ref) else {
        invalid.push(
            patient_ref.child_path("reference"),
            "must reference a Patient in the Bundle",
        );
        return (None, patient_path);
    };
    let patient = Node::resource(patient);
    if let Some(id) = patient.identifier_in(codes::CAREPATH_MEMBER) {
        let path = patient.child_path("identifier");
        return (parse(invalid, &path, id, MemberId::parse), path);
    }
    let coverage = claim
        .list("insurance")
        .iter()
        .filter_map(|i| i.get("coverage"))
        .find_map(|c| entries.resolve(&c))
        .map(Node::resource);
    if let Some(coverage) = coverage
        && let Some(subscriber) = coverage.str("subscriberId")
    {
        let path = coverage.child_path("subscriberId");
        return (parse(invalid, &path, subscriber, MemberId::parse), path);
    }
    // A member number typed as such (identifier type MB).
    let typed = patient.list("identifier").into_iter().find(|i| {
        i.get("type")
            .is_some_and(|t| t.codings().iter().any(|(_, code)| *code == "MB"))
    });
    if let Some(value) = typed.as_ref().and_then(|i| i.str("value")) {
        let path = patient.child_path("identifier");
        return (parse(invalid, &path, value, MemberId::parse), path);
    }
    let path = patient.child_path("identifier");
    invalid.push(
        &path,
        format!(
            "needs the member id: an identifier in {} (or type MB), or the Coverage's subscriberId",
            codes::CAREPATH_MEMBER
        ),
    );
    (None, path)
}

/// The NPI of the provider a reference points to: an Organization, a Practitioner,
/// or a PractitionerRole's practitioner or organization.
pub(crate) fn provider_npi(
    reference: &Node<'_>,
    entries: &Entries<'_>,
    invalid: &mut Invalid,
) -> Option<Npi> {
    // A logical reference by identifier needs no entry.
    if let Some(identifier) = reference.get("identifier")
        && identifier.str("system") == Some(codes::NPI)
        && let Some(value) = identifier.str("value")
    {
        return parse(invalid, &identifier.child_path("value"), value, Npi::parse);
    }
    let Some(resource) = entries.resolve(reference) else {
        invalid.push(
            reference.child_path("reference"),
            "must reference an Organization, Practitioner or PractitionerRole in the Bundle",
        );
        return None;
    };
    let node = Node::resource(resource);
    let resource = if node.path() == "PractitionerRole" {
        let target = node
            .get("practitioner")
            .or_else(|| node.get("organization"))
            .and_then(|r| entries.resolve(&r));
        match target {
            Some(r) => Node::resource(r),
            None => {
                invalid.push(
                    node.child_path("practitioner"),
                    "must reference a Practitioner in the Bundle",
                );
                return None;
            }
        }
    } else {
        node
    };
    match resource.identifier_in(codes::NPI) {
        Some(npi) => parse(invalid, &resource.child_path("identifier"), npi, Npi::parse),
        None => {
            invalid.push(
                resource.child_path("identifier"),
                format!("needs an identifier in {}", codes::NPI),
            );
            None
        }
    }
}

/// One Claim item as a service line.
fn service_line(
    item: &Node<'_>,
    institutional: bool,
    invalid: &mut Invalid,
) -> Option<ServiceLine> {
    let service_path = item.child_path("productOrService");
    let code = match item
        .get("productOrService")
        .and_then(|p| p.code_in(&[codes::CPT, codes::HCPCS]))
    {
        Some(code) => parse(invalid, &service_path, code, ServiceCode::parse),
        None => {
            invalid.push(
                service_path,
                format!(
                    "needs a CPT ({}) or HCPCS ({}) coding",
                    codes::CPT,
                    codes::HCPCS
                ),
            );
            None
        }
    };
    let date = match (item.get("servicedDate"), item.get("servicedPeriod")) {
        (Some(d), _) => date(invalid, &d),
        (None, Some(p)) => match p.get("start") {
            Some(start) => date(invalid, &start),
            None => {
                invalid.push(p.child_path("start"), "is required");
                None
            }
        },
        (None, None) => {
            invalid.push(
                item.child_path("servicedDate"),
                "is required (or servicedPeriod.start)",
            );
            None
        }
    };
    let place = place_of_service(item, institutional, invalid);
    let units = match item.get("quantity").and_then(|q| q.get("value")) {
        None => Some(1),
        Some(v) => match v.value().as_f64() {
            Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => Some(n as u32),
            _ => {
                invalid.push(v.path(), "must be a whole number of at least 1");
                None
            }
        },
    };
    let length_of_stay_hours = item
        .get("servicedPeriod")
        .and_then(|p| Some((p.str("start")?, p.str("end")?)))
        .and_then(|(s, e)| Some((day(s)?, day(e)?)))
        .map(|(s, e)| u32::try_from((e - s).num_days().max(0) * 24).unwrap_or(u32::MAX))
        .filter(|h| *h > 0);
    let (setting, facility_kind) = place?;
    Some(ServiceLine {
        code: code?,
        units: units?,
        date_of_service: date?,
        setting,
        facility_kind,
        length_of_stay_hours: if setting == Setting::Inpatient {
            length_of_stay_hours
        } else {
            None
        },
        delivery: None,
        admission: Admission::Elective,
    })
}

/// The setting (and facility kind, for a stay) from the item's place of service.
fn place_of_service(
    item: &Node<'_>,
    institutional: bool,
    invalid: &mut Invalid,
) -> Option<(Setting, Option<ProviderKind>)> {
    let path = item.child_path("locationCodeableConcept");
    let Some(code) = item
        .get("locationCodeableConcept")
        .and_then(|l| l.code_in(&[codes::PLACE_OF_SERVICE]))
    else {
        invalid.push(
            path,
            format!(
                "needs a place-of-service coding in {}",
                codes::PLACE_OF_SERVICE
            ),
        );
        return None;
    };
    let Some(place) = setting_of_place(code) else {
        invalid.push(path, unknown_place(code));
        return None;
    };
    if place.0 == Setting::Inpatient && !institutional {
        tracing::debug!(
            code,
            "an inpatient place of service on a professional claim"
        );
    }
    Some(place)
}

/// The setting (and facility kind, for a stay) of a CMS place-of-service code, if it
/// is one carepath reviews.
pub(crate) fn setting_of_place(code: &str) -> Option<(Setting, Option<ProviderKind>)> {
    Some(match code {
        "11" => (Setting::Office, None),
        "12" => (Setting::Home, None),
        "19" | "22" | "24" => (Setting::Outpatient, None),
        "21" => (Setting::Inpatient, Some(ProviderKind::AcuteHospital)),
        "31" | "32" => (Setting::Inpatient, Some(ProviderKind::SkilledNursing)),
        "61" => (Setting::Inpatient, Some(ProviderKind::Rehabilitation)),
        "34" => (Setting::Inpatient, Some(ProviderKind::Hospice)),
        _ => return None,
    })
}

/// Why a place-of-service code is refused.
pub(crate) fn unknown_place(code: &str) -> String {
    format!(
        "place of service {code:?} is not one carepath reviews (11, 12, 19, 21, 22, 24, 31, 32, 34, 61)"
    )
}

/// Answers (from QuestionnaireResponses) and records (from DocumentReferences) the
/// Claim's supporting information points to.
type Supporting = (Vec<(String, Answer)>, Vec<RecordRef>, Vec<(String, String)>);

/// The coverage assertion ids (with where each was read) of a resource's
/// coverage-information extensions, each once.
fn coverage_assertions(resource: &Node<'_>, out: &mut Vec<(String, String)>) {
    for info in resource.extensions(codes::EXT_COVERAGE_INFORMATION) {
        for id in info.extensions("coverage-assertion-id") {
            if let Some(value) = id.str("valueString")
                && !out.iter().any(|(known, _)| known == value)
            {
                out.push((value.to_owned(), id.child_path("valueString")));
            }
        }
    }
}

fn supporting_info(
    claim: &Node<'_>,
    entries: &Entries<'_>,
    fields: &mut FieldMap,
    invalid: &mut Invalid,
) -> Supporting {
    let mut answers: Vec<(String, Answer)> = Vec::new();
    let mut records = Vec::new();
    let mut assertions = Vec::new();
    let infos = claim.list("supportingInfo");
    if infos.len() > MAX_SUPPORTING_INFO {
        invalid.push(
            claim.child_path("supportingInfo"),
            format!("at most {MAX_SUPPORTING_INFO} entries"),
        );
        return (answers, records, assertions);
    }
    for info in infos {
        let Some(reference) = info.get("valueReference") else {
            continue;
        };
        let Some(resource) = entries.resolve(&reference) else {
            invalid.push(
                reference.child_path("reference"),
                "must reference a QuestionnaireResponse or DocumentReference in the Bundle",
            );
            continue;
        };
        let resource = Node::resource(resource);
        match resource.path() {
            "QuestionnaireResponse" => {
                questionnaire_answers(&resource, &mut answers, &mut records, fields, invalid);
                coverage_assertions(&resource, &mut assertions);
            }
            "DocumentReference" => {
                let i = records.len();
                let path = resource.child_path("type");
                fields.insert(format!("records[{i}]"), resource.path());
                fields.insert(format!("records[{i}].document"), &path);
                fields.insert(format!("records[{i}].id"), resource.child_path("id"));
                let document = resource
                    .get("type")
                    .and_then(|t| t.code_in(&[codes::CAREPATH_DOCUMENT]));
                let id = resource.str("id").or_else(|| {
                    resource
                        .list("identifier")
                        .first()
                        .and_then(|i| i.str("value"))
                });
                match (document, id) {
                    (Some(document), Some(id)) => records.push(RecordRef {
                        id: id.to_owned(),
                        document: document.to_owned(),
                    }),
                    (None, _) => invalid.push(
                        path,
                        format!(
                            "needs a coding in {} naming the document (e.g. clinical_notes)",
                            codes::CAREPATH_DOCUMENT
                        ),
                    ),
                    (_, None) => invalid.push(resource.child_path("id"), "is required"),
                }
            }
            _ => {}
        }
    }
    (answers, records, assertions)
}

/// The answers of a QuestionnaireResponse: each item's linkId is a question id, or,
/// for an attachment, the id of the document it is (its url, else its title, names
/// the record).
fn questionnaire_answers(
    response: &Node<'_>,
    answers: &mut Vec<(String, Answer)>,
    records: &mut Vec<RecordRef>,
    fields: &mut FieldMap,
    invalid: &mut Invalid,
) {
    let mut items = Vec::new();
    flatten_items(response, &mut items);
    if items.len() > MAX_ANSWERS {
        invalid.push(
            response.child_path("item"),
            format!("at most {MAX_ANSWERS} answered items"),
        );
        return;
    }
    for item in items {
        let Some(link) = item.str("linkId") else {
            invalid.push(item.child_path("linkId"), "is required");
            continue;
        };
        let Some(answer) = item.list("answer").into_iter().next() else {
            continue;
        };
        if let Some(attachment) = answer.get("valueAttachment") {
            let i = records.len();
            fields.insert(format!("records[{i}]"), item.path());
            fields.insert(format!("records[{i}].document"), item.child_path("linkId"));
            let id_path = attachment.child_path("url");
            fields.insert(format!("records[{i}].id"), &id_path);
            match attachment.str("url").or_else(|| attachment.str("title")) {
                Some(id) => records.push(RecordRef {
                    id: id.to_owned(),
                    document: link.to_owned(),
                }),
                None => invalid.push(
                    id_path,
                    "an attachment needs a url (or a title) naming the record",
                ),
            }
            continue;
        }
        let value = if let Some(b) = answer.value().get("valueBoolean").and_then(Value::as_bool) {
            Answer::Bool(b)
        } else if let Some(n) = answer
            .value()
            .get("valueDecimal")
            .or_else(|| answer.value().get("valueInteger"))
            .and_then(Value::as_f64)
        {
            Answer::Number(n)
        } else if let Some(s) = answer.str("valueString") {
            Answer::Text(s.to_owned())
        } else if let Some(c) = answer.get("valueCoding").and_then(|c| c.str("code")) {
            Answer::Code(c.trim().to_uppercase())
        } else {
            invalid.push(
                answer.path(),
                "needs valueBoolean, valueDecimal, valueInteger, valueString, valueCoding or valueAttachment",
            );
            continue;
        };
        let i = answers.len();
        fields.insert(format!("answers[{i}]"), item.path());
        fields.insert(
            format!("answers[{i}].question_id"),
            item.child_path("linkId"),
        );
        if answers.iter().any(|(known, _)| known == link) {
            invalid.push(item.child_path("linkId"), "is answered twice");
        } else {
            answers.push((link.to_owned(), value));
        }
    }
}

/// The items of a QuestionnaireResponse with answers, nested groups included.
fn flatten_items<'a>(node: &Node<'a>, out: &mut Vec<Node<'a>>) {
    for item in node.list("item") {
        if out.len() > MAX_ANSWERS {
            return;
        }
        if item.get("answer").is_some() {
            out.push(item.clone());
        }
        flatten_items(&item, out);
    }
}

fn day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
}

fn date(invalid: &mut Invalid, node: &Node<'_>) -> Option<NaiveDate> {
    match node.value().as_str().and_then(day) {
        Some(d) => Some(d),
        None => {
            invalid.push(node.path(), "must be a date (YYYY-MM-DD)");
            None
        }
    }
}

fn parse<T, E: std::fmt::Display>(
    invalid: &mut Invalid,
    path: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Option<T> {
    match parse(value) {
        Ok(v) => Some(v),
        Err(e) => {
            invalid.push(path, e.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn approved() -> Value {
        serde_json::from_str(include_str!("../../examples/pas-mri-approved.json")).unwrap()
    }

    fn claim_mut(bundle: &mut Value) -> &mut Value {
        &mut bundle["entry"][0]["resource"]
    }

    fn expressions(invalid: &Invalid) -> Vec<&str> {
        invalid
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect()
    }

    #[test]
    fn the_example_request_reads_into_the_submit_command() {
        let read = submission(&approved()).unwrap();
        let r = &read.request;
        assert_eq!(r.request_id, "mri-fhir-0001");
        assert_eq!(
            read.claim_identifier.system.as_deref(),
            Some("http://provider.example/claim-id")
        );
        assert_eq!(r.member_id.as_str(), "M100001");
        assert_eq!(r.requesting_npi.to_string(), "1184649790");
        assert_eq!(r.servicing_npi.to_string(), "1184649790");
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].code.to_string(), "70553");
        assert_eq!(r.lines[0].setting, Setting::Outpatient);
        assert_eq!(r.lines[0].date_of_service.to_string(), "2027-03-10");
        assert_eq!(r.lines[0].units, 1);
        assert_eq!(r.diagnoses[0].to_string(), "G43.909");
        assert_eq!(r.urgency, Urgency::Routine);
        assert_eq!(
            r.answers,
            vec![("red_flag_symptoms".to_owned(), Answer::Bool(true))]
        );
        assert_eq!(
            r.records,
            vec![RecordRef {
                id: "note-17".into(),
                document: "clinical_notes".into()
            }]
        );
        assert_eq!(
            read.fields.expression("lines[0].service_code"),
            "Claim.item[0].productOrService"
        );
        assert_eq!(
            read.fields.expression("answers[0].question_id"),
            "QuestionnaireResponse.item[0].linkId"
        );
        assert_eq!(
            read.fields.expression("records[0].document"),
            "DocumentReference.type"
        );
        assert_eq!(read.fields.expression("member_id"), "Patient.identifier");
    }

    #[test]
    fn every_problem_is_named_by_its_element() {
        let mut bundle = approved();
        let claim = claim_mut(&mut bundle);
        claim["item"][0]["productOrService"] =
            json!({"coding": [{"system": "http://example.org/local", "code": "MRI"}]});
        claim["item"][0]["servicedDate"] = json!("10 December");
        claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] =
            json!("not a code");
        claim["use"] = json!("claim");
        let invalid = submission(&bundle).unwrap_err();
        assert_eq!(
            expressions(&invalid),
            [
                "Claim.use",
                "Claim.item[0].productOrService",
                "Claim.item[0].servicedDate",
                "Claim.diagnosis[0].diagnosisCodeableConcept",
            ]
        );
    }

    #[test]
    fn parties_come_from_references_or_the_coverage() {
        let mut bundle = approved();
        // No member id on the Patient: the Coverage's subscriber id names the member.
        bundle["entry"][1]["resource"]["identifier"] =
            json!([{"system": "http://x/mrn", "value": "123"}]);
        let read = submission(&bundle).unwrap();
        assert_eq!(read.request.member_id.as_str(), "M100001");
        assert_eq!(read.fields.expression("member_id"), "Coverage.subscriberId");

        // A reference to nothing in the Bundle, and a provider without an NPI.
        let claim = claim_mut(&mut bundle);
        claim["careTeam"][0]["provider"] = json!({"reference": "Practitioner/nobody"});
        bundle["entry"][3]["resource"]["identifier"] = json!([]);
        let invalid = submission(&bundle).unwrap_err();
        assert_eq!(
            expressions(&invalid),
            [
                "Organization.identifier",
                "Claim.careTeam[0].provider.reference"
            ]
        );
    }

    #[test]
    fn places_of_service_give_the_setting_and_facility() {
        let mut bundle = approved();
        let pos =
            |code: &str| json!({"coding": [{"system": codes::PLACE_OF_SERVICE, "code": code}]});
        claim_mut(&mut bundle)["item"][0]["locationCodeableConcept"] = pos("21");
        claim_mut(&mut bundle)["item"][0]["servicedPeriod"] =
            json!({"start": "2026-12-10", "end": "2026-12-13"});
        let line = &submission(&bundle).unwrap().request.lines[0];
        assert_eq!(line.setting, Setting::Inpatient);
        assert_eq!(line.facility_kind, Some(ProviderKind::AcuteHospital));
        // servicedDate wins over servicedPeriod for the date; the stay is 3 days.
        assert_eq!(line.length_of_stay_hours, Some(72));
        claim_mut(&mut bundle)["item"][0]["locationCodeableConcept"] = pos("99");
        let invalid = submission(&bundle).unwrap_err();
        assert_eq!(
            expressions(&invalid),
            ["Claim.item[0].locationCodeableConcept"]
        );
    }

    #[test]
    fn answers_of_every_type_and_duplicates() {
        let mut bundle = approved();
        let qr = &mut bundle["entry"][6]["resource"];
        qr["item"] = json!([
            {"linkId": "a", "answer": [{"valueBoolean": false}]},
            {"linkId": "group", "item": [
                {"linkId": "b", "answer": [{"valueInteger": 6}]},
                {"linkId": "c", "answer": [{"valueCoding": {"code": "x1"}}]}]},
            {"linkId": "d", "answer": [{"valueString": "text"}]},
            {"linkId": "unanswered"},
        ]);
        let read = submission(&bundle).unwrap();
        assert_eq!(
            read.request.answers,
            vec![
                ("a".to_owned(), Answer::Bool(false)),
                ("b".to_owned(), Answer::Number(6.0)),
                ("c".to_owned(), Answer::Code("X1".into())),
                ("d".to_owned(), Answer::Text("text".into())),
            ]
        );
        assert_eq!(
            read.fields.expression("answers[1].question_id"),
            "QuestionnaireResponse.item[1].item[0].linkId"
        );
        bundle["entry"][6]["resource"]["item"] = json!([
            {"linkId": "a", "answer": [{"valueBoolean": false}]},
            {"linkId": "a", "answer": [{"valueBoolean": true}]},
        ]);
        let invalid = submission(&bundle).unwrap_err();
        assert_eq!(
            expressions(&invalid),
            ["QuestionnaireResponse.item[1].linkId"]
        );
    }

    #[test]
    fn attached_documents_and_cited_coverage_assertions_are_read() {
        let mut bundle = approved();
        let info = |id: &str| {
            json!({"url": codes::EXT_COVERAGE_INFORMATION, "extension": [
                {"url": "covered", "valueCode": "covered"},
                {"url": "coverage-assertion-id", "valueString": id}]})
        };
        // A questionnaire's attachment is a record of the document its linkId names,
        // and the response may carry the coverage information it was filled in for.
        let qr = &mut bundle["entry"][6]["resource"];
        qr["extension"] = json!([info("CA-1")]);
        qr["item"] = json!([
            {"linkId": "questions", "item": [
                {"linkId": "red_flag_symptoms", "answer": [{"valueBoolean": true}]}]},
            {"linkId": "documents", "item": [
                {"linkId": "imaging_reports", "answer": [
                    {"valueAttachment": {"url": "urn:ehr:report-9", "title": "CT report"}}]}]},
        ]);
        // The ordered service the item asks for carries it too (and another).
        let order = json!({"resourceType": "ServiceRequest", "id": "order-1",
            "status": "active", "intent": "order", "subject": {"reference": "Patient/member-1"},
            "extension": [info("CA-1"), info("CA-2")]});
        bundle["entry"]
            .as_array_mut()
            .unwrap()
            .push(json!({"fullUrl": "http://provider.example/fhir/ServiceRequest/order-1", "resource": order}));
        claim_mut(&mut bundle)["item"][0]["extension"] = json!([{
            "url": codes::EXT_REQUESTED_SERVICE,
            "valueReference": {"reference": "ServiceRequest/order-1"}}]);
        let read = submission(&bundle).unwrap();
        assert!(read.request.records.contains(&RecordRef {
            id: "urn:ehr:report-9".into(),
            document: "imaging_reports".into(),
        }));
        assert_eq!(read.request.coverage_assertions, ["CA-1", "CA-2"]);
        assert_eq!(
            read.fields.expression("coverage_assertions[1]"),
            "ServiceRequest.extension[1].extension[1].valueString"
        );
        // An attachment that names no record is refused where it is.
        bundle["entry"][6]["resource"]["item"][1]["item"][0]["answer"][0]["valueAttachment"] =
            json!({"contentType": "text/plain"});
        assert_eq!(
            expressions(&submission(&bundle).unwrap_err()),
            ["QuestionnaireResponse.item[1].item[0].answer[0].valueAttachment.url"]
        );
    }

    #[test]
    fn not_a_pas_bundle() {
        assert_eq!(
            expressions(&submission(&json!({"resourceType": "Claim"})).unwrap_err()),
            ["Bundle"]
        );
        assert_eq!(
            expressions(&submission(&json!({"resourceType": "Bundle", "entry": []})).unwrap_err()),
            ["Bundle.entry"]
        );
        let mut bundle = approved();
        claim_mut(&mut bundle)["identifier"] = json!([{"value": "x".repeat(MAX_REQUEST_ID + 1)}]);
        assert_eq!(
            expressions(&submission(&bundle).unwrap_err()),
            ["Claim.identifier[0].value"]
        );
    }
}
