//! The event relay: an outbox consumer that publishes every domain event to NATS
//! JetStream and acknowledges it in the outbox only once JetStream acknowledged the
//! publish.
//!
//! - **Once per event in the stream.** Each message carries `Nats-Msg-Id` = the event
//!   id, so JetStream drops a copy republished within the stream's duplicate window
//!   (an event published just before a crash, before its outbox acknowledgement).
//! - **In order per aggregate.** A batch is published in outbox order, in waves in
//!   which each aggregate appears once; the next wave starts after the previous one's
//!   acknowledgements. An event whose aggregate has an earlier event still owed (held
//!   by another worker, or by a killed process until its lease runs out, or failed in
//!   this batch) is handed back to wait (`Store::held_back`).
//! - **Bounded.** One client per process; at most one batch in flight; each publish
//!   waits at most the publish timeout for its acknowledgement; connecting and
//!   creating the stream are retried with exponential backoff (`backon`), and while
//!   NATS is away the outbox keeps the events (they are retried every
//!   [`MAX_BACKOFF`] at most and never parked as dead for it).

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use backon::{ExponentialBuilder, Retryable};
use carepath_core::{Clock, DomainEvent};
use carepath_store::Store;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{cloud_event, subject};
use crate::{
    outbox::{ConsumerOptions, EventHandler, Handed, run_consumer},
    pacing::Pacing,
};

/// The relay's name as an outbox consumer.
pub const CONSUMER: &str = "nats-relay";
/// It takes every event.
pub const PREFIXES: &[&str] = &[""];
/// Longest wait between two tries of an event while NATS is away.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Events claimed at once.
pub const BATCH: u32 = 64;

/// Where and how events are published.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The stream, created if missing.
    pub stream: String,
    /// Subjects are `<prefix>.<kind>`; the stream takes `<prefix>.>`.
    pub subject_prefix: String,
    /// How long a publish waits for JetStream's acknowledgement (and a connection
    /// attempt for the server).
    pub publish_timeout: Duration,
    /// A stream created here drops a message whose id it saw within this window.
    pub duplicate_window: Duration,
    /// A stream created here keeps messages this long...
    pub max_age: Duration,
    /// ...and at most this many bytes (the oldest go first).
    pub max_bytes: i64,
}

/// The outbox options of the relay: `base` (the process's lease), larger batches, and
/// retries that never give up, since an event NATS could not take is still owed.
pub fn consumer_options(base: ConsumerOptions) -> ConsumerOptions {
    ConsumerOptions {
        batch: BATCH,
        max_attempts: i32::MAX,
        base_backoff: Duration::from_millis(500),
        max_backoff: MAX_BACKOFF,
        ..base
    }
}

/// A connected relay.
pub struct NatsRelay {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    store: Store,
    clock: Arc<dyn Clock>,
    prefix: String,
}

