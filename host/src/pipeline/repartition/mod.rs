//! The hops of a keyed pipeline: records keyed by their group key (or by
//! side and join key), moved into an internal topic — the repartition topic
//! of the windows, or the join topic — so each partition of that topic holds
//! whole keys and its windows (or joins) are complete.
//!
//! An aggregating pipeline runs in parts (see `plan`). The *router* reads the
//! source partitions, runs the transform chain, lands the raw records and the
//! dead letters, and appends each cleaned record to partition
//! `hash(group key) mod n` of `<pipeline>-repartition` (in the embedded log,
//! or in Kafka for Kafka pipelines: `<group_prefix><pipeline>-repartition`),
//! with the group key as the record key and the event time as its timestamp.
//! The *windows* workers read that topic, one partition each at a time, and
//! fold the records into the windows (see `aggregate::window`).
//!
//! Effectively once: each source partition appends as its own writer. On the
//! embedded log the records, the watermark markers and the writer's mark (the
//! source position reached) are one transaction ([`EmbeddedLog::append_once`]);
//! a roll replayed after a crash finds its mark and appends nothing. On Kafka
//! the records carry their writer and roll in headers and a replay writes only
//! what it does not find after the ends its intent recorded. This is the
//! shape of Kafka Streams' repartition topics.
//!
//! Watermarks travel in the topic as marker records (key [`MARKER_KEY`]):
//! after its records each roll tells every partition how far its source
//! partition has read in event time; a source with no record for
//! `idle_timeout_ms` says it is idle (it stops holding the watermark back);
//! when every source has been idle for `close_idle_after_ms` they say
//! `closing`, which closes every open window. Because the markers are in the
//! log, a windows worker replaying its partition sees the same sequence and
//! emits the same rows.

pub mod route;

pub use route::RouteStage;

use super::aggregate::AggregateConfig;
use super::aggregate::window::WindowRules;
use super::join::JoinConfig;
use super::output::{KafkaOutput, OutputTopic};
use super::watermark::{MARKER_KEY, Marker, SourceState, WatermarkConfig};
use crate::log::EmbeddedLog;
use crate::partitioner::kafka_partition;
use sluice_guest::{BatchBuf, BatchRef};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The repartition topic of pipeline `pipeline` in the embedded log (keyed by group key, read by the windows).
pub fn topic_name(pipeline: &str) -> String {
    format!("{pipeline}-repartition")
}

/// The join topic of pipeline `pipeline` (keyed by side and join key, read by the join).
pub fn join_topic_name(pipeline: &str) -> String {
    format!("{pipeline}-join")
}

/// Where a keyed pipeline's internal topics are.
#[derive(Clone)]
pub enum Hops {
    /// The embedded log: each move is one transaction with its writer's mark;
    /// state snapshots in the state directory.
    Embedded(Arc<EmbeddedLog>),
    /// Kafka topics (`<group_prefix><name>`), shared by every process running
    /// the pipeline: the consumer group spreads their partitions, the state
    /// snapshots are in the landing store so they move with the partitions.
    Kafka(crate::source::kafka::KafkaConfig),
}

impl Hops {
    /// The name of internal topic `name` where these hops are.
    pub fn topic(&self, name: &str) -> String {
        match self {
            Hops::Embedded(_) => name.to_owned(),
            Hops::Kafka(k) => format!("{}{name}", k.group_prefix),
        }
    }

    /// Whether a partition of these topics may be owned by several processes in turn.
    pub fn shared(&self) -> bool {
        matches!(self, Hops::Kafka(_))
    }
}

/// How records are keyed on their way into a topic.
pub enum Keying {
    /// By the aggregate's group key; the timestamp is the event time.
    Group(WindowRules),
    /// By the join key of the record's topic; the timestamp is the record's log timestamp.
    Join { sides: Vec<(String, String)> },
}

impl Keying {
    pub fn group(config: &AggregateConfig) -> Self {
        Keying::Group(WindowRules::new(config))
    }

    pub fn join(config: &JoinConfig) -> Self {
        Keying::Join { sides: config.inputs.iter().map(|i| (i.topic.clone(), i.key.clone())).collect() }
    }

