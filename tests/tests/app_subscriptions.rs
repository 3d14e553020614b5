//! FHIR subscriptions without HTTP routes: `carepath_app::subscriptions` called
//! directly, the feed run over the outbox, and notifications POSTed to a tiny
//! endpoint on 127.0.0.1 inside the test.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use carepath_app::{
    AppError, Caller, PageRequest,
    outbox::{ConsumerOptions, EventHandler, process_batch},
    precert::{Adverse, CaseView, Decision, Precert, PrecertEngine, SubmitRequest},
    subscriptions::{
        DeliveryOptions, NewSubscription, Notification, NotificationState, PAS_TOPIC,
        PayloadContent, RenderNotification, Subscription, SubscriptionDeliveries, SubscriptionFeed,
        SubscriptionState, Subscriptions,
    },
};
use carepath_core::{
    Actor, Clock, FixedClock, Icd10Code, MemberId, Npi, Role, ServiceCode, Setting, Urgency,
};
use carepath_precert::{Admission, Answer, CaseState, RecordRef, ServiceLine};
use carepath_tests::{
    TestDb, contract_tests,
    precert::{IMAGING_IN, INTERNIST, MEMBER},
    test_start,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

contract_tests!(
    providers_subscribe_for_themselves_only,
    decisions_after_submission_become_numbered_notifications_once,
    a_notification_is_posted_with_its_header_and_rendered_body,
    a_failing_endpoint_is_retried_then_dead,
    with_allowed_hosts_only_their_endpoints_may_be_subscribed,
);

struct Fixture {
    precert: Precert,
    subscriptions: Subscriptions,
    app: carepath_app::context::App,
    clock: Arc<FixedClock>,
    _keys: tempfile::TempDir,
}

async fn fixture(db: &TestDb) -> Fixture {
    let keys = tempfile::tempdir().expect("temp dir");
    let mut app = carepath_tests::demo_app(db, &keys).await;
    let clock = Arc::new(FixedClock::new(test_start()));
    app.clock = clock.clone() as Arc<dyn Clock>;
    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    Fixture {
        precert: Precert::new(app.clone(), engine),
        subscriptions: Subscriptions::new(app.clone()),
        app,
        clock,
        _keys: keys,
    }
}

fn caller(role: Role, subject: &str, operation: &str) -> Caller {
    Caller::new(Actor::new(role, subject).expect("actor"), operation)
}

fn subscribe(endpoint: &str) -> NewSubscription {
    NewSubscription {
        topic: PAS_TOPIC.into(),
        endpoint: endpoint.into(),
        content: PayloadContent::FullResource,
        header: None,
        filter_npi: None,
    }
}

fn fields(result: Result<Subscription, AppError>) -> Vec<String> {
    match result {
        Err(AppError::Invalid(invalid)) => {
            invalid.violations.iter().map(|v| v.field.clone()).collect()
        }
        other => panic!("expected invalid input, got {other:?}"),
    }
}

/// A routine brain MRI without red flags after two weeks of conservative therapy:
/// pended for clinical review.
fn pended_mri(request_id: &str) -> SubmitRequest {
    SubmitRequest {
        request_id: request_id.into(),
        member_id: MemberId::parse(MEMBER).unwrap(),
        requesting_npi: Npi::parse(IMAGING_IN).unwrap(),
        servicing_npi: Npi::parse(IMAGING_IN).unwrap(),
        lines: vec![ServiceLine {
            code: ServiceCode::parse("70553").unwrap(),
            units: 1,
            date_of_service: "2026-12-01".parse().unwrap(),
            setting: Setting::Outpatient,
            facility_kind: None,
            length_of_stay_hours: None,
            delivery: None,
            admission: Admission::Elective,
        }],
        diagnoses: vec![Icd10Code::parse("G43.909").unwrap()],
        urgency: Urgency::Routine,
        answers: vec![
            ("red_flag_symptoms".into(), Answer::Bool(false)),
            ("conservative_therapy_weeks".into(), Answer::Number(2.0)),
        ],
        records: vec![RecordRef {
            id: "rec-1".into(),
            document: "clinical_notes".into(),
        }],
        coverage_assertions: Vec::new(),
    }
}

fn denial() -> Adverse {
    Adverse {
        reason_code: "not_medically_necessary".into(),
        rationale: "Six weeks of conservative therapy come first.".into(),
        guideline: "IMG-MRI".into(),
    }
}

impl Fixture {
    /// A pended request, claimed and denied by a radiologist; returns the case id.
    async fn denied_case(&self, request_id: &str) -> String {
        let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
        let filed = self
            .precert
            .submit(&provider, pended_mri(request_id))
            .await
            .expect("submit");
        assert_eq!(filed.case.case.state, CaseState::PendedReview);
        let id = filed.case.case.id.clone();
        self.clock.advance(chrono::Duration::minutes(30));
        let reviewer = caller(Role::PhysicianReviewer, "MD-RAD-01", "test:review");
        self.precert.claim(&reviewer, &id).await.expect("claim");
        let denied = self
            .precert
            .decide(&reviewer, &id, Decision::Deny(denial()))
            .await
            .expect("deny");
        assert_eq!(denied.case.state, CaseState::Denied);
        id
    }

    /// Runs the feed over every outbox event it has not handled yet.
    async fn run_feed(&self) {
        let feed = SubscriptionFeed::new(&self.app);
        let options = ConsumerOptions::default();
        while process_batch(
            &self.app.store,
            self.app.clock.as_ref(),
            &feed,
            &options,
            chrono::Duration::seconds(60),
        )
        .await
        .expect("feed round")
            > 0
        {}
    }

    async fn notifications(&self, subscription: &str) -> Vec<Notification> {
        self.app
            .store
            .list_notifications(subscription, 0, 100)
            .await
            .expect("notifications")
            .into_iter()
            .map(|r| Notification::from_record(r).expect("readable"))
            .collect()
    }
}

async fn providers_subscribe_for_themselves_only(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:subscribe");
    let created = f
        .subscriptions
        .create(&provider, subscribe("https://ehr.example.org/hook"))
        .await
        .expect("create");
    assert_eq!(created.status, SubscriptionState::Active);
    assert_eq!(created.owner_npi.as_str(), IMAGING_IN);
    assert_eq!(created.events_since_start, 0);

    // Naming its own NPI in the filter is the same as naming none.
    let mut own = subscribe("https://ehr.example.org/hook2");
    own.filter_npi = Some(Npi::parse(IMAGING_IN).unwrap());
    own.header = Some("Authorization: Bearer abc".into());
    own.content = PayloadContent::IdOnly;
    let second = f
        .subscriptions
        .create(&provider, own)
        .await
        .expect("own NPI");
    assert_eq!(second.header.as_deref(), Some("Authorization: Bearer abc"));
    assert_eq!(second.content, PayloadContent::IdOnly);

    let mut other = subscribe("https://ehr.example.org/hook");
    other.filter_npi = Some(Npi::parse(INTERNIST).unwrap());
    assert_eq!(
        fields(f.subscriptions.create(&provider, other).await),
        ["criteria"]
    );
    let mut topic = subscribe("https://ehr.example.org/hook");
    topic.topic = "http://example.org/SubscriptionTopic/other".into();
    assert_eq!(
        fields(f.subscriptions.create(&provider, topic).await),
        ["criteria"]
    );
    for bad in ["not a url", "ftp://ehr.example.org/hook", "/relative/hook"] {
        assert_eq!(
            fields(f.subscriptions.create(&provider, subscribe(bad)).await),
            ["channel.endpoint"],
            "{bad}"
        );
    }
    let mut header = subscribe("https://ehr.example.org/hook");
    header.header = Some("X-Key: a\nX-Other: b".into());
    assert_eq!(
        fields(f.subscriptions.create(&provider, header).await),
        ["channel.header"]
    );

    // Members and staff do not subscribe.
    let member = caller(Role::Member, MEMBER, "test:subscribe");
    let refused = f
        .subscriptions
        .create(&member, subscribe("https://e.org/h"))
        .await;
    assert!(
        matches!(refused, Err(AppError::PermissionDenied(_))),
        "{refused:?}"
    );

    // Only its provider (and staff) see it; another provider is told it does not exist.
    let seen = f
        .subscriptions
        .get(&provider, &created.id)
        .await
        .expect("get");
    assert_eq!(seen, created);
    let outsider = caller(Role::Provider, INTERNIST, "test:read");
    let hidden = f.subscriptions.get(&outsider, &created.id).await;
    assert!(
        matches!(hidden, Err(AppError::NotFound { .. })),
        "{hidden:?}"
    );
    let hidden = f.subscriptions.delete(&outsider, &created.id).await;
    assert!(
        matches!(hidden, Err(AppError::NotFound { .. })),
        "{hidden:?}"
    );
    let nurse = caller(Role::Nurse, "RN-001", "test:read");
    f.subscriptions
        .get(&nurse, &created.id)
        .await
        .expect("staff see it");

    // At most twenty live subscriptions per provider; ending one makes room.
    for i in 2..20 {
        f.subscriptions
            .create(
                &provider,
                subscribe(&format!("https://ehr.example.org/h{i}")),
            )
            .await
            .expect("under the cap");
    }
    let over = f
        .subscriptions
        .create(&provider, subscribe("https://ehr.example.org/h20"))
        .await;
    assert!(
        matches!(over, Err(AppError::FailedPrecondition(_))),
        "{over:?}"
    );
    let ended = f
        .subscriptions
        .delete(&provider, &created.id)
        .await
        .expect("delete");
    assert_eq!(ended.status, SubscriptionState::Off);
    assert!(ended.ended_at.is_some());
    let status = f
        .subscriptions
        .status(&provider, &created.id)
        .await
        .expect("status");
    assert_eq!(status.status, SubscriptionState::Off);
    f.subscriptions
        .create(&provider, subscribe("https://ehr.example.org/h20"))
        .await
        .expect("room again");
    let page = f
        .subscriptions
        .list(
            &provider,
            PageRequest {
                token: String::new(),
                size: 50,
            },
        )
        .await
        .expect("list");
    assert_eq!(page.items.len(), 21);
}

async fn decisions_after_submission_become_numbered_notifications_once(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:subscribe");
    let sub = f
        .subscriptions
        .create(&provider, subscribe("https://ehr.example.org/hook"))
        .await
        .expect("create");
    // Another provider's subscription hears nothing of this request.
    let internist = caller(Role::Provider, INTERNIST, "test:subscribe");
    let unrelated = f
        .subscriptions
        .create(&internist, subscribe("https://clinic.example.org/hook"))
        .await
        .expect("create");

    let case_id = f.denied_case("subs-1").await;
    f.run_feed().await;
    let first = f.notifications(&sub.id).await;
    // The submission's own outcome (pended for review) and the claim are not notified;
    // the denial is event 1.
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].event_number, 1);
    assert_eq!(first[0].event_kind, "precert.case.denied");
    assert_eq!(first[0].case_id, case_id);
    assert_eq!(first[0].state, NotificationState::Pending);
    assert!(f.notifications(&unrelated.id).await.is_empty());

    // The appeal's decision is event 2.
    f.clock.advance(chrono::Duration::hours(2));
    f.precert
        .appeal(&provider, &case_id, false, "The pain is getting worse.")
        .await
        .expect("appeal");
    let second_reviewer = caller(Role::PhysicianReviewer, "MD-RAD-02", "test:appeal");
    let overturned = Adverse {
        rationale: "New findings justify imaging now.".into(),
        ..denial()
    };
    f.precert
        .decide_appeal(&second_reviewer, &case_id, true, overturned)
        .await
        .expect("decide appeal");
    f.run_feed().await;
    let both = f.notifications(&sub.id).await;
    assert_eq!(
        both.iter()
            .map(|n| (n.event_number, n.event_kind.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "precert.case.denied"),
            (2, "precert.case.appeal_decided")
        ]
    );

    // A redelivered event adds nothing and does not move the count.
    let feed = SubscriptionFeed::new(&f.app);
    let events = db
        .store
        .events_for("precert_case", &case_id)
        .await
        .expect("events");
    for event in &events {
        feed.handle(event).await.expect("handled again");
    }
    assert_eq!(f.notifications(&sub.id).await.len(), 2);
    let status = f
        .subscriptions
        .status(&provider, &sub.id)
        .await
        .expect("status");
    assert_eq!(status.events_since_start, 2);
    assert_eq!(status.status, SubscriptionState::Active);
}

