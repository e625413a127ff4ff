//! The embedded log as a pipeline [`Source`]: one consumer group per pipeline.

use crate::log::EmbeddedLog;
use crate::position::{Checkpoint, Fetched, Intent, PartitionId};
use crate::source::Source;
use std::sync::Arc;
use std::time::Duration;

/// Cloned to make the other readers of a group (then [`EmbeddedSource::assigned`]).
#[derive(Clone)]
pub struct EmbeddedSource {
    log: Arc<EmbeddedLog>,
    group: String,
    topics: Vec<String>,
    /// Total appends seen, to notice new ones.
    seen: u64,
    /// This reader takes the partitions whose index is `worker` modulo `workers`.
    worker: usize,
    workers: usize,
}

impl EmbeddedSource {
    /// Read `topics` as consumer group `group` (the pipeline's name).
    pub fn new(log: Arc<EmbeddedLog>, group: impl Into<String>, topics: Vec<String>) -> anyhow::Result<Self> {
        for t in &topics {
            if log.topic(t).is_none() {
                anyhow::bail!("topic `{t}` is not in the embedded log; add it to log.topics");
            }
        }
        Ok(EmbeddedSource { log, group: group.into(), topics, seen: 0, worker: 0, workers: 1 })
    }
}

impl EmbeddedSource {
    /// Share the partitions among `workers` readers of the same group; this one is number `worker`.
    pub fn assigned(mut self, worker: usize, workers: usize) -> Self {
        self.worker = worker;
        self.workers = workers.max(1);
        self
    }

    /// How many partitions the topics have in all.
    pub fn partition_count(&self) -> usize {
        self.topics.iter().filter_map(|t| self.log.topic(t)).map(|t| t.partitions as usize).sum()
    }
}

impl Source for EmbeddedSource {
    fn partitions(&mut self) -> anyhow::Result<Vec<PartitionId>> {
        let mut out = Vec::new();
        for t in &self.topics {
            let info = self.log.topic(t).ok_or_else(|| anyhow::anyhow!("topic `{t}` vanished"))?;
            out.extend((0..info.partitions).map(|partition| PartitionId { topic: info.name.clone(), partition }));
        }
        Ok(out.into_iter().enumerate().filter(|(i, _)| i % self.workers == self.worker).map(|(_, p)| p).collect())
    }

    fn checkpoint(&mut self, p: &PartitionId) -> anyhow::Result<Checkpoint> {
        self.log.checkpoint(&self.group, &p.topic, p.partition)
    }

    fn fetch(&mut self, p: &PartitionId, offset: u64, max_records: usize) -> anyhow::Result<Fetched> {
        self.log.read(&p.topic, p.partition, offset, max_records)
    }

    fn record_intent(&mut self, p: &PartitionId, intent: &Intent) -> anyhow::Result<()> {
        self.log.record_intent(&self.group, &p.topic, p.partition, intent)
    }

    fn commit(&mut self, p: &PartitionId, next_offset: u64) -> anyhow::Result<()> {
        self.log.commit(&self.group, &p.topic, p.partition, next_offset)
    }

    fn wait(&mut self, timeout: Duration) {
        self.log.wait_for_any(&mut self.seen, timeout);
    }

    fn end_offset(&mut self, p: &PartitionId) -> anyhow::Result<Option<u64>> {
        Ok(self.log.end_offset(&p.topic, p.partition))
    }
}
