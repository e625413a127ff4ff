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
pub mod land;
pub mod state;

pub use config::{JoinConfig, JoinInput, JoinKind};
pub use state::{JoinOutput, JoinRules, JoinState, Joiner, OverBudget};

use super::aggregate::checkpoint::Checkpoints;
use super::stats::WindowsStatus;
use crate::position::PartitionId;
use crate::telemetry::metrics;
use sluice_guest::BatchRef;
use std::collections::BTreeMap;

pub struct JoinStage {
    pipeline: String,
    rules: JoinRules,
    partitions: BTreeMap<PartitionId, JoinState>,
    checkpoints: Checkpoints,
}

impl JoinStage {
    /// The join of `pipeline`, its snapshots kept in `checkpoints`.
    /// `shared`: the partitions may move between processes (idle markers do not count).
    pub fn new(pipeline: &str, config: &JoinConfig, checkpoints: Checkpoints, shared: bool) -> Self {
        JoinStage { pipeline: pipeline.to_owned(), rules: JoinRules::new(config).with_idleness(!shared), partitions: BTreeMap::new(), checkpoints }
    }

    /// Load `p`'s join as it was after every record before `committed`.
    pub fn resume(&mut self, p: &PartitionId, committed: u64) -> anyhow::Result<()> {
        let state = match self.checkpoints.load(p, committed)? {
            Some((_, state)) => state,
            None if self.checkpoints.any(p)? => anyhow::bail!(
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

    /// Join a batch of partition `p` of the join topic.
    pub fn process(&mut self, p: &PartitionId, input: &BatchRef<'_>, offsets: &[u64]) -> Result<JoinOutput, OverBudget> {
        let state = self.partitions.entry(p.clone()).or_default();
        let result = Joiner { rules: &self.rules, state }.process(input, offsets);
        let m = metrics();
        match &result {
            Ok(out) => {
                m.join_matched.with_label_values(&[&self.pipeline]).inc_by(out.matched);
                m.join_expired.with_label_values(&[&self.pipeline]).inc_by(out.expired);
                m.join_duplicates.with_label_values(&[&self.pipeline]).inc_by(out.duplicates);
            }
            Err(_) => m.aggregate_over_budget.with_label_values(&[&self.pipeline]).inc(),
        }
        self.publish(p);
        result
    }

    fn publish(&mut self, p: &PartitionId) {
        let Some(state) = self.partitions.get_mut(p) else { return };
        let (m, partition) = (metrics(), p.partition.to_string());
        let labels = [self.pipeline.as_str(), &p.topic, &partition];
        m.aggregate_state_bytes.with_label_values(&labels).set(state.state_bytes() as i64);
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

    /// Save `p`'s join as of position `offset` (before it is committed).
    pub fn checkpoint(&self, p: &PartitionId, offset: u64) -> anyhow::Result<()> {
        let state = self.partitions.get(p).ok_or_else(|| anyhow::anyhow!("no join state for {p}"))?;
        self.checkpoints.save(p, offset, state)?;
        Ok(())
    }

    /// `offset` of `p` is committed: older snapshots can go.
    pub fn committed(&self, p: &PartitionId, offset: u64) {
        if let Err(e) = self.checkpoints.prune(p, offset) {
            tracing::warn!(partition = %p, error = %format!("{e:#}"), "could not delete old join snapshots; they are ignored");
        }
    }
}

#[cfg(test)]
mod tests;
