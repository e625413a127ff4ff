//! A Kafka output topic, written by an idempotent producer (no duplicates from
//! the producer's own retries) with every record's provenance in headers:
//! `sluice-writer` (pipeline/topic/partition of the input), `sluice-through`
//! (the input position the roll ends at) and `sluice-seq` (the record's place
//! in the roll's output). A roll replayed after a crash reads each output
//! partition from where its intent says it ended before the roll, collects
//! the places of this writer and roll already there, and writes only the
//! others: nothing twice, nothing lost, and what was written keeps its offset.

use super::OutputTopic;
use crate::source::kafka::{KafkaConfig, topic_partitions};
use crate::sync::lock;
use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_guest::BatchBuf;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WRITER: &str = "sluice-writer";
const THROUGH: &str = "sluice-through";
const SEQ: &str = "sluice-seq";
/// How long a metadata or watermark request may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivery reports: the first failure of the records in flight.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            lock(&self.failed).get_or_insert_with(|| e.to_string());
        }
    }
}

pub struct KafkaOutput {
    producer: BaseProducer<Deliveries>,
    /// Reads the topic back, to find what a replayed roll already wrote.
    reader: BaseConsumer,
    topic: String,
    partitions: u32,
    timeout: Duration,
}

impl KafkaOutput {
    pub fn new(config: &KafkaConfig, topic: &str, pipeline: &str) -> anyhow::Result<Self> {
        let producer: BaseProducer<Deliveries> =
            config.producer().create_with_context(Deliveries::default()).context("creating the Kafka producer of the output topic")?;
        let mut reader = config.consumer(&format!("{}{pipeline}-output-check", config.group_prefix), &format!("sluice-{pipeline}-output-check"));
        reader.set("isolation.level", "read_committed");
        let reader: BaseConsumer = reader.create().context("creating the Kafka reader of the output topic")?;
        let partitions = topic_partitions(producer.client(), topic, BROKER_TIMEOUT)
            .with_context(|| format!("asking Kafka about output topic `{topic}`"))?
            .with_context(|| format!("output topic `{topic}` does not exist in Kafka; create it (with as many partitions as consumers downstream need)"))?;
        Ok(KafkaOutput { producer, reader, topic: topic.to_owned(), partitions, timeout: Duration::from_millis(u64::from(config.produce_timeout_ms)) })
    }

    /// The places (`sluice-seq`) of records of `writer`'s roll through `through`
    /// found in the topic after `from`: every partition is read from there to
    /// its end, all at once. The end is where the broker says the partition
    /// ends, and then whatever the reader has already fetched past it: some
    /// brokers (tansu) report the start of the last record batch as the end.
    fn written(&self, writer: &str, through: u64, from: &BTreeMap<u32, u64>) -> anyhow::Result<BTreeSet<u64>> {
        let mut found = BTreeSet::new();
        let through = through.to_string();
        let mut pending: BTreeMap<i32, u64> = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for (&p, &start) in from {
            let (_, high) = self.reader.fetch_watermarks(&self.topic, p as i32, BROKER_TIMEOUT)?;
            let high = high.max(0) as u64;
            if start < high {
                pending.insert(p as i32, high);
                tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(start as i64))?;
            }
        }
        if pending.is_empty() {
            return Ok(found);
        }
        self.reader.assign(&tpl)?;
        let deadline = Instant::now() + self.timeout.max(BROKER_TIMEOUT);
        let mut reached = BTreeSet::new();
        loop {
            anyhow::ensure!(Instant::now() < deadline, "reading back {} to find a replayed roll's records took too long", self.topic);
            let Some(m) = self.reader.poll(Duration::from_millis(if reached.len() == pending.len() { 100 } else { 500 })) else {
                if reached.len() == pending.len() {
                    // Every partition read to its end, and nothing more already fetched.
                    break;
                }
                continue;
            };
            let m = m.with_context(|| format!("reading back {}", self.topic))?;
            let Some(high) = pending.get(&m.partition()).copied() else { continue };
            if m.offset() as u64 + 1 >= high {
                reached.insert(m.partition());
            }
            let Some(h) = m.headers() else { continue };
            let get = |name: &str| h.iter().find(|x| x.key == name).and_then(|x| x.value).and_then(|v| std::str::from_utf8(v).ok());
            if get(WRITER) == Some(writer)
                && get(THROUGH) == Some(through.as_str())
                && let Some(seq) = get(SEQ).and_then(|s| s.parse().ok())
            {
                found.insert(seq);
            }
        }
        self.reader.unassign()?;
        Ok(found)
    }
}

impl OutputTopic for KafkaOutput {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn ends(&mut self) -> anyhow::Result<Option<BTreeMap<u32, u64>>> {
        let mut ends = BTreeMap::new();
        for p in 0..self.partitions {
            let (_, high) = self
                .producer
                .client()
                .fetch_watermarks(&self.topic, p as i32, BROKER_TIMEOUT)
                .with_context(|| format!("asking where {}/{p} ends", self.topic))?;
            ends.insert(p, high.max(0) as u64);
        }
        Ok(Some(ends))
    }

    fn write(&mut self, writer: &str, through: u64, parts: Vec<(u32, BatchBuf)>, replay_from: Option<&BTreeMap<u32, u64>>) -> anyhow::Result<u64> {
        let skip = match replay_from {
            Some(from) => {
                let found = self.written(writer, through, from)?;
                tracing::info!(writer, through, already = found.len(), "replayed roll: the output records already in the topic are not written again");
                found
            }
            None => BTreeSet::new(),
        };
        let through_text = through.to_string();
        let mut seq = 0u64;
        let mut sent = 0u64;
        lock(&self.producer.context().failed).take();
        for (p, batch) in &parts {
            for r in batch.as_ref().iter() {
                let this = seq;
                seq += 1;
                if skip.contains(&this) {
                    continue;
                }
                let seq_text = this.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header { key: WRITER, value: Some(writer) })
                    .insert(Header { key: THROUGH, value: Some(through_text.as_str()) })
                    .insert(Header { key: SEQ, value: Some(seq_text.as_str()) });
                let mut record = BaseRecord::to(&self.topic).partition(*p as i32).payload(r.value).timestamp(r.timestamp).headers(headers);
                if !r.key.is_empty() {
                    record = record.key(r.key);
                }
                let mut record = record;
                loop {
                    match self.producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            self.producer.poll(Duration::from_millis(50));
                        }
                        Err((e, _)) => return Err(e).with_context(|| format!("producing to output topic {}", self.topic)),
                    }
                }
                sent += 1;
            }
        }
        self.producer.flush(self.timeout).with_context(|| format!("waiting for Kafka to acknowledge the output of {writer} through {through}"))?;
        if let Some(e) = lock(&self.producer.context().failed).take() {
            anyhow::bail!("Kafka refused output of {writer} through {through}: {e}");
        }
        Ok(sent)
    }
}