/// What the test endpoint saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// A tiny HTTP endpoint on 127.0.0.1 answering every request with `status`.
struct Endpoint {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    async fn start(status: u16) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let status = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (status.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    let (head_end, length) = loop {
                        let n = socket.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while data.len() < head_end + length {
                        let n = socket.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        data.extend_from_slice(&buf[..n]);
                    }
                    log.lock().unwrap().push(Seen {
                        head: String::from_utf8_lossy(&data[..head_end]).to_lowercase(),
                        body: data[head_end..].to_vec(),
                    });
                    let code = answer.load(Ordering::SeqCst);
                    let reply = format!(
                        "HTTP/1.1 {code} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Endpoint {
            addr,
            status,
            seen,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/fhir/notify", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Renders a line naming the subscription, the event number and the case it was
/// given, so the test can tell what the renderer saw.
struct TestRenderer;

impl RenderNotification for TestRenderer {
    fn render(
        &self,
        subscription: &Subscription,
        notification: &Notification,
        case: Option<&CaseView>,
    ) -> Vec<u8> {
        format!(
            "{}|{}|{}",
            subscription.id,
            notification.event_number,
            case.map_or("-", |c| c.case.id.as_str())
        )
        .into_bytes()
    }
}

fn deliveries(f: &Fixture, max_attempts: i32) -> SubscriptionDeliveries {
    SubscriptionDeliveries::new(
        f.app.clone(),
        Arc::new(TestRenderer),
        DeliveryOptions {
            max_attempts,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            timeout: Duration::from_secs(5),
            ..DeliveryOptions::default()
        },
    )
    .expect("deliveries")
}

async fn a_notification_is_posted_with_its_header_and_rendered_body(db: &TestDb) {
    let f = fixture(db).await;
    let endpoint = Endpoint::start(200).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:subscribe");
    let mut new = subscribe(&endpoint.url());
    new.header = Some("X-Carepath-Key: s3cret".into());
    let sub = f
        .subscriptions
        .create(&provider, new)
        .await
        .expect("create");
    let case_id = f.denied_case("subs-2").await;
    f.run_feed().await;

    let sent = deliveries(&f, 10);
    assert_eq!(sent.deliver_due().await.expect("deliver"), 1);
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].head.starts_with("post /fhir/notify "),
        "{}",
        seen[0].head
    );
    assert!(
        seen[0].head.contains("content-type: application/fhir+json"),
        "{}",
        seen[0].head
    );
    assert!(
        seen[0].head.contains("x-carepath-key: s3cret"),
        "{}",
        seen[0].head
    );
    assert_eq!(
        String::from_utf8(seen[0].body.clone()).unwrap(),
        format!("{}|1|{case_id}", sub.id)
    );
    let stored = f.notifications(&sub.id).await;
    assert_eq!(stored[0].state, NotificationState::Delivered);
    assert!(stored[0].delivered_at.is_some());
    // Nothing is left to send.
    assert_eq!(sent.deliver_due().await.expect("deliver"), 0);

    // The disclosure of the case is audited under the delivery service, naming the
    // subscription.
    let audited = db
        .store
        .search_audit(
            &carepath_store::AuditQuery {
                subject: Some("fhir-subscriptions".into()),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .expect("audit");
    assert!(
        audited.iter().any(|a| a.entry.record_id == case_id
            && a.entry.rpc == format!("notify Subscription/{}", sub.id)),
        "{audited:?}"
    );
}

async fn a_failing_endpoint_is_retried_then_dead(db: &TestDb) {
    let f = fixture(db).await;
    let endpoint = Endpoint::start(500).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:subscribe");
    let sub = f
        .subscriptions
        .create(&provider, subscribe(&endpoint.url()))
        .await
        .expect("create");
    f.denied_case("subs-3").await;
    f.run_feed().await;

    let sent = deliveries(&f, 3);
    assert_eq!(sent.deliver_due().await.expect("first try"), 1);
    let status = f
        .subscriptions
        .status(&provider, &sub.id)
        .await
        .expect("status");
    assert_eq!(status.status, SubscriptionState::Error);
    assert_eq!(
        status.last_error.as_deref(),
        Some("the endpoint answered HTTP 500")
    );
    // Not due again until its backoff has passed.
    assert_eq!(sent.deliver_due().await.expect("not yet"), 0);
    for _ in 0..2 {
        f.clock.advance(chrono::Duration::seconds(1));
        assert_eq!(sent.deliver_due().await.expect("retry"), 1);
    }
    assert_eq!(endpoint.seen().len(), 3);
    let stored = f.notifications(&sub.id).await;
    assert_eq!(stored[0].state, NotificationState::Dead);
    assert_eq!(stored[0].attempts, 3);
    f.clock.advance(chrono::Duration::hours(1));
    assert_eq!(sent.deliver_due().await.expect("dead stays dead"), 0);

    let admin = caller(Role::Admin, "AD-001", "test:dead");
    let dead = f
        .subscriptions
        .dead_notifications(&admin, PageRequest::default())
        .await
        .expect("dead list");
    assert_eq!(dead.items.len(), 1);
    assert_eq!(dead.items[0].subscription_id, sub.id);
    let refused = f
        .subscriptions
        .dead_notifications(&provider, PageRequest::default())
        .await;
    assert!(
        matches!(refused, Err(AppError::PermissionDenied(_))),
        "{refused:?}"
    );

    // A later success makes the subscription active again.
    endpoint.status.store(200, Ordering::SeqCst);
    let reviewer_case = f.denied_case("subs-4").await;
    f.run_feed().await;
    assert_eq!(sent.deliver_due().await.expect("deliver"), 1);
    let status = f
        .subscriptions
        .status(&provider, &sub.id)
        .await
        .expect("status");
    assert_eq!(status.status, SubscriptionState::Active);
    assert_eq!(status.last_error, None);
    assert_eq!(status.events_since_start, 2);
    let last = f.notifications(&sub.id).await;
    assert_eq!(last[1].case_id, reviewer_case);
    assert_eq!(last[1].state, NotificationState::Delivered);
}

async fn with_allowed_hosts_only_their_endpoints_may_be_subscribed(db: &TestDb) {
    let f = fixture(db).await;
    let subscriptions = f
        .subscriptions
        .clone()
        .with_allowed_hosts(vec!["ehr.example".into()]);
    let provider = caller(Role::Provider, IMAGING_IN, "test:subscribe");
    for refused in [
        "http://127.0.0.1:9999/notify",
        "https://evil-ehr.example/notify",
        "https://ehr.example.attacker.test/notify",
    ] {
        assert_eq!(
            fields(subscriptions.create(&provider, subscribe(refused)).await),
            ["channel.endpoint"],
            "{refused}"
        );
    }
    let created = subscriptions
        .create(&provider, subscribe("https://hooks.ehr.example/pas"))
        .await
        .expect("a subdomain of an allowed host");
    assert_eq!(created.endpoint, "https://hooks.ehr.example/pas");
    // Nothing was stored for the refusals.
    let mine = subscriptions
        .list(&provider, PageRequest::default())
        .await
        .expect("list");
    assert_eq!(mine.items.len(), 1);
}
