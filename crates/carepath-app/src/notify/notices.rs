//! The notice use cases: list, read and resend notices, the failed list and the
//! delivery report, all under the one visibility policy ([`standing`]).
//!
//! Who may see a notice: its recipient (a member `member:<id>`, a provider
//! `provider:<npi>`, a staff member `staff:<id>`), and admins and internal services.
//! Anyone else is told it does not exist. Admins and services work the failed list
//! (every recipient's notices), resend, and read the delivery report.

use std::{collections::BTreeMap, sync::Arc};

use carepath_core::{Actor, ContactChannel, MemberId, Role};
use carepath_notify::{PlannedNotice, RenderedNotice, TemplateCatalog};
use carepath_store::{AuditOutcome, NoticeAttempt, NoticeRecord, StoreError};
use chrono::{DateTime, Utc};

use crate::{
    App, AppError, AppResult, Caller, Page, PageRequest,
    context::{Rows, visible_page},
    pipeline::record_id,
};

/// The audit log's record kind of a notice.
pub const RECORD_KIND: &str = "notice";

/// Where a notice is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeState {
    /// Waiting for a dispatcher (new, or due again after a failure's backoff).
    Pending,
    /// Claimed by a dispatcher, being sent.
    Sending,
    /// The channel took it.
    Sent,
    /// The last attempt failed; it is tried again later.
    Failed,
    /// Given up (or never sendable): staff must resend it.
    Dead,
}

impl NoticeState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Pending => "pending",
            NoticeState::Sending => "sending",
            NoticeState::Sent => "sent",
            NoticeState::Failed => "failed",
            NoticeState::Dead => "dead",
        }
    }

    /// The state a stored name names.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "pending" => NoticeState::Pending,
            "sending" => NoticeState::Sending,
            "sent" => NoticeState::Sent,
            "failed" => NoticeState::Failed,
            "dead" => NoticeState::Dead,
            _ => return None,
        })
    }
}

/// What a caller may see of the notices: the notification area's one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Admins and internal services: every recipient's notices, the failed list,
    /// resends and the delivery report.
    Everything,
    /// The notices filed under this recipient id, the caller's own.
    Recipient(String),
    /// Nothing: the caller has no notices of its own.
    Nothing,
}

impl Standing {
    /// Whether the caller sees every notice and works the failed list.
    pub fn sees_all(&self) -> bool {
        matches!(self, Standing::Everything)
    }

    /// Whether the caller may see notices filed under `recipient_id`.
    pub fn sees(&self, recipient_id: &str) -> bool {
        match self {
            Standing::Everything => true,
            Standing::Recipient(own) => own == recipient_id,
            Standing::Nothing => false,
        }
    }
}

/// What `actor` may see of the notices: admins and services everything, anyone else
/// the notices filed under their own recipient id.
///
/// ```
/// use carepath_app::notify::{Standing, standing};
/// use carepath_core::{Actor, Role};
///
/// let member = Actor::new(Role::Member, "M100001").unwrap();
/// let mine = standing(&member);
/// assert_eq!(mine, Standing::Recipient("member:M100001".into()));
/// assert!(mine.sees("member:M100001"));
/// assert!(!mine.sees("member:M100002"));
///
/// let admin = Actor::new(Role::Admin, "AD-001").unwrap();
/// assert!(standing(&admin).sees_all());
/// ```
pub fn standing(actor: &Actor) -> Standing {
    let own = match actor.role {
        Role::Admin | Role::Service => return Standing::Everything,
        Role::Member => actor.member_id().map(|m| format!("member:{m}")),
        Role::Provider => actor.provider_npi().map(|n| format!("provider:{n}")),
        Role::Nurse | Role::PhysicianReviewer => actor.staff_id().map(|s| format!("staff:{s}")),
    };
    own.map_or(Standing::Nothing, Standing::Recipient)
}

/// A notice as callers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The notice's id.
    pub id: String,
    /// Unique per event, rule and recipient; channels pass it on so a retry sends no
    /// second copy.
    pub idempotency_key: String,
    /// `member:<id>`, `provider:<npi>` or `staff:<id>`.
    pub recipient_id: String,
    /// The recipient's name as the directory had it.
    pub recipient_name: String,
    /// The recipient's role in the event (member, requesting provider, ...).
    pub recipient_role: String,
    /// The channel; `None` for a recipient no channel reaches.
    pub channel: Option<ContactChannel>,
    /// Where it went, as shown to people.
    pub destination: String,
    /// The event that called for it.
    pub event_id: String,
    /// That event's kind.
    pub event_kind: String,
    /// The rule that called for it.
    pub rule_id: String,
    /// The version of the rules in force.
    pub rules_version: String,
    /// The template it was rendered with.
    pub template_id: String,
    /// That template's version (0 when it could not be rendered).
    pub template_version: u32,
    /// The language it was written in.
    pub language: String,
    /// The member it concerns, as stored.
    pub member_id: Option<String>,
    /// The subject line.
    pub subject: String,
    /// The text of the notice; read with the single notice only (empty in lists).
    pub body: String,
    /// Where it is in its delivery.
    pub state: NoticeState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When it is due again, after a failure.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the channel took it.
    pub sent_at: Option<DateTime<Utc>>,
    /// The channel's receipt.
    pub receipt_reference: String,
    /// Why the last attempt failed.
    pub last_error: String,
    /// Every delivery attempt; read with the single notice only (empty in lists).
    pub history: Vec<NoticeAttempt>,
}

