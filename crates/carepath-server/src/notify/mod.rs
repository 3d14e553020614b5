//! `carepath.notify.v1.NotificationService`: the gRPC door of the notification area.
//!
//! Each handler converts the request ([`convert`]), calls the notice use case of
//! [`carepath_app::notify`] (which holds who may see which notice), and converts the
//! answer back. The consumer, the dispatcher and the settings live in the application
//! crate; `carepath-cli` holds the serving flags that build the settings.

pub mod convert;

pub use carepath_app::notify::NotifyError;
use carepath_app::notify::{Dispatcher, Notices, NotifyHandler, NotifySettings};
use carepath_proto::notify::v1::{self as pb, notification_service_server::NotificationService};

use crate::{context::App, door::grpc_service};

/// The notification area's parts: the gRPC service, the outbox consumer that stores
/// notices, and the dispatcher that delivers them.
#[derive(Debug, Clone)]
pub struct NotifyArea {
    pub service: Notify,
    pub handler: NotifyHandler,
    pub dispatcher: Dispatcher,
}

impl NotifyArea {
    /// Builds the area (see [`carepath_app::notify::NotifyArea::new`]); any problem
    /// with the rules, templates or channels stops the start.
    pub fn new(app: App, settings: &NotifySettings) -> Result<Self, NotifyError> {
        let area = carepath_app::notify::NotifyArea::new(app, settings)?;
        Ok(NotifyArea {
            service: Notify {
                inner: area.notices,
            },
            handler: area.handler,
            dispatcher: area.dispatcher,
        })
    }
}

/// The notification service.
#[derive(Debug, Clone)]
pub struct Notify {
    inner: Notices,
}

grpc_service! {
    impl NotificationService for Notify {
        rpc list_notices(request: pb::ListNoticesRequest) -> pb::ListNoticesResponse as |this, caller| {
            let cmd = convert::list_notices(request.into_inner());
            let page = this.inner.list(&caller, cmd).await?;
            Ok(pb::ListNoticesResponse {
                notices: convert::notices_to_proto(page.items),
                next_page_token: page.next_page_token,
            })
        }

        rpc get_notice(request: pb::GetNoticeRequest) -> pb::GetNoticeResponse as |this, caller| {
            let id = request.into_inner().id;
            let notice = this.inner.get(&caller, &id).await?;
            Ok(pb::GetNoticeResponse {
                notice: Some(convert::notice_to_proto(notice)),
            })
        }

        rpc resend_notice(request: pb::ResendNoticeRequest) -> pb::ResendNoticeResponse as |this, caller| {
            let cmd = convert::resend_notice(request.into_inner());
            let notice = this.inner.resend(&caller, cmd).await?;
            Ok(pb::ResendNoticeResponse {
                notice: Some(convert::notice_to_proto(notice)),
            })
        }

        rpc list_failed_notices(request: pb::ListFailedNoticesRequest) -> pb::ListFailedNoticesResponse as |this, caller| {
            let cmd = convert::list_failed_notices(request.into_inner())?;
            let page = this.inner.list_failed(&caller, cmd).await?;
            Ok(pb::ListFailedNoticesResponse {
                notices: convert::notices_to_proto(page.items),
                next_page_token: page.next_page_token,
            })
        }

        rpc get_delivery_report(request: pb::GetDeliveryReportRequest) -> pb::GetDeliveryReportResponse as |this, caller| {
            let period = convert::report_period(request.into_inner());
            let report = this.inner.delivery_report(&caller, period).await?;
            Ok(convert::report_to_proto(report))
        }
    }
}
