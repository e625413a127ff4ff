//! Running batches through a transform component (either contract) under the sandbox limits.

use super::bindings::{BatchParam, Transform, TransformPre};
use super::columnar::ColumnsInstance;
use super::engine::Runtime;
use super::host::HostState;
use super::rows::StageRows;
use super::sandbox::{
    CallFailure, FailureKind, InstanceStats, Instantiate, ProcessedBatch, RecordFailure, Sandboxed, call_with_limits, merge_counters, one_by_one,
};
use super::sql::SqlProgram;
use sluice_guest::{BatchBuf, BatchRef};
use std::sync::Arc;
use wasmtime::Store;

impl Instantiate for TransformPre<HostState> {
    type Bindings = Transform;
    fn instantiate_in(&self, store: &mut Store<HostState>) -> wasmtime::Result<Transform> {
        self.instantiate(store)
    }
}

/// Runs batches through one transform component. Not shared between threads:
/// each pipeline worker owns one. Cheap to create; the store is made on first use.
pub struct TransformInstance {
    stage: Stage,
}

/// What a transform stage runs batches through.
enum Stage {
    /// A 0.1.0 component (JSON records).
    Records(Sandboxed<TransformPre<HostState>>),
    /// A 0.2.0 component (typed columns).
    Columns(ColumnsInstance),
    /// A SQL stage: its statement, run natively.
    Sql(Arc<SqlProgram>),
    /// A component that is not a transform (an aggregate put in a chain):
    /// every record then fails with the reason, nothing crashes.
    NotATransform(Arc<str>),
}

impl TransformInstance {
    pub(crate) fn new_raw(runtime: Runtime, pre: TransformPre<HostState>, name: Arc<str>) -> Self {
        TransformInstance { stage: Stage::Records(Sandboxed::new(runtime, pre, name)) }
    }

    /// An instance of a 0.2.0 (typed columns) component.
    pub(crate) fn columns(instance: ColumnsInstance) -> Self {
        TransformInstance { stage: Stage::Columns(instance) }
    }

    /// An instance of a component that does not implement the transform world.
    pub(crate) fn not_a_transform(name: Arc<str>) -> Self {
        TransformInstance { stage: Stage::NotATransform(name) }
    }

    /// An instance of a SQL stage.
    pub(crate) fn sql(program: Arc<SqlProgram>) -> Self {
        TransformInstance { stage: Stage::Sql(program) }
    }

    pub fn stats(&self) -> InstanceStats {
        match &self.stage {
            Stage::Records(s) => s.stats,
            Stage::Columns(c) => c.sandbox.stats,
            Stage::Sql(_) | Stage::NotATransform(_) => InstanceStats::default(),
        }
    }

    /// A call into a 0.1.0 component (the only kind that has this world's bindings).
    pub(crate) fn with_instance<R>(&mut self, f: impl FnOnce(&mut Store<HostState>, &Transform) -> Result<R, CallFailure>) -> Result<R, CallFailure> {
        match &mut self.stage {
            Stage::Records(s) => s.with_instance(f),
            Stage::NotATransform(name) => {
                Err(CallFailure::Trap(format!("`{name}` is an aggregate component, not a transform: it cannot run in a transform chain")))
            }
            Stage::Columns(_) | Stage::Sql(_) => Err(CallFailure::Trap("not a contract 0.1.0 component".into())),
        }
    }

    /// Run a batch. Never fails as a whole: a guest failure is narrowed down to
    /// the records that cause it by retrying them one by one; those records
    /// become failures, the others produce their output as usual.
    pub fn process(&mut self, input: &BatchRef<'_>) -> ProcessedBatch {
        if input.is_empty() {
            return ProcessedBatch::default();
        }
        match &mut self.stage {
            Stage::Columns(columns) => return columns.process(input),
            Stage::Sql(sql) => return sql.process(input),
            Stage::Records(_) | Stage::NotATransform(_) => {}
        }
        match self.call_process(input) {
            Ok(done) => done,
            Err(failure) => self.isolate(input, failure),
        }
    }

    fn call_process(&mut self, input: &BatchRef<'_>) -> Result<ProcessedBatch, CallFailure> {
        let n = input.len();
        let param = BatchParam { values: input.values, value_ends: input.value_ends, keys: input.keys, key_ends: input.key_ends, timestamps: input.timestamps };
        let (result, counters) = self.with_instance(|store, bindings| {
            let r = call_with_limits(store, |s| bindings.call_process(s, param))?;
            Ok((r, std::mem::take(&mut store.data_mut().counters)))
        })?;
        let o = result.output;
        let output = BatchBuf { values: o.values, value_ends: o.value_ends, keys: o.keys, key_ends: o.key_ends, timestamps: o.timestamps };
        let checked = check_output(n, &output, &result.origins, result.rejections.iter().map(|r| r.index));
        if let Err(msg) = checked {
            let failure = CallFailure::Malformed(msg);
            if let Stage::Records(s) = &mut self.stage {
                s.count_failure(&failure);
            }
            return Err(failure);
        }
        let failures = result.rejections.into_iter().map(|r| RecordFailure { index: r.index, kind: FailureKind::Rejected, reason: r.reason }).collect();
        Ok(ProcessedBatch { output: StageRows::Json(output), origins: result.origins, failures, counters, isolated: false })
    }

    fn isolate(&mut self, input: &BatchRef<'_>, first: CallFailure) -> ProcessedBatch {
        let mut done = ProcessedBatch { isolated: true, ..Default::default() };
        let mut output = BatchBuf::default();
        if input.len() == 1 {
            done.failures.push(RecordFailure { index: 0, kind: (&first).into(), reason: first.to_string() });
            return done;
        }
        let (max_failures, name) = match &self.stage {
            Stage::Records(s) => (s.limits().max_isolation_failures, s.name.clone()),
            // Not a transform: every record fails the same way; trying each would say nothing new.
            Stage::Columns(_) | Stage::Sql(_) | Stage::NotATransform(_) => {
                done.failures.extend((0..input.len() as u32).map(|index| RecordFailure { index, kind: (&first).into(), reason: first.to_string() }));
                return done;
            }
        };
        tracing::warn!(transform = &*name, records = input.len(), reason = %first, "batch failed; retrying its records one by one");
        let (origins, counters) = (&mut done.origins, &mut done.counters);
        one_by_one(input, &first, max_failures, &mut done.failures, |index, single| {
            let one = self.call_process(single)?;
            for r in one.output.to_json().as_ref().as_ref().iter() {
                output.push(r.value, r.key, r.timestamp);
                origins.push(index);
            }
            merge_counters(counters, one.counters);
            Ok(one.failures)
        });
        done.output = StageRows::Json(output);
        done
    }
}

/// The guest's output is untrusted: check it before anything downstream indexes into it.
fn check_output(inputs: usize, output: &BatchBuf, origins: &[u32], rejected: impl Iterator<Item = u32>) -> Result<(), String> {
    output.as_ref().validate()?;
    if origins.len() != output.len() {
        return Err(format!("{} output records but {} origins", output.len(), origins.len()));
    }
    if let Some(bad) = origins.iter().chain(rejected.collect::<Vec<_>>().iter()).find(|&&i| i as usize >= inputs) {
        return Err(format!("refers to input record {bad} of a batch of {inputs}"));
    }
    Ok(())
}
