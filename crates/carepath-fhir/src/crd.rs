//! Coverage requirements discovery over CDS Hooks (Da Vinci CRD): the discovery
//! document, reading a hook call's orders into the application's coverage request,
//! and turning its coverage assertions into the `coverage-information` extension on
//! each order (a system action) and cards a person reads.
//!
//! Pure: no I/O, no decision. What the plan requires is the application's answer;
//! this module only says it in the CRD guide's words.

use carepath_app::precert::{CoverageAssertion, CoverageRequest, OrderCheck, PriorAuth};
use carepath_core::{Icd10Code, Invalid, MemberId, Npi, ServiceCode, Setting};
use carepath_precert::{Admission, Form, ServiceLine};
use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::{
    codes,
    dtr::{questionnaire_id, questionnaire_url},
    json::{Entries, Node},
    pas::{
        FieldMap,
        request::{setting_of_place, unknown_place},
    },
};

/// The hooks served: (service id, hook).
pub const SERVICES: [(&str, &str); 3] = [
    ("crd-order-sign", "order-sign"),
    ("crd-order-select", "order-select"),
    ("crd-appointment-book", "appointment-book"),
];

/// Most orders (or appointments) one call may carry.
pub const MAX_ORDERS: usize = 20;
/// Longest card summary CDS Hooks allows.
const MAX_SUMMARY: usize = 140;
/// The order types whose codes the plan checks.
const ORDER_TYPES: [&str; 3] = ["ServiceRequest", "DeviceRequest", "MedicationRequest"];

/// The prefetch templates every service declares: the patient, their active
/// coverage, and the practitioners and organizations who order and perform.
fn prefetch(hook: &str) -> Value {
    let orders = if hook == "appointment-book" {
        "context.appointments"
    } else {
        "context.draftOrders"
    };
    json!({
        "patient": "Patient/{{context.patientId}}",
        "coverage": "Coverage?patient={{context.patientId}}&status=active",
        "practitionerRoles": format!(
            "PractitionerRole?_id={{{{{orders}.entry.resource.requester.resolve().ofType(PractitionerRole).id}}}}&_include=PractitionerRole:practitioner&_include=PractitionerRole:organization"
        ),
        "practitioners": "Practitioner?_id={{context.userId}}",
    })
}

/// The CDS Hooks discovery document.
pub fn discovery() -> Value {
    let services: Vec<Value> = SERVICES
        .iter()
        .map(|(id, hook)| {
            json!({
                "id": id,
                "hook": hook,
                "title": format!("carepath coverage requirements ({hook})"),
                "description": "Whether each order needs prior authorization under the member's plan, who asks, what documentation to send and which questionnaire to complete, with a coverage assertion id to cite in the request.",
                "prefetch": prefetch(hook),
                "usageRequirements": "Register as a FHIR client (carepath fhir-client register) and sign each call with a JWT (sub = client id, aud = this service's URL). Send the member's Coverage (subscriberId = carepath member id) or Patient (identifier in urn:carepath:member-id), and practitioners with their NPI.",
                "extension": {"davinci-crd.version": ["2.0", "2.1"]},
            })
        })
        .collect();
    json!({ "services": services })
}

/// The hook a service id serves.
pub fn hook_of(service: &str) -> Option<&'static str> {
    SERVICES
        .iter()
        .find(|(id, _)| *id == service)
        .map(|(_, hook)| *hook)
}

/// One order of the call that was checked: where it came from, to send it back
/// updated.
#[derive(Debug, Clone)]
pub struct DraftOrder {
    /// The order as sent.
    pub resource: Value,
    /// The code checked, with its system.
    pub code_system: &'static str,
    /// Whether the place of service was assumed (none was sent).
    pub setting_assumed: bool,
}

/// An order that could not be checked, and why (a card says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchecked {
    /// `ServiceRequest/123`.
    pub order: String,
    /// Why.
    pub reason: String,
}

