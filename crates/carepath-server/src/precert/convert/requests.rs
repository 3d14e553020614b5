//! Requests of the precertification contract into the commands of
//! `carepath_app::precert`, and the use cases' answers back into responses. Every bad
//! field of a request is collected into one [`Invalid`] under the path the caller
//! sent.

use carepath_app::{
    Page, PageRequest,
    precert::{
        Adverse, CaseView, CheckRequest, Decision, GoldCard, LaterInformation, ListCases,
        MetricsReport, PartLine, Period, RequestedItem, RuleListVersion, SubmitRequest, Submitted,
        Validation,
    },
};
use carepath_core::{Invalid, MemberId, Npi};
use carepath_precert::{CheckAnswer, MAX_LINES, MAX_REQUEST_ID, metrics};
use carepath_proto::{common::v1 as common, precert::v1 as pb};
use chrono::{DateTime, Utc};

use super::{
    answer_to_proto, answers, case_to_proto, diagnoses, records, service_line, state_from_proto,
};
use crate::{
    convert::{instant, optional, optional_instant, required, timestamp, urgency_from_proto},
    error::{ApiError, ApiResult},
};

/// The id of the case a command is about, trimmed; `field` names it when empty.
pub fn case_id(id: &str, field: &str) -> ApiResult<String> {
    carepath_app::pipeline::record_id(id, field)
}

/// A page request of the contract.
pub fn page(page: Option<common::PageRequest>) -> PageRequest {
    let page = page.unwrap_or_default();
    PageRequest {
        token: page.page_token,
        size: page.page_size,
    }
}

/// A case as the contract shows it.
pub fn case(view: &CaseView) -> Option<pb::Case> {
    Some(case_to_proto(&view.case, &view.request_id, view.as_of))
}

/// A page of cases and the token of the next.
pub fn cases(page: Page<CaseView>) -> (Vec<pb::Case>, String) {
    (
        page.items
            .iter()
            .map(|v| case_to_proto(&v.case, &v.request_id, v.as_of))
            .collect(),
        page.next_page_token,
    )
}

fn check_request(
    member_id: &str,
    npi: &str,
    diagnosis_codes: &[String],
    lines: Vec<Option<pb::ServiceLine>>,
    line_field: impl Fn(usize) -> String,
) -> ApiResult<CheckRequest> {
    let mut invalid = Invalid::new();
    let member_id = required(&mut invalid, "member_id", member_id, MemberId::parse);
    let npi = required(&mut invalid, "rendering_provider_npi", npi, Npi::parse);
    let diagnoses = diagnoses(&mut invalid, "diagnoses", diagnosis_codes);
    let lines: Vec<_> = lines
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| service_line(&mut invalid, &line_field(i), l))
        .collect();
    invalid.into_result()?;
    Ok(CheckRequest {
        member_id: member_id.expect("checked"),
        rendering_npi: npi.expect("checked"),
        diagnoses,
        lines,
    })
}

pub fn check_requirement(req: pb::CheckRequirementRequest) -> ApiResult<CheckRequest> {
    check_request(
        &req.member_id,
        &req.rendering_provider_npi,
        &req.diagnoses,
        vec![req.line],
        |_| "line".to_owned(),
    )
}

pub fn batch_check_requirements(req: pb::BatchCheckRequirementsRequest) -> ApiResult<CheckRequest> {
    if req.lines.is_empty() || req.lines.len() > MAX_LINES {
        return Err(ApiError::field(
            "lines",
            format!("between 1 and {MAX_LINES} lines"),
        ));
    }
    check_request(
        &req.member_id,
        &req.rendering_provider_npi,
        &req.diagnoses,
        req.lines.into_iter().map(Some).collect(),
        |i| format!("lines[{i}]"),
    )
}

pub fn answers_to_proto(answers: Vec<CheckAnswer>) -> Vec<pb::RequirementAnswer> {
    answers.iter().map(answer_to_proto).collect()
}

