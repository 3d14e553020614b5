//! Operations metrics: their names and descriptions, what the doors and the
//! background work record as it happens, and the one periodic task that reads the
//! figures needing a database query (outbox backlog, notices not sent, cases open and
//! past due, gold-card exemptions, the pools).
//!
//! Everything goes through the `metrics` facade: with no recorder installed (no
//! `--metrics-listen`) a record is a no-op. Every label value comes from a fixed set
//! (a door, a service and method of the compiled contracts, a status code, a
//! consumer, a state, a channel): never a member, case or request id, so the series
//! stay few whatever the traffic.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use carepath_core::Clock;
use carepath_store::Store;
use tokio_util::sync::CancellationToken;

/// Calls answered, by door, service, method and status code (`grpc`: the gRPC code
/// name; `fhir`: the HTTP status).
pub const CALLS_TOTAL: &str = "carepath_calls_total";
/// Time from a call's arrival to its answer's end, in seconds, by door, service and
/// method.
pub const CALL_SECONDS: &str = "carepath_call_duration_seconds";
/// Calls in progress now, by door.
pub const CALLS_IN_PROGRESS: &str = "carepath_calls_in_progress";
/// Calls refused by a limit before reaching a handler, by door and limit.
pub const CALLS_REFUSED_TOTAL: &str = "carepath_calls_refused_total";
/// Undelivered outbox events, by consumer.
pub const OUTBOX_BACKLOG: &str = "carepath_outbox_backlog";
/// Age of the oldest undelivered outbox event, in seconds on the application clock
/// (0 when none), by consumer.
pub const OUTBOX_OLDEST_AGE: &str = "carepath_outbox_oldest_age_seconds";
/// Outbox events handled, by consumer and outcome (`done`, `retry`).
pub const OUTBOX_HANDLED_TOTAL: &str = "carepath_outbox_events_handled_total";
/// Notices not sent (pending, sending, failed, dead), by state and channel.
pub const NOTICES: &str = "carepath_notices";
/// Delivery attempts, by channel and outcome (`sent`, `failed`, `dead`).
pub const NOTICE_DELIVERIES_TOTAL: &str = "carepath_notice_deliveries_total";
/// Time from a notice's creation to its delivery, in seconds on the application
/// clock, by channel.
pub const NOTICE_DELIVERY_SECONDS: &str = "carepath_notice_delivery_seconds";
/// Precertification cases open (something owed on them), by status.
pub const CASES_OPEN: &str = "carepath_precert_cases_open";
/// Open precertification cases past their due time on the application clock.
pub const CASES_PAST_DUE: &str = "carepath_precert_cases_past_due";
/// Gold-card exemptions in force.
pub const GOLD_CARD_EXEMPTIONS: &str = "carepath_gold_card_exemptions";
/// Connections of the database pool, by state (`in_use`, `idle`).
pub const DB_CONNECTIONS: &str = "carepath_db_connections";
/// The database pool's bound.
pub const DB_CONNECTIONS_MAX: &str = "carepath_db_connections_max";
/// Transactions waiting for SQLite's writer connection.
pub const DB_WRITER_QUEUED: &str = "carepath_db_writer_queued";
/// Whether the last refresh of the gauges above read the database (1) or failed (0).
pub const GAUGES_UP: &str = "carepath_gauges_up";

/// How often the gauges that need a query are read by default.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(15);

/// Describes every metric to the installed recorder (help text and units).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CALLS_TOTAL,
        "Calls answered, by door, service, method and status code"
    );
    describe_histogram!(
        CALL_SECONDS,
        Unit::Seconds,
        "Time from a call's arrival to the end of its answer"
    );
    describe_gauge!(CALLS_IN_PROGRESS, "Calls in progress, by door");
    describe_counter!(
        CALLS_REFUSED_TOTAL,
        "Calls refused by a limit before reaching a handler, by door and limit"
    );
    describe_gauge!(OUTBOX_BACKLOG, "Undelivered outbox events, by consumer");
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest undelivered outbox event, by consumer"
    );
    describe_counter!(
        OUTBOX_HANDLED_TOTAL,
        "Outbox events handled, by consumer and outcome"
    );
    describe_gauge!(NOTICES, "Notices not sent, by state and channel");
    describe_counter!(
        NOTICE_DELIVERIES_TOTAL,
        "Notice delivery attempts, by channel and outcome"
    );
    describe_histogram!(
        NOTICE_DELIVERY_SECONDS,
        Unit::Seconds,
        "Time from a notice's creation to its delivery, by channel"
    );
    describe_gauge!(CASES_OPEN, "Precertification cases open, by status");
    describe_gauge!(
        CASES_PAST_DUE,
        "Open precertification cases past their due time"
    );
    describe_gauge!(GOLD_CARD_EXEMPTIONS, "Gold-card exemptions in force");
    describe_gauge!(DB_CONNECTIONS, "Database pool connections, by state");
    describe_gauge!(DB_CONNECTIONS_MAX, "Database pool bound");
    describe_gauge!(
        DB_WRITER_QUEUED,
        "Transactions waiting for the SQLite writer connection"
    );
    describe_histogram!(
        carepath_store::BEGIN_WAIT_SECONDS,
        Unit::Seconds,
        "Time a transaction waited for a database connection"
    );
    describe_counter!(
        carepath_store::AUDIT_ENTRIES_TOTAL,
        "Audit entries written, by outcome"
    );
    describe_gauge!(
        GAUGES_UP,
        "Whether the last refresh of the database gauges succeeded"
    );
}

