//! Where records come from: the embedded durable log (default), Kafka, Kinesis.
//!
//! A pipeline reads [`Fetched`] batches from a [`Source`] and tells it where it
//! may resume: positions advance only after the sinks report the records durable.

pub mod embedded;
pub mod kafka;
pub mod kinesis;

use sluice_guest::BatchBuf;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
}

/// What a pipeline needs from its input.
pub trait Source: Send {
    /// The partitions this source currently reads.
    fn partitions(&mut self) -> anyhow::Result<Vec<PartitionId>>;
    /// Durable progress of a partition.
    fn checkpoint(&mut self, partition: &PartitionId) -> anyhow::Result<Checkpoint>;
    /// Read up to `max_records` from `offset`, without waiting: a reader with
    /// nothing to read anywhere waits in [`Source::wait`].
    fn fetch(&mut self, partition: &PartitionId, offset: u64, max_records: usize) -> anyhow::Result<Fetched>;
    /// Record that objects for `intent` are about to be written.
    fn record_intent(&mut self, partition: &PartitionId, intent: &Intent) -> anyhow::Result<()>;
    /// The objects holding everything before `next_offset` are durable: resume there.
    fn commit(&mut self, partition: &PartitionId, next_offset: u64) -> anyhow::Result<()>;
    /// Block until new records may be available, or `timeout` passes.
    fn wait(&mut self, timeout: Duration);
    /// The offset after the last record available now (for lag), if known.
    fn end_offset(&mut self, partition: &PartitionId) -> anyhow::Result<Option<u64>>;
    /// Whether the partitions this reader owns changed since the last call (a
    /// consumer-group rebalance); the pipeline then asks [`Source::partitions`] again.
    fn assignment_changed(&mut self) -> bool {
        false
    }
    /// Partitions this reader lost since the last call, including any it has
    /// taken back since. Another reader may have landed and committed records
    /// of them in between, so whatever the pipeline still holds of them (an
    /// open segment, its read position) is stale: it abandons that and reopens
    /// them from their checkpoints.
    fn revoked(&mut self) -> Vec<PartitionId> {
        Vec::new()
    }
    /// A problem the source has right now (e.g. brokers unreachable) that the
    /// pipeline's health should show, though no call of its own failed.
    fn problem(&mut self) -> Option<String> {
        None
    }
}
