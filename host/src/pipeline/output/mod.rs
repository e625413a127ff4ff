//! Output topics: what a pipeline lands in its table (transform output or
//! window rows) also written to a topic, so consumers downstream subscribe to
//! clean records. A segment's output is written when it rolls, after its
//! objects are durable and before its input position is committed. Each
//! source partition writes as its own writer, and a roll replayed after a
//! crash writes nothing twice: the embedded log keeps the writer's mark in
//! the transaction that appends ([`EmbeddedOutput`]); on Kafka every record
//! carries its writer, roll and place in the roll in headers, and a replay
//! skips the ones it finds after the positions its intent recorded ([`KafkaOutput`]).

mod embedded;
mod kafka;
mod stage;
pub mod writers;

pub use embedded::EmbeddedOutput;
pub use kafka::KafkaOutput;
pub use stage::OutputStage;

use crate::partitioner::kafka_partition;
use crate::position::PartitionId;
use serde::{Deserialize, Serialize};
use sluice_guest::{BatchBuf, BatchRef};
use std::collections::BTreeMap;

/// `[pipeline.output]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// The topic the pipeline's rows go to. On the embedded log it must be in
    /// `log.topics` (and not one the pipeline reads); on Kafka it must exist.
    pub topic: String,
    /// `embedded` or `kafka`. Default: `kafka` when the pipeline reads Kafka,
    /// else `embedded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<OutputKind>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Embedded,
    Kafka,
}

/// Where output records are written.
pub trait OutputTopic: Send {
    fn topic(&self) -> &str;
    fn partitions(&self) -> u32;
    /// Where each partition ends now, for a topic that needs them to tell a
    /// replay ([`crate::position::Intent::output_from`]); `None` for one that does not.
    fn ends(&mut self) -> anyhow::Result<Option<BTreeMap<u32, u64>>>;
    /// Write `parts` (records per output partition) as `writer`, whose input
    /// reached `through` with them. `replay_from`: this roll may have written
    /// some of them before, after these ends. Returns how many records were
    /// written now (0 when an earlier run already wrote them all).
    fn write(&mut self, writer: &str, through: u64, parts: Vec<(u32, BatchBuf)>, replay_from: Option<&BTreeMap<u32, u64>>) -> anyhow::Result<u64>;
}

/// The output a partition's open segment will write when it rolls.
#[derive(Default)]
pub struct PendingOutput {
    parts: BTreeMap<u32, BatchBuf>,
    bytes: usize,
}

impl PendingOutput {
    /// Add rows: `rows[i]` came from input record `origins[i]` of `input`.
    /// Rows in `skip` (indexes the table refused) are left out, so the topic
    /// holds what the table holds. A row keeps its own key, else its input
    /// record's; keyed rows go to Kafka's partition for the key, keyless ones
    /// to the partition of the input's number.
    pub fn add(&mut self, rows: BatchRef<'_>, origins: &[u32], skip: &[u32], input: BatchRef<'_>, from: &PartitionId, partitions: u32) {
        let mut skip = skip.iter().copied().peekable();
        for (i, row) in rows.iter().enumerate() {
            if skip.peek() == Some(&(i as u32)) {
                skip.next();
                continue;
            }
            let origin = input.get(origins[i] as usize);
            let key = if row.key.is_empty() { origin.key } else { row.key };
            let p = if key.is_empty() { from.partition % partitions } else { kafka_partition(key, partitions) };
            self.parts.entry(p).or_default().push(row.value, key, origin.timestamp);
            self.bytes += row.value.len() + key.len() + 16;
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn take(&mut self) -> Vec<(u32, BatchBuf)> {
        self.bytes = 0;
        std::mem::take(&mut self.parts).into_iter().collect()
    }
}

/// The writer name of a source partition's output.
pub fn writer(pipeline: &str, from: &PartitionId) -> String {
    format!("{pipeline}/{}/{}", from.topic, from.partition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::EmbeddedLog;
    use std::sync::Arc;

    fn batch(rows: &[(&str, &str)]) -> BatchBuf {
        let mut b = BatchBuf::default();
        for (v, k) in rows {
            b.push(v.as_bytes(), k.as_bytes(), 7);
        }
        b
    }

    #[test]
    fn rows_keep_their_keys_skip_refused_ones_and_land_where_kafka_would_put_them() {
        let input = batch(&[("a", "\"k1\""), ("b", ""), ("c", "\"k3\"")]);
        let rows = batch(&[("A", ""), ("B", ""), ("C", "own")]);
        let from = PartitionId { topic: Arc::from("pin"), partition: 5 };
        let mut out = PendingOutput::default();
        out.add(rows.as_ref(), &[0, 1, 2], &[1], input.as_ref(), &from, 3);
        let parts = out.take();
        let all: Vec<(u32, Vec<u8>, Vec<u8>)> =
            parts.iter().flat_map(|(p, b)| b.as_ref().iter().map(move |r| (*p, r.value.to_vec(), r.key.to_vec())).collect::<Vec<_>>()).collect();
        assert_eq!(all.len(), 2, "the refused row is left out");
        assert!(all.contains(&(kafka_partition(b"\"k1\"", 3), b"A".to_vec(), b"\"k1\"".to_vec())));
        assert!(all.contains(&(kafka_partition(b"own", 3), b"C".to_vec(), b"own".to_vec())));
        assert!(out.is_empty() && out.bytes() == 0);
    }

    #[test]
    fn an_append_replayed_after_a_crash_is_written_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = crate::log::EmbeddedLogConfig { topics: vec!["out".into()], partitions: 2, ..Default::default() };
        let log = EmbeddedLog::open(&dir.path().join("log.redb"), &cfg).expect("log");
        let mut out = EmbeddedOutput::new(log.clone(), "out").expect("output");
        assert_eq!(out.write("p/pin/0", 10, vec![(0, batch(&[("x", "")]))], None).expect("write"), 1);
        assert_eq!(out.write("p/pin/0", 10, vec![(0, batch(&[("x", "")]))], None).expect("replay"), 0, "same input range: nothing twice");
        assert_eq!(out.write("p/pin/1", 10, vec![(0, batch(&[("y", "")]))], None).expect("other writer"), 1);
        assert_eq!(out.write("p/pin/0", 20, vec![(1, batch(&[("z", "")]))], None).expect("next range"), 1);
        assert_eq!(log.read("out", 0, 0, 10).expect("read").offsets, vec![0, 1]);
        assert_eq!(log.mark("out", "p/pin/0").expect("mark"), Some(20));
        assert!(EmbeddedOutput::new(log, "missing").is_err());
    }
}
