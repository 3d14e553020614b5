//! The storage contract: every test here runs on SQLite and on PostgreSQL, proving
//! both backends behave the same behind the one storage API.

use std::collections::HashSet;

use carepath_core::{DirectoryBundle, DomainEvent, MemberId, PlanId};
use carepath_store::{
    AuditEntry, AuditOutcome, AuditQuery, AuditVerification, CaseCreated, CaseRecord,
    DeliveryOutcome, DeliveryState, GoldCardRecord, MemberFilter, NewCase, NewNotice,
    NewSubscriptionRecord, ProviderFilter, StoreError, on_db,
};
use carepath_tests::{TestDb, contract_tests};
use chrono::{DateTime, Duration, Utc};

contract_tests!(
    a_periodic_job_has_one_holder_and_each_period_runs_once,
    directory_round_trips_and_pages,
    provider_filters_combine,
    upsert_reports_creation_and_replaces,
    a_failed_import_leaves_nothing_behind,
    events_commit_or_roll_back_with_their_change,
    concurrent_writers_commit_together_and_roll_back_alone,
    each_subscriber_gets_each_event_once,
    a_narrowed_subscription_stops_the_kinds_it_dropped,
    a_batch_of_events_keeps_its_order_and_reaches_each_subscriber,
    an_expired_lease_hands_the_event_out_again,
    failures_are_retried_then_parked_as_dead,
    concurrent_claimers_never_share_an_event,
    an_event_waits_for_an_earlier_one_of_its_aggregate,
    the_audit_chain_detects_tampering,
    an_entry_removed_from_the_middle_of_a_chain_is_detected,
    a_removed_chain_head_row_is_detected,
    a_removed_newest_entry_is_caught_by_its_anchor,
    the_audit_log_is_searchable,
    gold_cards_come_in_pages,
    case_sweeps_read_in_pages,
    cases_created_together_commit_once_each_with_events_and_audit,
    a_case_that_cannot_be_written_fails_alone,
    notice_outcomes_recorded_together_skip_a_lost_lease,
    the_oldest_pending_notice_is_found_whatever_its_priority,
    notices_stored_together_skip_those_stored_before_and_repeats_within,
    cases_and_subscribers_are_read_a_batch_at_a_time,
);

fn now() -> DateTime<Utc> {
    "2026-11-23T15:00:00Z".parse().unwrap()
}

fn demo() -> DirectoryBundle {
    DirectoryBundle::demo().unwrap()
}

fn event(i: usize, kind: &str) -> DomainEvent {
    DomainEvent {
        id: uuid::Uuid::now_v7().to_string(),
        kind: kind.to_owned(),
        aggregate_kind: "test".into(),
        aggregate_id: format!("agg-{i}"),
        member_id: Some(MemberId::parse("M100001").unwrap()),
        occurred_at: now(),
        payload: serde_json::json!({ "i": i }),
    }
}

async fn append(db: &TestDb, events: &[DomainEvent]) {
    let mut tx = db.store.begin().await.unwrap();
    for e in events {
        tx.append_event(e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn directory_round_trips_and_pages(db: &TestDb) {
    let bundle = demo();
    let summary = db.store.import_directory(&bundle, now()).await.unwrap();
    assert_eq!(summary.members, bundle.members.len());

    let member = &bundle.members[0];
    assert_eq!(&db.store.get_member(&member.id).await.unwrap(), member);
    let provider = &bundle.providers[3];
    assert_eq!(
        &db.store.get_provider(&provider.npi).await.unwrap(),
        provider
    );

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = db
            .store
            .list_members(&MemberFilter::default(), &token, 7)
            .await
            .unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|m| m.id));
        match page.next_page_token {
            Some(t) => token = t,
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), bundle.members.len());
    assert_eq!(unique.len(), bundle.members.len());

    let missing = db
        .store
        .get_member(&MemberId::parse("M999999").unwrap())
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::NotFound { kind: "member", .. })
    ));
}

async fn provider_filters_combine(db: &TestDb) {
    db.store.import_directory(&demo(), now()).await.unwrap();
    let filter = ProviderFilter {
        specialty: Some("orthopaedic_surgery".into()),
        country: Some("AE".into()),
        in_network_for_plan: Some("PLAN-GLOBAL".into()),
        language: Some("ar".into()),
        ..Default::default()
    };
    let found = db.store.list_providers(&filter, "", 50).await.unwrap();
    let npis: Vec<_> = found.items.iter().map(|p| p.npi.as_str()).collect();
    assert_eq!(npis, ["1495212221"]);

    let oncologists = ProviderFilter {
        specialty: Some("medical_oncology".into()),
        ..Default::default()
    };
    let found = db.store.list_providers(&oncologists, "", 50).await.unwrap();
    assert!(found.items.len() >= 3);
    assert!(
        found
            .items
            .iter()
            .all(|p| p.specialty.as_ref().unwrap().as_str() == "medical_oncology")
    );
}

async fn upsert_reports_creation_and_replaces(db: &TestDb) {
    let bundle = demo();
    let mut plan = bundle.plans[0].clone();
    let mut tx = db.store.begin().await.unwrap();
    assert!(tx.upsert_plan(&plan, now()).await.unwrap());
    plan.name = "Renamed plan".into();
    assert!(!tx.upsert_plan(&plan, now()).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        db.store.get_plan(&plan.id).await.unwrap().name,
        "Renamed plan"
    );
}

async fn a_failed_import_leaves_nothing_behind(db: &TestDb) {
    let mut bundle = demo();
    let mut orphan = bundle.members[0].clone();
    orphan.id = MemberId::parse("M900000").unwrap();
    orphan.plan_id = PlanId::parse("PLAN-NOPE").unwrap();
    bundle.members.push(orphan);
    let err = db.store.import_directory(&bundle, now()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::MissingReference { kind: "plan", .. }),
        "{err}"
    );
    let plans = db.store.list_plans("", 50).await.unwrap();
    assert!(
        plans.items.is_empty(),
        "the plans written before the failure were rolled back"
    );
    let events = db
        .store
        .events_for("plan", bundle.plans[0].id.as_str())
        .await
        .unwrap();
    assert!(events.is_empty());
}

