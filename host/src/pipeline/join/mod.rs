//! The join stage of a pipeline: records of several topics that share a key,
//! joined in the partitions of the pipeline's join topic.
//!
//! A pipeline with `[pipeline.join]` runs in parts: its routers move each
//! input record into `<pipeline>-join`, keyed by its side and key (see
//! [`crate::pipeline::repartition`]); join workers read that topic, so every
//! side of a key meets in one partition, and emit a joined row when every
//! side has come. The joined rows go through the pipeline's transforms, then
//! to its table, or on to the aggregate's repartition topic when the pipeline
//! aggregates too. State is saved with each roll like the aggregate's, so a
//! replay after a crash joins, expires and emits exactly as the first run.

pub mod config;
pub mod state;

pub use config::{JoinConfig, JoinInput, JoinKind};
pub use state::{JoinOutput, JoinRules, JoinState, Joiner, OverBudget};

use super::snapshot::Snapshots;
use super::stage::{Flow, Roll, Stage};
use super::stats::WindowsStatus;
use crate::position::PartitionId;
use crate::runtime::StageRows;
use crate::sink::DeadLetter;
use crate::telemetry::metrics;
use sluice_guest::BatchRef;
use std::collections::BTreeMap;

pub struct JoinStage {
    pipeline: String,
    rules: JoinRules,
    partitions: BTreeMap<PartitionId, JoinState>,
    snapshots: Snapshots,
}

impl JoinStage {
    /// The join of `pipeline`, its snapshots kept in `snapshots`.
    /// `shared`: the partitions may move between processes (idle markers do not count).
    pub fn new(pipeline: &str, config: &JoinConfig, snapshots: Snapshots, shared: bool) -> Self {
        JoinStage { pipeline: pipeline.to_owned(), rules: JoinRules::new(config).with_idleness(!shared), partitions: BTreeMap::new(), snapshots }
    }

    /// Join a batch of partition `p` of the join topic.
    pub fn join(&mut self, p: &PartitionId, input: &BatchRef<'_>, offsets: &[u64]) -> Result<JoinOutput, OverBudget> {
        let state = self.partitions.entry(p.clone()).or_default();
        let result = Joiner { rules: &self.rules, state }.process(input, offsets);
        let m = metrics();
        match &result {
            Ok(out) => {
                m.join_matched.with_label_values(&[&self.pipeline]).inc_by(out.matched);
                m.join_expired.with_label_values(&[&self.pipeline]).inc_by(out.expired);
                m.join_duplicates.with_label_values(&[&self.pipeline]).inc_by(out.duplicates);
            }
            Err(_) => m.join_over_budget.with_label_values(&[&self.pipeline]).inc(),
        }
        self.publish(p);
        result
    }

    fn publish(&mut self, p: &PartitionId) {
        let (m, partition) = (metrics(), p.partition.to_string());
        let labels = [self.pipeline.as_str(), &p.topic, &partition];
        let Some(state) = self.partitions.get_mut(p) else {
            // Forgotten: the gauges of a partition this worker no longer holds go too.
            for g in [&m.join_state_bytes, &m.join_waiting] {
                let _ = g.remove_label_values(&labels);
            }
            return;
        };
        m.join_state_bytes.with_label_values(&labels).set(state.state_bytes() as i64);
        m.join_waiting.with_label_values(&labels).set(state.waiting.len() as i64);
    }

    /// How partition `p`'s join stands, for `/status`.
    pub fn status(&mut self, p: &PartitionId) -> Option<WindowsStatus> {
        let state = self.partitions.get_mut(p)?;
        let watermark = state.clock_ms.map(|t| {
            let mut s = String::new();
            sluice_guest::time::format_rfc3339_ms(t, &mut s);
            s
        });
        Some(WindowsStatus {
            watermark,
            sources: state.sources.len(),
            idle_sources: state.sources.values().filter(|c| c.idle).count(),
            state_bytes: state.state_bytes(),
        })
    }
}

impl Stage for JoinStage {
    fn name(&self) -> &'static str {
        "join"
    }

    /// Load `p`'s join as it was after every record before `committed`.
    fn open(&mut self, p: &PartitionId, committed: u64) -> anyhow::Result<()> {
        let state = match self.snapshots.load(p, committed)? {
            Some((_, state)) => state,
            None if self.snapshots.any(p)? => anyhow::bail!(
                "pipeline `{}`, {p}: the join state for position {committed} is missing (only later snapshots exist); \
                 delete the snapshots under state/joins/{} to start the join afresh",
                self.pipeline,
                self.pipeline
            ),
            None => JoinState::default(),
        };
        self.partitions.insert(p.clone(), state);
        self.publish(p);
        Ok(())
    }

    /// Join a fetched batch of the join topic: the joined rows are what the
    /// stages after it read. Records that expired without their partners, and
    /// records that are not join input, become dead letters (`unjoined`, `malformed`).
    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        let (p, fetched, pipeline) = (flow.partition, flow.fetched, flow.pipeline());
        let out = self.join(p, &fetched.batch.as_ref(), &fetched.offsets)?;
        for u in &out.unjoined {
            let mut d = DeadLetter::by_host(pipeline, p, u.arrived.offset, 0, "join", "unjoined", &u.reason);
            d.timestamp = u.arrived.timestamp;
            d.set_value(u.arrived.value.as_bytes());
            flow.late.push(d);
        }
        for (i, reason) in &out.malformed {
            let record = fetched.batch.as_ref().get(*i as usize);
            let mut d = DeadLetter::by_host(pipeline, p, fetched.offsets[*i as usize], 0, "join", "malformed", reason).with_record(&record);
            d.set_value(record.value);
            flow.late.push(d);
        }
        flow.landing.events.joined(out.rows.len() as u64);
        if let Some(status) = self.status(p) {
            flow.landing.events.stats.set_windows(p, status);
        }
        flow.replace(StageRows::Json(out.rows), &out.origins);
        Ok(())
    }

    /// Save `p`'s join as of the roll's end (before it is committed).
    fn land(&mut self, roll: &Roll<'_>) -> anyhow::Result<()> {
        let p = roll.partition;
        let state = self.partitions.get(p).ok_or_else(|| anyhow::anyhow!("no join state for {p}"))?;
        self.snapshots.save(p, roll.intent.end, state)?;
        Ok(())
    }

    /// `offset` of `p` is committed: older snapshots can go.
    fn committed(&mut self, p: &PartitionId, offset: u64) -> anyhow::Result<()> {
        self.snapshots.prune(p, offset).map_err(|e| e.context("deleting old join snapshots (they are ignored)"))
    }

    fn forget(&mut self, p: &PartitionId) {
        self.partitions.remove(p);
        self.publish(p);
    }
}

#[cfg(test)]
mod tests;