    /// Where a record of `topic` goes, or why it cannot go: `(kind, reason)`.
    fn key(&self, topic: &str, value: &[u8], log_time: i64) -> Result<Keyed, (&'static str, String)> {
        match self {
            Keying::Group(rules) => rules.time_and_key(value).map(|(time, key)| Keyed { time, stored: key.clone(), by: key }).map_err(|r| ("no_event_time", r)),
            Keying::Join { sides } => {
                let Some(side) = sides.iter().position(|(t, _)| t == topic) else {
                    return Err(("no_join_key", format!("topic `{topic}` is not one of the join's inputs")));
                };
                let field = &sides[side].1;
                let v: serde_json::Value = serde_json::from_slice(value).map_err(|e| ("no_join_key", format!("record is not JSON: {e}")))?;
                match v.get(field) {
                    None | Some(serde_json::Value::Null) => Err(("no_join_key", format!("no join key: field `{field}` is missing or null"))),
                    Some(k) => {
                        let k = k.to_string();
                        Ok(Keyed { time: log_time, stored: super::join::state::join_key(side, &k).into_bytes(), by: k.into_bytes() })
                    }
                }
            }
        }
    }
}

/// Where a keyed record goes.
struct Keyed {
    /// Its timestamp in the topic: the event time (group keys) or the log time (join keys).
    time: i64,
    /// The record key stored.
    stored: Vec<u8>,
    /// What picks the partition (the key without the join side).
    by: Vec<u8>,
}

