//! Notice rules as data, and planning: which notices a domain event calls for, to whom,
//! on which channel, with which template.
//!
//! Pure: no I/O and no clock. Recipients come in through [`RecipientLookup`], filled
//! by the caller beforehand (see [`NoticeRules::lookups_needed`]), so planning the same
//! event twice gives the same notices with the same keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use carepath_core::{
    Address, ContactChannel, DirectoryBundle, DomainEvent, LanguageTag, Member, MemberId, Npi,
    Provider, Staff, StaffId,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::notice::{NoticeKey, PlannedNotice, Priority, Recipient, RecipientRole, Unreachable};

/// The rules file shipped with the project, so a server starts without a path.
pub const SHIPPED_RULES: &str = include_str!("../../../data/notify/rules.toml");

/// Template context keys the crate fills in; payloads must not use them.
pub const RESERVED_CONTEXT_KEYS: &[&str] =
    &["event", "member", "recipient", "plan", "notice", "channel"];

/// How a rule picks the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelChoice {
    /// Always this channel (a denial goes to the member by post, whatever they prefer).
    Fixed(ContactChannel),
    /// The recipient's preferred channel when it is allowed and they can be reached on
    /// it; otherwise the first allowed channel they can be reached on.
    Preferred(Vec<ContactChannel>),
    /// The channel named in a payload field (`contact_channel` unless the rule says
    /// otherwise: the contact as a nurse recorded it), when allowed and reachable;
    /// otherwise as [`ChannelChoice::Preferred`] (a phone call is followed up in
    /// writing by the member's preference).
    AsRecorded {
        field: String,
        allowed: Vec<ContactChannel>,
    },
}

/// One rule: an event kind calls for one notice to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRule {
    pub id: String,
    /// An exact event kind, or a prefix ending in `.*` (`secondopinion.request.*`).
    pub event: String,
    pub recipient: RecipientRole,
    pub channel: ChannelChoice,
    pub template: String,
    pub priority: Priority,
    /// Payload field values the rule applies to; every field must match one value.
    /// Booleans and numbers match their JSON spelling (`"true"`, `"3"`).
    pub when: BTreeMap<String, Vec<String>>,
    /// When true, an event whose payload names no such recipient (no servicing
    /// provider, no nurse) simply has no notice for it; otherwise that is an error.
    pub optional: bool,
}

impl NoticeRule {
    /// Whether the rule is about events of `kind` (before its `when` conditions).
    pub fn matches_kind(&self, kind: &str) -> bool {
        match self.event.strip_suffix(".*") {
            Some(prefix) => kind
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
            None => self.event == kind,
        }
    }

    fn matches_payload(&self, payload: &Value) -> bool {
        self.when.iter().all(|(field, values)| {
            let found = match payload.get(field) {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Bool(_) | Value::Number(_))) => v.to_string(),
                _ => return false,
            };
            values.contains(&found)
        })
    }
}

/// A loaded, validated rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRules {
    /// The file's own version label, recorded on every planned notice.
    pub version: String,
    /// The language for recipients who have not said which they read.
    pub default_language: LanguageTag,
    pub rules: Vec<NoticeRule>,
}

/// A problem with a rules file, naming the file and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{problem}", rule.as_deref().map(|r| format!("rule {r}: ")).unwrap_or_default())]
pub struct RulesError {
    pub file: String,
    pub rule: Option<String>,
    pub problem: String,
}

