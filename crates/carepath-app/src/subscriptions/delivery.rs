//! Delivery of subscription notifications: claim due notifications under a lease,
//! render each (the FHIR door's [`RenderNotification`]), POST it to the
//! subscription's endpoint, and record the outcome: delivered, failed and due again
//! after a backoff, or dead after too many failures.
//!
//! A worker killed mid-batch leaves its notifications leased; once the lease runs out
//! another worker (or the restarted one) sends them again, so a receiver may see an
//! event number twice. Sending a request's case is a disclosure of member data: it is
//! audited as an access to the case by the service [`DELIVERY_SERVICE`], naming the
//! subscription.

use std::{sync::Arc, time::Duration};

use carepath_core::{Actor, Role};
use carepath_precert::PrecertCase;
use carepath_store::{FailureRecorded, NotificationRecord, StoreError};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Notification, PayloadContent, Subscription, SubscriptionState};
use crate::{
    App, AppError, AppResult, Caller,
    outbox::{ConsumerOptions, backoff},
    precert::{CaseView, may_view, request_id_of},
};

/// The internal service that sends notifications, as the audit log names it.
pub const DELIVERY_SERVICE: &str = "fhir-subscriptions";

/// The media type of every notification body.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Builds a notification's body; implemented by the FHIR door, which owns FHIR JSON.
pub trait RenderNotification: Send + Sync + 'static {
    /// The body to POST for `notification` of `subscription`. `case` is the request
    /// as it now stands for a `full-resource` subscription, `None` for `id-only`.
    fn render(
        &self,
        subscription: &Subscription,
        notification: &Notification,
        case: Option<&CaseView>,
    ) -> Vec<u8>;
}

/// How deliveries are claimed, sent and retried.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryOptions {
    /// Most notifications claimed at once.
    pub batch: u32,
    /// How long a claimed notification stays with this worker before another may
    /// take it; longer than `timeout`, so a slow endpoint is not sent to twice.
    pub lease: Duration,
    /// Pause when nothing is due.
    pub idle_poll: Duration,
    /// Failed attempts after which a notification is dead.
    pub max_attempts: i32,
    /// First retry delay; doubles per failure up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Most POSTs in flight at once.
    pub parallelism: usize,
    /// How long one POST may take.
    pub timeout: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            batch: 32,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(500),
            max_attempts: 10,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            parallelism: 8,
            timeout: Duration::from_secs(10),
        }
    }
}

impl DeliveryOptions {
    /// The retry schedule in the outbox consumers' terms, for [`backoff`].
    fn retry(&self) -> ConsumerOptions {
        ConsumerOptions {
            batch: self.batch,
            lease: self.lease,
            idle_poll: self.idle_poll,
            max_attempts: self.max_attempts,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    Failed(String),
    /// The subscription ended; ending it cancelled the notification.
    Ended,
}

/// Sends due notifications. Cheap to clone.
#[derive(Clone)]
pub struct SubscriptionDeliveries {
    app: App,
    renderer: Arc<dyn RenderNotification>,
    options: DeliveryOptions,
    client: reqwest::Client,
}

impl std::fmt::Debug for SubscriptionDeliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionDeliveries")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SubscriptionDeliveries {
    /// Deliveries over `app`, rendering with `renderer`.
    pub fn new(
        app: App,
        renderer: Arc<dyn RenderNotification>,
        options: DeliveryOptions,
    ) -> AppResult<Self> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            // A redirect would carry the subscription's header to another place.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AppError::Internal(format!("http client: {e}")))?;
        Ok(SubscriptionDeliveries {
            app,
            renderer,
            options,
            client,
        })
    }

    /// Claims one batch of due notifications and delivers them, at most
    /// `options.parallelism` at a time; returns how many were claimed. A failure to
    /// record an outcome is reported once every delivery under way has ended.
    pub async fn deliver_due(&self) -> AppResult<usize> {
        let lease =
            chrono::Duration::from_std(self.options.lease).unwrap_or(chrono::Duration::seconds(60));
        let (owner, claimed) = self
            .app
            .store
            .claim_notifications(self.options.batch, lease, self.app.now())
            .await?;
        let count = claimed.len();
        let recorded: Vec<Result<(), StoreError>> = futures::stream::iter(claimed)
            .map(|notification| {
                let span = tracing::info_span!(
                    "notification",
                    id = %notification.id,
                    subscription = %notification.subscription_id,
                    event_number = notification.event_number,
                );
                self.deliver(notification, &owner).instrument(span)
            })
            .buffer_unordered(self.options.parallelism.max(1))
            .collect()
            .await;
        match recorded.into_iter().find_map(Result::err) {
            Some(e) => Err(e.into()),
            None => Ok(count),
        }
    }

