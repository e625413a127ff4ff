//! Native cleaning vs the same code as a sandboxed Wasm component, per batch size.
//!
//! `cargo bench -p sluice --bench transform`; the ratio (native time / Wasm time)
//! is what to read, both measured in the same run. Limits are on: the default
//! 64 MiB memory cap and 2 s deadline with epoch interruption.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::emulate::data::Generator;
use sluice::runtime::{Runtime, SandboxLimits};
use sluice_guest::{run_batch, BatchBuf, Transform};
use std::hint::black_box;

const RECORDS: usize = 4096;

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

fn bench_kind<T: Transform>(c: &mut Criterion, kind: &str, builtin: &str) {
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
                    black_box(run_batch::<T>(&batch.as_ref()));
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

fn clean(c: &mut Criterion) {
    bench_kind::<clean_pin::CleanPin>(c, "pin", "clean-pin");
    bench_kind::<clean_geo::CleanGeo>(c, "geo", "clean-geo");
    bench_kind::<clean_user::CleanUser>(c, "user", "clean-user");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = clean
}
criterion_main!(benches);
