//! The metrics endpoint read by a real Prometheus, on SQLite and PostgreSQL: the real
//! `carepath serve` process (every area, both doors) with `--metrics-listen`; a
//! `prometheus` process scrapes it every second; the figures are read back through
//! Prometheus's query API. Calls by door, method and code, and those refused by the
//! rate limit; notices sent per channel with their delivery latency, and those not
//! sent by state and channel (the fax gateway is down); the database pool and the
//! waits for it; the outbox backlog and the age of its oldest event per consumer (one
//! consumer is subscribed that no process runs, as when the only replica running it
//! is down); audit entries; precertification cases open by status and past their
//! due time. Where the test controls a figure it expects the exact count, taken from
//! what its calls saw or from the database; where only presence means something, more
//! than zero.
//!
//! A running binary's clock cannot be moved, so the pended case goes past due by its
//! due time being moved back in its row; `tests/gauges.rs` moves the application's
//! clock past the due time instead, on both backends.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`; tests/run.sh installs
//! it).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use carepath_app::auth::Authenticator;
use carepath_core::{Actor, Role};
use carepath_proto::precert::v1 as pb;
use carepath_tests::{
    TestDb, contract_tests,
    fhir::{fhir_addr, fhir_token, register_client},
    notify_support::{SmtpServer, free_port},
    precert::{HOSPITAL, IMAGING_IN, client, flag, mri, number},
    process::{ServerProcess, binary},
};
use tonic::transport::Channel;

contract_tests!(prometheus_reads_calls_notices_pools_backlogs_and_cases_past_due);

/// A consumer subscribed to precertification events that no process runs.
const IDLE_CONSUMER: &str = "claims-bridge";

/// Where the `prometheus` binary is.
fn prometheus_binary() -> &'static str {
    let found = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the prometheus binary is missing: `apt-get install prometheus` (tests/run.sh does)"
    );
    "prometheus"
}

