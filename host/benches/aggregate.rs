//! Aggregate fold throughput: the built-in aggregates native vs as sandboxed
//! Wasm components, folding the same batches into the same growing state.
//!
//! `cargo bench -p sluice --bench aggregate`; read the ratio of the `native`
//! and `wasm` throughputs of one group, both measured in the same run. Every
//! fold call decodes and re-encodes the state (the host owns it between calls),
//! natively as in Wasm, so the ratio is the cost of the sandbox alone.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sluice::emulate::data::Generator;
use sluice::runtime::{Runtime, SandboxLimits};
use sluice_guest::aggregate::{run_fold, run_init};
use sluice_guest::{Aggregate, BatchBuf};
use std::hint::black_box;

const RECORDS: usize = 4096;

/// Joined posts as the aggregate stage hands them over: the record, and its
/// group key (country and category) as the record key.
fn batches(size: usize) -> Vec<BatchBuf> {
    let g = Generator::new(42);
    let mut all = Vec::new();
    let mut b = BatchBuf::default();
    for i in 0..RECORDS {
        let row = g.row(g.pick(i as u64));
        let post = json!({
            "ind": row.pin["index"], "category": row.pin["category"], "country": row.geo["country"],
            "timestamp": row.geo["timestamp"], "age": row.user["age"], "follower_count": (i * 7919) % 100_000,
        });
        let key = json!({"country": row.geo["country"], "category": row.pin["category"]});
        b.push(post.to_string().as_bytes(), key.to_string().as_bytes(), 0);
        if b.len() == size {
            all.push(std::mem::take(&mut b));
        }
    }
    all
}

fn bench_aggregate<A: Aggregate>(c: &mut Criterion, builtin: &str) {
    let rt = Runtime::new(SandboxLimits::default(), None).expect("runtime");
    let component = rt.load_builtin(builtin).expect("builtin");
    let mut group = c.benchmark_group(format!("fold/{builtin}"));
    for size in [64usize, 1024] {
        let input = batches(size);
        group.throughput(Throughput::Elements((input.len() * size) as u64));
        group.bench_with_input(BenchmarkId::new("native", size), &input, |b, input| {
            b.iter(|| {
                let mut state = run_init::<A>();
                for batch in input {
                    state = run_fold::<A>(&state, &batch.as_ref()).expect("fold").state;
                }
                black_box(state)
            })
        });
        let mut agg = component.aggregate_instance().expect("an aggregate");
        group.bench_with_input(BenchmarkId::new("wasm", size), &input, |b, input| {
            b.iter(|| {
                let mut state = agg.init().expect("init");
                for batch in input {
                    let folded = agg.fold(&state, &batch.as_ref());
                    assert!(folded.failures.is_empty(), "{:?}", folded.failures.first());
                    state = folded.state;
                }
                black_box(state)
            })
        });
    }
    group.finish();
}

fn fold(c: &mut Criterion) {
    bench_aggregate::<count_posts::CountPosts>(c, "count-posts");
    bench_aggregate::<follower_percentiles::FollowerPercentiles>(c, "follower-percentiles");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = fold
}
criterion_main!(benches);
