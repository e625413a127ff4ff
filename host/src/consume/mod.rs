//! Reading over HTTP, in the shapes existing clients speak: the Confluent
//! Kafka REST Proxy v2 consumer API (`/consumers/...`), over the embedded log
//! or as real members of Kafka consumer groups, and the API-Gateway shapes of
//! Kinesis `GetShardIterator` and `GetRecords` (`GET /streams/...`).

mod embedded;
mod error;
mod kafka;
mod kinesis;
pub mod openapi;
mod routes;
pub mod wire;

pub use embedded::EmbeddedGroups;
pub use error::ConsumeError;
pub use kafka::KafkaGroups;
pub use kinesis::KinesisReads;

use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use wire::{CommittedOffset, InstanceSettings, PartitionOffset, ReadRecord, Subscribe, TopicPartition};

/// `[consume]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumeConfig {
    /// Where consumers read: `embedded` (the embedded log) or `kafka`.
    /// Default: `kafka` when ingest writes to Kafka, else `embedded`.
    pub from: Option<ConsumeFrom>,
    /// A consumer instance with no request for this long is removed (and,
    /// with auto commit, commits what it read), as the REST Proxy's
    /// `consumer.instance.timeout.ms`.
    pub instance_timeout_ms: u64,
    /// How long `GET …/records` waits for records when the request names no `timeout`.
    pub request_timeout_ms: u64,
    /// Most key and value bytes one `GET …/records` answer carries; a request's
    /// `max_bytes` may ask for less.
    pub max_response_bytes: usize,
}

impl Default for ConsumeConfig {
    fn default() -> Self {
        ConsumeConfig { from: None, instance_timeout_ms: 300_000, request_timeout_ms: 1000, max_response_bytes: 64 << 20 }
    }
}

impl ConsumeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.instance_timeout_ms < 1000 {
            return Err(format!("consume.instance_timeout_ms must be at least 1000, got {}", self.instance_timeout_ms));
        }
        if self.request_timeout_ms > 60_000 {
            return Err(format!("consume.request_timeout_ms must be at most 60000, got {}", self.request_timeout_ms));
        }
        if self.max_response_bytes < 1024 {
            return Err(format!("consume.max_response_bytes must be at least 1024, got {}", self.max_response_bytes));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeFrom {
    Embedded,
    Kafka,
}

/// What the consumer routes need of a backend. Every call may block (on the
/// log's store or on the brokers): the routes run them off the async threads.
pub trait Groups: Send + Sync {
    fn create(&self, group: &str, instance: &str, settings: InstanceSettings) -> Result<(), ConsumeError>;
    fn delete(&self, group: &str, instance: &str) -> Result<(), ConsumeError>;
    fn settings(&self, group: &str, instance: &str) -> Result<InstanceSettings, ConsumeError>;
    fn subscribe(&self, group: &str, instance: &str, to: Subscribe) -> Result<(), ConsumeError>;
    fn subscription(&self, group: &str, instance: &str) -> Result<Vec<String>, ConsumeError>;
    fn unsubscribe(&self, group: &str, instance: &str) -> Result<(), ConsumeError>;
    fn assign(&self, group: &str, instance: &str, parts: Vec<TopicPartition>) -> Result<(), ConsumeError>;
    fn assignments(&self, group: &str, instance: &str) -> Result<Vec<TopicPartition>, ConsumeError>;
    /// Records after the instance's positions: waits up to `timeout` for the
    /// first, then returns what is there, up to about `max_bytes`.
    fn read(&self, group: &str, instance: &str, timeout: Duration, max_bytes: usize) -> Result<Vec<ReadRecord>, ConsumeError>;
    /// Commit the given offsets (each the last record processed), or with
    /// `None` everything the instance has read.
    fn commit(&self, group: &str, instance: &str, offsets: Option<Vec<PartitionOffset>>) -> Result<(), ConsumeError>;
    fn committed(&self, group: &str, instance: &str, parts: Vec<TopicPartition>) -> Result<Vec<CommittedOffset>, ConsumeError>;
    fn seek(&self, group: &str, instance: &str, offsets: Vec<PartitionOffset>) -> Result<(), ConsumeError>;
    fn seek_to(&self, group: &str, instance: &str, parts: Vec<TopicPartition>, end: bool) -> Result<(), ConsumeError>;
    /// Remove instances idle past the timeout; which ones went.
    fn expire(&self) -> Vec<(String, String)>;
}

pub struct ConsumeState {
    pub groups: Arc<dyn Groups>,
    pub kinesis: KinesisReads,
    pub config: ConsumeConfig,
}

impl ConsumeState {
    pub fn new(groups: Arc<dyn Groups>, kinesis: KinesisReads, config: ConsumeConfig) -> Arc<Self> {
        Arc::new(ConsumeState { groups, kinesis, config })
    }
}

/// The consumer routes.
pub fn router(state: Arc<ConsumeState>) -> axum::Router {
    routes::router(state)
}

/// Remove idle instances every few seconds, for as long as the task runs.
pub fn spawn_expiry(state: Arc<ConsumeState>) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_millis(state.config.instance_timeout_ms / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let groups = state.groups.clone();
            if let Ok(gone) = tokio::task::spawn_blocking(move || groups.expire()).await {
                for (g, i) in gone {
                    tracing::info!(group = %g, instance = %i, "removed a consumer instance idle past consume.instance_timeout_ms");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests;
