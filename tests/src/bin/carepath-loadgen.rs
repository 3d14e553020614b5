//! `carepath-loadgen`: drives a running carepath server over gRPC and reports requests
//! per second and latency percentiles, closed-loop (fixed concurrency) or open-loop
//! (fixed offered rate). Bounded in count and time; targets loopback only.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use carepath_tests::load::{Scenario, ScenarioKind};
use clap::Parser;

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
    /// How long to run, in seconds (at most 120).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Database URL of the server, to find its signing key for tokens.
    #[arg(
        long,
        env = "CAREPATH_DATABASE_URL",
        default_value = "sqlite://carepath.db"
    )]
    database_url: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let seconds = args.seconds.min(120);
    let scenario =
        Arc::new(Scenario::connect(args.scenario, &args.addr, &args.database_url).await?);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut latencies: Vec<u64> = Vec::new();

    match args.rate {
        None => {
            let mut workers = Vec::new();
            for worker in 0..args.concurrency {
                let scenario = scenario.clone();
                let errors = errors.clone();
                workers.push(tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let mut i = 0_u64;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        if scenario.call(worker as u64, i).await.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        mine.push(t.elapsed().as_micros() as u64);
                        i += 1;
                    }
                    mine
                }));
            }
            for w in workers {
                latencies.extend(w.await?);
            }
        }
        Some(rate) => {
            let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = 0_u64;
            let shed = Arc::new(AtomicU64::new(0));
            while Instant::now() < deadline {
                tick.tick().await;
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    shed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (scenario, errors, tx) = (scenario.clone(), errors.clone(), tx.clone());
                let n = i;
                tokio::spawn(async move {
                    let t = Instant::now();
                    if scenario.call(0, n).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = tx.send(t.elapsed().as_micros() as u64);
                    drop(permit);
                });
                i += 1;
            }
            drop(tx);
            while let Some(l) = rx.recv().await {
                latencies.push(l);
            }
            let not_sent = shed.load(Ordering::Relaxed);
            if not_sent > 0 {
                println!("not sent (client in-flight cap reached): {not_sent}");
            }
        }
    }

    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[idx] as f64 / 1000.0
    };
    println!(
        "scenario={:?} calls={} errors={} seconds={:.1} rps={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.scenario,
        latencies.len(),
        errors.load(Ordering::Relaxed),
        elapsed,
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    Ok(())
}
