//! Consumer groups over Kafka: each instance is a real member of its Kafka
//! consumer group (a librdkafka consumer), so the brokers share partitions
//! between instances, and between sluice and any other member of the group.

use super::Groups;
use super::error::ConsumeError;
use super::wire::{CommittedOffset, InstanceSettings, PartitionOffset, ReadRecord, Reset, Subscribe, TopicPartition};
use crate::source::kafka::{KafkaConfig, topic_partitions};
use crate::sync::lock;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a call to the brokers (metadata, commit, seek) may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

struct Instance {
    consumer: BaseConsumer,
    settings: InstanceSettings,
    last_used: Mutex<Instant>,
    /// Serializes calls on the consumer: librdkafka's consumer is not meant
    /// to be polled from two threads at once.
    busy: Mutex<()>,
}

pub struct KafkaGroups {
    config: KafkaConfig,
    idle: Duration,
    instances: Mutex<BTreeMap<(String, String), Arc<Instance>>>,
}

fn kafka(e: KafkaError) -> ConsumeError {
    ConsumeError::Kafka(e.to_string())
}

fn list(parts: &[TopicPartition]) -> TopicPartitionList {
    let mut l = TopicPartitionList::new();
    for tp in parts {
        l.add_partition(&tp.topic, tp.partition as i32);
    }
    l
}

fn partitions_of(l: &TopicPartitionList) -> Vec<TopicPartition> {
    l.elements().iter().map(|e| TopicPartition { topic: e.topic().to_owned(), partition: e.partition() as u32 }).collect()
}

impl KafkaGroups {
    pub fn new(config: KafkaConfig, idle: Duration) -> Self {
        KafkaGroups { config, idle, instances: Mutex::new(BTreeMap::new()) }
    }

    fn instance(&self, group: &str, instance: &str) -> Result<Arc<Instance>, ConsumeError> {
        let i = lock(&self.instances).get(&(group.to_owned(), instance.to_owned())).cloned().ok_or_else(|| ConsumeError::NoInstance {
            group: group.to_owned(),
            instance: instance.to_owned(),
            idle_s: self.idle.as_secs(),
        })?;
        *lock(&i.last_used) = Instant::now();
        Ok(i)
    }

    fn check_topics(&self, consumer: &BaseConsumer, topics: &[String]) -> Result<(), ConsumeError> {
        for t in topics {
            if topic_partitions(consumer.client(), t, BROKER_TIMEOUT).map_err(kafka)?.is_none() {
                return Err(ConsumeError::UnknownTopic(t.clone()));
            }
        }
        Ok(())
    }
}

impl Groups for KafkaGroups {
    fn create(&self, group: &str, instance: &str, settings: InstanceSettings) -> Result<(), ConsumeError> {
        let key = (group.to_owned(), instance.to_owned());
        if lock(&self.instances).contains_key(&key) {
            return Err(ConsumeError::InstanceExists(instance.to_owned()));
        }
        let mut c = self.config.consumer(group, &format!("sluice-http-{instance}"));
        c.set("enable.auto.commit", settings.auto_commit.to_string())
            .set("enable.auto.offset.store", "true")
            .set(
                "auto.offset.reset",
                match settings.reset {
                    Reset::Earliest => "earliest",
                    Reset::Latest => "latest",
                    Reset::None => "error",
                },
            )
            .set("queued.min.messages", "1000")
            .set("max.poll.interval.ms", self.idle.as_millis().clamp(10_000, 86_400_000).to_string());
        let consumer: BaseConsumer = c.create().map_err(kafka)?;
        let made = Arc::new(Instance { consumer, settings, last_used: Mutex::new(Instant::now()), busy: Mutex::new(()) });
        let mut instances = lock(&self.instances);
        if instances.contains_key(&key) {
            return Err(ConsumeError::InstanceExists(instance.to_owned()));
        }
        instances.insert(key, made);
        Ok(())
    }

    fn delete(&self, group: &str, instance: &str) -> Result<(), ConsumeError> {
        let i = lock(&self.instances).remove(&(group.to_owned(), instance.to_owned())).ok_or_else(|| ConsumeError::NoInstance {
            group: group.to_owned(),
            instance: instance.to_owned(),
            idle_s: self.idle.as_secs(),
        })?;
        let _busy = lock(&i.busy);
        if i.settings.auto_commit {
            // As closing a Kafka consumer does: what it read is committed, then it leaves the group.
            let _ = i.consumer.commit_consumer_state(CommitMode::Sync);
        }
        i.consumer.unsubscribe();
        Ok(())
    }

    fn settings(&self, group: &str, instance: &str) -> Result<InstanceSettings, ConsumeError> {
        Ok(self.instance(group, instance)?.settings.clone())
    }

