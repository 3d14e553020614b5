//! Domain events on NATS JetStream, on both backends, against the real nats-server:
//! the real `carepath serve` takes 1,000 precertification submissions from many
//! clients, is killed with SIGKILL part way (its relay with it, holding a batch it may
//! have half published) and restarted on the same database. Then the stream holds
//! exactly one message per event of the outbox (by event id, each with `Nats-Msg-Id`
//! set to it), on `<prefix>.<kind>`, as a CloudEvent whose data is the catalogue's
//! projection, and each aggregate's events in outbox order.
//!
//! And while no NATS server answers, the server takes calls as ever and the events
//! wait in the outbox; once one starts, every event reaches the stream.
//!
//! Each run publishes to a stream and subject prefix of its own, deleted at the end.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use carepath_core::{Actor, DomainEvent, Role};
use carepath_proto::precert::v1::precert_service_client::PrecertServiceClient;
use carepath_server::auth::Authenticator;
use carepath_tests::{
    TestDb, contract_tests,
    load::{IMAGING, mri},
    nats::TestStream,
    notify_support::free_port,
    process::{ServerProcess, binary},
};
use tonic::{Request, transport::Channel};

contract_tests!(
    every_event_reaches_the_stream_once_in_order,
    events_wait_in_the_outbox_while_nats_is_away,
);

/// Submissions in all, before and after the kill.
const SUBMISSIONS: usize = 1000;
/// Acknowledged submissions before the kill.
const BEFORE_KILL: usize = 400;
const CLIENTS: usize = 16;
/// Leases of the restarted process: short, so the batch the killed relay held is
/// taken over in seconds.
const LEASE_SECS: &str = "2";
/// No step comes near this; reaching it means something was lost or hung.
const DEADLINE: Duration = Duration::from_secs(180);

fn start(db: &TestDb, dir: &Path, stream: &TestStream) -> ServerProcess {
    let mut command = Command::new(binary("carepath", Some("--nats-subject-prefix")));
    command
        .args(["serve", "--demo", "--database-url", &db.url])
        .arg("--signing-key")
        .arg(dir.join("signing.pem"))
        .arg("--records-dir")
        .arg(dir.join("records"))
        .arg("--print-batch-dir")
        .arg(dir.join("print"))
        .args(stream.flags())
        .args(["--event-lease-secs", LEASE_SECS])
        .args(["--rate-limit-per-caller", "0"])
        .args(["--max-calls-per-caller", "64"]);
    ServerProcess::start("carepath", command)
}

fn bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(Duration::from_secs(30));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// Submissions still to make, and those acknowledged.
#[derive(Default)]
struct Work {
    todo: Vec<usize>,
    done: Vec<usize>,
    failed_while_alive: Vec<String>,
}

