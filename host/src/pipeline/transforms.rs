//! The transforms stage: the pipeline's Wasm transform chain over each batch,
//! with what comes with running versions an operator swaps at run time — a
//! shadow run of a candidate, probation of a newly activated version (and its
//! automatic rollback), and the chain of older versions that rewrites an
//! interrupted roll exactly as it first ran.

use super::chain::{Chain, ChainOutput};
use super::control::PipelineControl;
use super::events::PipelineEvents;
use super::land::refused_letters;
use super::stage::{Flow, Stage};
use crate::runtime::{CompiledTransform, FailureKind, TransformInstance};
use std::sync::Arc;

pub struct TransformsStage {
    /// The active chain, as of `generation`.
    chain: Chain,
    generation: u64,
    /// A chain of other versions, for rewriting an interrupted roll exactly as it was.
    replay_chain: Option<Chain>,
    probe: Option<Probe>,
    /// `(shadow generation, stage, candidate instance)` while a shadow run is on.
    shadow: Option<(u64, usize, TransformInstance)>,
    /// Whether this part runs the pipeline's transforms (not a join's router,
    /// not the windows): a swap picks up new versions only where they run.
    runs_transforms: bool,
    /// Whether the pipeline aggregates: the last of the control's stages is the aggregate's.
    aggregates: bool,
    control: Arc<PipelineControl>,
}

/// How a version on probation has fared in this worker.
struct Probe {
    generation: u64,
    stage: usize,
    batches: u32,
    records: u64,
    rejected: u64,
    failed: u64,
}

impl TransformsStage {
    /// The chain `transforms` (empty for a part that runs none), as of `generation`.
    pub fn new(control: Arc<PipelineControl>, generation: u64, transforms: Vec<Arc<CompiledTransform>>, runs_transforms: bool, aggregates: bool) -> Self {
        TransformsStage { chain: Chain::new(transforms), generation, replay_chain: None, probe: None, shadow: None, runs_transforms, aggregates, control }
    }

    /// Build the chain an interrupted roll used, if its versions are still known.
    fn prepare_replay_chain(&mut self, hashes: &[String]) -> bool {
        if self.replay_chain.as_ref().is_some_and(|c| c.hashes() == hashes) {
            return true;
        }
        let registry = self.control.registry().clone();
        let resolved: Option<Vec<_>> = hashes.iter().map(|h| registry.by_hash(h).and_then(|v| registry.compiled(&v).ok())).collect();
        match resolved {
            Some(transforms) => {
                self.replay_chain = Some(Chain::new(transforms));
                true
            }
            None => {
                tracing::error!(?hashes, "an interrupted roll used transform versions that are no longer stored; rewriting it with the active ones");
                false
            }
        }
    }

    /// Count how a version on probation does; roll it back if it does badly.
    fn judge(&mut self, out: &ChainOutput, records: u64, events: &PipelineEvents<'_>) {
        let Some(p) = self.probe.as_mut() else { return };
        let cfg = &self.control.auto_rollback;
        p.batches += 1;
        p.records += records;
        for f in &out.failures {
            if f.kind == FailureKind::Rejected { p.rejected += 1 } else { p.failed += 1 }
        }
        if p.batches < cfg.batches {
            return;
        }
        let seen = p.records;
        let (rejection_rate, failure_rate) = (p.rejected as f64 / seen.max(1) as f64, p.failed as f64 / seen.max(1) as f64);
        let (generation, stage) = (p.generation, p.stage);
        self.probe = None;
        let why = if rejection_rate > cfg.max_rejection_rate {
            format!("auto-rollback: {:.0}% of {seen} records refused (limit {:.0}%)", rejection_rate * 100.0, cfg.max_rejection_rate * 100.0)
        } else if failure_rate > cfg.max_trap_rate {
            format!("auto-rollback: {:.1}% of {seen} records trapped or timed out (limit {:.1}%)", failure_rate * 100.0, cfg.max_trap_rate * 100.0)
        } else {
            self.control.trust(generation);
            return;
        };
        if let Err(e) = self.control.rollback_counted(stage, &why, Some(generation), || events.rolled_back()) {
            tracing::error!(error = %e, "automatic rollback failed");
        }
    }
}

impl Stage for TransformsStage {
    fn name(&self) -> &'static str {
        "transforms"
    }

    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        let use_replay_chain = match flow.replay_versions {
            Some(hashes) if hashes != self.chain.hashes() => self.prepare_replay_chain(hashes),
            _ => false,
        };
        flow.replayed_versions = use_replay_chain;
        let chain = match (&mut self.replay_chain, use_replay_chain) {
            (Some(c), true) => c,
            _ => &mut self.chain,
        };
        flow.versions = chain.hashes();
        let records = flow.fetched.offsets.len() as u64;
        if chain.is_empty() {
            // Nothing to run: the rows go on as they are (and still count for probation).
            if !use_replay_chain {
                self.judge(&ChainOutput::default(), records, &flow.landing.events);
            }
            return Ok(());
        }
        let shadow_stage = self.shadow.as_ref().filter(|_| !use_replay_chain).map(|(_, stage, _)| *stage);
        let (mut out, captured) = chain.run_capturing(flow.input(), shadow_stage);
        if let (Some(seen), Some((generation, _, candidate))) = (captured, self.shadow.as_mut()) {
            let mut part = super::shadow::ShadowReport::default();
            super::shadow::compare(candidate, &seen, &mut part);
            self.control.add_shadow_results(*generation, &part);
        }
        let chain: &Chain = if use_replay_chain { self.replay_chain.as_ref().unwrap_or(&self.chain) } else { &self.chain };
        flow.landing.events.stages_ran(chain, &out);
        // Failures point at the chain's input rows; the dead letters want input records.
        for f in &mut out.failures {
            f.input_index = flow.to_input(f.input_index);
        }
        let refused = refused_letters(chain, &out.failures, &flow.from());
        flow.refused.extend(refused);
        let last = chain.stages().len() as u32;
        flow.chain_len = last;
        flow.writer = chain.stages().last().map(|s| (last - 1, s.transform.clone()));
        let output = std::mem::take(&mut out.output);
        flow.replace(output, &out.origins);
        if !use_replay_chain {
            self.judge(&out, records, &flow.landing.events);
        }
        Ok(())
    }

    /// Between batches: if an operator (or an automatic rollback) changed a
    /// version, switch to the new chain now. Records already processed stay
    /// with the old version; everything read from here on gets the new one.
    fn swap(&mut self, control: &PipelineControl, _events: &PipelineEvents<'_>) {
        let shadow_generation = control.shadow_generation();
        if self.shadow.as_ref().map_or(0, |(g, _, _)| *g) != shadow_generation {
            self.shadow = control.shadow_target().map(|(g, stage, candidate)| (g, stage, candidate.instance()));
        }
        if control.generation() == self.generation {
            return;
        }
        let (generation, stages) = control.chain();
        let (mut transforms, _) = super::aggregate::split_stages(stages, self.aggregates);
        if !self.runs_transforms {
            transforms.clear();
        }
        self.chain = Chain::new(transforms);
        self.generation = generation;
        self.probe = control.on_probation().filter(|(g, _)| *g == generation).map(|(generation, stage)| Probe {
            generation,
            stage,
            batches: 0,
            records: 0,
            rejected: 0,
            failed: 0,
        });
        tracing::info!(generation, versions = ?self.chain.hashes(), "switched transform versions between batches");
    }
}
