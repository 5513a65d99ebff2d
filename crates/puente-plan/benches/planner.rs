//! Planner throughput: records planned per second for an initial sync
//! (matching + creates) and an incremental run (three-way merge of linked pairs).

use std::collections::HashMap;

// Sync work is many small allocations (records, values, keys); mimalloc
// handles them far better than the system allocator (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use puente_core::normalize::KeyNormalizer;
use puente_core::{Fields, Record, Side, Value};
use puente_plan::{plan, Entry, FieldMap, MatchKey, PlanInput, SyncSpec};

const N: usize = 100_000;

fn spec() -> SyncSpec {
    let mut spec = SyncSpec::new(
        "bench",
        vec![
            FieldMap::new("email", "email_address"),
            FieldMap::new("first_name", "given_name"),
            FieldMap::new("last_name", "family_name"),
            FieldMap::new("city", "town"),
            FieldMap::new("phone", "phone"),
        ],
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

const A: [&str; 5] = ["email", "first_name", "last_name", "city", "phone"];
const B: [&str; 5] = [
    "email_address",
    "given_name",
    "family_name",
    "town",
    "phone",
];

fn bench(c: &mut Criterion) {
    let spec = spec();
    let refs: HashMap<(String, Side, String), String> = HashMap::new();
    let mut g = c.benchmark_group("planner");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);

    // Initial sync: 100k records on a, 100k on b, 20% of keys shared.
    let a: Vec<Record> = (0..N).map(|i| rec(format!("a{i}"), A, i, "")).collect();
    let b: Vec<Record> = (0..N)
        .map(|i| rec(format!("b{i}"), B, i + N * 4 / 5, ""))
        .collect();
    g.bench_function("initial_100k_per_side", |bch| {
        bch.iter_batched(
            || (a.clone(), b.clone()),
            |(a, b)| {
                plan(
                    &spec,
                    PlanInput {
                        a,
                        b,
                        entries: vec![],
                        refs: &refs,
                    },
                )
            },
            BatchSize::LargeInput,
        )
    });

    // Incremental: 100k linked pairs read on a, each with one field changed.
    let entries: Vec<Entry> = (0..N)
        .map(|i| {
            let mut e = Entry::new(i as i64);
            e.a_id = Some(format!("a{i}"));
            e.b_id = Some(format!("b{i}"));
            e.seen_a = Some(rec(String::new(), A, i, "").fields);
            e.seen_b = Some(rec(String::new(), B, i, "").fields);
            e
        })
        .collect();
    let changed: Vec<Record> = (0..N).map(|i| rec(format!("a{i}"), A, i, "x")).collect();
    g.bench_function("merge_100k_linked", |bch| {
        bch.iter_batched(
            || (changed.clone(), entries.clone()),
            |(a, entries)| {
                plan(
                    &spec,
                    PlanInput {
                        a,
                        b: vec![],
                        entries,
                        refs: &refs,
                    },
                )
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    let _ = Fields::new();
}

criterion_group!(benches, bench);
criterion_main!(benches);
