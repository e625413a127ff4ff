//! The router stage: each record of a keyed pipeline's first part keyed and
//! held until its segment rolls, then moved into the next part's internal
//! topic (the join topic, or the repartition topic of the windows), with the
//! watermark markers that say how far each input partition got.

use super::{Moving, Repartition};
use crate::pipeline::output;
use crate::pipeline::stage::{Flow, Roll, Stage};
use crate::pipeline::watermark::SourceState;
use crate::position::{Intent, PartitionId};
use std::collections::BTreeMap;
use std::time::Instant;

pub struct RouteStage {
    pipeline: String,
    hop: Repartition,
    /// What the records are keyed for, in dead letters of records that cannot be: `join` or `aggregate`.
    what: &'static str,
    partitions: BTreeMap<PartitionId, Routed>,
}

/// One input partition's records on their way, and what the next part was told about it.
struct Routed {
    moving: Moving,
    last_record: Instant,
    said: SourceState,
}

impl RouteStage {
    /// Route into `hop` for `what` (`join` or `aggregate`).
    pub fn new(pipeline: &str, hop: Repartition, what: &'static str) -> Self {
        RouteStage { pipeline: pipeline.to_owned(), hop, what, partitions: BTreeMap::new() }
    }

    fn writer(&self, p: &PartitionId) -> String {
        output::writer(&self.pipeline, p)
    }
}

impl Stage for RouteStage {
    fn name(&self) -> &'static str {
        "router"
    }

    /// Present from the start: the next part waits for this partition until it passes it or goes idle.
    fn open(&mut self, p: &PartitionId, _committed: u64) -> anyhow::Result<()> {
        self.hop.announce(&self.writer(p), SourceState::Active)?;
        self.partitions.insert(p.clone(), Routed { moving: Moving::default(), last_record: Instant::now(), said: SourceState::Active });
        Ok(())
    }

    /// Key the current records and hold them; those that cannot be keyed stop here as dead letters.
    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        let p = flow.partition;
        let routed =
            self.partitions.entry(p.clone()).or_insert_with(|| Routed { moving: Moving::default(), last_record: Instant::now(), said: SourceState::Active });
        routed.last_record = Instant::now();
        routed.said = SourceState::Active;
        let origins = flow.origins().into_owned();
        let input = flow.fetched.batch.as_ref();
        let unkeyed = self.hop.route(&mut routed.moving, &p.topic, flow.records(), &origins, input);
        let (from, stage) = (flow.from(), flow.chain_len);
        for (origin, kind, reason) in unkeyed {
            flow.late.push(from.host_letter(origin, stage, self.what, kind, &reason));
        }
        Ok(())
    }

    fn held_bytes(&self, p: &PartitionId) -> u64 {
        self.partitions.get(p).map_or(0, |r| r.moving.bytes() as u64)
    }

    /// Asked while the segment is still held: if this fails, the range is read again.
    fn prepare(&mut self, _p: &PartitionId, intent: &mut Intent) -> anyhow::Result<()> {
        if let Some(ends) = self.hop.ends()? {
            intent.topics_from.insert(self.hop.topic().to_owned(), ends);
        }
        Ok(())
    }

    /// Moved once the raw records and dead letters are durable; a replay of this roll moves nothing twice.
    fn land(&mut self, roll: &Roll<'_>) -> anyhow::Result<()> {
        let writer = self.writer(roll.partition);
        let Some(routed) = self.partitions.get_mut(roll.partition) else { return Ok(()) };
        if routed.moving.is_empty() {
            return Ok(());
        }
        let replay_from = roll.replay_from(self.hop.topic());
        let moved = self.hop.write(&writer, roll.intent.end, std::mem::take(&mut routed.moving), replay_from)?;
        roll.events.repartitioned(self.hop.topic(), moved);
        Ok(())
    }

    fn forget(&mut self, p: &PartitionId) {
        self.partitions.remove(p);
    }

    /// Tell the next part which input partitions went quiet (they stop holding
    /// the watermark back), and, once all of them have been quiet for
    /// `close_idle_after_ms`, that the open windows can close.
    /// A partition whose topic a pipeline of this process is about to write
    /// (records read upstream, not yet rolled into the topic) is not quiet:
    /// output topics are written once per roll, and the silence between two
    /// rolls is no sign that nothing is coming.
    fn quiet(&mut self, settled: &[&PartitionId], reading: bool) {
        if !reading {
            return;
        }
        let idle_timeout = self.hop.idle_timeout;
        let mut failed = None;
        for (_, routed) in self.partitions.iter_mut().filter(|(p, _)| output::writers::busy(&p.topic)) {
            // As good as a record read now. (One said idle before the upstream
            // picked records up is active again with the marker of its next roll.)
            routed.last_record = Instant::now();
        }
        for p in settled {
            let writer = self.writer(p);
            let Some(routed) = self.partitions.get_mut(p) else { continue };
            if routed.said == SourceState::Active && routed.last_record.elapsed() >= idle_timeout {
                match self.hop.announce(&writer, SourceState::Idle) {
                    Ok(()) => routed.said = SourceState::Idle,
                    Err(e) => failed = Some(e),
                }
            }
        }
        if let Some(after) = self.hop.close_after
            && !self.partitions.is_empty()
            && self.partitions.values().all(|r| r.said == SourceState::Idle && r.last_record.elapsed() >= after)
        {
            let writers: Vec<(PartitionId, String)> = self.partitions.keys().map(|p| (p.clone(), self.writer(p))).collect();
            for (p, writer) in writers {
                match self.hop.announce(&writer, SourceState::Closing) {
                    Ok(()) => {
                        if let Some(r) = self.partitions.get_mut(&p) {
                            r.said = SourceState::Closing;
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            tracing::info!(after_ms = after.as_millis() as u64, "every input partition is quiet: closing the open windows");
        }
        if let Some(e) = failed {
            tracing::warn!(error = %format!("{e:#}"), "could not tell the next part that a partition is quiet; trying again");
        }
    }
}
