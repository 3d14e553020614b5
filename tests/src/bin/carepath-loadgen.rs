//! `carepath-loadgen`: drives a running carepath server over gRPC (or its FHIR API over
//! HTTP, for `fhir-submit`) and reports requests per second and latency percentiles, closed-loop (fixed concurrency) or open-loop
//! (fixed offered rate). Calls the server refuses for overload (UNAVAILABLE, HTTP 503) or
//! for the caller's rate limit (RESOURCE_EXHAUSTED, HTTP 429) are counted apart from
//! errors, and a health
//! check runs on its own connection throughout, so its latency under load is measured
//! too. Bounded in count and time; targets loopback only.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use carepath_tests::load::{FhirTarget, Scenario, ScenarioKind};
use clap::Parser;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[derive(Debug, Parser)]
#[command(
    name = "carepath-loadgen",
    about = "Load generator for a local carepath server"
)]
struct Args {
    /// Server address (loopback).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// What to call.
    #[arg(long, value_enum, default_value = "baseline")]
    scenario: ScenarioKind,
    /// Calls in flight at once (closed loop).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Offered calls per second (open loop); when set, `concurrency` caps calls in flight.
    #[arg(long)]
    rate: Option<u64>,
    /// How long to run, in seconds (at most 900, for sustained runs).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Milliseconds between health checks made during the run (0: none).
    #[arg(long, default_value_t = 100)]
    health_interval_ms: u64,
    /// Also print the admitted calls window by window (count, p50, p99, max of the calls
    /// started in each window of this many milliseconds), to see when slow calls happen.
    #[arg(long)]
    timeline_ms: Option<u64>,
    /// Database URL of the server, to find its signing key for tokens.
    #[arg(
        long,
        env = "CAREPATH_DATABASE_URL",
        default_value = "sqlite://carepath.db"
    )]
    database_url: String,
    /// FHIR API address, for `fhir-submit` and `crd-order-sign`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    fhir_addr: String,
    /// Registered FHIR client id (also its key id), for `fhir-submit` (the loadgen
    /// exchanges a signed assertion for an access token that lasts the run) and
    /// `crd-order-sign` (it signs each hook call's JWT).
    #[arg(long)]
    fhir_client_id: Option<String>,
    /// The FHIR client's private key (PKCS#8 PEM), for `fhir-submit` and `crd-order-sign`.
    #[arg(long)]
    fhir_key: Option<std::path::PathBuf>,
}

