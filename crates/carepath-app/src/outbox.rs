//! Outbox consumers: background loops that hand each committed domain event to a
//! handler at least once, retrying with backoff and parking an event as dead after
//! too many failures.
//!
//! Several processes may run the same consumer: the store's claim leases each event
//! to one of them at a time. Handlers must be idempotent, since an event whose
//! acknowledgement was lost (a crash between handling and acknowledging) comes back.

use std::{sync::Arc, time::Duration};

use carepath_core::{Clock, DomainEvent};
use carepath_store::{ClaimedEvent, Store};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::pacing::{GATHER, Lanes, Pacing, Round, run_rounds};

/// Something that reacts to domain events: notifications, case referrals.
pub trait EventHandler: Send + Sync + 'static {
    /// The consumer's stable name; its deliveries are tracked under it.
    fn consumer(&self) -> &'static str;
    /// Event-kind prefixes it wants, e.g. `["precert.case."]`.
    fn prefixes(&self) -> &'static [&'static str];
    /// Batches handled at once while a backlog lasts. One (the default) keeps the
    /// events of one process in the order they were appended; a handler whose events
    /// are independent of each other's order can take more.
    fn lanes(&self) -> usize {
        1
    }
    /// Processes one event. An error is retried later; it must describe the cause.
    fn handle<'a>(&'a self, event: &'a DomainEvent) -> BoxFuture<'a, Result<(), String>>;
    /// Processes the events of one claimed batch and returns one outcome per event,
    /// in order. By default they are handled one at a time, in order, each in a span
    /// under its hand-off, so what the handler writes (a referral's case and its
    /// events) joins the trace of the call that caused the event; a handler whose
    /// events are independent can do better (plan them at once, store them in one
    /// transaction).
    fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handed<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), String>>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(batch.len());
            for handed in batch {
                let event = handed.event;
                let span = tracing::info_span!(parent: &handed.span, "event", consumer = self.consumer(), kind = %event.kind, event_id = %event.id);
                outcomes.push(self.handle(event).instrument(span).await);
            }
            outcomes
        })
    }
}

/// A claimed event as its handler receives it.
#[derive(Debug)]
pub struct Handed<'a> {
    pub event: &'a DomainEvent,
    /// The event's hand-off: with traces on, a span from its claim to its
    /// acknowledgement, child of the span that appended the event (its stored trace
    /// context); a disabled span otherwise. Spans made under it, and events appended
    /// under those, belong to the trace of the call that caused the event.
    pub span: tracing::Span,
}

/// How a consumer polls and retries.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerOptions {
    pub batch: u32,
    /// How long a claimed event stays with this worker before another may take it.
    pub lease: Duration,
    /// Pause when nothing is due, unless a commit wakes the consumer first
    /// ([`carepath_store::Wakeups`]).
    pub idle_poll: Duration,
    /// Failures after which an event is parked as dead.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            batch: 32,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(200),
            max_attempts: 10,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// The delay before retry number `attempts` (1-based): doubling from `base`, capped.
pub fn backoff(options: &ConsumerOptions, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    options
        .base_backoff
        .saturating_mul(2_u32.saturating_pow(exp))
        .min(options.max_backoff)
}

/// Subscribes the handler, then processes its events until `stop` is cancelled. The
/// batch in hand is finished before returning, so a clean shutdown loses nothing.
pub async fn run_consumer(
    store: Store,
    clock: Arc<dyn Clock>,
    handler: Arc<dyn EventHandler>,
    options: ConsumerOptions,
    pacing: Pacing,
    stop: CancellationToken,
) {
    let consumer = handler.consumer();
    if let Err(e) = store.subscribe(consumer, handler.prefixes()).await {
        tracing::error!(consumer, error = %e, "cannot subscribe consumer; it will not run");
        return;
    }
    let lease = chrono::Duration::from_std(options.lease).unwrap_or(chrono::Duration::seconds(60));
    let lanes = Lanes {
        most: handler.lanes(),
        full: usize::try_from(options.batch).unwrap_or(usize::MAX),
        idle_poll: options.idle_poll,
        gather: GATHER,
    };
    // Commits on any process wake the consumer (PostgreSQL with a listener); the poll
    // stays for events due later (retries) and where nothing wakes it.
    let appended = store.wakeups().outbox();
    let (store, clock, handler, options) = (&store, clock.as_ref(), handler.as_ref(), &options);
    run_rounds(lanes, &pacing, appended, &stop, || async move {
        process_round(store, clock, handler, options, lease)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(consumer, error = %e, "outbox claim failed; retrying");
                Round::default()
            })
    })
    .await;
    tracing::info!(consumer, "consumer stopped");
}