async fn events_commit_or_roll_back_with_their_change(db: &TestDb) {
    db.store.subscribe("notify", &[""]).await.unwrap();
    let plan = demo().plans[0].clone();
    {
        let mut tx = db.store.begin().await.unwrap();
        tx.upsert_plan(&plan, now()).await.unwrap();
        // dropped without commit
    }
    assert!(db.store.get_plan(&plan.id).await.is_err());
    assert!(
        db.store
            .events_for("plan", plan.id.as_str())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.store.outbox_stats("notify").await.unwrap().pending, 0);

    let mut tx = db.store.begin().await.unwrap();
    tx.upsert_plan(&plan, now()).await.unwrap();
    tx.commit().await.unwrap();
    let events = db.store.events_for("plan", plan.id.as_str()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "directory.plan.upserted");
    assert_eq!(db.store.outbox_stats("notify").await.unwrap().pending, 1);
}

/// Many writers at once (on SQLite they share batches): each committed write is
/// readable as soon as its commit returns, and writers that roll back or drop their
/// transaction take nothing of the others with them.
async fn concurrent_writers_commit_together_and_roll_back_alone(db: &TestDb) {
    db.store.subscribe("notify", &[""]).await.unwrap();
    let writers: Vec<_> = (0..96)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let e = event(i, "test.written");
                let mut tx = store.begin().await.unwrap();
                tx.append_event(&e).await.unwrap();
                match i % 3 {
                    0 => {
                        tx.commit().await.unwrap();
                        let seen = store.events_for("test", &e.aggregate_id).await.unwrap();
                        assert_eq!(seen.len(), 1, "writer {i} reads its own commit");
                        true
                    }
                    1 => {
                        drop(tx);
                        false
                    }
                    _ => {
                        // Stays open across a pause, while others commit.
                        tokio::task::yield_now().await;
                        tx.commit().await.unwrap();
                        true
                    }
                }
            })
        })
        .collect();
    let mut committed = 0;
    for w in writers {
        if w.await.unwrap() {
            committed += 1;
        }
    }
    db.store.settle().await.unwrap();
    for i in 0..96 {
        let seen = db
            .store
            .events_for("test", &format!("agg-{i}"))
            .await
            .unwrap();
        assert_eq!(seen.len(), usize::from(i % 3 != 1), "writer {i}");
    }
    assert_eq!(
        db.store.outbox_stats("notify").await.unwrap().pending,
        committed
    );
}

async fn each_subscriber_gets_each_event_once(db: &TestDb) {
    db.store.subscribe("a", &["precert."]).await.unwrap();
    db.store
        .subscribe("b", &["precert.case.approved", "cases."])
        .await
        .unwrap();
    let events = [
        event(1, "precert.case.approved"),
        event(2, "precert.case.denied"),
        event(3, "cases.case.opened"),
        event(4, "directory.plan.upserted"),
    ];
    append(db, &events).await;

    let lease = Duration::seconds(60);
    let (owner_a, got_a) = db.store.claim("a", 10, lease, now()).await.unwrap();
    let kinds: Vec<_> = got_a.iter().map(|c| c.event.kind.as_str()).collect();
    assert_eq!(kinds, ["precert.case.approved", "precert.case.denied"]);
    assert_eq!(got_a[0].event, events[0]);
    let (_, again) = db.store.claim("a", 10, lease, now()).await.unwrap();
    assert!(again.is_empty(), "leased events are not handed out twice");
    let seqs: Vec<i64> = got_a.iter().map(|c| c.seq).collect();
    assert_eq!(
        db.store
            .acknowledge("a", &seqs, &owner_a, now())
            .await
            .unwrap(),
        seqs.len(),
        "a batch is acknowledged at once"
    );
    for c in &got_a {
        assert_eq!(
            db.store.delivery_state("a", c.seq).await.unwrap(),
            Some(DeliveryState::Done)
        );
    }
    let (_, got_b) = db.store.claim("b", 10, lease, now()).await.unwrap();
    let kinds: Vec<_> = got_b.iter().map(|c| c.event.kind.as_str()).collect();
    assert_eq!(kinds, ["precert.case.approved", "cases.case.opened"]);
    let later = now() + Duration::hours(2);
    let (_, after_ack) = db.store.claim("a", 10, lease, later).await.unwrap();
    assert!(after_ack.is_empty(), "acknowledged events never come back");
}

async fn a_narrowed_subscription_stops_the_kinds_it_dropped(db: &TestDb) {
    db.store
        .subscribe("feed", &["precert.case."])
        .await
        .unwrap();
    append(db, &[event(1, "precert.case.submitted")]).await;
    db.store
        .subscribe("feed", &["precert.case.approved", "precert.case.denied"])
        .await
        .unwrap();
    db.store
        .subscribe("feed", &["precert.case.approved", "precert.case.denied"])
        .await
        .unwrap();
    let events = [
        event(2, "precert.case.submitted"),
        event(3, "precert.case.denied"),
    ];
    append(db, &events).await;
    let (_, got) = db
        .store
        .claim("feed", 10, Duration::seconds(60), now())
        .await
        .unwrap();
    let kinds: Vec<_> = got.iter().map(|c| c.event.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["precert.case.submitted", "precert.case.denied"],
        "the delivery made before narrowing stays; the dropped kind is not delivered after"
    );
    assert_eq!(got[0].event.aggregate_id, "agg-1");
    assert!(got.iter().all(|c| c.attempts == 1));
}