/// Every problem found in one rules file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct RulesErrors(pub Vec<RulesError>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    version: String,
    default_language: String,
    #[serde(default)]
    notice: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    event: String,
    recipient: RecipientRole,
    channel: String,
    #[serde(default)]
    allowed: Vec<ContactChannel>,
    #[serde(default)]
    channel_field: Option<String>,
    template: String,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    when: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl NoticeRules {
    /// The rules shipped in `data/notify/rules.toml`.
    pub fn shipped() -> Result<Self, RulesErrors> {
        Self::from_toml("data/notify/rules.toml", SHIPPED_RULES)
    }

    /// Reads a rules file from disk.
    pub fn load(path: &Path) -> Result<Self, RulesErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            RulesErrors(vec![RulesError {
                file: name.clone(),
                rule: None,
                problem: e.to_string(),
            }])
        })?;
        Self::from_toml(&name, &text)
    }

    /// Parses and validates a rules file, reporting every problem at once.
    pub fn from_toml(file: &str, text: &str) -> Result<Self, RulesErrors> {
        let error = |rule: Option<&str>, problem: String| RulesError {
            file: file.to_owned(),
            rule: rule.map(str::to_owned),
            problem,
        };
        let raw: RawRules = toml::from_str(text)
            .map_err(|e| RulesErrors(vec![error(None, e.message().to_owned())]))?;
        let mut errors = Vec::new();
        if raw.version.trim().is_empty() {
            errors.push(error(None, "version must not be empty".into()));
        }
        let default_language = LanguageTag::parse(&raw.default_language)
            .map_err(|e| errors.push(error(None, format!("default_language: {e}"))))
            .ok();
        let mut seen = BTreeSet::new();
        let mut rules = Vec::with_capacity(raw.notice.len());
        for (i, r) in raw.notice.into_iter().enumerate() {
            let blank_id = r.id.trim().is_empty();
            let id = if blank_id {
                format!("notice[{i}]")
            } else {
                r.id.clone()
            };
            let mut problem = |p: String| errors.push(error(Some(&id), p));
            if blank_id {
                problem("id must not be empty".into());
            } else if !seen.insert(r.id.clone()) {
                problem("duplicate rule id".into());
            }
            if !valid_event_pattern(&r.event) {
                problem(format!(
                    "event {:?} must be a dotted kind such as precert.case.denied, or a prefix ending in .*",
                    r.event
                ));
            }
            if r.template.trim().is_empty() {
                problem("template must not be empty".into());
            }
            if r.recipient == RecipientRole::Nurse && r.channel != "portal" {
                problem("nurses are notified in the portal only: use channel = \"portal\"".into());
            }
            let channel = match (r.channel.as_str(), r.channel_field) {
                ("preferred", None) if r.allowed.is_empty() => {
                    problem("channel \"preferred\" needs `allowed`, in fallback order".into());
                    None
                }
                ("preferred", None) => Some(ChannelChoice::Preferred(r.allowed)),
                ("as_recorded", field) if !r.allowed.is_empty() => {
                    Some(ChannelChoice::AsRecorded {
                        field: field.unwrap_or_else(|| "contact_channel".into()),
                        allowed: r.allowed,
                    })
                }
                ("as_recorded", _) => {
                    problem("channel \"as_recorded\" needs `allowed`, in fallback order".into());
                    None
                }
                (_, Some(_)) => {
                    problem("channel_field only goes with channel = \"as_recorded\"".into());
                    None
                }
                (fixed, None) => match ContactChannel::parse(fixed) {
                    Ok(c) if r.allowed.is_empty() => Some(ChannelChoice::Fixed(c)),
                    Ok(_) => {
                        problem("`allowed` only goes with \"preferred\" or \"as_recorded\"".into());
                        None
                    }
                    Err(_) => {
                        problem(format!(
                            "channel {fixed:?} must be mail, email, fax, portal, preferred or as_recorded"
                        ));
                        None
                    }
                },
            };
            let mut when = BTreeMap::new();
            for (field, v) in r.when {
                let values = match v {
                    OneOrMany::One(s) => vec![s],
                    OneOrMany::Many(list) => list,
                };
                if values.is_empty() {
                    problem(format!(
                        "when.{field} lists no value, so the rule could never apply"
                    ));
                }
                when.insert(field, values);
            }
            if let Some(channel) = channel {
                rules.push(NoticeRule {
                    id: r.id,
                    event: r.event,
                    recipient: r.recipient,
                    channel,
                    template: r.template,
                    priority: r.priority,
                    when,
                    optional: r.optional,
                });
            }
        }
        match default_language {
            Some(default_language) if errors.is_empty() => Ok(Self {
                version: raw.version,
                default_language,
                rules,
            }),
            _ => Err(RulesErrors(errors)),
        }
    }

    /// The rules that apply to `event`, in file order.
    pub fn matching<'a>(&'a self, event: &'a DomainEvent) -> impl Iterator<Item = &'a NoticeRule> {
        self.rules
            .iter()
            .filter(|r| r.matches_kind(&event.kind) && r.matches_payload(&event.payload))
    }

    /// The directory records planning `event` will look up, so a caller can fetch
    /// exactly those (from a database, asynchronously) before calling
    /// [`NoticeRules::plan`]. The member is always included when the event names one,
    /// since every notice about a member shows who it is about.
    pub fn lookups_needed(&self, event: &DomainEvent) -> Result<Lookups, PlanError> {
        let mut needed = Lookups::default();
        if let Some(m) = member_id(event)? {
            needed.members.insert(m);
        }
        for rule in self.matching(event) {
            match rule.recipient {
                RecipientRole::RequestingProvider | RecipientRole::ServicingProvider => {
                    if let Some(npi) = provider_npi(event, rule.recipient)? {
                        needed.providers.insert(npi);
                    }
                }
                RecipientRole::MemberDoctor => {
                    if let Some(doctor) = doctor_contact(event)?
                        && let Some(npi) = doctor.npi
                    {
                        needed.providers.insert(npi);
                    }
                }
                RecipientRole::Nurse => {
                    if let Some(id) = nurse_id(event)? {
                        needed.staff.insert(id);
                    }
                }
                RecipientRole::Member => {}
            }
        }
        Ok(needed)
    }

    /// Plans the notices `event` calls for. See [`plan_notices`].
    pub fn plan(
        &self,
        event: &DomainEvent,
        lookup: &dyn RecipientLookup,
    ) -> Result<NoticePlan, PlanError> {
        plan_notices(self, event, lookup)
    }
}

