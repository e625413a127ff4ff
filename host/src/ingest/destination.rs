//! Where accepted records are stored: the embedded log, Kafka, or (for the
//! Kinesis shapes) Kinesis. Either way a request's records are all stored
//! before it is answered.

use crate::ingest::KafkaProducer;
use crate::ingest::KinesisProducer;
use crate::log::{AppendError, EmbeddedLog};
use sluice_guest::BatchBuf;
use std::sync::Arc;

#[derive(Clone)]
pub enum Destination {
    Embedded(Arc<EmbeddedLog>),
    Kafka(Arc<KafkaProducer>),
    /// Kinesis picks the shard from the partition key; only the Kinesis
    /// shapes write here (see [`KinesisProducer::put`]).
    Kinesis(Arc<KinesisProducer>),
}

impl Destination {
    /// Partitions of `topic`; `Ok(None)` when there is no such topic.
    pub async fn partitions(&self, topic: &str) -> Result<Option<u32>, AppendError> {
        match self {
            Destination::Embedded(log) => Ok(log.topic(topic).map(|t| t.partitions)),
            Destination::Kafka(producer) => producer.partitions(topic).await,
            Destination::Kinesis(_) => Err(AppendError::Storage("records for Kinesis are put by partition key, not by partition".into())),
        }
    }

    /// Store `parts` (records per partition) durably; each record's offset, per part.
    pub async fn append(&self, topic: &str, parts: Vec<(u32, BatchBuf)>) -> Result<Vec<Vec<u64>>, AppendError> {
        match self {
            Destination::Embedded(log) => {
                let lens: Vec<u64> = parts.iter().map(|(_, b)| b.len() as u64).collect();
                let bases = log.append(topic, parts).await?;
                Ok(bases.into_iter().zip(lens).map(|(base, n)| (base..base + n).collect()).collect())
            }
            Destination::Kafka(producer) => producer.append(topic, &parts).await,
            Destination::Kinesis(_) => Err(AppendError::Storage("records for Kinesis are put by partition key, not by partition".into())),
        }
    }
}
