//! Reading over HTTP: a REST Proxy v2 consumer draining a topic of the
//! embedded log, side by side with reading the same log directly.
//!
//! `cargo bench -p sluice --bench consume [-- --records N]` (default 300,000 pins, 3 partitions)
//!
//! Each round reads every record three ways, back to back: straight from the
//! log (`EmbeddedLog::read`, the floor), and over HTTP on 127.0.0.1 by a
//! consumer instance of format `binary` and one of format `json` (a fresh group
//! each, `earliest`, auto commit on, `max_bytes` 4 MiB per answer). It prints
//! records/s, MB/s of values and the HTTP/direct ratio of each round.

use sluice::consume::{self, ConsumeConfig, ConsumeState, EmbeddedGroups, KinesisReads};
use sluice::emulate::data::Generator;
use sluice::log::{EmbeddedLog, EmbeddedLogConfig};
use sluice_guest::BatchBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "bench.pin";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let records: u64 = args.iter().position(|a| a == "--records").and_then(|i| args.get(i + 1)).map_or(Ok(300_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &EmbeddedLogConfig { topics: vec![TOPIC.into()], partitions: 3, ..Default::default() })?;
    let g = Generator::new(3);
    let mut bytes = 0u64;
    let mut n = 0u64;
    while n < records {
        let mut parts: Vec<(u32, BatchBuf)> = (0..3).map(|p| (p, BatchBuf::default())).collect();
        for _ in 0..30_000.min(records - n) {
            let value = serde_json::to_vec(&g.row(g.pick(n)).pin)?;
            bytes += value.len() as u64;
            parts[(n % 3) as usize].1.push(&value, b"", 0);
            n += 1;
        }
        log.append_blocking(TOPIC, parts)?;
    }
    println!("{records} pins, {:.1} MB of values, 3 partitions", bytes as f64 / 1e6);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let groups = Arc::new(EmbeddedGroups::open(log.clone(), Duration::from_secs(600))?);
    let state = ConsumeState::new(groups, KinesisReads::Embedded(log.clone()), ConsumeConfig::default());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    rt.spawn(async move { axum::serve(listener, consume::router(state)).await });
    let http = reqwest::Client::new();

    for round in 1..=3 {
        let t = Instant::now();
        let mut direct = 0u64;
        for p in 0..3 {
            let mut at = 0;
            loop {
                let f = log.read(TOPIC, p, at, 2000)?;
                if f.offsets.is_empty() {
                    break;
                }
                direct += f.offsets.len() as u64;
                at = f.next_offset;
            }
        }
        let floor = t.elapsed();
        assert_eq!(direct, records);
        let mut line = format!("round {round}: direct {:>9.0} rec/s", records as f64 / floor.as_secs_f64());
        for format in ["binary", "json"] {
            let group = format!("bench-{round}-{format}");
            let took = rt.block_on(drain(&http, &base, &group, format, records))?;
            line.push_str(&format!(
                " | http {format} {:>8.0} rec/s {:>6.1} MB/s ({:.2}× direct)",
                records as f64 / took.as_secs_f64(),
                bytes as f64 / 1e6 / took.as_secs_f64(),
                floor.as_secs_f64() / took.as_secs_f64()
            ));
        }
        println!("{line}");
    }
    Ok(())
}

async fn drain(http: &reqwest::Client, base: &str, group: &str, format: &str, records: u64) -> anyhow::Result<Duration> {
    let v2 = "application/vnd.kafka.v2+json";
    let accept = if format == "json" { "application/vnd.kafka.json.v2+json" } else { "application/vnd.kafka.binary.v2+json" };
    let body = serde_json::json!({"name": "c", "format": format, "auto.offset.reset": "earliest"}).to_string();
    let r = http.post(format!("{base}/consumers/{group}")).header("content-type", v2).body(body).send().await?;
    anyhow::ensure!(r.status().is_success(), "create: {}", r.text().await?);
    let uri = format!("{base}/consumers/{group}/instances/c");
    let r = http.post(format!("{uri}/subscription")).header("content-type", v2).body(format!(r#"{{"topics":["{TOPIC}"]}}"#)).send().await?;
    anyhow::ensure!(r.status().is_success(), "subscribe: {}", r.text().await?);
    let t = Instant::now();
    let mut got = 0u64;
    while got < records {
        let page: Vec<serde_json::Value> =
            http.get(format!("{uri}/records?timeout=100&max_bytes=4194304")).header("accept", accept).send().await?.json().await?;
        anyhow::ensure!(!page.is_empty(), "the consumer stopped at {got} of {records}");
        got += page.len() as u64;
    }
    Ok(t.elapsed())
}
