//! Running an aggregate: every call takes state bytes the host owns and gives
//! new ones back — a component under the same sandbox limits as a transform, or
//! a windowed SQL statement folding natively.

use super::bindings::BatchParam;
use super::bindings::aggregate::{Aggregate, AggregatePre, Window};
use super::engine::Runtime;
use super::host::HostState;
use super::sandbox::{CallFailure, FailureKind, InstanceStats, Instantiate, RecordFailure, Sandboxed, call_with_limits, merge_counters, one_by_one};
use super::sql::SqlAggregate;
use sluice_guest::{BatchBuf, BatchRef};
use std::sync::Arc;
use wasmtime::Store;

impl Instantiate for AggregatePre<HostState> {
    type Bindings = Aggregate;
    fn instantiate_in(&self, store: &mut Store<HostState>) -> wasmtime::Result<Aggregate> {
        self.instantiate(store)
    }
}

/// The result of folding one batch.
#[derive(Debug, Default)]
pub struct Folded {
    pub state: Vec<u8>,
    /// Records refused, or lost to a guest failure: each is a dead letter; the state is as if they never came.
    pub failures: Vec<RecordFailure>,
    pub counters: Vec<(String, u64)>,
}

/// Calls into one aggregate. Each pipeline worker owns one.
pub struct AggregateInstance {
    inner: Inner,
}

enum Inner {
    Guest(Box<Sandboxed<AggregatePre<HostState>>>),
    Sql(Arc<SqlAggregate>, Arc<str>),
}

fn param<'a>(b: &BatchRef<'a>) -> BatchParam<'a> {
    BatchParam { values: b.values, value_ends: b.value_ends, keys: b.keys, key_ends: b.key_ends, timestamps: b.timestamps }
}

impl AggregateInstance {
    pub(crate) fn new_raw(runtime: Runtime, pre: AggregatePre<HostState>, name: Arc<str>) -> Self {
        AggregateInstance { inner: Inner::Guest(Box::new(Sandboxed::new(runtime, pre, name))) }
    }

    /// An instance of a windowed SQL statement.
    pub(crate) fn sql(statement: Arc<SqlAggregate>, name: Arc<str>) -> Self {
        AggregateInstance { inner: Inner::Sql(statement, name) }
    }

    pub fn stats(&self) -> InstanceStats {
        match &self.inner {
            Inner::Guest(sandbox) => sandbox.stats,
            Inner::Sql(..) => InstanceStats::default(),
        }
    }

    fn sandbox(&mut self) -> &mut Sandboxed<AggregatePre<HostState>> {
        match &mut self.inner {
            Inner::Guest(sandbox) => sandbox,
            Inner::Sql(..) => unreachable!("callers handle SQL first"),
        }
    }

    pub(crate) fn describe(&mut self) -> Result<super::bindings::aggregate::AggregateDescriptor, CallFailure> {
        self.sandbox().with_instance(|store, b| call_with_limits(store, |s| b.call_describe_aggregate(s)))
    }

    /// The state of an empty pane.
    pub fn init(&mut self) -> Result<Vec<u8>, CallFailure> {
        if let Inner::Sql(..) = self.inner {
            return Ok(Vec::new());
        }
        self.sandbox().with_instance(|store, b| call_with_limits(store, |s| b.call_init(s)))
    }

    /// Fold `input` into `state`. Never fails as a whole: if the batch makes the
    /// guest fail, its records are folded one by one and the ones that fail
    /// become failures, leaving the state as the others made it.
    pub fn fold(&mut self, state: &[u8], input: &BatchRef<'_>) -> Folded {
        if input.is_empty() {
            return Folded { state: state.to_vec(), ..Default::default() };
        }
        if let Inner::Sql(statement, name) = &self.inner {
            return match statement.fold(state, input) {
                Ok(done) => Folded { state: done.state, failures: done.failures, counters: done.counters },
                // The state is not this statement's (a checked handover makes that impossible): refuse the batch, keep the state.
                Err(reason) => {
                    tracing::error!(aggregate = &**name, %reason, "cannot fold into the window state");
                    let failures = (0..input.len() as u32).map(|index| RecordFailure { index, kind: FailureKind::Trap, reason: reason.clone() }).collect();
                    Folded { state: state.to_vec(), failures, counters: Vec::new() }
                }
            };
        }
        match self.call_fold(state, input) {
            Ok(done) => done,
            Err(first) => self.isolate(state, input, first),
        }
    }