    /// Sends one claimed notification and records how it went.
    async fn deliver(&self, record: NotificationRecord, owner: &str) -> Result<(), StoreError> {
        let store = &self.app.store;
        match self.attempt(&record).await {
            Attempt::Delivered => {
                if store
                    .mark_notification_delivered(&record.id, owner, self.app.now())
                    .await?
                {
                    tracing::info!("notification delivered");
                } else {
                    tracing::warn!("lease lost before the delivery was recorded");
                }
            }
            Attempt::Failed(error) => {
                let failures = record.attempts.saturating_add(1);
                let delay = backoff(&self.options.retry(), failures);
                let retry_at = self.app.now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1));
                // The error names the endpoint's answer, which the subscriber reads in
                // its status; the log keeps to the outcome.
                match store
                    .mark_notification_failed(
                        &record.id,
                        owner,
                        &error,
                        retry_at,
                        self.options.max_attempts,
                    )
                    .await?
                {
                    FailureRecorded::Retrying => {
                        tracing::warn!(failures, %retry_at, "notification delivery failed; will retry");
                    }
                    FailureRecorded::Dead => {
                        tracing::error!(failures, "notification is dead after too many failures");
                    }
                    FailureRecorded::LeaseLost => {
                        tracing::warn!("lease lost before the failure was recorded");
                    }
                }
            }
            Attempt::Ended => tracing::info!("subscription ended; notification not sent"),
        }
        Ok(())
    }

    /// Loads, renders and POSTs one notification.
    async fn attempt(&self, record: &NotificationRecord) -> Attempt {
        let subscription = match self
            .app
            .store
            .get_subscription(&record.subscription_id)
            .await
        {
            Ok(s) => s,
            Err(e) => return self.internal("the subscription could not be read", &e),
        };
        let subscription = match Subscription::from_record(subscription) {
            Ok(s) if s.status == SubscriptionState::Off => return Attempt::Ended,
            Ok(s) => s,
            Err(e) => return self.internal("the subscription could not be read", &e),
        };
        let notification = match Notification::from_record(record.clone()) {
            Ok(n) => n,
            Err(e) => return self.internal("the notification could not be read", &e),
        };
        let case = match self.disclosed_case(&subscription, &notification).await {
            Ok(case) => case,
            Err(AppError::NotFound { .. }) => {
                return Attempt::Failed(format!(
                    "request {} is not one the subscriber may see",
                    notification.case_id
                ));
            }
            Err(e) => return self.internal("the request could not be read", &e),
        };
        let body = self.renderer.render(
            &subscription,
            &notification,
            match subscription.content {
                PayloadContent::FullResource => Some(&case),
                PayloadContent::IdOnly => None,
            },
        );
        let mut request = self
            .client
            .post(&subscription.endpoint)
            .header(reqwest::header::CONTENT_TYPE, FHIR_JSON)
            .body(body);
        if let Some((name, value)) = subscription.header_pair() {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => Attempt::Delivered,
            Ok(answer) => Attempt::Failed(format!(
                "the endpoint answered HTTP {}",
                answer.status().as_u16()
            )),
            Err(e) => Attempt::Failed(send_error(&e, self.options.timeout)),
        }
    }

    /// The case the notification is about, read as the delivery service for the
    /// subscription and audited as such; refused (an audited NOT_FOUND) unless the
    /// subscription's provider may see it.
    async fn disclosed_case(
        &self,
        subscription: &Subscription,
        notification: &Notification,
    ) -> AppResult<CaseView> {
        let caller = Caller::service(
            DELIVERY_SERVICE,
            &format!("notify Subscription/{}", subscription.id),
        );
        let subscriber = Actor::new(Role::Provider, subscription.owner_npi.as_str())?;
        let (record, case, ()) = self
            .app
            .view::<PrecertCase, ()>(&caller, &notification.case_id, |_, case| {
                may_view(&subscriber, case).then_some(())
            })
            .await?;
        Ok(CaseView {
            request_id: request_id_of(&record).to_owned(),
            case,
            as_of: self.app.now(),
        })
    }

    /// A failure on carepath's side: logged in full, recorded in words the subscriber
    /// may read.
    fn internal(&self, what: &str, cause: &dyn std::fmt::Display) -> Attempt {
        tracing::warn!(error = %cause, "{what}");
        Attempt::Failed(format!("{what} (carepath will retry)"))
    }
}

/// Why a POST did not get an answer, without the endpoint's URL.
fn send_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs());
    }
    let what = if e.is_connect() {
        "could not connect to the endpoint"
    } else {
        "the request to the endpoint failed"
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c.to_string());
        cause = c.source();
    }
    match innermost {
        Some(detail) => format!("{what}: {detail}"),
        None => what.to_owned(),
    }
}

/// Delivers due notifications until `cancel` is cancelled; the batch in hand is
/// finished first.
pub async fn run_deliveries(
    app: App,
    renderer: Arc<dyn RenderNotification>,
    options: DeliveryOptions,
    cancel: CancellationToken,
) {
    let deliveries = match SubscriptionDeliveries::new(app, renderer, options) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot start subscription deliveries");
            return;
        }
    };
    while !cancel.is_cancelled() {
        let handled = match deliveries.deliver_due().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "subscription delivery round failed; retrying");
                0
            }
        };
        if handled == 0 {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(options.idle_poll) => {}
            }
        }
    }
    tracing::info!("subscription deliveries stopped");
}
