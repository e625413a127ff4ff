//! A pipeline's transform chain: each stage's output feeds the next.

use crate::runtime::{CompiledTransform, FailureKind, StageRows, TransformInstance};
use sluice_guest::BatchBuf;
use std::sync::Arc;

pub struct ChainStage {
    pub transform: Arc<CompiledTransform>,
    worker: TransformInstance,
}

/// An input record that did not make it through the chain.
#[derive(Debug)]
pub struct ChainFailure {
    /// Index in the chain's input batch.
    pub input_index: u32,
    pub stage: u32,
    pub kind: FailureKind,
    pub reason: String,
    /// The record as it entered the failing stage.
    pub value: Vec<u8>,
}

/// How one stage did on one batch (for metrics).
#[derive(Debug, Default)]
pub struct StageRun {
    pub records_in: usize,
    pub records_out: usize,
    pub seconds: f64,
    /// `(kind, count)` of records it refused or lost.
    pub failures: Vec<(FailureKind, u64)>,
    /// Instances created for this batch (first use, reuse limit, after a failure).
    pub instantiations: u64,
}

#[derive(Debug, Default)]
pub struct ChainOutput {
    pub stage_runs: Vec<StageRun>,
    /// JSON records, or typed columns when the last stage speaks contract 0.2.0.
    pub output: StageRows,
    /// Chain-input index of each output record.
    pub origins: Vec<u32>,
    pub failures: Vec<ChainFailure>,
    /// Guest counters, per stage.
    pub counters: Vec<(u32, String, u64)>,
}

/// One stage's input and result, as captured for a shadow comparison.
#[derive(Debug)]
pub struct Captured {
    pub input: BatchBuf,
    pub output: BatchBuf,
    /// Input index of each output record.
    pub origins: Vec<u32>,
    /// `(input index, reason)` of the records the stage refused or lost.
    pub failed: Vec<(u32, String)>,
}

pub struct Chain {
    stages: Vec<ChainStage>,
}

impl Chain {
    pub fn new(transforms: Vec<Arc<CompiledTransform>>) -> Self {
        Chain { stages: transforms.into_iter().map(|t| ChainStage { worker: t.instance(), transform: t }).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    pub fn stages(&self) -> &[ChainStage] {
        &self.stages
    }

    /// Content hashes of the stages, in order: the chain's identity.
    pub fn hashes(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.transform.content_hash().to_owned()).collect()
    }

    pub fn run(&mut self, input: &BatchBuf) -> ChainOutput {
        self.run_capturing(input, None).0
    }

    /// Run the chain, and also hand back what went into stage `capture` and
    /// what that stage made of it (for shadow runs of a candidate version).
    pub fn run_capturing(&mut self, input: &BatchBuf, capture: Option<usize>) -> (ChainOutput, Option<Captured>) {
        let mut captured = None;
        let mut out = ChainOutput { origins: (0..input.len() as u32).collect(), ..Default::default() };
        let mut current: Option<StageRows> = None;
        for (i, stage) in self.stages.iter_mut().enumerate() {
            // A stage reads records: a 0.2.0 stage's columns feeding another stage are rendered as JSON.
            let rendered = current.as_ref().map(StageRows::to_json);
            let batch = rendered.as_deref().unwrap_or(input).as_ref();
            let (started, made_before) = (std::time::Instant::now(), stage.worker.stats().instantiations);
            let done = stage.worker.process(&batch);
            if capture == Some(i) {
                captured = Some(Captured {
                    input: batch.iter().collect(),
                    output: done.output.to_json().into_owned(),
                    origins: done.origins.clone(),
                    failed: done.failures.iter().map(|f| (f.index, f.reason.clone())).collect(),
                });
            }
            let mut run = StageRun {
                records_in: batch.len(),
                records_out: done.output.len(),
                seconds: started.elapsed().as_secs_f64(),
                failures: Vec::new(),
                instantiations: stage.worker.stats().instantiations - made_before,
            };
            for f in &done.failures {
                match run.failures.iter_mut().find(|(k, _)| *k == f.kind) {
                    Some((_, n)) => *n += 1,
                    None => run.failures.push((f.kind, 1)),
                }
            }
            out.stage_runs.push(run);
            for f in done.failures {
                out.failures.push(ChainFailure {
                    input_index: out.origins[f.index as usize],
                    stage: i as u32,
                    kind: f.kind,
                    reason: f.reason,
                    value: batch.get(f.index as usize).value.to_vec(),
                });
            }
            out.counters.extend(done.counters.into_iter().map(|(n, v)| (i as u32, n, v)));
            out.origins = done.origins.iter().map(|&o| out.origins[o as usize]).collect();
            current = Some(done.output);
        }
        out.output = current.unwrap_or_else(|| StageRows::Json(input.clone()));
        (out, captured)
    }
}
