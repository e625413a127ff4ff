//! The words every stage shares about positions in a stream: which partition,
//! which records were read from where, and how far a partition has durably got.
//!
//! Sources produce these, sinks name objects by them, the pipeline commits
//! them. They sit below all three, so none of those imports another for them.

use sluice_guest::BatchBuf;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One partition (Kafka partition, Kinesis shard, embedded-log partition) of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    pub topic: Arc<str>,
    pub partition: u32,
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Records read from one partition; `offsets[i]` is the position of record `i`.
#[derive(Debug, Default)]
pub struct Fetched {
    pub batch: BatchBuf,
    pub offsets: Vec<u64>,
    /// The offset to resume from after these records (the last offset + 1, or
    /// further when the source skipped positions that hold no records).
    pub next_offset: u64,
}

impl Fetched {
    /// Room for `records` records of `value_bytes` in all, read from `offset` on.
    pub fn starting_at(offset: u64, records: usize, value_bytes: usize) -> Self {
        Fetched { batch: BatchBuf::with_capacity(records, value_bytes), offsets: Vec::with_capacity(records), next_offset: offset }
    }

    /// Add the record at `offset`; reading resumes after it.
    pub fn push(&mut self, offset: u64, value: &[u8], key: &[u8], timestamp: i64) {
        self.batch.push(value, key, timestamp);
        self.offsets.push(offset);
        self.next_offset = offset + 1;
    }
}

/// A partition's durable progress: where to resume, and the roll that was in
/// flight when the process stopped, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub next_offset: u64,
    pub intent: Option<Intent>,
}

/// A roll that had started writing objects: records `[start, end)` of a partition,
/// and which transform versions (by content hash) processed which sub-range.
/// Replayed exactly after a crash so the same objects are rewritten identically.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    pub start: u64,
    pub end: u64,
    /// `(first offset, content hashes of the transform chain)` in offset order.
    pub versions: Vec<(u64, Vec<String>)>,
    /// Where each partition of a topic this roll writes to (an output topic,
    /// an internal topic) ended before the roll wrote to it, by topic name,
    /// for the topics that cannot tell a replay by themselves (Kafka): a
    /// replayed roll looks from there for what it already wrote.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics_from: BTreeMap<String, BTreeMap<u32, u64>>,
    /// The same for the one topic a roll wrote, as intents recorded before
    /// `topics_from` name it (a part wrote to one topic at most then).
    #[serde(default, skip_serializing)]
    pub output_from: Option<BTreeMap<u32, u64>>,
}

impl Intent {
    /// The same records with the same versions: a roll of this is a replay of `other`.
    pub fn same_range(&self, other: &Intent) -> bool {
        self.start == other.start && self.end == other.end && self.versions == other.versions
    }

    /// A roll over `[start, end)` with these transform versions, before any topic's ends are known.
    pub fn new(start: u64, end: u64, versions: Vec<(u64, Vec<String>)>) -> Intent {
        Intent { start, end, versions, topics_from: BTreeMap::new(), output_from: None }
    }

    /// Where `topic`'s partitions ended before this roll wrote to it, if recorded.
    pub fn topic_from(&self, topic: &str) -> Option<&BTreeMap<u32, u64>> {
        self.topics_from.get(topic).or(self.output_from.as_ref())
    }
}