async fn a_batch_of_events_keeps_its_order_and_reaches_each_subscriber(db: &TestDb) {
    db.store.subscribe("a", &["precert."]).await.unwrap();
    db.store.subscribe("b", &[""]).await.unwrap();
    // More events than one insert statement carries, every third of a kind `a` skips.
    let events: Vec<_> = (0..75)
        .map(|i| {
            let kind = if i % 3 == 2 {
                "cases.case.opened"
            } else {
                "precert.case.approved"
            };
            event(i, kind)
        })
        .collect();
    let mut tx = db.store.begin().await.unwrap();
    tx.append_events(&events).await.unwrap();
    tx.commit().await.unwrap();

    let lease = Duration::seconds(60);
    let (_, got_b) = db.store.claim("b", 100, lease, now()).await.unwrap();
    let got: Vec<_> = got_b.iter().map(|c| c.event.clone()).collect();
    assert_eq!(got, events, "every event, in the order appended");
    let (_, got_a) = db.store.claim("a", 100, lease, now()).await.unwrap();
    let ids: Vec<_> = got_a.iter().map(|c| c.event.id.as_str()).collect();
    let expected: Vec<_> = events
        .iter()
        .filter(|e| e.kind.starts_with("precert."))
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ids, expected, "only the subscribed kinds, once each");

    // A batch whose transaction rolls back leaves no event and no delivery.
    let mut tx = db.store.begin().await.unwrap();
    tx.append_events(&[event(99, "precert.case.denied")])
        .await
        .unwrap();
    drop(tx);
    let (_, none) = db.store.claim("b", 100, lease, now()).await.unwrap();
    assert!(none.is_empty());
}

async fn an_expired_lease_hands_the_event_out_again(db: &TestDb) {
    db.store.subscribe("a", &[""]).await.unwrap();
    append(db, &[event(1, "x.y")]).await;
    let (first_owner, first) = db
        .store
        .claim("a", 10, Duration::seconds(30), now())
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let (second_owner, second) = db
        .store
        .claim(
            "a",
            10,
            Duration::seconds(30),
            now() + Duration::seconds(31),
        )
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempts, 2);
    assert_eq!(
        db.store
            .acknowledge("a", &[first[0].seq], &first_owner, now())
            .await
            .unwrap(),
        0,
        "the first worker lost its lease"
    );
    assert_eq!(
        db.store
            .acknowledge("a", &[second[0].seq], &second_owner, now())
            .await
            .unwrap(),
        1
    );
}

async fn failures_are_retried_then_parked_as_dead(db: &TestDb) {
    db.store.subscribe("a", &[""]).await.unwrap();
    append(db, &[event(1, "x.y")]).await;
    let lease = Duration::seconds(30);
    let (owner, got) = db.store.claim("a", 10, lease, now()).await.unwrap();
    let seq = got[0].seq;
    db.store
        .release(
            "a",
            seq,
            &owner,
            "smtp down",
            Some(now() + Duration::seconds(10)),
            now(),
        )
        .await
        .unwrap();
    let (_, early) = db
        .store
        .claim("a", 10, lease, now() + Duration::seconds(5))
        .await
        .unwrap();
    assert!(early.is_empty(), "not due before its retry time");
    let (owner, retried) = db
        .store
        .claim("a", 10, lease, now() + Duration::seconds(11))
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    db.store
        .release("a", seq, &owner, "smtp still down", None, now())
        .await
        .unwrap();
    assert_eq!(
        db.store.delivery_state("a", seq).await.unwrap(),
        Some(DeliveryState::Dead)
    );
    let (_, never) = db
        .store
        .claim("a", 10, lease, now() + Duration::days(1))
        .await
        .unwrap();
    assert!(never.is_empty());
    let stats = db.store.outbox_stats("a").await.unwrap();
    assert_eq!((stats.pending, stats.done, stats.dead), (0, 0, 1));
}

