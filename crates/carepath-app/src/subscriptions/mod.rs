//! FHIR subscriptions (R4 Subscriptions Backport, rest-hook channel, the Da Vinci PAS
//! topic): a provider asks to be told when one of its precertification requests
//! changes after submission, and carepath POSTs a notification to the provider's
//! endpoint.
//!
//! Three parts: the use cases here (create, read, end, status, the dead list), the
//! feed ([`feed::SubscriptionFeed`], an outbox consumer that turns case events into
//! numbered notifications) and the deliveries ([`delivery::run_deliveries`], which
//! claim due notifications under a lease and POST them with retries). The FHIR door
//! renders the notification body ([`delivery::RenderNotification`]); this layer never
//! builds FHIR JSON.
//!
//! Who may see a subscription: the provider it belongs to, plan staff and internal
//! services; anyone else is told it does not exist. Every access is audited under
//! [`RECORD_KIND`].

pub mod delivery;
pub mod feed;

use std::sync::Arc;

use carepath_core::{Invalid, Npi, Role};
use carepath_store::{AuditOutcome, NewSubscriptionRecord, NotificationRecord, SubscriptionRecord};
use chrono::{DateTime, Utc};

pub use delivery::{DeliveryOptions, RenderNotification, SubscriptionDeliveries, run_deliveries};
pub use feed::SubscriptionFeed;

use crate::{App, AppError, AppResult, Caller, Page, PageRequest, pipeline::record_id};

/// The one topic carepath publishes: Da Vinci PAS request updates.
pub const PAS_TOPIC: &str =
    "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic";

/// The audit log's record kind of a subscription.
pub const RECORD_KIND: &str = "fhir_subscription";

/// The audit log's record kind of a notification (the dead list).
pub const NOTIFICATION_RECORD_KIND: &str = "fhir_notification";

/// Longest endpoint URL accepted.
pub const MAX_ENDPOINT_CHARS: usize = 2048;

/// Longest header line accepted.
pub const MAX_HEADER_CHARS: usize = 1024;

/// Most subscriptions one provider may have that have not ended.
pub const MAX_ACTIVE_PER_PROVIDER: i64 = 20;

/// Headers a subscription may not set: carepath sets them for the body it sends.
const RESERVED_HEADERS: [&str; 4] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

/// What a notification carries besides the event itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadContent {
    /// The request's response as it now stands.
    FullResource,
    /// Only references; the subscriber asks for the rest.
    IdOnly,
}

impl PayloadContent {
    /// The backport's code: `full-resource` or `id-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadContent::FullResource => "full-resource",
            PayloadContent::IdOnly => "id-only",
        }
    }

    /// The content named by a backport code.
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "full-resource" => Some(PayloadContent::FullResource),
            "id-only" => Some(PayloadContent::IdOnly),
            _ => None,
        }
    }
}

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Notifications are delivered.
    Active,
    /// The last delivery failed; notifications are still queued and retried, and the
    /// next success makes it active again.
    Error,
    /// Ended by its owner; nothing more is sent.
    Off,
}

impl SubscriptionState {
    /// The FHIR code: `active`, `error` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Active => "active",
            SubscriptionState::Error => "error",
            SubscriptionState::Off => "off",
        }
    }

    fn parse(code: &str) -> Option<Self> {
        match code {
            "active" => Some(SubscriptionState::Active),
            "error" => Some(SubscriptionState::Error),
            "off" => Some(SubscriptionState::Off),
            _ => None,
        }
    }
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// carepath's id of it.
    pub id: String,
    /// The provider whose requests it follows.
    pub owner_npi: Npi,
    /// Always [`PAS_TOPIC`].
    pub topic: String,
    /// Where notifications are POSTed (an absolute http or https URL).
    pub endpoint: String,
    /// What each notification carries.
    pub content: PayloadContent,
    /// One `Name: value` line sent with each notification.
    pub header: Option<String>,
    pub status: SubscriptionState,
    /// Events handed to it so far; the next notification carries this plus one.
    pub events_since_start: u64,
    /// Why the last delivery failed, while it is in error.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The subject of the caller who created it.
    pub created_by: String,
    /// When its owner ended it.
    pub ended_at: Option<DateTime<Utc>>,
}