    fn subscribe(&self, group: &str, instance: &str, to: Subscribe) -> Result<(), ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        match (to.topics, to.topic_pattern) {
            (Some(t), None) if !t.is_empty() => {
                self.check_topics(&i.consumer, &t)?;
                let names: Vec<&str> = t.iter().map(String::as_str).collect();
                i.consumer.subscribe(&names).map_err(kafka)
            }
            (None, Some(p)) => {
                regex::Regex::new(&p).map_err(|e| ConsumeError::bad_body(format!("topic_pattern is not a regular expression: {e}")))?;
                // librdkafka takes a subscription that starts with `^` as a pattern.
                let pattern = if p.starts_with('^') { p } else { format!("^{p}") };
                i.consumer.subscribe(&[pattern.as_str()]).map_err(kafka)
            }
            _ => Err(ConsumeError::bad_body("give either `topics` (a non-empty list) or `topic_pattern`, not both")),
        }
    }

    fn subscription(&self, group: &str, instance: &str) -> Result<Vec<String>, ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        let l = i.consumer.subscription().map_err(kafka)?;
        Ok(l.elements().iter().map(|e| e.topic().to_owned()).collect())
    }

    fn unsubscribe(&self, group: &str, instance: &str) -> Result<(), ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        i.consumer.unsubscribe();
        Ok(())
    }

    fn assign(&self, group: &str, instance: &str, parts: Vec<TopicPartition>) -> Result<(), ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        let topics: Vec<String> = parts.iter().map(|tp| tp.topic.clone()).collect();
        self.check_topics(&i.consumer, &topics)?;
        i.consumer.assign(&list(&parts)).map_err(kafka)
    }

    fn assignments(&self, group: &str, instance: &str) -> Result<Vec<TopicPartition>, ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        Ok(partitions_of(&i.consumer.assignment().map_err(kafka)?))
    }

    fn read(&self, group: &str, instance: &str, timeout: Duration, max_bytes: usize) -> Result<Vec<ReadRecord>, ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        let subscribed = i.consumer.subscription().map_err(kafka)?.count() > 0;
        let assigned = i.consumer.assignment().map_err(kafka)?.count() > 0;
        if !subscribed && !assigned {
            return Err(ConsumeError::IllegalState("the instance is not subscribed to any topic nor assigned any partition".into()));
        }
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            // Wait for the first record; then take what is already fetched.
            let wait = if out.is_empty() { deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)) } else { Duration::ZERO };
            match i.consumer.poll(wait) {
                Some(Ok(m)) => {
                    let (key, value) = (m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec());
                    bytes += key.len() + value.len();
                    out.push(ReadRecord { topic: m.topic().to_owned(), partition: m.partition() as u32, offset: m.offset() as u64, key, value });
                    if bytes >= max_bytes {
                        break;
                    }
                }
                Some(Err(e)) => {
                    if out.is_empty() {
                        return Err(kafka(e));
                    }
                    break;
                }
                None if !out.is_empty() || Instant::now() >= deadline => break,
                None => {}
            }
        }
        Ok(out)
    }

    fn commit(&self, group: &str, instance: &str, offsets: Option<Vec<PartitionOffset>>) -> Result<(), ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        match offsets {
            None => match i.consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing read since the last commit: nothing to do.
                Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => Ok(()),
                other => other.map_err(kafka),
            },
            Some(list) => {
                let mut l = TopicPartitionList::new();
                for o in list {
                    // The offset given is that of the last record processed: the group resumes after it.
                    l.add_partition_offset(&o.topic, o.partition as i32, Offset::Offset(o.offset as i64 + 1)).map_err(kafka)?;
                }
                i.consumer.commit(&l, CommitMode::Sync).map_err(kafka)
            }
        }
    }

    fn committed(&self, group: &str, instance: &str, parts: Vec<TopicPartition>) -> Result<Vec<CommittedOffset>, ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        let got = i.consumer.committed_offsets(list(&parts), BROKER_TIMEOUT).map_err(kafka)?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => {
                    Some(CommittedOffset { topic: e.topic().to_owned(), partition: e.partition() as u32, offset: o as u64, metadata: e.metadata().to_owned() })
                }
                _ => None,
            })
            .collect())
    }

    fn seek(&self, group: &str, instance: &str, offsets: Vec<PartitionOffset>) -> Result<(), ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        let mut l = TopicPartitionList::new();
        for o in &offsets {
            l.add_partition_offset(&o.topic, o.partition as i32, Offset::Offset(o.offset as i64)).map_err(kafka)?;
        }
        i.consumer.seek_partitions(l, BROKER_TIMEOUT).map_err(kafka)?;
        Ok(())
    }

    fn seek_to(&self, group: &str, instance: &str, parts: Vec<TopicPartition>, end: bool) -> Result<(), ConsumeError> {
        let i = self.instance(group, instance)?;
        let _busy = lock(&i.busy);
        let mut l = TopicPartitionList::new();
        for tp in &parts {
            l.add_partition_offset(&tp.topic, tp.partition as i32, if end { Offset::End } else { Offset::Beginning }).map_err(kafka)?;
        }
        i.consumer.seek_partitions(l, BROKER_TIMEOUT).map_err(kafka)?;
        Ok(())
    }

    fn expire(&self) -> Vec<(String, String)> {
        let idle = self.idle;
        let expired: Vec<(String, String)> =
            lock(&self.instances).iter().filter(|(_, i)| lock(&i.last_used).elapsed() > idle).map(|(k, _)| k.clone()).collect();
        for (g, i) in &expired {
            let _ = self.delete(g, i);
        }
        expired
    }
}
