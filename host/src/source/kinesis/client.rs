//! The Kinesis client (aws-sdk-kinesis) and the calls sluice makes through it.
//!
//! The SDK is async; pipeline workers are plain threads, so their calls run on
//! the process's runtime for blocking calls ([`crate::sync::block_on`]). The SDK's own retries
//! are off: throttling is answered here, with backoff that is counted and
//! logged, so an operator sees it.

use super::config::{KinesisConfig, StartFrom};
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use std::time::Duration;

/// Error codes that mean "slow down", not "something is wrong".
const THROTTLING_CODES: &[&str] = &["ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException", "KMSThrottlingException"];

pub(crate) use crate::sync::block_on;

/// What went wrong with a call, sorted by what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Too many calls or bytes for the shard or the account: wait and try again.
    #[error("throttled by Kinesis ({0})")]
    Throttled(String),
    /// The shard iterator is older than five minutes: get a new one.
    #[error("shard iterator expired")]
    IteratorExpired,
    #[error("{0}")]
    Other(String),
}

fn classify<E, R>(e: aws_sdk_kinesis::error::SdkError<E, R>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.code() {
        Some(c) if THROTTLING_CODES.contains(&c) => CallError::Throttled(c.to_owned()),
        Some("ExpiredIteratorException") => CallError::IteratorExpired,
        _ => CallError::Other(shown(&e)),
    }
}

/// The error code and message, then the causes (the SDK's Display alone is terse).
fn shown<E: ProvideErrorMetadata + std::error::Error>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        _ => crate::telemetry::with_causes(e),
    }
}

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    /// The shard it was split from, or the first of the two it was merged from.
    pub parent: Option<String>,
    /// The second shard of a merge.
    pub adjacent_parent: Option<String>,
    /// Set once the shard is closed (split or merged): it takes no new records.
    pub closed: bool,
    pub hash_key_start: String,
    pub hash_key_end: String,
}

impl ShardInfo {
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent.iter().chain(self.adjacent_parent.iter()).map(String::as_str)
    }
}

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq)]
pub enum StartAt {
    /// At this sequence number (the first record not yet landed).
    At(String),
    /// After this sequence number (the last record landed).
    After(String),
    /// The shard's oldest record kept.
    TrimHorizon,
    /// Records put from now on.
    Latest,
    /// Records put at or after this time (seconds since the epoch).
    Timestamp(f64),
}

impl StartAt {
    /// Where a shard with no checkpoint starts, per `[kinesis] start_from`.
    pub fn configured(config: &KinesisConfig) -> StartAt {
        match config.start_from {
            StartFrom::TrimHorizon => StartAt::TrimHorizon,
            StartFrom::Latest => StartAt::Latest,
            StartFrom::AtTimestamp => StartAt::Timestamp(config.start_time().unwrap_or(0.0)),
        }
    }
}

/// One record read from a shard.
pub struct ReadRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// Approximate arrival time, ms since the epoch.
    pub arrived_ms: i64,
}

/// One GetRecords answer.
pub struct ReadBatch {
    pub records: Vec<ReadRecord>,
    /// `None` once a closed shard has been read to its end.
    pub next_iterator: Option<String>,
    pub millis_behind_latest: Option<i64>,
}

/// The outcome of one record of a PutRecords call.
pub enum PutOutcome {
    Stored {
        shard_id: String,
        sequence_number: String,
    },
    /// Refused for now (throttled, internal failure): put it again.
    Retry(String),
}

/// Cheap to clone: the SDK client shares its connection pool.
#[derive(Clone)]
pub struct Kinesis {
    client: aws_sdk_kinesis::Client,
}

impl Kinesis {
    /// Build the client from the standard AWS chain plus the config's overrides.
    pub async fn connect(config: &KinesisConfig) -> Self {
        Self::build(config, None).await
    }

    /// A client with fixed credentials (for tools and tests against a local server).
    pub async fn connect_as(config: &KinesisConfig, access_key_id: &str, secret_access_key: &str) -> Self {
        Self::build(config, Some(aws_sdk_kinesis::config::Credentials::new(access_key_id, secret_access_key, None, None, "sluice"))).await
    }

    async fn build(config: &KinesisConfig, credentials: Option<aws_sdk_kinesis::config::Credentials>) -> Self {
        use aws_sdk_kinesis::config::{Builder, Region};
        let mut b = match credentials {
            // Fixed credentials: nothing to look up in the environment.
            Some(c) => Builder::new()
                .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
                .credentials_provider(c)
                .region(Region::new(config.region.clone().unwrap_or_else(|| "us-east-1".into()))),
            None => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(r) = &config.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                let shared = loader.load().await;
                let b = Builder::from(&shared);
                if shared.region().is_none() { b.region(Region::new("us-east-1")) } else { b }
            }
        };
        b = b.retry_config(aws_sdk_kinesis::config::retry::RetryConfig::standard().with_max_attempts(1)).timeout_config(
            aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
        if let Some(url) = &config.endpoint_url {
            b = b.endpoint_url(url);
        }
        Kinesis { client: aws_sdk_kinesis::Client::from_conf(b.build()) }
    }

