//! The event catalogue: for every domain event kind, the members its published `data`
//! keeps and what each holds. Pure data and pure functions.
//!
//! Published events carry ids and codes, never names, addresses, dates of birth or
//! free text: `project` copies only the members listed here, and only values of the
//! listed shape (an id or a code is one token of at most [`MAX_TOKEN`] characters with
//! no spaces, so a name or an address put in such a member by mistake is dropped too).
//! The JSON Schema of each kind (`docs/events/v1/<kind>.json`) is generated from the
//! same table, so the documentation cannot drift from what is sent.

use serde_json::{Map, Value, json};

/// Longest id or code a published event carries.
pub const MAX_TOKEN: usize = 128;
/// Most items a published list carries.
pub const MAX_ITEMS: usize = 64;

/// What one member of an event's data holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// An identifier: a case, a member id, an NPI, a staff id, a list.
    Id,
    /// A code from a code system or a closed set: an ICD-10-CM or CPT code, a state,
    /// an urgency, a specialty.
    Code,
    Bool,
    /// A whole number of at least zero.
    Count,
    /// An instant, RFC 3339 in UTC.
    Time,
    /// A calendar date (`YYYY-MM-DD`) of the process, such as a date of service.
    Date,
    Object(&'static [Member]),
    List(&'static Field),
}

/// A member of an object: its name, what it holds and what it means.
pub type Member = (&'static str, Field, &'static str);

/// One event kind as published.
#[derive(Debug, Clone, Copy)]
pub struct EventType {
    /// The dotted kind, e.g. `precert.case.approved`; the subject is
    /// `<prefix>.<kind>` and the CloudEvents type is `carepath.<kind>`.
    pub kind: &'static str,
    /// What happened, in one sentence.
    pub about: &'static str,
    /// The aggregate the event's `subject` names.
    pub aggregate: &'static str,
    /// Members every event of its area carries.
    pub base: &'static [Member],
    /// Members of this kind alone.
    pub fields: &'static [Member],
}

impl EventType {
    pub fn members(&self) -> impl Iterator<Item = &'static Member> {
        self.base.iter().chain(self.fields.iter())
    }
}

use Field::{Bool, Code, Count, Date, Id, List, Object, Time};

