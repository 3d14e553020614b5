//! The subscription feed: an outbox consumer that turns a precertification case's
//! changes after submission into one numbered notification per subscription of the
//! case's requesting and servicing providers.
//!
//! The outcome a submission reaches at once (approved, or information requested, in
//! the same command as `precert.case.submitted`) is the submitter's answer already and
//! is not notified; every later approval, partial approval, denial, request for
//! information, appeal decision and withdrawal is. Handing the same event over twice
//! adds nothing (the store keeps one notification per subscription and event).

use std::sync::Arc;

use carepath_core::{Clock, DomainEvent};
use carepath_precert::{AGGREGATE_KIND, event_kinds};
use carepath_store::Store;
use futures::future::BoxFuture;

use tracing::Instrument;

use crate::{
    App,
    outbox::{EventHandler, Handed},
};

/// The consumer name the feed's outbox deliveries are tracked under.
pub const FEED_CONSUMER: &str = "fhir-subscriptions";

/// The case events a subscriber is told of.
pub const NOTIFIED_KINDS: [&str; 6] = [
    event_kinds::APPROVED,
    event_kinds::PARTIALLY_APPROVED,
    event_kinds::DENIED,
    event_kinds::INFORMATION_REQUESTED,
    event_kinds::APPEAL_DECIDED,
    event_kinds::WITHDRAWN,
];

/// Turns case events into notifications; run it with
/// [`crate::outbox::run_consumer`].
#[derive(Debug, Clone)]
pub struct SubscriptionFeed {
    store: Store,
    /// Stamps the notifications it adds (they are due from then).
    clock: Arc<dyn Clock>,
}

impl SubscriptionFeed {
    /// The feed over `app`'s store and clock.
    pub fn new(app: &App) -> Self {
        SubscriptionFeed {
            store: app.store.clone(),
            clock: app.clock.clone(),
        }
    }

    /// Adds the notifications `event` calls for, if any.
    pub async fn enqueue(&self, event: &DomainEvent) -> Result<usize, String> {
        if !NOTIFIED_KINDS.contains(&event.kind.as_str()) || self.at_submission(event).await? {
            return Ok(0);
        }
        let (requesting, servicing) = self.providers(event).await?;
        self.store
            .enqueue_notifications(
                &event.id,
                &event.aggregate_id,
                &event.kind,
                event.occurred_at,
                &[requesting.as_str(), servicing.as_str()],
                self.clock.now(),
            )
            .await
            .map_err(|e| format!("enqueue notifications: {e}"))
    }

    /// Adds the notifications of a batch of events. The providers the events name
    /// are looked up together first: an event none of whose providers has a
    /// subscription calls for nothing, and needs no read of its own.
    async fn enqueue_batch(&self, batch: &[Handed<'_>]) -> Vec<Result<(), String>> {
        let named: Vec<Option<(String, String)>> = batch
            .iter()
            .map(|handed| named_providers(handed.event))
            .collect();
        let mut owners: Vec<&str> = named
            .iter()
            .flatten()
            .flat_map(|(requesting, servicing)| [requesting.as_str(), servicing.as_str()])
            .collect();
        owners.sort_unstable();
        owners.dedup();
        let subscribed = match owners.len() {
            0 => Some(Default::default()),
            n if n > carepath_store::OWNERS_PER_READ => None,
            _ => match self.store.subscribed_owners(&owners).await {
                Ok(found) => Some(found),
                Err(e) => {
                    tracing::debug!(error = %e, "subscribers not looked up together; each event is");
                    None
                }
            },
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for (handed, named) in batch.iter().zip(&named) {
            let event = handed.event;
            let unsubscribed = match (&subscribed, named) {
                (Some(subscribed), Some((requesting, servicing))) => {
                    !subscribed.contains(requesting) && !subscribed.contains(servicing)
                }
                _ => false,
            };
            if unsubscribed {
                outcomes.push(Ok(()));
                continue;
            }
            let span = tracing::info_span!(parent: &handed.span, "event", consumer = FEED_CONSUMER, kind = %event.kind, event_id = %event.id);
            outcomes.push(self.enqueue(event).instrument(span).await.map(|_| ()));
        }
        outcomes
    }

    /// Whether `event` is the outcome of the submission itself: the command that
    /// files a case appends `submitted` and its outcome together, so the outcome
    /// directly follows `submitted` in the case's events.
    async fn at_submission(&self, event: &DomainEvent) -> Result<bool, String> {
        let events = self
            .store
            .events_for(AGGREGATE_KIND, &event.aggregate_id)
            .await
            .map_err(|e| format!("events of case {}: {e}", event.aggregate_id))?;
        let position = events.iter().position(|e| e.id == event.id);
        Ok(position
            .and_then(|i| i.checked_sub(1))
            .is_some_and(|before| events[before].kind == event_kinds::SUBMITTED))
    }

    /// The requesting and servicing NPIs: from the event, or from the stored case for
    /// an event that does not name them.
    async fn providers(&self, event: &DomainEvent) -> Result<(String, String), String> {
        if let Some(named) = named_providers(event) {
            return Ok(named);
        }
        let case = self
            .store
            .get_case(&event.aggregate_id)
            .await
            .map_err(|e| format!("case {}: {e}", event.aggregate_id))?;
        Ok((case.requesting_npi, case.servicing_npi))
    }
}

/// The requesting and servicing NPIs `event` names, when it names both.
fn named_providers(event: &DomainEvent) -> Option<(String, String)> {
    let named = |field: &str| {
        event
            .payload
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Some((named("requesting_provider")?, named("servicing_provider")?))
}

impl EventHandler for SubscriptionFeed {
    fn consumer(&self) -> &'static str {
        FEED_CONSUMER
    }

    fn prefixes(&self) -> &'static [&'static str] {
        &NOTIFIED_KINDS
    }

    fn handle<'a>(&'a self, event: &'a DomainEvent) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.enqueue(event).await.map(|_| ()) })
    }

    /// The batch's subscribers are looked up once; each event with one is handled in
    /// order, under its hand-off span.
    fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handed<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), String>>> {
        Box::pin(self.enqueue_batch(batch))
    }
}
