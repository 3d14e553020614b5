//! Turns a precertification event into the payload the notice templates read.
//!
//! A `precert.case.*` event carries ids (NPIs, staff ids, rule ids) and the decision
//! as the workflow recorded it; a notice needs words: provider and reviewer names, a
//! description of each service, the plan provision and guideline relied on, the
//! appeal deadline. [`adapt`] loads the case and the directory records the event
//! names; [`notice_payload`] (pure) builds the payload described in
//! `data/notify/README.md`. Values that belong to the moment of the event (the
//! decision, the information asked for, the appointment) are read from the event
//! itself, not from the case, which may have moved on since.

use super::reads::BatchReads;
use carepath_core::{DomainEvent, Npi, Provider, Staff, StaffId};
use carepath_precert::{
    AdverseDetermination, AppealDecision, Decision, DecisionOutcome, Missing, PrecertCase,
    ReasonCode, appeal_filing_deadline, authorization_valid_through, event_kinds,
    external_review_deadline,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

/// The directory records a precertification notice names.
#[derive(Debug, Clone, Default)]
pub struct Parties {
    /// The requesting provider, when the directory has them.
    pub requesting: Option<Provider>,
    /// The servicing provider, when not the requesting one and in the directory.
    pub servicing: Option<Provider>,
    /// Staff named by the event (the deciding reviewer, the peer-to-peer physician).
    pub staff: Vec<Staff>,
}

/// Loads the case and the parties `event` names (through `reads`, so a batch of
/// events reads each record once), and returns the event with the payload the
/// templates read. Errors are transient causes (the database) or a case that cannot
/// be read; the consumer retries and finally parks the event.
pub async fn adapt(reads: &BatchReads, event: &DomainEvent) -> Result<DomainEvent, String> {
    let record = reads
        .case(&event.aggregate_id)
        .await
        .map_err(|e| format!("case {}: {e}", event.aggregate_id))?
        .ok_or_else(|| format!("case {} not found", event.aggregate_id))?;
    let case = crate::precert::case_of(&record).map_err(|e| match e {
        crate::AppError::Internal(cause) => cause,
        other => other.to_string(),
    })?;
    let mut parties = Parties {
        requesting: provider(reads, &case.request.requesting_provider.npi).await?,
        ..Parties::default()
    };
    if case.request.servicing_provider.npi != case.request.requesting_provider.npi {
        parties.servicing = provider(reads, &case.request.servicing_provider.npi).await?;
    }
    for id in staff_named(&event.payload) {
        match reads.staff(&id).await {
            Ok(Some(s)) => parties.staff.push(Staff::clone(&s)),
            Ok(None) => {}
            Err(e) => return Err(format!("staff {id}: {e}")),
        }
    }
    let payload = notice_payload(event, &case, &parties)?;
    Ok(DomainEvent {
        payload,
        ..event.clone()
    })
}

async fn provider(reads: &BatchReads, npi: &Npi) -> Result<Option<Provider>, String> {
    match reads.provider(npi).await {
        Ok(p) => Ok(p.map(|p| Provider::clone(&p))),
        Err(e) => Err(format!("provider {npi}: {e}")),
    }
}

/// Staff ids the event payload names: `decision.by`, `decided_by`, `physician`.
fn staff_named(payload: &Value) -> Vec<StaffId> {
    [
        payload.pointer("/decision/by/staff_id"),
        payload.pointer("/decided_by/staff_id"),
        payload.pointer("/physician/staff_id"),
    ]
    .into_iter()
    .flatten()
    .filter_map(Value::as_str)
    .filter_map(|s| StaffId::parse(s).ok())
    .collect()
}

/// The payload the templates of `event.kind` read, from the event, its case and the
/// parties. Kinds no template is written for get the common fields only.
pub fn notice_payload(
    event: &DomainEvent,
    case: &PrecertCase,
    parties: &Parties,
) -> Result<Value, String> {
    let mut p = common(case, parties);
    let decided_on = event.occurred_at.date_naive();
    match event.kind.as_str() {
        event_kinds::APPROVED => {
            approval(&mut p, case);
            if let Some(d) = decision_of(event)? {
                mark_lines(&mut p, &d);
            }
        }
        event_kinds::DENIED | event_kinds::PARTIALLY_APPROVED => {
            let decision =
                decision_of(event)?.ok_or_else(|| format!("{} without a decision", event.kind))?;
            let adverse = decision
                .adverse
                .clone()
                .ok_or_else(|| format!("{} without its reason", event.kind))?;
            adverse_fields(&mut p, case, &adverse, parties, &decision);
            p.insert(
                "appeal_deadline".into(),
                json!(date(appeal_filing_deadline(decision.at))),
            );
            if decision.outcome == DecisionOutcome::PartiallyApproved {
                approval(&mut p, case);
                mark_lines(&mut p, &decision);
            }
        }
        event_kinds::INFORMATION_REQUESTED => {
            let missing: Missing = field(event, "missing")?;
            let due: DateTime<Utc> = field(event, "information_due_at")?;
            let mut items: Vec<String> = missing.documents.iter().map(|d| d.text.clone()).collect();
            items.extend(missing.questions.iter().map(|q| q.text.clone()));
            if items.is_empty() {
                items.push("Clinical notes that support the request".into());
            }
            p.insert("requested_information".into(), json!(items));
            p.insert("due_date".into(), json!(date(due)));
        }
        event_kinds::PEER_TO_PEER_SCHEDULED => {
            let at: DateTime<Utc> = field(event, "scheduled_for")?;
            p.insert("scheduled_at".into(), json!(at.to_rfc3339()));
            let id = event.payload.pointer("/physician/staff_id");
            reviewer(&mut p, parties, id.and_then(Value::as_str));
        }
        event_kinds::APPEAL_DECIDED => {
            let decision: AppealDecision = field(event, "decision")?;
            p.insert("appeal_id".into(), json!(format!("{}-APPEAL", case.id)));
            let by = event.payload.pointer("/decided_by/staff_id");
            reviewer(&mut p, parties, by.and_then(Value::as_str));
            match decision {
                AppealDecision::Upheld { adverse } => {
                    p.insert("outcome".into(), json!("upheld"));
                    p.insert("reason".into(), json!(reason_text(adverse.reason_code)));
                    p.insert("clinical_rationale".into(), json!(adverse.rationale));
                    p.insert("plan_provision".into(), json!(plan_provision(case)));
                    p.insert("criterion".into(), json!(adverse.guideline));
                    p.insert(
                        "external_review_deadline".into(),
                        json!(external_review_deadline(decided_on)),
                    );
                }
                AppealDecision::Overturned { rationale } => {
                    p.insert("outcome".into(), json!("overturned"));
                    p.insert("reason".into(), json!(rationale));
                    approval(&mut p, case);
                }
            }
        }
        event_kinds::WITHDRAWN => {
            let reason = match event.payload.get("reason").and_then(Value::as_str) {
                Some("information_not_received") => {
                    "the information we asked for did not arrive within 15 business days"
                }
                _ => "the requesting provider withdrew it",
            };
            p.insert("withdrawn_reason".into(), json!(reason));
        }
        _ => {}
    }
    Ok(Value::Object(p))
}

/// The fields every `precert.case.*` notice reads.
fn common(case: &PrecertCase, parties: &Parties) -> Map<String, Value> {
    let r = &case.request;
    let name = |p: &Option<Provider>, npi: &Npi| {
        p.as_ref()
            .map_or_else(|| format!("provider NPI {npi}"), |p| p.name.clone())
    };
    let services: Vec<Value> = r
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "code": l.code.as_str(),
                "description": service_description(case, i),
                "units": l.units,
            })
        })
        .collect();
    let mut p = Map::new();
    p.insert("case_id".into(), json!(case.id));
    p.insert(
        "requesting_provider_npi".into(),
        json!(r.requesting_provider.npi),
    );
    p.insert(
        "requesting_provider_name".into(),
        json!(name(&parties.requesting, &r.requesting_provider.npi)),
    );
    if r.servicing_provider.npi != r.requesting_provider.npi {
        p.insert(
            "servicing_provider_npi".into(),
            json!(r.servicing_provider.npi),
        );
        p.insert(
            "servicing_provider_name".into(),
            json!(name(&parties.servicing, &r.servicing_provider.npi)),
        );
    }
    p.insert("urgency".into(), json!(r.urgency.as_str()));
    if let Some(first) = first_service_date(case) {
        p.insert("date_of_service".into(), json!(first));
    }
    p.insert(
        "diagnosis_codes".into(),
        json!(r.diagnoses.iter().map(|d| d.as_str()).collect::<Vec<_>>()),
    );
    p.insert("services".into(), json!(services));
    p
}