const LIST_VERSION: &[Member] = &[
    ("id", Id, "rule list"),
    ("version", Code, "rule list version"),
];
const SERVICE: Field = Object(&[
    ("line", Count, "line number, from 0"),
    ("code", Code, "CPT or HCPCS code"),
    ("units", Count, "units requested"),
    ("date_of_service", Date, "date of service"),
    ("setting", Code, "setting of care"),
    ("rule_id", Id, "the rule that applied, if any"),
    ("category", Code, "the rule's category"),
    (
        "list",
        Object(LIST_VERSION),
        "the rule list version in force",
    ),
]);
const PRECERT: &[Member] = &[
    ("case_id", Id, "precertification case"),
    ("member_id", Id, "member"),
    ("plan_id", Id, "health plan"),
    ("requesting_provider", Id, "requesting provider's NPI"),
    ("servicing_provider", Id, "servicing provider's NPI"),
    ("urgency", Code, "standard or urgent"),
    ("state", Code, "the case's state after the event"),
    ("received_at", Time, "when the request was received"),
    ("due_at", Time, "when the decision is due"),
    ("services", List(&SERVICE), "the service lines"),
    ("diagnoses", List(&Code), "ICD-10-CM codes"),
];
const STAFF: Field = Object(&[
    ("staff_id", Id, "staff member"),
    ("role", Code, "their role"),
    ("specialty", Code, "their specialty"),
]);
const DECIDED_BY: Field = Object(&[
    ("kind", Code, "`automation` for an automatic decision"),
    ("staff_id", Id, "the deciding staff member"),
    ("role", Code, "their role"),
    ("specialty", Code, "their specialty"),
]);
const LINE_DECISION: Field = Object(&[
    ("line", Count, "line number, from 0"),
    ("requested_units", Count, "units requested"),
    ("approved_units", Count, "units approved"),
    ("requested_days", Count, "days requested (stays)"),
    ("approved_days", Count, "days approved (stays)"),
]);
const DECISION: Field = Object(&[
    ("outcome", Code, "approved, partially_approved or denied"),
    ("stage", Code, "initial or reconsideration"),
    ("at", Time, "when it was decided"),
    ("due_at", Time, "when it was due"),
    ("lines", List(&LINE_DECISION), "the decision per line"),
]);
const APPEAL_RIGHTS: Field = Object(&[
    ("appeal_by", Time, "last moment to file an appeal"),
    (
        "standard_appeal_decision_days",
        Count,
        "days a standard appeal takes at most",
    ),
    (
        "expedited_appeal_decision_hours",
        Count,
        "hours an expedited appeal takes at most",
    ),
    (
        "peer_to_peer_available",
        Bool,
        "whether a peer-to-peer may be asked for",
    ),
    (
        "peer_to_peer_specialty",
        Code,
        "the specialty of that discussion",
    ),
    (
        "reconsideration_available",
        Bool,
        "whether a reconsideration may be asked for",
    ),
    (
        "external_review_available",
        Bool,
        "whether external review is open",
    ),
    (
        "criteria_free_on_request",
        Bool,
        "whether the criteria are free on request",
    ),
]);
const DECIDED: &[Member] = &[
    ("decision", DECISION, "the decision"),
    ("decided_by", DECIDED_BY, "who decided"),
    ("late", Bool, "decided after its due time"),
    ("reason_code", Code, "reason of an adverse decision"),
    (
        "appeal_instructions",
        APPEAL_RIGHTS,
        "the member's rights after an adverse decision",
    ),
];
const MISSING: Field = Object(&[
    (
        "questions",
        List(&Object(&[("id", Id, "question")])),
        "questions to answer",
    ),
    (
        "documents",
        List(&Object(&[("id", Id, "document")])),
        "documents to send",
    ),
]);

const CASES: &[Member] = &[("case_id", Id, "managed case"), ("member_id", Id, "member")];
const REFERRAL: Field = Object(&[
    ("source", Code, "what referred the member"),
    ("reason", Code, "why"),
    ("referred_by", Id, "who referred"),
    ("event_id", Id, "the event that caused the referral"),
    ("source_id", Id, "the record that caused it"),
    ("diagnosis", Code, "ICD-10-CM code"),
]);
const SERVICE_ARRANGED: &[Member] = &[
    ("service_id", Id, "arranged service"),
    ("service_kind", Code, "kind of service"),
    ("state", Code, "its state"),
    ("vendor_npi", Id, "vendor's NPI"),
    (
        "needs_precertification",
        Bool,
        "whether it needs precertification",
    ),
    (
        "precert_case_id",
        Id,
        "the precertification case covering it",
    ),
];
const TASK: &[Member] = &[
    ("task_id", Id, "task"),
    ("owner", Id, "who owns it"),
    ("due_on", Date, "due date"),
    ("priority", Code, "priority"),
    ("status", Code, "status"),
];
const TASK_UPDATED: &[Member] = &[
    ("task_id", Id, "task"),
    ("owner", Id, "who owns it"),
    ("due_on", Date, "due date"),
    ("priority", Code, "priority"),
    ("status", Code, "status"),
    ("previous_status", Code, "status before"),
];

const OPINION: &[Member] = &[
    ("request_id", Id, "second-opinion request"),
    ("condition", Code, "condition group"),
];

const DIRECTORY: &[Member] = &[("created", Bool, "new rather than replaced")];

const NONE: &[Member] = &[];

const fn precert(kind: &'static str, about: &'static str, fields: &'static [Member]) -> EventType {
    EventType {
        kind,
        about,
        aggregate: "precert_case",
        base: PRECERT,
        fields,
    }
}

const fn case(kind: &'static str, about: &'static str, fields: &'static [Member]) -> EventType {
    EventType {
        kind,
        about,
        aggregate: "case",
        base: CASES,
        fields,
    }
}