/// A hook call read: the coverage request and what it was read from.
#[derive(Debug, Clone)]
pub struct HookCall {
    /// The coverage request for the application (no orders when none could be
    /// checked).
    pub request: Option<CoverageRequest>,
    /// The orders checked, aligned with `request.orders`.
    pub orders: Vec<DraftOrder>,
    /// Orders that could not be checked.
    pub unchecked: Vec<Unchecked>,
    /// The member's Coverage, as the coverage-information extension references it.
    pub coverage: Value,
    /// Where the application's field names come from.
    pub fields: FieldMap,
}

/// Why a hook call cannot be answered.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The request is not a CDS Hooks call this service understands (400).
    Invalid(Invalid),
    /// Data the service needs was not prefetched (412, as CDS Hooks asks).
    Prefetch(String),
    /// The member cannot be identified: a card says so.
    UnknownMember(String),
}

/// Reads a call of `hook`. `caller_npi` (the client's provider) stands for the
/// ordering practitioner when the call names none with an NPI; `today` dates orders
/// sent without a date.
pub fn read_call(
    hook: &str,
    body: &Value,
    caller_npi: &Npi,
    today: NaiveDate,
) -> Result<HookCall, CallError> {
    let mut invalid = Invalid::new();
    if body.get("hook").and_then(Value::as_str) != Some(hook) {
        invalid.push("hook", format!("this service answers {hook}"));
    }
    if body
        .get("hookInstance")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        invalid.push("hookInstance", "is required");
    }
    let Some(context) = body.get("context").filter(|c| c.is_object()) else {
        invalid.push("context", "is required");
        return Err(CallError::Invalid(invalid));
    };
    invalid.into_result().map_err(CallError::Invalid)?;
    let context = Node::at(context, "context");
    let prefetched: Vec<&Value> = body
        .get("prefetch")
        .and_then(Value::as_object)
        .map(|p| p.values().collect())
        .unwrap_or_default();
    let known = Entries::of_all(prefetched.iter().copied());

    let (member, coverage) = member(&known)?;
    let orders_key = if hook == "appointment-book" {
        "appointments"
    } else {
        "draftOrders"
    };
    let Some(bundle) = context.get(orders_key) else {
        return Err(CallError::Invalid(Invalid::field(
            context.child_path(orders_key),
            "is required: a Bundle of the orders",
        )));
    };
    // Orders and appointments are looked up among themselves and the prefetch.
    let drafts = Entries::of(bundle.value());
    let everything = Entries::of_all(
        prefetched
            .iter()
            .copied()
            .chain(std::iter::once(bundle.value())),
    );
    let selected: Option<Vec<&str>> = (hook == "order-select").then(|| {
        context
            .list("selections")
            .iter()
            .filter_map(|s| s.value().as_str())
            .collect()
    });
    let user_npi = context
        .get("userId")
        .and_then(|u| u.value().as_str())
        .and_then(|r| npi_of_reference(r, &everything));

    let mut fields = FieldMap::new("context");
    fields.insert("member_id", "prefetch.coverage");
    fields.insert("ordering_npi", "context.userId");
    let mut orders = Vec::new();
    let mut checks = Vec::new();
    let mut unchecked = Vec::new();
    let mut diagnoses: Vec<Icd10Code> = Vec::new();
    let mut ordering: Option<Npi> = None;
    let candidates: Vec<&Value> = if hook == "appointment-book" {
        drafts.of_type("Appointment")
    } else {
        drafts
            .resources()
            .filter(|r| {
                let kind = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
                let id = r.get("id").and_then(Value::as_str).unwrap_or("");
                selected
                    .as_ref()
                    .is_none_or(|s| s.contains(&format!("{kind}/{id}").as_str()))
            })
            .collect()
    };
    if candidates.len() > MAX_ORDERS {
        return Err(CallError::Invalid(Invalid::field(
            context.child_path(orders_key),
            format!("at most {MAX_ORDERS} orders"),
        )));
    }
    for resource in candidates {
        let node = Node::resource(resource);
        let label = format!("{}/{}", node.path(), node.str("id").unwrap_or("(no id)"));
        let read = if hook == "appointment-book" {
            appointment(&node, &everything, today)
        } else {
            order(&node, &everything, today)
        };
        match read {
            Ok(read) => {
                let i = checks.len();
                fields.insert(format!("orders[{i}]"), node.path());
                fields.insert(format!("orders[{i}].rendering_npi"), read.performer_path);
                for d in read.diagnoses {
                    if !diagnoses.contains(&d) {
                        diagnoses.push(d);
                    }
                }
                if ordering.is_none() {
                    ordering = read.requester;
                }
                checks.push(OrderCheck {
                    line: read.line,
                    rendering_npi: read.performer,
                });
                orders.push(DraftOrder {
                    resource: resource.clone(),
                    code_system: read.code_system,
                    setting_assumed: read.setting_assumed,
                });
            }
            Err(reason) => unchecked.push(Unchecked {
                order: label,
                reason,
            }),
        }
    }
    let request = (!checks.is_empty()).then(|| CoverageRequest {
        member_id: member,
        ordering_npi: ordering.or(user_npi).unwrap_or_else(|| caller_npi.clone()),
        diagnoses,
        orders: checks,
    });
    Ok(HookCall {
        request,
        orders,
        unchecked,
        coverage,
        fields,
    })
}

