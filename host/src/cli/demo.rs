//! `sluice demo`: the whole pipeline on one machine with no external service.

use crate::app::RunningApp;
use crate::config::Config;
use crate::emulate::post::{post, Api, PostPlan};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Rows the emulator posts (each is a pin, a geo and a user event).
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Where this run keeps its state and landed data (a fresh folder per run by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of the emulator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = a.dir.unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        PathBuf::from("sluice-demo").join(format!("run-{stamp}"))
    });
    let config = Config::demo(dir.clone(), "demo");
    eprintln!("starting sluice on the embedded log, landing in {}", config.landing_dir().display());
    let started = Instant::now();
    let app = RunningApp::start(&config).await?;
    eprintln!("ingest API on http://{}; posting {} rows ({} events) through the Kafka REST Proxy shape", app.addr, a.rows, a.rows * 3);
    let plan = PostPlan {
        base_url: format!("http://{}", app.addr),
        api: Api::Rest,
        user_id: "demo".into(),
        rows: a.rows,
        batch: 100,
        rate: 0,
        seed: a.seed,
        concurrency: 4,
        progress: true,
        kafka: None,
        kinesis: None,
    };
    let posted = post(&plan).await?;
    eprintln!("waiting for the pipelines to land everything…");
    let caught_up = app.wait_caught_up(Duration::from_secs(120)).await;
    app.shutdown().await?;
    let took = started.elapsed();
    print_summary(&config.landing_dir(), posted.records, took)?;
    if !caught_up {
        eprintln!("warning: the pipelines had not caught up after 120 s; the numbers above are what had landed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if posted.failed_requests == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[derive(Default)]
struct Tally {
    files: u64,
    rows: u64,
    bytes: u64,
}

/// What landed, counted from the files themselves.
fn print_summary(landing: &Path, posted: u64, took: Duration) -> anyhow::Result<()> {
    let mut raw: BTreeMap<String, Tally> = BTreeMap::new();
    let mut tables: BTreeMap<String, Tally> = BTreeMap::new();
    let mut dead: BTreeMap<String, Tally> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for path in walk(landing)? {
        let rel = path.strip_prefix(landing)?.to_string_lossy().into_owned();
        let mut parts = rel.split('/');
        let (area, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_owned());
        let bytes = std::fs::metadata(&path)?.len();
        let (tally, rows) = match area {
            "topics" => (raw.entry(name).or_default(), count_lines(&path)?),
            "tables" if rel.ends_with(".parquet") => (tables.entry(name).or_default(), parquet_rows(&path)?),
            "tables" => (tables.entry(name).or_default(), count_lines(&path)?),
            "dead-letters" => {
                for line in std::fs::read_to_string(&path)?.lines() {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                        let reason = v["reason"].as_str().unwrap_or("").chars().take(60).collect::<String>();
                        *reasons.entry(format!("{}: {reason}", v["transform"].as_str().unwrap_or(""))).or_default() += 1;
                    }
                }
                (dead.entry(name).or_default(), count_lines(&path)?)
            }
            _ => continue,
        };
        tally.files += 1;
        tally.rows += rows;
        tally.bytes += bytes;
    }
    let line = |what: &str, m: &BTreeMap<String, Tally>| {
        for (name, t) in m {
            println!("  {what:<13} {name:<14} {:>9} rows  {:>5} files  {:>10} bytes", t.rows, t.files, t.bytes);
        }
    };
    println!("\nlanded in {} ({:.1} s):", landing.display(), took.as_secs_f64());
    line("raw topic", &raw);
    line("table", &tables);
    line("dead letters", &dead);
    let raw_total: u64 = raw.values().map(|t| t.rows).sum();
    let clean_total: u64 = tables.values().map(|t| t.rows).sum::<u64>() + dead.values().map(|t| t.rows).sum::<u64>();
    println!("  posted {posted} events; {raw_total} landed raw; {clean_total} cleaned or dead-lettered");
    if !reasons.is_empty() {
        println!("  dead-letter reasons:");
        let mut by_count: Vec<_> = reasons.into_iter().collect();
        by_count.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        for (reason, n) in by_count.iter().take(5) {
            println!("    {n:>6}  {reason}");
        }
    }
    Ok(())
}

fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            out.extend(walk(&path)?);
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::read(path)?.iter().filter(|&&b| b == b'\n').count() as u64)
}

fn parquet_rows(path: &Path) -> anyhow::Result<u64> {
    use parquet::file::reader::FileReader;
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path)?)?;
    Ok(reader.metadata().file_metadata().num_rows() as u64)
}
