//! Notifications: the outbox consumer that turns events into stored notices
//! ([`handler`]), the dispatcher that delivers them ([`dispatcher`]), the adapter that
//! gives precertification events the words notices need ([`precert_payload`]), their
//! settings ([`settings`]), and `carepath.notify.v1.NotificationService`.
//!
//! Who may see a notice: its recipient (a member `member:<id>`, a provider
//! `provider:<npi>`, a staff member `staff:<id>`), and admins and internal services.
//! Anyone else is told it does not exist. Admins and services work the failed list
//! (every recipient's notices), resend, and read the delivery report.

pub mod dispatcher;
pub mod handler;
pub mod precert_payload;
pub mod settings;

use std::{collections::BTreeMap, sync::Arc};

use carepath_core::{ContactChannel, Role};
use carepath_notify::{Destination, NoticeRules, PlannedNotice, TemplateCatalog};
use carepath_proto::notify::v1::{self as pb, notification_service_server::NotificationService};
use carepath_store::{AuditOutcome, NoticeRecord, StoreError};
use tonic::{Request, Response, Status};

use self::{
    dispatcher::Dispatcher,
    handler::NotifyHandler,
    settings::{NotifySettings, SettingsError},
};
use crate::{
    context::{App, Caller, caller_of, page_size},
    convert::timestamp,
    error::{ApiError, ApiResult, respond},
};

const RECORD_KIND: &str = "notice";

/// The notification area's parts, built once at start from the shipped rules and
/// templates (validated on load) and the channel settings.
#[derive(Debug, Clone)]
pub struct NotifyArea {
    pub service: Notify,
    pub handler: NotifyHandler,
    pub dispatcher: Dispatcher,
}