impl Subscription {
    /// The header to send, split at the first `:` into name and value (both trimmed).
    pub fn header_pair(&self) -> Option<(&str, &str)> {
        let (name, value) = self.header.as_deref()?.split_once(':')?;
        Some((name.trim(), value.trim()))
    }

    fn from_record(r: SubscriptionRecord) -> AppResult<Self> {
        let corrupt = |what: &str| {
            AppError::Internal(format!(
                "stored subscription {} has an unknown {what}",
                r.id
            ))
        };
        Ok(Subscription {
            owner_npi: Npi::parse(&r.owner_npi).map_err(|_| corrupt("owner NPI"))?,
            content: PayloadContent::parse(&r.content).ok_or_else(|| corrupt("content"))?,
            status: SubscriptionState::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            events_since_start: u64::try_from(r.events_since_start).unwrap_or(0),
            id: r.id,
            topic: r.topic,
            endpoint: r.endpoint,
            header: r.header,
            last_error: r.last_error,
            created_at: r.created_at,
            created_by: r.created_by,
            ended_at: r.ended_at,
        })
    }
}

/// A request to subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    /// Must be [`PAS_TOPIC`] (FHIR `criteria`).
    pub topic: String,
    /// An absolute http or https URL (FHIR `channel.endpoint`).
    pub endpoint: String,
    pub content: PayloadContent,
    /// One `Name: value` line (FHIR `channel.header`).
    pub header: Option<String>,
    /// The NPI whose requests to follow (the backport filter `orgIdentifier`); `None`
    /// means the caller's own, and no other is allowed.
    pub filter_npi: Option<Npi>,
}

/// A subscription's status, as the backport's `$status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionStatus {
    pub subscription: Subscription,
    pub status: SubscriptionState,
    pub events_since_start: u64,
    pub last_error: Option<String>,
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationState {
    /// Waiting for its (next) delivery.
    Pending,
    /// The endpoint accepted it.
    Delivered,
    /// Given up after too many failures.
    Dead,
    /// Its subscription ended before it was delivered.
    Cancelled,
}

/// One event owed to one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub subscription_id: String,
    /// The subscription's event number (1, 2, ...): the backport's `event-number`.
    pub event_number: u64,
    /// The domain event it reports.
    pub source_event_id: String,
    /// The precertification case the event is about.
    pub case_id: String,
    /// The event's kind, e.g. `precert.case.approved`.
    pub event_kind: String,
    pub occurred_at: DateTime<Utc>,
    pub state: NotificationState,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// When it is due (again).
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// The notification a stored row holds.
    pub fn from_record(r: NotificationRecord) -> AppResult<Self> {
        let state = match r.state.as_str() {
            "pending" => NotificationState::Pending,
            "delivered" => NotificationState::Delivered,
            "dead" => NotificationState::Dead,
            "cancelled" => NotificationState::Cancelled,
            other => {
                return Err(AppError::Internal(format!(
                    "stored notification {} has an unknown state {other:?}",
                    r.id
                )));
            }
        };
        Ok(Notification {
            id: r.id,
            subscription_id: r.subscription_id,
            event_number: u64::try_from(r.event_number).unwrap_or(0),
            source_event_id: r.source_event_id,
            case_id: r.case_id,
            event_kind: r.event_kind,
            occurred_at: r.occurred_at,
            state,
            attempts: u32::try_from(r.attempts).unwrap_or(0),
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            delivered_at: r.delivered_at,
        })
    }
}

/// The subscription use cases. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    app: App,
    /// The hosts notifications may be sent to (each also covers its subdomains);
    /// `None`: any host.
    allowed_hosts: Option<Arc<[String]>>,
}

/// Whether `host` is one of `allowed` or a subdomain of one.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('.').to_ascii_lowercase();
        !a.is_empty()
            && (host == a
                || host
                    .strip_suffix(a.as_str())
                    .is_some_and(|rest| rest.ends_with('.')))
    })
}

