//! Where accepted records are stored: the embedded log, or Kafka when it is
//! configured. Either way a request's records are all stored before it is answered.

use crate::source::embedded::{AppendError, EmbeddedLog};
use crate::source::kafka::KafkaProducer;
use sluice_guest::BatchBuf;
use std::sync::Arc;

#[derive(Clone)]
pub enum Destination {
    Embedded(Arc<EmbeddedLog>),
    Kafka(Arc<KafkaProducer>),
}

impl Destination {
    /// Partitions of `topic`; `Ok(None)` when there is no such topic.
    pub async fn partitions(&self, topic: &str) -> Result<Option<u32>, AppendError> {
        match self {
            Destination::Embedded(log) => Ok(log.topic(topic).map(|t| t.partitions)),
            Destination::Kafka(producer) => producer.partitions(topic).await,
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
        }
    }
}