const fn opinion(kind: &'static str, about: &'static str, fields: &'static [Member]) -> EventType {
    EventType {
        kind,
        about,
        aggregate: "second_opinion_request",
        base: OPINION,
        fields,
    }
}

const fn directory(kind: &'static str, aggregate: &'static str, about: &'static str) -> EventType {
    EventType {
        kind,
        about,
        aggregate,
        base: NONE,
        fields: DIRECTORY,
    }
}

/// Every event kind the domain emits, as published.
pub const CATALOGUE: &[EventType] = &[
    precert(
        "precert.case.submitted",
        "A precertification request was received.",
        NONE,
    ),
    precert(
        "precert.case.information_requested",
        "The plan asked the provider for information before deciding.",
        &[
            ("missing", MISSING, "what is missing"),
            ("information_due_at", Time, "when the answer is due"),
            (
                "withdraw_after",
                Time,
                "from when the case may be withdrawn unanswered",
            ),
        ],
    ),
    precert(
        "precert.case.information_received",
        "The provider sent the information asked for.",
        NONE,
    ),
    precert(
        "precert.case.pended_for_review",
        "Automation could not approve, or the request is for services already given; the case waits for a reviewer.",
        &[
            ("pended_for", Code, "which review it waits for"),
            (
                "retrospective",
                Bool,
                "whether the services were already given (a retrospective review)",
            ),
        ],
    ),
    precert(
        "precert.case.claimed",
        "A reviewer took the case.",
        &[("reviewer", STAFF, "the reviewer")],
    ),
    precert(
        "precert.case.approved",
        "The request was approved.",
        DECIDED,
    ),
    precert(
        "precert.case.partially_approved",
        "Part of the request was approved.",
        DECIDED,
    ),
    precert(
        "precert.case.denied",
        "The request was denied by a physician reviewer.",
        DECIDED,
    ),
    precert(
        "precert.case.peer_to_peer_requested",
        "The requesting physician asked for a peer-to-peer discussion.",
        &[(
            "required_specialty",
            Code,
            "the specialty of the plan physician",
        )],
    ),
    precert(
        "precert.case.peer_to_peer_scheduled",
        "The peer-to-peer discussion was scheduled.",
        &[
            ("scheduled_for", Time, "when"),
            ("physician", STAFF, "the plan physician"),
        ],
    ),
    precert(
        "precert.case.peer_to_peer_completed",
        "The peer-to-peer discussion took place.",
        &[(
            "outcome",
            Code,
            "whether the decision stands or was overturned",
        )],
    ),
    precert(
        "precert.case.reconsidered",
        "The case was reconsidered with new information.",
        NONE,
    ),
    precert(
        "precert.case.appeal_requested",
        "An appeal of an adverse decision was filed.",
        &[
            ("priority", Code, "standard or expedited"),
            ("appeal_due_at", Time, "when the appeal decision is due"),
        ],
    ),
    precert(
        "precert.case.appeal_decided",
        "The appeal was decided.",
        &[
            ("outcome", Code, "upheld or overturned"),
            ("decision", DECISION, "the decision"),
            ("decided_by", STAFF, "the physician who decided"),
            (
                "external_review_available",
                Bool,
                "whether external review is open",
            ),
        ],
    ),
    precert(
        "precert.case.withdrawn",
        "The case was withdrawn.",
        &[("reason", Code, "why")],
    ),
    precert(
        "precert.case.notification_received",
        "A notification after the fact (an emergency admission) was received; no coverage decision is made.",
        &[],
    ),
    EventType {
        kind: "precert.rule_list.activated",
        about: "A new version of a precertification rule list was activated.",
        aggregate: "precert_rule_list",
        base: NONE,
        fields: &[
            ("list_id", Id, "rule list"),
            ("version", Code, "version"),
            ("effective_from", Date, "first day in force"),
            ("activated_by", Id, "the administrator"),
        ],
    },
    EventType {
        kind: "oncology.plan.submitted",
        about: "An oncology treatment plan was submitted and filed as a precertification case.",
        aggregate: "oncology_plan",
        base: NONE,
        fields: &[
            ("plan_id", Id, "treatment plan"),
            (
                "precert_case_id",
                Id,
                "the precertification case filed for it",
            ),
            ("member_id", Id, "member"),
            ("treating_provider_npi", Id, "treating provider's NPI"),
            ("cancer_id", Id, "cancer in the pathway catalogue"),
            ("diagnosis", Code, "ICD-10-CM code"),
            ("on_pathway", Bool, "whether the plan follows a pathway"),
            ("instant_approval", Bool, "whether it was approved at once"),
            ("regimen_id", Id, "the matched regimen"),
            ("replaces_plan_id", Id, "the plan it replaces"),
        ],
    },
    case(
        "cases.case.opened",
        "A managed case was opened.",
        &[
            ("kind", Code, "kind of case"),
            ("phase", Code, "its phase"),
            ("referral", REFERRAL, "the referral that opened it"),
        ],
    ),
    case(
        "cases.referral.absorbed",
        "An open case took in another referral.",
        &[("referral", REFERRAL, "the referral")],
    ),
    case(
        "cases.case.assigned",
        "A nurse was assigned to the case.",
        &[
            ("nurse_id", Id, "the nurse"),
            ("previous_nurse_id", Id, "the nurse before"),
            ("assigned_by", Id, "who assigned"),
            ("kind", Code, "kind of case"),
        ],
    ),
    case(
        "cases.case.phase_changed",
        "The case moved to another phase.",
        &[("from", Code, "phase before"), ("to", Code, "phase after")],
    ),
    case(
        "cases.case.closed",
        "The case was closed.",
        &[
            ("outcome", Code, "outcome"),
            ("from_phase", Code, "phase before"),
            ("nurse_id", Id, "the nurse"),
            ("kind", Code, "kind of case"),
        ],
    ),
    case(
        "cases.goal.added",
        "A care-plan goal was added.",
        &[
            ("goal_id", Id, "goal"),
            ("target_date", Date, "target date"),
        ],
    ),
    case(
        "cases.goal.updated",
        "A goal's status changed.",
        &[("goal_id", Id, "goal"), ("status", Code, "status")],
    ),
    case("cases.task.added", "A care-plan task was added.", TASK),
    case("cases.task.updated", "A task changed.", TASK_UPDATED),
    case(
        "cases.interaction.recorded",
        "A nurse recorded an interaction with the member.",
        &[
            ("interaction_id", Id, "interaction"),
            ("nurse_id", Id, "the nurse"),
            ("contact_channel", Code, "phone, visit, ..."),
            ("notify_member", Bool, "whether the member is told"),
        ],
    ),
    case(
        "cases.transition.recorded",
        "A transition of care was recorded.",
        &[
            ("transition_id", Id, "transition"),
            ("from_setting", Code, "setting before"),
            ("to_setting", Code, "setting after"),
            ("discharge_date", Date, "discharge date"),
            ("arrival_date", Date, "arrival date"),
        ],
    ),
    case(
        "cases.service.requested",
        "A service was arranged for the member.",
        SERVICE_ARRANGED,
    ),
    case(
        "cases.service.updated",
        "An arranged service changed.",
        SERVICE_ARRANGED,
    ),
    case(
        "cases.decision_support.requested",
        "Decision support was requested.",
        &[
            ("decision_support_id", Id, "decision-support request"),
            ("reason", Code, "why"),
            ("diagnosis", Code, "ICD-10-CM code"),
            ("specialty", Code, "specialty asked for"),
        ],
    ),
    case(
        "cases.decision_support.care_abroad_assessed",
        "Care abroad was assessed.",
        &[
            ("decision_support_id", Id, "decision-support request"),
            ("country", Code, "ISO country code"),
            ("recommendation", Code, "recommendation"),
            ("specialist_npi", Id, "specialist's NPI"),
        ],
    ),
    case(
        "cases.consent.recorded",
        "The member granted or withdrew a provider's access to the case.",
        &[
            ("provider_npi", Id, "the provider"),
            ("granted", Bool, "granted or withdrawn"),
        ],
    ),
    case(
        "cases.case.rated",
        "The member rated the closed case.",
        &[
            ("rating", Count, "1 to 5"),
            ("satisfied", Bool, "whether the rating counts as satisfied"),
        ],
    ),
    opinion(
        "secondopinion.request.submitted",
        "A second-opinion request was submitted.",
        &[
            ("member_id", Id, "member"),
            ("diagnosis", Code, "ICD-10-CM code"),
            ("diagnosis_group", Code, "diagnosis group"),
            (
                "major_surgery",
                Bool,
                "whether major surgery was recommended",
            ),
            ("country", Code, "member's ISO country code"),
        ],
    ),
    opinion(
        "secondopinion.request.questionnaire_completed",
        "The member completed the questionnaire.",
        NONE,
    ),
    opinion(
        "secondopinion.request.records_missing",
        "Required records are still missing.",
        NONE,
    ),
    opinion(
        "secondopinion.request.records_received",
        "Every required record was received.",
        &[
            ("due_at", Time, "when the opinion is due"),
            ("records", Count, "records received"),
        ],
    ),
    opinion(
        "secondopinion.record.received",
        "A record was received.",
        &[
            ("record_id", Id, "record"),
            ("kind", Code, "kind of record"),
            ("channel", Code, "how it arrived"),
            ("size_bytes", Count, "size"),
        ],
    ),
    opinion(
        "secondopinion.request.physician_assigned",
        "An expert physician was assigned.",
        &[
            ("physician_npi", Id, "the expert's NPI"),
            ("physician_specialty", Code, "their specialty"),
        ],
    ),
    opinion(
        "secondopinion.opinion.published",
        "The opinion was published.",
        &[
            ("physician_specialty", Code, "the expert's specialty"),
            ("nurse_id", Id, "the coordinating nurse"),
            ("late", Bool, "published after its due time"),
        ],
    ),
    opinion(
        "secondopinion.opinion.addendum_added",
        "An addendum was added to the opinion.",
        &[("addendum", Count, "addendum number")],
    ),
    opinion(
        "secondopinion.opinion.reviewed",
        "The member read the opinion.",
        NONE,
    ),
    opinion(
        "secondopinion.opinion.shared_with_doctor",
        "A copy of the opinion was sent to the member's doctor.",
        &[("physician_specialty", Code, "the expert's specialty")],
    ),
    opinion(
        "secondopinion.followup.done",
        "The follow-up with the member was done.",
        &[
            ("nurse_id", Id, "the nurse"),
            ("channel", Code, "how"),
            (
                "member_understands",
                Bool,
                "whether the member understood the opinion",
            ),
        ],
    ),
    opinion(
        "secondopinion.question.asked",
        "The member asked a follow-up question.",
        &[("question", Count, "question number")],
    ),
    opinion(
        "secondopinion.question.answered",
        "The expert answered a follow-up question.",
        &[
            ("question", Count, "question number"),
            ("addendum", Count, "the addendum holding the answer"),
        ],
    ),
    opinion(
        "secondopinion.request.closed",
        "The request was closed.",
        NONE,
    ),
    opinion(
        "secondopinion.message.posted",
        "A message was posted on the request.",
        &[
            ("message_id", Id, "message"),
            ("author_role", Code, "the author's role"),
        ],
    ),
    directory(
        "directory.plan.upserted",
        "plan",
        "A health plan was added or replaced.",
    ),
    directory(
        "directory.member.upserted",
        "member",
        "A member was added or replaced.",
    ),
    directory(
        "directory.provider.upserted",
        "provider",
        "A provider was added or replaced.",
    ),
    directory(
        "directory.staff.upserted",
        "staff",
        "A staff member was added or replaced.",
    ),
];