/// Claims and processes one batch; returns how many events it handled. Handled
/// events are acknowledged together at the end of the batch, in one transaction: a
/// crash before that hands the whole batch to the next claimer, which handles it again
/// (handlers are idempotent), so nothing is lost and one commit serves the batch.
pub async fn process_batch(
    store: &Store,
    clock: &dyn Clock,
    handler: &dyn EventHandler,
    options: &ConsumerOptions,
    lease: chrono::Duration,
) -> Result<usize, carepath_store::StoreError> {
    Ok(process_round(store, clock, handler, options, lease)
        .await?
        .handled)
}

/// [`process_batch`], also telling how long the oldest event claimed had waited.
async fn process_round(
    store: &Store,
    clock: &dyn Clock,
    handler: &dyn EventHandler,
    options: &ConsumerOptions,
    lease: chrono::Duration,
) -> Result<Round, carepath_store::StoreError> {
    let consumer = handler.consumer();
    let claimed_at = clock.now();
    let (owner, claimed) = store
        .claim(consumer, options.batch, lease, claimed_at)
        .await?;
    let count = claimed.len();
    let round = Round::of(
        count,
        claimed.iter().map(|item| item.event.occurred_at).min(),
        claimed_at,
    );
    let batch: Vec<Handed> = claimed
        .iter()
        .map(|item| Handed {
            event: &item.event,
            span: handoff_span(consumer, item),
        })
        .collect();
    let mut outcomes = handler.handle_batch(&batch).await.into_iter();
    let mut handled = Vec::with_capacity(count);
    for (i, item) in claimed.iter().enumerate() {
        let outcome = outcomes
            .next()
            .unwrap_or_else(|| Err("the handler returned no outcome for the event".into()));
        let label = if outcome.is_ok() { "done" } else { "retry" };
        metrics::counter!(crate::telemetry::OUTBOX_HANDLED_TOTAL, "consumer" => consumer, "outcome" => label)
            .increment(1);
        if let Some(handed) = batch.get(i) {
            handed.span.record("outcome", label);
        }
        match outcome {
            Ok(()) => handled.push(item.seq),
            Err(cause) => {
                let span = tracing::info_span!("event", consumer, kind = %item.event.kind, event_id = %item.event.id);
                give_back(store, clock, options, consumer, &owner, item, &cause)
                    .instrument(span)
                    .await?;
            }
        }
    }
    let acknowledged = store
        .acknowledge(consumer, &handled, &owner, clock.now())
        .await?;
    if acknowledged < handled.len() {
        tracing::warn!(
            consumer,
            lost = handled.len() - acknowledged,
            "lease lost before acknowledgement; those events will be handled again"
        );
    }
    drop(batch);
    Ok(round)
}

/// With traces on, the span of one claimed event from its claim to its
/// acknowledgement, a child of the span that appended the event (its stored trace
/// context): the hand-off joins the trace of the call that caused it. A disabled span
/// with traces off.
fn handoff_span(consumer: &'static str, item: &ClaimedEvent) -> tracing::Span {
    if !carepath_store::trace::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "outbox.handoff",
        consumer,
        kind = %item.event.kind,
        event_id = %item.event.id,
        attempts = item.attempts,
        outcome = tracing::field::Empty,
    );
    carepath_store::trace::follow(&span, item.trace_context.as_deref());
    span
}

/// Returns a failed event: due again after a backoff, or parked as dead after
/// `max_attempts`.
async fn give_back(
    store: &Store,
    clock: &dyn Clock,
    options: &ConsumerOptions,
    consumer: &str,
    owner: &str,
    item: &ClaimedEvent,
    cause: &str,
) -> Result<(), carepath_store::StoreError> {
    let retry_at = if item.attempts >= options.max_attempts {
        tracing::error!(%cause, attempts = item.attempts, "event parked as dead");
        None
    } else {
        let delay = backoff(options, item.attempts);
        tracing::warn!(%cause, attempts = item.attempts, retry_in_ms = delay.as_millis() as u64, "event failed; will retry");
        Some(
            clock.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1)),
        )
    };
    store
        .release(consumer, item.seq, owner, cause, retry_at, clock.now())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let o = ConsumerOptions::default();
        assert_eq!(backoff(&o, 1), Duration::from_secs(1));
        assert_eq!(backoff(&o, 2), Duration::from_secs(2));
        assert_eq!(backoff(&o, 5), Duration::from_secs(16));
        assert_eq!(backoff(&o, 30), Duration::from_secs(300));
    }
}
