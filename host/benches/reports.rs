//! `sluice report` over a million pins, next to DuckDB running the same nine
//! queries on the same Parquet files, in the same run.
//!
//! ```text
//! scripts/bench-reports.sh            # installs DuckDB in a venv, then runs this
//! SLUICE_BENCH_ROWS=1000000 SLUICE_BENCH_PYTHON=/path/to/python-with-duckdb cargo bench -p sluice --bench reports
//! ```
//!
//! The data is made once per row count (under target/bench-reports/) the way the
//! appliance makes it: emulator rows (with about 5% resent as exact duplicates)
//! cleaned by the built-in Wasm transforms and landed as Parquet by the sink,
//! in 3 partitions of 50,000-record segments. Each engine then runs the reports
//! three times; the median wall time is reported, and their answers are compared.

use serde_json::Value;
use sluice::emulate::data::Generator;
use sluice::position::PartitionId;
use sluice::report::{Landing, definitions, run};
use sluice::runtime::{Runtime, SandboxLimits};
use sluice::sink::{Segment, TableSpec, schema};
use sluice::store::local::LocalStore;
use sluice_guest::BatchBuf;
use std::path::{Path, PathBuf};
use std::time::Instant;

const PARTITIONS: u32 = 3;
const SEGMENT: u64 = 50_000;
const BATCH: usize = 1000;
const RUNS: usize = 3;

fn generate(landing: &Path, rows: u64) {
    let started = Instant::now();
    let store = LocalStore::new(landing).expect("landing dir");
    let rt = Runtime::new(SandboxLimits::default(), None).expect("runtime");
    let g = Generator::new(7);
    for kind in ["pin", "geo", "user"] {
        let mut transform = rt.load_builtin(&format!("clean-{kind}")).expect("built-in").instance();
        let table =
            TableSpec { name: kind.into(), schema: schema::builtin(&format!("{kind}-clean")), parquet: true, jsonl: false, partition_by: None, delta: None };
        let per_partition = rows.div_ceil(u64::from(PARTITIONS));
        for p in 0..PARTITIONS {
            let partition = PartitionId { topic: format!("bench.{kind}").as_str().into(), partition: p };
            let mut offset = 0;
            while offset < per_partition {
                let end = (offset + SEGMENT).min(per_partition);
                let mut seg = Segment::new(partition.clone(), offset);
                let mut batch = BatchBuf::default();
                for o in offset..end {
                    let n = u64::from(p) * per_partition + o;
                    // One record in twenty resends an earlier row, as the emulator does.
                    let ind = if n % 20 == 19 { (n ^ (n >> 3)).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n } else { n } as i64;
                    let row = g.row(ind);
                    let v = match kind {
                        "pin" => &row.pin,
                        "geo" => &row.geo,
                        _ => &row.user,
                    };
                    batch.push(&serde_json::to_vec(v).expect("json"), b"", 0);
                    if batch.len() == BATCH || o + 1 == end {
                        let out = transform.process(&batch.as_ref());
                        seg.write_table(&store, &table, &out.output).expect("landed");
                        batch = BatchBuf::default();
                    }
                }
                seg.finish(&[]).expect("finished");
                offset = end;
            }
        }
        eprintln!("landed {rows} {kind} records ({:.0} s so far)", started.elapsed().as_secs_f64());
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let rows: u64 = std::env::var("SLUICE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let root = std::env::var_os("SLUICE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-reports").join(rows.to_string()));
    let landing = root.join("landing");
    if !landing.join("tables/user").is_dir() {
        let _ = std::fs::remove_dir_all(&landing);
        eprintln!("making the data set: {rows} rows in {}", landing.display());
        generate(&landing, rows);
    }
    let store = LocalStore::new(&landing).expect("landing");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");

    // sluice: what `sluice report` does, minus printing: run the nine reports, write Parquet, CSV and HTML.
    let mut times = Vec::new();
    let mut results = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        results = rt.block_on(run::execute(&Landing::Dir(landing.clone()), &|_, _, _| {})).expect("reports");
        run::write(&store, &run::run_id_now(), &results).expect("written");
        times.push(started.elapsed().as_secs_f64());
    }
    let sluice_s = median(times.clone());
    eprintln!("sluice report: {times:.2?} s");

    // DuckDB: the same SQL text on the same files.
    let queries: Vec<Value> = definitions::all().iter().map(|d| serde_json::json!({ "name": d.name, "sql": d.sql })).collect();
    let qfile = root.join("queries.json");
    std::fs::write(&qfile, serde_json::to_vec(&queries).expect("json")).expect("queries written");
    let python = std::env::var("SLUICE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_reports_duckdb.py");
    let out = std::process::Command::new(&python).arg(&script).arg(&landing).arg(&qfile).arg(RUNS.to_string()).output().expect("python runs");
    if !out.status.success() {
        eprintln!("DuckDB side failed (is duckdb installed for {python}? scripts/bench-reports.sh sets it up):\n{}", String::from_utf8_lossy(&out.stderr));
        println!("reports over {rows} pins: sluice {sluice_s:.2} s (DuckDB not run)");
        return;
    }
    let duck: Value = serde_json::from_slice(&out.stdout).expect("the DuckDB script prints JSON");
    let duck_s = median(duck["seconds"].as_array().expect("seconds").iter().filter_map(Value::as_f64).collect());
    eprintln!("duckdb {}: {:.2?} s", duck["version"], duck["seconds"]);

    // Both engines must give the same answers, or the times mean nothing.
    let mut agree = true;
    for r in &results {
        let ours: Vec<Vec<String>> = r
            .batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |i| {
                    (0..b.num_columns()).map(|c| datafusion::arrow::util::display::array_value_to_string(b.column(c), i).expect("text")).collect()
                })
            })
            .collect();
        let theirs: Vec<Vec<String>> = serde_json::from_value(duck["results"][r.name].clone()).expect("rows");
        if ours != theirs {
            agree = false;
            eprintln!(
                "{}: the engines disagree\n  sluice {:?}\n  duckdb {:?}",
                r.name,
                ours.iter().take(3).collect::<Vec<_>>(),
                theirs.iter().take(3).collect::<Vec<_>>()
            );
        }
    }
    println!(
        "reports over {rows} pins (+ as many geo and user rows), median of {RUNS}: sluice {sluice_s:.2} s, DuckDB {} {duck_s:.2} s, sluice/DuckDB = {:.2}; answers {}",
        duck["version"].as_str().unwrap_or("?"),
        sluice_s / duck_s,
        if agree { "identical" } else { "DIFFER" }
    );
}