/// A call in progress at a door: counted in [`CALLS_IN_PROGRESS`] until
/// [`CallInProgress::finish`] records its outcome (or it is dropped, when the
/// answer was abandoned: then only the gauge moves back).
#[derive(Debug)]
pub struct CallInProgress {
    door: &'static str,
    started: std::time::Instant,
}

impl CallInProgress {
    /// A call that arrived at `door` (`grpc`, `fhir`).
    pub fn start(door: &'static str) -> Self {
        metrics::gauge!(CALLS_IN_PROGRESS, "door" => door).increment(1.0);
        CallInProgress {
            door,
            started: std::time::Instant::now(),
        }
    }

    /// Records the call's answer: `code` is the status (a fixed name or number).
    pub fn finish(self, service: &'static str, method: &'static str, code: &'static str) {
        let door = self.door;
        metrics::counter!(CALLS_TOTAL, "door" => door, "service" => service, "method" => method, "code" => code)
            .increment(1);
        metrics::histogram!(CALL_SECONDS, "door" => door, "service" => service, "method" => method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for CallInProgress {
    fn drop(&mut self) {
        metrics::gauge!(CALLS_IN_PROGRESS, "door" => self.door).decrement(1.0);
    }
}

/// Counts a call `door` refused for `limit` (`concurrency`, `per_caller_calls`,
/// `rate`, `connections`, `streams`, `token_rate`, ...).
pub fn refused(door: &'static str, limit: &'static str) {
    metrics::counter!(CALLS_REFUSED_TOTAL, "door" => door, "limit" => limit).increment(1);
}

/// A notice channel's name as a label (the stored names are a fixed set; anything
/// else is `other`).
pub fn channel_label(channel: &str) -> &'static str {
    match channel {
        "email" => "email",
        "fax" => "fax",
        "mail" => "mail",
        "portal" => "portal",
        "none" => "none",
        _ => "other",
    }
}

/// Makes `span` a child of the remote span a W3C `traceparent` names (a caller's
/// trace context, or one stored with an outbox event); no-op with traces off.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    carepath_store::trace::follow(span, traceparent);
}

/// Label sets reported at the last refresh, so a set that is gone is set to 0
/// rather than left at its old value.
#[derive(Debug, Default)]
struct Reported {
    notices: BTreeSet<(String, String)>,
    cases: BTreeSet<String>,
    consumers: BTreeSet<String>,
}

/// Reads the gauges that need the database every `interval` until `stop`, taking
/// "now" from `clock` (so a case goes past due when the application's clock says so).
pub async fn run_gauges(
    store: Store,
    clock: Arc<dyn Clock>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut reported = Reported::default();
    loop {
        let up = match refresh(&store, clock.as_ref(), &mut reported).await {
            Ok(()) => 1.0,
            Err(e) => {
                tracing::warn!(error = %e, "metrics gauges not refreshed");
                0.0
            }
        };
        metrics::gauge!(GAUGES_UP).set(up);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One refresh of every database gauge.
async fn refresh(
    store: &Store,
    clock: &dyn Clock,
    reported: &mut Reported,
) -> Result<(), carepath_store::StoreError> {
    let now = clock.now();
    let pool = store.pool_state();
    metrics::gauge!(DB_CONNECTIONS, "state" => "in_use").set(f64::from(pool.in_use));
    metrics::gauge!(DB_CONNECTIONS, "state" => "idle")
        .set(f64::from(pool.size.saturating_sub(pool.in_use)));
    metrics::gauge!(DB_CONNECTIONS_MAX).set(f64::from(pool.max));
    metrics::gauge!(DB_WRITER_QUEUED).set(f64::from(pool.writer_queued));

    let backlog = store.outbox_backlog().await?;
    let mut consumers = BTreeSet::new();
    for b in backlog {
        let age = b.oldest.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::gauge!(OUTBOX_BACKLOG, "consumer" => b.consumer.clone()).set(b.pending as f64);
        metrics::gauge!(OUTBOX_OLDEST_AGE, "consumer" => b.consumer.clone()).set(age);
        consumers.insert(b.consumer);
    }
    for gone in reported.consumers.difference(&consumers) {
        metrics::gauge!(OUTBOX_BACKLOG, "consumer" => gone.clone()).set(0.0);
        metrics::gauge!(OUTBOX_OLDEST_AGE, "consumer" => gone.clone()).set(0.0);
    }
    reported.consumers = consumers;

    let mut notices = BTreeSet::new();
    for n in store.unsent_notices().await? {
        let key = (n.label, channel_label(&n.second).to_owned());
        metrics::gauge!(NOTICES, "state" => key.0.clone(), "channel" => key.1.clone())
            .set(n.count as f64);
        notices.insert(key);
    }
    for (state, channel) in reported.notices.difference(&notices) {
        metrics::gauge!(NOTICES, "state" => state.clone(), "channel" => channel.clone()).set(0.0);
    }
    reported.notices = notices;

    let (open, past_due) = store.open_cases(now).await?;
    let mut cases = BTreeSet::new();
    for c in open {
        metrics::gauge!(CASES_OPEN, "status" => c.label.clone()).set(c.count as f64);
        cases.insert(c.label);
    }
    for gone in reported.cases.difference(&cases) {
        metrics::gauge!(CASES_OPEN, "status" => gone.clone()).set(0.0);
    }
    reported.cases = cases;
    metrics::gauge!(CASES_PAST_DUE).set(past_due as f64);

    metrics::gauge!(GOLD_CARD_EXEMPTIONS).set(store.gold_card_exemptions().await? as f64);
    Ok(())
}
