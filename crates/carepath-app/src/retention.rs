//! The retention sweep: a periodic job (one process of those sharing the database at
//! a time, [`crate::jobs`]) that keeps the outbox, the notices' attempts and the audit
//! log from growing without end. Each run creates the coming months' partitions,
//! removes outbox deliveries and events no longer owed to anyone and the attempts of
//! finished notices past their ages, and moves audit entries past theirs to the
//! archive ([`crate::audit::archive`]), when one is configured. Nothing still owed
//! (an undelivered event, a notice pending or in flight) is removed.

use std::{sync::Arc, time::Duration};

use carepath_core::Clock;
use carepath_store::{OutboxRemoved, RETENTION_BATCH, Store};
use chrono::{DateTime, Months, Utc};
use tokio_util::sync::CancellationToken;

use crate::{
    AppResult,
    audit::archive::{AuditArchive, Exported, MAX_SEGMENT_ENTRIES},
    jobs::Jobs,
};

/// The lease name of the retention sweep.
pub const RETENTION_JOB: &str = "retention";
/// How often the sweep runs by default.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Audit entries past `after` move to `archive`.
#[derive(Debug, Clone)]
pub struct AuditArchiving {
    pub after: chrono::Duration,
    pub archive: AuditArchive,
    /// Entries per segment, at most [`MAX_SEGMENT_ENTRIES`].
    pub segment_entries: u32,
}

/// Removal holds the database about half the time by default.
pub const DEFAULT_SHARE: f64 = 0.5;

/// What the sweep removes, and how often it runs.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Acknowledged (or dead) outbox deliveries older than this go, and then their
    /// events.
    pub outbox_age: chrono::Duration,
    /// Attempts of sent or dead notices finished longer ago than this go.
    pub notice_attempts_age: chrono::Duration,
    /// None: the audit log stays whole in the database.
    pub audit: Option<AuditArchiving>,
    pub interval: Duration,
    /// Rows per statement, at most [`RETENTION_BATCH`].
    pub batch: u32,
    /// The share of the time removal may hold the database while it catches up
    /// ([`carepath_store::rest_after`]): each statement is followed by a rest. The
    /// first sweep over years of history removes millions of rows; on SQLite each
    /// statement holds the one writer that every call's write waits for.
    pub share: f64,
}

impl RetentionSettings {
    /// The defaults: outbox deliveries kept 30 days, notice attempts 90, no archive.
    pub fn new(outbox_days: u32, notice_attempts_days: u32) -> RetentionSettings {
        RetentionSettings {
            outbox_age: chrono::Duration::days(i64::from(outbox_days)),
            notice_attempts_age: chrono::Duration::days(i64::from(notice_attempts_days)),
            audit: None,
            interval: DEFAULT_RETENTION_INTERVAL,
            batch: RETENTION_BATCH,
            share: DEFAULT_SHARE,
        }
    }

    /// Audit entries older than `days` move to `archive`.
    pub fn with_archive(mut self, days: u32, archive: AuditArchive) -> RetentionSettings {
        self.audit = Some(AuditArchiving {
            after: chrono::Duration::days(i64::from(days)),
            archive,
            segment_entries: MAX_SEGMENT_ENTRIES,
        });
        self
    }
}

/// What one run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub outbox: OutboxRemoved,
    pub notice_attempts: u64,
    pub audit: Exported,
}

/// The partitions a store needs from `now`: this month's and the next.
pub async fn ensure_partitions(store: &Store, now: DateTime<Utc>) -> AppResult<()> {
    let next = now.checked_add_months(Months::new(1)).unwrap_or(now);
    Ok(store.ensure_partitions(now, next).await?)
}

/// One run of the sweep at `now`.
pub async fn sweep(
    store: &Store,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
) -> AppResult<Swept> {
    ensure_partitions(store, now).await?;
    let outbox = store
        .remove_delivered_events(now - settings.outbox_age, settings.batch, settings.share)
        .await?;
    let notice_attempts = store
        .remove_finished_notice_attempts(
            now - settings.notice_attempts_age,
            settings.batch,
            settings.share,
        )
        .await?;
    let audit = match &settings.audit {
        Some(a) => {
            a.archive
                .export(store, now - a.after, a.segment_entries, now)
                .await?
        }
        None => Exported::default(),
    };
    Ok(Swept {
        outbox,
        notice_attempts,
        audit,
    })
}

/// Runs the sweep now and every `settings.interval` until `stop`, on one process of
/// those sharing the database at a time (`jobs`); a failed run is logged and the next
/// one tries again.
pub async fn run_retention(
    store: Store,
    clock: Arc<dyn Clock>,
    jobs: Jobs,
    settings: RetentionSettings,
    stop: CancellationToken,
) {
    let mut turns = jobs.periodic(RETENTION_JOB, settings.interval);
    while turns.next(&stop).await {
        let started = std::time::Instant::now();
        match sweep(&store, &settings, clock.now()).await {
            // One line a run (hourly by default): what went, and how long it took.
            Ok(swept) => tracing::info!(
                deliveries = swept.outbox.deliveries,
                events = swept.outbox.events,
                event_partitions = swept.outbox.partitions,
                notice_attempts = swept.notice_attempts,
                audit_segments = swept.audit.segments,
                audit_entries = swept.audit.entries,
                seconds = started.elapsed().as_secs_f64(),
                "retention sweep done"
            ),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
    }
}
