//! The aggregate stage of a pipeline: event-time windows folded by a Wasm
//! aggregate component, with state the host owns and checkpoints.
//!
//! State survives what the pipeline survives. Each roll of a partition's
//! segment (see `worker/roll.rs`) saves that partition's window state for the
//! roll's end position after the objects are durable and before the position
//! is committed; a restart loads the snapshot at the committed position and
//! replays the rest, which emits the same rows into the same objects. A hot
//! swap hands the state to the new version between batches (through its
//! `upgrade` when the state format changed; activation refuses a version that
//! cannot read it).

pub mod config;
pub mod window;

pub use config::{AggregateConfig, LatePolicy};
pub use window::{WindowError, WindowOutput, WindowState};

use super::control::PipelineControl;
use super::events::PipelineEvents;
use super::invalid::InvalidPipeline;
use super::land::Provenance;
use super::snapshot::Snapshots;
use super::stage::{Flow, Roll, Stage};
use super::stats::WindowsStatus;
use crate::position::PartitionId;
use crate::runtime::{AggregateInstance, CompiledTransform};
use crate::telemetry::metrics;
use sluice_guest::BatchRef;
use std::collections::BTreeMap;
use std::sync::Arc;
use window::{WindowRules, Windows};

pub struct AggregateStage {
    pipeline: String,
    rules: WindowRules,
    compiled: Arc<CompiledTransform>,
    instance: AggregateInstance,
    partitions: BTreeMap<PartitionId, WindowState>,
    snapshots: Snapshots,
    /// The control's generation the running version is of.
    generation: u64,
}

type Stages = Vec<Arc<CompiledTransform>>;

/// Split a pipeline's stages into its transform chain and, when the config has
/// an aggregate, the aggregate (always the last stage).
pub fn split_stages(mut stages: Stages, has_aggregate: bool) -> (Stages, Option<Arc<CompiledTransform>>) {
    let aggregate = if has_aggregate { stages.pop() } else { None };
    (stages, aggregate)
}

impl AggregateStage {
    /// The windows of `pipeline`, their snapshots kept in `snapshots`.
    /// `shared`: the partitions may move between processes (idle markers do not count, see `WindowRules`).
    pub fn new(pipeline: &str, config: &AggregateConfig, compiled: Arc<CompiledTransform>, snapshots: Snapshots, shared: bool) -> anyhow::Result<Self> {
        let instance = compiled
            .aggregate_instance()
            .ok_or_else(|| InvalidPipeline(format!("pipeline `{pipeline}`: aggregate.name `{}` is a transform, not an aggregate component", config.name)))?;
        Ok(AggregateStage {
            pipeline: pipeline.to_owned(),
            rules: WindowRules::new(config).with_idleness(!shared),
            compiled,
            instance,
            partitions: BTreeMap::new(),
            snapshots,
            generation: 0,
        })
    }

    pub fn compiled(&self) -> &Arc<CompiledTransform> {
        &self.compiled
    }

    fn format(&self) -> String {
        self.compiled.descriptor().state_format.clone().unwrap_or_default()
    }

    /// Load the windows of `p` as they were after every record before
    /// `committed` (a start, a restart, or a rewind after a failed write).
    fn resume(&mut self, p: &PartitionId, committed: u64) -> anyhow::Result<()> {
        let state = match self.snapshots.load(p, committed)? {
            Some((_, state)) => state,
            None if self.snapshots.any(p)? => anyhow::bail!(
                "pipeline `{}`, {p}: the aggregate state for position {committed} is missing (only later snapshots exist); \
                 the windows cannot be rebuilt. Delete the snapshots to start the windows afresh",
                self.pipeline
            ),
            None => {
                if committed > 0 {
                    tracing::warn!(partition = %p, committed, "no aggregate state saved yet: windows start empty at the committed position");
                }
                WindowState::new(&self.format())
            }
        };
        self.partitions.insert(p.clone(), state);
        self.hand_over(p)?;
        self.publish(p);
        Ok(())
    }