async fn concurrent_claimers_never_share_an_event(db: &TestDb) {
    db.store.subscribe("workers", &[""]).await.unwrap();
    let events: Vec<_> = (0..200).map(|i| event(i, "load.test")).collect();
    append(db, &events).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let (owner, batch) = store
                    .claim("workers", 10, Duration::seconds(300), now())
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                let seqs: Vec<i64> = batch.iter().map(|c| c.seq).collect();
                assert_eq!(
                    store
                        .acknowledge("workers", &seqs, &owner, now())
                        .await
                        .unwrap(),
                    seqs.len()
                );
                mine.extend(batch.into_iter().map(|c| c.event.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every event handled exactly once");
    assert_eq!(unique.len(), 200);
}

/// `held_back` names the events of a batch whose aggregate has an earlier event still
/// owed outside the batch: leased to another worker, or failed and waiting to be
/// retried; not once it is done or dead.
async fn an_event_waits_for_an_earlier_one_of_its_aggregate(db: &TestDb) {
    db.store.subscribe("ordered", &[""]).await.unwrap();
    // Aggregate agg-1: a1, a2; aggregate agg-2: b1.
    let (a1, a2, b1) = (event(1, "t.x.a"), event(1, "t.x.b"), event(2, "t.x.a"));
    append(db, &[a1.clone(), a2.clone(), b1.clone()]).await;
    let lease = Duration::seconds(300);
    let (first, held) = db.store.claim("ordered", 1, lease, now()).await.unwrap();
    assert_eq!(held[0].event.id, a1.id);
    let (_, rest) = db.store.claim("ordered", 10, lease, now()).await.unwrap();
    let ids: Vec<String> = rest.iter().map(|c| c.event.id.clone()).collect();
    assert_eq!(ids, [a2.id.clone(), b1.id.clone()]);
    // a1 is leased elsewhere: a2 waits, b1 does not.
    assert_eq!(
        db.store.held_back("ordered", &ids).await.unwrap(),
        vec![a2.id.clone()]
    );
    // In one batch, the earlier event is the batch's own business.
    let all = [a1.id.clone(), a2.id.clone(), b1.id.clone()];
    assert!(
        db.store
            .held_back("ordered", &all)
            .await
            .unwrap()
            .is_empty()
    );
    // Failed and due later, a1 still holds a2 back; done, it no longer does.
    db.store
        .release(
            "ordered",
            held[0].seq,
            &first,
            "nats away",
            Some(now()),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        db.store.held_back("ordered", &ids).await.unwrap(),
        vec![a2.id.clone()]
    );
    let (again, retried) = db.store.claim("ordered", 1, lease, now()).await.unwrap();
    assert_eq!(retried[0].event.id, a1.id);
    db.store
        .acknowledge("ordered", &[retried[0].seq], &again, now())
        .await
        .unwrap();
    assert!(
        db.store
            .held_back("ordered", &ids)
            .await
            .unwrap()
            .is_empty()
    );
    // Each consumer waits on its own deliveries only.
    db.store.subscribe("other", &[""]).await.unwrap();
    let (c1, c2) = (event(3, "t.x.a"), event(3, "t.x.b"));
    append(db, &[c1.clone(), c2.clone()]).await;
    let (owner, claimed) = db.store.claim("other", 1, lease, now()).await.unwrap();
    assert_eq!(claimed[0].event.id, c1.id);
    db.store
        .acknowledge("other", &[claimed[0].seq], &owner, now())
        .await
        .unwrap();
    assert_eq!(
        db.store
            .held_back("ordered", std::slice::from_ref(&c2.id))
            .await
            .unwrap(),
        vec![c2.id.clone()]
    );
    assert!(
        db.store
            .held_back("other", std::slice::from_ref(&c2.id))
            .await
            .unwrap()
            .is_empty()
    );
}

fn entry(subject: &str, member: &str) -> AuditEntry {
    AuditEntry {
        subject: subject.into(),
        role: "nurse".into(),
        rpc: "/carepath.directory.v1.DirectoryService/GetMember".into(),
        record_kind: "member".into(),
        record_id: member.into(),
        member_id: Some(member.into()),
        outcome: AuditOutcome::Allowed,
        repeats: 0,
    }
}

async fn the_audit_chain_detects_tampering(db: &TestDb) {
    for i in 0..5 {
        db.store
            .audit(
                &entry("RN-001", &format!("M10000{i}")),
                now() + Duration::seconds(i),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Intact { entries: 5 }
    );

    on_db!(&db.store, c => sqlx::query("UPDATE audit_log SET subject = 'RN-999' WHERE seq = 3").execute(c).await.map(|_| ())).unwrap();
    assert!(matches!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Broken { seq: 3, .. }
    ));
    on_db!(&db.store, c => sqlx::query("UPDATE audit_log SET subject = 'RN-001' WHERE seq = 3").execute(c).await.map(|_| ())).unwrap();
    assert!(matches!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Intact { .. }
    ));

    on_db!(&db.store, c => sqlx::query("DELETE FROM audit_log WHERE seq = 5").execute(c).await.map(|_| ())).unwrap();
    assert!(matches!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Broken { .. }
    ));
}

async fn an_entry_removed_from_the_middle_of_a_chain_is_detected(db: &TestDb) {
    // Enough entries that every chain holds several.
    let n = i64::from(carepath_store::AUDIT_CHAINS) * 3;
    for i in 0..n {
        db.store
            .audit(&entry("RN-001", "M100001"), now() + Duration::seconds(i))
            .await
            .unwrap();
    }
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Intact { entries: n }
    );
    let (chain, seq): (i32, i64) = on_db!(&db.store, c => sqlx::query_as(
        "SELECT chain, seq FROM audit_log ORDER BY seq LIMIT 1 OFFSET 20").fetch_one(c).await)
    .unwrap();
    on_db!(&db.store, c => sqlx::query("DELETE FROM audit_log WHERE seq = $1").bind(seq).execute(c).await.map(|_| ())).unwrap();
    let next_in_chain: i64 = on_db!(&db.store, c => sqlx::query_scalar(
        "SELECT MIN(seq) FROM audit_log WHERE chain = $1 AND seq > $2").bind(chain).bind(seq).fetch_one(c).await).unwrap();
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Broken {
            seq: next_in_chain,
            reason: "does not link to the entry before it".into()
        }
    );
}

async fn a_removed_chain_head_row_is_detected(db: &TestDb) {
    for i in 0..3 {
        db.store
            .audit(&entry("RN-001", "M100001"), now() + Duration::seconds(i))
            .await
            .unwrap();
    }
    on_db!(&db.store, c => sqlx::query("DELETE FROM audit_head WHERE id = 7").execute(c).await.map(|_| ())).unwrap();
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Broken {
            seq: 3,
            reason: "the head row of chain 7 was removed".into()
        }
    );
}