    /// Every shard of `stream`, open and closed (ListShards, all pages).
    pub async fn list_shards(&self, stream: &str) -> Result<Vec<ShardInfo>, CallError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // A page after the first names the stream only through its token.
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(stream),
            };
            let page = req.send().await.map_err(classify)?;
            for s in page.shards() {
                let range = s.hash_key_range();
                out.push(ShardInfo {
                    id: s.shard_id().to_owned(),
                    parent: s.parent_shard_id().map(str::to_owned),
                    adjacent_parent: s.adjacent_parent_shard_id().map(str::to_owned),
                    closed: s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some(),
                    hash_key_start: range.map(|r| r.starting_hash_key().to_owned()).unwrap_or_default(),
                    hash_key_end: range.map(|r| r.ending_hash_key().to_owned()).unwrap_or_default(),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    pub async fn shard_iterator(&self, stream: &str, shard: &str, at: &StartAt) -> Result<Option<String>, CallError> {
        let req = self.client.get_shard_iterator().stream_name(stream).shard_id(shard);
        let req = match at {
            StartAt::At(seq) => req.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(seq),
            StartAt::After(seq) => req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(seq),
            StartAt::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartAt::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
            StartAt::Timestamp(secs) => req.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from_secs_f64(*secs)),
        };
        let out = req.send().await.map_err(classify)?;
        Ok(out.shard_iterator().map(str::to_owned))
    }

    pub async fn get_records(&self, iterator: &str, limit: i32) -> Result<ReadBatch, CallError> {
        let out = self.client.get_records().shard_iterator(iterator).limit(limit).send().await.map_err(classify)?;
        let records = out
            .records()
            .iter()
            .map(|r| ReadRecord {
                sequence_number: r.sequence_number().to_owned(),
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                data: r.data().as_ref().to_vec(),
                arrived_ms: r.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap_or(0),
            })
            .collect();
        Ok(ReadBatch { records, next_iterator: out.next_shard_iterator().map(str::to_owned), millis_behind_latest: out.millis_behind_latest() })
    }

    /// PutRecords: each record's outcome, in order (at most 500 records, 5 MiB).
    pub async fn put_records(&self, stream: &str, records: &[(&[u8], &str)]) -> Result<Vec<PutOutcome>, CallError> {
        let entries = records
            .iter()
            .map(|(data, key)| PutRecordsRequestEntry::builder().data(Blob::new(data.to_vec())).partition_key(*key).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CallError::Other(e.to_string()))?;
        let out = self.client.put_records().stream_name(stream).set_records(Some(entries)).send().await.map_err(classify)?;
        Ok(out
            .records()
            .iter()
            .map(|r| match (r.shard_id(), r.sequence_number()) {
                (Some(shard), Some(seq)) if r.error_code().is_none() => PutOutcome::Stored { shard_id: shard.to_owned(), sequence_number: seq.to_owned() },
                _ => PutOutcome::Retry(format!("{}: {}", r.error_code().unwrap_or("refused"), r.error_message().unwrap_or(""))),
            })
            .collect())
    }

    /// The number of open shards of `stream`; `None` when there is no such stream.
    pub async fn open_shards(&self, stream: &str) -> Result<Option<usize>, CallError> {
        match self.list_shards(stream).await {
            Ok(shards) => Ok(Some(shards.iter().filter(|s| !s.closed).count())),
            Err(CallError::Other(m)) if m.starts_with("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create `stream` with `shards` shards unless it exists, and wait until it is active.
    pub async fn ensure_stream(&self, stream: &str, shards: i32) -> Result<(), CallError> {
        if self.open_shards(stream).await?.is_none() {
            match self.client.create_stream().stream_name(stream).shard_count(shards).send().await {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceInUseException") => {}
                Err(e) => return Err(classify(e)),
            }
        }
        self.wait_active(stream).await
    }

    /// Wait until `stream` is ACTIVE (after a create, split or merge), up to a minute.
    pub async fn wait_active(&self, stream: &str) -> Result<(), CallError> {
        for _ in 0..600 {
            let out = self.client.describe_stream_summary().stream_name(stream).send().await.map_err(classify)?;
            if out.stream_description_summary().is_some_and(|d| d.stream_status().as_str() == "ACTIVE") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(CallError::Other(format!("stream `{stream}` did not become ACTIVE within a minute")))
    }

    /// Split an open shard in two at the middle of its hash-key range; waits
    /// until the stream is active again.
    pub async fn split_shard(&self, stream: &str, shard: &ShardInfo) -> Result<(), CallError> {
        let start: u128 = shard.hash_key_start.parse().map_err(|_| CallError::Other(format!("bad hash key `{}`", shard.hash_key_start)))?;
        let end: u128 = shard.hash_key_end.parse().map_err(|_| CallError::Other(format!("bad hash key `{}`", shard.hash_key_end)))?;
        let middle = start + (end - start) / 2 + 1;
        self.client.split_shard().stream_name(stream).shard_to_split(&shard.id).new_starting_hash_key(middle.to_string()).send().await.map_err(classify)?;
        self.wait_active(stream).await
    }
}

/// The shard number of a shard id (`shardId-000000000003` → 3): the partition
/// number in the landing layout.
pub fn shard_number(shard_id: &str) -> Option<u32> {
    let digits = shard_id.rsplit('-').next()?;
    digits.parse().ok()
}

/// The shard id of a shard number, as Kinesis writes it.
pub fn shard_id(number: u32) -> String {
    format!("shardId-{number:012}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_map_to_partition_numbers_and_back() {
        assert_eq!(shard_number("shardId-000000000003"), Some(3));
        assert_eq!(shard_number("shardId-000000012345"), Some(12345));
        assert_eq!(shard_number("weird"), None);
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(shard_number(&shard_id(4_000_000)), Some(4_000_000));
    }
}
