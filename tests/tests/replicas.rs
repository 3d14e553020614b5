//! Three `carepath serve` processes on one PostgreSQL database, as replicas behind a
//! load balancer run them:
//!
//! - a `WatchStatus` stream on replica A hears of changes made through replica C
//!   (the change's commit notifies every process; A reads the request again): one
//!   before the kill below, and, on the same stream, the expert's opinion published
//!   through C while the survivors take over from the killed replica (A and C are the
//!   two that survive);
//! - reviewers' claims and decisions go through a replica other than the one the case
//!   was filed through;
//! - submissions are spread over the three, and the replica running the sweeps is
//!   killed with SIGKILL in the middle of it. Then every acknowledged submission is
//!   stored, every notice is made once and sent once (a notice being handed to the
//!   mail server at the instant of the kill may arrive twice, with the same
//!   Message-ID, as in `crash.rs`), and the sweep ran on one replica at a time, once
//!   per period with none skipped but those the killed holder's lease still covered,
//!   taken over by a survivor after the kill.
//!
//! PostgreSQL only: a SQLite file has one writing process.

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

use carepath_app::jobs::{LEASE_PERIODS, period_of};
use carepath_core::{Actor, Role};
use carepath_proto::{
    precert::v1::{self as ppb, precert_service_client::PrecertServiceClient},
    secondopinion::v1::{
        self as spb, questionnaire_answer::Value,
        second_opinion_service_client::SecondOpinionServiceClient,
    },
};
use carepath_server::auth::Authenticator;
use carepath_store::{NoticeRecord, Store};
use carepath_tests::{
    TestDb,
    load::{IMAGING, mri},
    notify_support::{SmtpServer, assert_each_email_arrived_once, free_port},
    precert::{flag, number},
    process::{ServerProcess, binary},
};
use futures::StreamExt;
use tonic::{Request, transport::Channel};

const REPLICAS: usize = 3;
/// Submitting clients per replica.
const CLIENTS_PER_REPLICA: usize = 4;
/// Acknowledged submissions to wait for before the kill, and after it.
const BEFORE_KILL: usize = 120;
const AFTER_KILL: usize = 60;
/// Cases pended for review and decided through other replicas.
const REVIEWED: usize = 6;
/// Leases of events and notices: short, so the work the killed replica held is taken
/// over within seconds.
const LEASE_SECS: &str = "2";
/// The sweep's period here (a minute by default): short, so the test sees many, and
/// long enough that a busy machine does not stall a live holder past its lease (three
/// periods).
const SWEEP_SECS: u64 = 2;
const SWEEP_JOB: &str = "precert.sweeps";
/// No step comes near this; reaching it means something was lost or hung.
const DEADLINE: Duration = Duration::from_secs(60);

const DUBAI_MEMBER: &str = "M100015";
const RADIOLOGIST: &str = "MD-RAD-01";
/// The nurse coordinator who speaks Arabic, and the knee surgeon matched as the
/// expert for the member in Dubai.
const ARABIC_NURSE: &str = "RN-003";
const EXPERT_KNEE_SURGEON: &str = "1740286731";