async fn a_removed_newest_entry_is_caught_by_its_anchor(db: &TestDb) {
    // Appends take chains in turn from a counter shared by the whole process, so
    // tests running beside this one take turns too: write until every chain has a head.
    let mut n = 0_i64;
    let anchors = loop {
        db.store
            .audit(&entry("RN-001", "M100001"), now() + Duration::seconds(n))
            .await
            .unwrap();
        n += 1;
        let heads = db.store.audit_heads().await.unwrap();
        if heads.len() == carepath_store::AUDIT_CHAINS as usize {
            break heads;
        }
        assert!(n < 10_000, "appends never reached every chain");
    };
    assert_eq!(
        db.store.verify_audit_anchored(&anchors).await.unwrap(),
        AuditVerification::Intact { entries: n }
    );

    // Remove the newest entry of the log and set its chain's head back to the entry
    // before it: the shorter chain still links.
    let (seq, chain, prev): (i64, i32, String) = on_db!(&db.store, c => sqlx::query_as(
        "SELECT seq, chain, prev_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_one(c).await)
    .unwrap();
    on_db!(&db.store, c => sqlx::query("DELETE FROM audit_log WHERE seq = $1").bind(seq).execute(c).await.map(|_| ())).unwrap();
    on_db!(&db.store, c => sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = $2").bind(&prev).bind(chain).execute(c).await.map(|_| ())).unwrap();
    // The database alone cannot tell.
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Intact { entries: n - 1 }
    );
    // The anchor can.
    assert_eq!(
        db.store.verify_audit_anchored(&anchors).await.unwrap(),
        AuditVerification::Broken {
            seq,
            reason: format!(
                "entry {seq} of chain {chain}, anchored outside the database, is missing"
            )
        }
    );

    // An anchored entry rewritten with a consistent chain after it is caught too.
    let first = anchors.iter().min_by_key(|a| a.seq).unwrap().clone();
    let mut forged = anchors.clone();
    forged.retain(|a| a.seq != seq);
    forged.iter_mut().find(|a| a.seq == first.seq).unwrap().hash = "0".repeat(64);
    assert_eq!(
        db.store.verify_audit_anchored(&forged).await.unwrap(),
        AuditVerification::Broken {
            seq: first.seq,
            reason: "differs from its copy anchored outside the database".into()
        }
    );
}

async fn the_audit_log_is_searchable(db: &TestDb) {
    db.store
        .audit(&entry("RN-001", "M100001"), now())
        .await
        .unwrap();
    db.store
        .audit(&entry("RN-002", "M100002"), now() + Duration::hours(1))
        .await
        .unwrap();
    db.store
        .audit(&entry("RN-001", "M100002"), now() + Duration::hours(2))
        .await
        .unwrap();
    let by_member = db
        .store
        .search_audit(
            &AuditQuery {
                member_id: Some("M100002".into()),
                ..Default::default()
            },
            0,
            50,
        )
        .await
        .unwrap();
    assert_eq!(by_member.len(), 2);
    let by_subject = db
        .store
        .search_audit(
            &AuditQuery {
                subject: Some("RN-001".into()),
                ..Default::default()
            },
            0,
            50,
        )
        .await
        .unwrap();
    assert_eq!(by_subject.len(), 2);
    let in_period = db
        .store
        .search_audit(
            &AuditQuery {
                from: Some(now() + Duration::minutes(30)),
                to: Some(now() + Duration::minutes(90)),
                ..Default::default()
            },
            0,
            50,
        )
        .await
        .unwrap();
    assert_eq!(in_period.len(), 1);
    assert_eq!(in_period[0].entry.subject, "RN-002");
}

async fn gold_cards_come_in_pages(db: &TestDb) {
    let card = |npi: &str, category: &str| GoldCardRecord {
        npi: npi.into(),
        category: category.into(),
        exempt: false,
        requests: 3,
        approvals: 2,
        evaluated_at: now(),
        window_start: now() - Duration::days(182),
        exemption: String::new(),
        change: "not_eligible".into(),
    };
    let mut tx = db.store.begin().await.unwrap();
    for (npi, category) in [
        ("1184649790", "imaging"),
        ("1184649790", "dme"),
        ("1003000126", "imaging"),
        ("1381083801", "oncology"),
        ("1184649790", "sleep"),
    ] {
        tx.upsert_gold_card(&card(npi, category)).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = db.store.gold_cards_page(None, &token, 2).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|c| (c.npi, c.category)));
        match page.next_page_token {
            Some(next) => token = next,
            None => break,
        }
    }
    let key = |npi: &str, category: &str| (npi.to_owned(), category.to_owned());
    assert_eq!(
        seen,
        [
            key("1003000126", "imaging"),
            key("1184649790", "dme"),
            key("1184649790", "imaging"),
            key("1184649790", "sleep"),
            key("1381083801", "oncology"),
        ]
    );

    let all = db.store.gold_cards(None).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!((all[0].requests, all[0].approvals), (3, 2));

    let one = db
        .store
        .gold_cards_page(Some("1184649790"), "1184649790/dme", 500)
        .await
        .unwrap();
    let categories: Vec<_> = one.items.iter().map(|c| c.category.as_str()).collect();
    assert_eq!(categories, ["imaging", "sleep"]);
    assert_eq!(one.next_page_token, None);
}

async fn case_sweeps_read_in_pages(db: &TestDb) {
    // Five cases received a minute apart, two of them at the same instant (the id
    // breaks the tie); decided an hour after receipt, except the last.
    let at = |minute: i64| now() + Duration::minutes(minute);
    let cases: Vec<CaseRecord> = [
        (0, "PA-1"),
        (1, "PA-2"),
        (1, "PA-3"),
        (2, "PA-4"),
        (3, "PA-5"),
    ]
    .into_iter()
    .map(|(minute, id)| {
        let decided = (id != "PA-5").then(|| at(minute) + Duration::hours(1));
        case_record(id, &format!("1184649790:{id}"), at(minute), decided)
    })
    .collect();
    let mut tx = db.store.begin().await.unwrap();
    for case in &cases {
        tx.insert_case(case, now()).await.unwrap();
    }
    tx.commit().await.unwrap();

    let (from, to) = (now(), now() + Duration::days(1));
    let mut received = Vec::new();
    let mut after = None;
    loop {
        let page = db
            .store
            .cases_received_between(from, to, after, 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        received.extend(page.iter().map(|c| c.id.clone()));
        match page.last() {
            Some(last) if page.len() == 2 => after = Some((last.received_at, last.id.clone())),
            _ => break,
        }
    }
    assert_eq!(received, ["PA-1", "PA-2", "PA-3", "PA-4", "PA-5"]);

    let first = db
        .store
        .cases_decided_between(from, to, None, 3)
        .await
        .unwrap();
    let ids: Vec<&str> = first.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["PA-1", "PA-2", "PA-3"]);
    let last = first.last().unwrap();
    let rest = db
        .store
        .cases_decided_between(
            from,
            to,
            Some((last.decided_at.unwrap(), last.id.clone())),
            3,
        )
        .await
        .unwrap();
    let ids: Vec<&str> = rest.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["PA-4"], "undecided cases are not read");
}