/// A record the router could not key: `(its index in the batch, kind, reason)`.
pub type Unkeyed = (u32, &'static str, String);

/// Records of one source partition on their way to the repartition topic,
/// held until the segment that read them rolls.
#[derive(Default)]
pub struct Moving {
    parts: BTreeMap<u32, BatchBuf>,
    max_event_ms: Option<i64>,
    bytes: usize,
}

impl Moving {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// Where moved records are written.
enum Sink {
    /// `append_once`: the records and the writer's mark in one transaction.
    Log(Arc<EmbeddedLog>),
    /// An idempotent producer with provenance headers; a replayed roll skips what it finds.
    Kafka(Box<KafkaOutput>),
}

impl Sink {
    /// The writer of `topic` where `hops` keeps it, and the topic's partition
    /// count (on the embedded log it is created here if absent, with `partitions`).
    fn open(hops: &Hops, pipeline: &str, topic: &str, partitions: u32) -> anyhow::Result<(Sink, u32)> {
        Ok(match hops {
            Hops::Embedded(log) => {
                let info = log.ensure_topic(topic, partitions).map_err(|e| anyhow::anyhow!("the topic `{topic}`: {e:#}"))?;
                (Sink::Log(log.clone()), info.partitions)
            }
            Hops::Kafka(config) => {
                let out = KafkaOutput::new(config, topic, pipeline)?;
                let n = out.partitions();
                (Sink::Kafka(Box::new(out)), n)
            }
        })
    }

    /// Tell each of the topic's `partitions` partitions that `source` is
    /// reading, idle or closing. Markers without records need no mark: saying
    /// it twice changes nothing.
    fn announce(&mut self, topic: &str, partitions: u32, source: &str, state: SourceState) -> anyhow::Result<()> {
        let marker = Marker { source: source.to_owned(), max_event_ms: None, state }.to_bytes();
        let parts = (0..partitions)
            .map(|p| {
                let mut b = BatchBuf::default();
                b.push(&marker, MARKER_KEY, 0);
                (p, b)
            })
            .collect();
        let done = match self {
            Sink::Log(log) => log.append_blocking(topic, parts).map(|_| ()).map_err(anyhow::Error::from),
            Sink::Kafka(out) => out.write(source, 0, parts, None).map(|_| ()),
        };
        done.map_err(|e| anyhow::anyhow!("announcing to `{topic}`: {e:#}"))
    }
}

/// The router's side of the hop.
pub struct Repartition {
    sink: Sink,
    topic: String,
    partitions: u32,
    keying: Keying,
    pub idle_timeout: Duration,
    /// `None`: windows close on event time only.
    pub close_after: Option<Duration>,
}

impl Repartition {
    /// The hop of `pipeline` into `topic` (the launcher created it; on the
    /// embedded log it is created here if absent, with `partitions` partitions).
    pub fn new(hops: &Hops, pipeline: &str, topic: String, partitions: u32, keying: Keying, watermark: &WatermarkConfig) -> anyhow::Result<Self> {
        let (sink, partitions) = Sink::open(hops, pipeline, &topic, partitions)?;
        Ok(Repartition {
            sink,
            topic,
            partitions,
            keying,
            idle_timeout: Duration::from_millis(watermark.idle_timeout_ms),
            close_after: (watermark.close_idle_after_ms > 0).then(|| Duration::from_millis(watermark.close_idle_after_ms)),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Key `records` (the chain's output, as JSON, read from `topic`; record
    /// `i` came from input record `origins[i]` of `input`) and hold them in
    /// `moving`. Returns the records that cannot be keyed (no event time, no
    /// join key), by input index: they could never be put in a window or a join.
    pub fn route(&self, moving: &mut Moving, topic: &str, records: BatchRef<'_>, origins: &[u32], input: BatchRef<'_>) -> Vec<Unkeyed> {
        let mut unkeyed = Vec::new();
        for (i, rec) in records.iter().enumerate() {
            let origin = origins[i];
            match self.keying.key(topic, rec.value, input.get(origin as usize).timestamp) {
                Ok(Keyed { time, stored, by }) => {
                    let p = kafka_partition(&by, self.partitions);
                    moving.parts.entry(p).or_default().push(rec.value, &stored, time);
                    moving.max_event_ms = Some(moving.max_event_ms.map_or(time, |m| m.max(time)));
                    moving.bytes += rec.value.len() + stored.len() + 16;
                }
                Err((kind, reason)) => unkeyed.push((origin, kind, reason)),
            }
        }
        unkeyed
    }

    /// Where each partition ends, for a roll's intent (Kafka: a replay reads
    /// back from there); `None` on the embedded log, whose marks need none.
    pub fn ends(&mut self) -> anyhow::Result<Option<BTreeMap<u32, u64>>> {
        match &mut self.sink {
            Sink::Log(_) => Ok(None),
            Sink::Kafka(out) => out.ends(),
        }
    }

    /// Append what `source` moved, with a marker to every partition, as
    /// writer `source` whose input reached `through`. `replay_from`: the roll
    /// is replayed and may have written some of it after these ends. Returns
    /// the records appended (0 when an earlier run of this roll already did).
    pub fn write(&mut self, source: &str, through: u64, moving: Moving, replay_from: Option<&BTreeMap<u32, u64>>) -> anyhow::Result<u64> {
        let Moving { mut parts, max_event_ms, .. } = moving;
        let moved: u64 = parts.values().map(|b| b.len() as u64).sum();
        let marker = Marker { source: source.to_owned(), max_event_ms, state: SourceState::Active }.to_bytes();
        for p in 0..self.partitions {
            parts.entry(p).or_default().push(&marker, MARKER_KEY, max_event_ms.unwrap_or(0));
        }
        let parts: Vec<(u32, BatchBuf)> = parts.into_iter().collect();
        let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("moving records into `{}`: {e}", self.topic);
        match &mut self.sink {
            Sink::Log(log) => match log.append_once(&self.topic, parts, source, through).map_err(|e| fail(&e))? {
                crate::log::Appended::Now(_) => Ok(moved),
                crate::log::Appended::Before => Ok(0),
            },
            Sink::Kafka(out) => {
                let written = out.write(source, through, parts, replay_from).map_err(|e| fail(&format!("{e:#}")))?;
                // The markers are among what was written.
                Ok(written.saturating_sub(u64::from(self.partitions)).min(moved))
            }
        }
    }

    /// Tell every partition that `source` is reading (at start), idle, or closing.
    pub fn announce(&mut self, source: &str, state: SourceState) -> anyhow::Result<()> {
        self.sink.announce(&self.topic, self.partitions, source, state)
    }
}

/// Announce `sources` (writer names) as `state` to every partition of the
/// internal topic `topic` (of `partitions` partitions) wherever `hops` keeps
/// it. At launch every partition that writes to it is announced, held by this
/// process or not, so the next part never closes windows (or expires keys) on
/// part of its input: a partition another process reads holds the watermark.
pub fn announce_on(hops: &Hops, pipeline: &str, topic: &str, partitions: u32, sources: &[String], state: SourceState) -> anyhow::Result<()> {
    let (mut sink, partitions) = Sink::open(hops, pipeline, topic, partitions)?;
    sources.iter().try_for_each(|source| sink.announce(topic, partitions, source, state))
}

#[cfg(test)]
mod tests;
