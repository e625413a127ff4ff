//! Windowed aggregate throughput over 1, 3 and 12 input partitions: the whole
//! appliance (routers → repartition topic → windows workers → table), each
//! layout run twice, interleaved, in one process.
//!
//! `cargo bench -p sluice --bench windows [-- --records N] [--partitions 1,3,12] [--rounds 2] [--sql]`
//!
//! `--sql` runs every layout twice in a row: with the Wasm `count-posts`, then
//! with the same count written as a windowed SQL statement.
//!
//! `--join` measures the stream join instead: `N` rows per kind (pin, geo,
//! user; distinct ids, the three records of a row posted together) on three
//! 3-partition topics, joined by `ind` and counted by `count-posts`; reported:
//! joined rows/s, the join state at the end (the remembered keys) and peak RSS.
//!
//! The input is `N` joined posts (country, category, event time rising 10 ms
//! per record, up to 3 s out of order) appended to the embedded log before the
//! clock starts; `count-posts` counts distinct posts per country and category
//! in 1-minute windows, with the repartition topic as wide as the input. The
//! time is from start until every partition (input and repartition) is
//! committed, i.e. every record has been folded and every window it closed has
//! landed. Reported: records/s, window rows, peak RSS of the process so far.

#[path = "support/mod.rs"]
mod support;

use serde_json::json;
use sluice::config::Config;
use sluice::emulate::data::Generator;
use sluice::log::EmbeddedLog;
use sluice_guest::BatchBuf;
use std::path::Path;
use std::time::{Duration, Instant};

const TOPIC: &str = "bench.post";
const START_MS: i64 = 1_598_586_767_000;

/// count-posts written as a windowed SQL statement (`--sql`).
const COUNT_POSTS_SQL: &str = "CREATE TABLE input (ind BIGINT); \
    SELECT country, category, count(DISTINCT ind) AS post_count FROM input \
    GROUP BY TUMBLE(\"timestamp\", INTERVAL '1' MINUTE), country, category";

fn config(dir: &Path, partitions: u32, sql: bool) -> anyhow::Result<Config> {
    let mut text = format!(
        r#"data_dir = "{}"
[server]
listen = "127.0.0.1:0"
[log]
topics = ["{TOPIC}"]
partitions = {partitions}

[[pipeline]]
name = "posts"
topics = ["{TOPIC}"]
table = {{ name = "posts_by_country", formats = ["parquet"] }}
roll = {{ max_records = 100000, max_age_ms = 500 }}

[pipeline.aggregate]
name = "count-posts"
time_field = "timestamp"
group_by = ["country", "category"]
window_ms = 60000
allowed_lateness_ms = 5000

[pipeline.watermark]
close_idle_after_ms = 0
"#,
        dir.join("data").display()
    );
    if sql {
        let component = "name = \"count-posts\"\ntime_field = \"timestamp\"\ngroup_by = [\"country\", \"category\"]\nwindow_ms = 60000\n";
        text = text.replacen(component, "name = \"count-posts-sql\"\n", 1);
        text += &format!("\n[[transform]]\nname = \"count-posts-sql\"\nsql = \"\"\"-- output: post-count\n{COUNT_POSTS_SQL}\"\"\"\n");
    }
    Config::parse(&text)
}

/// Joined posts spread over the partitions in chunks, as producers send them.
fn load(c: &Config, records: u64) -> anyhow::Result<()> {
    let log = EmbeddedLog::open(&c.data_dir.join("log.redb"), &c.log)?;
    let g = Generator::new(7);
    let partitions = c.log.partitions;
    let mut n = 0u64;
    while n < records {
        let mut parts: Vec<(u32, BatchBuf)> = (0..partitions).map(|p| (p, BatchBuf::default())).collect();
        for _ in 0..30_000.min(records - n) {
            let row = g.row(g.pick(n));
            let t = START_MS + n as i64 * 10 - (n as i64 * 7919 % 300) * 10;
            let mut ts = String::new();
            sluice_guest::time::format_rfc3339_ms(t, &mut ts);
            let post = json!({"ind": row.ind, "country": row.geo["country"], "category": row.pin["category"], "timestamp": ts});
            parts[((n / 100) % partitions as u64) as usize].1.push(post.to_string().as_bytes(), b"", 0);
            n += 1;
        }
        log.append_blocking(TOPIC, parts)?;
    }
    log.close();
    Ok(())
}

const JOIN_PIPELINE: &str = r#"
[[pipeline]]
name = "posts"
topics = ["bench.pin", "bench.geo", "bench.user"]
table = { name = "posts_by_country", formats = ["parquet"] }
roll = { max_records = 100000, max_age_ms = 500 }

[pipeline.join]
inputs = [{ topic = "bench.pin", key = "ind" }, { topic = "bench.geo", key = "ind" }, { topic = "bench.user", key = "ind" }]

[pipeline.aggregate]
name = "count-posts"
time_field = "timestamp"
group_by = ["country", "category"]
window_ms = 31536000000
allowed_lateness_ms = 630720000000