fn valid_event_pattern(event: &str) -> bool {
    let body = event.strip_suffix(".*").unwrap_or(event);
    let parts: Vec<_> = body.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// Directory records a caller fetches before planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    pub members: BTreeSet<MemberId>,
    pub providers: BTreeSet<Npi>,
    pub staff: BTreeSet<StaffId>,
}

/// Where planning finds recipients. Synchronous on purpose: the caller resolves what
/// [`NoticeRules::lookups_needed`] lists first, then plans over the results
/// ([`ResolvedRecipients`]), which keeps planning pure and repeatable.
pub trait RecipientLookup {
    fn member(&self, id: &MemberId) -> Option<&Member>;
    fn provider(&self, npi: &Npi) -> Option<&Provider>;
    fn staff(&self, id: &StaffId) -> Option<&Staff>;
}

/// Directory records fetched for one event.
#[derive(Debug, Clone, Default)]
pub struct ResolvedRecipients {
    pub members: HashMap<MemberId, Member>,
    pub providers: HashMap<Npi, Provider>,
    pub staff: HashMap<StaffId, Staff>,
}

impl ResolvedRecipients {
    pub fn with_member(mut self, member: Member) -> Self {
        self.members.insert(member.id.clone(), member);
        self
    }

    pub fn with_provider(mut self, provider: Provider) -> Self {
        self.providers.insert(provider.npi.clone(), provider);
        self
    }

    pub fn with_staff(mut self, staff: Staff) -> Self {
        self.staff.insert(staff.id.clone(), staff);
        self
    }
}

impl RecipientLookup for ResolvedRecipients {
    fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.get(id)
    }
    fn provider(&self, npi: &Npi) -> Option<&Provider> {
        self.providers.get(npi)
    }
    fn staff(&self, id: &StaffId) -> Option<&Staff> {
        self.staff.get(id)
    }
}

/// A whole directory in memory (the demo, tests) answers lookups directly.
impl RecipientLookup for DirectoryBundle {
    fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }
    fn provider(&self, npi: &Npi) -> Option<&Provider> {
        self.providers.iter().find(|p| &p.npi == npi)
    }
    fn staff(&self, id: &StaffId) -> Option<&Staff> {
        self.staff.iter().find(|s| &s.id == id)
    }
}

/// The outcome of planning one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoticePlan {
    /// Notices to render and send, in rule order, without duplicate keys.
    pub notices: Vec<PlannedNotice>,
    /// Recipients the rules called for who cannot be reached; to be recorded as failed
    /// notices so staff see them.
    pub unreachable: Vec<Unreachable>,
}

/// An event whose payload lacks what its rules need. This is a defect in the code
/// that emitted it: the dispatcher should retry and, in the end, park the event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event_id} ({event_kind}): {field}: {problem}")]
pub struct PlanError {
    pub event_id: String,
    pub event_kind: String,
    /// The payload field at fault (`doctor.name`), or `member_id`.
    pub field: String,
    pub problem: String,
}

