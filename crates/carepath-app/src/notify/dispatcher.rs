//! The dispatcher: claims due notices under a lease, hands each to its channel, and
//! records the outcome: sent with the channel's receipt, failed with the time of the
//! next try, or dead.
//!
//! A dispatcher killed mid-batch leaves its notices `sending`; once the lease runs out
//! another (or the restarted one) claims them again. The channels make that retry
//! harmless: the email Message-ID and the fax gateway's idempotency key are the
//! notice key, and the print batch skips a key its manifest already lists.

use std::sync::Arc;

use carepath_core::Clock;
use carepath_notify::{ChannelError, Channels, RenderedNotice, RetryDecision, RetryPolicy};
use carepath_store::{DeliveryOutcome, LeasedNotice, Store, StoreError};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::settings::DispatchOptions;
use crate::pacing::{GATHER, Lanes, Pacing, Round, run_rounds};

/// The longest an outcome waits for the rest of its round before it is recorded.
const RECORD_WITHIN: std::time::Duration = std::time::Duration::from_millis(250);

/// What the dispatcher's round waits for next.
enum Step {
    /// A notice's send ended.
    Outcome((String, DeliveryOutcome)),
    /// The first outcome not yet recorded has waited [`RECORD_WITHIN`].
    RecordDue,
    /// Every send of the round has ended.
    RoundOver,
}

impl From<Option<(String, DeliveryOutcome)>> for Step {
    fn from(next: Option<(String, DeliveryOutcome)>) -> Self {
        next.map_or(Step::RoundOver, Step::Outcome)
    }
}

/// Delivers stored notices.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// Where the notices are stored.
    pub store: Store,
    /// The time leases and retries are measured on.
    pub clock: Arc<dyn Clock>,
    /// The channels notices go out through.
    pub channels: Channels,
    /// When a failed delivery is tried again, and when it is given up.
    pub retry: RetryPolicy,
    /// How notices are claimed.
    pub options: DispatchOptions,
}