/// The member, from the prefetched Coverage (`subscriberId`, or an identifier in
/// carepath's member-id system) or Patient (identifier in that system), and the
/// reference the coverage-information extension makes to the coverage.
fn member(known: &Entries<'_>) -> Result<(MemberId, Value), CallError> {
    let coverage = known.of_type("Coverage").into_iter().next();
    let from_coverage = coverage.and_then(|c| {
        let node = Node::resource(c);
        node.identifier_in(codes::CAREPATH_MEMBER)
            .or_else(|| node.str("subscriberId"))
    });
    let from_patient = known
        .of_type("Patient")
        .into_iter()
        .find_map(|p| Node::resource(p).identifier_in(codes::CAREPATH_MEMBER));
    let Some(id) = from_coverage.or(from_patient) else {
        return Err(CallError::Prefetch(format!(
            "prefetch the member's Coverage (subscriberId, or an identifier in {}) or Patient (identifier in {})",
            codes::CAREPATH_MEMBER,
            codes::CAREPATH_MEMBER
        )));
    };
    let member = MemberId::parse(id)
        .map_err(|_| CallError::UnknownMember(format!("{id:?} is not a carepath member id")))?;
    let reference = match coverage.and_then(|c| c.get("id")).and_then(Value::as_str) {
        Some(cid) => json!({"reference": format!("Coverage/{cid}")}),
        None => json!({
            "identifier": {"system": codes::CAREPATH_MEMBER, "value": member.as_str()},
            "display": "the member's coverage",
        }),
    };
    Ok((member, reference))
}

/// The NPI of the practitioner, role or organization `reference` names, among the
/// resources sent.
fn npi_of_reference(reference: &str, known: &Entries<'_>) -> Option<Npi> {
    let node = json!({ "reference": reference });
    npi_of(&Node::at(&node, "reference"), known)
}

/// The NPI of a reference: an NPI identifier on the reference itself, or on the
/// resource it resolves to (a PractitionerRole's practitioner or organization).
fn npi_of(reference: &Node<'_>, known: &Entries<'_>) -> Option<Npi> {
    if let Some(npi) = reference
        .get("identifier")
        .filter(|i| i.str("system") == Some(codes::NPI))
        .and_then(|i| i.str("value"))
    {
        return Npi::parse(npi).ok();
    }
    let resource = Node::resource(known.resolve(reference)?);
    if let Some(npi) = resource.identifier_in(codes::NPI) {
        return Npi::parse(npi).ok();
    }
    ["practitioner", "organization"]
        .iter()
        .filter_map(|f| resource.get(f))
        .find_map(|r| {
            let target = Node::resource(known.resolve(&r)?);
            Npi::parse(target.identifier_in(codes::NPI)?).ok()
        })
}

/// One order or appointment read into a service line.
struct ReadOrder {
    line: ServiceLine,
    code_system: &'static str,
    setting_assumed: bool,
    requester: Option<Npi>,
    performer: Option<Npi>,
    performer_path: String,
    diagnoses: Vec<Icd10Code>,
}

