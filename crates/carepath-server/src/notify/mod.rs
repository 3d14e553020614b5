//! `carepath.notify.v1.NotificationService`: the gRPC door of the notification area.
//!
//! Each handler converts the request ([`convert`]), calls the notice use case of
//! [`carepath_app::notify`] (which holds who may see which notice), and converts the
//! answer back. The consumer, the dispatcher and the settings live in the application
//! crate; [`settings`] holds the serving flags that build them.

pub mod convert;
pub mod settings;

pub use carepath_app::notify::NotifyError;
use carepath_app::notify::{Dispatcher, Notices, NotifyHandler, NotifySettings};
use carepath_proto::notify::v1::{self as pb, notification_service_server::NotificationService};
use tonic::{Request, Response, Status};

use crate::{
    context::{App, caller_of},
    error::respond,
};

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

#[tonic::async_trait]
impl NotificationService for Notify {
    async fn list_notices(
        &self,
        request: Request<pb::ListNoticesRequest>,
    ) -> Result<Response<pb::ListNoticesResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::list_notices(request.into_inner());
            let page = self.inner.list(&caller, cmd).await?;
            Ok(pb::ListNoticesResponse {
                notices: convert::notices_to_proto(page.items),
                next_page_token: page.next_page_token,
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
            let id = request.into_inner().id;
            let notice = self.inner.get(&caller, &id).await?;
            Ok(pb::GetNoticeResponse {
                notice: Some(convert::notice_to_proto(notice)),
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
            let cmd = convert::resend_notice(request.into_inner());
            let notice = self.inner.resend(&caller, cmd).await?;
            Ok(pb::ResendNoticeResponse {
                notice: Some(convert::notice_to_proto(notice)),
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
            let cmd = convert::list_failed_notices(request.into_inner())?;
            let page = self.inner.list_failed(&caller, cmd).await?;
            Ok(pb::ListFailedNoticesResponse {
                notices: convert::notices_to_proto(page.items),
                next_page_token: page.next_page_token,
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
            let period = convert::report_period(request.into_inner());
            let report = self.inner.delivery_report(&caller, period).await?;
            Ok(convert::report_to_proto(report))
        })
        .await
    }
}