    fn call_fold(&mut self, state: &[u8], input: &BatchRef<'_>) -> Result<Folded, CallFailure> {
        let n = input.len();
        let batch = param(input);
        let (out, counters) = self.sandbox().with_instance(|store, b| {
            let r = call_with_limits(store, |s| b.call_fold(s, state, batch))?;
            Ok((r, std::mem::take(&mut store.data_mut().counters)))
        })?;
        if let Some(bad) = out.rejections.iter().find(|r| r.index as usize >= n) {
            let failure = CallFailure::Malformed(format!("refers to input record {} of a batch of {n}", bad.index));
            self.sandbox().count_failure(&failure);
            return Err(failure);
        }
        let failures = out.rejections.into_iter().map(|r| RecordFailure { index: r.index, kind: FailureKind::Rejected, reason: r.reason }).collect();
        Ok(Folded { state: out.state, failures, counters })
    }

    fn isolate(&mut self, state: &[u8], input: &BatchRef<'_>, first: CallFailure) -> Folded {
        let mut done = Folded { state: state.to_vec(), ..Default::default() };
        if input.len() == 1 {
            done.failures.push(RecordFailure { index: 0, kind: (&first).into(), reason: first.to_string() });
            return done;
        }
        let sandbox = self.sandbox();
        tracing::warn!(aggregate = &*sandbox.name, records = input.len(), reason = %first, "fold failed; folding its records one by one");
        let max_failures = sandbox.limits().max_isolation_failures;
        let (state, counters) = (&mut done.state, &mut done.counters);
        one_by_one(input, &first, max_failures, &mut done.failures, |_, single| {
            let one = self.call_fold(state, single)?;
            *state = one.state;
            merge_counters(counters, one.counters);
            Ok(one.failures)
        });
        done
    }

    /// Combine two states.
    pub fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Vec<u8>, CallFailure> {
        if let Inner::Sql(statement, _) = &self.inner {
            return statement.merge(a, b).map_err(CallFailure::Trap);
        }
        self.sandbox().with_instance(|store, g| call_with_limits(store, |s| g.call_merge(s, a, b)))
    }

    /// The rows of a closed window `[start, end)`.
    pub fn emit(&mut self, state: &[u8], start: i64, end: i64) -> Result<BatchBuf, CallFailure> {
        if let Inner::Sql(statement, _) = &self.inner {
            return statement.emit(state).map_err(CallFailure::Trap);
        }
        let out = self.sandbox().with_instance(|store, g| call_with_limits(store, |s| g.call_emit(s, state, Window { start, end })))?;
        let rows = BatchBuf { values: out.values, value_ends: out.value_ends, keys: out.keys, key_ends: out.key_ends, timestamps: out.timestamps };
        if let Err(msg) = rows.as_ref().validate() {
            let failure = CallFailure::Malformed(msg);
            self.sandbox().count_failure(&failure);
            return Err(failure);
        }
        Ok(rows)
    }

    /// Turn a state of `format` into this version's format. The inner error is the guest's refusal.
    pub fn upgrade(&mut self, format: &str, state: &[u8]) -> Result<Result<Vec<u8>, String>, CallFailure> {
        if let Inner::Sql(statement, _) = &self.inner {
            return Ok(Err(format!("a SQL statement reads only its own state format ({}), not `{format}`", statement.state_format)));
        }
        self.sandbox().with_instance(|store, g| call_with_limits(store, |s| g.call_upgrade(s, format, state)))
    }
}