/// Whether `caller` may see a subscription owned by `owner`: its provider, plan staff
/// and internal services.
fn may_view(caller: &Caller, owner: &str) -> bool {
    match caller.actor.role {
        Role::Provider => caller.actor.subject == owner,
        Role::Nurse | Role::PhysicianReviewer | Role::Admin | Role::Service => true,
        Role::Member => false,
    }
}

/// Whether `caller` may end a subscription owned by `owner`: its provider and admins.
fn may_end(caller: &Caller, owner: &str) -> bool {
    match caller.actor.role {
        Role::Provider => caller.actor.subject == owner,
        Role::Admin => true,
        _ => false,
    }
}

/// Checks a request to subscribe for `me`, naming each bad FHIR element; returns the
/// endpoint and header to store.
fn checked(
    new: &NewSubscription,
    me: &Npi,
    allowed_hosts: Option<&[String]>,
) -> AppResult<(String, Option<String>)> {
    let mut invalid = Invalid::new();
    if new.topic.trim() != PAS_TOPIC {
        invalid.push("criteria", format!("must be {PAS_TOPIC}"));
    }
    if new.filter_npi.as_ref().is_some_and(|npi| npi != me) {
        invalid.push(
            "criteria",
            format!("orgIdentifier must be the caller's own NPI ({me})"),
        );
    }
    let endpoint = new.endpoint.trim().to_owned();
    if let Err(problem) = check_endpoint(&endpoint) {
        invalid.push("channel.endpoint", problem);
    } else if let Some(allowed) = allowed_hosts {
        let host = reqwest::Url::parse(&endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        if !host_allowed(&host, allowed) {
            invalid.push(
                "channel.endpoint",
                format!(
                    "notifications are sent only to {} (and their subdomains), not to {host}",
                    allowed.join(", ")
                ),
            );
        }
    }
    let header = new
        .header
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned);
    if let Some(h) = &header
        && let Err(problem) = check_header(h)
    {
        invalid.push("channel.header", problem);
    }
    invalid.into_result()?;
    Ok((endpoint, header))
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err("is required".into());
    }
    if endpoint.chars().count() > MAX_ENDPOINT_CHARS {
        return Err(format!("must be at most {MAX_ENDPOINT_CHARS} characters"));
    }
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("must be an absolute http or https URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an absolute http or https URL".into());
    }
    Ok(())
}

fn check_header(header: &str) -> Result<(), String> {
    if header.chars().count() > MAX_HEADER_CHARS {
        return Err(format!("must be at most {MAX_HEADER_CHARS} characters"));
    }
    if header.contains(['\r', '\n']) {
        return Err("must be one line".into());
    }
    let Some((name, value)) = header.split_once(':') else {
        return Err("must be a header line `Name: value`".into());
    };
    let name = name.trim();
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name} is set by carepath and may not be given"));
    }
    if reqwest::header::HeaderValue::from_str(value.trim()).is_err() {
        return Err("the header value must be visible ASCII".into());
    }
    Ok(())
}

impl Subscriptions {
    /// The use cases over `app`, delivering to any host.
    pub fn new(app: App) -> Self {
        Subscriptions {
            app,
            allowed_hosts: None,
        }
    }

