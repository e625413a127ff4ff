//! `sluice demo`: the whole pipeline on one machine with no external service.

use super::locate;
use crate::app::RunningApp;
use crate::config::Config;
use crate::emulate::post::{Api, PostPlan, post};
use anyhow::Context;
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
    /// Keep the appliance up after everything has landed, until Ctrl-C: open the
    /// status page, /metrics and the admin API (`sluice pipeline list`) on the data
    /// the demo landed, or post more events to it.
    #[arg(long)]
    keep_serving: bool,
    /// Address to serve on. Default: a free port, or 127.0.0.1:8080 with
    /// --keep-serving (where `sluice pipeline …` and the other admin commands look).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

pub async fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = a.dir.unwrap_or_else(locate::new_demo_run);
    let mut config = Config::demo(dir.clone(), "demo");
    let default_listen = if a.keep_serving { std::net::SocketAddr::from(([127, 0, 0, 1], 8080)) } else { config.server.listen };
    config.server.listen = a.listen.unwrap_or(default_listen);
    eprintln!("starting sluice on the embedded log, landing in {}", config.landing_dir().display());
    let started = Instant::now();
    let app = RunningApp::start(&config)
        .await
        .with_context(|| format!("starting the appliance on {} (choose another address with --listen)", config.server.listen))?;
    eprintln!("ingest API on http://{}; posting {} rows ({} events) through the Kafka REST Proxy shape", app.addr, a.rows, a.rows * 3);
    let plan = PostPlan { seed: a.seed, progress: true, ..PostPlan::new(format!("http://{}", app.addr), Api::Rest, "demo", a.rows) };
    let posted = post(&plan).await?;
    eprintln!("waiting for the pipelines to land everything…");
    let caught_up = app.wait_caught_up(Duration::from_secs(120)).await;
    let took = started.elapsed();
    let addr = app.addr;
    if a.keep_serving {
        print_summary(&config.landing_dir(), posted.records, took)?;
        print_serving(addr, &dir);
        super::serve::wait_for_signal().await?;
        eprintln!("stopping: landing and committing what is in flight…");
        app.shutdown().await?;
    } else {
        app.shutdown().await?;
        print_summary(&config.landing_dir(), posted.records, took)?;
        print_next_steps(&dir);
    }
    if !caught_up {
        eprintln!("warning: the pipelines had not caught up after 120 s; the numbers above are what had landed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if posted.failed_requests == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What to do next, with commands that work as printed from this folder.
fn print_next_steps(dir: &Path) {
    let sluice = locate::invocation();
    let landing = dir.join("landing");
    let found_by_default = locate::default_data_dir_here().ok().flatten().is_some_and(|f| f.dir == dir);
    // Spell the landing out only when the other commands would not find it by themselves.
    let flag = if found_by_default { String::new() } else { format!(" --landing {}", landing.display()) };
    println!("\nnext:");
    println!("  {sluice} query{flag} \"SELECT category, count(*) AS pins FROM pin GROUP BY 1 ORDER BY 2 DESC LIMIT 5\"");
    println!("  {sluice} report{flag}        # the nine reports, printed, with an HTML summary under {}/reports/", landing.display());
    println!("  {sluice} demo --keep-serving  # the same, then stays up: status page, /metrics, admin API");
    println!("  {sluice} serve --config deploy/sluice.toml  # run from a config (Kafka, Kinesis, S3: see docs/)");
}

/// Where to look while `--keep-serving` holds the appliance up.
fn print_serving(addr: std::net::SocketAddr, dir: &Path) {
    let sluice = locate::invocation();
    println!("\nserving on http://{addr} until Ctrl-C:");
    println!("  http://{addr}/            status page: pipelines, counts, lag, active transform versions");
    println!("  http://{addr}/metrics     Prometheus metrics");
    println!("  http://{addr}/status      the same counts as JSON");
    println!("  admin API (token in {}):", dir.join("admin.token").display());
    println!("    {sluice} pipeline list --url http://{addr} --data-dir {}", dir.display());
    println!("    {sluice} emulate --url http://{addr} --rows 5000 --user-id demo   # post more");
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
