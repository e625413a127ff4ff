//! Where pipelines read records: the embedded durable log (default), Kafka, Kinesis.
//!
//! A pipeline reads [`Fetched`] batches from a [`Source`] and tells it where it
//! may resume: positions advance only after the sinks report the records durable.

pub mod embedded;
pub mod kafka;
pub mod kinesis;

use crate::position::{Checkpoint, Fetched, Intent, PartitionId};
use std::time::Duration;

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
