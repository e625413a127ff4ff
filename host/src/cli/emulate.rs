//! `sluice emulate`: post generated events to a running sluice (or anything that
//! speaks the REST Proxy or API-Gateway Kinesis shapes).

use crate::emulate::post::{Api, PostPlan, post};
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct EmulateArgs {
    /// Base URL of the ingest API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Wire shape: `rest` (Kafka REST Proxy v2) or `kinesis` (API Gateway PutRecords).
    #[arg(long, value_enum, default_value = "rest")]
    api: Api,
    /// The user id in topic and stream names: topics `<id>.pin`, streams `streaming-<id>-pin`.
    #[arg(long, default_value = "demo")]
    user_id: String,
    /// Rows to post; each row is a pin, a geo and a user event.
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Rows per request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=500))]
    batch: u64,
    /// At most this many rows per second (0: as fast as the server answers).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seed of the generator: the same seed posts the same rows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Produce straight into Kafka at these brokers (`host:port,…`) instead of
    /// posting to --url; topics `<user-id>.pin|geo|user` must exist.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// Put straight into Kinesis instead of posting to --url: give the endpoint
    /// of a Kinesis-compatible server (`http://127.0.0.1:4567`), or `aws` for
    /// AWS itself (region and credentials from the standard AWS chain).
    /// Streams `streaming-<user-id>-pin|geo|user` must exist.
    #[arg(long, value_name = "ENDPOINT", conflicts_with = "kafka")]
    kinesis: Option<String>,
}

pub async fn run(a: EmulateArgs) -> anyhow::Result<ExitCode> {
    let plan = PostPlan {
        base_url: a.url,
        api: a.api,
        user_id: a.user_id,
        rows: a.rows,
        batch: a.batch,
        rate: a.rate,
        seed: a.seed,
        concurrency: a.concurrency,
        progress: true,
        kafka: match a.kafka {
            Some(brokers) => {
                let k: crate::source::kafka::KafkaConfig = toml::from_str(&format!("brokers = {}", toml::Value::String(brokers)))?;
                k.validate().map_err(anyhow::Error::msg)?;
                Some(k)
            }
            None => None,
        },
        kinesis: a.kinesis.map(|endpoint| crate::source::kinesis::KinesisConfig::for_endpoint((endpoint != "aws").then_some(endpoint))),
    };
    let s = post(&plan).await?;
    println!("posted {} rows ({} records) in {} requests; {} requests failed", s.rows, s.records, s.requests, s.failed_requests);
    Ok(if s.failed_requests == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