fn start(db: &TestDb, dir: &Path, smtp: &SmtpServer, index: usize) -> ServerProcess {
    let mut command = Command::new(binary("carepath", Some("--sweep-interval-secs")));
    command.args(["serve", "--database-url", &db.url]);
    if index == 0 {
        // The first loads the demo directory; the others find it in the database.
        command.arg("--demo");
    }
    command
        .arg("--signing-key")
        .arg(dir.join("signing.pem"))
        // Replicas share their record store, as they must.
        .arg("--records-dir")
        .arg(dir.join("records"))
        .arg("--print-batch-dir")
        .arg(dir.join(format!("print-{index}")))
        .args(["--smtp-port", &smtp.port.to_string()])
        .args(["--notice-lease-secs", LEASE_SECS])
        .args(["--event-lease-secs", LEASE_SECS])
        .args(["--sweep-interval-secs", &SWEEP_SECS.to_string()])
        .args(["--rate-limit-per-caller", "0"])
        .args(["--max-calls-per-caller", "64"]);
    ServerProcess::start(&format!("carepath replica {index}"), command)
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

fn answer(id: &str, value: Value) -> spb::QuestionnaireAnswer {
    spb::QuestionnaireAnswer {
        question_id: id.into(),
        value: Some(value),
    }
}

/// A member in Dubai recommended for replacement of both knees.
fn knee_request() -> spb::SubmitRequest {
    spb::SubmitRequest {
        member_id: DUBAI_MEMBER.into(),
        diagnosis: "M17.0".into(),
        major_surgery_recommended: true,
        current_treatment: "Total replacement of both knees".into(),
        emergency: false,
        first_opinion: Some(spb::FirstOpinion {
            physician_npi: String::new(),
            physician_name: "Dr. Rashid Karim".into(),
            practice: "Dubai Bone and Joint Centre".into(),
            given_on: "2026-10-20".into(),
            summary: "Bilateral primary osteoarthritis of the knees".into(),
        }),
    }
}

fn knee_answers() -> Vec<spb::QuestionnaireAnswer> {
    vec![
        answer("knees_affected", Value::Choice("both".into())),
        answer("pain_years", Value::Number(6.0)),
        answer("tried_physiotherapy", Value::YesNo(true)),
        answer(
            "non_surgical_results",
            Value::Text("Physiotherapy helped for a few months only".into()),
        ),
        answer("activity_goals", Value::Text("Running every day".into())),
        answer(
            "questions_for_expert",
            Value::Text("Is replacing both knees the best option for me?".into()),
        ),
    ]
}

/// What the clients saw: acknowledged submissions (request id, case id) and calls
/// that failed while their replica was alive.
#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<(String, String)>,
    failed_while_alive: Vec<String>,
}

/// Submits from `CLIENTS_PER_REPLICA` tasks per replica until `stop`; a replica's
/// clients stop once it is marked killed.
fn drive(
    channels: &[Channel],
    token: &str,
    killed: &[Arc<AtomicBool>],
    stop: &Arc<AtomicBool>,
) -> Arc<Mutex<Outcomes>> {
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let run = uuid::Uuid::now_v7().simple().to_string();
    for (replica, channel) in channels.iter().enumerate() {
        for client in 0..CLIENTS_PER_REPLICA {
            let mut precert = PrecertServiceClient::new(channel.clone());
            let (token, killed, stop, outcomes, run) = (
                token.to_owned(),
                killed[replica].clone(),
                stop.clone(),
                outcomes.clone(),
                run.clone(),
            );
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) || killed.load(Ordering::SeqCst) {
                        return;
                    }
                    let request_id = format!("replicas-{run}-{replica}-{client}-{n}");
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
                        Err(status) => seen
                            .failed_while_alive
                            .push(format!("replica {replica}: {status:?}")),
                    }
                }
            });
        }
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