    /// Give partition `p`'s state the current version's format.
    fn hand_over(&mut self, p: &PartitionId) -> Result<(), WindowError> {
        let d = self.compiled.descriptor().clone();
        let state = self.partitions.get_mut(p).expect("resumed");
        let from = state.format.clone();
        let mut w = Windows { rules: &self.rules, state, agg: &mut self.instance, name: &d.name };
        w.hand_over(d.state_format.as_deref().unwrap_or_default(), &d.upgrades_from)?;
        if from != w.state.format {
            tracing::info!(partition = %p, from, to = %w.state.format, "aggregate state upgraded to the new version's format");
        }
        Ok(())
    }

    /// Take over the state with a new aggregate version (between batches).
    /// On failure the running version stays.
    fn swap_version(&mut self, compiled: Arc<CompiledTransform>) -> Result<(), WindowError> {
        let Some(instance) = compiled.aggregate_instance() else {
            return Err(WindowError::Handover { name: compiled.descriptor().name.clone(), format: self.format(), reason: "it is not an aggregate".into() });
        };
        let saved = self.partitions.clone();
        let (old_compiled, old_instance) = (std::mem::replace(&mut self.compiled, compiled), std::mem::replace(&mut self.instance, instance));
        let ids: Vec<PartitionId> = self.partitions.keys().cloned().collect();
        for p in &ids {
            if let Err(e) = self.hand_over(p) {
                self.partitions = saved;
                self.compiled = old_compiled;
                self.instance = old_instance;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Fold a batch of partition `p` (the transform chain's output) into its windows.
    pub fn fold(&mut self, p: &PartitionId, input: &BatchRef<'_>) -> Result<WindowOutput, WindowError> {
        let name = self.compiled.descriptor().name.clone();
        let state =
            self.partitions.entry(p.clone()).or_insert_with(|| WindowState::new(self.compiled.descriptor().state_format.as_deref().unwrap_or_default()));
        let result = Windows { rules: &self.rules, state, agg: &mut self.instance, name: &name }.process(input);
        let m = metrics();
        match &result {
            Ok(out) => m.aggregate_windows_emitted.with_label_values(&[&self.pipeline]).inc_by(out.windows_emitted),
            Err(WindowError::OverBudget { .. }) => m.aggregate_over_budget.with_label_values(&[&self.pipeline]).inc(),
            Err(_) => {}
        }
        self.publish(p);
        result
    }

    fn publish(&self, p: &PartitionId) {
        let (m, partition) = (metrics(), p.partition.to_string());
        let labels = [self.pipeline.as_str(), &p.topic, &partition];
        let Some(state) = self.partitions.get(p) else {
            // Forgotten: the gauges of a partition this worker no longer holds go too.
            for g in [&m.aggregate_state_bytes, &m.aggregate_idle_sources] {
                let _ = g.remove_label_values(&labels);
            }
            let _ = m.aggregate_watermark.remove_label_values(&labels);
            return;
        };
        m.aggregate_state_bytes.with_label_values(&labels).set(state.state_bytes() as i64);
        if let Some(w) = state.watermark_ms() {
            m.aggregate_watermark.with_label_values(&labels).set((w - self.rules.lateness_ms()) as f64 / 1000.0);
        }
        let idle = state.sources.values().filter(|c| c.idle).count();
        m.aggregate_idle_sources.with_label_values(&labels).set(idle as i64);
    }

    /// How partition `p`'s windows stand, for `/status`.
    pub fn status(&self, p: &PartitionId) -> Option<WindowsStatus> {
        let state = self.partitions.get(p)?;
        let watermark = state.watermark_ms().map(|w| {
            let mut s = String::new();
            sluice_guest::time::format_rfc3339_ms(w - self.rules.lateness_ms(), &mut s);
            s
        });
        Some(WindowsStatus {
            watermark,
            sources: state.sources.len(),
            idle_sources: state.sources.values().filter(|c| c.idle).count(),
            state_bytes: state.state_bytes(),
        })
    }

    /// Which aggregate version made the window rows of a segment (object metadata).
    fn version(&self) -> String {
        let d = self.compiled.descriptor();
        format!("{}@{} sha256:{} state {}", d.name, d.version, self.compiled.content_hash(), d.state_format.as_deref().unwrap_or_default())
    }

    /// The kind a table of this aggregate's rows has.
    pub fn output_kind(&self) -> &str {
        &self.compiled.descriptor().output_kind
    }
}

impl Stage for AggregateStage {
    fn name(&self) -> &'static str {
        "windows"
    }

    fn open(&mut self, p: &PartitionId, committed: u64) -> anyhow::Result<()> {
        self.resume(p, committed)
    }

    /// Fold the current rows (the transforms' output, as JSON records) into
    /// the partition's windows. Records the windows refuse (late, no event
    /// time, refused by the aggregate) become dead letters; the rows of the
    /// windows that closed go to the table.
    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        let p = flow.partition;
        let mut out = {
            let records = flow.records();
            let out = self.fold(p, &records)?;
            let mut dead = Vec::with_capacity(out.failures.len());
            for f in &out.failures {
                dead.push((f.index, f.kind, f.reason.clone(), records.get(f.index as usize).value.to_vec()));
            }
            (out, dead)
        };
        let stage = flow.chain_len;
        let from = flow.from();
        for (index, kind, reason, value) in std::mem::take(&mut out.1) {
            let mut d = from.letter(flow.to_input(index), stage, &self.compiled, kind, &reason);
            d.set_value(&value);
            flow.late.push(d);
        }
        let mut out = out.0;
        // Rows point at the current rows; the segment wants input records.
        for o in &mut out.origins {
            *o = flow.to_input(*o);
        }
        let m = metrics();
        let d = self.compiled.descriptor();
        for (name, value) in &out.counters {
            m.transform_guest_counter.with_label_values(&[&d.name, name]).inc_by(*value);
        }
        if let Some(status) = self.status(p) {
            flow.landing.events.stats.set_windows(p, status);
        }
        flow.writer = Some((stage, self.compiled.clone()));
        flow.windows = Some((out.rows, out.origins));
        Ok(())
    }

    /// Save `p`'s windows as of the roll's end (before that position is committed).
    fn land(&mut self, roll: &Roll<'_>) -> anyhow::Result<()> {
        let (p, offset) = (roll.partition, roll.intent.end);
        let state = self.partitions.get(p).ok_or_else(|| anyhow::anyhow!("no aggregate state for {p}"))?;
        let bytes = self.snapshots.save(p, offset, state)?;
        tracing::debug!(partition = %p, offset, bytes, "aggregate state saved");
        Ok(())
    }

    /// Position `offset` of `p` is committed: older snapshots are no longer needed.
    fn committed(&mut self, p: &PartitionId, offset: u64) -> anyhow::Result<()> {
        self.snapshots.prune(p, offset).map_err(|e| e.context("deleting old aggregate snapshots (they are ignored)"))
    }

    fn forget(&mut self, p: &PartitionId) {
        self.partitions.remove(p);
        self.publish(p);
    }

    fn lineage(&self) -> Vec<(String, String)> {
        vec![("sluice.aggregate".to_owned(), self.version())]
    }

    /// A new aggregate version takes the window state over between batches.
    fn swap(&mut self, control: &PipelineControl, events: &PipelineEvents<'_>) {
        if control.generation() == self.generation {
            return;
        }
        let (generation, stages) = control.chain();
        self.generation = generation;
        let Some(next) = split_stages(stages, true).1 else { return };
        if self.compiled.content_hash() != next.content_hash()
            && let Err(e) = self.swap_version(next)
        {
            // Activation checks the state format, so this is a failing upgrade: keep the running version.
            let msg = format!("handing the window state to the new aggregate version failed: {e}");
            tracing::error!("{msg}");
            events.failed(msg);
        }
    }
}

#[cfg(test)]
mod tests;