/// An approved routine case of member M100001 requested and serviced by one provider.
fn case_record(
    id: &str,
    key: &str,
    received: DateTime<Utc>,
    decided: Option<DateTime<Utc>>,
) -> CaseRecord {
    CaseRecord {
        id: id.into(),
        request_key: key.into(),
        member_id: "M100001".into(),
        requesting_npi: "1184649790".into(),
        servicing_npi: "1184649790".into(),
        status: "approved".into(),
        urgency: "routine".into(),
        queue: String::new(),
        reviewer_id: None,
        received_at: received,
        due_at: received + Duration::days(2),
        decided_at: decided,
        doc: serde_json::json!({ "id": id }),
    }
}

/// A new case `id` under request key `key`, with a submitted and an approved event and
/// the audit entry of its submission.
fn new_case(id: &str, key: &str) -> NewCase {
    let event = |kind: &str| DomainEvent {
        id: uuid::Uuid::now_v7().to_string(),
        kind: kind.to_owned(),
        aggregate_kind: "precert_case".into(),
        aggregate_id: id.to_owned(),
        member_id: Some(MemberId::parse("M100001").unwrap()),
        occurred_at: now(),
        payload: serde_json::json!({ "id": id }),
    };
    NewCase {
        record: CaseRecord {
            doc: serde_json::json!({ "id": id, "lines": [1, 2, 3] }),
            ..case_record(id, key, now(), Some(now()))
        },
        events: vec![
            event("precert.case.submitted"),
            event("precert.case.approved"),
        ],
        audit: AuditEntry {
            subject: "npi:1184649790".into(),
            role: "provider".into(),
            rpc: "/carepath.precert.v1.PrecertService/Submit".into(),
            record_kind: "precert_case".into(),
            record_id: id.to_owned(),
            member_id: Some("M100001".into()),
            outcome: AuditOutcome::Allowed,
            repeats: 0,
        },
        at: now(),
    }
}

async fn cases_created_together_commit_once_each_with_events_and_audit(db: &TestDb) {
    db.store.subscribe("notify", &["precert."]).await.unwrap();
    // 60 submissions at once over 40 request keys: keys 0 to 19 are each sent twice.
    let jobs: Vec<_> = (0..60)
        .map(|i| {
            let store = db.store.clone();
            let case = new_case(&format!("PA-{i}"), &format!("1184649790:req-{}", i % 40));
            tokio::spawn(async move { (i, store.create_case(case).await.unwrap()) })
        })
        .collect();
    let mut created = Vec::new();
    for job in jobs {
        let (i, outcome) = job.await.unwrap();
        if outcome == CaseCreated::Created {
            created.push(i);
        }
    }
    db.store.settle().await.unwrap();
    assert_eq!(created.len(), 40, "one case per request key");
    for key in 0..40 {
        let stored = db
            .store
            .case_by_request_key(&format!("1184649790:req-{key}"))
            .await
            .unwrap()
            .expect("the key has a case");
        let winner: Vec<_> = created.iter().filter(|i| *i % 40 == key).collect();
        assert_eq!(winner.len(), 1, "key {key}");
        assert_eq!(stored.id, format!("PA-{}", winner[0]));
    }
    for i in 0..60 {
        let id = format!("PA-{i}");
        let kinds = db.event_kinds("precert_case", &id).await;
        if created.contains(&i) {
            assert_eq!(
                kinds,
                ["precert.case.submitted", "precert.case.approved"],
                "{id}"
            );
        } else {
            assert!(kinds.is_empty(), "a duplicate leaves no events: {id}");
            assert!(matches!(
                db.store.get_case(&id).await,
                Err(StoreError::NotFound { .. })
            ));
        }
    }
    assert_eq!(db.store.outbox_stats("notify").await.unwrap().pending, 80);
    let audited: HashSet<String> = db
        .store
        .search_audit(&AuditQuery::default(), 0, 500)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.entry.record_id)
        .collect();
    let expected: HashSet<String> = created.iter().map(|i| format!("PA-{i}")).collect();
    assert_eq!(audited, expected, "one audit entry per created case");
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Intact { entries: 40 }
    );
}

async fn a_case_that_cannot_be_written_fails_alone(db: &TestDb) {
    db.store.subscribe("notify", &["precert."]).await.unwrap();
    let first = new_case("PA-taken", "1184649790:first");
    assert_eq!(
        db.store.create_case(first).await.unwrap(),
        CaseCreated::Created
    );
    // Twenty at once; one reuses the taken case id under a new request key.
    let jobs: Vec<_> = (0..20)
        .map(|i| {
            let store = db.store.clone();
            let id = if i == 7 {
                "PA-taken".to_owned()
            } else {
                format!("PA-{i}")
            };
            let case = new_case(&id, &format!("1184649790:again-{i}"));
            tokio::spawn(async move { (i, store.create_case(case).await) })
        })
        .collect();
    for job in jobs {
        let (i, outcome) = job.await.unwrap();
        if i == 7 {
            assert!(
                !matches!(outcome, Ok(CaseCreated::Created)),
                "a taken id is never written twice: {outcome:?}"
            );
        } else {
            assert_eq!(outcome.unwrap(), CaseCreated::Created, "case {i}");
        }
    }
    db.store.settle().await.unwrap();
    assert!(
        db.store
            .case_by_request_key("1184649790:again-7")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        db.store
            .events_for("precert_case", "PA-taken")
            .await
            .unwrap()
            .len(),
        2,
        "only the first case's events"
    );
    assert_eq!(db.store.outbox_stats("notify").await.unwrap().pending, 40);
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        AuditVerification::Intact { entries: 20 }
    );
}

