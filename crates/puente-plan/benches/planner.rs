//! Planner throughput: records planned per second for an initial sync
//! (matching + creates) and an incremental run (three-way merge of linked
//! pairs), at the engine's page size (a run plans one page at a time) and
//! for a whole 100,000-record change set (what a dry run plans at once).
//!
//!   cargo bench -p puente-plan --bench planner

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use puente_core::normalize::KeyNormalizer;
use puente_core::{Record, Side, Value};
use puente_plan::{plan, Entry, FieldMap, MatchKey, PlanInput, SyncSpec};

// Sync work is many small allocations (records, values, keys); mimalloc
// handles them far better than the system allocator (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const A: [&str; 5] = ["email", "first_name", "last_name", "city", "phone"];
const B: [&str; 5] = [
    "email_address",
    "given_name",
    "family_name",
    "town",
    "phone",
];

fn spec() -> SyncSpec {
    let mut spec = SyncSpec::new(
        "bench",
        A.iter().zip(B).map(|(a, b)| FieldMap::new(a, b)).collect(),
    );
    spec.keys = vec![MatchKey {
        a: "email".into(),
        b: "email_address".into(),
        normalizer: KeyNormalizer::Email,
    }];
    spec
}

fn rec(id: String, names: [&str; 5], i: usize, variant: &str) -> Record {
    let mut r = Record::new(id);
    r.fields
        .insert(names[0].into(), Value::text(format!("user{i}@example.com")));
    r.fields
        .insert(names[1].into(), Value::text(format!("First{i}")));
    r.fields
        .insert(names[2].into(), Value::text(format!("Last{i}{variant}")));
    r.fields.insert(names[3].into(), Value::text("Oslo"));
    r.fields.insert(
        names[4].into(),
        Value::text(format!("+4722{:06}", i % 1_000_000)),
    );
    r
}

fn bench_size(c: &mut Criterion, n: usize) {
    let spec = spec();
    let refs: HashMap<(String, Side, String), String> = HashMap::new();
    let mut g = c.benchmark_group(format!("planner_{n}"));
    g.sample_size(if n > 10_000 { 10 } else { 50 });

    // Initial sync: n records on a, n on b, 20% of keys shared; 2n records planned.
    let a: Vec<Record> = (0..n).map(|i| rec(format!("a{i}"), A, i, "")).collect();
    let b: Vec<Record> = (0..n)
        .map(|i| rec(format!("b{i}"), B, i + n * 4 / 5, ""))
        .collect();
    g.throughput(Throughput::Elements(2 * n as u64));
    g.bench_function("initial_both_sides", |bch| {
        bch.iter_batched(
            || (a.clone(), b.clone()),
            |(a, b)| {
                plan(
                    &spec,
                    PlanInput {
                        a,
                        b,
                        entries: &[],
                        refs: &refs,
                    },
                )
            },
            BatchSize::LargeInput,
        )
    });

    // Incremental: n linked pairs read on a, each with one field changed.
    g.throughput(Throughput::Elements(n as u64));
    let entries: Vec<Entry> = (0..n)
        .map(|i| {
            let mut e = Entry::new(i as i64);
            e.a_id = Some(format!("a{i}"));
            e.b_id = Some(format!("b{i}"));
            e.seen_a = Some(rec(String::new(), A, i, "").fields);
            e.seen_b = Some(rec(String::new(), B, i, "").fields);
            e
        })
        .collect();
    let changed: Vec<Record> = (0..n).map(|i| rec(format!("a{i}"), A, i, "x")).collect();
    g.bench_function("merge_linked", |bch| {
        bch.iter_batched(
            || changed.clone(),
            |a| {
                plan(
                    &spec,
                    PlanInput {
                        a,
                        b: vec![],
                        entries: &entries,
                        refs: &refs,
                    },
                )
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    for n in [5_000, 100_000] {
        bench_size(c, n);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
