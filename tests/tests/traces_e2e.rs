//! Traces over OTLP from the real binaries: a collector in the test (OTLP/HTTP,
//! protobuf, decoded with `opentelemetry-proto`) receives the spans of `carepath
//! serve --otlp-endpoint`. A submission sent with a W3C `traceparent`, over gRPC or
//! through the FHIR door's PAS `$submit`, is one trace with the call, the outbox
//! hand-off of the event it stored and the delivery of the notice that event caused,
//! minutes apart in real life; and no span carries the member's data. An approved
//! hospital stay submitted to the precertification service alone is referred to case
//! management later, by the case service started once the first has stopped: the
//! referral, and the events of the case it opens, belong to the submission's trace.
//! On SQLite and PostgreSQL: the context is stored with the event.

use std::{
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use carepath_app::auth::Authenticator;
use carepath_core::{Actor, Role};
use carepath_proto::precert::v1 as pb;
use carepath_tests::{
    TestDb, contract_tests,
    fhir::{example_bundle, fhir_addr, registered_client_token},
    notify_support::{FaxGateway, SmtpServer, free_port},
    precert::{HOSPITAL, IMAGING_IN, MEMBER, client, flag, mri},
    process::{ServerProcess, binary},
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};
use prost::Message;

contract_tests!(
    one_trace_holds_the_call_the_hand_off_and_the_notice,
    a_fhir_submission_is_one_trace_with_its_hand_off_and_notice,
    a_referral_opened_later_by_another_process_joins_the_submission_trace,
);

/// The trace the caller sends (`traceparent` of version 00, sampled).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The caller's span, the parent the call's span must name.
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// Long enough for a loaded machine; the spans of a healthy run arrive in seconds.
const SPANS_DEADLINE: Duration = Duration::from_secs(60);

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

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

/// `carepath serve` (every area, both doors) exporting to `endpoint`, its notices
/// going to the test's mail server, fax gateway and print folder, all under `dir`.
struct Served {
    server: ServerProcess,
    smtp: SmtpServer,
    fax: FaxGateway,
}

fn serve(db: &TestDb, dir: &std::path::Path, endpoint: &str) -> Served {
    signing_key(dir);
    let smtp = SmtpServer::start(free_port(), &dir.join("smtp"), Duration::ZERO);
    let fax = FaxGateway::start(&dir.join("fax"));
    let mut command = Command::new(binary("carepath", Some("--otlp-endpoint")));
    command
        .args(["serve", "--demo", "--database-url", &db.url])
        .arg("--signing-key")
        .arg(dir.join("signing.pem"))
        .arg("--records-dir")
        .arg(dir.join("records"))
        .arg("--print-batch-dir")
        .arg(dir.join("print"))
        .args(["--smtp-port", &smtp.port.to_string()])
        .args(["--fax-gateway-url", &fax.url])
        .args(["--otlp-endpoint", endpoint])
        // Export batches every tenth of a second instead of every five.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let server = ServerProcess::start("carepath", command);
    Served { server, smtp, fax }
}

/// The token signing key the servers share, made in `dir` if it is not there yet.
fn signing_key(dir: &std::path::Path) -> Authenticator {
    Authenticator::with_local_key(&dir.join("signing.pem")).expect("signing key")
}

/// A bearer token for `subject` in `role`, signed with the key in `dir`.
fn token(dir: &std::path::Path, role: Role, subject: &str) -> String {
    signing_key(dir)
        .mint(
            &Actor::new(role, subject).expect("actor"),
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("token")
}

/// `message` with `token` as its bearer and the caller's trace context.
fn traced<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    metadata.insert("traceparent", traceparent().parse().expect("ascii"));
    request
}

/// The spans of the caller's trace once `complete` holds for them; fails after
/// [`SPANS_DEADLINE`] naming every span received.
async fn trace_once(received: &Received, complete: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let deadline = Instant::now() + SPANS_DEADLINE;
    loop {
        let spans = received.lock().expect("lock").clone();
        let ours: Vec<Span> = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == TRACE_ID)
            .cloned()
            .collect();
        if complete(&ours) {
            return ours;
        }
        assert!(
            Instant::now() < deadline,
            "after {SPANS_DEADLINE:?} the trace {TRACE_ID} is incomplete; spans received: {:#?}",
            spans
                .iter()
                .map(|s| format!(
                    "{} {} parent {} {:?}",
                    s.name,
                    hex(&s.trace_id),
                    hex(&s.parent_span_id),
                    everything_in(s)
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The span named `name` whose attribute `key` is `value`, if the trace has one.
fn span_with<'a>(spans: &'a [Span], name: &str, key: &str, value: &str) -> Option<&'a Span> {
    spans
        .iter()
        .find(|s| s.name == name && attribute(s, key).as_deref() == Some(value))
}

/// The hand-off of an event to the notifier and the delivery of a notice, both in
/// the trace below spans of the call: checks them, and that the case's notices were
/// sent through the channels that took them.
async fn assert_handed_off_and_sent(
    db: &TestDb,
    served: &Served,
    dir: &std::path::Path,
    spans: &[Span],
    case_id: &str,
) {
    let handoff = span_with(spans, "outbox.handoff", "consumer", "notify").expect("a hand-off");
    let notice = spans.iter().find(|s| s.name == "notice").expect("a notice");
    assert_ne!(hex(&handoff.parent_span_id), CALLER_SPAN);
    assert!(
        !handoff.parent_span_id.is_empty() && !notice.parent_span_id.is_empty(),
        "the later work hangs under spans of the call"
    );
    // The notice whose delivery the trace holds went out: the case's notices are
    // recorded sent (by the channel that took each: email, fax, letter or portal).
    let sent_deadline = Instant::now() + Duration::from_secs(30);
    let channels: Vec<String> = loop {
        let channels: Vec<String> = carepath_store::on_db!(&db.store, c => sqlx::query_scalar(
            "SELECT n.channel FROM notice n JOIN outbox_event e ON e.id = n.event_id
             WHERE e.aggregate_id = $1 AND n.state = 'sent'")
            .bind(case_id).fetch_all(c).await)
        .expect("channels read");
        if !channels.is_empty() || Instant::now() > sent_deadline {
            break channels;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!channels.is_empty(), "no notice of case {case_id} was sent");
    // Each channel the notices took holds what it was given.
    for channel in &channels {
        match channel.as_str() {
            "email" => assert!(!served.smtp.messages().is_empty(), "an email was sent"),
            "fax" => assert!(!served.fax.faxes().is_empty(), "a fax was sent"),
            "mail" => assert!(
                std::fs::read_dir(dir.join("print").join("letters"))
                    .expect("letters folder")
                    .flatten()
                    .any(|f| f.path().extension().is_some_and(|x| x == "pdf")),
                "a letter was printed"
            ),
            _ => {}
        }
    }
}

/// No span, attribute or event of any trace names the member.
fn assert_no_member_data(received: &Received) {
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
}

async fn one_trace_holds_the_call_the_hand_off_and_the_notice(db: &TestDb) {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let served = serve(db, dir.path(), &endpoint);
    let mut c = client(served.server.channel().await);

    let provider = token(dir.path(), Role::Provider, IMAGING_IN);
    let mut submission = mri("req-traced-1", vec![flag("red_flag_symptoms", true)]);
    let in_a_week = chrono::Utc::now().date_naive() + chrono::Duration::days(7);
    submission.lines[0].date_of_service = in_a_week.to_string();
    let case = c
        .submit(traced(&provider, submission))
        .await
        .expect("submitted")
        .into_inner()
        .case
        .expect("case");
    assert!(!case.id.is_empty());

    // The call, the hand-off of its events to the notifier, and a notice delivered.
    let spans = trace_once(&received, |spans| {
        spans.iter().any(|s| s.name == "rpc")
            && span_with(spans, "outbox.handoff", "consumer", "notify").is_some()
            && spans.iter().any(|s| s.name == "notice")
    })
    .await;
    let call = spans.iter().find(|s| s.name == "rpc").expect("the call");
    assert_eq!(
        hex(&call.parent_span_id),
        CALLER_SPAN,
        "the call continues the caller's span"
    );
    assert_eq!(
        attribute(call, "method").as_deref(),
        Some("/carepath.precert.v1.PrecertService/Submit")
    );
    assert_handed_off_and_sent(db, &served, dir.path(), &spans, &case.id).await;
    assert_no_member_data(&received);
    drop(served);
}

/// A PAS request Bundle posted to `Claim/$submit` with a `traceparent`, by a SMART
/// backend client with its token: the FHIR door's span continues the caller's, and
/// the event the submission stored is handed off and its notice delivered in the
/// same trace.
async fn a_fhir_submission_is_one_trace_with_its_hand_off_and_notice(db: &TestDb) {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let served = serve(db, dir.path(), &endpoint);
    let fhir = fhir_addr(&served.server);
    let http = reqwest::Client::new();
    let token = registered_client_token(
        db,
        dir.path(),
        &http,
        fhir,
        "clearview-imaging",
        IMAGING_IN,
        "system/Claim.cr",
    )
    .await;

    let bundle = example_bundle("pas-mri-approved.json", "fhir-traced-1");
    let response = http
        .post(format!("http://{fhir}/fhir/Claim/$submit"))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .header("traceparent", traceparent())
        .body(bundle.to_string())
        .send()
        .await
        .expect("$submit");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("a Bundle");
    let case_id = answer["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no ClaimResponse id in {answer}"))
        .to_owned();

    let submit_route = "/fhir/Claim/$submit";
    let spans = trace_once(&received, |spans| {
        span_with(spans, "http", "route", submit_route).is_some()
            && span_with(spans, "outbox.handoff", "consumer", "notify").is_some()
            && spans.iter().any(|s| s.name == "notice")
    })
    .await;
    let call = span_with(&spans, "http", "route", submit_route).expect("the call");
    assert_eq!(
        hex(&call.parent_span_id),
        CALLER_SPAN,
        "the FHIR call continues the caller's span"
    );
    assert!(
        !spans.iter().any(|s| s.name == "rpc"),
        "no gRPC call is part of a FHIR submission"
    );
    assert_handed_off_and_sent(db, &served, dir.path(), &spans, &case_id).await;
    assert_no_member_data(&received);
    drop(served);
}

/// A three-day planned stay, approved at once, a week from today.
fn hospital_stay(request_id: &str) -> pb::SubmitRequest {
    let mut stay = carepath_tests::precert::hospital_stay(request_id, 3);
    let in_a_week = chrono::Utc::now().date_naive() + chrono::Duration::days(7);
    stay.lines[0].date_of_service = in_a_week.to_string();
    stay
}

/// One thin service binary (`carepath-precert-server`, `carepath-cases-server`)
/// over `db`, exporting to `endpoint`; the first loads the demo directory.
fn thin(name: &str, db: &TestDb, dir: &std::path::Path, endpoint: &str) -> ServerProcess {
    signing_key(dir);
    let mut command = Command::new(binary(name, Some("--otlp-endpoint")));
    if name == "carepath-precert-server" {
        command.arg("--demo");
    }
    command
        .args(["--database-url", &db.url])
        .arg("--signing-key")
        .arg(dir.join("signing.pem"))
        .args(["--otlp-endpoint", endpoint])
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    ServerProcess::start(name, command)
}

/// The approval of a hospital stay, submitted with a `traceparent` to the
/// precertification service alone (which runs no case management), is referred to
/// case management by the case service started after the first has stopped: the
/// trace context came through the database. The referral's hand-off, the span the
/// case was opened in (under the hand-off) and the events of the opened case all
/// belong to the submission's trace.
async fn a_referral_opened_later_by_another_process_joins_the_submission_trace(db: &TestDb) {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // The case service has run on this database before: its consumer is subscribed,
    // so the approval waits for it in the outbox.
    db.store
        .subscribe(
            carepath_app::cases::referrals::CONSUMER,
            carepath_cases::REFERRAL_EVENT_KINDS,
        )
        .await
        .expect("subscribe the referral consumer");

    let precert = thin("carepath-precert-server", db, dir.path(), &endpoint);
    let mut c = client(precert.channel().await);
    let hospital = token(dir.path(), Role::Provider, HOSPITAL);
    let case = c
        .submit(traced(&hospital, hospital_stay("stay-traced-1")))
        .await
        .expect("submitted")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(case.status(), pb::CaseStatus::Approved, "{case:?}");
    trace_once(&received, |spans| spans.iter().any(|s| s.name == "rpc")).await;
    // Stopped (its queued spans exported) before the case service starts.
    precert.terminate();
    let pending = db
        .store
        .outbox_stats(carepath_app::cases::referrals::CONSUMER)
        .await
        .expect("outbox stats")
        .pending;
    assert!(pending > 0, "the approval waits for the case service");

    let cases = thin("carepath-cases-server", db, dir.path(), &endpoint);
    let referrals = carepath_app::cases::referrals::CONSUMER;
    // The event's span ends before its hand-off's, and may be exported in an earlier
    // batch: the trace is complete once both have arrived.
    let spans = trace_once(&received, |spans| {
        ["event", "outbox.handoff"].iter().all(|name| {
            spans.iter().any(|s| {
                s.name == *name
                    && attribute(s, "consumer").as_deref() == Some(referrals)
                    && attribute(s, "kind").as_deref() == Some("precert.case.approved")
            })
        })
    })
    .await;
    let call = spans.iter().find(|s| s.name == "rpc").expect("the call");
    assert_eq!(hex(&call.parent_span_id), CALLER_SPAN);
    let handoff = spans
        .iter()
        .find(|s| {
            s.name == "outbox.handoff"
                && attribute(s, "consumer").as_deref() == Some(referrals)
                && attribute(s, "kind").as_deref() == Some("precert.case.approved")
        })
        .expect("the referral's hand-off");
    assert!(!handoff.parent_span_id.is_empty());
    let opened_in = spans
        .iter()
        .find(|s| {
            s.name == "event"
                && attribute(s, "consumer").as_deref() == Some(referrals)
                && attribute(s, "kind").as_deref() == Some("precert.case.approved")
        })
        .expect("the referral's span");
    assert_eq!(
        opened_in.parent_span_id, handoff.span_id,
        "the referral is placed under its hand-off"
    );

    // The case it opened, and the trace context its events carry.
    let deadline = Instant::now() + SPANS_DEADLINE;
    let managed = loop {
        let open = db
            .store
            .list_managed_cases(
                &carepath_store::ManagedCaseFilter {
                    member_id: Some(MEMBER.into()),
                    ..Default::default()
                },
                "",
                50,
            )
            .await
            .expect("managed cases")
            .items;
        if let Some(managed) = open.into_iter().find(|m| m.kind == "transitions") {
            break managed;
        }
        assert!(Instant::now() < deadline, "no transition case was opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let contexts: Vec<(String, Option<String>)> =
        carepath_store::on_db!(&db.store, c => sqlx::query_as(
        "SELECT kind, trace_context FROM outbox_event WHERE aggregate_id = $1 ORDER BY seq")
        .bind(&managed.id).fetch_all(c).await)
        .expect("the case's events");
    assert!(!contexts.is_empty(), "the opened case has events");
    let expected = format!("00-{TRACE_ID}-{}-01", hex(&opened_in.span_id));
    for (kind, context) in &contexts {
        assert_eq!(
            context.as_deref(),
            Some(expected.as_str()),
            "{kind} of case {} carries the referral's span of the submission's trace",
            managed.id
        );
    }
    let _ = cases.terminate();
    assert_no_member_data(&received);
}
