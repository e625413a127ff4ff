//! Posting generated rows to an ingest endpoint, as the original user posting
//! emulator did: pin, geo and user events for each row.

use super::data::Generator;
use crate::ingest::KafkaProducer;
use crate::ingest::KinesisProducer;
use anyhow::Context;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which wire shape to post in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// Kafka REST Proxy v2: `POST /topics/<user>.<kind>`.
    Rest,
    /// Kinesis through API Gateway: `PUT /streams/streaming-<user>-<kind>/records`.
    Kinesis,
}

#[derive(Debug, Clone)]
pub struct PostPlan {
    pub base_url: String,
    pub api: Api,
    pub user_id: String,
    /// Rows to post; each row is three records (pin, geo, user).
    pub rows: u64,
    /// Rows per request.
    pub batch: u64,
    /// Rows per second at most; 0 for as fast as the server takes them.
    pub rate: u64,
    pub seed: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub progress: bool,
    /// Produce straight into Kafka with this client config (topics `<user>.<kind>`)
    /// instead of posting to `base_url`.
    pub kafka: Option<crate::source::kafka::KafkaConfig>,
    /// Put straight into Kinesis with this client config (streams
    /// `streaming-<user>-<kind>`) instead of posting to `base_url`.
    pub kinesis: Option<crate::source::kinesis::KinesisConfig>,
}

impl PostPlan {
    /// `rows` rows to `base_url` in the `api` shape as user `user_id`: 100 rows
    /// a request, 4 requests in flight, as fast as the server takes them, seed 1,
    /// no progress line. Change the rest with `PostPlan { seed: 7, ..PostPlan::new(…) }`.
    pub fn new(base_url: impl Into<String>, api: Api, user_id: impl Into<String>, rows: u64) -> Self {
        PostPlan {
            base_url: base_url.into(),
            api,
            user_id: user_id.into(),
            rows,
            batch: 100,
            rate: 0,
            seed: 1,
            concurrency: 4,
            progress: false,
            kafka: None,
            kinesis: None,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PostSummary {
    pub rows: u64,
    pub records: u64,
    pub requests: u64,
    pub failed_requests: u64,
}

const KINDS: [&str; 3] = ["pin", "geo", "user"];

/// Post `plan.rows` rows. Transient failures (connection errors, 5xx) are
/// retried with backoff; a request refused for good counts as failed.
pub async fn post(plan: &PostPlan) -> anyhow::Result<PostSummary> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().context("building the HTTP client")?;
    let producer = match &plan.kafka {
        Some(k) => Some(Arc::new(KafkaProducer::new(k)?)),
        None => None,
    };
    let kinesis = match &plan.kinesis {
        Some(k) => Some(Arc::new(KinesisProducer::new(k).await)),
        None => None,
    };
    let g = Generator::new(plan.seed);
    let batches = plan.rows.div_ceil(plan.batch.max(1));
    let next = Arc::new(AtomicU64::new(0));
    let done_rows = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let (client, plan, next, done_rows, failed) = (client.clone(), plan.clone(), next.clone(), done_rows.clone(), failed.clone());
        let (producer, kinesis) = (producer.clone(), kinesis.clone());
        tasks.spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<_, anyhow::Error>(());
                }
                let first = b * plan.batch;
                let last = (first + plan.batch).min(plan.rows);
                if plan.rate > 0 {
                    let due = started + Duration::from_secs_f64(first as f64 / plan.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let rows: Vec<_> = (first..last).map(|n| g.row(g.pick(n))).collect();
                for kind in KINDS {
                    let values: Vec<&Value> = rows
                        .iter()
                        .map(|r| match kind {
                            "pin" => &r.pin,
                            "geo" => &r.geo,
                            _ => &r.user,
                        })
                        .collect();
                    let sent = match (&producer, &kinesis) {
                        (Some(p), _) => produce(p, &plan, kind, b, &values).await,
                        (None, Some(k)) => put_kinesis(k, &plan, kind, &values).await,
                        (None, None) => send(&client, &plan, kind, &values).await,
                    };
                    if let Err(e) = sent {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %format!("{e:#}"), kind, "request failed");
                    }
                }
                done_rows.fetch_add(last - first, Ordering::Relaxed);
            }
        });
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(r) => r.context("an emulator task panicked")??,
                None => break,
            },
            _ = ticker.tick(), if plan.progress => progress_line(done_rows.load(Ordering::Relaxed), plan.rows, started, failed.load(Ordering::Relaxed)),
        }
    }
    if plan.progress {
        progress_line(done_rows.load(Ordering::Relaxed), plan.rows, started, failed.load(Ordering::Relaxed));
        eprintln!();
    }
    let requests = batches * KINDS.len() as u64;
    Ok(PostSummary { rows: plan.rows, records: plan.rows * 3, requests, failed_requests: failed.load(Ordering::Relaxed) })
}

