//! Crash safety, on both backends: the real `carepath serve` process takes
//! submissions from many clients at once and sends their notices by email, and is
//! killed with SIGKILL in the middle of it. Then, with the process dead, the database
//! is read directly, and again after a restart:
//!
//! - every acknowledged submission is there, whole (its line, its approval, its
//!   history) with both its outbox events, and a retry of it returns the same case;
//! - no case is half-written, acknowledged or not;
//! - after the restart, the events left unprocessed are taken over once their leases
//!   run out, every notice is sent, and each email arrives once. The one exception
//!   SMTP allows: a notice that was being handed to the mail server at the instant of
//!   the kill may arrive a second time, with the same Message-ID, so mail systems fold
//!   the copies; only notices the snapshot shows `sending` may do so;
//! - the audit log's hash chains are intact.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use carepath_core::{Actor, Role};
use carepath_proto::precert::v1::{
    CaseStatus, GetCaseRequest, precert_service_client::PrecertServiceClient,
};
use carepath_server::auth::Authenticator;
use carepath_store::{AuditVerification, NoticeRecord, Store};
use carepath_tests::{
    TestDb, contract_tests,
    load::{IMAGING, mri},
    notify_support::{SmtpServer, assert_each_email_arrived_once, free_port},
    process::{ServerProcess, binary},
};
use tonic::{Request, transport::Channel};

contract_tests!(acknowledged_work_survives_sigkill);

/// Clients submitting at once.
const CLIENTS: usize = 16;
/// Acknowledged submissions to wait for before the kill.
const BEFORE_KILL: usize = 150;
/// Leases of the restarted process: short, so the test need not wait minutes for
/// the work the killed process held.
const LEASE_SECS: &str = "2";
/// No step comes near this; reaching it means something was lost or hung.
const DEADLINE: Duration = Duration::from_secs(180);

const SUBMITTED: &str = "precert.case.submitted";
const APPROVED: &str = "precert.case.approved";

fn start(db: &TestDb, dir: &Path, smtp: &SmtpServer) -> ServerProcess {
    let mut command = Command::new(binary("carepath", Some("--notice-lease-secs")));
    command
        .args(["serve", "--demo", "--database-url", &db.url])
        .arg("--signing-key")
        .arg(dir.join("signing.pem"))
        .arg("--records-dir")
        .arg(dir.join("records"))
        .arg("--print-batch-dir")
        .arg(dir.join("print"))
        .args(["--smtp-port", &smtp.port.to_string()])
        .args(["--notice-lease-secs", LEASE_SECS])
        .args(["--event-lease-secs", LEASE_SECS])
        // One caller makes every call here; its rate and its share of the calls in
        // progress are not what is tested.
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

/// What the clients saw: acknowledged submissions (request id, case id) and calls
/// that failed while the server was still alive.
#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<(String, String)>,
    failed_while_alive: Vec<String>,
}

/// Submits from `CLIENTS` tasks until the server dies.
fn drive(channel: Channel, token: String, killed: Arc<AtomicBool>) -> Arc<Mutex<Outcomes>> {
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let run = uuid::Uuid::now_v7().simple().to_string();
    for client in 0..CLIENTS {
        let (channel, token, killed, outcomes) = (
            channel.clone(),
            token.clone(),
            killed.clone(),
            outcomes.clone(),
        );
        let run = run.clone();
        tokio::spawn(async move {
            let mut precert = PrecertServiceClient::new(channel);
            for n in 0.. {
                let request_id = format!("crash-{run}-{client}-{n}");
                let answer = precert
                    .submit(bearer(&token, mri(request_id.clone())))
                    .await;
                let mut seen = outcomes.lock().expect("outcomes lock");
                match answer {
                    Ok(response) => {
                        let case = response.into_inner().case.expect("a case");
                        seen.acknowledged.push((request_id, case.id));
                    }
                    Err(_) if killed.load(Ordering::SeqCst) => return,
                    Err(status) => seen.failed_while_alive.push(format!("{status:?}")),
                }
            }
        });
    }
    outcomes
}

/// Every notice, newest first.
async fn all_notices(store: &Store) -> Vec<NoticeRecord> {
    let mut notices = Vec::new();
    let mut token = String::new();
    loop {
        let page = store
            .list_notices(None, &token, 500)
            .await
            .expect("list notices");
        notices.extend(page.items);
        match page.next_page_token {
            Some(next) => token = next,
            None => return notices,
        }
    }
}

/// Checks, with the server dead, that every case in the database is whole and has
/// both its events; returns the number of cases.
async fn cases_are_whole(store: &Store, acknowledged: &[(String, String)]) -> usize {
    for (request_id, case_id) in acknowledged {
        let case = store
            .case_by_request_key(&format!("{IMAGING}:{request_id}"))
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("acknowledged request {request_id} is not stored"));
        assert_eq!(&case.id, case_id, "request {request_id} names another case");
    }
    let mut count = 0;
    let mut token = String::new();
    loop {
        let page = store
            .list_cases(&Default::default(), &token, 500)
            .await
            .expect("list cases");
        for case in &page.items {
            assert_eq!(
                case.status, "approved",
                "case {} is {}",
                case.id, case.status
            );
            let kinds: Vec<String> = store
                .events_for("precert_case", &case.id)
                .await
                .expect("events")
                .into_iter()
                .map(|e| e.kind)
                .collect();
            assert_eq!(
                kinds,
                [SUBMITTED, APPROVED],
                "case {} has the events {kinds:?}",
                case.id
            );
            count += 1;
        }
        match page.next_page_token {
            Some(next) => token = next,
            None => return count,
        }
    }
}