/// Why the area could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notice rules: {0}")]
    Rules(#[from] carepath_notify::RulesErrors),
    #[error("notice templates: {0}")]
    Templates(#[from] carepath_notify::TemplateErrors),
    #[error("{0}")]
    Settings(#[from] SettingsError),
}

impl NotifyArea {
    /// Loads the rules and templates, checks the one against the other, and sets up
    /// the channels; any problem stops the start.
    pub fn new(app: App, settings: &NotifySettings) -> Result<Self, NotifyError> {
        let rules = Arc::new(NoticeRules::shipped()?);
        let catalog = Arc::new(TemplateCatalog::shipped()?);
        catalog.check_rules(&rules)?;
        let channels = settings.channels()?;
        Ok(NotifyArea {
            service: Notify {
                app: app.clone(),
                catalog: catalog.clone(),
            },
            handler: NotifyHandler {
                store: app.store.clone(),
                clock: app.clock.clone(),
                rules,
                catalog,
            },
            dispatcher: Dispatcher {
                store: app.store.clone(),
                clock: app.clock.clone(),
                channels,
                retry: settings.retry,
                options: settings.dispatch,
            },
        })
    }
}

/// The notification service.
#[derive(Debug, Clone)]
pub struct Notify {
    app: App,
    catalog: Arc<TemplateCatalog>,
}

/// Where a notice went, as shown to people.
pub fn destination_text(d: &Destination) -> String {
    match d {
        Destination::Email { address } => address.clone(),
        Destination::Fax { number } => number.clone(),
        Destination::Mail { address } => {
            let mut lines = address.lines.clone();
            lines.push(address.country.to_string());
            lines.join(", ")
        }
        Destination::Portal { inbox } => format!("portal inbox {inbox}"),
    }
}

/// The recipient id a caller's own notices are filed under, if any.
fn own_recipient(caller: &Caller) -> Option<String> {
    let a = &caller.actor;
    match a.role {
        Role::Member => a.member_id().map(|m| format!("member:{m}")),
        Role::Provider => a.provider_npi().map(|n| format!("provider:{n}")),
        Role::Nurse | Role::PhysicianReviewer | Role::Admin => {
            a.staff_id().map(|s| format!("staff:{s}"))
        }
        Role::Service => None,
    }
}

/// Admins and internal services see every notice.
fn sees_all(caller: &Caller) -> bool {
    matches!(caller.actor.role, Role::Admin | Role::Service)
}

fn may_view(caller: &Caller, notice: &NoticeRecord) -> bool {
    sees_all(caller) || own_recipient(caller).as_deref() == Some(notice.recipient_id.as_str())
}

fn member_of(notice: &NoticeRecord) -> Option<carepath_core::MemberId> {
    notice
        .member_id
        .as_deref()
        .and_then(|m| carepath_core::MemberId::parse(m).ok())
}

fn channel_to_proto(c: &str) -> i32 {
    (match ContactChannel::parse(c) {
        Ok(ContactChannel::Email) => pb::Channel::Email,
        Ok(ContactChannel::Fax) => pb::Channel::Fax,
        Ok(ContactChannel::Mail) => pb::Channel::Mail,
        Ok(ContactChannel::Portal) => pb::Channel::Portal,
        Err(_) => pb::Channel::Unspecified,
    }) as i32
}

fn state_to_proto(s: &str) -> i32 {
    (match s {
        "pending" => pb::DeliveryState::Pending,
        "sending" => pb::DeliveryState::Sending,
        "sent" => pb::DeliveryState::Sent,
        "failed" => pb::DeliveryState::Failed,
        "dead" => pb::DeliveryState::Dead,
        _ => pb::DeliveryState::Unspecified,
    }) as i32
}

/// A notice for the wire; the body and attempts only when `full`.
fn notice_to_proto(n: &NoticeRecord, full: Option<&[carepath_store::NoticeAttempt]>) -> pb::Notice {
    let body = match (full, &n.rendered) {
        (Some(_), Some(doc)) => {
            serde_json::from_value::<carepath_notify::RenderedNotice>(doc.0.clone())
                .map(|r| r.text_body())
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    pb::Notice {
        id: n.id.clone(),
        idempotency_key: n.idempotency_key.clone(),
        recipient_id: n.recipient_id.clone(),
        recipient_name: n.recipient_name.clone(),
        recipient_role: n.recipient_role.clone(),
        channel: channel_to_proto(&n.channel),
        destination: n.destination.clone(),
        event_id: n.event_id.clone(),
        event_kind: n.event_kind.clone(),
        rule_id: n.rule_id.clone(),
        rules_version: n.rules_version.clone(),
        template_id: n.template_id.clone(),
        template_version: u32::try_from(n.template_version).unwrap_or(0),
        language: n.language.clone(),
        member_id: n.member_id.clone().unwrap_or_default(),
        subject: n.subject.clone(),
        body,
        state: state_to_proto(&n.state),
        attempts: u32::try_from(n.attempts).unwrap_or(0),
        created_at: Some(timestamp(n.created_at)),
        next_attempt_at: n.next_attempt_at.map(timestamp),
        sent_at: n.sent_at.map(timestamp),
        receipt_reference: n.receipt_reference.clone(),
        last_error: n.last_error.clone(),
        history: full
            .unwrap_or_default()
            .iter()
            .map(|a| pb::DeliveryAttempt {
                number: u32::try_from(a.number).unwrap_or(0),
                started_at: Some(timestamp(a.started_at)),
                finished_at: a.finished_at.map(timestamp),
                outcome: a.outcome.clone(),
                detail: a.detail.clone(),
            })
            .collect(),
    }
}

fn page_of(page: Option<carepath_proto::common::v1::PageRequest>) -> ApiResult<(String, u32)> {
    let page = page.unwrap_or_default();
    Ok((
        page.page_token,
        page_size(page.page_size, "page.page_size")?,
    ))
}

impl Notify {
    /// Loads a notice the caller may see; others are told it does not exist (and the
    /// refusal is audited).
    async fn load_visible(&self, caller: &Caller, id: &str) -> ApiResult<NoticeRecord> {
        let id = id.trim();
        if id.is_empty() {
            return Err(ApiError::field("id", "is required"));
        }
        let notice = match self.app.store.get_notice(id).await {
            Ok(n) => n,
            Err(StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        id,
                        None,
                        ApiError::hidden("notice", id),
                    )
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        if !may_view(caller, &notice) {
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    id,
                    member_of(&notice).as_ref(),
                    ApiError::hidden("notice", id),
                )
                .await);
        }
        Ok(notice)
    }
}

#[tonic::async_trait]
impl NotificationService for Notify {
    async fn list_notices(
        &self,
        request: Request<pb::ListNoticesRequest>,
    ) -> Result<Response<pb::ListNoticesResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let (token, size) = page_of(req.page)?;
            let asked = req.recipient_id.trim().to_owned();
            let own = own_recipient(&caller);
            let recipient = match (asked.is_empty(), sees_all(&caller)) {
                (true, true) => None,
                (true, false) => Some(
                    own.clone()
                        .ok_or_else(|| ApiError::denied("this caller has no notices of its own"))?,
                ),
                (false, _) if sees_all(&caller) || own.as_deref() == Some(asked.as_str()) => {
                    Some(asked.clone())
                }
                (false, _) => {
                    let member = asked
                        .strip_prefix("member:")
                        .and_then(|m| carepath_core::MemberId::parse(m).ok());
                    return Err(self
                        .app
                        .refuse(
                            &caller,
                            RECORD_KIND,
                            &asked,
                            member.as_ref(),
                            ApiError::denied("notices are listed to their recipient only"),
                        )
                        .await);
                }
            };
            let page = self
                .app
                .store
                .list_notices(recipient.as_deref(), &token, size)
                .await?;
            let record_id = recipient.clone().unwrap_or_else(|| "*".into());
            let member = recipient
                .as_deref()
                .and_then(|r| r.strip_prefix("member:"))
                .and_then(|m| carepath_core::MemberId::parse(m).ok());
            self.app
                .audit(
                    &caller,
                    RECORD_KIND,
                    &record_id,
                    member.as_ref(),
                    AuditOutcome::Allowed,
                )
                .await?;
            Ok(pb::ListNoticesResponse {
                notices: page
                    .items
                    .iter()
                    .map(|n| notice_to_proto(n, None))
                    .collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            })
        })
        .await
    }

    async fn get_notice(
        &self,
        request: Request<pb::GetNoticeRequest>,
    ) -> Result<Response<pb::GetNoticeResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let notice = self.load_visible(&caller, &req.id).await?;
            let attempts = self.app.store.notice_attempts(&notice.id).await?;
            self.app
                .audit(
                    &caller,
                    RECORD_KIND,
                    &notice.id,
                    member_of(&notice).as_ref(),
                    AuditOutcome::Allowed,
                )
                .await?;
            Ok(pb::GetNoticeResponse {
                notice: Some(notice_to_proto(&notice, Some(&attempts))),
            })
        })
        .await
    }

    async fn resend_notice(
        &self,
        request: Request<pb::ResendNoticeRequest>,
    ) -> Result<Response<pb::ResendNoticeResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            if !sees_all(&caller) {
                return Err(self
                    .app
                    .refuse(
                        &caller,
                        RECORD_KIND,
                        req.id.trim(),
                        None,
                        ApiError::denied("only admins and services resend notices"),
                    )
                    .await);
            }
            if req.reason.trim().is_empty() {
                return Err(ApiError::field("reason", "say why the notice is sent again"));
            }
            let notice = self.load_visible(&caller, &req.id).await?;
            // A notice that could not be rendered is rendered again, with the
            // templates in force now.
            let rerendered = match (&notice.rendered, &notice.planned) {
                (None, Some(planned)) => {
                    let planned: PlannedNotice = serde_json::from_value(planned.0.clone())
                        .map_err(|_| {
                            ApiError::FailedPrecondition(
                                "no channel reaches this recipient; correct their contact details in the directory"
                                    .into(),
                            )
                        })?;
                    let r = self
                        .catalog
                        .render(&planned, planned.event_date)
                        .map_err(|e| ApiError::FailedPrecondition(format!("cannot render: {e}")))?;
                    Some(serde_json::to_value(&r).map_err(|e| ApiError::Internal(e.to_string()))?)
                }
                _ => None,
            };
            let now = self.app.now();
            let mut tx = self.app.store.begin().await?;
            if !tx.resend_notice(&notice.id, rerendered.as_ref(), now).await? {
                return Err(ApiError::FailedPrecondition(format!(
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
            tracing::info!(notice = %notice.id, by = %caller.actor.subject, reason = %req.reason.trim(), "notice resent");
            let notice = self.app.store.get_notice(&notice.id).await?;
            Ok(pb::ResendNoticeResponse {
                notice: Some(notice_to_proto(&notice, None)),
            })
        })
        .await
    }

    async fn list_failed_notices(
        &self,
        request: Request<pb::ListFailedNoticesRequest>,
    ) -> Result<Response<pb::ListFailedNoticesResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            if !sees_all(&caller) {
                return Err(self
                    .app
                    .refuse(
                        &caller,
                        RECORD_KIND,
                        "failed",
                        None,
                        ApiError::denied("only admins and services list failed notices"),
                    )
                    .await);
            }
            let state = match pb::DeliveryState::try_from(req.state) {
                Ok(pb::DeliveryState::Unspecified) => None,
                Ok(pb::DeliveryState::Failed) => Some("failed"),
                Ok(pb::DeliveryState::Dead) => Some("dead"),
                _ => {
                    return Err(ApiError::field(
                        "state",
                        "must be DELIVERY_STATE_FAILED, DELIVERY_STATE_DEAD or unspecified",
                    ));
                }
            };
            let (token, size) = page_of(req.page)?;
            let page = self
                .app
                .store
                .list_failed_notices(state, &token, size)
                .await?;
            self.app
                .audit(&caller, RECORD_KIND, "failed", None, AuditOutcome::Allowed)
                .await?;
            Ok(pb::ListFailedNoticesResponse {
                notices: page
                    .items
                    .iter()
                    .map(|n| notice_to_proto(n, None))
                    .collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            })
        })
        .await
    }

    async fn get_delivery_report(
        &self,
        request: Request<pb::GetDeliveryReportRequest>,
    ) -> Result<Response<pb::GetDeliveryReportResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            if !sees_all(&caller) {
                return Err(self
                    .app
                    .refuse(
                        &caller,
                        RECORD_KIND,
                        "report",
                        None,
                        ApiError::denied("only admins and services read the delivery report"),
                    )
                    .await);
            }
            let mut invalid = carepath_core::Invalid::new();
            let from = req.from.and_then(crate::convert::instant);
            let to = req.to.and_then(crate::convert::instant);
            if from.is_none() {
                invalid.push("from", "is required");
            }
            if to.is_none() {
                invalid.push("to", "is required");
            }
            invalid.into_result()?;
            let (Some(from), Some(to)) = (from, to) else {
                return Err(ApiError::field("from", "is required"));
            };
            if to <= from {
                return Err(ApiError::field("to", "must be after from"));
            }
            let counts = self.app.store.notice_counts(from, to).await?;
            let mut by_channel: BTreeMap<String, pb::ChannelCounts> = BTreeMap::new();
            let mut report = pb::GetDeliveryReportResponse::default();
            for c in counts {
                let n = u32::try_from(c.count).unwrap_or(u32::MAX);
                report.total += n;
                if c.channel == "none" {
                    report.unreachable += n;
                    continue;
                }
                let entry =
                    by_channel
                        .entry(c.channel.clone())
                        .or_insert_with(|| pb::ChannelCounts {
                            channel: channel_to_proto(&c.channel),
                            ..Default::default()
                        });
                match c.state.as_str() {
                    "sent" => {
                        entry.sent += n;
                        report.sent += n;
                    }
                    "failed" => {
                        entry.failed += n;
                        report.failed += n;
                    }
                    "dead" => {
                        entry.dead += n;
                        report.dead += n;
                    }
                    _ => entry.pending += n,
                }
            }
            report.channels = by_channel.into_values().collect();
            self.app
                .audit(&caller, RECORD_KIND, "report", None, AuditOutcome::Allowed)
                .await?;
            Ok(report)
        })
        .await
    }
}
