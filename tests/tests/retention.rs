//! Retention and archiving, on SQLite and PostgreSQL: old audit entries move to an
//! archive of hash-chained segments and verify as one history with the live log;
//! finished outbox deliveries and notice attempts go, what is still owed stays; on
//! PostgreSQL the retention job of two processes sharing a database runs each period
//! once.

use std::{sync::Arc, time::Duration as StdDuration};

use carepath_app::{
    audit::archive::{ArchiveVerdict, AuditArchive, segment_name},
    jobs::Jobs,
    retention::{RETENTION_JOB, RetentionSettings, run_retention},
};
use carepath_core::{DomainEvent, FixedClock};
use carepath_store::{
    AuditEntry, AuditOutcome, AuditVerification, DeliveryOutcome, DeliveryState, NewNotice, Store,
};
use carepath_tests::{TestDb, contract_tests};
use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("valid time")
}

fn now() -> DateTime<Utc> {
    at("2026-06-15T12:00:00Z")
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        subject: format!("RN-{i:03}"),
        role: "nurse".into(),
        rpc: "/carepath.directory.v1.DirectoryService/GetMember".into(),
        record_kind: "member".into(),
        record_id: "M100001".into(),
        member_id: Some("M100001".into()),
        outcome: if i.is_multiple_of(5) {
            AuditOutcome::Denied
        } else {
            AuditOutcome::Allowed
        },
        repeats: 0,
    }
}

/// 20 entries in 2024 (old) and 5 in June 2026 (recent), over several chains.
async fn write_history(store: &Store) {
    store
        .ensure_partitions(at("2024-01-01T00:00:00Z"), at("2024-03-01T00:00:00Z"))
        .await
        .unwrap();
    for i in 0..20 {
        let when = at("2024-01-10T08:00:00Z") + Duration::days(i as i64 * 3);
        store.audit(&entry(i), when).await.unwrap();
    }
    for i in 20..25 {
        store
            .audit(&entry(i), now() - Duration::minutes(30 - i as i64))
            .await
            .unwrap();
    }
}

async fn postgres_table_exists(store: &Store, name: &str) -> bool {
    match store {
        Store::Postgres { pool, .. } => sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(name)
            .fetch_one(pool)
            .await
            .unwrap(),
        Store::Sqlite { .. } => false,
    }
}