pub fn submit(req: pb::SubmitRequest) -> ApiResult<SubmitRequest> {
    let mut invalid = Invalid::new();
    let request_id = req.request_id.trim().to_owned();
    if request_id.is_empty() {
        invalid.push("request_id", "is required");
    } else if request_id.len() > MAX_REQUEST_ID {
        invalid.push(
            "request_id",
            format!("must be at most {MAX_REQUEST_ID} characters"),
        );
    }
    let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
    let requesting = required(
        &mut invalid,
        "requesting_provider_npi",
        &req.requesting_provider_npi,
        Npi::parse,
    );
    let servicing = required(
        &mut invalid,
        "servicing_provider_npi",
        &req.servicing_provider_npi,
        Npi::parse,
    );
    if req.lines.is_empty() {
        invalid.push("lines", "at least one service line is required");
    } else if req.lines.len() > MAX_LINES {
        invalid.push("lines", format!("at most {MAX_LINES} lines"));
    }
    let lines: Vec<_> = req
        .lines
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| service_line(&mut invalid, &format!("lines[{i}]"), Some(l)))
        .collect();
    let diagnosis_codes = diagnoses(&mut invalid, "diagnoses", &req.diagnoses);
    if req.diagnoses.is_empty() {
        invalid.push("diagnoses", "at least one diagnosis is required");
    }
    let urgency = urgency_from_proto(req.urgency, "urgency", &mut invalid);
    let answers = answers(&mut invalid, "answers", req.answers);
    let records = records(&mut invalid, "records", req.records);
    invalid.into_result()?;
    Ok(SubmitRequest {
        request_id,
        member_id: member_id.expect("checked"),
        requesting_npi: requesting.expect("checked"),
        servicing_npi: servicing.expect("checked"),
        lines,
        diagnoses: diagnosis_codes,
        urgency: urgency.expect("checked"),
        answers,
        records,
        coverage_assertions: Vec::new(),
    })
}

pub fn submitted_to_proto(out: Submitted) -> pb::SubmitResponse {
    pb::SubmitResponse {
        case: case(&out.case),
        created: out.created,
    }
}

pub fn list_cases(req: pb::ListCasesRequest) -> ApiResult<ListCases> {
    let mut invalid = Invalid::new();
    let member_id = optional(&mut invalid, "member_id", &req.member_id, MemberId::parse).flatten();
    let provider_npi =
        optional(&mut invalid, "provider_npi", &req.provider_npi, Npi::parse).flatten();
    let status = match req.status {
        0 => None,
        s => {
            let state = state_from_proto(s);
            if state.is_none() {
                invalid.push("status", "is not a known CASE_STATUS_* value");
            }
            state
        }
    };
    let received_from = optional_instant(&mut invalid, "received_from", req.received_from);
    let received_to = optional_instant(&mut invalid, "received_to", req.received_to);
    invalid.into_result()?;
    Ok(ListCases {
        member_id,
        provider_npi,
        status,
        received_from,
        received_to,
        page: page(req.page),
    })
}

/// Answers and records sent after the submission (information supplied, a
/// reconsideration).
pub fn later_information(
    case_id: &str,
    answer_values: Vec<pb::ClinicalAnswer>,
    record_refs: Vec<pb::RecordReference>,
) -> ApiResult<(String, LaterInformation)> {
    let mut invalid = Invalid::new();
    let answers = answers(&mut invalid, "answers", answer_values);
    let records = records(&mut invalid, "records", record_refs);
    invalid.into_result()?;
    let id = self::case_id(case_id, "case_id")?;
    Ok((id, LaterInformation { answers, records }))
}

pub fn request_information(
    req: pb::RequestInformationRequest,
) -> ApiResult<(String, Vec<RequestedItem>)> {
    if req.missing.is_empty() {
        return Err(ApiError::field(
            "missing",
            "name at least one item the provider must send",
        ));
    }
    let mut invalid = Invalid::new();
    for (i, item) in req.missing.iter().enumerate() {
        if item.id.trim().is_empty() {
            invalid.push(format!("missing[{i}].id"), "is required");
        }
        if item.text.trim().is_empty() {
            invalid.push(format!("missing[{i}].text"), "is required");
        }
    }
    invalid.into_result()?;
    let id = case_id(&req.case_id, "case_id")?;
    let items = req
        .missing
        .into_iter()
        .map(|item| RequestedItem {
            id: item.id.trim().to_owned(),
            text: item.text.trim().to_owned(),
        })
        .collect();
    Ok((id, items))
}