/// The catalogue entry of `kind`.
pub fn event_type(kind: &str) -> Option<&'static EventType> {
    CATALOGUE.iter().find(|t| t.kind == kind)
}

/// The published `data` of an event of `kind` with `payload`: only the catalogue's
/// members, with values of their declared shape. An unknown kind publishes an empty
/// object (its envelope still says what happened to which aggregate).
pub fn project(kind: &str, payload: &Value) -> Value {
    let Some(t) = event_type(kind) else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    if let Value::Object(map) = payload {
        for (name, field, _) in t.members() {
            if let Some(value) = map.get(*name).and_then(|v| keep(*field, v)) {
                out.insert((*name).to_owned(), value);
            }
        }
    }
    Value::Object(out)
}

/// `value` if it has the shape `field` declares (null is kept: absent optional data);
/// objects and lists are projected member by member.
fn keep(field: Field, value: &Value) -> Option<Value> {
    if value.is_null() {
        return Some(Value::Null);
    }
    match field {
        Id | Code => value.as_str().filter(|s| is_token(s)).map(|s| json!(s)),
        Bool => value.as_bool().map(Value::Bool),
        Count => value.as_u64().map(|n| json!(n)),
        Time => value
            .as_str()
            .filter(|s| s.len() <= 40 && chrono::DateTime::parse_from_rfc3339(s).is_ok())
            .map(|s| json!(s)),
        Date => value
            .as_str()
            .filter(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
            .map(|s| json!(s)),
        Object(members) => value.as_object().map(|map| {
            let mut out = Map::new();
            for (name, field, _) in members {
                if let Some(v) = map.get(*name).and_then(|v| keep(*field, v)) {
                    out.insert((*name).to_owned(), v);
                }
            }
            Value::Object(out)
        }),
        List(item) => value.as_array().map(|items| {
            Value::Array(
                items
                    .iter()
                    .take(MAX_ITEMS)
                    .filter_map(|v| keep(*item, v))
                    .collect(),
            )
        }),
    }
}

/// One token: letters, digits and `. _ - : @ / +`, at most [`MAX_TOKEN`] long. Names
/// and addresses have spaces, so they are never one.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOKEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:@/+".contains(c))
}