impl Notice {
    /// The notice a stored row holds; with `attempts`, its body and delivery history
    /// too.
    pub fn of(record: &NoticeRecord, attempts: Option<Vec<NoticeAttempt>>) -> AppResult<Self> {
        let state = NoticeState::parse(&record.state).ok_or_else(|| {
            AppError::Internal(format!(
                "notice {} has an unknown state {:?}",
                record.id, record.state
            ))
        })?;
        let body = match (&attempts, &record.rendered) {
            (Some(_), Some(doc)) => serde_json::from_value::<RenderedNotice>(doc.0.clone())
                .map(|r| r.text_body())
                .unwrap_or_default(),
            _ => String::new(),
        };
        Ok(Notice {
            id: record.id.clone(),
            idempotency_key: record.idempotency_key.clone(),
            recipient_id: record.recipient_id.clone(),
            recipient_name: record.recipient_name.clone(),
            recipient_role: record.recipient_role.clone(),
            channel: ContactChannel::parse(&record.channel).ok(),
            destination: record.destination.clone(),
            event_id: record.event_id.clone(),
            event_kind: record.event_kind.clone(),
            rule_id: record.rule_id.clone(),
            rules_version: record.rules_version.clone(),
            template_id: record.template_id.clone(),
            template_version: u32::try_from(record.template_version).unwrap_or(0),
            language: record.language.clone(),
            member_id: record.member_id.clone(),
            subject: record.subject.clone(),
            body,
            state,
            attempts: u32::try_from(record.attempts).unwrap_or(0),
            created_at: record.created_at,
            next_attempt_at: record.next_attempt_at,
            sent_at: record.sent_at,
            receipt_reference: record.receipt_reference.clone(),
            last_error: record.last_error.clone(),
            history: attempts.unwrap_or_default(),
        })
    }
}

/// Lists notices: a recipient's, or (for those who see everything) every one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListNotices {
    /// The recipient whose notices to list; `None` for the caller's own (or, for
    /// admins and services, everyone's).
    pub recipient: Option<String>,
    /// Which page.
    pub page: PageRequest,
}

/// Sends a failed or dead notice again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResendNotice {
    /// The notice's id.
    pub id: String,
    /// Why it is sent again (logged).
    pub reason: String,
}

/// Lists the notices that did not go out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFailedNotices {
    /// [`NoticeState::Failed`] or [`NoticeState::Dead`]; `None` for both.
    pub state: Option<NoticeState>,
    /// Which page.
    pub page: PageRequest,
}

/// The period of a delivery report: notices stored from `from` up to `to`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportPeriod {
    /// The start (required).
    pub from: Option<DateTime<Utc>>,
    /// The end (required, after `from`).
    pub to: Option<DateTime<Utc>>,
}

/// How the notices of one channel fared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    /// The channel (`None` for a stored name this version does not know).
    pub channel: Option<ContactChannel>,
    /// Not yet sent (pending or being sent).
    pub pending: u32,
    /// Taken by the channel.
    pub sent: u32,
    /// Failed, to be tried again.
    pub failed: u32,
    /// Given up.
    pub dead: u32,
}

/// How the notices of a period fared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Every notice of the period, reachable or not.
    pub total: u32,
    /// Sent.
    pub sent: u32,
    /// Failed, to be tried again.
    pub failed: u32,
    /// Given up (reachable recipients only).
    pub dead: u32,
    /// Recipients no channel reaches.
    pub unreachable: u32,
    /// Per channel, ordered by the channel's name.
    pub channels: Vec<ChannelCounts>,
}

/// The notice use cases.
#[derive(Debug, Clone)]
pub struct Notices {
    app: App,
    catalog: Arc<TemplateCatalog>,
}

/// The member a recipient id names, if it names one.
fn member_of_recipient(recipient: &str) -> Option<MemberId> {
    recipient
        .strip_prefix("member:")
        .and_then(|m| MemberId::parse(m).ok())
}

fn member_of(notice: &NoticeRecord) -> Option<MemberId> {
    notice
        .member_id
        .as_deref()
        .and_then(|m| MemberId::parse(m).ok())
}

