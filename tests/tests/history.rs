//! `carepath_app::precert::history`: a generated history is what the application
//! reads (cases through GetCase, ListCases and the review queue), its audit chains
//! verify, its outbox owes nothing, and every table holds the rows the run reported.

use std::collections::BTreeMap;

use carepath_app::{
    Caller, PageRequest,
    precert::{
        ListCases, Precert, PrecertEngine,
        history::{HistoryOptions, HistorySummary, Outcome, generate},
    },
};
use carepath_core::{Actor, Npi, Role};
use carepath_store::{AuditVerification, on_db};
use carepath_tests::{TestDb, contract_tests, precert::IMAGING_IN};

contract_tests!(a_generated_history_reads_back_through_the_application);

const CASES: u64 = 500;

async fn count(db: &TestDb, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    on_db!(&db.store, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).fetch_one(c).await)
        .expect("count")
}

fn outcome(summary: &HistorySummary, which: Outcome) -> i64 {
    let i = Outcome::ALL
        .iter()
        .position(|o| *o == which)
        .expect("an outcome");
    summary.outcomes[i] as i64
}

async fn a_generated_history_reads_back_through_the_application(db: &TestDb) {
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let options = HistoryOptions {
        cases: CASES,
        seed: 7,
        years: 3,
    };
    const TABLES: [&str; 6] = [
        "precert_case",
        "outbox_event",
        "outbox_delivery",
        "notice",
        "notice_attempt",
        "audit_log",
    ];
    let mut before = BTreeMap::new();
    for table in TABLES {
        before.insert(table, count(db, table).await);
    }
    let mut heard = Vec::new();
    let summary = generate(&db.store, &options, app.now(), |n| heard.push(n))
        .await
        .expect("history generated");
    let w = summary.written;

    // Every table holds what the run reported.
    assert_eq!(heard.last(), Some(&CASES));
    assert_eq!(summary.outcomes.iter().sum::<u64>(), CASES);
    assert_eq!(w.cases, CASES);
    let written = [
        w.cases,
        w.events,
        w.deliveries,
        w.notices,
        w.attempts,
        w.audit_entries,
    ];
    for (table, rows) in TABLES.into_iter().zip(written) {
        assert_eq!(
            count(db, table).await - before[table],
            rows as i64,
            "{table}"
        );
    }
    assert!(w.events > w.cases && w.notices > 0 && w.audit_entries >= 2 * w.cases);
    for consumer in ["notify", "fhir-subscriptions"] {
        let stats = db.store.outbox_stats(consumer).await.expect("stats");
        assert_eq!(stats.pending, 0, "{consumer} owes nothing");
    }
    let unsent: i64 = on_db!(&db.store, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM notice WHERE state <> 'sent'").fetch_one(c).await)
    .expect("count");
    assert_eq!(unsent, 0, "every notice was sent");

    // The cases stand as planned, most of them approved.
    let statuses: BTreeMap<String, i64> = on_db!(&db.store, c => sqlx::query_as(
        "SELECT status, COUNT(*) FROM precert_case GROUP BY status").fetch_all(c).await)
    .expect("statuses")
    .into_iter()
    .collect();
    let status = |s: &str| statuses.get(s).copied().unwrap_or(0);
    assert_eq!(
        status("approved"),
        outcome(&summary, Outcome::Automatic) + outcome(&summary, Outcome::ReviewerApproved)
    );
    assert!(status("approved") > CASES as i64 * 3 / 4, "{statuses:?}");
    assert_eq!(
        status("pended_review"),
        outcome(&summary, Outcome::PendedReview)
    );
    assert_eq!(status("denied"), outcome(&summary, Outcome::Denied));
    assert_eq!(status("withdrawn"), outcome(&summary, Outcome::Withdrawn));
    assert_eq!(
        status("appeal_requested"),
        outcome(&summary, Outcome::AppealWaiting)
    );

    // The audit chains link, with the application's own entries after them.
    assert_eq!(
        db.store.verify_audit().await.expect("verify"),
        AuditVerification::Intact {
            entries: before["audit_log"] + w.audit_entries as i64
        }
    );

    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    let precert = Precert::new(app.clone(), engine);
    let provider = Caller::new(
        Actor::new(Role::Provider, IMAGING_IN).expect("actor"),
        "ListCases",
    );
    let page = precert
        .list_cases(
            &provider,
            ListCases {
                member_id: None,
                provider_npi: Some(Npi::parse(IMAGING_IN).expect("npi")),
                status: None,
                received_from: None,
                received_to: None,
                page: PageRequest {
                    token: String::new(),
                    size: 50,
                },
            },
        )
        .await
        .expect("the provider's cases");
    assert!(!page.items.is_empty(), "the imaging centre has history");
    let received: Vec<_> = page.items.iter().map(|v| v.case.received_at).collect();
    assert!(received.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(received[received.len() - 1] < app.now());
    for view in &page.items {
        assert_eq!(
            view.case.request.requesting_provider.npi.as_str(),
            IMAGING_IN
        );
        let read = precert
            .get_case(&provider, &view.case.id)
            .await
            .expect("a generated case reads back");
        assert_eq!(read.case, view.case);
        assert!(read.request_id.starts_with("history-7-"));
    }

    // The review queue holds the cases waiting for a clinician, urgent first.
    let reviewer = Caller::new(
        Actor::new(Role::PhysicianReviewer, "MD-RAD-01").expect("actor"),
        "ListReviewQueue",
    );
    let mut token = String::new();
    let mut queued = 0;
    loop {
        let page = precert
            .review_queue(&reviewer, PageRequest { token, size: 100 })
            .await
            .expect("the review queue");
        queued += page.items.len() as i64;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        queued,
        outcome(&summary, Outcome::PendedReview)
            + outcome(&summary, Outcome::InReview)
            + outcome(&summary, Outcome::AppealWaiting)
    );
    assert!(queued > 0);

    // Lists read at once, each auditing every case it shows in one transaction, do
    // not wait on each other's chain heads (on PostgreSQL they deadlocked when each
    // entry went to the next chain).
    let lists = (0..8).map(|_| {
        let (precert, provider) = (precert.clone(), provider.clone());
        tokio::spawn(async move {
            for _ in 0..3 {
                let query = ListCases {
                    member_id: None,
                    provider_npi: None,
                    status: None,
                    received_from: None,
                    received_to: None,
                    page: PageRequest {
                        token: String::new(),
                        size: 50,
                    },
                };
                precert.list_cases(&provider, query).await?;
            }
            Ok::<_, carepath_app::AppError>(())
        })
    });
    for list in lists.collect::<Vec<_>>() {
        list.await
            .expect("task")
            .expect("concurrent lists are read");
    }

    // The reads were audited onto the same chains, which still verify.
    match db.store.verify_audit().await.expect("verify") {
        AuditVerification::Intact { entries } => {
            assert!(entries > before["audit_log"] + w.audit_entries as i64)
        }
        broken => panic!("{broken:?}"),
    }
}