fn progress_line(done: u64, total: u64, started: Instant, failed: u64) {
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    eprint!("\rposted {done}/{total} rows ({:.0} rows/s), {failed} failed requests   ", done as f64 / secs);
    let _ = std::io::stderr().flush();
}

/// Produce one request's worth of records straight into Kafka, all to one
/// partition (as the REST Proxy's sticky partitioner does for keyless records).
async fn produce(producer: &KafkaProducer, plan: &PostPlan, kind: &str, batch_no: u64, values: &[&Value]) -> anyhow::Result<()> {
    let topic = format!("{}.{kind}", plan.user_id);
    let partitions = producer.partitions(&topic).await?.with_context(|| format!("Kafka has no topic `{topic}`; create it first"))?;
    let now = crate::clock::now_ms();
    let mut batch = sluice_guest::BatchBuf::default();
    for v in values {
        batch.push(v.to_string().as_bytes(), b"", now);
    }
    producer.append(&topic, &[((batch_no % u64::from(partitions)) as u32, batch)]).await?;
    Ok(())
}

/// The partition key the emulator gives a record: its row id, so a row's
/// events of one kind stay in order on one shard.
fn partition_key(v: &Value) -> String {
    v.get("index").or_else(|| v.get("ind")).map(|i| i.to_string()).unwrap_or_default()
}

/// Put one request's worth of records straight into Kinesis.
async fn put_kinesis(producer: &KinesisProducer, plan: &PostPlan, kind: &str, values: &[&Value]) -> anyhow::Result<()> {
    let stream = format!("streaming-{}-{kind}", plan.user_id);
    let records: Vec<(Vec<u8>, String)> = values.iter().map(|v| (v.to_string().into_bytes(), partition_key(v))).collect();
    let refs: Vec<(&[u8], &str)> = records.iter().map(|(d, k)| (d.as_slice(), k.as_str())).collect();
    producer.put(&stream, &refs).await.with_context(|| format!("putting records into Kinesis stream `{stream}`"))?;
    Ok(())
}

async fn send(client: &reqwest::Client, plan: &PostPlan, kind: &str, values: &[&Value]) -> anyhow::Result<()> {
    let base = plan.base_url.trim_end_matches('/');
    let request = match plan.api {
        Api::Rest => {
            let records: Vec<Value> = values.iter().map(|v| json!({ "value": v })).collect();
            client
                .post(format!("{base}/topics/{}.{kind}", plan.user_id))
                .header("content-type", "application/vnd.kafka.json.v2+json")
                .body(json!({ "records": records }).to_string())
        }
        Api::Kinesis => {
            let stream = format!("streaming-{}-{kind}", plan.user_id);
            let records: Vec<Value> = values.iter().map(|v| json!({ "Data": v, "PartitionKey": partition_key(v) })).collect();
            client
                .put(format!("{base}/streams/{stream}/records"))
                .header("content-type", "application/json")
                .body(json!({ "StreamName": stream, "Records": records }).to_string())
        }
    };
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        let req = request.try_clone().context("cloning the request")?;
        match req.send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if !resp.status().is_server_error() => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                anyhow::bail!("{status}: {body}");
            }
            Ok(resp) if attempt == 5 => anyhow::bail!("{} after {attempt} attempts", resp.status()),
            Err(e) if attempt == 5 => return Err(e).context("sending"),
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    unreachable!("the loop returns on its last attempt")
}