fn plan_error(event: &DomainEvent, field: &str, problem: impl Into<String>) -> PlanError {
    PlanError {
        event_id: event.id.clone(),
        event_kind: event.kind.clone(),
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// Plans the notices `event` calls for under `rules`, finding recipients in `lookup`.
///
/// Pure and deterministic: the same event, rules and directory give the same notices
/// with the same [`NoticeKey`]s, so a redelivered event yields nothing new once the
/// first delivery's notices are stored. An event no rule matches plans nothing.
pub fn plan_notices(
    rules: &NoticeRules,
    event: &DomainEvent,
    lookup: &dyn RecipientLookup,
) -> Result<NoticePlan, PlanError> {
    let Some(payload) = event.payload.as_object() else {
        if rules.matching(event).next().is_none() {
            return Ok(NoticePlan::default());
        }
        return Err(plan_error(event, "payload", "must be a JSON object"));
    };
    let mut plan = NoticePlan::default();
    let matching: Vec<_> = rules.matching(event).collect();
    if matching.is_empty() {
        return Ok(plan);
    }
    for key in RESERVED_CONTEXT_KEYS {
        if payload.contains_key(*key) {
            return Err(plan_error(
                event,
                key,
                "is reserved for the notice context; rename the payload field",
            ));
        }
    }
    let member = member_id(event)?.map(|id| {
        let found = lookup.member(&id);
        (id, found)
    });
    let mut seen = BTreeSet::new();
    for rule in matching {
        let recipient = match resolve(rule, event, member.as_ref(), lookup)? {
            Resolved::Found(r) => r,
            Resolved::Absent => continue,
            Resolved::Missing { who, reason } => {
                plan.unreachable.push(Unreachable {
                    key: NoticeKey::derive(&event.id, &who, "none", &rule.template),
                    event_id: event.id.clone(),
                    rule_id: rule.id.clone(),
                    template: rule.template.clone(),
                    role: rule.recipient,
                    recipient: who,
                    reason,
                });
                continue;
            }
        };
        let Some(destination) = choose_channel(&rule.channel, &recipient, payload)
            .and_then(|c| recipient.destination(c))
        else {
            plan.unreachable.push(Unreachable {
                key: NoticeKey::derive(&event.id, &recipient.id, "none", &rule.template),
                event_id: event.id.clone(),
                rule_id: rule.id.clone(),
                template: rule.template.clone(),
                role: rule.recipient,
                recipient: recipient.id.clone(),
                reason: format!(
                    "no contact details for any allowed channel ({})",
                    allowed_channels(&rule.channel)
                ),
            });
            continue;
        };
        let channel = destination.channel();
        let key = NoticeKey::derive(&event.id, &recipient.id, channel.as_str(), &rule.template);
        if !seen.insert(key.clone()) {
            continue;
        }
        let language = recipient
            .language
            .clone()
            .unwrap_or_else(|| rules.default_language.clone());
        let context = context(event, payload, member.as_ref(), &recipient, channel);
        plan.notices.push(PlannedNotice {
            key,
            event_id: event.id.clone(),
            event_kind: event.kind.clone(),
            rule_id: rule.id.clone(),
            rules_version: rules.version.clone(),
            template: rule.template.clone(),
            channel,
            destination,
            priority: rule.priority,
            recipient,
            language,
            event_date: event.occurred_at.date_naive(),
            context,
        });
    }
    Ok(plan)
}

enum Resolved {
    Found(Recipient),
    /// The payload names no such recipient and the rule is optional.
    Absent,
    /// Named but not in the directory.
    Missing {
        who: String,
        reason: String,
    },
}

fn resolve(
    rule: &NoticeRule,
    event: &DomainEvent,
    member: Option<&(MemberId, Option<&Member>)>,
    lookup: &dyn RecipientLookup,
) -> Result<Resolved, PlanError> {
    let absent = |field: &str| {
        if rule.optional {
            Ok(Resolved::Absent)
        } else {
            Err(plan_error(
                event,
                field,
                format!("is required by rule {}", rule.id),
            ))
        }
    };
    match rule.recipient {
        RecipientRole::Member => match member {
            Some((_, Some(m))) => Ok(Resolved::Found(Recipient::member(m))),
            Some((id, None)) => Ok(Resolved::Missing {
                who: format!("member:{id}"),
                reason: format!("member {id} is not in the directory"),
            }),
            None => absent("member_id"),
        },
        RecipientRole::RequestingProvider | RecipientRole::ServicingProvider => {
            match provider_npi(event, rule.recipient)? {
                Some(npi) => Ok(match lookup.provider(&npi) {
                    Some(p) => Resolved::Found(Recipient::provider(rule.recipient, p)),
                    None => Resolved::Missing {
                        who: format!("provider:{npi}"),
                        reason: format!("provider {npi} is not in the directory"),
                    },
                }),
                None => absent(npi_field(rule.recipient)),
            }
        }
        RecipientRole::Nurse => match nurse_id(event)? {
            Some(id) => Ok(match lookup.staff(&id) {
                Some(s) => Resolved::Found(Recipient::staff(s)),
                None => Resolved::Missing {
                    who: format!("staff:{id}"),
                    reason: format!("staff member {id} is not in the directory"),
                },
            }),
            None => absent("nurse_id"),
        },
        RecipientRole::MemberDoctor => {
            let Some(doctor) = doctor_contact(event)? else {
                return absent("doctor");
            };
            if let Some(npi) = &doctor.npi
                && let Some(p) = lookup.provider(npi)
            {
                return Ok(Resolved::Found(Recipient::provider(
                    RecipientRole::MemberDoctor,
                    p,
                )));
            }
            Ok(Resolved::Found(doctor.into_recipient()))
        }
    }
}

fn choose_channel(
    choice: &ChannelChoice,
    recipient: &Recipient,
    payload: &Map<String, Value>,
) -> Option<ContactChannel> {
    let reachable = |c: ContactChannel| recipient.destination(c).is_some();
    let preferred = |allowed: &[ContactChannel]| {
        recipient
            .preferred_channel
            .filter(|p| allowed.contains(p) && reachable(*p))
            .or_else(|| allowed.iter().copied().find(|c| reachable(*c)))
    };
    match choice {
        ChannelChoice::Fixed(c) => reachable(*c).then_some(*c),
        ChannelChoice::Preferred(allowed) => preferred(allowed),
        ChannelChoice::AsRecorded { field, allowed } => payload
            .get(field)
            .and_then(Value::as_str)
            .and_then(|s| ContactChannel::parse(s).ok())
            .filter(|c| allowed.contains(c) && reachable(*c))
            .or_else(|| preferred(allowed)),
    }
}

fn allowed_channels(choice: &ChannelChoice) -> String {
    let list = match choice {
        ChannelChoice::Fixed(c) => return c.as_str().to_owned(),
        ChannelChoice::Preferred(a) | ChannelChoice::AsRecorded { allowed: a, .. } => a,
    };
    list.iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn npi_field(role: RecipientRole) -> &'static str {
    match role {
        RecipientRole::ServicingProvider => "servicing_provider_npi",
        _ => "requesting_provider_npi",
    }
}

/// The event's member: `DomainEvent::member_id`, else the payload's `member_id`.
fn member_id(event: &DomainEvent) -> Result<Option<MemberId>, PlanError> {
    if let Some(id) = &event.member_id {
        return Ok(Some(id.clone()));
    }
    optional_str(event, "member_id")?
        .map(|s| MemberId::parse(s).map_err(|e| plan_error(event, "member_id", e.to_string())))
        .transpose()
}

fn provider_npi(event: &DomainEvent, role: RecipientRole) -> Result<Option<Npi>, PlanError> {
    let field = npi_field(role);
    optional_str(event, field)?
        .map(|s| Npi::parse(s).map_err(|e| plan_error(event, field, e.to_string())))
        .transpose()
}

fn nurse_id(event: &DomainEvent) -> Result<Option<StaffId>, PlanError> {
    optional_str(event, "nurse_id")?
        .map(|s| StaffId::parse(s).map_err(|e| plan_error(event, "nurse_id", e.to_string())))
        .transpose()
}

fn optional_str<'a>(event: &'a DomainEvent, field: &str) -> Result<Option<&'a str>, PlanError> {
    match event.payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(plan_error(event, field, "must be a string")),
    }
}