fn pending_notice(key: &str) -> NewNotice {
    NewNotice {
        id: uuid::Uuid::now_v7().to_string(),
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

async fn notices_stored_together_skip_those_stored_before_and_repeats_within(db: &TestDb) {
    // More than one statement's worth, so the chunks are exercised too.
    let notices: Vec<NewNotice> = (0..150).map(|i| pending_notice(&format!("n{i}"))).collect();
    let mut tx = db.store.begin().await.unwrap();
    assert!(tx.insert_notice(&notices[0], now()).await.unwrap());
    tx.commit().await.unwrap();

    // Again the first (stored before), and the second twice in one batch (an event
    // redelivered within its own batch): each is stored once.
    let mut rows: Vec<&NewNotice> = notices.iter().collect();
    let mut repeat = notices[1].clone();
    repeat.id = format!("{}-again", repeat.id);
    rows.push(&repeat);
    assert_eq!(db.store.store_notices(&rows, now()).await.unwrap(), 149);
    for n in &notices {
        let stored = db.store.get_notice(&n.id).await.unwrap();
        assert_eq!(stored.idempotency_key, n.idempotency_key);
        assert_eq!(stored.state, "pending");
    }
    assert!(matches!(
        db.store.get_notice(&repeat.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn the_oldest_pending_notice_is_found_whatever_its_priority(db: &TestDb) {
    assert_eq!(db.store.oldest_pending_notice().await.unwrap(), None);
    // An older notice of the later priority, and two newer ones someone waits on.
    let mut tx = db.store.begin().await.unwrap();
    let later = pending_notice("later");
    assert!(
        tx.insert_notice(&later, now() - Duration::minutes(10))
            .await
            .unwrap()
    );
    for key in ["urgent-1", "urgent-2"] {
        let urgent = NewNotice {
            priority: 0,
            ..pending_notice(key)
        };
        assert!(
            tx.insert_notice(&urgent, now() - Duration::minutes(1))
                .await
                .unwrap()
        );
    }
    tx.commit().await.unwrap();
    let (_, claimed) = db
        .store
        .claim_notices(2, Duration::minutes(2), now())
        .await
        .unwrap();
    let keys: Vec<&str> = claimed.iter().map(|n| n.idempotency_key.as_str()).collect();
    assert_eq!(
        keys,
        ["urgent-1", "urgent-2"],
        "notices someone waits on first"
    );
    assert_eq!(
        db.store.oldest_pending_notice().await.unwrap(),
        Some(now() - Duration::minutes(10)),
        "the older notice left behind"
    );
    let (_, claimed) = db
        .store
        .claim_notices(2, Duration::minutes(2), now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(db.store.oldest_pending_notice().await.unwrap(), None);
}

async fn notice_outcomes_recorded_together_skip_a_lost_lease(db: &TestDb) {
    let notices: Vec<NewNotice> = ["a", "b", "c"].into_iter().map(pending_notice).collect();
    let mut tx = db.store.begin().await.unwrap();
    for n in &notices {
        assert!(tx.insert_notice(n, now()).await.unwrap());
    }
    tx.commit().await.unwrap();
    let lease = Duration::minutes(2);

    let (first, claimed) = db.store.claim_notices(2, lease, now()).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let sent = DeliveryOutcome::Sent {
        reference: "ref-1".into(),
        detail: "accepted".into(),
    };
    let failed = DeliveryOutcome::Failed {
        error: "gateway busy".into(),
        retry_at: now() + Duration::hours(1),
    };
    let recorded = db
        .store
        .finish_notices(
            &[
                (claimed[0].id.as_str(), &sent),
                (claimed[1].id.as_str(), &failed),
            ],
            &first,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(recorded, [true, true]);
    let a = db.store.get_notice(&claimed[0].id).await.unwrap();
    assert_eq!(
        (a.state.as_str(), a.receipt_reference.as_str()),
        ("sent", "ref-1")
    );
    let sent_attempts = db.store.notice_attempts(&claimed[0].id).await.unwrap();
    assert_eq!(sent_attempts.len(), 1);
    assert_eq!(
        (
            sent_attempts[0].outcome.as_str(),
            sent_attempts[0].detail.as_str()
        ),
        ("sent", "ref-1: accepted")
    );
    assert!(sent_attempts[0].finished_at.is_some());
    let b = db.store.get_notice(&claimed[1].id).await.unwrap();
    assert_eq!(
        (b.state.as_str(), b.last_error.as_str()),
        ("failed", "gateway busy")
    );
    let attempts = db.store.notice_attempts(&claimed[1].id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "failed");
    assert!(attempts[0].finished_at.is_some());

    // The third is claimed by another dispatcher; an outcome under the first one's
    // name changes nothing, and a batch mixing it with a notice already finished
    // records only the one still owned.
    let (second, rest) = db.store.claim_notices(5, lease, now()).await.unwrap();
    assert_eq!(rest.len(), 1, "the failed notice is not due for an hour");
    let c = &rest[0].id;
    assert_eq!(
        db.store
            .finish_notices(&[(c.as_str(), &sent)], &first, now())
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(db.store.get_notice(c).await.unwrap().state, "sending");
    assert_eq!(
        db.store
            .finish_notices(
                &[(claimed[0].id.as_str(), &sent), (c.as_str(), &sent)],
                &second,
                now()
            )
            .await
            .unwrap(),
        [false, true]
    );
    assert_eq!(db.store.get_notice(c).await.unwrap().state, "sent");
    let c_attempts = db.store.notice_attempts(c).await.unwrap();
    assert_eq!(
        c_attempts
            .iter()
            .map(|a| (
                a.outcome.as_str(),
                a.detail.as_str(),
                a.finished_at.is_some()
            ))
            .collect::<Vec<_>>(),
        [("sent", "ref-1: accepted", true)],
        "the open attempt of the notice recorded is closed with the channel's answer"
    );
    assert_eq!(
        db.store.get_notice(&claimed[0].id).await.unwrap(),
        a,
        "a notice another owner finished is left as it was"
    );
    assert_eq!(
        db.store.notice_attempts(&claimed[0].id).await.unwrap(),
        sent_attempts,
        "and so are its attempts"
    );
}

/// The notifier reads a batch's cases in one read, and the subscription feed looks up
/// a batch's providers in one: absent ids are simply not returned, ended
/// subscriptions do not count, and an oversized batch is refused by name.
async fn cases_and_subscribers_are_read_a_batch_at_a_time(db: &TestDb) {
    let mut tx = db.store.begin().await.unwrap();
    for id in ["PA-1", "PA-2", "PA-3"] {
        tx.insert_case(&case_record(id, &format!("k:{id}"), now(), None), now())
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let mut found: Vec<String> = db
        .store
        .get_cases(&["PA-3", "PA-9", "PA-1"])
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    found.sort();
    assert_eq!(found, ["PA-1", "PA-3"]);
    assert!(db.store.get_cases(&[]).await.unwrap().is_empty());
    let many: Vec<String> = (0..=carepath_store::CASES_PER_READ)
        .map(|i| format!("PA-{i}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(
        db.store.get_cases(&many).await,
        Err(StoreError::Invalid { field: "ids", .. })
    ));

    let mut tx = db.store.begin().await.unwrap();
    for (id, owner) in [("sub-a", "1111111111"), ("sub-b", "2222222222")] {
        tx.insert_subscription(
            &NewSubscriptionRecord {
                id: id.into(),
                owner_npi: owner.into(),
                topic: "topic".into(),
                endpoint: "https://ehr.example/hook".into(),
                content: "id-only".into(),
                header: None,
                created_by: format!("npi:{owner}"),
            },
            now(),
        )
        .await
        .unwrap();
    }
    assert!(tx.end_subscription("sub-b", now()).await.unwrap());
    tx.commit().await.unwrap();
    let subscribed = db
        .store
        .subscribed_owners(&["1111111111", "2222222222", "3333333333"])
        .await
        .unwrap();
    assert_eq!(subscribed, HashSet::from(["1111111111".to_owned()]));
    assert!(db.store.subscribed_owners(&[]).await.unwrap().is_empty());
}

/// The lease of a periodic job goes to one holder at a time, passes on only once it
/// has run out or been given up, and each period's run is recorded once.
async fn a_periodic_job_has_one_holder_and_each_period_runs_once(db: &TestDb) {
    let s = &db.store;
    let t0: DateTime<Utc> = "2026-12-07T04:00:00Z".parse().unwrap();
    let lease = Duration::seconds(3);
    let job = "precert.sweeps";
    assert!(s.hold_job(job, "a", t0 + lease, t0).await.unwrap());
    // Another process is refused while the lease lasts; the holder renews it.
    let t1 = t0 + Duration::seconds(1);
    assert!(!s.hold_job(job, "b", t1 + lease, t1).await.unwrap());
    assert!(s.hold_job(job, "a", t1 + lease, t1).await.unwrap());
    let t3 = t0 + Duration::seconds(3);
    assert!(
        !s.hold_job(job, "b", t3 + lease, t3).await.unwrap(),
        "renewed until t1 + 3 s"
    );
    assert_eq!(s.job_holder(job).await.unwrap().unwrap().0, "a");
    // Once it has run out, another takes it; the old holder is then refused.
    let t5 = t0 + Duration::seconds(5);
    assert!(s.hold_job(job, "b", t5 + lease, t5).await.unwrap());
    assert!(!s.hold_job(job, "a", t5 + lease, t5).await.unwrap());
    // Given up, it goes to the next who asks, expired or not; a non-holder cannot give it up.
    s.release_job(job, "a").await.unwrap();
    assert_eq!(s.job_holder(job).await.unwrap().unwrap().0, "b");
    s.release_job(job, "b").await.unwrap();
    assert!(s.job_holder(job).await.unwrap().is_none());
    assert!(s.hold_job(job, "a", t5 + lease, t5).await.unwrap());
    // Other jobs have leases of their own.
    assert!(
        s.hold_job("secondopinion.records", "b", t5 + lease, t5)
            .await
            .unwrap()
    );

    // A period runs once, whoever records it first.
    assert!(s.record_job_run(job, 7, "a", t0).await.unwrap());
    assert!(!s.record_job_run(job, 7, "b", t1).await.unwrap());
    assert!(s.record_job_run(job, 8, "b", t1).await.unwrap());
    assert!(
        s.record_job_run("secondopinion.records", 7, "b", t1)
            .await
            .unwrap()
    );
    let runs = s.job_runs(job, 0, 10).await.unwrap();
    let seen: Vec<(i64, &str)> = runs.iter().map(|r| (r.period, r.holder.as_str())).collect();
    assert_eq!(seen, [(7, "a"), (8, "b")]);
    assert_eq!(runs[0].started_at, t0);
    assert_eq!(s.job_runs(job, 8, 10).await.unwrap().len(), 1);
    // Old runs go as new ones are recorded.
    let later = 8 + carepath_store::JOB_RUNS_KEPT;
    assert!(s.record_job_run(job, later, "b", t5).await.unwrap());
    let kept: Vec<i64> = s
        .job_runs(job, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.period)
        .collect();
    assert_eq!(kept, [8, later]);
}