async fn acknowledged_work_survives_sigkill(db: &TestDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(free_port(), &dir.path().join("smtp"), Duration::ZERO);
    let auth = Authenticator::with_local_key(&dir.path().join("signing.pem")).expect("key");
    let mint = |role, subject: &str| {
        let actor = Actor::new(role, subject).expect("actor");
        auth.mint(&actor, chrono::Utc::now(), chrono::Duration::hours(1))
            .expect("mint")
    };
    let provider = mint(Role::Provider, IMAGING);

    // Load, then SIGKILL in the middle of it.
    let server = start(db, dir.path(), &smtp);
    let killed = Arc::new(AtomicBool::new(false));
    let outcomes = drive(server.channel().await, provider.clone(), killed.clone());
    let deadline = Instant::now() + DEADLINE;
    while outcomes.lock().expect("lock").acknowledged.len() < BEFORE_KILL
        || smtp.messages().is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the load did not get going: {} acknowledged, {} emails, failures: {:?}",
            outcomes.lock().expect("lock").acknowledged.len(),
            smtp.messages().len(),
            outcomes.lock().expect("lock").failed_while_alive
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killed.store(true, Ordering::SeqCst);
    server.kill();
    // Let every client see the connection go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (acknowledged, failed) = {
        let seen = outcomes.lock().expect("lock");
        (seen.acknowledged.clone(), seen.failed_while_alive.clone())
    };
    assert!(
        failed.is_empty(),
        "calls failed before the kill: {failed:?}"
    );

    // With the process dead: what was acknowledged is whole, nothing is half-written.
    let stored = cases_are_whole(&db.store, &acknowledged).await;
    assert!(stored >= acknowledged.len());
    let snapshot = all_notices(&db.store).await;
    let in_flight: BTreeSet<String> = snapshot
        .iter()
        .filter(|n| n.state == "sending")
        .map(|n| n.id.clone())
        .collect();
    eprintln!(
        "killed after {} acknowledged submissions ({stored} stored); {} notices stored, \
         {} being sent, {} emails received",
        acknowledged.len(),
        snapshot.len(),
        in_flight.len(),
        smtp.messages().len()
    );

    // Restart: the leftover events and notices are taken over and finished.
    let server = start(db, dir.path(), &smtp);
    let channel = server.channel().await;
    let deadline = Instant::now() + DEADLINE;
    let notices = loop {
        let stats = db.store.outbox_stats("notify").await.expect("outbox stats");
        let notices = all_notices(&db.store).await;
        let stuck: Vec<&NoticeRecord> = notices
            .iter()
            .filter(|n| n.state == "failed" || n.state == "dead")
            .collect();
        assert!(
            stuck.is_empty(),
            "notices failed after the restart: {:?}",
            stuck
                .iter()
                .map(|n| (&n.id, &n.state, &n.last_error))
                .collect::<Vec<_>>()
        );
        if stats.pending == 0 && stats.dead == 0 && notices.iter().all(|n| n.state == "sent") {
            break notices;
        }
        assert!(
            Instant::now() < deadline,
            "not drained after the restart: {} events pending for notices, {} dead; notices \
             by state: {:?}",
            stats.pending,
            stats.dead,
            notices
                .iter()
                .fold(BTreeMap::<&str, usize>::new(), |mut m, n| {
                    *m.entry(n.state.as_str()).or_default() += 1;
                    m
                })
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Every approval has its notices, made once each.
    let mut per_event: BTreeMap<&str, usize> = BTreeMap::new();
    for notice in &notices {
        *per_event.entry(notice.event_id.as_str()).or_default() += 1;
    }
    let keys: BTreeSet<&str> = notices.iter().map(|n| n.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), notices.len(), "a notice was made twice");
    for (_, case_id) in &acknowledged {
        let events = db
            .store
            .events_for("precert_case", case_id)
            .await
            .expect("events");
        let approval = events
            .iter()
            .find(|e| e.kind == APPROVED)
            .expect("approval");
        assert!(
            per_event.get(approval.id.as_str()).copied().unwrap_or(0) >= 2,
            "the approval of case {case_id} has no notices to the provider and the member"
        );
    }

    // Each email arrives once; a second copy only for a notice cut off by the kill.
    assert_each_email_arrived_once(&smtp, &notices, &in_flight);

    // Acknowledged requests read back whole through the API, and a retry returns the
    // case it made.
    let mut precert = PrecertServiceClient::new(channel);
    for (request_id, case_id) in acknowledged.iter().step_by(acknowledged.len() / 10 + 1) {
        let case = precert
            .get_case(bearer(
                &provider,
                GetCaseRequest {
                    id: case_id.clone(),
                },
            ))
            .await
            .expect("read the case")
            .into_inner()
            .case
            .expect("case");
        assert_eq!(case.status, CaseStatus::Approved as i32);
        assert_eq!(case.lines.len(), 1, "case {case_id} has its line");
        assert!(case.history.len() >= 2, "case {case_id} has its history");
        let retry = precert
            .submit(bearer(&provider, mri(request_id.clone())))
            .await
            .expect("retry")
            .into_inner()
            .case
            .expect("case");
        assert_eq!(
            &retry.id, case_id,
            "a retry of {request_id} made another case"
        );
    }

    let _ = server.terminate();
    match db.store.verify_audit().await.expect("verify") {
        AuditVerification::Intact { entries } => assert!(entries > 0),
        broken => panic!("the audit log is broken after the crash: {broken:?}"),
    }
}