/// Submits from `CLIENTS` tasks until `work.todo` is empty or, once `killed` is set,
/// a call fails (its submission goes back on the list). Returns when every task has.
async fn drive(
    channel: Channel,
    token: &str,
    run: &str,
    work: Arc<Mutex<Work>>,
    killed: Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (channel, token, run, work, killed) = (
            channel.clone(),
            token.to_owned(),
            run.to_owned(),
            work.clone(),
            killed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut precert = PrecertServiceClient::new(channel);
            loop {
                let Some(n) = work.lock().expect("work").todo.pop() else {
                    return;
                };
                let answer = precert
                    .submit(bearer(&token, mri(format!("nats-{run}-{n}"))))
                    .await;
                let mut work = work.lock().expect("work");
                match answer {
                    Ok(_) => work.done.push(n),
                    Err(_) if killed.load(Ordering::SeqCst) => {
                        work.todo.push(n);
                        return;
                    }
                    Err(status) => {
                        work.failed_while_alive.push(format!("{status:?}"));
                        work.todo.push(n);
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
}

/// Every event of the outbox, in outbox order.
async fn outbox(db: &TestDb) -> Vec<DomainEvent> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = db.store.events_after(after, 1000).await.expect("outbox");
        let Some((last, _)) = page.last() else {
            return events;
        };
        after = *last;
        events.extend(page.into_iter().map(|(_, e)| e));
    }
}

/// Waits until the relay owes nothing.
async fn drained(db: &TestDb) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stats = db
            .store
            .outbox_stats(carepath_app::events::relay::CONSUMER)
            .await
            .expect("relay stats");
        assert_eq!(stats.dead, 0, "the relay parked events as dead");
        if stats.pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the relay still owes {} events",
            stats.pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn every_event_reaches_the_stream_once_in_order(db: &TestDb) {
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = TestStream::new("relay");
    let auth = Authenticator::with_local_key(&dir.path().join("signing.pem")).expect("key");
    let actor = Actor::new(Role::Provider, IMAGING).expect("actor");
    let provider = auth
        .mint(&actor, chrono::Utc::now(), chrono::Duration::hours(1))
        .expect("mint");
    let run = uuid::Uuid::now_v7().simple().to_string();
    let work = Arc::new(Mutex::new(Work {
        todo: (0..SUBMISSIONS).rev().collect(),
        ..Work::default()
    }));

    // Submissions until BEFORE_KILL are acknowledged and the relay has published some;
    // then SIGKILL.
    let server = start(db, dir.path(), &stream);
    let killed = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (channel, provider, run, work, killed) = (
            server.channel().await,
            provider.clone(),
            run.clone(),
            work.clone(),
            killed.clone(),
        );
        async move { drive(channel, &provider, &run, work, killed).await }
    });
    let deadline = Instant::now() + DEADLINE;
    loop {
        let published = db
            .store
            .outbox_stats(carepath_app::events::relay::CONSUMER)
            .await
            .expect("relay stats")
            .done;
        if work.lock().expect("work").done.len() >= BEFORE_KILL && published > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the load did not get going: {} acknowledged, {published} published, failures: {:?}",
            work.lock().expect("work").done.len(),
            work.lock().expect("work").failed_while_alive
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.store(true, Ordering::SeqCst);
    server.kill();
    load.await.expect("clients");
    let before = db
        .store
        .outbox_stats(carepath_app::events::relay::CONSUMER)
        .await
        .expect("relay stats");
    let killed_after = work.lock().expect("work").done.len();
    let first_run = began.elapsed();

    // Restart on the same database; the rest of the submissions.
    let server = start(db, dir.path(), &stream);
    killed.store(false, Ordering::SeqCst);
    drive(
        server.channel().await,
        &provider,
        &run,
        work.clone(),
        killed.clone(),
    )
    .await;
    {
        let work = work.lock().expect("work");
        assert!(
            work.failed_while_alive.is_empty(),
            "calls failed while the server was up: {:?}",
            work.failed_while_alive
        );
        let unique: HashSet<usize> = work.done.iter().copied().collect();
        assert_eq!(unique.len(), SUBMISSIONS, "every submission acknowledged");
    }
    drained(db).await;
    let published_in = began.elapsed();

    // The stream against the outbox.
    let events = outbox(db).await;
    let messages = stream.messages().await;
    eprintln!(
        "killed after {killed_after} acknowledged submissions with {} events published and \
         {} owed; {} events in the outbox, {} messages in the stream; first run {:.1} s, \
         all published {:.1} s after the start",
        before.done,
        before.pending,
        events.len(),
        messages.len(),
        first_run.as_secs_f64(),
        published_in.as_secs_f64()
    );
    let by_id: HashMap<&str, &DomainEvent> = events.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut seen = HashSet::new();
    for message in &messages {
        let id = message.body["id"].as_str().expect("a CloudEvent id");
        assert!(
            seen.insert(id.to_owned()),
            "event {id} is in the stream twice"
        );
        assert_eq!(message.msg_id, id, "Nats-Msg-Id is the event id");
        let event = by_id
            .get(id)
            .unwrap_or_else(|| panic!("message {id} is no event of the outbox"));
        assert_eq!(message.subject, format!("{}.{}", stream.prefix, event.kind));
        assert_eq!(message.body["specversion"], "1.0");
        assert_eq!(message.body["type"], format!("carepath.{}", event.kind));
        assert_eq!(message.body["subject"], event.aggregate_id.as_str());
        assert_eq!(message.body["datacontenttype"], "application/json");
        assert_eq!(
            message.body["data"],
            carepath_app::events::catalogue::project(&event.kind, &event.payload)
        );
    }
    let missing: Vec<&str> = events
        .iter()
        .map(|e| e.id.as_str())
        .filter(|id| !seen.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events never reached the stream, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(messages.len(), events.len());

    // Each aggregate's events in outbox order.
    let mut in_outbox: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for event in &events {
        in_outbox
            .entry((&event.aggregate_kind, &event.aggregate_id))
            .or_default()
            .push(&event.id);
    }
    let mut in_stream: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for message in &messages {
        let event = by_id[message.body["id"].as_str().expect("id")];
        in_stream
            .entry((&event.aggregate_kind, &event.aggregate_id))
            .or_default()
            .push(&event.id);
    }
    let out_of_order: Vec<_> = in_outbox
        .iter()
        .filter(|(key, ids)| in_stream.get(*key) != Some(*ids))
        .map(|(key, _)| key)
        .collect();
    assert!(
        out_of_order.is_empty(),
        "aggregates whose events the stream holds out of order: {out_of_order:?}"
    );

    // The cases are all there, with what a subscriber needs and nothing personal.
    let submitted: Vec<_> = messages
        .iter()
        .filter(|m| m.body["type"] == "carepath.precert.case.submitted")
        .collect();
    assert_eq!(submitted.len(), SUBMISSIONS);
    let data = &submitted[0].body["data"];
    assert!(data["case_id"].is_string(), "{data}");
    assert_eq!(data["member_id"], "M100001");
    assert!(data["services"][0]["code"].is_string(), "{data}");
    assert!(
        !submitted[0].raw.contains("Whitcombe"),
        "{}",
        submitted[0].raw
    );

    let _ = server.terminate();
    stream.delete().await;
    eprintln!("whole test {:.1} s", began.elapsed().as_secs_f64());
}

/// A nats-server with JetStream of the test's own on `port`, killed when dropped.
struct NatsServer(std::process::Child);

impl NatsServer {
    fn start(port: u16, dir: &Path) -> NatsServer {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on PATH (tests/run.sh installs it)");
        NatsServer(child)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn events_wait_in_the_outbox_while_nats_is_away(db: &TestDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let stream = TestStream::at("away", &format!("nats://127.0.0.1:{port}"));
    let auth = Authenticator::with_local_key(&dir.path().join("signing.pem")).expect("key");
    let actor = Actor::new(Role::Provider, IMAGING).expect("actor");
    let provider = auth
        .mint(&actor, chrono::Utc::now(), chrono::Duration::hours(1))
        .expect("mint");

    // Nothing answers on the port: calls are answered, events wait.
    let server = start(db, dir.path(), &stream);
    let mut precert = PrecertServiceClient::new(server.channel().await);
    for n in 0..20 {
        precert
            .submit(bearer(&provider, mri(format!("away-{n}"))))
            .await
            .expect("submitted while NATS is away");
    }
    let owed = db
        .store
        .outbox_stats(carepath_app::events::relay::CONSUMER)
        .await
        .expect("relay stats");
    assert_eq!(owed.done, 0, "nothing can have been published");
    assert!(owed.pending >= 40, "the events wait: {owed:?}");

    // NATS comes up: the backlog goes out, every event once.
    let _nats = NatsServer::start(port, &dir.path().join("nats"));
    drained(db).await;
    let events = outbox(db).await;
    let messages = stream.messages().await;
    let ids: HashSet<&str> = messages
        .iter()
        .map(|m| m.body["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), messages.len(), "an event is in the stream twice");
    assert_eq!(messages.len(), events.len());
    assert!(events.iter().all(|e| ids.contains(e.id.as_str())));
    let _ = server.terminate();
    stream.delete().await;
}