async fn old_audit_entries_move_to_the_archive_and_verify_as_one_history(db: &TestDb) {
    write_history(&db.store).await;
    if matches!(db.store, Store::Postgres { .. }) {
        assert!(postgres_table_exists(&db.store, "audit_log_p202401").await);
    }
    let folder = tempfile::tempdir().unwrap();
    let url = format!("file://{}", folder.path().display());
    let archive = AuditArchive::open(&url).unwrap();
    let before = at("2025-01-01T00:00:00Z");

    let exported = archive.export(&db.store, before, 7, now()).await.unwrap();
    assert_eq!((exported.segments, exported.entries), (3, 20));
    // Nothing left to move: a second export writes nothing.
    let again = archive.export(&db.store, before, 7, now()).await.unwrap();
    assert_eq!(again.segments, 0);
    let live = db
        .store
        .search_audit(&Default::default(), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        live.len(),
        5,
        "only the recent entries stay in the database"
    );
    assert!(live.iter().all(|r| r.at >= before));
    if matches!(db.store, Store::Postgres { .. }) {
        assert!(
            !postgres_table_exists(&db.store, "audit_log_p202401").await,
            "an emptied old month is dropped"
        );
    }

    assert_eq!(
        archive.verify(&db.store, &[]).await.unwrap(),
        ArchiveVerdict::Intact {
            segments: 3,
            archived: 20,
            live: 5
        }
    );
    // Without the archive the live log no longer starts its chains: it is not
    // accepted as whole.
    assert!(matches!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Broken { .. }
    ));

    // One byte of a segment changed.
    let second = folder.path().join(segment_name(2));
    let original = std::fs::read(&second).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    let altered = text.replacen("RN-00", "RN-90", 1);
    assert_ne!(altered, text);
    std::fs::write(&second, altered).unwrap();
    match archive.verify(&db.store, &[]).await.unwrap() {
        ArchiveVerdict::Broken { place, .. } => {
            assert!(place.contains(&segment_name(2)), "{place}")
        }
        intact => panic!("an altered segment verified: {intact:?}"),
    }
    std::fs::write(&second, &original).unwrap();
    assert!(matches!(
        archive.verify(&db.store, &[]).await.unwrap(),
        ArchiveVerdict::Intact { .. }
    ));

    // A segment removed, in the middle or the newest.
    std::fs::remove_file(&second).unwrap();
    match archive.verify(&db.store, &[]).await.unwrap() {
        ArchiveVerdict::Broken { place, .. } => {
            assert!(place.contains(&segment_name(2)), "{place}")
        }
        intact => panic!("a missing segment verified: {intact:?}"),
    }
    std::fs::write(&second, &original).unwrap();
    let third = folder.path().join(segment_name(3));
    let newest = std::fs::read(&third).unwrap();
    std::fs::remove_file(&third).unwrap();
    match archive.verify(&db.store, &[]).await.unwrap() {
        ArchiveVerdict::Broken { place, .. } => {
            assert!(place.contains(&segment_name(3)), "{place}")
        }
        intact => panic!("a missing newest segment verified: {intact:?}"),
    }
    std::fs::write(&third, &newest).unwrap();

    // The log goes on growing from where the archive left it.
    db.store.audit(&entry(99), now()).await.unwrap();
    assert_eq!(
        archive.verify(&db.store, &[]).await.unwrap(),
        ArchiveVerdict::Intact {
            segments: 3,
            archived: 20,
            live: 6
        }
    );
}

fn test_event(id: &str, occurred_at: DateTime<Utc>) -> DomainEvent {
    DomainEvent {
        id: id.to_owned(),
        kind: "retention.test.happened".into(),
        aggregate_kind: "retention_test".into(),
        aggregate_id: "A1".into(),
        member_id: None,
        occurred_at,
        payload: serde_json::json!({}),
    }
}

const CONSUMER: &str = "retention-test";

/// Three events for [`CONSUMER`]: `old-done` acknowledged long ago, `old-pending`
/// never delivered, `recent-done` acknowledged now. Returns their positions.
async fn write_outbox(store: &Store) -> Vec<i64> {
    store
        .subscribe(CONSUMER, &["retention.test."])
        .await
        .unwrap();
    let long_ago = at("2024-02-01T00:00:00Z");
    store.ensure_partitions(long_ago, long_ago).await.unwrap();
    let mut seqs = Vec::new();
    for (id, when) in [
        ("old-done", long_ago),
        ("old-pending", long_ago),
        ("recent-done", now()),
    ] {
        let mut tx = store.begin().await.unwrap();
        seqs.push(tx.append_event(&test_event(id, when)).await.unwrap());
        tx.commit().await.unwrap();
    }
    store.settle().await.unwrap();
    let (owner, claimed) = store
        .claim(CONSUMER, 10, Duration::minutes(5), long_ago)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        2,
        "the recent event is not due yet at that time"
    );
    store
        .acknowledge(CONSUMER, &[seqs[0]], &owner, long_ago)
        .await
        .unwrap();
    let (owner, claimed) = store
        .claim(CONSUMER, 10, Duration::minutes(5), now())
        .await
        .unwrap();
    let recent: Vec<i64> = claimed
        .iter()
        .map(|c| c.seq)
        .filter(|s| *s == seqs[2])
        .collect();
    store
        .acknowledge(CONSUMER, &recent, &owner, now())
        .await
        .unwrap();
    seqs
}

