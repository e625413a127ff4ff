//! Putting records into Kinesis for the ingest API and the emulator: a request
//! is answered only once every one of its records is stored. Records Kinesis
//! refuses for now (throttling, internal failures) are put again, with a
//! doubling pause, until `put_timeout_ms`; then the request fails as a whole
//! and the client retries it (the records already stored are then stored
//! twice, as with Kinesis itself: PutRecords is at-least-once).

use crate::log::AppendError;
use crate::source::kinesis::{CallError, Kinesis, KinesisConfig, PutOutcome};
use crate::telemetry::metrics;
use std::time::{Duration, Instant};

/// Kinesis takes at most 500 records per PutRecords call.
pub const MAX_RECORDS_PER_PUT: usize = 500;

/// Where a record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub shard_id: String,
    pub sequence_number: String,
}

pub struct KinesisProducer {
    kinesis: Kinesis,
    timeout: Duration,
    max_backoff: Duration,
}

impl KinesisProducer {
    pub async fn new(config: &KinesisConfig) -> Self {
        KinesisProducer {
            kinesis: Kinesis::connect(config).await,
            timeout: Duration::from_millis(config.put_timeout_ms),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
        }
    }

    pub fn client(&self) -> &Kinesis {
        &self.kinesis
    }

    /// Store `records` (`(data, partition key)`) in `stream`; where each went, in order.
    pub async fn put(&self, stream: &str, records: &[(&[u8], &str)]) -> Result<Vec<Stored>, AppendError> {
        let deadline = Instant::now() + self.timeout;
        let mut out: Vec<Option<Stored>> = vec![None; records.len()];
        let mut backoff = Duration::from_millis(100);
        loop {
            let pending: Vec<usize> = (0..records.len()).filter(|i| out[*i].is_none()).collect();
            if pending.is_empty() {
                return Ok(out.into_iter().map(|s| s.expect("every record stored")).collect());
            }
            let mut last_refusal = String::new();
            for chunk in pending.chunks(MAX_RECORDS_PER_PUT) {
                let batch: Vec<(&[u8], &str)> = chunk.iter().map(|i| records[*i]).collect();
                match self.kinesis.put_records(stream, &batch).await {
                    Ok(outcomes) => {
                        for (i, outcome) in chunk.iter().zip(outcomes) {
                            match outcome {
                                PutOutcome::Stored { shard_id, sequence_number } => out[*i] = Some(Stored { shard_id, sequence_number }),
                                PutOutcome::Retry(why) => last_refusal = why,
                            }
                        }
                    }
                    Err(CallError::Other(m)) if m.starts_with("ResourceNotFoundException") => return Err(AppendError::UnknownTopic(stream.to_owned())),
                    Err(CallError::Throttled(code)) => last_refusal = code,
                    Err(e) => last_refusal = e.to_string(),
                }
            }
            if out.iter().all(Option::is_some) {
                continue;
            }
            metrics().source_throttled.with_label_values(&["kinesis", "PutRecords"]).inc();
            if Instant::now() + backoff > deadline {
                let left = out.iter().filter(|s| s.is_none()).count();
                return Err(AppendError::Storage(format!("Kinesis did not take {left} records of stream `{stream}` in time: {last_refusal}")));
            }
            tracing::debug!(stream, pause_ms = backoff.as_millis() as u64, "Kinesis refused records ({last_refusal}); putting them again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}
