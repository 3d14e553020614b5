//! Requirement-check speed: nanoseconds per service line on the shipped list and on a
//! synthetic list of 100,000 rules. Run with `cargo bench -p carepath-precert`; record
//! figures in the crate's README when they change.

use std::hint::black_box;

use carepath_core::{NetworkStatus, Plan, PlanId, ServiceCode, Setting};
use carepath_precert::{
    Admission, RuleBook, ServiceLine, check_list, shipped, synthetic_codes, synthetic_list,
};
use chrono::NaiveDate;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn plan() -> Plan {
    Plan {
        id: PlanId::parse("PLAN-PCM-OAP").expect("valid plan id"),
        name: "Bench".into(),
        preferred_care_management: true,
        covers_out_of_network: true,
    }
}

fn lines(codes: Vec<ServiceCode>) -> Vec<ServiceLine> {
    codes
        .into_iter()
        .enumerate()
        .map(|(i, code)| ServiceLine {
            code,
            units: 1,
            date_of_service: NaiveDate::from_ymd_opt(2026, 6, 1).expect("valid date"),
            setting: Setting::ALL[i % Setting::ALL.len()],
            facility_kind: None,
            length_of_stay_hours: None,
            delivery: None,
            admission: Admission::Elective,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let plan = plan();
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(1));

    let book: RuleBook = shipped();
    let shipped_codes: Vec<ServiceCode> = ["70553", "90834", "J9355", "E0784", "99213", "59400"]
        .iter()
        .map(|s| ServiceCode::parse(s).expect("valid code"))
        .chain(synthetic_codes(1_000))
        .collect();
    let shipped_lines = lines(shipped_codes);
    let mut i = 0;
    group.bench_function("shipped_list_per_line", |b| {
        b.iter(|| {
            i = (i + 1) % shipped_lines.len();
            let check = book
                .check(
                    &plan,
                    NetworkStatus::InNetwork,
                    black_box(&shipped_lines[i]),
                    &[],
                )
                .expect("a list is in force");
            black_box(check.requirement)
        })
    });

    let big = synthetic_list(100_000);
    let big_lines = lines(synthetic_codes(10_000));
    let mut j = 0;
    group.bench_function("synthetic_100k_rules_per_line", |b| {
        b.iter(|| {
            j = (j + 1) % big_lines.len();
            let check = check_list(
                &big,
                &plan,
                NetworkStatus::InNetwork,
                black_box(&big_lines[j]),
                &[],
            );
            black_box(check.requirement)
        })
    });
    group.finish();

    let mut batch = c.benchmark_group("check_many");
    let batch_lines = &shipped_lines[..100];
    batch.throughput(Throughput::Elements(batch_lines.len() as u64));
    batch.bench_function("shipped_list_100_lines", |b| {
        b.iter(|| {
            black_box(book.check_many(&plan, NetworkStatus::InNetwork, black_box(batch_lines), &[]))
        })
    });
    batch.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
