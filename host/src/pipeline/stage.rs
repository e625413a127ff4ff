//! The one lifecycle every stage of a pipeline worker shares.
//!
//! A worker runs one part of a pipeline (see `plan`) as a list of stages — the
//! raw landing, the join, the transforms, the windows, the move into an
//! internal topic, the table, the output topic, the actions — and drives them
//! all through the same hooks, in list order:
//!
//! - [`Stage::open`] a partition at its committed position (at start, when a
//!   partition is assigned, and again after a failed roll rewinds it);
//! - [`Stage::process`] each fetched batch, as a [`Flow`] that every stage
//!   reads and adds to;
//! - [`Stage::settle`] what a stage still does for a partition in the
//!   background (a webhook being retried): the partition waits, the others go on;
//! - at a roll: [`Stage::prepare`] the intent (where the topics it writes end),
//!   then, once the segment's objects are durable, [`Stage::land`] (a state
//!   snapshot, an append to an internal topic, a Delta commit), then, after the
//!   input position is committed, [`Stage::committed`];
//! - [`Stage::forget`] a partition that went to another owner.
//!
//! The worker owns the commit protocol written once over this list (see
//! `worker/roll.rs`); a stage owns its state, per partition. The shape is
//! Arroyo's operator trait with its checkpointed state tables, and Kafka
//! Streams' state stores flushed with the offsets they belong to.

use super::control::PipelineControl;
use super::events::PipelineEvents;
use super::land::FromSource;
use crate::position::{Fetched, Intent, PartitionId};
use crate::runtime::{CompiledTransform, StageRows};
use crate::sink::{DeadLetter, Segment, SegmentSummary};
use crate::store::ObjectStore;
use sluice_guest::{BatchBuf, BatchRef};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// One stage of a pipeline worker. Every hook but `process` has a default
/// that does nothing, for the stages without state.
pub trait Stage: Send {
    /// What the stage is, for error messages (`"windows"`, `"join"`, …).
    fn name(&self) -> &'static str;

    /// Load partition `p`'s state as it was after every record before
    /// `committed`: at start, on assignment, and after a failed roll rewound
    /// the partition there. An error fails the partition (it is not read until
    /// its state can be opened): going on would fold records twice.
    fn open(&mut self, _p: &PartitionId, _committed: u64) -> anyhow::Result<()> {
        Ok(())
    }

    /// Process one batch of a partition.
    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()>;

    /// Whether the stage is done with partition `p`'s last batch; work it did
    /// in the background lands in `landing` once done. The worker neither
    /// reads nor rolls a partition a stage is not done with.
    fn settle(&mut self, _p: &PartitionId, _landing: &mut Landing<'_>) -> anyhow::Result<Settled> {
        Ok(Settled::Done)
    }

    /// Bytes the stage holds for `p` until its segment rolls (counted against the memory budget).
    fn held_bytes(&self, _p: &PartitionId) -> u64 {
        0
    }

    /// Before a roll's intent is recorded: note in it where the topics this stage writes end.
    fn prepare(&mut self, _p: &PartitionId, _intent: &mut Intent) -> anyhow::Result<()> {
        Ok(())
    }