/// A Prometheus server scraping one target every second, stopped when dropped.
#[derive(Debug)]
struct Prometheus {
    child: Child,
    api: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let binary = prometheus_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: carepath\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            api: format!("http://127.0.0.1:{port}/api/v1/query"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The sum of the values `query` gives now; `None` when it gives no series (or
    /// Prometheus does not answer yet).
    async fn value(&self, http: &reqwest::Client, query: &str) -> Option<f64> {
        let answer: serde_json::Value = http
            .get(&self.api)
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let result = answer["data"]["result"].as_array()?;
        if result.is_empty() {
            return None;
        }
        Some(
            result
                .iter()
                .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// Waits (up to a minute; the server reads its database gauges every 15 s) until
    /// `query` gives `expected`; fails with what it gave last.
    async fn expect(&self, http: &reqwest::Client, query: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(http, query).await;
            if last == Some(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "{query} gave {last:?}, not {expected}, through Prometheus; its log:\n{}",
            self.log()
        );
    }
}

impl Prometheus {
    /// Waits (up to a minute) until `query` gives more than `floor`; returns it.
    async fn above(&self, http: &reqwest::Client, query: &str, floor: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(http, query).await;
            if let Some(value) = last.filter(|v| *v > floor) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "{query} gave {last:?}, not more than {floor}, through Prometheus; its log:\n{}",
            self.log()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A three-day planned stay at Riverside General (which takes notices by fax),
/// approved at once, a week from today.
fn hospital_stay(request_id: &str) -> pb::SubmitRequest {
    let mut stay = carepath_tests::precert::hospital_stay(request_id, 3);
    stay.lines[0].date_of_service = in_a_week();
    stay
}

fn in_a_week() -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(7)).to_string()
}

/// Submits `request` with `token`, again after each refusal by the caller's rate limit
/// (waiting the second its bucket takes to refill); returns the case and how many times
/// it was refused.
async fn submit(
    c: &mut pb::precert_service_client::PrecertServiceClient<Channel>,
    token: &str,
    request: pb::SubmitRequest,
) -> (pb::Case, u32) {
    let mut refused = 0;
    loop {
        let mut call = tonic::Request::new(request.clone());
        call.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        match c.submit(call).await {
            Ok(answer) => return (answer.into_inner().case.expect("case"), refused),
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            Err(status) => panic!("{} refused: {status:?}", request.request_id),
        }
    }
}

/// Rows of `sql` (state or channel, count) as a map.
async fn counts(db: &TestDb, sql: &'static str) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> =
        carepath_store::on_db!(&db.store, c => sqlx::query_as(sql).fetch_all(c).await)
            .expect("counted");
    rows.into_iter().collect()
}

async fn prometheus_reads_calls_notices_pools_backlogs_and_cases_past_due(db: &TestDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let smtp = SmtpServer::start(free_port(), &dir.path().join("smtp"), Duration::ZERO);
    let signing_key = dir.path().join("signing.pem");
    let auth = Authenticator::with_local_key(&signing_key).expect("signing key");
    let mint = |role, subject: &str| {
        auth.mint(
            &Actor::new(role, subject).expect("actor"),
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("token")
    };
    db.store
        .subscribe(IDLE_CONSUMER, &["precert.case."])
        .await
        .expect("subscribe");

    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut command = Command::new(binary("carepath", Some("--metrics-listen")));
    command
        .args(["serve", "--demo", "--database-url", &db.url])
        .arg("--signing-key")
        .arg(&signing_key)
        .arg("--records-dir")
        .arg(dir.path().join("records"))
        .arg("--print-batch-dir")
        .arg(dir.path().join("print"))
        .args(["--smtp-port", &smtp.port.to_string()])
        // Nothing listens there: every fax fails and waits an hour for its retry.
        .args([
            "--fax-gateway-url",
            &format!("http://127.0.0.1:{}/fax", free_port()),
        ])
        .args(["--notice-retry-first-secs", "3600"])
        .args(["--rate-limit-per-caller", "1", "--rate-limit-burst", "1"])
        .env("CAREPATH_METRICS_LISTEN", metrics.to_string());
    let server = ServerProcess::start("carepath", command);
    let prometheus = Prometheus::start(metrics);
    let http = reqwest::Client::new();
    let mut c = client(server.channel().await);

    // A call without a token is refused by the admission layer, and counted.
    let unauthenticated = c
        .submit(tonic::Request::new(mri("req-m-0", vec![])))
        .await
        .expect_err("no token");
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    // Two MRIs approved at once, one pended for clinical review, and a hospital stay
    // approved at once: each caller at most one call a second.
    let provider = mint(Role::Provider, IMAGING_IN);
    let mut refused = 0;
    let mri = |id: &str, answers| {
        let mut request = mri(id, answers);
        request.lines[0].date_of_service = in_a_week();
        request
    };
    for id in ["req-m-1", "req-m-2"] {
        let (case, times) = submit(
            &mut c,
            &provider,
            mri(id, vec![flag("red_flag_symptoms", true)]),
        )
        .await;
        assert_eq!(case.status(), pb::CaseStatus::Approved);
        refused += times;
    }
    let review = vec![
        flag("red_flag_symptoms", false),
        number("conservative_therapy_weeks", 2.0),
    ];
    let (pended, times) = submit(&mut c, &provider, mri("req-m-3", review)).await;
    assert_eq!(pended.status(), pb::CaseStatus::PendedReview);
    refused += times;
    let hospital = mint(Role::Provider, HOSPITAL);
    let (stay, times) = submit(&mut c, &hospital, hospital_stay("stay-m-1")).await;
    assert_eq!(stay.status(), pb::CaseStatus::Approved, "{stay:?}");
    refused += times;

    let submit = r#"door="grpc",service="carepath.precert.v1.PrecertService",method="Submit""#;
    let calls = |code: &str| format!(r#"carepath_calls_total{{{submit},code="{code}"}}"#);
    prometheus.expect(&http, &calls("Ok"), 4.0).await;
    prometheus
        .expect(&http, &calls("Unauthenticated"), 1.0)
        .await;
    let exhausted = prometheus
        .value(&http, &calls("ResourceExhausted"))
        .await
        .unwrap_or(0.0);
    assert_eq!(
        exhausted,
        f64::from(refused),
        "calls refused for their rate"
    );
    prometheus
        .expect(
            &http,
            &format!("carepath_call_duration_seconds_count{{{submit}}}"),
            f64::from(5 + refused),
        )
        .await;
    let limited = prometheus
        .value(
            &http,
            r#"carepath_calls_refused_total{door="grpc",limit="rate"}"#,
        )
        .await
        .unwrap_or(0.0);
    assert_eq!(
        limited,
        f64::from(refused),
        "calls refused by the rate limit"
    );
    prometheus
        .expect(&http, r#"carepath_calls_in_progress{door="grpc"}"#, 0.0)
        .await;

    // Notices: every one the approvals (and the referral the stay caused) called for
    // is made; those by email and portal are sent, each sending timed; the faxes to
    // the hospital wait for their retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (sent, faxes) = loop {
        let referrals = db
            .store
            .outbox_stats(carepath_app::cases::referrals::CONSUMER)
            .await
            .expect("outbox stats");
        let notify = db.store.outbox_stats("notify").await.expect("outbox stats");
        let states = counts(db, "SELECT state, COUNT(*) FROM notice GROUP BY state").await;
        let failed = counts(
            db,
            "SELECT channel, COUNT(*) FROM notice WHERE state = 'failed' GROUP BY channel",
        )
        .await;
        let settled = states
            .keys()
            .all(|state| state == "sent" || state == "failed")
            && failed.keys().all(|channel| channel == "fax");
        if referrals.pending == 0 && notify.pending == 0 && settled && !failed.is_empty() {
            let sent = counts(
                db,
                "SELECT channel, COUNT(*) FROM notice WHERE state = 'sent' GROUP BY channel",
            )
            .await;
            break (sent, failed["fax"]);
        }
        assert!(
            Instant::now() < deadline,
            "notices not settled: {} events waiting for referral, {} for notices; \
             by state {states:?}, failed by channel {failed:?}",
            referrals.pending,
            notify.pending
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        sent.get("email").copied().unwrap_or(0) >= 3,
        "each approval's member notice by email: {sent:?}"
    );
    for (channel, count) in &sent {
        let count = *count as f64;
        prometheus
            .expect(
                &http,
                &format!(
                    r#"carepath_notice_deliveries_total{{channel="{channel}",outcome="sent"}}"#
                ),
                count,
            )
            .await;
        prometheus
            .expect(
                &http,
                &format!(r#"carepath_notice_delivery_seconds_count{{channel="{channel}"}}"#),
                count,
            )
            .await;
    }
    prometheus
        .expect(
            &http,
            r#"carepath_notice_deliveries_total{channel="fax",outcome="failed"}"#,
            faxes as f64,
        )
        .await;
    prometheus
        .expect(
            &http,
            r#"carepath_notices{state="failed",channel="fax"}"#,
            faxes as f64,
        )
        .await;
    assert!(
        prometheus
            .value(
                &http,
                r#"carepath_notice_delivery_seconds_count{channel="fax"}"#
            )
            .await
            .is_none(),
        "a fax not sent has no delivery time"
    );

    // The outbox: the notifier keeps up; the consumer no process runs falls behind by
    // every precertification event, and its oldest event ages.
    let waiting: i64 = carepath_store::on_db!(&db.store, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox_event WHERE kind LIKE 'precert.case.%'")
        .fetch_one(c).await)
    .expect("events counted");
    assert!(waiting >= 4, "each case stored its events: {waiting}");
    prometheus
        .expect(
            &http,
            &format!(r#"carepath_outbox_backlog{{consumer="{IDLE_CONSUMER}"}}"#),
            waiting as f64,
        )
        .await;
    prometheus
        .above(
            &http,
            &format!(r#"carepath_outbox_oldest_age_seconds{{consumer="{IDLE_CONSUMER}"}}"#),
            0.0,
        )
        .await;
    prometheus
        .expect(&http, r#"carepath_outbox_backlog{consumer="notify"}"#, 0.0)
        .await;
    prometheus
        .expect(
            &http,
            r#"carepath_outbox_oldest_age_seconds{consumer="notify"}"#,
            0.0,
        )
        .await;

    // The database pool: its bound, the connections it holds, and every transaction's
    // wait for one.
    let max = prometheus
        .above(&http, "carepath_db_connections_max", 0.0)
        .await;
    let held = prometheus
        .above(&http, "sum(carepath_db_connections)", 0.0)
        .await;
    assert!(held <= max, "{held} connections held, bound {max}");
    let in_use = prometheus
        .value(&http, r#"carepath_db_connections{state="in_use"}"#)
        .await;
    assert!(
        in_use.is_some_and(|n| n <= max),
        "connections in use: {in_use:?}"
    );
    prometheus
        .above(&http, "carepath_db_begin_wait_seconds_count", 0.0)
        .await;
    let audited = prometheus
        .above(&http, "sum(carepath_audit_entries_total)", 3.0)
        .await;
    assert!(audited >= 4.0, "four cases made: {audited}");

    // Cases open by status; the pended case goes past due once its due time has gone
    // by (moved back in its row: this clock cannot be moved).
    prometheus
        .expect(
            &http,
            r#"carepath_precert_cases_open{status="pended_review"}"#,
            1.0,
        )
        .await;
    prometheus
        .expect(&http, "carepath_precert_cases_past_due", 0.0)
        .await;
    prometheus
        .expect(&http, "carepath_gold_card_exemptions", 0.0)
        .await;
    prometheus.expect(&http, "carepath_gauges_up", 1.0).await;
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let moved = carepath_store::on_db!(&db.store, c => sqlx::query(
        "UPDATE precert_case SET due_at = $1 WHERE id = $2")
        .bind(an_hour_ago).bind(&pended.id).execute(c).await.map(|r| r.rows_affected()))
    .expect("due time moved");
    assert_eq!(moved, 1);
    prometheus
        .expect(&http, "carepath_precert_cases_past_due", 1.0)
        .await;

    // The FHIR door counts its requests and refusals too: a SMART client's token,
    // three searches at once (one a second is its rate), and a path it does not serve.
    let fhir = fhir_addr(&server);
    let keys = dir.path().join("clients");
    std::fs::create_dir_all(&keys).expect("keys folder");
    let registered = register_client(db, &keys, "clearview-imaging", IMAGING_IN);
    let token = fhir_token(
        &http,
        fhir,
        "clearview-imaging",
        &registered.key,
        "system/ClaimResponse.rs",
    )
    .await;
    let search = || {
        http.get(format!(
            "http://{fhir}/fhir/ClaimResponse?identifier=nothing-filed"
        ))
        .bearer_auth(&token)
        .send()
    };
    let answers = futures::future::join_all([search(), search(), search()]).await;
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    for answer in answers {
        *statuses
            .entry(answer.expect("search answered").status().as_u16())
            .or_default() += 1;
    }
    let (ok, too_many) = (
        statuses.get(&200).copied().unwrap_or(0),
        statuses.get(&429).copied().unwrap_or(0),
    );
    assert_eq!(
        ok + too_many,
        3,
        "searches answered 200 or 429: {statuses:?}"
    );
    assert!(
        too_many >= 1,
        "three searches at once, one allowed a second: {statuses:?}"
    );
    let nowhere = http
        .get(format!("http://{fhir}/no/such/path"))
        .send()
        .await
        .expect("answered");
    assert_eq!(nowhere.status(), 404);
    let door = r#"door="fhir",service="fhir""#;
    prometheus
        .expect(
            &http,
            &format!(r#"carepath_calls_total{{{door},method="/auth/token",code="200"}}"#),
            1.0,
        )
        .await;
    let searched = format!(r#"{door},method="/fhir/ClaimResponse""#);
    prometheus
        .expect(
            &http,
            &format!(r#"carepath_calls_total{{{searched},code="200"}}"#),
            f64::from(ok),
        )
        .await;
    prometheus
        .expect(
            &http,
            &format!(r#"carepath_calls_total{{{searched},code="429"}}"#),
            f64::from(too_many),
        )
        .await;
    prometheus
        .expect(
            &http,
            r#"carepath_calls_refused_total{door="fhir",limit="rate"}"#,
            f64::from(too_many),
        )
        .await;
    // An unknown path adds no series of its own.
    prometheus
        .expect(
            &http,
            r#"carepath_calls_total{door="fhir",method="other",code="404"}"#,
            1.0,
        )
        .await;
    prometheus
        .expect(&http, r#"carepath_calls_in_progress{door="fhir"}"#, 0.0)
        .await;
    assert_no_identifiers(
        &prometheus,
        &http,
        &[
            IMAGING_IN,
            HOSPITAL,
            "M100001",
            "req-m-1",
            pended.id.as_str(),
        ],
    )
    .await;
    eprintln!(
        "sent by channel {sent:?}, {faxes} faxes failed, {refused} submissions and \
         {too_many} searches refused for their rate, {waiting} events for {IDLE_CONSUMER}"
    );
    server.terminate();
}
/// No series carries a member, provider or request id among its labels.
async fn assert_no_identifiers(prometheus: &Prometheus, http: &reqwest::Client, ids: &[&str]) {
    let series: serde_json::Value = http
        .get(prometheus.api.replace("/query", "/series"))
        .query(&[("match[]", r#"{__name__=~"carepath_.+"}"#)])
        .send()
        .await
        .expect("series")
        .json()
        .await
        .expect("json");
    let text = series.to_string();
    assert!(text.contains("carepath_calls_total"), "{text}");
    for id in ids {
        assert!(!text.contains(id), "a series names {id}: {text}");
    }
}
