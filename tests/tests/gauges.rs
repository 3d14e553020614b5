//! The store's readings behind the metrics gauges, on both backends: open cases by
//! status and past their due time at a given instant, each consumer's backlog and the
//! time of its oldest event, notices not sent, gold-card exemptions, the pool.

use carepath_core::{DomainEvent, Role};
use carepath_proto::precert::v1 as pb;
use carepath_store::LabelledCount;
use carepath_tests::{
    TestDb, TestServer, contract_tests,
    precert::{IMAGING_IN, client, flag, mri, number},
};

contract_tests!(
    open_cases_go_past_due_at_their_due_time,
    the_backlog_is_what_a_consumer_has_not_acknowledged
);

async fn open_cases_go_past_due_at_their_due_time(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING_IN);
    let approved = c
        .submit(server.request(
            &provider,
            mri("req-g-1", vec![flag("red_flag_symptoms", true)]),
        ))
        .await
        .expect("submitted")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(approved.status(), pb::CaseStatus::Approved);
    let review = vec![
        flag("red_flag_symptoms", false),
        number("conservative_therapy_weeks", 2.0),
    ];
    let pended = c
        .submit(server.request(&provider, mri("req-g-2", review)))
        .await
        .expect("submitted")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(pended.status(), pb::CaseStatus::PendedReview);
    let due =
        chrono::DateTime::from_timestamp(pended.due_at.expect("due").seconds, 0).expect("instant");

    let (open, past_due) = db.store.open_cases(server.clock_now()).await.unwrap();
    assert_eq!(
        open,
        vec![LabelledCount {
            label: "pended_review".into(),
            second: String::new(),
            count: 1
        }],
        "the approved case owes nothing"
    );
    assert_eq!(past_due, 0);
    let (_, at_due) = db.store.open_cases(due).await.unwrap();
    assert_eq!(at_due, 0, "due, not yet late");
    let (_, after) = db
        .store
        .open_cases(due + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(after, 1);

    assert_eq!(db.store.gold_card_exemptions().await.unwrap(), 0);
    for n in db.store.unsent_notices().await.unwrap() {
        assert!(
            ["pending", "sending", "failed", "dead"].contains(&n.label.as_str()),
            "{n:?}"
        );
        assert!(n.count > 0, "{n:?}");
    }
    let pool = db.store.pool_state();
    assert!(pool.max > 0 && pool.in_use <= pool.size, "{pool:?}");
    server.stop().await;
}

async fn the_backlog_is_what_a_consumer_has_not_acknowledged(db: &TestDb) {
    let store = &db.store;
    store.subscribe("gauge-test", &["gauge."]).await.unwrap();
    let at = carepath_tests::test_start();
    let event = |n: i64| DomainEvent {
        id: uuid::Uuid::now_v7().to_string(),
        kind: "gauge.thing.happened".into(),
        aggregate_kind: "thing".into(),
        aggregate_id: format!("T-{n}"),
        member_id: None,
        occurred_at: at + chrono::Duration::minutes(n),
        payload: serde_json::json!({}),
    };
    let mut tx = store.begin().await.unwrap();
    tx.append_events(&[event(0), event(5)]).await.unwrap();
    tx.commit().await.unwrap();

    let backlog = |consumer: &'static str| async move {
        store
            .outbox_backlog()
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.consumer == consumer)
            .expect("the consumer has a backlog row")
    };
    let mine = backlog("gauge-test").await;
    assert_eq!((mine.pending, mine.oldest), (2, Some(at)));

    let (owner, claimed) = store
        .claim(
            "gauge-test",
            1,
            chrono::Duration::minutes(1),
            at + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].trace_context, None, "traces are off");
    let seqs: Vec<i64> = claimed.iter().map(|c| c.seq).collect();
    store
        .acknowledge("gauge-test", &seqs, &owner, at + chrono::Duration::hours(1))
        .await
        .unwrap();
    let mine = backlog("gauge-test").await;
    assert_eq!(
        (mine.pending, mine.oldest),
        (1, Some(at + chrono::Duration::minutes(5)))
    );
}
