//! The metrics endpoint read by a real Prometheus: the server (every area, on a
//! clock the test moves) and the FHIR door record into the Prometheus exporter that
//! `--metrics-listen` starts; a `prometheus` process scrapes it every second; the
//! figures are read back through Prometheus's query API. A pended case goes past its
//! due time when the application's clock passes it, and the gauge says so.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`; tests/run.sh installs
//! it). One backend: what is counted does not depend on it.

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{Request, StatusCode, header},
};
use carepath_app::{
    limits::CallerRate,
    precert::{Precert, PrecertEngine},
};
use carepath_core::{Actor, Role};
use carepath_fhir::{FhirDoor, http::HttpLimits, router};
use carepath_proto::precert::v1 as pb;
use carepath_server::Limits;
use carepath_tests::{
    ServerOptions, TestDb, TestServer,
    notify_support::free_port,
    precert::{IMAGING_IN, client, flag, mri, number},
};
use tower::ServiceExt;

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

    /// Waits (up to a minute) until `query` gives `expected`; fails with what it gave
    /// last.
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

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_calls_refusals_and_cases_past_due() {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    carepath_cli::telemetry::start_metrics(metrics).expect("metrics endpoint");
    let prometheus = Prometheus::start(metrics);
    let http = reqwest::Client::new();

    let db = TestDb::sqlite().await;
    let server = TestServer::start_with(
        &db,
        ServerOptions {
            limits: Limits {
                gauge_interval: Duration::from_millis(500),
                ..Limits::default()
            },
            ..ServerOptions::default()
        },
    )
    .await;
    let mut c = client(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING_IN);

    // Two approved at once, one pended for clinical review (never denied by automation).
    for id in ["req-m-1", "req-m-2"] {
        let case = c
            .submit(server.request(&provider, mri(id, vec![flag("red_flag_symptoms", true)])))
            .await
            .expect("submitted")
            .into_inner()
            .case
            .expect("case");
        assert_eq!(case.status(), pb::CaseStatus::Approved);
    }
    let review = vec![
        flag("red_flag_symptoms", false),
        number("conservative_therapy_weeks", 2.0),
    ];
    let pended = c
        .submit(server.request(&provider, mri("req-m-3", review)))
        .await
        .expect("submitted")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(pended.status(), pb::CaseStatus::PendedReview);
    // A call without a token is refused by the admission layer, and counted.
    let refused = c
        .submit(tonic::Request::new(mri("req-m-4", vec![])))
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let submit = r#"door="grpc",service="carepath.precert.v1.PrecertService",method="Submit""#;
    prometheus
        .expect(
            &http,
            &format!(r#"carepath_calls_total{{{submit},code="Ok"}}"#),
            3.0,
        )
        .await;
    prometheus
        .expect(
            &http,
            &format!(r#"carepath_calls_total{{{submit},code="Unauthenticated"}}"#),
            1.0,
        )
        .await;
    prometheus
        .expect(
            &http,
            &format!("carepath_call_duration_seconds_count{{{submit}}}"),
            4.0,
        )
        .await;
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
    let audited = prometheus
        .value(&http, "carepath_audit_entries_total")
        .await;
    assert!(
        audited.is_some_and(|n| n >= 3.0),
        "three cases made, three audit entries at least: {audited:?}"
    );
    // The outbox consumers report a backlog series each, emptied as they keep up.
    prometheus
        .expect(&http, r#"carepath_outbox_backlog{consumer="notify"}"#, 0.0)
        .await;

    // The case's due time passes on the application's clock: the gauge follows.
    let due = pended.due_at.expect("due time").seconds;
    let now = server.clock_now().timestamp();
    server
        .clock
        .advance(chrono::Duration::seconds(due - now + 3600));
    prometheus
        .expect(&http, "carepath_precert_cases_past_due", 1.0)
        .await;

    // The FHIR door counts its requests and refusals too.
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(&db, &keys).await;
    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    let limits = HttpLimits {
        per_caller: Some(CallerRate {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(1).unwrap(),
        }),
        ..HttpLimits::default()
    };
    let door = FhirDoor::new(
        app.clone(),
        Precert::new(app.clone(), engine),
        "http://127.0.0.1:8080",
        &limits,
    );
    let routes =
        router(door, limits).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40_000))));
    let token = app
        .auth
        .mint_scoped(
            &Actor::new(Role::Provider, IMAGING_IN).unwrap(),
            app.now(),
            chrono::Duration::minutes(5),
            "system/ClaimResponse.s",
            "client",
        )
        .unwrap();
    let search = || {
        Request::get("/fhir/ClaimResponse?identifier=nothing-filed")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let first = routes.clone().oneshot(search()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = routes.clone().oneshot(search()).await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let nowhere = routes
        .clone()
        .oneshot(Request::get("/no/such/path").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    let fhir = r#"door="fhir",service="fhir",method="/fhir/ClaimResponse""#;
    prometheus
        .expect(
            &http,
            &format!(r#"carepath_calls_total{{{fhir},code="200"}}"#),
            1.0,
        )
        .await;
    prometheus
        .expect(
            &http,
            &format!(r#"carepath_calls_total{{{fhir},code="429"}}"#),
            1.0,
        )
        .await;
    prometheus
        .expect(
            &http,
            r#"carepath_calls_refused_total{door="fhir",limit="rate"}"#,
            1.0,
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
    assert_no_identifiers(&prometheus, &http, &[IMAGING_IN, "M100001", "req-m-1"]).await;
    server.stop().await;
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