impl Dispatcher {
    /// Claims and delivers one batch; returns how many notices it handled, and how
    /// long the one due longest had been waiting.
    pub async fn dispatch_once(&self) -> Result<Round, StoreError> {
        let lease =
            chrono::Duration::from_std(self.options.lease).unwrap_or(chrono::Duration::minutes(2));
        let claimed_at = self.clock.now();
        let (owner, claimed) = self
            .store
            .claim_notices(self.options.batch, lease, claimed_at)
            .await?;
        // A notice is due from its creation, or from the retry it waits for.
        let due = |n: &LeasedNotice| {
            n.next_attempt_at
                .map_or(n.created_at, |at| at.max(n.created_at))
        };
        let mut oldest = claimed.iter().map(due).min();
        // A full claim may have left older notices of the other priority behind: the
        // round is as far behind as the oldest of them.
        if claimed.len() >= usize::try_from(self.options.batch).unwrap_or(usize::MAX)
            && let Some(waiting) = self
                .store
                .oldest_pending_notice()
                .await
                .unwrap_or_else(|e| {
                    // Only the pacing misses it; the claimed notices go out all the same.
                    tracing::debug!(error = %e, "oldest pending notice not read");
                    None
                })
        {
            oldest = Some(oldest.map_or(waiting, |o| o.min(waiting)));
        }
        let round = Round::of(claimed.len(), oldest, claimed_at);
        // Notices are independent (each has its own lease and key): several are sent
        // at once, and their outcomes are recorded together, in one transaction, when
        // the round's sends are over or when the first outcome not yet recorded has
        // waited [`RECORD_WITHIN`], so a slow channel holds back no other notice's
        // record for longer than that.
        let mut sent = futures::stream::iter(claimed)
            .map(|notice| async move {
                let span = tracing::info_span!("notice", id = %notice.id, channel = %notice.channel, key = %notice.idempotency_key);
                self.follow_event(&span, &notice).await;
                self.deliver(notice).instrument(span).await
            })
            .buffer_unordered(self.options.parallelism.max(1));
        // A failure to record is reported only once every send under way has ended:
        // a send cut off midway could not be recorded at all.
        let mut failure = None;
        let mut outcomes: Vec<(String, DeliveryOutcome)> = Vec::new();
        let mut record_by = None;
        loop {
            let step = match record_by {
                Some(at) => tokio::select! {
                    next = sent.next() => Step::from(next),
                    () = tokio::time::sleep_until(at) => Step::RecordDue,
                },
                None => Step::from(sent.next().await),
            };
            if let Step::Outcome(outcome) = step {
                record_by.get_or_insert_with(|| tokio::time::Instant::now() + RECORD_WITHIN);
                outcomes.push(outcome);
                continue;
            }
            record_by = None;
            if !outcomes.is_empty()
                && let Err(e) = self.record(&std::mem::take(&mut outcomes), &owner).await
            {
                failure.get_or_insert(e);
            }
            if let Step::RoundOver = step {
                break;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(round),
        }
    }

    /// Records the outcomes of claimed notices, in one transaction.
    async fn record(
        &self,
        outcomes: &[(String, DeliveryOutcome)],
        owner: &str,
    ) -> Result<(), StoreError> {
        let pairs: Vec<(&str, &DeliveryOutcome)> = outcomes
            .iter()
            .map(|(id, outcome)| (id.as_str(), outcome))
            .collect();
        let recorded = self
            .store
            .finish_notices(&pairs, owner, self.clock.now())
            .await?;
        let lost = recorded.iter().filter(|r| !**r).count();
        if lost > 0 {
            tracing::warn!(
                lost,
                "lease lost before the outcome was recorded; another dispatcher owns the notice"
            );
        }
        Ok(())
    }

    /// With traces on, makes the notice's span a child of the span that appended the
    /// event the notice was made for, so its delivery joins that call's trace.
    async fn follow_event(&self, span: &tracing::Span, notice: &LeasedNotice) {
        if !carepath_store::trace::enabled() {
            return;
        }
        match self.store.event_trace_context(&notice.event_id).await {
            Ok(context) => carepath_store::trace::follow(span, context.as_deref()),
            Err(e) => tracing::debug!(error = %e, "trace context of the notice's event not read"),
        }
    }

    /// Hands the notice to its channel; returns its id and how the attempt ended.
    async fn deliver(&self, notice: LeasedNotice) -> (String, DeliveryOutcome) {
        let outcome = match rendered(&notice) {
            Ok(rendered) => match self.channels.deliver(&rendered).await {
                Ok(receipt) => DeliveryOutcome::Sent {
                    reference: receipt.reference,
                    detail: receipt.detail.unwrap_or_default(),
                },
                Err(e) => self.after_failure(&notice, &e),
            },
            Err(e) => self.after_failure(&notice, &e),
        };
        let channel = crate::telemetry::channel_label(&notice.channel);
        let label = match &outcome {
            DeliveryOutcome::Sent { .. } => "sent",
            DeliveryOutcome::Failed { .. } => "failed",
            DeliveryOutcome::Dead { .. } => "dead",
        };
        metrics::counter!(crate::telemetry::NOTICE_DELIVERIES_TOTAL, "channel" => channel, "outcome" => label)
            .increment(1);
        if let DeliveryOutcome::Sent { .. } = &outcome {
            let waited = (self.clock.now() - notice.created_at)
                .num_milliseconds()
                .max(0);
            metrics::histogram!(crate::telemetry::NOTICE_DELIVERY_SECONDS, "channel" => channel)
                .record(waited as f64 / 1000.0);
        }
        match &outcome {
            DeliveryOutcome::Sent { .. } => {
                // The channel's reference can be the recipient's own inbox id; it is kept
                // in the notice's delivery record, not in the log.
                tracing::info!(attempts = notice.attempts, "notice sent");
            }
            // The channel's error text can name the recipient (an address the mail
            // server refused), so it goes to the notice's attempt record, which staff
            // read through the API, and not to the log.
            DeliveryOutcome::Failed { retry_at, .. } => {
                tracing::warn!(%retry_at, attempts = notice.attempts, "notice delivery failed; will retry (the cause is in its attempt record)");
            }
            DeliveryOutcome::Dead { .. } => {
                tracing::error!(
                    attempts = notice.attempts,
                    "notice is dead; staff must resend it (the cause is in its attempt record)"
                );
            }
        }
        (notice.id, outcome)
    }

    fn after_failure(&self, notice: &LeasedNotice, error: &ChannelError) -> DeliveryOutcome {
        let tries = u32::try_from(notice.tries).unwrap_or(u32::MAX);
        match self.retry.after_failure(tries, self.clock.now(), error) {
            RetryDecision::RetryAt { at } => DeliveryOutcome::Failed {
                error: error.to_string(),
                retry_at: at,
            },
            RetryDecision::Dead { reason } => DeliveryOutcome::Dead { error: reason },
        }
    }
}

/// The stored rendered notice; a row without one cannot be sent.
fn rendered(notice: &LeasedNotice) -> Result<RenderedNotice, ChannelError> {
    let doc = notice
        .rendered
        .as_deref()
        .ok_or_else(|| ChannelError::permanent("the notice has no rendered content"))?;
    serde_json::from_str(doc)
        .map_err(|e| ChannelError::permanent(format!("stored notice unreadable: {e}")))
}

/// Delivers due notices until `stop` is cancelled; the notices in hand are finished
/// first. While claims come back full and the work may run without rest, up to
/// [`DispatchOptions::lanes`] rounds run at once ([`run_rounds`]).
pub async fn run_dispatcher(dispatcher: Dispatcher, pacing: Pacing, stop: CancellationToken) {
    let lanes = Lanes {
        most: dispatcher.options.lanes,
        full: usize::try_from(dispatcher.options.batch).unwrap_or(usize::MAX),
        idle_poll: dispatcher.options.idle_poll,
        gather: GATHER,
    };
    // Notices stored on any process wake the dispatcher (PostgreSQL with a listener);
    // the poll stays for retries due later and where nothing wakes it.
    let stored = dispatcher.store.wakeups().notices();
    let dispatcher = &dispatcher;
    run_rounds(lanes, &pacing, stored, &stop, || async move {
        dispatcher.dispatch_once().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "notice dispatch failed; retrying");
            Round::default()
        })
    })
    .await;
    tracing::info!("notice dispatcher stopped");
}
