//! Conversions between `carepath.notify.v1` messages and the notice use cases' types.

use carepath_app::{
    PageRequest,
    notify::{
        ChannelCounts, DeliveryReport, ListFailedNotices, ListNotices, Notice, NoticeState,
        ReportPeriod, ResendNotice,
    },
};
use carepath_core::ContactChannel;
use carepath_proto::{common::v1 as common, notify::v1 as pb};

use crate::{
    convert::{instant, timestamp},
    error::{ApiError, ApiResult},
};

fn page(page: Option<common::PageRequest>) -> PageRequest {
    let page = page.unwrap_or_default();
    PageRequest {
        token: page.page_token,
        size: page.page_size,
    }
}

fn channel_to_proto(c: Option<ContactChannel>) -> i32 {
    (match c {
        Some(ContactChannel::Email) => pb::Channel::Email,
        Some(ContactChannel::Fax) => pb::Channel::Fax,
        Some(ContactChannel::Mail) => pb::Channel::Mail,
        Some(ContactChannel::Portal) => pb::Channel::Portal,
        None => pb::Channel::Unspecified,
    }) as i32
}

fn state_to_proto(s: NoticeState) -> i32 {
    (match s {
        NoticeState::Pending => pb::DeliveryState::Pending,
        NoticeState::Sending => pb::DeliveryState::Sending,
        NoticeState::Sent => pb::DeliveryState::Sent,
        NoticeState::Failed => pb::DeliveryState::Failed,
        NoticeState::Dead => pb::DeliveryState::Dead,
    }) as i32
}

pub fn list_notices(req: pb::ListNoticesRequest) -> ListNotices {
    let recipient = req.recipient_id.trim();
    ListNotices {
        recipient: (!recipient.is_empty()).then(|| recipient.to_owned()),
        page: page(req.page),
    }
}

pub fn resend_notice(req: pb::ResendNoticeRequest) -> ResendNotice {
    ResendNotice {
        id: req.id,
        reason: req.reason,
    }
}

pub fn list_failed_notices(req: pb::ListFailedNoticesRequest) -> ApiResult<ListFailedNotices> {
    let state = match pb::DeliveryState::try_from(req.state) {
        Ok(pb::DeliveryState::Unspecified) => None,
        Ok(pb::DeliveryState::Pending) => Some(NoticeState::Pending),
        Ok(pb::DeliveryState::Sending) => Some(NoticeState::Sending),
        Ok(pb::DeliveryState::Sent) => Some(NoticeState::Sent),
        Ok(pb::DeliveryState::Failed) => Some(NoticeState::Failed),
        Ok(pb::DeliveryState::Dead) => Some(NoticeState::Dead),
        Err(_) => {
            return Err(ApiError::field(
                "state",
                "must be DELIVERY_STATE_FAILED, DELIVERY_STATE_DEAD or unspecified",
            ));
        }
    };
    Ok(ListFailedNotices {
        state,
        page: page(req.page),
    })
}

pub fn report_period(req: pb::GetDeliveryReportRequest) -> ReportPeriod {
    ReportPeriod {
        from: req.from.and_then(instant),
        to: req.to.and_then(instant),
    }
}

pub fn notice_to_proto(n: Notice) -> pb::Notice {
    pb::Notice {
        id: n.id,
        idempotency_key: n.idempotency_key,
        recipient_id: n.recipient_id,
        recipient_name: n.recipient_name,
        recipient_role: n.recipient_role,
        channel: channel_to_proto(n.channel),
        destination: n.destination,
        event_id: n.event_id,
        event_kind: n.event_kind,
        rule_id: n.rule_id,
        rules_version: n.rules_version,
        template_id: n.template_id,
        template_version: n.template_version,
        language: n.language,
        member_id: n.member_id.unwrap_or_default(),
        subject: n.subject,
        body: n.body,
        state: state_to_proto(n.state),
        attempts: n.attempts,
        created_at: Some(timestamp(n.created_at)),
        next_attempt_at: n.next_attempt_at.map(timestamp),
        sent_at: n.sent_at.map(timestamp),
        receipt_reference: n.receipt_reference,
        last_error: n.last_error,
        history: n
            .history
            .into_iter()
            .map(|a| pb::DeliveryAttempt {
                number: u32::try_from(a.number).unwrap_or(0),
                started_at: Some(timestamp(a.started_at)),
                finished_at: a.finished_at.map(timestamp),
                outcome: a.outcome,
                detail: a.detail,
            })
            .collect(),
    }
}

pub fn notices_to_proto(notices: Vec<Notice>) -> Vec<pb::Notice> {
    notices.into_iter().map(notice_to_proto).collect()
}

fn channel_counts_to_proto(c: ChannelCounts) -> pb::ChannelCounts {
    pb::ChannelCounts {
        channel: channel_to_proto(c.channel),
        pending: c.pending,
        sent: c.sent,
        failed: c.failed,
        dead: c.dead,
    }
}

pub fn report_to_proto(r: DeliveryReport) -> pb::GetDeliveryReportResponse {
    pb::GetDeliveryReportResponse {
        total: r.total,
        sent: r.sent,
        failed: r.failed,
        dead: r.dead,
        unreachable: r.unreachable,
        channels: r
            .channels
            .into_iter()
            .map(channel_counts_to_proto)
            .collect(),
    }
}