impl std::fmt::Debug for NatsRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRelay")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsRelay {
    /// Connects once and makes sure the stream exists.
    pub async fn connect(
        settings: &RelaySettings,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<NatsRelay, String> {
        let client = async_nats::ConnectOptions::new()
            .name("carepath-event-relay")
            .connection_timeout(settings.publish_timeout)
            .request_timeout(Some(settings.publish_timeout))
            .connect(settings.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(settings.publish_timeout);
        jetstream
            .get_or_create_stream(stream::Config {
                name: settings.stream.clone(),
                subjects: vec![format!("{}.>", settings.subject_prefix)],
                duplicate_window: settings.duplicate_window,
                max_age: settings.max_age,
                max_bytes: settings.max_bytes,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot create stream {}: {e}", settings.stream))?;
        Ok(NatsRelay {
            client,
            jetstream,
            store,
            clock,
            prefix: settings.subject_prefix.clone(),
        })
    }

    /// Sends one event; the future resolves with JetStream's acknowledgement.
    async fn send(
        &self,
        event: &DomainEvent,
        subject: &str,
    ) -> Result<jetstream::context::PublishAckFuture, String> {
        let body = serde_json::to_vec(&cloud_event(event)).map_err(|e| e.to_string())?;
        self.jetstream
            .send_publish(
                subject.to_owned(),
                PublishMessage::build()
                    .payload(body.into())
                    .message_id(&event.id),
            )
            .await
            .map_err(|e| format!("publish failed: {e}"))
    }

    /// How far behind the relay is on `subject`: the age of `event`, the last of the
    /// subject it published or failed to publish (so the figure keeps growing while
    /// NATS is away).
    fn record_lag(&self, event: &DomainEvent, subject: &str) {
        let lag = (self.clock.now() - event.occurred_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        metrics::gauge!("carepath_events_relay_lag_seconds", "subject" => subject.to_owned())
            .set(lag);
    }

    /// Records a published event: how far behind the relay is on its subject, and
    /// the count of events published.
    fn record(&self, event: &DomainEvent, subject: &str, duplicate: bool) {
        self.record_lag(event, subject);
        if duplicate {
            metrics::counter!("carepath_events_republished_total", "subject" => subject.to_owned())
                .increment(1);
        } else {
            metrics::counter!("carepath_events_published_total", "subject" => subject.to_owned())
                .increment(1);
        }
    }

    /// Publishes `events` ([`NatsRelay::publish_waves`]); an event left unpublished
    /// still counts in its subject's lag.
    async fn publish_batch(&self, events: &[&DomainEvent]) -> Vec<Result<(), String>> {
        let outcomes = self.publish_waves(events).await;
        for (event, outcome) in events.iter().zip(&outcomes) {
            if outcome.is_err() {
                self.record_lag(event, &subject(&self.prefix, &event.kind));
            }
        }
        outcomes
    }

    async fn publish_waves(&self, events: &[&DomainEvent]) -> Vec<Result<(), String>> {
        let count = events.len();
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return vec![Err("not connected to NATS".to_owned()); count];
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let held: HashSet<String> = match self.store.held_back(CONSUMER, &ids).await {
            Ok(held) => held.into_iter().collect(),
            Err(e) => return vec![Err(format!("cannot look for earlier events: {e}")); count],
        };
        let mut outcomes: Vec<Option<Result<(), String>>> = vec![None; count];
        // Aggregates with an event not published: their later events wait.
        let mut blocked: HashSet<(&str, &str)> = HashSet::new();
        let mut next = 0;
        while next < count {
            // One wave: each aggregate at most once, sent without waiting.
            let mut in_wave: HashSet<(&str, &str)> = HashSet::new();
            let mut sent = Vec::new();
            while next < count {
                let event = events[next];
                let key = (event.aggregate_kind.as_str(), event.aggregate_id.as_str());
                if in_wave.contains(&key) {
                    break;
                }
                if blocked.contains(&key) {
                    outcomes[next] = Some(Err(
                        "an earlier event of its aggregate is not published yet".to_owned(),
                    ));
                } else if held.contains(&event.id) {
                    blocked.insert(key);
                    outcomes[next] = Some(Err(
                        "waiting for an earlier event of its aggregate".to_owned()
                    ));
                } else {
                    in_wave.insert(key);
                    let subject = subject(&self.prefix, &event.kind);
                    match self.send(event, &subject).await {
                        Ok(ack) => sent.push((next, subject, ack)),
                        Err(e) => {
                            blocked.insert(key);
                            outcomes[next] = Some(Err(e));
                        }
                    }
                }
                next += 1;
            }
            for (index, subject, ack) in sent {
                let event = events[index];
                outcomes[index] = Some(match ack.await {
                    Ok(ack) => {
                        self.record(event, &subject, ack.duplicate);
                        Ok(())
                    }
                    Err(e) => {
                        blocked
                            .insert((event.aggregate_kind.as_str(), event.aggregate_id.as_str()));
                        Err(format!("no acknowledgement from JetStream: {e}"))
                    }
                });
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err("not published".to_owned())))
            .collect()
    }
}

impl EventHandler for NatsRelay {
    fn consumer(&self) -> &'static str {
        CONSUMER
    }

    fn prefixes(&self) -> &'static [&'static str] {
        PREFIXES
    }

    fn handle<'a>(&'a self, event: &'a DomainEvent) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.publish_batch(&[event])
                .await
                .pop()
                .unwrap_or_else(|| Err("not published".to_owned()))
        })
    }

    fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handed<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), String>>> {
        Box::pin(async move {
            let events: Vec<&DomainEvent> = batch.iter().map(|handed| handed.event).collect();
            self.publish_batch(&events).await
        })
    }
}

/// Connects (retrying with exponential backoff up to [`MAX_BACKOFF`] until it works or
/// `stop` is cancelled), then relays events until `stop` is cancelled. Events
/// committed meanwhile wait in the outbox.
pub async fn run_relay(
    store: Store,
    clock: Arc<dyn Clock>,
    settings: RelaySettings,
    options: ConsumerOptions,
    pacing: Pacing,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let connect = || NatsRelay::connect(&settings, store.clone(), clock.clone());
    let connected = connect
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(MAX_BACKOFF)
                .with_jitter()
                .without_max_times(),
        )
        .notify(|error: &String, retry_in: Duration| {
            tracing::warn!(%error, retry_in_ms = retry_in.as_millis() as u64, "event relay cannot reach NATS; events wait in the outbox");
        });
    let relay = tokio::select! {
        () = stop.cancelled() => return,
        relay = connected => match relay {
            Ok(relay) => relay,
            Err(error) => {
                tracing::error!(%error, "event relay gave up connecting");
                return;
            }
        },
    };
    tracing::info!(
        stream = %settings.stream,
        subjects = %format!("{}.>", settings.subject_prefix),
        connect_ms = started.elapsed().as_millis() as u64,
        "event relay connected"
    );
    run_consumer(
        store,
        clock,
        Arc::new(relay),
        consumer_options(options),
        pacing,
        stop,
    )
    .await;
}
