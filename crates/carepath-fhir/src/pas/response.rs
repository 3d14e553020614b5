//! A precertification case as a PAS response: the ClaimResponse with one review
//! action per item, in a Bundle with the parties it references.

use carepath_app::precert::CaseView;
use carepath_precert::{
    CaseState, Decision, DecisionOutcome, LineOutcome, PendReason, PrecertCase, ReviewReason,
    authorization_valid_through,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::request::ClaimIdentifier;
use crate::codes;

/// An X12 306 review action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewAction {
    /// A1: certified in total.
    Certified,
    /// A2: certified in part.
    Partial,
    /// A3: not certified.
    NotCertified,
    /// A4: pended.
    Pended,
    /// C: cancelled (withdrawn by the requester).
    Cancelled,
    /// NA: no action required (a notification after the fact, such as an emergency
    /// admission, was received; no coverage decision is made).
    NoActionRequired,
}

impl ReviewAction {
    /// The X12 306 code.
    pub fn code(self) -> &'static str {
        match self {
            ReviewAction::Certified => "A1",
            ReviewAction::Partial => "A2",
            ReviewAction::NotCertified => "A3",
            ReviewAction::Pended => "A4",
            ReviewAction::Cancelled => "C",
            ReviewAction::NoActionRequired => "NA",
        }
    }

    /// The code's display text.
    pub fn display(self) -> &'static str {
        match self {
            ReviewAction::Certified => "Certified in total",
            ReviewAction::Partial => "Certified - partial",
            ReviewAction::NotCertified => "Not Certified",
            ReviewAction::Pended => "Pended",
            ReviewAction::Cancelled => "Cancelled",
            ReviewAction::NoActionRequired => "No Action Required",
        }
    }

    /// Whether the item is authorized (in whole or in part).
    pub fn authorizes(self) -> bool {
        matches!(self, ReviewAction::Certified | ReviewAction::Partial)
    }
}

/// The decision in force on a case: the latest one, unless the case was reopened
/// for review since (a reconsideration or an appeal decides again).
fn standing_decision(case: &PrecertCase) -> Option<&Decision> {
    match case.state {
        CaseState::Approved
        | CaseState::PartiallyApproved
        | CaseState::Denied
        | CaseState::PeerToPeerRequested
        | CaseState::PeerToPeerScheduled
        | CaseState::AppealRequested
        | CaseState::AppealUpheld
        | CaseState::AppealOverturned => case.decisions.last(),
        _ => None,
    }
}

