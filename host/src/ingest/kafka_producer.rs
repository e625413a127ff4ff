//! The producer the ingest API (and the emulator) writes into Kafka through:
//! idempotent, `acks=all`, and a request is answered only once every one of
//! its records is acknowledged by the brokers.

use crate::log::AppendError;
use crate::source::kafka::{KafkaConfig, topic_partitions};
use crate::sync::lock;
use anyhow::Context as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use sluice_guest::BatchBuf;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a topic's partition count is trusted before asking again.
const KNOWN_TOPIC_TTL: Duration = Duration::from_secs(60);
/// A topic the brokers did not have is asked about again after this (it may be created).
const UNKNOWN_TOPIC_TTL: Duration = Duration::from_secs(5);

pub struct KafkaProducer {
    /// Replaced by a fresh producer when librdkafka declares this one's state
    /// fatal (e.g. fenced after records timed out during a broker outage).
    producer: Mutex<Arc<FutureProducer>>,
    settings: rdkafka::config::ClientConfig,
    metadata_timeout: Duration,
    topics: Mutex<BTreeMap<String, (Instant, Option<u32>)>>,
}

impl KafkaProducer {
    pub fn new(config: &KafkaConfig) -> anyhow::Result<Self> {
        let settings = config.producer();
        let producer: FutureProducer = settings.create().context("creating the Kafka producer")?;
        Ok(KafkaProducer {
            producer: Mutex::new(Arc::new(producer)),
            settings,
            metadata_timeout: Duration::from_millis(u64::from(config.produce_timeout_ms).min(10_000)),
            topics: Mutex::new(BTreeMap::new()),
        })
    }

    /// Partitions of `topic`; `Ok(None)` when the brokers do not have it.
    pub async fn partitions(&self, topic: &str) -> Result<Option<u32>, AppendError> {
        if let Some((at, n)) = lock(&self.topics).get(topic) {
            let ttl = if n.is_some() { KNOWN_TOPIC_TTL } else { UNKNOWN_TOPIC_TTL };
            if at.elapsed() < ttl {
                return Ok(*n);
            }
        }
        let client = self.current();
        let (name, timeout) = (topic.to_owned(), self.metadata_timeout);
        let n = tokio::task::spawn_blocking(move || topic_partitions(client.client(), &name, timeout))
            .await
            .map_err(|e| AppendError::Storage(format!("asking Kafka about topic `{topic}`: {e}")))?
            .map_err(|e| AppendError::Storage(format!("Kafka did not answer a metadata request for topic `{topic}`: {e}")))?;
        lock(&self.topics).insert(topic.to_owned(), (Instant::now(), n));
        Ok(n)
    }

    fn current(&self) -> Arc<FutureProducer> {
        lock(&self.producer).clone()
    }

    /// After a failure: if `used` cannot recover by itself (librdkafka declared
    /// it fatal, or the broker fenced its producer id), put a fresh one in its place.
    fn renew_if_stuck(&self, used: &Arc<FutureProducer>, failure: Option<RDKafkaErrorCode>) {
        let fenced = matches!(
            failure,
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
            )
        );
        let Some((code, reason)) =
            used.client().fatal_error().or_else(|| fenced.then(|| (failure.unwrap_or(RDKafkaErrorCode::Fatal), "fenced by the broker".to_owned())))
        else {
            return;
        };
        let mut current = lock(&self.producer);
        if !Arc::ptr_eq(&current, used) {
            return; // another request renewed it already
        }
        match self.settings.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(?code, %reason, "the Kafka producer hit a fatal error; continuing with a new one");
                *current = Arc::new(fresh);
            }
            Err(e) => tracing::error!(error = %e, "the Kafka producer hit a fatal error and a new one could not be created"),
        }
    }

    /// Produce `parts` (records per partition) and wait until the brokers have
    /// acknowledged all of them; returns each record's offset, per part.
    pub async fn append(&self, topic: &str, parts: &[(u32, BatchBuf)]) -> Result<Vec<Vec<u64>>, AppendError> {
        let producer = self.current();
        self.append_with(&producer, topic, parts).await.map_err(|(e, code)| {
            self.renew_if_stuck(&producer, code);
            e
        })
    }

    /// On failure, also the librdkafka error code behind it, if any.
    async fn append_with(
        &self,
        producer: &FutureProducer,
        topic: &str,
        parts: &[(u32, BatchBuf)],
    ) -> Result<Vec<Vec<u64>>, (AppendError, Option<RDKafkaErrorCode>)> {
        let partitions = self.partitions(topic).await.map_err(|e| (e, None))?.ok_or_else(|| (AppendError::UnknownTopic(topic.to_owned()), None))?;
        if let Some((p, _)) = parts.iter().find(|(p, _)| *p >= partitions) {
            return Err((AppendError::UnknownPartition { topic: topic.to_owned(), partition: *p, partitions }, None));
        }
        let mut pending: Vec<Vec<DeliveryFuture>> = Vec::with_capacity(parts.len());
        for (partition, batch) in parts {
            let mut futures = Vec::with_capacity(batch.len());
            for r in batch.as_ref().iter() {
                let mut record = FutureRecord::<[u8], [u8]>::to(topic).partition(*partition as i32).payload(r.value).timestamp(r.timestamp);
                if !r.key.is_empty() {
                    record = record.key(r.key);
                }
                loop {
                    match producer.send_result(record) {
                        Ok(f) => {
                            futures.push(f);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            // The local queue is full: let librdkafka send some first.
                            record = back;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err((e, _)) => return Err((AppendError::Storage(format!("Kafka refused a record: {e}")), e.rdkafka_error_code())),
                    }
                }
            }
            pending.push(futures);
        }
        let mut offsets = Vec::with_capacity(pending.len());
        for futures in pending {
            let mut part = Vec::with_capacity(futures.len());
            for f in futures {
                match f.await {
                    Ok(Ok(delivery)) => part.push(delivery.offset.max(0) as u64),
                    Ok(Err((e, _))) => return Err((AppendError::Storage(format!("Kafka did not acknowledge the records: {e}")), e.rdkafka_error_code())),
                    Err(_) => return Err((AppendError::Closed, None)),
                }
            }
            offsets.push(part);
        }
        Ok(offsets)
    }

    /// Send what is queued; used at shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.current().flush(timeout) {
            tracing::warn!(error = %e, "flushing the Kafka producer");
        }
    }
}