fn notice(key: &str) -> NewNotice {
    NewNotice {
        id: format!("notice-{key}"),
        idempotency_key: key.to_owned(),
        event_id: format!("event-{key}"),
        event_kind: "test.notice".into(),
        rule_id: "rule".into(),
        rules_version: "1".into(),
        recipient_id: "M100001".into(),
        recipient_role: "member".into(),
        recipient_name: "A. Member".into(),
        member_id: Some("M100001".into()),
        channel: "portal".into(),
        destination: "portal".into(),
        template_id: "template".into(),
        template_version: 1,
        language: "en".into(),
        subject: "subject".into(),
        priority: 1,
        planned: None,
        rendered: Some(serde_json::json!({})),
        state: "pending".into(),
        last_error: String::new(),
    }
}

/// Notices `sent` (attempt finished long ago), `retrying` (failed long ago, to be
/// tried again) and `sending` (claimed, in flight).
async fn write_notices(store: &Store) {
    let long_ago = at("2024-02-01T00:00:00Z");
    let mut tx = store.begin().await.unwrap();
    for key in ["sent", "retrying", "sending"] {
        assert!(tx.insert_notice(&notice(key), long_ago).await.unwrap());
    }
    tx.commit().await.unwrap();
    let (owner, claimed) = store
        .claim_notices(3, Duration::minutes(5), long_ago)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let sent = DeliveryOutcome::Sent {
        reference: "r".into(),
        detail: "ok".into(),
    };
    let failed = DeliveryOutcome::Failed {
        error: "busy".into(),
        retry_at: now() + Duration::days(1),
    };
    let finished = store
        .finish_notices(
            &[("notice-sent", &sent), ("notice-retrying", &failed)],
            &owner,
            long_ago,
        )
        .await
        .unwrap();
    assert_eq!(finished, [true, true]);
}