/// Outcomes of the calls made, by kind.
#[derive(Debug, Default)]
struct Tally {
    /// When each call the server took on started (µs into the run) and how long it took
    /// (µs), whatever its answer.
    admitted: Mutex<Vec<(u64, u64)>>,
    /// Admitted calls that failed (anything but OK).
    errors: AtomicU64,
    /// Refused at once: the server had too many calls in progress (UNAVAILABLE).
    shed: AtomicU64,
    /// Refused at once: the caller was over its rate limit (RESOURCE_EXHAUSTED).
    throttled: AtomicU64,
    /// The first error's message, to say why errors were counted.
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn record(&self, result: Result<(), tonic::Status>, run_start: Instant, started: Instant) {
        let took = started.elapsed();
        match result.as_ref().map_err(tonic::Status::code) {
            Err(Code::Unavailable) => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(Code::ResourceExhausted) => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                if self.errors.fetch_add(1, Ordering::Relaxed) == 0
                    && let Err(status) = &result
                {
                    *self.first_error.lock().expect("tally lock") = Some(status.to_string());
                }
            }
            Ok(()) => {}
        }
        self.admitted
            .lock()
            .expect("tally lock")
            .push((micros(started - run_start), micros(took)));
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The `p` quantile of sorted latencies in µs, in milliseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Checks health every `interval` until `deadline`, on a connection of its own;
/// returns the latencies (µs) and how many checks did not answer SERVING.
async fn probe_health(
    addr: String,
    interval: Duration,
    deadline: Instant,
) -> Result<(Vec<u64>, u64), tonic::transport::Error> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid address")
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tick.tick().await;
        let t = Instant::now();
        let answer = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        latencies.push(t.elapsed().as_micros() as u64);
        if !answer.is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving) {
            failures += 1;
        }
    }
    Ok((latencies, failures))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let seconds = args.seconds.min(900);
    let fhir = match (&args.fhir_client_id, &args.fhir_key) {
        (Some(client_id), Some(key)) => Some(FhirTarget {
            addr: args.fhir_addr.clone(),
            client_id: client_id.clone(),
            key: key.clone(),
            pool: args.concurrency,
        }),
        _ => None,
    };
    let scenario = Arc::new(
        Scenario::connect(
            args.scenario,
            &args.addr,
            &args.database_url,
            fhir.as_ref(),
            seconds,
        )
        .await?,
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tally = Arc::new(Tally::default());
    let health = (args.health_interval_ms > 0).then(|| {
        tokio::spawn(probe_health(
            args.addr.clone(),
            Duration::from_millis(args.health_interval_ms),
            deadline,
        ))
    });
    let started = Instant::now();
    let mut not_sent = 0_u64;

    match args.rate {
        None => {
            let mut workers = Vec::new();
            for worker in 0..args.concurrency {
                let (scenario, tally) = (scenario.clone(), tally.clone());
                workers.push(tokio::spawn(async move {
                    let mut i = 0_u64;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let result = scenario.call(worker as u64, i).await;
                        tally.record(result, started, t);
                        i += 1;
                    }
                }));
            }
            for w in workers {
                w.await?;
            }
        }
        Some(rate) => {
            let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
            let mut calls = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = 0_u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    not_sent += 1;
                    continue;
                };
                let (scenario, tally) = (scenario.clone(), tally.clone());
                let n = i;
                calls.spawn(async move {
                    let t = Instant::now();
                    let result = scenario.call(0, n).await;
                    tally.record(result, started, t);
                    drop(permit);
                });
                i += 1;
                // Reap finished calls as we go so the set stays small.
                while calls.try_join_next().is_some() {}
            }
            while calls.join_next().await.is_some() {}
        }
    }

    let elapsed = started.elapsed().as_secs_f64();
    let calls = std::mem::take(&mut *tally.admitted.lock().expect("tally lock"));
    let mut admitted: Vec<u64> = calls.iter().map(|&(_, took)| took).collect();
    admitted.sort_unstable();
    let shed = tally.shed.load(Ordering::Relaxed);
    let throttled = tally.throttled.load(Ordering::Relaxed);
    let per_second = |n: u64| n as f64 / elapsed;
    println!(
        "scenario={:?} calls={} errors={} seconds={:.1} rps={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.scenario,
        admitted.len(),
        tally.errors.load(Ordering::Relaxed),
        elapsed,
        per_second(admitted.len() as u64),
        percentile(&admitted, 0.50),
        percentile(&admitted, 0.99),
        percentile(&admitted, 1.0),
    );
    println!(
        "refused: shed={shed} shed_rps={:.0} throttled={throttled} throttled_rps={:.0}",
        per_second(shed),
        per_second(throttled),
    );
    if let Some(rate) = args.rate {
        println!(
            "offered_rps={rate} sent={} not_sent={not_sent}{}",
            admitted.len() as u64 + shed + throttled,
            if not_sent > 0 {
                " (the client's in-flight cap was reached: raise --concurrency)"
            } else {
                ""
            },
        );
    }
    if let Some(first) = tally.first_error.lock().expect("tally lock").take() {
        eprintln!("first error: {first}");
    }
    if let Some(window_ms) = args.timeline_ms {
        print_timeline(&calls, window_ms.max(1));
    }
    if let Some(health) = health {
        let (mut checks, failures) = health.await??;
        checks.sort_unstable();
        println!(
            "health: checks={} not_serving={failures} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            checks.len(),
            percentile(&checks, 0.50),
            percentile(&checks, 0.99),
            percentile(&checks, 1.0),
        );
    }
    Ok(())
}

/// One line per window of `window_ms`: the calls started in it and their latencies.
fn print_timeline(calls: &[(u64, u64)], window_ms: u64) {
    let window_us = window_ms * 1000;
    let mut windows: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for &(start, took) in calls {
        windows.entry(start / window_us).or_default().push(took);
    }
    for (window, mut took) in windows {
        took.sort_unstable();
        println!(
            "window_start_ms={} calls={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            window * window_ms,
            took.len(),
            percentile(&took, 0.50),
            percentile(&took, 0.99),
            percentile(&took, 1.0),
        );
    }
}