/// A page of notices read by `read` after `token`, bounded in bytes
/// ([`visible_page`]).
async fn notice_page<F>(
    token: &str,
    size: u32,
    read: impl FnMut(String) -> F,
) -> AppResult<Page<NoticeRecord>>
where
    F: Future<Output = Result<carepath_store::Page<NoticeRecord>, StoreError>>,
{
    let rows = Rows {
        key: NoticeRecord::page_token,
        weight: NoticeRecord::stored_bytes,
    };
    visible_page(token, size, read, |n| Ok(Some(n.clone())), rows).await
}

impl Notices {
    /// The use cases over `app`, rendering with `catalog` when a notice is resent.
    pub fn new(app: App, catalog: Arc<TemplateCatalog>) -> Self {
        Notices { app, catalog }
    }

    /// Refuses a caller who does not see everything, auditing the refusal under
    /// `record_id`.
    async fn require_all(&self, caller: &Caller, record_id: &str, why: &str) -> AppResult<()> {
        if standing(&caller.actor).sees_all() {
            return Ok(());
        }
        Err(self
            .app
            .refuse(caller, RECORD_KIND, record_id, None, AppError::denied(why))
            .await)
    }

    /// Loads a notice the caller may see; others are told it does not exist (and the
    /// refusal is audited).
    async fn visible(&self, caller: &Caller, id: &str) -> AppResult<NoticeRecord> {
        let id = record_id(id, "id")?;
        let notice = match self.app.store.get_notice(&id).await {
            Ok(n) => n,
            Err(StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        &id,
                        None,
                        AppError::hidden("notice", &id),
                    )
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        if !standing(&caller.actor).sees(&notice.recipient_id) {
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    &id,
                    member_of(&notice).as_ref(),
                    AppError::hidden("notice", &id),
                )
                .await);
        }
        Ok(notice)
    }

    /// One page of a recipient's notices (the caller's own unless it sees
    /// everything). The listing is audited under the recipient (`*` for everyone's).
    pub async fn list(&self, caller: &Caller, cmd: ListNotices) -> AppResult<Page<Notice>> {
        let size = cmd.page.checked_size("page.page_size")?;
        let asked = cmd.recipient.as_deref().map(str::trim).unwrap_or_default();
        let standing = standing(&caller.actor);
        let recipient = match (asked.is_empty(), &standing) {
            (true, Standing::Everything) => None,
            (true, Standing::Recipient(own)) => Some(own.clone()),
            (true, Standing::Nothing) => {
                return Err(AppError::denied("this caller has no notices of its own"));
            }
            (false, s) if s.sees(asked) => Some(asked.to_owned()),
            (false, _) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        asked,
                        member_of_recipient(asked).as_ref(),
                        AppError::denied("notices are listed to their recipient only"),
                    )
                    .await);
            }
        };
        let store = &self.app.store;
        let read = |token: String| {
            let recipient = recipient.as_deref();
            async move { store.list_notices(recipient, &token, size).await }
        };
        let page = notice_page(&cmd.page.token, size, read).await?;
        let record_id = recipient.as_deref().unwrap_or("*");
        let member = recipient.as_deref().and_then(member_of_recipient);
        self.audited_page(caller, record_id, member.as_ref(), page)
            .await
    }

    /// A page of notices, its read audited in one transaction: the list under
    /// `record_id` (and `member`, when the list is a member's), and each notice
    /// listed under its id and the member it is about, so a search for a member
    /// finds every listing that showed one of their notices.
    async fn audited_page(
        &self,
        caller: &Caller,
        record_id: &str,
        member: Option<&MemberId>,
        page: Page<NoticeRecord>,
    ) -> AppResult<Page<Notice>> {
        let now = self.app.now();
        let mut tx = self.app.store.begin().await?;
        tx.append_audit(
            &caller.audit_entry(RECORD_KIND, record_id, member, AuditOutcome::Allowed),
            now,
        )
        .await?;
        for notice in &page.items {
            tx.append_audit(
                &caller.audit_entry(
                    RECORD_KIND,
                    &notice.id,
                    member_of(notice).as_ref(),
                    AuditOutcome::Allowed,
                ),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(|n| Notice::of(n, None))
                .collect::<AppResult<_>>()?,
            next_page_token: page.next_page_token,
        })
    }

    /// One notice with its text and delivery history; audited.
    pub async fn get(&self, caller: &Caller, id: &str) -> AppResult<Notice> {
        let notice = self.visible(caller, id).await?;
        let attempts = self.app.store.notice_attempts(&notice.id).await?;
        self.app
            .audit(
                caller,
                RECORD_KIND,
                &notice.id,
                member_of(&notice).as_ref(),
                AuditOutcome::Allowed,
            )
            .await?;
        Notice::of(&notice, Some(attempts))
    }

    /// Sends a failed or dead notice again (admins and services). A notice that could
    /// not be rendered is rendered again, with the templates in force now.
    pub async fn resend(&self, caller: &Caller, cmd: ResendNotice) -> AppResult<Notice> {
        self.require_all(
            caller,
            cmd.id.trim(),
            "only admins and services resend notices",
        )
        .await?;
        let reason = cmd.reason.trim();
        if reason.is_empty() {
            return Err(AppError::field(
                "reason",
                "say why the notice is sent again",
            ));
        }
        let notice = self.visible(caller, &cmd.id).await?;
        let rerendered = match (&notice.rendered, &notice.planned) {
            (None, Some(planned)) => {
                let planned: PlannedNotice =
                    serde_json::from_value(planned.0.clone()).map_err(|_| {
                        AppError::FailedPrecondition(
                            "no channel reaches this recipient; correct their contact details in the directory"
                                .into(),
                        )
                    })?;
                let r = self
                    .catalog
                    .render(&planned, planned.event_date)
                    .map_err(|e| AppError::FailedPrecondition(format!("cannot render: {e}")))?;
                Some(serde_json::to_value(&r).map_err(|e| AppError::Internal(e.to_string()))?)
            }
            _ => None,
        };
        let now = self.app.now();
        let mut tx = self.app.store.begin().await?;
        if !tx
            .resend_notice(&notice.id, rerendered.as_ref(), now)
            .await?
        {
            return Err(AppError::FailedPrecondition(format!(
                "notice {} is {}; only failed or dead notices are resent",
                notice.id, notice.state
            )));
        }
        tx.append_audit(
            &caller.audit_entry(
                RECORD_KIND,
                &notice.id,
                member_of(&notice).as_ref(),
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(notice = %notice.id, by = %caller.actor.subject, %reason, "notice resent");
        let notice = self.app.store.get_notice(&notice.id).await?;
        Notice::of(&notice, None)
    }

    /// One page of the notices that did not go out, every recipient's (admins and
    /// services).
    pub async fn list_failed(
        &self,
        caller: &Caller,
        cmd: ListFailedNotices,
    ) -> AppResult<Page<Notice>> {
        self.require_all(
            caller,
            "failed",
            "only admins and services list failed notices",
        )
        .await?;
        let state = match cmd.state {
            None => None,
            Some(s @ (NoticeState::Failed | NoticeState::Dead)) => Some(s.as_str()),
            Some(_) => {
                return Err(AppError::field(
                    "state",
                    "must be DELIVERY_STATE_FAILED, DELIVERY_STATE_DEAD or unspecified",
                ));
            }
        };
        let size = cmd.page.checked_size("page.page_size")?;
        let store = &self.app.store;
        let read =
            |token: String| async move { store.list_failed_notices(state, &token, size).await };
        let page = notice_page(&cmd.page.token, size, read).await?;
        self.audited_page(caller, "failed", None, page).await
    }

    /// How the notices stored in a period fared, per channel (admins and services).
    pub async fn delivery_report(
        &self,
        caller: &Caller,
        period: ReportPeriod,
    ) -> AppResult<DeliveryReport> {
        self.require_all(
            caller,
            "report",
            "only admins and services read the delivery report",
        )
        .await?;
        let mut invalid = carepath_core::Invalid::new();
        if period.from.is_none() {
            invalid.push("from", "is required");
        }
        if period.to.is_none() {
            invalid.push("to", "is required");
        }
        invalid.into_result()?;
        let (Some(from), Some(to)) = (period.from, period.to) else {
            return Err(AppError::field("from", "is required"));
        };
        if to <= from {
            return Err(AppError::field("to", "must be after from"));
        }
        let counts = self.app.store.notice_counts(from, to).await?;
        let mut by_channel: BTreeMap<String, ChannelCounts> = BTreeMap::new();
        let mut report = DeliveryReport::default();
        for c in counts {
            let n = u32::try_from(c.count).unwrap_or(u32::MAX);
            report.total += n;
            if c.channel == "none" {
                report.unreachable += n;
                continue;
            }
            let entry = by_channel
                .entry(c.channel.clone())
                .or_insert_with(|| ChannelCounts {
                    channel: ContactChannel::parse(&c.channel).ok(),
                    ..ChannelCounts::default()
                });
            match NoticeState::parse(&c.state) {
                Some(NoticeState::Sent) => {
                    entry.sent += n;
                    report.sent += n;
                }
                Some(NoticeState::Failed) => {
                    entry.failed += n;
                    report.failed += n;
                }
                Some(NoticeState::Dead) => {
                    entry.dead += n;
                    report.dead += n;
                }
                _ => entry.pending += n,
            }
        }
        report.channels = by_channel.into_values().collect();
        self.app
            .audit(caller, RECORD_KIND, "report", None, AuditOutcome::Allowed)
            .await?;
        Ok(report)
    }
}
