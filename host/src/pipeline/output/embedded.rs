//! An embedded-log output topic: the records and the writer's mark in one transaction.

use super::OutputTopic;
use crate::log::{Appended, EmbeddedLog};
use sluice_guest::BatchBuf;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An embedded-log topic: records and mark in one transaction.
pub struct EmbeddedOutput {
    log: Arc<EmbeddedLog>,
    topic: String,
    partitions: u32,
}

impl EmbeddedOutput {
    pub fn new(log: Arc<EmbeddedLog>, topic: &str) -> anyhow::Result<Self> {
        let info = log.topic(topic).ok_or_else(|| anyhow::anyhow!("output topic `{topic}` is not in the embedded log; add it to log.topics"))?;
        let partitions = info.partitions;
        Ok(EmbeddedOutput { log, topic: topic.to_owned(), partitions })
    }
}

impl OutputTopic for EmbeddedOutput {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn ends(&mut self) -> anyhow::Result<Option<BTreeMap<u32, u64>>> {
        Ok(None)
    }

    fn write(&mut self, writer: &str, through: u64, parts: Vec<(u32, BatchBuf)>, _replay_from: Option<&BTreeMap<u32, u64>>) -> anyhow::Result<u64> {
        let n: u64 = parts.iter().map(|(_, b)| b.len() as u64).sum();
        match self.log.append_once(&self.topic, parts, writer, through)? {
            Appended::Now(_) => Ok(n),
            Appended::Before => Ok(0),
        }
    }
}