    /// The segment's objects are durable; land what goes with the roll (a
    /// state snapshot at `roll.intent.end`, the records moved into a topic,
    /// a Delta commit). Must be idempotent: a failed roll is landed again.
    fn land(&mut self, _roll: &Roll<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    /// `offset` of `p` is committed (old snapshots can go). An error is logged, not retried.
    fn committed(&mut self, _p: &PartitionId, _offset: u64) -> anyhow::Result<()> {
        Ok(())
    }

    /// `p` went to another owner: drop everything held for it.
    fn forget(&mut self, _p: &PartitionId) {}

    /// Object metadata naming what the stage ran (e.g. the aggregate's version).
    fn lineage(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Between batches: take up newly activated versions.
    fn swap(&mut self, _control: &PipelineControl, _events: &PipelineEvents<'_>) {}

    /// Between batches: the partitions that hold nothing (no open segment, no
    /// roll to rewrite). `reading`: the worker reads on (it is not paused or stopping).
    fn quiet(&mut self, _settled: &[&PartitionId], _reading: bool) {}
}

/// Whether a stage is done with a partition's last batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    Busy,
}

/// Where a batch lands: the partition's open segment.
pub struct Landing<'a> {
    pub segment: &'a mut Segment,
    pub store: &'a dyn ObjectStore,
    pub events: PipelineEvents<'a>,
}

impl Landing<'_> {
    /// Dead letters found besides the batch's own (the actions'), into the segment.
    pub fn dead_letters(&mut self, dead: &[DeadLetter]) -> anyhow::Result<()> {
        if !dead.is_empty() {
            self.segment.write_dead_letters(self.store, self.events.pipeline, dead)?;
            self.events.dead_lettered(dead);
        }
        Ok(())
    }
}

/// A roll of one partition, as the stages see it in [`Stage::land`].
pub struct Roll<'a> {
    pub partition: &'a PartitionId,
    pub intent: &'a Intent,
    /// The roll is a replay of one recorded before (after a crash or a failed roll).
    pub replaying: bool,
    pub summary: &'a SegmentSummary,
    pub lineage: &'a [(String, String)],
    pub events: PipelineEvents<'a>,
}

impl Roll<'_> {
    /// Where `topic` ended before this roll first wrote to it, when replaying.
    pub fn replay_from(&self, topic: &str) -> Option<&std::collections::BTreeMap<u32, u64>> {
        if self.replaying { self.intent.topic_from(topic) } else { None }
    }
}

/// The rows a stage made, and the input record each came from.
struct Made {
    rows: StageRows,
    origins: Vec<u32>,
}

/// One fetched batch on its way through a worker's stages: each stage reads
/// what the stages before it made and adds its own.
pub struct Flow<'a> {
    pub landing: Landing<'a>,
    pub partition: &'a PartitionId,
    pub fetched: &'a Fetched,
    /// The interrupted roll this batch rewrites, if it is one.
    pub replay: Option<&'a Intent>,
    /// The versions the interrupted roll used for this batch: the transforms rewrite it with those.
    pub replay_versions: Option<&'a [String]>,
    /// Raised when the worker is asked to stop: background work gives up waiting.
    pub stopping: &'a Arc<AtomicBool>,
    /// Content hashes of the transform chain that ran (the segment's versions).
    pub versions: Vec<String>,
    /// How many transform stages ran: the stage number of what comes after them.
    pub chain_len: u32,
    /// Whether the batch ran with the versions of an interrupted roll (no shadow, no probation).
    pub replayed_versions: bool,
    /// The rows the next stage reads; `None`: the fetched records themselves.
    made: Option<Made>,
    /// `made` as JSON records, rendered once for every stage that reads records.
    rendered: Option<BatchBuf>,
    /// Window rows (they replace the records in the table).
    pub windows: Option<(BatchBuf, Vec<u32>)>,
    /// The stage that wrote the table's rows and its transform: a row the table refuses is blamed on it.
    pub writer: Option<(u32, Arc<CompiledTransform>)>,
    /// Records the transforms refused, as dead letters (they land first).
    pub refused: Vec<DeadLetter>,
    /// Dead letters found after the transforms (late records, unkeyed ones, unjoined ones).
    pub late: Vec<DeadLetter>,
    /// Indexes of the table rows the table refused, ascending (set by the table stage).
    pub misfits: Vec<u32>,
}

impl<'a> Flow<'a> {
    pub fn new(landing: Landing<'a>, partition: &'a PartitionId, fetched: &'a Fetched, stopping: &'a Arc<AtomicBool>) -> Self {
        Flow {
            landing,
            partition,
            fetched,
            replay: None,
            replay_versions: None,
            stopping,
            versions: Vec::new(),
            chain_len: 0,
            replayed_versions: false,
            made: None,
            rendered: None,
            windows: None,
            writer: None,
            refused: Vec::new(),
            late: Vec::new(),
            misfits: Vec::new(),
        }
    }