/// The name of the schema of `kind`'s data: the CloudEvents `dataschema`, and the
/// `$id` of `docs/events/v1/<kind>.json`.
pub fn schema_id(kind: &str) -> String {
    format!("urn:carepath:events:v1:{kind}")
}

/// The JSON Schema (2020-12) of the published `data` of `t`.
pub fn schema(t: &EventType) -> Value {
    let mut schema = object_schema(&t.members().copied().collect::<Vec<_>>());
    let head = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id(t.kind),
        "title": format!("carepath.{}", t.kind),
        "description": format!(
            "{} The data of the CloudEvent of type carepath.{}; its subject is the {} id.",
            t.about, t.kind, t.aggregate
        ),
    });
    if let (Value::Object(schema), Value::Object(head)) = (&mut schema, head) {
        let mut merged = head;
        merged.extend(std::mem::take(schema));
        return Value::Object(merged);
    }
    schema
}

fn object_schema(members: &[Member]) -> Value {
    let properties: Map<String, Value> = members
        .iter()
        .map(|(name, field, about)| {
            let mut s = field_schema(*field);
            s["description"] = json!(about);
            ((*name).to_owned(), s)
        })
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    })
}

fn field_schema(field: Field) -> Value {
    let token = format!("^[A-Za-z0-9._:@/+-]{{1,{MAX_TOKEN}}}$");
    match field {
        Id | Code => json!({ "type": ["string", "null"], "pattern": token }),
        Bool => json!({ "type": ["boolean", "null"] }),
        Count => json!({ "type": ["integer", "null"], "minimum": 0 }),
        Time => json!({ "type": ["string", "null"], "format": "date-time" }),
        Date => json!({ "type": ["string", "null"], "format": "date" }),
        Object(members) => {
            let mut s = object_schema(members);
            s["type"] = json!(["object", "null"]);
            s
        }
        List(item) => {
            json!({ "type": ["array", "null"], "maxItems": MAX_ITEMS, "items": field_schema(*item) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_dotted() {
        let mut kinds: Vec<&str> = CATALOGUE.iter().map(|t| t.kind).collect();
        kinds.sort_unstable();
        let before = kinds.len();
        kinds.dedup();
        assert_eq!(before, kinds.len(), "a kind is listed twice");
        for kind in kinds {
            assert!(
                kind.split('.').count() >= 3 && kind.split('.').all(is_token),
                "{kind} is not area.thing.event"
            );
        }
    }

    #[test]
    fn every_kind_the_domain_names_is_catalogued() {
        use carepath_cases::event_kinds as cases;
        use carepath_precert::event_kinds as precert;
        use carepath_secondopinion::event_kinds as opinion;
        let named = [
            precert::SUBMITTED,
            precert::INFORMATION_REQUESTED,
            precert::INFORMATION_RECEIVED,
            precert::PENDED_FOR_REVIEW,
            precert::CLAIMED,
            precert::APPROVED,
            precert::PARTIALLY_APPROVED,
            precert::DENIED,
            precert::PEER_TO_PEER_REQUESTED,
            precert::PEER_TO_PEER_SCHEDULED,
            precert::PEER_TO_PEER_COMPLETED,
            precert::RECONSIDERED,
            precert::APPEAL_REQUESTED,
            precert::APPEAL_DECIDED,
            precert::WITHDRAWN,
            precert::NOTIFICATION_RECEIVED,
            cases::OPENED,
            cases::REFERRAL_ABSORBED,
            cases::ASSIGNED,
            cases::PHASE_CHANGED,
            cases::CLOSED,
            cases::GOAL_ADDED,
            cases::GOAL_UPDATED,
            cases::TASK_ADDED,
            cases::TASK_UPDATED,
            cases::INTERACTION_RECORDED,
            cases::TRANSITION_RECORDED,
            cases::SERVICE_REQUESTED,
            cases::SERVICE_UPDATED,
            cases::DECISION_SUPPORT_REQUESTED,
            cases::CARE_ABROAD_ASSESSED,
            cases::CONSENT_RECORDED,
            cases::RATED,
            opinion::SUBMITTED,
            opinion::QUESTIONNAIRE_COMPLETED,
            opinion::RECORDS_MISSING,
            opinion::RECORDS_RECEIVED,
            opinion::PHYSICIAN_ASSIGNED,
            opinion::CLOSED,
            opinion::RECORD_ADDED,
            opinion::OPINION_PUBLISHED,
            opinion::ADDENDUM_ADDED,
            opinion::OPINION_REVIEWED,
            opinion::SHARED_WITH_DOCTOR,
            opinion::FOLLOW_UP_DONE,
            opinion::QUESTION_ASKED,
            opinion::QUESTION_ANSWERED,
            opinion::MESSAGE_POSTED,
            carepath_cases::ONCOLOGY_PLAN_SUBMITTED,
        ];
        for kind in named {
            assert!(event_type(kind).is_some(), "{kind} is not in the catalogue");
        }
    }

    #[test]
    fn projection_keeps_ids_and_codes_and_drops_the_rest() {
        let payload = json!({
            "case_id": "PC-1",
            "member_id": "M100001",
            "urgency": "urgent",
            "nurse_name": "Maria Lopez",
            "note": "spoke with the member",
            "services": [
                { "line": 0, "code": "70551", "units": 1, "date_of_service": "2026-12-01",
                  "description": "MRI brain", "list": { "id": "imaging", "version": "2026.1", "owner": "x" } },
            ],
            "diagnoses": ["G43.909", "Headache of unknown origin"],
            "decision": { "outcome": "approved", "note": "automation: rule IMG-1", "at": "2026-12-01T10:00:00Z" },
        });
        let data = project("precert.case.approved", &payload);
        assert_eq!(
            data,
            json!({
                "case_id": "PC-1",
                "member_id": "M100001",
                "urgency": "urgent",
                "services": [
                    { "line": 0, "code": "70551", "units": 1, "date_of_service": "2026-12-01",
                      "list": { "id": "imaging", "version": "2026.1" } },
                ],
                "diagnoses": ["G43.909"],
                "decision": { "outcome": "approved", "at": "2026-12-01T10:00:00Z" },
            })
        );
    }

    #[test]
    fn a_name_in_a_declared_member_is_dropped_and_an_unknown_kind_carries_nothing() {
        let payload =
            json!({ "case_id": "PC 1", "member_id": "Jane Doe", "state": "x".repeat(200) });
        assert_eq!(project("precert.case.submitted", &payload), json!({}));
        assert_eq!(
            project("precert.case.brand_new", &json!({ "case_id": "PC-1" })),
            json!({})
        );
    }

    /// Every string member of every kind filled with a name or an address: none
    /// survives.
    #[test]
    fn names_and_addresses_never_pass_any_member() {
        fn filled(field: Field, text: &str) -> Value {
            match field {
                Object(members) => Value::Object(
                    members
                        .iter()
                        .map(|(n, f, _)| ((*n).to_owned(), filled(*f, text)))
                        .collect(),
                ),
                List(item) => json!([filled(*item, text)]),
                _ => json!(text),
            }
        }
        for text in ["Maria Lopez", "12 Harbor Road, Springfield"] {
            for t in CATALOGUE {
                let payload = Value::Object(
                    t.members()
                        .map(|(n, f, _)| ((*n).to_owned(), filled(*f, text)))
                        .collect(),
                );
                let data = project(t.kind, &payload).to_string();
                assert!(!data.contains(text), "{}: {data}", t.kind);
            }
        }
    }

    /// The schema files under `docs/events/v1` are the catalogue's; with
    /// `CAREPATH_WRITE_EVENT_SCHEMAS=1` this test writes them instead.
    #[test]
    fn schema_files_match_the_catalogue() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events/v1");
        let write = std::env::var_os("CAREPATH_WRITE_EVENT_SCHEMAS").is_some();
        if write {
            std::fs::create_dir_all(&dir).expect("schema folder");
        }
        let mut expected = Vec::new();
        for t in CATALOGUE {
            let name = format!("{}.json", t.kind);
            let text = serde_json::to_string_pretty(&schema(t)).expect("schema") + "\n";
            let path = dir.join(&name);
            if write {
                std::fs::write(&path, &text).expect("write schema");
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                on_disk, text,
                "{name} is not the catalogue's schema: run with CAREPATH_WRITE_EVENT_SCHEMAS=1"
            );
            expected.push(name);
        }
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .expect("schema folder")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        present.sort();
        expected.sort();
        assert_eq!(present, expected, "schema files without a catalogue entry");

        // The catalogue table of docs/events.md, between its markers.
        let page_path = dir.join("../../events.md");
        let page = std::fs::read_to_string(&page_path).expect("docs/events.md");
        let (start, end) = ("<!-- catalogue:start -->\n", "<!-- catalogue:end -->");
        let head = page.find(start).expect("start marker") + start.len();
        let tail = page.find(end).expect("end marker");
        let table = catalogue_table();
        if write {
            let updated = format!("{}{table}{}", &page[..head], &page[tail..]);
            std::fs::write(&page_path, updated).expect("write docs/events.md");
        } else {
            assert_eq!(
                &page[head..tail],
                table,
                "docs/events.md's catalogue is stale: run with CAREPATH_WRITE_EVENT_SCHEMAS=1"
            );
        }
    }

    /// The catalogue as a Markdown table.
    fn catalogue_table() -> String {
        let mut out =
            String::from("| type | what happened | subject | data |\n|---|---|---|---|\n");
        for t in CATALOGUE {
            let members: Vec<String> = t.members().map(|(n, _, _)| format!("`{n}`")).collect();
            out.push_str(&format!(
                "| `carepath.{}` | {} | {} id | {} |\n",
                t.kind,
                t.about,
                t.aggregate,
                if members.is_empty() {
                    "none".to_owned()
                } else {
                    members.join(", ")
                }
            ));
        }
        out
    }
}