/// The review action on item `i` of `case`.
pub fn review_action(case: &PrecertCase, i: usize) -> ReviewAction {
    match case.state {
        CaseState::Withdrawn => return ReviewAction::Cancelled,
        CaseState::NotificationReceived => return ReviewAction::NoActionRequired,
        _ => {}
    }
    let Some(decision) = standing_decision(case) else {
        return ReviewAction::Pended;
    };
    match decision.lines.iter().find(|l| l.line == i) {
        Some(line) if line.approved_units == 0 => ReviewAction::NotCertified,
        Some(line)
            if line.approved_units < line.requested_units
                || line.approved_days < line.requested_days =>
        {
            ReviewAction::Partial
        }
        Some(_) => ReviewAction::Certified,
        None => match decision.outcome {
            DecisionOutcome::Denied => ReviewAction::NotCertified,
            DecisionOutcome::Approved | DecisionOutcome::PartiallyApproved => {
                ReviewAction::Certified
            }
        },
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn codeable(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut coding = json!({"system": system, "code": code});
    if let Some(display) = display {
        coding["display"] = json!(display);
    }
    json!({"coding": [coding]})
}

fn npi_identifier(npi: &str) -> Value {
    json!({"system": codes::NPI, "value": npi})
}

/// What a pended case waits for: `(id, text)` pairs.
fn missing(case: &PrecertCase) -> Vec<(String, String)> {
    let from_request = case
        .information_request
        .as_ref()
        .filter(|_| case.state == CaseState::PendedInformation)
        .map(|r| &r.missing);
    let from_automation = case.determination.as_ref().and_then(|d| {
        d.lines.iter().find_map(|l| match &l.outcome {
            LineOutcome::Pended {
                reason: PendReason::NeedsInformation { missing },
            } => Some(missing),
            _ => None,
        })
    });
    let Some(missing) = from_request.or(from_automation.filter(|_| {
        matches!(
            case.state,
            CaseState::PendedInformation | CaseState::Received
        )
    })) else {
        return Vec::new();
    };
    missing
        .questions
        .iter()
        .map(|q| (q.id.clone(), q.text.clone()))
        .chain(
            missing
                .documents
                .iter()
                .map(|d| (d.id.clone(), d.text.clone())),
        )
        .collect()
}

/// Why a pended case waits, in words.
fn pend_note(case: &PrecertCase) -> Option<String> {
    let reason = case
        .determination
        .as_ref()?
        .lines
        .iter()
        .find_map(|l| match &l.outcome {
            LineOutcome::Pended { reason } => Some(reason),
            LineOutcome::Approved { .. } | LineOutcome::Notified { .. } => None,
        })?;
    Some(match reason {
        PendReason::NeedsInformation { .. } => {
            "Pended: information is missing (see the communication requests).".to_owned()
        }
        PendReason::NeedsClinicalReview {
            reason: ReviewReason::RetrospectiveRequest,
            ..
        } => "Received for retrospective review: the services were already given; a reviewer decides by the time given (post-service clock).".to_owned(),
        PendReason::NeedsClinicalReview { .. } => {
            "Pended for clinical review; a decision is due by the time given.".to_owned()
        }
        PendReason::OncologyReview { rule, .. } => {
            format!("Pended for oncology pathway review ({rule}).")
        }
    })
}

/// The PAS ClaimResponse for a case, with the CommunicationRequests it refers to.
/// `identifier` is the Claim's identifier; `profile` the ClaimResponse profile.
pub fn claim_response(
    view: &CaseView,
    identifier: &ClaimIdentifier,
    profile: &str,
) -> (Value, Vec<Value>) {
    let case = &view.case;
    let decision = standing_decision(case);
    let actions: Vec<ReviewAction> = (0..case.request.lines.len())
        .map(|i| review_action(case, i))
        .collect();
    let authorized = actions.iter().any(|a| a.authorizes());
    let last_service = case.request.lines.iter().map(|l| l.date_of_service).max();
    let issued = decision.map(|d| d.at.date_naive());
    let period = match (authorized, issued, last_service) {
        (true, Some(from), Some(last)) => Some(json!({
            "start": from.to_string(),
            "end": authorization_valid_through(last).to_string(),
        })),
        _ => None,
    };
    let servicing = case.request.servicing_provider.npi.to_string();
    let mut identifier_json = json!({"value": identifier.value});
    if let Some(system) = &identifier.system {
        identifier_json["system"] = json!(system);
    }

    let items: Vec<Value> = actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let mut review = vec![json!({
                "url": "code",
                "valueCodeableConcept": codeable(codes::X12_REVIEW_ACTION, action.code(), Some(action.display())),
            })];
            if action.authorizes() {
                review.push(json!({"url": "number", "valueString": case.id}));
            }
            if *action == ReviewAction::NotCertified
                && let Some(adverse) = decision.and_then(|d| d.adverse.as_ref())
            {
                review.push(json!({
                    "url": "reasonCode",
                    "valueCodeableConcept": codeable(
                        codes::CAREPATH_REASON,
                        adverse.reason_code.as_str(),
                        None,
                    ),
                }));
            }
            let mut extension = vec![json!({
                "url": codes::EXT_ITEM_AUTHORIZED_PROVIDER,
                "extension": [{"url": "provider", "valueReference": {"identifier": npi_identifier(&servicing)}}],
            })];
            if action.authorizes() {
                if let Some(period) = &period {
                    extension.push(json!({"url": codes::EXT_ITEM_PREAUTH_PERIOD, "valuePeriod": period}));
                }
                if let Some(issued) = issued {
                    extension.push(json!({"url": codes::EXT_ITEM_PREAUTH_ISSUE_DATE, "valueDate": issued.to_string()}));
                }
            }
            json!({
                "extension": extension,
                "itemSequence": i + 1,
                "adjudication": [{
                    "extension": [{"url": codes::EXT_REVIEW_ACTION, "extension": review}],
                    "category": codeable(codes::ADJUDICATION, "submitted", None),
                }],
            })
        })
        .collect();

    let mut notes = Vec::new();
    let mut communication = Vec::new();
    let mut communication_refs = Vec::new();
    if case.state == CaseState::Withdrawn {
        notes.push("Withdrawn by the requester.".to_owned());
    } else if case.state == CaseState::NotificationReceived {
        notes.push(
            "Notification received; this is not a coverage decision. Services are reviewed as the stay goes on and with the claim."
                .to_owned(),
        );
    } else if let Some(d) = decision {
        if let Some(adverse) = &d.adverse {
            notes.push(format!(
                "{} Guideline: {}.",
                adverse.rationale.trim_end_matches('.'),
                adverse.guideline
            ));
        } else if !d.note.is_empty() {
            notes.push(d.note.clone());
        }
    } else {
        notes.extend(pend_note(case));
        notes.push(format!("A decision is due by {}.", instant(case.due.at)));
        for (n, (id, text)) in missing(case).into_iter().enumerate() {
            let comm_id = format!("{}-info-{}", case.id, n + 1);
            communication_refs
                .push(json!({"reference": format!("CommunicationRequest/{comm_id}")}));
            communication.push(json!({
                "resourceType": "CommunicationRequest",
                "id": comm_id,
                "status": "active",
                "category": [codeable(codes::CAREPATH_MISSING, &id, None)],
                "subject": {"reference": format!("Patient/{}", case.request.member_id)},
                "payload": [{"contentString": text}],
                "recipient": [{"identifier": npi_identifier(case.request.requesting_provider.npi.as_ref())}],
                "authoredOn": instant(view.as_of),
            }));
        }
    }

    // What each item was decided under: the rule and the list version.
    if let Some(determination) = &case.determination {
        for line in &determination.lines {
            let rule = line.rule.as_ref().map_or_else(
                || "no rule".to_owned(),
                |r| format!("rule {} ({})", r.id, r.text),
            );
            notes.push(format!(
                "Item {}: {rule}; list {} version {}.",
                line.line + 1,
                line.list.id,
                line.list.version
            ));
        }
    }

    let mut extension = Vec::new();
    if let Some(d) = decision {
        extension.push(json!({
            "url": codes::EXT_REVIEWER,
            "extension": [{"url": "wasHumanReviewedFlag", "valueBoolean": !matches!(d.by, carepath_precert::DecisionMaker::Automation)}],
        }));
    }
    let mut response = json!({
        "resourceType": "ClaimResponse",
        "id": case.id,
        "meta": {"profile": [profile]},
        "identifier": [identifier_json],
        "status": "active",
        "type": codeable(codes::CLAIM_TYPE, if case.request.lines.iter().any(|l| l.setting == carepath_core::Setting::Inpatient) { "institutional" } else { "professional" }, None),
        "use": "preauthorization",
        "patient": {"reference": format!("Patient/{}", case.request.member_id)},
        "created": instant(case.received_at),
        "insurer": {"reference": "Organization/carepath-plan"},
        "requestor": {"reference": format!("Organization/{}", case.request.requesting_provider.npi)},
        "request": {"identifier": identifier_json},
        "outcome": "complete",
        "item": items,
    });
    if !extension.is_empty() {
        response["extension"] = json!(extension);
    }
    if authorized {
        response["preAuthRef"] = json!(case.id);
        if let Some(period) = period {
            response["preAuthPeriod"] = period;
        }
    }
    if !notes.is_empty() {
        response["processNote"] = json!(
            notes
                .iter()
                .enumerate()
                .map(|(i, text)| json!({"number": i + 1, "type": "display", "text": text}))
                .collect::<Vec<_>>()
        );
    }
    if !communication_refs.is_empty() {
        response["communicationRequest"] = json!(communication_refs);
    }
    (response, communication)
}