    pub fn pipeline(&self) -> &'a str {
        self.landing.events.pipeline
    }

    /// Where the batch's records came from, for dead letters.
    pub fn from(&self) -> FromSource<'a> {
        FromSource { pipeline: self.landing.events.pipeline, partition: self.partition, fetched: self.fetched }
    }

    /// The rows the next stage reads, as batch input (JSON records, or the fetched records).
    pub fn input(&self) -> &BatchBuf {
        match &self.made {
            Some(Made { rows: StageRows::Json(b), .. }) => b,
            _ => &self.fetched.batch,
        }
    }

    /// The rows the next stage reads, as a stage wrote them (typed columns stay columns).
    pub fn rows(&self) -> Option<&StageRows> {
        self.made.as_ref().map(|m| &m.rows)
    }

    /// The input record each of the current rows came from.
    pub fn origins(&self) -> std::borrow::Cow<'_, [u32]> {
        match &self.made {
            Some(m) => std::borrow::Cow::Borrowed(m.origins.as_slice()),
            None => std::borrow::Cow::Owned((0..self.fetched.offsets.len() as u32).collect()),
        }
    }

    /// Replace the current rows by `rows`; `origins[i]` is the index among
    /// the current rows that row `i` came from (mapped here to input records).
    pub fn replace(&mut self, rows: StageRows, origins: &[u32]) {
        let to_input: Vec<u32> = match &self.made {
            Some(m) => origins.iter().map(|&o| m.origins[o as usize]).collect(),
            None => origins.to_vec(),
        };
        self.made = Some(Made { rows, origins: to_input });
        self.rendered = None;
    }

    /// Map an index among the current rows to the input record it came from.
    pub fn to_input(&self, index: u32) -> u32 {
        self.made.as_ref().map_or(index, |m| m.origins[index as usize])
    }

    /// The current rows as JSON records (rendered once when a stage wrote columns).
    pub fn records(&mut self) -> BatchRef<'_> {
        self.render();
        self.rendered_records()
    }

    /// Render the current rows as JSON records, if a stage wrote columns and nobody did yet.
    pub fn render(&mut self) {
        if let Some(Made { rows: rows @ StageRows::Columns(_), .. }) = &self.made
            && self.rendered.is_none()
        {
            self.rendered = Some(rows.to_json().into_owned());
        }
    }

    /// The current rows as JSON records, once [`Flow::render`]ed.
    pub fn rendered_records(&self) -> BatchRef<'_> {
        match (&self.rendered, &self.made) {
            (Some(r), _) => r.as_ref(),
            (None, Some(Made { rows: StageRows::Json(b), .. })) => b.as_ref(),
            (None, Some(Made { rows: StageRows::Columns(_), .. })) => unreachable!("a stage read records before `Flow::render`"),
            (None, None) => self.fetched.batch.as_ref(),
        }
    }

    /// The rows the table gets and where each came from (the window rows,
    /// else the current rows, else the fetched records), with the landing to
    /// write them to.
    pub fn table_rows(&mut self) -> (TableRows<'_>, std::borrow::Cow<'_, [u32]>, &mut Landing<'a>) {
        use std::borrow::Cow;
        let (rows, origins) = match (&self.windows, &self.made) {
            (Some((rows, origins)), _) => (TableRows::Windows(rows), Cow::Borrowed(origins.as_slice())),
            (None, Some(m)) => (TableRows::Made(&m.rows), Cow::Borrowed(m.origins.as_slice())),
            (None, None) => (TableRows::Fetched(&self.fetched.batch), Cow::Owned((0..self.fetched.offsets.len() as u32).collect())),
        };
        (rows, origins, &mut self.landing)
    }
}

/// What the table of a batch gets.
pub enum TableRows<'a> {
    Windows(&'a BatchBuf),
    Made(&'a StageRows),
    Fetched(&'a BatchBuf),
}