async fn retention_removes_what_is_finished_and_keeps_what_is_owed(db: &TestDb) {
    let seqs = write_outbox(&db.store).await;
    write_notices(&db.store).await;
    let settings = RetentionSettings::new(30, 90);
    let swept = carepath_app::retention::sweep(&db.store, &settings, now())
        .await
        .unwrap();
    assert_eq!(swept.outbox.deliveries, 1);
    assert_eq!(swept.outbox.events, 1);
    assert_eq!(swept.notice_attempts, 1);

    assert_eq!(
        db.store.delivery_state(CONSUMER, seqs[0]).await.unwrap(),
        None
    );
    assert_eq!(
        db.store.delivery_state(CONSUMER, seqs[1]).await.unwrap(),
        Some(DeliveryState::Pending)
    );
    assert_eq!(
        db.store.delivery_state(CONSUMER, seqs[2]).await.unwrap(),
        Some(DeliveryState::Done)
    );
    let left: Vec<String> = db
        .store
        .events_for("retention_test", "A1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ["old-pending", "recent-done"]);

    assert!(
        db.store
            .notice_attempts("notice-sent")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.store
            .notice_attempts("notice-retrying")
            .await
            .unwrap()
            .len(),
        1,
        "a notice still to be retried keeps its attempts"
    );
    assert_eq!(
        db.store
            .notice_attempts("notice-sending")
            .await
            .unwrap()
            .len(),
        1,
        "a notice in flight keeps its attempts"
    );

    // A second run finds nothing more.
    let again = carepath_app::retention::sweep(&db.store, &settings, now())
        .await
        .unwrap();
    assert_eq!(again, Default::default());

    // Once the last old event is delivered, its month goes: on PostgreSQL as a whole
    // partition.
    let postgres = matches!(db.store, Store::Postgres { .. });
    assert_eq!(
        postgres_table_exists(&db.store, "outbox_event_p202402").await,
        postgres,
        "a month with an undelivered event stays"
    );
    let long_ago = at("2024-02-01T00:00:00Z");
    let (owner, claimed) = db
        .store
        .claim(
            CONSUMER,
            10,
            Duration::minutes(5),
            now() + Duration::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    db.store
        .acknowledge(CONSUMER, &[seqs[1]], &owner, long_ago)
        .await
        .unwrap();
    let last = carepath_app::retention::sweep(&db.store, &settings, now())
        .await
        .unwrap();
    assert_eq!(last.outbox.deliveries, 1);
    assert_eq!(last.outbox.partitions, u64::from(postgres));
    assert_eq!(last.outbox.events, u64::from(!postgres));
    assert!(!postgres_table_exists(&db.store, "outbox_event_p202402").await);
    let left: Vec<String> = db
        .store
        .events_for("retention_test", "A1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ["recent-done"]);
}

contract_tests!(
    old_audit_entries_move_to_the_archive_and_verify_as_one_history,
    retention_removes_what_is_finished_and_keeps_what_is_owed,
);

/// Two processes' jobs on one PostgreSQL database: the retention period runs once,
/// on one of them, and does its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_run_the_retention_period_once() {
    let test = "retention::two_processes_run_the_retention_period_once";
    let Some(db) = TestDb::postgres(test).await else {
        eprintln!("skipped {test}: CAREPATH_TEST_POSTGRES_URL is not set");
        return;
    };
    let seqs = write_outbox(&db.store).await;
    let clock = Arc::new(FixedClock::new(now()));
    let stop = CancellationToken::new();
    let mut settings = RetentionSettings::new(30, 90);
    settings.interval = StdDuration::from_secs(3_600);
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let store = Store::connect(&db.url).await.unwrap();
        let jobs = Jobs::new(store.clone(), clock.clone());
        tasks.push(tokio::spawn(run_retention(
            store,
            clock.clone(),
            jobs,
            settings.clone(),
            stop.clone(),
        )));
    }
    let mut removed = false;
    for _ in 0..100 {
        if db
            .store
            .delivery_state(CONSUMER, seqs[0])
            .await
            .unwrap()
            .is_none()
        {
            removed = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert!(removed, "the old acknowledged delivery was not removed");
    // Both processes have looked by now; give the second one time to try.
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    let runs = db.store.job_runs(RETENTION_JOB, 0, 100).await.unwrap();
    assert_eq!(runs.len(), 1, "one run for the period: {runs:?}");
    assert_eq!(
        db.store.delivery_state(CONSUMER, seqs[1]).await.unwrap(),
        Some(DeliveryState::Pending)
    );
}

/// `carepath audit verify --audit-archive-url` as an operator runs it.
fn cli_verify(db: &TestDb, url: &str) -> (bool, String) {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("carepath"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    let out = std::process::Command::new(&bin)
        .args([
            "audit",
            "verify",
            "--database-url",
            &db.url,
            "--audit-archive-url",
            url,
        ])
        .output()
        .expect("run carepath audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_verifies_the_archive_with_the_live_log() {
    let db = TestDb::sqlite().await;
    write_history(&db.store).await;
    let folder = tempfile::tempdir().unwrap();
    let url = format!("file://{}", folder.path().display());
    let archive = AuditArchive::open(&url).unwrap();
    archive
        .export(&db.store, at("2025-01-01T00:00:00Z"), 7, now())
        .await
        .unwrap();

    let (ok, text) = cli_verify(&db, &url);
    assert!(ok, "{text}");
    assert!(
        text.contains("25 entries (20 in 3 archived segments, 5 in the database)"),
        "{text}"
    );

    let first = folder.path().join(segment_name(1));
    let text_of = std::fs::read_to_string(&first).unwrap();
    std::fs::write(&first, text_of.replacen("nurse", "nursf", 1)).unwrap();
    let (ok, text) = cli_verify(&db, &url);
    assert!(!ok, "{text}");
    assert!(text.contains(&segment_name(1)), "{text}");
}