fn first_service_date(case: &PrecertCase) -> Option<NaiveDate> {
    case.request.lines.iter().map(|l| l.date_of_service).min()
}

/// Words for a service line: the category of the rule that matched it and where it
/// is given (CPT descriptions are licensed, so carepath writes its own).
fn service_description(case: &PrecertCase, line: usize) -> String {
    let setting = case
        .request
        .lines
        .get(line)
        .map(|l| l.setting.as_str().replace('_', " "))
        .unwrap_or_default();
    let category = case
        .determination
        .as_ref()
        .and_then(|d| d.lines.get(line))
        .and_then(|l| l.rule.as_ref())
        .map(|r| r.category.as_str().replace('_', " "));
    match category {
        Some(c) => format!("{} ({setting})", capitalize(&c)),
        None => format!("Service ({setting})"),
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

/// The authorization: carepath's case number is the authorization number providers
/// quote on claims.
fn approval(p: &mut Map<String, Value>, case: &PrecertCase) {
    let from = first_service_date(case);
    let last = case.request.lines.iter().map(|l| l.date_of_service).max();
    p.insert("authorization_number".into(), json!(case.id));
    if let (Some(from), Some(last)) = (from, last) {
        p.insert("valid_from".into(), json!(from));
        p.insert(
            "valid_through".into(),
            json!(authorization_valid_through(last)),
        );
    }
}

/// Marks each service approved or denied, with the units approved.
fn mark_lines(p: &mut Map<String, Value>, decision: &Decision) {
    let Some(Value::Array(services)) = p.get_mut("services") else {
        return;
    };
    for (i, s) in services.iter_mut().enumerate() {
        let Some(line) = decision.lines.iter().find(|l| l.line == i) else {
            continue;
        };
        let approved = line.approved_units > 0;
        s["decision"] = json!(if approved { "approved" } else { "denied" });
        if approved {
            s["approved_units"] = json!(line.approved_units);
        }
    }
}

fn adverse_fields(
    p: &mut Map<String, Value>,
    case: &PrecertCase,
    adverse: &AdverseDetermination,
    parties: &Parties,
    decision: &Decision,
) {
    p.insert("reason".into(), json!(reason_text(adverse.reason_code)));
    p.insert("clinical_rationale".into(), json!(adverse.rationale));
    p.insert("plan_provision".into(), json!(plan_provision(case)));
    p.insert("criterion".into(), json!(adverse.guideline));
    p.insert(
        "additional_information".into(),
        json!(additional_information(adverse.reason_code, &case.id)),
    );
    let by = match &decision.by {
        carepath_precert::DecisionMaker::Staff(s) => Some(s.staff_id.to_string()),
        carepath_precert::DecisionMaker::Automation => None,
    };
    reviewer(p, parties, by.as_deref());
}

/// Names the reviewer from the staff directory (their id when not found) and their
/// specialty in words.
fn reviewer(p: &mut Map<String, Value>, parties: &Parties, id: Option<&str>) {
    let Some(id) = id else {
        p.insert("reviewer_name".into(), json!("a physician reviewer"));
        return;
    };
    let staff = parties.staff.iter().find(|s| s.id.as_str() == id);
    p.insert(
        "reviewer_name".into(),
        json!(staff.map_or_else(|| id.to_owned(), |s| s.name.clone())),
    );
    if let Some(specialty) = staff.and_then(|s| s.specialty.as_ref()) {
        p.insert(
            "reviewer_specialty".into(),
            json!(specialty.as_str().replace('_', " ")),
        );
    }
}

/// The specific reason, in words a member can follow.
pub fn reason_text(code: ReasonCode) -> &'static str {
    match code {
        ReasonCode::NotMedicallyNecessary => {
            "The medical information we have does not show that the service is medically necessary for the condition described."
        }
        ReasonCode::InsufficientDocumentation => {
            "The records we received are incomplete: they lack the clinical information needed to show that the service is medically necessary."
        }
        ReasonCode::ExperimentalOrInvestigational => {
            "The service is considered experimental or investigational for the condition described."
        }
        ReasonCode::LowerLevelOfCare => {
            "The care can be given safely at a lower level of care or in another setting."
        }
        ReasonCode::NotACoveredBenefit => "The service is not a covered benefit of the plan.",
    }
}

/// What would let the plan decide differently, by reason.
fn additional_information(code: ReasonCode, case_id: &str) -> String {
    let what = match code {
        ReasonCode::NotMedicallyNecessary | ReasonCode::InsufficientDocumentation => {
            "Clinical notes, test results or a record of the treatment already tried that show why the service is needed"
        }
        ReasonCode::ExperimentalOrInvestigational => {
            "Published evidence or a study protocol showing that the service is effective for this condition"
        }
        ReasonCode::LowerLevelOfCare => {
            "Clinical notes showing why the care cannot be given safely at a lower level of care or in another setting"
        }
        ReasonCode::NotACoveredBenefit => {
            "Information showing that the service falls under a covered benefit of the plan"
        }
    };
    format!("{what} would let us reconsider. Send them quoting case number {case_id}.")
}

/// The plan provision relied on: the precertification rule that applied to the
/// service, with the version of the list it belongs to.
fn plan_provision(case: &PrecertCase) -> String {
    let lines = case
        .determination
        .as_ref()
        .map(|d| d.lines.as_slice())
        .unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    for l in lines {
        if let Some(rule) = &l.rule {
            let text = format!(
                "precertification list {} version {}, rule {}: {}",
                l.list.id, l.list.version, rule.id, rule.text
            );
            if !parts.contains(&text) {
                parts.push(text);
            }
        }
    }
    if parts.is_empty() {
        return "the plan's requirement that covered services be medically necessary".into();
    }
    capitalize(&parts.join("; "))
}

fn decision_of(event: &DomainEvent) -> Result<Option<Decision>, String> {
    match event.payload.get("decision") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("{}: decision: {e}", event.kind)),
    }
}

fn field<T: serde::de::DeserializeOwned>(event: &DomainEvent, name: &str) -> Result<T, String> {
    let value = event.payload.get(name).cloned().unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|e| format!("{}: {name}: {e}", event.kind))
}

fn date(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}
