//! Example events of every kind the shipped rules handle, with complete payloads.
//!
//! They are the reference for what emitters must put in a payload (the same shapes
//! are listed in `data/notify/README.md`), and they drive the tests that render every
//! shipped template, so the examples and the templates cannot drift apart.

use carepath_core::{DirectoryBundle, DomainEvent, Member, Provider};
use chrono::DateTime;
use serde_json::{Value, json};

/// The payload fields every `precert.case.*` event carries.
fn precert_common(requesting: &Provider) -> serde_json::Map<String, Value> {
    json!({
        "case_id": "PC-2026-000123",
        "requesting_provider_npi": requesting.npi,
        "requesting_provider_name": requesting.name,
        "urgency": "routine",
        "date_of_service": "2026-12-03",
        "diagnosis_codes": ["G43.909"],
        "services": [
            { "code": "70553", "description": "MRI brain without and with contrast", "units": 1 }
        ]
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn with(mut base: serde_json::Map<String, Value>, extra: Value) -> Value {
    if let Value::Object(extra) = extra {
        base.extend(extra);
    }
    Value::Object(base)
}

/// A complete `precert.case.denied` payload for a request from `requesting`.
pub fn denial_payload(requesting: &Provider) -> Value {
    with(
        precert_common(requesting),
        json!({
            "reason": "The records do not show the six weeks of treatment for headache that must come before an MRI for a headache without warning signs.",
            "clinical_rationale": "No neurological deficit, change in headache pattern or other red flag is documented.",
            "plan_provision": "Certificate of Coverage, section 4.2 (Advanced imaging: medical necessity)",
            "criterion": "Carepath imaging criteria IMG-HEAD-07, version 2026.1 (illustrative)",
            "additional_information": "Notes showing six weeks of treatment and its outcome, or any neurological finding, would let us reconsider.",
            "reviewer_name": "Dr. Samuel Okafor",
            "reviewer_specialty": "neurology",
            "appeal_deadline": "2027-05-24",
            "peer_to_peer_deadline": "2026-12-02"
        }),
    )
}

/// One event of every kind the shipped rules handle, about directory members and
/// providers, with the payload fields the shipped templates use.
pub fn sample_events(dir: &DirectoryBundle) -> Vec<DomainEvent> {
    let member = &dir.members[0];
    let provider = &dir.providers[0];
    let nurse = dir
        .staff
        .iter()
        .find(|s| s.role == carepath_core::StaffRole::Nurse)
        .map(|s| s.id.to_string())
        .unwrap_or_else(|| "RN-001".into());
    let approval = json!({
        "authorization_number": "A-2026-55012",
        "valid_from": "2026-12-01",
        "valid_through": "2027-02-28",
        "servicing_provider_name": "Hartford Imaging Center"
    });
    let mut partial = denial_payload(provider);
    if let Value::Object(p) = &mut partial {
        p.extend(approval.as_object().cloned().unwrap_or_default());
        p.insert(
            "services".into(),
            json!([
                { "code": "97110", "description": "Therapeutic exercise", "units": 24, "decision": "approved", "approved_units": 12 },
                { "code": "97140", "description": "Manual therapy", "units": 12, "decision": "denied" }
            ]),
        );
    }
    let appeal = |outcome: &str| {
        with(
            precert_common(provider),
            json!({
                "appeal_id": "AP-2026-0042",
                "outcome": outcome,
                "reason": "The new notes still show no neurological finding, and treatment was tried for two weeks only.",
                "plan_provision": "Certificate of Coverage, section 4.2",
                "criterion": "Carepath imaging criteria IMG-HEAD-07, version 2026.1 (illustrative)",
                "reviewer_name": "Dr. Lena Fischer",
                "reviewer_specialty": "neurology",
                "external_review_deadline": "2027-07-01",
                "authorization_number": "A-2026-55013"
            }),
        )
    };
    let doctor = json!({
        "name": "Dr. Ana Ruiz",
        "email": "a.ruiz@clinic.example",
        "fax": "+971 4 555 0100",
        "preferred_channel": "fax"
    });
    let so = |extra: Value| {
        with(
            json!({ "request_id": "SO-2026-0007", "condition": "chronic kidney disease" })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            extra,
        )
    };
    let events = [
        (
            "precert.case.approved",
            with(precert_common(provider), approval.clone()),
        ),
        ("precert.case.partially_approved", partial),
        (
            "precert.case.information_requested",
            with(
                precert_common(provider),
                json!({
                    "requested_information": ["Office notes from the last two visits", "Results of prior imaging"],
                    "due_date": "2026-11-27"
                }),
            ),
        ),
        ("precert.case.denied", denial_payload(provider)),
        (
            "precert.case.peer_to_peer_scheduled",
            with(
                precert_common(provider),
                json!({
                    "scheduled_at": "2026-11-27T14:30:00-05:00",
                    "reviewer_name": "Dr. Samuel Okafor",
                    "reviewer_specialty": "neurology"
                }),
            ),
        ),
        ("precert.case.appeal_decided", appeal("upheld")),
        ("precert.case.appeal_decided", appeal("overturned")),
        (
            "precert.case.withdrawn",
            with(
                precert_common(provider),
                json!({ "withdrawn_reason": "the service was cancelled" }),
            ),
        ),
        (
            "precert.case.notification_received",
            with(precert_common(provider), json!({})),
        ),
        ("secondopinion.request.submitted", so(json!({}))),
        (
            "secondopinion.request.records_missing",
            so(json!({ "missing_records": ["Pathology slides from the 2026 biopsy"] })),
        ),
        (
            "secondopinion.request.physician_assigned",
            so(json!({ "physician_name": "Dr. Helen Marsh", "physician_specialty": "nephrology" })),
        ),
        (
            "secondopinion.opinion.published",
            so(
                json!({ "physician_name": "Dr. Helen Marsh", "physician_specialty": "nephrology", "nurse_id": nurse }),
            ),
        ),
        (
            "secondopinion.opinion.shared_with_doctor",
            so(json!({
                "physician_name": "Dr. Helen Marsh",
                "physician_specialty": "nephrology",
                "doctor": doctor,
                "opinion_text": "The diagnosis of stage 4 chronic kidney disease is confirmed. The current plan is appropriate; no further tests are needed now."
            })),
        ),
        (
            "cases.interaction.recorded",
            json!({
                "interaction_id": "INT-2026-0311",
                "nurse_id": nurse,
                "nurse_name": "Maria Delgado, RN",
                "contact_channel": "phone",
                "notify_member": true,
                "summary": "We went over your new medicines and the follow-up visit after your hospital stay.",
                "next_steps": ["See Dr. Thornbury on December 4", "Call us if your weight goes up by more than 2 pounds in a day"]
            }),
        ),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, (kind, payload))| event(i, kind, member, payload))
        .collect()
}

fn event(i: usize, kind: &str, member: &Member, payload: Value) -> DomainEvent {
    let aggregate_kind = kind.split('.').take(2).collect::<Vec<_>>().join("_");
    DomainEvent {
        id: format!("0190f3a4-0000-7000-8000-{i:012}"),
        kind: kind.into(),
        aggregate_kind,
        aggregate_id: "PC-2026-000123".into(),
        member_id: Some(member.id.clone()),
        occurred_at: DateTime::parse_from_rfc3339("2026-11-25T15:00:00Z")
            .map(|d| d.to_utc())
            .unwrap_or_default(),
        payload,
    }
}