/// The process id a lease holder's name starts with (`<pid>-<uuid>`).
fn pid_of(holder: &str) -> u32 {
    holder
        .split('-')
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("lease holder {holder:?} names no process"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_postgresql_database() {
    let test = concat!(
        module_path!(),
        "::three_replicas_share_one_postgresql_database"
    );
    let Some(db) = TestDb::postgres(test).await else {
        eprintln!("skipped {test}: CAREPATH_TEST_POSTGRES_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(free_port(), &dir.path().join("smtp"), Duration::ZERO);
    let auth = Authenticator::with_local_key(&dir.path().join("signing.pem")).expect("key");
    let mint = |role, subject: &str| {
        let actor = Actor::new(role, subject).expect("actor");
        auth.mint(&actor, chrono::Utc::now(), chrono::Duration::hours(1))
            .expect("mint")
    };

    let mut replicas: Vec<Option<ServerProcess>> = Vec::new();
    let mut channels = Vec::new();
    for index in 0..REPLICAS {
        let replica = start(&db, dir.path(), &smtp, index);
        channels.push(replica.channel().await);
        replicas.push(Some(replica));
    }

    // The replica that took the sweep is the one killed later; A and C, the watch and
    // the replica the changes go through, are the other two.
    let deadline = Instant::now() + DEADLINE;
    let leader = loop {
        if let Some((holder, _)) = db.store.job_holder(SWEEP_JOB).await.expect("lease") {
            break holder;
        }
        assert!(Instant::now() < deadline, "no replica took the sweep");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let victim = replicas
        .iter()
        .position(|r| r.as_ref().is_some_and(|r| r.pid() == pid_of(&leader)))
        .expect("the sweep's holder is one of the replicas");
    let survivors: Vec<usize> = (0..REPLICAS).filter(|i| *i != victim).collect();
    let (a, c) = (survivors[0], survivors[1]);

    // A status watch on A hears of a change made through C.
    let member = mint(Role::Member, DUBAI_MEMBER);
    let mut on_a = SecondOpinionServiceClient::new(channels[a].clone());
    let mut on_c = SecondOpinionServiceClient::new(channels[c].clone());
    let request = on_c
        .submit(bearer(&member, knee_request()))
        .await
        .expect("submit through C")
        .into_inner()
        .request
        .expect("request");
    let mut watch_call = Request::new(spb::WatchStatusRequest {
        request_id: request.id.clone(),
    });
    watch_call.metadata_mut().insert(
        "authorization",
        format!("Bearer {member}").parse().expect("ascii"),
    );
    let mut watch = on_a
        .watch_status(watch_call)
        .await
        .expect("watch on A")
        .into_inner();
    let snapshot = watch.next().await.expect("a snapshot").expect("snapshot");
    assert!(snapshot.snapshot);
    on_c.answer_questionnaire(bearer(
        &member,
        spb::AnswerQuestionnaireRequest {
            request_id: request.id.clone(),
            answers: knee_answers(),
        },
    ))
    .await
    .expect("answer through C");
    let change = tokio::time::timeout(DEADLINE, watch.next())
        .await
        .expect("the watch on A heard nothing of the change made through C")
        .expect("the watch on A ended")
        .expect("a change");
    assert!(!change.snapshot);
    assert_eq!(change.status, spb::Status::AwaitingRecords as i32);
    assert!(change.version > snapshot.version);
    // The watch stays open through the kill.

    // Cases filed through one replica, claimed through the next, decided through the
    // one after.
    let provider = mint(Role::Provider, IMAGING);
    let radiologist = mint(Role::PhysicianReviewer, RADIOLOGIST);
    let mut decided = Vec::new();
    for n in 0..REVIEWED {
        let mut filed = PrecertServiceClient::new(channels[n % REPLICAS].clone());
        let mut claimed = PrecertServiceClient::new(channels[(n + 1) % REPLICAS].clone());
        let mut decider = PrecertServiceClient::new(channels[(n + 2) % REPLICAS].clone());
        let mut pended = mri(format!("replicas-review-{n}"));
        pended.answers = vec![
            flag("red_flag_symptoms", false),
            number("conservative_therapy_weeks", 2.0),
        ];
        let case = filed
            .submit(bearer(&provider, pended))
            .await
            .expect("file a case for review")
            .into_inner()
            .case
            .expect("case");
        assert_eq!(case.status(), ppb::CaseStatus::PendedReview);
        claimed
            .claim_case(bearer(
                &radiologist,
                ppb::ClaimCaseRequest {
                    case_id: case.id.clone(),
                },
            ))
            .await
            .expect("claim through another replica");
        let approved = decider
            .record_decision(bearer(
                &radiologist,
                ppb::RecordDecisionRequest {
                    case_id: case.id.clone(),
                    outcome: ppb::DecisionOutcome::Approved as i32,
                    note: "Reviewed on another replica".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("decide through a third replica")
            .into_inner()
            .case
            .expect("case");
        assert_eq!(approved.status(), ppb::CaseStatus::Approved);
        decided.push(case.id);
    }

    // Submissions on all three; then the replica running the sweeps is killed.
    let killed: Vec<Arc<AtomicBool>> = (0..REPLICAS)
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = drive(&channels, &provider, &killed, &stop);
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
    let (holder, _) = db
        .store
        .job_holder(SWEEP_JOB)
        .await
        .expect("read the sweep lease")
        .expect("a replica holds the sweep");
    assert_eq!(
        holder, leader,
        "the sweep changed hands while its holder lived"
    );
    killed[victim].store(true, Ordering::SeqCst);
    replicas[victim].take().expect("alive").kill();
    let killed_at = outcomes.lock().expect("lock").acknowledged.len();
    let in_flight: BTreeSet<String> = all_notices(&db.store)
        .await
        .into_iter()
        .filter(|n| n.state == "sending")
        .map(|n| n.id)
        .collect();

    // While the survivors take over, under load: the nurse logs the records that came
    // by mail and fax, and the expert publishes the opinion, all through C. The watch
    // on A, opened before the kill, hears of the opinion.
    let nurse = mint(Role::Nurse, ARABIC_NURSE);
    for (kind, channel, description) in [
        (
            spb::RecordKind::Xray,
            spb::RecordChannel::Mail,
            "Standing X-rays of both knees, on disc",
        ),
        (
            spb::RecordKind::ClinicalReport,
            spb::RecordChannel::Fax,
            "Surgeon's notes recommending bilateral knee replacement, 3 pages",
        ),
    ] {
        on_c.log_record(bearer(
            &nurse,
            spb::LogRecordRequest {
                request_id: request.id.clone(),
                kind: kind as i32,
                channel: channel as i32,
                description: description.into(),
            },
        ))
        .await
        .expect("log a record through C");
    }
    let expert = mint(Role::Provider, EXPERT_KNEE_SURGEON);
    let published = on_c
        .publish_opinion(bearer(
            &expert,
            spb::PublishOpinionRequest {
                request_id: request.id.clone(),
                opinion: Some(spb::OpinionContent {
                    diagnosis: spb::DiagnosisVerdict::Confirmed as i32,
                    treatment: spb::TreatmentVerdict::Changed as i32,
                    treatment_recommendation: "Partial (unicompartmental) replacement \
                        instead of total replacement of both knees"
                        .into(),
                    narrative: "Surgery is the right course, but a less invasive \
                        procedure is recommended."
                        .into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("publish the opinion through C")
        .into_inner()
        .request
        .expect("request");
    assert_eq!(published.status, spb::Status::OpinionPublished as i32);
    let mut heard = vec![change.status];
    let mut version = change.version;
    while heard.last() != Some(&(spb::Status::OpinionPublished as i32)) {
        let next = tokio::time::timeout(DEADLINE, watch.next())
            .await
            .unwrap_or_else(|_| {
                panic!("the watch on A heard no opinion published through C; heard {heard:?}")
            })
            .expect("the watch on A ended")
            .expect("a change");
        assert!(!next.snapshot);
        assert!(next.version > version, "changes arrive in order");
        version = next.version;
        heard.push(next.status);
    }
    drop(watch);

    // The others go on, and one of them takes the sweep over.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let acknowledged = outcomes.lock().expect("lock").acknowledged.len();
        let holder = db.store.job_holder(SWEEP_JOB).await.expect("lease");
        let taken_over = match &holder {
            Some((holder, _)) if holder != &leader => !db
                .store
                .job_runs(SWEEP_JOB, 0, 100_000)
                .await
                .expect("runs")
                .iter()
                .all(|run| &run.holder != holder),
            _ => false,
        };
        if acknowledged >= killed_at + AFTER_KILL {
            // Enough load after the kill; the takeover may still be coming.
            stop.store(true, Ordering::SeqCst);
            if taken_over {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "after the kill: {} more acknowledged, sweep lease {holder:?} (was {leader})",
            acknowledged - killed_at
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let every client's last call come back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (acknowledged, failed) = {
        let seen = outcomes.lock().expect("lock");
        (seen.acknowledged.clone(), seen.failed_while_alive.clone())
    };
    assert!(
        failed.is_empty(),
        "calls failed on a live replica: {failed:?}"
    );

    // Every acknowledged submission is stored, approved.
    for (request_id, case_id) in &acknowledged {
        let case = db
            .store
            .case_by_request_key(&format!("{IMAGING}:{request_id}"))
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("acknowledged request {request_id} is not stored"));
        assert_eq!(&case.id, case_id, "request {request_id} names another case");
        assert_eq!(case.status, "approved", "case {case_id}");
    }

    // The survivors send every notice, the killed replica's too.
    let deadline = Instant::now() + DEADLINE;
    let notices = loop {
        let stats = db.store.outbox_stats("notify").await.expect("outbox stats");
        let notices = all_notices(&db.store).await;
        if stats.pending == 0 && stats.dead == 0 && notices.iter().all(|n| n.state == "sent") {
            break notices;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {} events pending for notices, {} dead; notices by state: {:?}",
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
    let keys: BTreeSet<&str> = notices.iter().map(|n| n.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), notices.len(), "a notice was made twice");
    let mut per_event: BTreeMap<&str, usize> = BTreeMap::new();
    for notice in &notices {
        *per_event.entry(notice.event_id.as_str()).or_default() += 1;
    }
    let approvals = acknowledged
        .iter()
        .map(|(_, case_id)| case_id)
        .chain(&decided);
    for case_id in approvals {
        let events = db
            .store
            .events_for("precert_case", case_id)
            .await
            .expect("events");
        let approval = events
            .iter()
            .find(|e| e.kind == "precert.case.approved")
            .unwrap_or_else(|| panic!("case {case_id} has no approval event"));
        assert!(
            per_event.get(approval.id.as_str()).copied().unwrap_or(0) >= 2,
            "the approval of case {case_id} has no notices to the provider and the member"
        );
    }
    assert_each_email_arrived_once(&smtp, &notices, &in_flight);

    // The sweep: one replica at a time, once per period. Its runs were made by the
    // killed replica until the kill and by one survivor after it: the lease never
    // changed hands while its holder lived. Read once the survivor has swept two
    // periods past this point, so the check reaches the end of the run.
    let sweep_period = Duration::from_secs(SWEEP_SECS);
    let until = period_of(chrono::Utc::now(), sweep_period) + 2;
    let deadline = Instant::now() + DEADLINE;
    let runs = loop {
        let runs = db
            .store
            .job_runs(SWEEP_JOB, 0, 100_000)
            .await
            .expect("sweep runs");
        if runs.last().is_some_and(|r| r.period >= until) {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep stopped: its last run is {:?}, period {until} is past",
            runs.last()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let periods: BTreeSet<i64> = runs.iter().map(|r| r.period).collect();
    assert_eq!(periods.len(), runs.len(), "a period was swept twice");
    let mut holders: Vec<&str> = Vec::new();
    for run in &runs {
        if holders.last() != Some(&run.holder.as_str()) {
            holders.push(&run.holder);
        }
    }
    assert_eq!(
        holders.len(),
        2,
        "the sweep changed hands other than once, at the kill: {holders:?}"
    );
    assert_eq!(
        holders[0], leader,
        "the sweep ran first on the killed replica"
    );
    let survivor = pid_of(holders[1]);
    assert!(
        replicas
            .iter()
            .flatten()
            .any(|replica| replica.pid() == survivor),
        "the sweep was taken over by a survivor"
    );
    // No period skipped: each holder swept every period while it held the job, and
    // between them only the periods the dead holder's lease still covered went by (the
    // lease runs three periods past its last renewal, which may have come in a period
    // whose run the kill left unrecorded).
    let before: Vec<i64> = runs
        .iter()
        .filter(|r| r.holder == leader)
        .map(|r| r.period)
        .collect();
    let after: Vec<i64> = runs
        .iter()
        .filter(|r| r.holder != leader)
        .map(|r| r.period)
        .collect();
    for (who, periods) in [("the killed replica", &before), ("the survivor", &after)] {
        let skipped: Vec<i64> = periods
            .windows(2)
            .filter(|w| w[1] != w[0] + 1)
            .map(|w| w[0] + 1)
            .collect();
        assert!(
            skipped.is_empty(),
            "{who} skipped periods after {skipped:?} (its periods: {periods:?})"
        );
    }
    let lost = after[0] - before[before.len() - 1] - 1;
    assert!(
        lost <= i64::from(LEASE_PERIODS) + 1,
        "{lost} periods went unswept at the takeover, more than the lease covers \
         (runs: {before:?} then {after:?})"
    );
    eprintln!(
        "{} submissions acknowledged ({killed_at} before the kill of replica {victim}), \
         {} notices, {} emails, {} sweep runs ({} before the kill, {lost} periods lost \
         at the takeover); the watch on A heard {heard:?}",
        acknowledged.len(),
        notices.len(),
        smtp.messages().len(),
        runs.len(),
        runs.iter().filter(|r| r.holder == leader).count()
    );

    for replica in replicas.into_iter().flatten() {
        let _ = replica.terminate();
    }
}