    /// Only endpoints on `hosts` (or their subdomains) may be subscribed: the plan
    /// decides where member data may be sent, and no subscriber can point the
    /// server at its own network. An empty list allows any host.
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = (!hosts.is_empty()).then(|| hosts.into());
        self
    }

    /// A provider subscribes to updates of its own requests. At most
    /// [`MAX_ACTIVE_PER_PROVIDER`] of its subscriptions may be live at once. Audited.
    pub async fn create(&self, caller: &Caller, new: NewSubscription) -> AppResult<Subscription> {
        caller.require_role(&[Role::Provider], "subscribing to request updates")?;
        let me = caller
            .actor
            .provider_npi()
            .ok_or_else(|| AppError::denied("the caller has no NPI"))?;
        let (endpoint, header) = checked(&new, &me, self.allowed_hosts.as_deref())?;
        let record = NewSubscriptionRecord {
            id: uuid::Uuid::now_v7().to_string(),
            owner_npi: me.to_string(),
            topic: PAS_TOPIC.to_owned(),
            endpoint,
            content: new.content.as_str().to_owned(),
            header,
            created_by: caller.actor.subject.clone(),
        };
        let now = self.app.stored_now();
        let mut tx = self.app.store.begin().await?;
        tx.lock_subscriptions_of(&record.owner_npi).await?;
        if tx.count_active_subscriptions(&record.owner_npi).await? >= MAX_ACTIVE_PER_PROVIDER {
            drop(tx);
            return Err(AppError::FailedPrecondition(format!(
                "a provider may have at most {MAX_ACTIVE_PER_PROVIDER} active subscriptions; end one first"
            )));
        }
        let stored = tx.insert_subscription(&record, now).await?;
        tx.append_audit(
            &caller.audit_entry(RECORD_KIND, &stored.id, None, AuditOutcome::Allowed),
            now,
        )
        .await?;
        tx.commit().await?;
        Subscription::from_record(stored)
    }

    /// The stored subscription `id` if `caller` may see it; otherwise an audited
    /// NOT_FOUND. The read itself is not audited here.
    async fn visible(&self, caller: &Caller, id: &str) -> AppResult<(String, SubscriptionRecord)> {
        let id = record_id(id, "id")?;
        let hidden = || AppError::hidden("subscription", id.clone());
        let record = match self.app.store.get_subscription(&id).await {
            Ok(r) if may_view(caller, &r.owner_npi) => r,
            Ok(_) | Err(carepath_store::StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(caller, RECORD_KIND, &id, None, hidden())
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        Ok((id, record))
    }

    /// One subscription: for its provider, plan staff and services. Audited.
    pub async fn get(&self, caller: &Caller, id: &str) -> AppResult<Subscription> {
        let (id, record) = self.visible(caller, id).await?;
        self.app
            .audit(caller, RECORD_KIND, &id, None, AuditOutcome::Allowed)
            .await?;
        Subscription::from_record(record)
    }

    /// The caller's own subscriptions (a provider's), ended ones included, newest
    /// first. Audited.
    pub async fn list(&self, caller: &Caller, page: PageRequest) -> AppResult<Page<Subscription>> {
        caller.require_role(&[Role::Provider], "listing subscriptions")?;
        let size = page.checked_size("page.page_size")?;
        let found = self
            .app
            .store
            .list_subscriptions(&caller.actor.subject, &page.token, size)
            .await?;
        let now = self.app.now();
        let mut tx = self.app.store.begin().await?;
        let mut items = Vec::with_capacity(found.items.len());
        for record in found.items {
            tx.append_audit(
                &caller.audit_entry(RECORD_KIND, &record.id, None, AuditOutcome::Allowed),
                now,
            )
            .await?;
            items.push(Subscription::from_record(record)?);
        }
        tx.commit().await?;
        Ok(Page {
            items,
            next_page_token: found.next_page_token.unwrap_or_default(),
        })
    }

    /// Ends a subscription (status `off`): nothing more is sent, and notifications not
    /// yet delivered are cancelled. For its provider and admins; ending one that has
    /// ended already changes nothing. Audited.
    pub async fn delete(&self, caller: &Caller, id: &str) -> AppResult<Subscription> {
        let (id, record) = self.visible(caller, id).await?;
        if !may_end(caller, &record.owner_npi) {
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    &id,
                    None,
                    AppError::denied("a subscription is ended by its provider or an admin"),
                )
                .await);
        }
        let now = self.app.stored_now();
        let mut tx = self.app.store.begin().await?;
        let ended = tx.end_subscription(&id, now).await?;
        tx.append_audit(
            &caller.audit_entry(RECORD_KIND, &id, None, AuditOutcome::Allowed),
            now,
        )
        .await?;
        tx.commit().await?;
        let mut subscription = Subscription::from_record(record)?;
        if ended {
            subscription.status = SubscriptionState::Off;
            subscription.ended_at = Some(now);
        }
        Ok(subscription)
    }

    /// A subscription's status and event count (the backport's `$status`). Audited.
    pub async fn status(&self, caller: &Caller, id: &str) -> AppResult<SubscriptionStatus> {
        let subscription = self.get(caller, id).await?;
        Ok(SubscriptionStatus {
            status: subscription.status,
            events_since_start: subscription.events_since_start,
            last_error: subscription.last_error.clone(),
            subscription,
        })
    }

    /// Notifications given up on, newest first; for admins. Each one listed is
    /// audited.
    pub async fn dead_notifications(
        &self,
        caller: &Caller,
        page: PageRequest,
    ) -> AppResult<Page<Notification>> {
        caller.require_role(&[Role::Admin], "the dead notification list")?;
        let size = page.checked_size("page.page_size")?;
        let found = self
            .app
            .store
            .list_dead_notifications(&page.token, size)
            .await?;
        let now = self.app.now();
        let mut tx = self.app.store.begin().await?;
        let mut items = Vec::with_capacity(found.items.len());
        for record in found.items {
            tx.append_audit(
                &caller.audit_entry(
                    NOTIFICATION_RECORD_KIND,
                    &record.id,
                    None,
                    AuditOutcome::Allowed,
                ),
                now,
            )
            .await?;
            items.push(Notification::from_record(record)?);
        }
        tx.commit().await?;
        Ok(Page {
            items,
            next_page_token: found.next_page_token.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Npi {
        Npi::parse("1184649790").unwrap()
    }

    fn new(endpoint: &str, header: Option<&str>) -> NewSubscription {
        NewSubscription {
            topic: PAS_TOPIC.into(),
            endpoint: endpoint.into(),
            content: PayloadContent::FullResource,
            header: header.map(str::to_owned),
            filter_npi: None,
        }
    }

    fn fields(err: AppError) -> Vec<String> {
        match err {
            AppError::Invalid(invalid) => {
                invalid.violations.iter().map(|v| v.field.clone()).collect()
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn allowed_hosts_cover_their_subdomains_only() {
        let allowed = vec!["ehr.example".to_owned()];
        assert!(host_allowed("ehr.example", &allowed));
        assert!(host_allowed("hooks.EHR.example.", &allowed));
        assert!(!host_allowed("evil-ehr.example", &allowed));
        assert!(!host_allowed("ehr.example.evil", &allowed));
        assert!(!host_allowed("127.0.0.1", &allowed));
        assert!(!host_allowed("anything", &["".to_owned()]));
    }

    #[test]
    fn endpoints_must_be_absolute_http_urls() {
        assert!(checked(&new("https://ehr.example.org/hook", None), &me(), None).is_ok());
        assert!(checked(&new(" http://127.0.0.1:9000/x ", None), &me(), None).is_ok());
        for bad in [
            "",
            "ehr.example.org/hook",
            "ftp://ehr.example.org",
            "mailto:a@b.c",
        ] {
            let err = checked(&new(bad, None), &me(), None).unwrap_err();
            assert_eq!(fields(err), ["channel.endpoint"], "{bad}");
        }
        let long = format!("https://e.org/{}", "a".repeat(MAX_ENDPOINT_CHARS));
        assert_eq!(
            fields(checked(&new(&long, None), &me(), None).unwrap_err()),
            ["channel.endpoint"]
        );
    }

    #[test]
    fn headers_are_one_valid_line() {
        let ok = checked(
            &new("https://e.org", Some("Authorization: Bearer x")),
            &me(),
            None,
        )
        .unwrap();
        assert_eq!(ok.1.as_deref(), Some("Authorization: Bearer x"));
        for bad in [
            "no colon",
            "X-A: b\r\nX-B: c",
            "Content-Type: text/plain",
            "Bad Name: v",
        ] {
            let err = checked(&new("https://e.org", Some(bad)), &me(), None).unwrap_err();
            assert_eq!(fields(err), ["channel.header"], "{bad}");
        }
    }

    #[test]
    fn the_topic_and_filter_are_criteria() {
        let mut other = new("https://e.org", None);
        other.topic = "http://example.org/topic".into();
        other.filter_npi = Some(Npi::parse("1234358301").unwrap());
        assert_eq!(
            fields(checked(&other, &me(), None).unwrap_err()),
            ["criteria", "criteria"]
        );
    }
}