/// The member's own doctor as a payload carries them (`doctor`): an NPI when the
/// doctor is in the directory (the directory record then wins), otherwise a name and
/// whatever contact details the member gave.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoctorContact {
    #[serde(default)]
    npi: Option<Npi>,
    name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    fax: Option<String>,
    #[serde(default)]
    address: Option<Address>,
    #[serde(default)]
    language: Option<LanguageTag>,
    #[serde(default)]
    preferred_channel: Option<ContactChannel>,
}

impl DoctorContact {
    fn into_recipient(self) -> Recipient {
        let mut hash = Sha256::new();
        for part in [
            Some(self.name.as_str()),
            self.email.as_deref(),
            self.fax.as_deref(),
        ] {
            let part = part.unwrap_or("");
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let id = match &self.npi {
            Some(npi) => format!("provider:{npi}"),
            None => format!("contact:{}", hex::encode(&hash.finalize()[..8])),
        };
        Recipient {
            id,
            role: RecipientRole::MemberDoctor,
            name: self.name,
            language: self.language,
            preferred_channel: self.preferred_channel,
            email: self.email,
            fax: self.fax,
            address: self.address,
            has_portal: false,
        }
    }
}

fn doctor_contact(event: &DomainEvent) -> Result<Option<DoctorContact>, PlanError> {
    match event.payload.get("doctor") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let doctor: DoctorContact = serde_json::from_value(v.clone())
                .map_err(|e| plan_error(event, "doctor", e.to_string()))?;
            if doctor.name.trim().is_empty() {
                return Err(plan_error(event, "doctor.name", "must not be empty"));
            }
            Ok(Some(doctor))
        }
    }
}