/// The CPT or HCPCS code of a concept, with its system.
fn billing_code(concept: &Node<'_>) -> Option<(&'static str, ServiceCode)> {
    [codes::CPT, codes::HCPCS].into_iter().find_map(|system| {
        let code = concept.code_in(&[system])?;
        Some((system, ServiceCode::parse(code).ok()?))
    })
}

/// The first day of a dateTime, Period or Timing element.
fn first_day(node: &Node<'_>) -> Option<NaiveDate> {
    let text = node
        .value()
        .as_str()
        .or_else(|| node.str("start"))
        .or_else(|| {
            node.get("repeat")
                .and_then(|r| r.get("boundsPeriod"))
                .and_then(|b| b.str("start"))
        })
        .or_else(|| node.list("event").first().and_then(|e| e.value().as_str()))?;
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

/// A ServiceRequest, DeviceRequest or MedicationRequest as a service line.
fn order(node: &Node<'_>, known: &Entries<'_>, today: NaiveDate) -> Result<ReadOrder, String> {
    let kind = node.path().to_owned();
    if !ORDER_TYPES.contains(&kind.as_str()) {
        return Err(format!("carepath checks {} orders", ORDER_TYPES.join(", ")));
    }
    let concept = ["code", "codeCodeableConcept", "medicationCodeableConcept"]
        .iter()
        .find_map(|f| node.get(f));
    let (code_system, code) = concept.as_ref().and_then(billing_code).ok_or_else(|| {
        "it carries no CPT or HCPCS code, which the plan's rules are written in".to_owned()
    })?;
    let date = ["occurrenceDateTime", "occurrencePeriod", "occurrenceTiming"]
        .iter()
        .find_map(|f| node.get(f))
        .or_else(|| {
            node.get("dispenseRequest")
                .and_then(|d| d.get("validityPeriod"))
        })
        .and_then(|d| first_day(&d))
        .unwrap_or(today);
    let place = node
        .list("locationCode")
        .iter()
        .find_map(|l| l.code_in(&[codes::PLACE_OF_SERVICE]));
    let (setting, facility_kind, setting_assumed) = match place {
        Some(code) => {
            let (setting, kind) = setting_of_place(code).ok_or_else(|| unknown_place(code))?;
            (setting, kind, false)
        }
        None => (Setting::Outpatient, None, true),
    };
    let units = node
        .get("quantityQuantity")
        .and_then(|q| q.value().get("value").and_then(Value::as_f64))
        .filter(|n| *n >= 1.0 && n.fract() == 0.0 && *n <= f64::from(u32::MAX))
        .map_or(1, |n| n as u32);
    let diagnoses = node
        .list("reasonCode")
        .iter()
        .filter_map(|c| Icd10Code::parse(c.code_in(&[codes::ICD10CM])?).ok())
        .collect();
    let performer_node = node.list("performer").into_iter().next();
    Ok(ReadOrder {
        line: ServiceLine {
            code,
            units,
            date_of_service: date,
            setting,
            facility_kind,
            length_of_stay_hours: None,
            delivery: None,
            admission: Admission::Elective,
        },
        code_system,
        setting_assumed,
        requester: node.get("requester").and_then(|r| npi_of(&r, known)),
        performer: performer_node.as_ref().and_then(|p| npi_of(p, known)),
        performer_path: format!("{kind}.performer"),
        diagnoses,
    })
}

/// An appointment as a service line: its service type (a CPT or HCPCS code) or the
/// order it is based on, its start, and its practitioner.
fn appointment(
    node: &Node<'_>,
    known: &Entries<'_>,
    today: NaiveDate,
) -> Result<ReadOrder, String> {
    let based_on: Vec<&Value> = node
        .list("basedOn")
        .iter()
        .filter_map(|r| known.resolve(r))
        .collect();
    let from_type = node.list("serviceType").iter().find_map(billing_code);
    let from_order = based_on.iter().find_map(|o| {
        let o = Node::resource(o);
        ["code", "codeCodeableConcept"]
            .iter()
            .find_map(|f| o.get(f))
            .as_ref()
            .and_then(billing_code)
    });
    let (code_system, code) = from_type.or(from_order).ok_or_else(|| {
        "its serviceType (or the order it is based on) carries no CPT or HCPCS code".to_owned()
    })?;
    let date = node
        .get("start")
        .and_then(|d| first_day(&d))
        .unwrap_or(today);
    let performer = node
        .list("participant")
        .iter()
        .filter_map(|p| p.get("actor"))
        .find_map(|a| npi_of(&a, known));
    let requester = based_on
        .iter()
        .find_map(|o| npi_of(&Node::resource(o).get("requester")?, known));
    let diagnoses = node
        .list("reasonCode")
        .iter()
        .filter_map(|c| Icd10Code::parse(c.code_in(&[codes::ICD10CM])?).ok())
        .collect();
    Ok(ReadOrder {
        line: ServiceLine {
            code,
            units: 1,
            date_of_service: date,
            setting: Setting::Office,
            facility_kind: None,
            length_of_stay_hours: None,
            delivery: None,
            admission: Admission::Elective,
        },
        code_system,
        setting_assumed: true,
        requester,
        performer,
        performer_path: "Appointment.participant".to_owned(),
        diagnoses,
    })
}

/// The CRD codes of an assertion: (covered, pa-needed).
fn coverage_codes(prior_auth: PriorAuth) -> (&'static str, Option<&'static str>) {
    match prior_auth {
        PriorAuth::NotCovered => ("not-covered", None),
        PriorAuth::NotNeeded | PriorAuth::NotifyAfter => ("covered", Some("no-auth")),
        PriorAuth::Needed | PriorAuth::NeededByMember | PriorAuth::NeededByProgram => {
            ("covered", Some("auth-needed"))
        }
        PriorAuth::SatisfiedByGoldCard => ("covered", Some("satisfied")),
    }
}

/// Why the assertion says what it says: the rule and list version, as text, with a
/// CRD reason code where one applies.
fn reason(a: &CoverageAssertion) -> Value {
    let list = &a.answer.list;
    let mut text = match &a.answer.rule {
        Some(rule) => format!(
            "Rule {} on list {} version {}: {}",
            rule.id, list.id, list.version, rule.text
        ),
        None => format!(
            "No rule on list {} version {} covers this service.",
            list.id, list.version
        ),
    };
    if let Some(exemption) = &a.gold_card {
        text.push_str(&format!(" Satisfied by gold-card exemption {exemption}."));
    }
    let code = match a.prior_auth() {
        PriorAuth::SatisfiedByGoldCard => Some("gold-card"),
        PriorAuth::NeededByMember => Some("auth-out-network"),
        _ => None,
    };
    let mut reason = json!({ "text": text });
    if let Some(code) = code {
        reason["coding"] = json!([{ "system": codes::CRD_TEMP, "code": code }]);
    }
    reason
}

/// The `coverage-information` extension of one assertion.
pub fn coverage_information(
    a: &CoverageAssertion,
    coverage: &Value,
    base: &str,
    code_system: &str,
) -> Value {
    let (covered, pa_needed) = coverage_codes(a.prior_auth());
    let mut parts = vec![
        json!({"url": "coverage", "valueReference": coverage}),
        json!({"url": "covered", "valueCode": covered}),
    ];
    if let Some(pa) = pa_needed {
        parts.push(json!({"url": "pa-needed", "valueCode": pa}));
    }
    let form = a.form();
    if let Some(form) = &form {
        parts.push(json!({"url": "doc-needed", "valueCode": "clinical"}));
        parts.push(json!({"url": "doc-purpose", "valueCode": "withpa"}));
        parts.push(json!({
            "url": "questionnaire",
            "valueCanonical": format!("{}|{}", questionnaire_url(base, form), form.list_version),
        }));
    }
    parts.push(json!({
        "url": "billingCode",
        "valueCoding": {"system": code_system, "code": a.line.code.as_str()},
    }));
    parts.push(json!({"url": "reason", "valueCodeableConcept": reason(a)}));
    parts.push(json!({"url": "date", "valueDate": a.asserted_on.to_string()}));
    parts.push(json!({"url": "coverage-assertion-id", "valueString": a.id}));
    if a.prior_auth() == PriorAuth::SatisfiedByGoldCard {
        parts.push(json!({"url": "satisfied-pa-id", "valueString": a.id}));
    }
    json!({ "url": codes::EXT_COVERAGE_INFORMATION, "extension": parts })
}

/// Cuts a summary to what CDS Hooks allows.
fn summary(text: String) -> String {
    if text.chars().count() <= MAX_SUMMARY {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_SUMMARY - 1).collect();
    cut.push('…');
    cut
}

/// A card.
fn card(indicator: &str, summary_text: String, detail: String, links: Vec<Value>) -> Value {
    let mut card = json!({
        "uuid": uuid::Uuid::now_v7().to_string(),
        "summary": summary(summary_text),
        "detail": detail,
        "indicator": indicator,
        "source": {"label": "carepath", "topic": {
            "system": codes::CRD_TEMP, "code": "coverage-info"}},
    });
    if !links.is_empty() {
        card["links"] = Value::Array(links);
    }
    card
}

/// The card a person reads for one assertion.
fn assertion_card(a: &CoverageAssertion, form: Option<&Form>, base: &str, assumed: bool) -> Value {
    let code = a.line.code.as_str();
    let rule = a
        .answer
        .rule
        .as_ref()
        .map(|r| format!(" ({})", r.id))
        .unwrap_or_default();
    let (indicator, headline) = match a.prior_auth() {
        PriorAuth::NotCovered => (
            "warning",
            format!(
                "{code} is not covered: out of network on a plan without out-of-network benefits"
            ),
        ),
        PriorAuth::NotNeeded => (
            "info",
            format!("No prior authorization needed for {code}{rule}"),
        ),
        PriorAuth::NotifyAfter => (
            "info",
            format!(
                "No prior authorization in advance for {code}{rule}; notify the plan after admission"
            ),
        ),
        PriorAuth::Needed => (
            "warning",
            format!("Prior authorization needed for {code}{rule}"),
        ),
        PriorAuth::NeededByMember => (
            "warning",
            format!(
                "Prior authorization needed for {code}{rule}: out of network, the member must ask"
            ),
        ),
        PriorAuth::NeededByProgram => (
            "warning",
            format!(
                "Prior authorization needed for {code}{rule}: send the treatment plan to the pathway review"
            ),
        ),
        PriorAuth::SatisfiedByGoldCard => (
            "info",
            format!("Prior authorization for {code}{rule} is satisfied by a gold card"),
        ),
    };
    let mut detail = a.answer.explanation.clone();
    if let Some(exemption) = &a.gold_card {
        detail.push_str(&format!(
            "\n\nThe ordering practitioner holds gold-card exemption {exemption}: a request is approved without review."
        ));
    }
    let mut links = Vec::new();
    if let Some(form) = form {
        if !form.documents.is_empty() {
            detail.push_str("\n\n**Send:**");
            for d in &form.documents {
                detail.push_str(&format!("\n- {} (`{}`)", d.text, d.id));
            }
        }
        if !form.questions.is_empty() {
            detail.push_str("\n\n**Answer:**");
            for q in &form.questions {
                detail.push_str(&format!("\n- {} (`{}`, {})", q.text, q.id, q.answer));
            }
        }
        links.push(json!({
            "label": "Complete the questionnaire",
            "url": format!("{base}/Questionnaire/{}", questionnaire_id(form)),
            "type": "absolute",
        }));
    }
    if assumed {
        detail.push_str("\n\nNo place of service was sent; the answer assumes an outpatient setting. Send locationCode (CMS place of service) for another.");
    }
    detail.push_str(&format!(
        "\n\nCite coverage assertion `{}` in the prior authorization request. {}",
        a.id, a.answer.notice
    ));
    card(indicator, headline, detail, links)
}

/// The response to a call: each checked order updated with its coverage
/// information (a system action) and a card for it, and a card for each order that
/// could not be checked.
pub fn response(call: &HookCall, assertions: &[CoverageAssertion], base: &str) -> Value {
    let mut cards = Vec::new();
    let mut actions = Vec::new();
    for (order, a) in call.orders.iter().zip(assertions) {
        let mut resource = order.resource.clone();
        let extension = coverage_information(a, &call.coverage, base, order.code_system);
        match resource.get_mut("extension").and_then(Value::as_array_mut) {
            Some(list) => list.push(extension),
            None => resource["extension"] = json!([extension]),
        }
        let kind = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("order")
            .to_owned();
        actions.push(json!({
            "type": "update",
            "description": format!("Record the plan's coverage information on the {kind}"),
            "resource": resource,
        }));
        cards.push(assertion_card(
            a,
            a.form().as_ref(),
            base,
            order.setting_assumed,
        ));
    }
    for u in &call.unchecked {
        cards.push(card(
            "info",
            format!("carepath could not check {}", u.order),
            format!("{}: {}", u.order, u.reason),
            Vec::new(),
        ));
    }
    json!({ "cards": cards, "systemActions": actions })
}

/// The response when nothing can be said about the orders: one card, no action.
pub fn notice(indicator: &str, summary_text: &str, detail: &str) -> Value {
    json!({
        "cards": [card(indicator, summary_text.to_owned(), detail.to_owned(), Vec::new())],
        "systemActions": [],
    })
}

/// The response when the member cannot be found: a card saying so.
pub fn unknown_member(why: &str) -> Value {
    notice(
        "warning",
        "carepath has no member for this patient's coverage",
        &format!(
            "{why}. No coverage requirements can be given; check the member id on the coverage."
        ),
    )
}

/// The response when the application refuses the orders' content (an unknown
/// member, a practitioner not in the directory): cards naming what is wrong.
pub fn problems(invalid: &Invalid, fields: &FieldMap) -> Value {
    if let Some(v) = invalid.violations.iter().find(|v| v.field == "member_id") {
        return unknown_member(&v.description);
    }
    let cards: Vec<Value> = invalid
        .violations
        .iter()
        .map(|v| {
            card(
                "warning",
                "carepath could not check these orders".to_owned(),
                format!("{}: {}", fields.expression(&v.field), v.description),
                Vec::new(),
            )
        })
        .collect();
    json!({ "cards": cards, "systemActions": [] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npi() -> Npi {
        Npi::parse("1184649790").unwrap()
    }

    fn call(hook: &str, orders: Value, prefetch: Value) -> Value {
        let key = if hook == "appointment-book" {
            "appointments"
        } else {
            "draftOrders"
        };
        json!({
            "hook": hook,
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {
                "userId": "Practitioner/ordering",
                "patientId": "p1",
                key: {"resourceType": "Bundle", "type": "collection", "entry": orders},
                "selections": ["ServiceRequest/mri"],
            },
            "prefetch": prefetch,
        })
    }

    fn prefetch() -> Value {
        json!({
            "coverage": {"resourceType": "Bundle", "type": "searchset", "entry": [
                {"resource": {"resourceType": "Coverage", "id": "cov1", "subscriberId": "M100001"}}]},
            "practitioners": {"resourceType": "Bundle", "type": "searchset", "entry": [
                {"resource": {"resourceType": "Practitioner", "id": "ordering",
                  "identifier": [{"system": codes::NPI, "value": "1234358301"}]}}]},
        })
    }

    fn mri() -> Value {
        json!({"resource": {
            "resourceType": "ServiceRequest", "id": "mri", "status": "draft", "intent": "order",
            "code": {"coding": [{"system": codes::CPT, "code": "70551"}]},
            "occurrenceDateTime": "2027-03-01",
            "reasonCode": [{"coding": [{"system": codes::ICD10CM, "code": "G43.909"}]}],
            "performer": [{"identifier": {"system": codes::NPI, "value": "1184649790"}}],
            "subject": {"reference": "Patient/p1"},
        }})
    }

    #[test]
    fn an_order_sign_call_reads_into_a_coverage_request() {
        let today = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
        let oxygen = json!({"resource": {"resourceType": "DeviceRequest", "id": "o2",
            "codeCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}}});
        let body = call("order-sign", json!([mri(), oxygen]), prefetch());
        let read = read_call("order-sign", &body, &npi(), today).unwrap();
        let request = read.request.unwrap();
        assert_eq!(request.member_id.as_str(), "M100001");
        // The practitioner the context names, not the client's organization.
        assert_eq!(request.ordering_npi.as_str(), "1234358301");
        assert_eq!(request.orders.len(), 1);
        let line = &request.orders[0].line;
        assert_eq!(line.code.as_str(), "70551");
        assert_eq!(line.date_of_service.to_string(), "2027-03-01");
        assert_eq!(request.orders[0].rendering_npi, Some(npi()));
        assert_eq!(request.diagnoses[0].as_str(), "G43.909");
        assert!(read.orders[0].setting_assumed);
        assert_eq!(read.unchecked.len(), 1);
        assert!(read.unchecked[0].reason.contains("no CPT or HCPCS"));
        assert_eq!(read.coverage, json!({"reference": "Coverage/cov1"}));
    }

    #[test]
    fn order_select_checks_only_the_selected_orders() {
        let other = json!({"resource": {"resourceType": "ServiceRequest", "id": "other",
            "code": {"coding": [{"system": codes::CPT, "code": "90834"}]}}});
        let body = call("order-select", json!([mri(), other]), prefetch());
        let today = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
        let read = read_call("order-select", &body, &npi(), today).unwrap();
        assert_eq!(read.request.unwrap().orders.len(), 1);
    }

    #[test]
    fn a_call_without_the_member_or_for_another_hook_is_refused() {
        let today = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
        let body = call("order-sign", json!([mri()]), json!({}));
        assert!(matches!(
            read_call("order-sign", &body, &npi(), today),
            Err(CallError::Prefetch(_))
        ));
        let body = call("order-sign", json!([mri()]), prefetch());
        let Err(CallError::Invalid(invalid)) = read_call("order-select", &body, &npi(), today)
        else {
            panic!("another hook's call is refused");
        };
        assert_eq!(invalid.violations[0].field, "hook");
        let mut odd = prefetch();
        odd["coverage"]["entry"][0]["resource"]["subscriberId"] = json!("no such member");
        let body = call("order-sign", json!([mri()]), odd);
        assert!(matches!(
            read_call("order-sign", &body, &npi(), today),
            Err(CallError::UnknownMember(_))
        ));
    }

    #[test]
    fn an_appointment_is_read_from_its_service_type_and_practitioner() {
        let appointment = json!({"resource": {"resourceType": "Appointment", "id": "a1",
            "status": "proposed", "start": "2027-02-02T09:00:00Z",
            "serviceType": [{"coding": [{"system": codes::CPT, "code": "90834"}]}],
            "participant": [{"actor": {"reference": "Practitioner/ordering"}, "status": "accepted"}]}});
        let body = call("appointment-book", json!([appointment]), prefetch());
        let today = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
        let read = read_call("appointment-book", &body, &npi(), today).unwrap();
        let request = read.request.unwrap();
        assert_eq!(request.orders[0].line.code.as_str(), "90834");
        assert_eq!(
            request.orders[0].line.date_of_service.to_string(),
            "2027-02-02"
        );
        assert_eq!(
            request.orders[0].rendering_npi.as_ref().unwrap().as_str(),
            "1234358301"
        );
    }

    #[test]
    fn discovery_names_every_hook_with_its_prefetch() {
        let doc = discovery();
        let hooks: Vec<&str> = doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["hook"].as_str().unwrap())
            .collect();
        assert_eq!(hooks, ["order-sign", "order-select", "appointment-book"]);
        assert!(doc["services"][0]["prefetch"]["coverage"].is_string());
        assert_eq!(hook_of("crd-order-sign"), Some("order-sign"));
        assert_eq!(hook_of("nothing"), None);
    }
}