pub fn record_decision(req: pb::RecordDecisionRequest) -> ApiResult<(String, Decision)> {
    let adverse = Adverse {
        reason_code: req.reason_code,
        rationale: req.rationale,
        guideline: req.guideline,
    };
    let decision = match pb::DecisionOutcome::try_from(req.outcome)
        .unwrap_or(pb::DecisionOutcome::Unspecified)
    {
        pb::DecisionOutcome::Approved => Decision::Approve { note: req.note },
        pb::DecisionOutcome::Denied => Decision::Deny(adverse),
        pb::DecisionOutcome::PartiallyApproved => Decision::ApproveInPart {
            adverse,
            lines: req
                .lines
                .iter()
                .map(|l| PartLine {
                    line_number: l.line_number,
                    approved_units: l.approved_units,
                    approved_days: l.approved_days,
                })
                .collect(),
        },
        pb::DecisionOutcome::Unspecified => {
            return Err(ApiError::field(
                "outcome",
                "must be APPROVED, PARTIALLY_APPROVED or DENIED",
            ));
        }
    };
    Ok((case_id(&req.case_id, "case_id")?, decision))
}

pub fn schedule_peer_to_peer(
    req: pb::SchedulePeerToPeerRequest,
) -> ApiResult<(String, DateTime<Utc>)> {
    let at = req
        .scheduled_for
        .and_then(instant)
        .ok_or_else(|| ApiError::field("scheduled_for", "is required"))?;
    Ok((case_id(&req.case_id, "case_id")?, at))
}

pub fn decide_appeal(req: pb::DecideAppealRequest) -> ApiResult<(String, bool, Adverse)> {
    Ok((
        case_id(&req.case_id, "case_id")?,
        req.overturn,
        Adverse {
            reason_code: req.reason_code,
            rationale: req.rationale,
            guideline: req.guideline,
        },
    ))
}

pub fn gold_card_to_proto(c: GoldCard) -> pb::GoldCard {
    pb::GoldCard {
        provider_npi: c.provider_npi,
        category: c.category,
        exempt: c.exempt,
        requests: c.requests,
        approvals: c.approvals,
        approval_rate: c.approval_rate,
        evaluated_at: Some(timestamp(c.evaluated_at)),
        window_start: Some(timestamp(c.window_start)),
        change: c.change,
    }
}

pub fn list_gold_cards(req: pb::ListGoldCardsRequest) -> ApiResult<(Option<Npi>, PageRequest)> {
    let mut invalid = Invalid::new();
    let npi = optional(&mut invalid, "provider_npi", &req.provider_npi, Npi::parse).flatten();
    invalid.into_result()?;
    Ok((npi, page(req.page)))
}

pub fn get_metrics(req: pb::GetMetricsRequest) -> ApiResult<Period> {
    let mut invalid = Invalid::new();
    let from = optional_instant(&mut invalid, "from", req.from);
    let to = optional_instant(&mut invalid, "to", req.to);
    invalid.into_result()?;
    Ok(Period { from, to })
}

pub fn metrics_to_proto(report: MetricsReport) -> pb::GetMetricsResponse {
    let m = report.metrics;
    let urgency = |u: &metrics::UrgencyMetrics| pb::UrgencyMetrics {
        requests: u.received,
        decided: u.decided,
        approved_share: u.approved_share,
        denied_share: u.denied_share,
        partially_approved_share: u.partially_approved_share,
        approved_after_extended_review_share: u.approved_after_extended_review_share,
        average_hours_to_decision: u.mean_hours_to_decision.unwrap_or(0.0),
        median_hours_to_decision: u.median_hours_to_decision.unwrap_or(0.0),
    };
    pb::GetMetricsResponse {
        standard: Some(urgency(&m.standard)),
        expedited: Some(urgency(&m.expedited)),
        approved_after_extended_review_share: m.approved_after_extended_review_share,
        approved_after_appeal_share: m.approved_after_appeal_share,
        auto_approval_rate: m.auto_approval_rate,
        late_cases: m.late_cases,
        total_requests: report.total_requests,
    }
}

pub fn rule_list_to_proto(v: RuleListVersion) -> pb::RuleListVersion {
    pb::RuleListVersion {
        list_id: v.list_id,
        version: v.version,
        effective_from: v.effective_from.format("%Y-%m-%d").to_string(),
        effective_to: v
            .effective_to
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        rules: v.rules,
        source: v.source,
        in_force: v.in_force,
    }
}

pub fn validation_to_proto(v: Validation) -> pb::ValidateRuleListResponse {
    match v {
        Validation::Valid(list) => pb::ValidateRuleListResponse {
            valid: true,
            errors: Vec::new(),
            list: Some(rule_list_to_proto(list)),
        },
        Validation::Invalid(errors) => pb::ValidateRuleListResponse {
            valid: false,
            errors,
            list: None,
        },
    }
}