/// The parties a response references: the member, the requesting and servicing
/// providers and the plan.
fn parties(case: &PrecertCase) -> Vec<Value> {
    let member = case.request.member_id.to_string();
    let requesting = case.request.requesting_provider.npi.to_string();
    let servicing = case.request.servicing_provider.npi.to_string();
    let mut out = vec![
        json!({
            "resourceType": "Patient",
            "id": member,
            "identifier": [{"system": codes::CAREPATH_MEMBER, "value": member}],
        }),
        json!({
            "resourceType": "Organization",
            "id": "carepath-plan",
            "name": case.request.plan.name,
            "identifier": [{"system": codes::CAREPATH_MEMBER.replace("member-id", "plan-id"), "value": case.request.plan.id.to_string()}],
        }),
        json!({
            "resourceType": "Organization",
            "id": requesting,
            "identifier": [npi_identifier(&requesting)],
        }),
    ];
    if servicing != requesting {
        out.push(json!({
            "resourceType": "Organization",
            "id": servicing,
            "identifier": [npi_identifier(&servicing)],
        }));
    }
    out
}

/// A PAS response Bundle (`profile`) for `view`: the ClaimResponse first, then what
/// it references.
pub fn response_bundle(
    view: &CaseView,
    identifier: &ClaimIdentifier,
    bundle_identifier: Option<&Value>,
    bundle_profile: &str,
    response_profile: &str,
    base: &str,
) -> Value {
    let (response, communication) = claim_response(view, identifier, response_profile);
    let entry = |resource: Value| {
        let url = format!(
            "{base}/{}/{}",
            resource["resourceType"].as_str().unwrap_or_default(),
            resource["id"].as_str().unwrap_or_default()
        );
        json!({"fullUrl": url, "resource": resource})
    };
    let mut entries = vec![entry(response)];
    entries.extend(communication.into_iter().map(entry));
    entries.extend(parties(&view.case).into_iter().map(entry));
    let mut bundle = json!({
        "resourceType": "Bundle",
        "meta": {"profile": [bundle_profile]},
        "type": "collection",
        "timestamp": instant(view.as_of),
        "entry": entries,
    });
    if let Some(identifier) = bundle_identifier {
        bundle["identifier"] = identifier.clone();
    }
    bundle
}