/// The data a template sees: the payload's fields at the top level, plus `event`,
/// `member`, `recipient` and `channel` (rendering adds `plan` and `notice`).
fn context(
    event: &DomainEvent,
    payload: &Map<String, Value>,
    member: Option<&(MemberId, Option<&Member>)>,
    recipient: &Recipient,
    channel: ContactChannel,
) -> Value {
    let mut ctx = payload.clone();
    let step = event.kind.rsplit('.').next().unwrap_or(&event.kind);
    ctx.insert(
        "event".into(),
        json!({
            "id": event.id,
            "kind": event.kind,
            "step": step,
            "aggregate_kind": event.aggregate_kind,
            "aggregate_id": event.aggregate_id,
            "occurred_at": event.occurred_at.to_rfc3339(),
        }),
    );
    let member = match member {
        Some((_, Some(m))) => json!({
            "id": m.id,
            "first_name": m.first_name,
            "last_name": m.last_name,
            "name": format!("{} {}", m.first_name, m.last_name),
            "date_of_birth": m.date_of_birth.to_string(),
        }),
        Some((id, None)) => json!({ "id": id }),
        None => Value::Null,
    };
    ctx.insert("member".into(), member);
    ctx.insert(
        "recipient".into(),
        json!({ "id": recipient.id, "name": recipient.name, "role": recipient.role }),
    );
    ctx.insert("channel".into(), json!(channel.as_str()));
    Value::Object(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn directory() -> DirectoryBundle {
        DirectoryBundle::demo().unwrap()
    }

    fn event(kind: &str, member: Option<&Member>, payload: Value) -> DomainEvent {
        DomainEvent {
            id: "0190f3a4-0000-7000-8000-000000000001".into(),
            kind: kind.into(),
            aggregate_kind: "precert_case".into(),
            aggregate_id: "PC-1".into(),
            member_id: member.map(|m| m.id.clone()),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-25T15:00:00Z")
                .unwrap()
                .to_utc(),
            payload,
        }
    }

    fn provider_preferring(dir: &DirectoryBundle, c: ContactChannel) -> &Provider {
        dir.providers
            .iter()
            .find(|p| p.preferred_channel == c)
            .unwrap_or_else(|| panic!("demo has a provider preferring {c}"))
    }

    fn member_preferring(dir: &DirectoryBundle, c: ContactChannel) -> &Member {
        dir.members
            .iter()
            .find(|m| m.preferred_channel == c)
            .unwrap_or_else(|| panic!("demo has a member preferring {c}"))
    }

    #[test]
    fn shipped_rules_load() {
        let rules = NoticeRules::shipped().unwrap_or_else(|e| panic!("{e}"));
        assert!(rules.rules.len() >= 12);
    }

    #[test]
    fn denial_goes_to_provider_by_preference_and_to_member_by_post() {
        let rules = NoticeRules::shipped().unwrap();
        let dir = directory();
        let member = member_preferring(&dir, ContactChannel::Email);
        for channel in [ContactChannel::Fax, ContactChannel::Email] {
            let provider = provider_preferring(&dir, channel);
            let e = event(
                "precert.case.denied",
                Some(member),
                json!({ "case_id": "PC-1", "requesting_provider_npi": provider.npi }),
            );
            let plan = plan_notices(&rules, &e, &dir).unwrap();
            let got: Vec<_> = plan
                .notices
                .iter()
                .map(|n| (n.recipient.role, n.channel))
                .collect();
            assert_eq!(
                got,
                [
                    (RecipientRole::RequestingProvider, channel),
                    (RecipientRole::Member, ContactChannel::Mail)
                ]
            );
            assert!(plan.unreachable.is_empty());
            assert_eq!(plan.notices[1].context["member"]["id"], json!(member.id));
        }
    }

    #[test]
    fn planning_is_repeatable_so_redelivery_yields_the_same_keys() {
        let rules = NoticeRules::shipped().unwrap();
        let dir = directory();
        let member = &dir.members[0];
        let provider = &dir.providers[0];
        let e = event(
            "precert.case.denied",
            Some(member),
            json!({ "requesting_provider_npi": provider.npi }),
        );
        let first = plan_notices(&rules, &e, &dir).unwrap();
        let second = plan_notices(&rules, &e, &dir).unwrap();
        assert_eq!(first, second);
        let keys: BTreeSet<_> = first.notices.iter().map(|n| &n.key).collect();
        assert_eq!(keys.len(), first.notices.len());
    }

    #[test]
    fn the_lookups_needed_are_enough_to_plan() {
        let rules = NoticeRules::shipped().unwrap();
        let dir = directory();
        let member = &dir.members[1];
        let provider = &dir.providers[3];
        let e = event(
            "precert.case.approved",
            Some(member),
            json!({ "requesting_provider_npi": provider.npi }),
        );
        let needed = rules.lookups_needed(&e).unwrap();
        assert_eq!(needed.providers.iter().collect::<Vec<_>>(), [&provider.npi]);
        let mut resolved = ResolvedRecipients::default();
        for id in &needed.members {
            resolved = resolved.with_member(dir.member(id).unwrap().clone());
        }
        for npi in &needed.providers {
            resolved = resolved.with_provider(dir.provider(npi).unwrap().clone());
        }
        assert_eq!(
            plan_notices(&rules, &e, &resolved).unwrap(),
            plan_notices(&rules, &e, &dir).unwrap()
        );
    }

    #[test]
    fn unknown_and_unreachable_recipients_are_reported_not_dropped() {
        let rules = NoticeRules::shipped().unwrap();
        let dir = directory();
        let member = &dir.members[0];
        let e = event(
            "precert.case.denied",
            Some(member),
            json!({ "requesting_provider_npi": "1234567893" }),
        );
        let plan = plan_notices(&rules, &e, &ResolvedRecipients::default()).unwrap();
        assert!(plan.notices.is_empty());
        let who: Vec<_> = plan
            .unreachable
            .iter()
            .map(|u| u.recipient.as_str())
            .collect();
        assert_eq!(
            who,
            ["provider:1234567893", &format!("member:{}", member.id)]
        );

        // A doctor known only by name has no channel at all.
        let e = event(
            "secondopinion.opinion.shared_with_doctor",
            Some(member),
            json!({ "doctor": { "name": "Dr. Ana Ruiz" } }),
        );
        let plan = plan_notices(&rules, &e, &dir).unwrap();
        assert!(plan.notices.is_empty());
        assert!(
            plan.unreachable[0].reason.contains("no contact details"),
            "{plan:?}"
        );
    }

    #[test]
    fn a_doctor_outside_the_directory_is_written_to_as_given() {
        let rules = NoticeRules::shipped().unwrap();
        let dir = directory();
        let member = &dir.members[0];
        let e = event(
            "secondopinion.opinion.shared_with_doctor",
            Some(member),
            json!({ "doctor": { "name": "Dr. Ana Ruiz", "fax": "+971 4 555 0100", "email": "ruiz@clinic.example", "preferred_channel": "email" } }),
        );
        let plan = plan_notices(&rules, &e, &dir).unwrap();
        assert_eq!(plan.notices.len(), 1);
        let n = &plan.notices[0];
        assert_eq!(n.channel, ContactChannel::Email);
        assert!(n.recipient.id.starts_with("contact:"), "{}", n.recipient.id);
    }

    #[test]
    fn wildcards_conditions_and_optional_recipients() {
        let rules = NoticeRules::shipped().unwrap();
        let dir = directory();
        let member = member_preferring(&dir, ContactChannel::Portal);
        let e = event(
            "secondopinion.request.records_received",
            Some(member),
            json!({ "request_id": "SO-1" }),
        );
        let plan = plan_notices(&rules, &e, &dir).unwrap();
        assert_eq!(plan.notices.len(), 1);
        assert_eq!(plan.notices[0].channel, ContactChannel::Portal);
        assert_eq!(plan.notices[0].context["event"]["step"], "records_received");

        let provider = &dir.providers[0];
        let appeal = |outcome: &str| {
            let e = event(
                "precert.case.appeal_decided",
                Some(member),
                json!({ "requesting_provider_npi": provider.npi, "outcome": outcome }),
            );
            plan_notices(&rules, &e, &dir)
                .unwrap()
                .notices
                .into_iter()
                .map(|n| n.template)
                .collect::<BTreeSet<_>>()
        };
        assert!(appeal("upheld").contains("precert-appeal-upheld"));
        assert!(!appeal("overturned").contains("precert-appeal-upheld"));
    }

    #[test]
    fn as_recorded_uses_the_payload_channel_when_possible() {
        let rules = NoticeRules::shipped().unwrap();
        let dir = directory();
        let member = dir
            .members
            .iter()
            .find(|m| m.email.is_some() && m.preferred_channel != ContactChannel::Email)
            .unwrap();
        let plan_for = |channel: &str| {
            let e = event(
                "cases.interaction.recorded",
                Some(member),
                json!({ "contact_channel": channel, "nurse_id": dir.staff[0].id, "summary": "x", "notify_member": true }),
            );
            plan_notices(&rules, &e, &dir).unwrap().notices[0].channel
        };
        assert_eq!(plan_for("email"), ContactChannel::Email);
        assert_eq!(plan_for("phone"), member.preferred_channel);
    }

    #[test]
    fn bad_payloads_name_the_field() {
        let rules = NoticeRules::shipped().unwrap();
        let dir = directory();
        let e = event(
            "precert.case.denied",
            Some(&dir.members[0]),
            json!({ "requesting_provider_npi": 42 }),
        );
        let err = plan_notices(&rules, &e, &dir).unwrap_err();
        assert_eq!(err.field, "requesting_provider_npi");
        let e = event(
            "precert.case.approved",
            Some(&dir.members[0]),
            json!({ "member": "x", "requesting_provider_npi": dir.providers[0].npi }),
        );
        assert_eq!(plan_notices(&rules, &e, &dir).unwrap_err().field, "member");
        let e = event("directory.member.upserted", None, json!(null));
        assert_eq!(
            plan_notices(&rules, &e, &dir).unwrap(),
            NoticePlan::default()
        );
    }

    #[test]
    fn rule_files_report_every_problem() {
        let text = r#"
            version = "t"
            default_language = "en"
            [[notice]]
            id = "a"
            event = "precert.case.denied"
            recipient = "member"
            channel = "preferred"
            template = "x"
            [[notice]]
            id = "a"
            event = "Precert"
            recipient = "nurse"
            channel = "email"
            template = "x"
            [[notice]]
            id = "c"
            event = "precert.case.denied"
            recipient = "member"
            channel = "pigeon"
            template = "x"
        "#;
        let err = NoticeRules::from_toml("r.toml", text).unwrap_err();
        let messages: Vec<_> = err.0.iter().map(ToString::to_string).collect();
        assert!(
            messages[0].starts_with("r.toml: rule a: channel \"preferred\" needs"),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("duplicate rule id")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("event \"Precert\"")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("portal only")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("\"pigeon\"")),
            "{messages:?}"
        );
    }

    #[test]
    fn blank_ids_and_empty_conditions_are_named() {
        let text = r#"
            version = "t"
            default_language = "en"
            [[notice]]
            id = " "
            event = "precert.case.denied"
            recipient = "member"
            channel = "mail"
            template = "x"
            [[notice]]
            id = "b"
            event = "precert.case.denied"
            recipient = "member"
            channel = "mail"
            template = "x"
            when = { outcome = [] }
        "#;
        let err = NoticeRules::from_toml("r.toml", text).unwrap_err();
        let messages: Vec<_> = err.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "r.toml: rule notice[0]: id must not be empty",
                "r.toml: rule b: when.outcome lists no value, so the rule could never apply",
            ]
        );
    }
}