[pipeline.watermark]
idle_timeout_ms = 1000
close_idle_after_ms = 2000
"#;

fn join_config(dir: &Path) -> anyhow::Result<Config> {
    let text = format!(
        "data_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[log]\ntopics = [\"bench.pin\", \"bench.geo\", \"bench.user\"]\npartitions = 3\n{JOIN_PIPELINE}",
        dir.join("data").display()
    );
    Config::parse(&text)
}

/// `rows` emulator rows, their pin, geo and user records appended together.
fn load_join(c: &Config, rows: u64) -> anyhow::Result<()> {
    let log = EmbeddedLog::open(&c.data_dir.join("log.redb"), &c.log)?;
    let g = Generator::new(7);
    let mut n = 0u64;
    while n < rows {
        let mut kinds: Vec<Vec<(u32, BatchBuf)>> = (0..3).map(|_| (0..3).map(|p| (p, BatchBuf::default())).collect()).collect();
        for _ in 0..20_000.min(rows - n) {
            let row = g.row(n as i64);
            let pin = json!({"ind": row.ind, "category": row.pin["category"], "title": row.pin["title"]});
            let geo = json!({"ind": row.ind, "country": row.geo["country"], "timestamp": row.geo["timestamp"]});
            let user = json!({"ind": row.ind, "age": row.user["age"]});
            for (k, v) in [pin, geo, user].iter().enumerate() {
                kinds[k][(n % 3) as usize].1.push(v.to_string().as_bytes(), b"", START_MS + n as i64);
            }
            n += 1;
        }
        for (topic, parts) in ["bench.pin", "bench.geo", "bench.user"].iter().zip(kinds) {
            log.append_blocking(topic, parts)?;
        }
    }
    log.close();
    Ok(())
}

fn run_join(rows: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let c = join_config(dir.path())?;
    load_join(&c, rows)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let started = Instant::now();
        let app = sluice::app::RunningApp::start(&c).await?;
        let mut joined = 0;
        while joined < rows && started.elapsed() < Duration::from_secs(900) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            joined = app.snapshot().get("posts").map_or(0, |s| s.joined_rows);
        }
        let secs = started.elapsed().as_secs_f64();
        let snap = app.snapshot().remove("posts").ok_or_else(|| anyhow::anyhow!("no status for the pipeline"))?;
        let state: u64 = snap.partitions.iter().filter(|p| p.topic.ends_with("-join")).filter_map(|p| p.windows.as_ref()).map(|w| w.state_bytes).sum();
        app.shutdown().await?;
        println!(
            "{{\"join_rows_per_kind\": {rows}, \"joined\": {joined}, \"seconds\": {secs:.3}, \"joined_rows_per_s\": {:.0}, \"input_records_per_s\": {:.0}, \"join_state_mib\": {:.1}, \"peak_rss_mib\": {:.1}}}",
            joined as f64 / secs,
            3.0 * joined as f64 / secs,
            state as f64 / (1 << 20) as f64,
            support::peak_rss_kib() as f64 / 1024.0
        );
        Ok(())
    })
}

fn run(partitions: u32, records: u64, sql: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let c = config(dir.path(), partitions, sql)?;
    load(&c, records)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let started = Instant::now();
        let app = sluice::app::RunningApp::start(&c).await?;
        anyhow::ensure!(app.wait_caught_up(Duration::from_secs(600)).await, "the aggregate did not catch up within 10 minutes");
        let secs = started.elapsed().as_secs_f64();
        let snap = app.snapshot().remove("posts").ok_or_else(|| anyhow::anyhow!("no status for the pipeline"))?;
        app.shutdown().await?;
        println!(
            "{{\"aggregate\": \"{}\", \"partitions\": {partitions}, \"records\": {}, \"repartitioned\": {}, \"window_rows\": {}, \"seconds\": {secs:.3}, \"records_per_s\": {:.0}, \"peak_rss_mib\": {:.1}}}",
            if sql { "count-posts as SQL" } else { "count-posts in Wasm" },
            snap.records_in,
            snap.repartitioned_records,
            snap.table_rows,
            snap.records_in as f64 / secs,
            support::peak_rss_kib() as f64 / 1024.0
        );
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let records: u64 = arg("--records").map_or(Ok(1_000_000), |r| r.parse())?;
    let rounds: u32 = arg("--rounds").map_or(Ok(2), |r| r.parse())?;
    if args.iter().any(|a| a == "--join") {
        for _ in 0..rounds {
            run_join(records)?;
        }
        return Ok(());
    }
    let layouts: Vec<u32> = arg("--partitions").unwrap_or_else(|| "1,3,12".into()).split(',').map(str::parse).collect::<Result<_, _>>()?;
    // `--sql`: each layout with the Wasm count-posts, then the same count as a SQL statement.
    let kinds: &[bool] = if args.iter().any(|a| a == "--sql") { &[false, true] } else { &[false] };
    for _ in 0..rounds {
        for &p in &layouts {
            for &sql in kinds {
                run(p, records, sql)?;
            }
        }
    }
    Ok(())
}
