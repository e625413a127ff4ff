//! Native cleaning vs the same code as a sandboxed Wasm component, per batch size.
//!
//! `cargo bench -p sluice --bench transform`; the ratio (native time / Wasm time)
//! is what to read, both measured in the same run. Limits are on: the default
//! 64 MiB memory cap and 2 s deadline with epoch interruption.
//!
//! The built-ins speak contract 0.2.0: the host parses each record natively
//! into the declared columns and the guest cleans columns. The native side is
//! the same path with the guest's code compiled natively (`run_json`: the
//! host's decoder, then the cleaning); the Wasm side also builds the Arrow
//! arrays of the output, which the native side does not, so the ratio is if
//! anything unfair to Wasm.
//!
//! After criterion's per-case figures, a table of ratios measured interleaved:
//! each round times one native pass and one Wasm pass over the same records,
//! back to back, and the table gives the median of the rounds. On a shared
//! machine whose speed drifts, that ratio is steadier than one taken from two
//! criterion cases measured a minute apart. `BENCH_RATIO_ONLY=1` prints just
//! the table; `BENCH_ROUNDS=N` sets the rounds (default 31).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use sluice::emulate::data::Generator;
use sluice::runtime::{Runtime, SandboxLimits};
use sluice_guest::columns::run_json;
use sluice_guest::{BatchBuf, BatchRef};
use std::hint::black_box;
use std::time::{Duration, Instant};

const RECORDS: usize = 4096;

/// The same cleaning, natively: the host's decoder, then the transform's own crate.
type Native = for<'a, 'b> fn(&'a BatchRef<'b>) -> usize;

fn native<T: sluice_guest::ColumnTransform>(input: &BatchRef<'_>) -> usize {
    run_json::<T>(input).rows
}

/// (record kind, built-in name, native path) of each built-in compared.
const BUILTINS: [(&str, &str, Native); 3] = [
    ("pin", "clean-pin", native::<clean_pin::CleanPin>),
    ("geo", "clean-geo", native::<clean_geo::CleanGeo>),
    ("user", "clean-user", native::<clean_user::CleanUser>),
];

fn batches(kind: &str, size: usize) -> Vec<BatchBuf> {
    let g = Generator::new(42);
    let mut all = Vec::new();
    let mut b = BatchBuf::default();
    for i in 0..RECORDS {
        let row = g.row(g.pick(i as u64));
        let v = match kind {
            "pin" => &row.pin,
            "geo" => &row.geo,
            _ => &row.user,
        };
        b.push(&serde_json::to_vec(v).expect("json"), b"", 0);
        if b.len() == size {
            all.push(std::mem::take(&mut b));
        }
    }
    all
}

fn bench_kind(c: &mut Criterion, kind: &str, builtin: &str, native: Native) {
    let rt = Runtime::new(SandboxLimits::default(), None).expect("runtime");
    let component = rt.load_builtin(builtin).expect("builtin");
    let mut group = c.benchmark_group(builtin);
    for size in [1usize, 64, 1024] {
        let input = batches(kind, size);
        let records = (input.len() * size) as u64;
        group.throughput(Throughput::Elements(records));
        group.bench_with_input(BenchmarkId::new("native", size), &input, |b, input| {
            b.iter(|| {
                for batch in input {
                    black_box(native(&batch.as_ref()));
                }
            })
        });
        let mut worker = component.instance();
        group.bench_with_input(BenchmarkId::new("wasm", size), &input, |b, input| {
            b.iter(|| {
                for batch in input {
                    black_box(worker.process(&batch.as_ref()));
                }
            })
        });
    }
    group.finish();
}

/// Records per second of each side and their ratio, median over interleaved rounds.
fn interleaved_ratio(kind: &str, builtin: &str, native: Native, rounds: usize) {
    let rt = Runtime::new(SandboxLimits::default(), None).expect("runtime");
    let mut worker = rt.load_builtin(builtin).expect("builtin").instance();
    for size in [1usize, 64, 1024] {
        let input = batches(kind, size);
        let records = (input.len() * size) as f64;
        let time = |f: &mut dyn FnMut()| {
            let start = Instant::now();
            f();
            start.elapsed()
        };
        let (mut native_rates, mut wasm_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..=rounds {
            let n = time(&mut || {
                input.iter().for_each(|b| {
                    black_box(native(&b.as_ref()));
                })
            });
            let w = time(&mut || input.iter().for_each(|b| drop(black_box(worker.process(&b.as_ref())))));
            if round > 0 {
                // Round 0 warms caches and the instance.
                native_rates.push(records / n.as_secs_f64());
                wasm_rates.push(records / w.as_secs_f64());
                ratios.push(n.as_secs_f64() / w.as_secs_f64());
            }
        }
        println!("| {builtin} | {size} | {} rec/s | {} rec/s | {:.2}x |", si(median(&mut native_rates)), si(median(&mut wasm_rates)), median(&mut ratios));
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn si(v: f64) -> String {
    if v >= 1e6 { format!("{:.2}M", v / 1e6) } else { format!("{:.0}k", v / 1e3) }
}

fn ratio_table() {
    let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(31);
    println!("\nInterleaved, median of {rounds} rounds of 4,096 records:\n");
    println!("| transform | batch | native | Wasm | Wasm / native |\n|---|---:|---:|---:|---:|");
    for (kind, builtin, native) in BUILTINS {
        interleaved_ratio(kind, builtin, native, rounds);
    }
}

fn clean(c: &mut Criterion) {
    for (kind, builtin, native) in BUILTINS {
        bench_kind(c, kind, builtin, native);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = clean
}
fn main() {
    if std::env::var_os("BENCH_RATIO_ONLY").is_none() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    // `cargo test --benches` runs each bench once as a smoke test; the table is for `cargo bench`.
    if std::env::args().any(|a| a == "--bench") {
        ratio_table();
    }
}
