//! Traces over OTLP from the real binary: a collector in the test (OTLP/HTTP,
//! protobuf, decoded with `opentelemetry-proto`) receives the spans of `carepath
//! serve --otlp-endpoint`. A submission sent with a W3C `traceparent` is one trace
//! with the call, the outbox hand-off of the event it stored and the delivery of the
//! notice that event caused, minutes apart in real life; and no span carries the
//! member's data. On SQLite and PostgreSQL: the context is stored with the event.

use std::{
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use carepath_app::auth::Authenticator;
use carepath_core::{Actor, Role};
use carepath_tests::{
    TestDb, contract_tests,
    notify_support::{FaxGateway, SmtpServer, free_port},
    precert::{IMAGING_IN, MEMBER, client, flag, mri},
    process::{ServerProcess, binary},
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};
use prost::Message;

contract_tests!(one_trace_holds_the_call_the_hand_off_and_the_notice);

/// The spans a collector received.
type Received = Arc<Mutex<Vec<Span>>>;

async fn collect(State(received): State<Received>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let spans = request
        .resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans);
    received.lock().expect("lock").extend(spans);
    (StatusCode::OK, Vec::new())
}

/// An OTLP/HTTP collector on a free port: its base URL and what it received.
async fn collector() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(received.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text_of(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text_of(&kv.value))
}

/// Every attribute of the span and of its events, as `key=value`.
fn everything_in(span: &Span) -> Vec<String> {
    let pairs = |kvs: &[KeyValue]| -> Vec<String> {
        kvs.iter()
            .map(|kv| format!("{}={}", kv.key, text_of(&kv.value)))
            .collect()
    };
    let mut all = vec![span.name.clone()];
    all.extend(pairs(&span.attributes));
    for event in &span.events {
        all.push(event.name.clone());
        all.extend(pairs(&event.attributes));
    }
    all
}

async fn one_trace_holds_the_call_the_hand_off_and_the_notice(db: &TestDb) {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(free_port(), &dir.path().join("smtp"), Duration::ZERO);
    let fax = FaxGateway::start(&dir.path().join("fax"));
    let key = dir.path().join("signing.pem");
    let auth = Authenticator::with_local_key(&key).expect("signing key");
    let mut command = Command::new(binary("carepath", Some("--otlp-endpoint")));
    command
        .args(["serve", "--demo", "--database-url", &db.url])
        .arg("--signing-key")
        .arg(&key)
        .arg("--records-dir")
        .arg(dir.path().join("records"))
        .arg("--print-batch-dir")
        .arg(dir.path().join("print"))
        .args(["--smtp-port", &smtp.port.to_string()])
        .args(["--fax-gateway-url", &fax.url])
        .args(["--otlp-endpoint", &endpoint])
        // Export batches every tenth of a second instead of every five.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let server = ServerProcess::start("carepath", command);
    let mut c = client(server.channel().await);

    let token = auth
        .mint(
            &Actor::new(Role::Provider, IMAGING_IN).expect("actor"),
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("token");
    let mut submission = mri("req-traced-1", vec![flag("red_flag_symptoms", true)]);
    let in_a_week = chrono::Utc::now().date_naive() + chrono::Duration::days(7);
    submission.lines[0].date_of_service = in_a_week.to_string();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(submission);
    let metadata = request.metadata_mut();
    metadata.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    metadata.insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01")
            .parse()
            .expect("ascii"),
    );
    let case = c
        .submit(request)
        .await
        .expect("submitted")
        .into_inner()
        .case
        .expect("case");
    assert!(!case.id.is_empty());

    // The call, the hand-off of its events to the notifier, and a notice delivered.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (call, handoff, notice) = loop {
        let spans = received.lock().expect("lock").clone();
        let ours: Vec<&Span> = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        let call = ours.iter().find(|s| s.name == "rpc").map(|s| (*s).clone());
        let handoff = ours
            .iter()
            .find(|s| {
                s.name == "outbox.handoff" && attribute(s, "consumer").as_deref() == Some("notify")
            })
            .map(|s| (*s).clone());
        let notice = ours
            .iter()
            .find(|s| s.name == "notice")
            .map(|s| (*s).clone());
        if let (Some(call), Some(handoff), Some(notice)) = (&call, &handoff, &notice) {
            break (call.clone(), handoff.clone(), notice.clone());
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s the trace {trace_id} has the call: {}, the hand-off: {}, a notice: {}; \
             spans received: {:?}",
            call.is_some(),
            handoff.is_some(),
            notice.is_some(),
            spans
                .iter()
                .map(|s| format!("{} {}", s.name, hex(&s.trace_id)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        hex(&call.parent_span_id),
        caller_span,
        "the call continues the caller's span"
    );
    assert_eq!(
        attribute(&call, "method").as_deref(),
        Some("/carepath.precert.v1.PrecertService/Submit")
    );
    assert_ne!(hex(&handoff.parent_span_id), caller_span);
    assert!(
        !handoff.parent_span_id.is_empty() && !notice.parent_span_id.is_empty(),
        "the later work hangs under spans of the call"
    );
    // The notice whose delivery the trace holds went out: the case's notices are
    // recorded sent (by the channel that took each: email, fax, letter or portal).
    let sent_deadline = Instant::now() + Duration::from_secs(30);
    let sent: i64 = loop {
        let sent: i64 = carepath_store::on_db!(&db.store, c => sqlx::query_scalar(
            "SELECT count(*) FROM notice n JOIN outbox_event e ON e.id = n.event_id
             WHERE e.aggregate_id = $1 AND n.state = 'sent'")
            .bind(&case.id).fetch_one(c).await)
        .expect("notices counted");
        if sent > 0 || Instant::now() > sent_deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(sent > 0, "no notice of case {} was sent", case.id);
    // Each channel the notices took holds what it was given.
    let channels: Vec<String> = carepath_store::on_db!(&db.store, c => sqlx::query_scalar(
        "SELECT n.channel FROM notice n JOIN outbox_event e ON e.id = n.event_id
         WHERE e.aggregate_id = $1 AND n.state = 'sent'")
        .bind(&case.id).fetch_all(c).await)
    .expect("channels read");
    for channel in &channels {
        match channel.as_str() {
            "email" => assert!(!smtp.messages().is_empty(), "an email was sent"),
            "fax" => assert!(!fax.faxes().is_empty(), "a fax was sent"),
            "mail" => assert!(
                std::fs::read_dir(dir.path().join("print").join("letters"))
                    .expect("letters folder")
                    .flatten()
                    .any(|f| f.path().extension().is_some_and(|x| x == "pdf")),
                "a letter was printed"
            ),
            _ => {}
        }
    }

    // No span, attribute or event names the member.
    let spans = received.lock().expect("lock").clone();
    let mut hits = Vec::new();
    for span in &spans {
        for item in everything_in(span) {
            for needle in [MEMBER, "Dana", "Whitcombe", "1971-04-12", "06106"] {
                if item.contains(needle) {
                    hits.push(format!("{}: {item}", span.name));
                }
            }
        }
    }
    assert!(hits.is_empty(), "spans carry member data: {hits:#?}");
    drop(server);
}
