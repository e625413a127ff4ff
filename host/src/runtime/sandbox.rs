//! What every world's instance shares: a store made on first use and reused
//! for a bounded number of calls, the deadline and memory cap armed on each
//! call, the failures a call can end in, and record-by-record isolation.

use super::engine::Runtime;
use super::host::HostState;
use super::rows::StageRows;
use sluice_guest::{BatchBuf, BatchRef};
use std::fmt;
use std::sync::Arc;
use wasmtime::{Store, Trap};

/// Why a guest call did not return a usable result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The deadline passed while the guest was still running.
    Timeout { deadline_ms: u64 },
    /// The guest tried to grow its memory past the cap.
    MemoryLimit { limit_mib: u32 },
    /// The guest trapped (panic, unreachable, a denied import, ...).
    Trap(String),
    /// The guest returned a batch that breaks the layout contract.
    Malformed(String),
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallFailure::Timeout { deadline_ms } => write!(f, "timeout: still running after the {deadline_ms} ms deadline"),
            CallFailure::MemoryLimit { limit_mib } => write!(f, "memory limit: tried to grow past {limit_mib} MiB"),
            CallFailure::Trap(msg) => write!(f, "trap: {msg}"),
            CallFailure::Malformed(msg) => write!(f, "malformed output: {msg}"),
        }
    }
}

/// How one input record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The transform refused the record (bad data).
    Rejected,
    Timeout,
    MemoryLimit,
    Trap,
    Malformed,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Rejected => "rejected",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Trap => "trap",
            FailureKind::Malformed => "malformed_output",
        }
    }
}

impl From<&CallFailure> for FailureKind {
    fn from(f: &CallFailure) -> Self {
        match f {
            CallFailure::Timeout { .. } => FailureKind::Timeout,
            CallFailure::MemoryLimit { .. } => FailureKind::MemoryLimit,
            CallFailure::Trap(_) => FailureKind::Trap,
            CallFailure::Malformed(_) => FailureKind::Malformed,
        }
    }
}

/// An input record that produced no output, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// Index of the record in the input batch.
    pub index: u32,
    pub kind: FailureKind,
    pub reason: String,
}

/// The result of running one batch.
#[derive(Debug, Default)]
pub struct ProcessedBatch {
    /// JSON records (contract 0.1.0) or typed columns (0.2.0).
    pub output: StageRows,
    /// Input index of each output record.
    pub origins: Vec<u32>,
    /// Input records refused or lost to a guest failure; each is a dead letter.
    pub failures: Vec<RecordFailure>,
    /// Counters the guest bumped.
    pub counters: Vec<(String, u64)>,
    /// Whole-batch calls that failed and forced record-by-record isolation.
    pub isolated: bool,
}

/// Lifetime statistics of one instance worker (exported as metrics by the pipeline).
#[derive(Debug, Default, Clone, Copy)]
pub struct InstanceStats {
    pub instantiations: u64,
    pub calls: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub memory_limit_hits: u64,
}

struct Live<B> {
    store: Store<HostState>,
    bindings: B,
    calls: u32,
}

/// Pre-instantiated bindings of one world, able to make a fresh instance.
pub(crate) trait Instantiate {
    type Bindings;
    fn instantiate_in(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings>;
}

/// A component's store, made on first use, reused for a bounded number of
/// calls and thrown away after any failure: what every world's instance shares.
pub(crate) struct Sandboxed<P: Instantiate> {
    runtime: Runtime,
    pre: P,
    pub(crate) name: Arc<str>,
    live: Option<Live<P::Bindings>>,
    pub(crate) stats: InstanceStats,
}

impl<P: Instantiate> Sandboxed<P> {
    pub(crate) fn new(runtime: Runtime, pre: P, name: Arc<str>) -> Self {
        Sandboxed { runtime, pre, name, live: None, stats: InstanceStats::default() }
    }

    pub(crate) fn limits(&self) -> &super::SandboxLimits {
        self.runtime.limits()
    }

    /// Run `f` against a live instance, creating one if needed. Any failure
    /// discards the store: a guest that trapped may have left its memory inconsistent.
    pub(crate) fn with_instance<R>(&mut self, f: impl FnOnce(&mut Store<HostState>, &P::Bindings) -> Result<R, CallFailure>) -> Result<R, CallFailure> {
        let limits = self.runtime.limits();
        if self.live.as_ref().is_some_and(|l| l.calls >= limits.reuse_batches) {
            self.live = None;
        }
        if self.live.is_none() {
            let mut store = Store::new(self.runtime.engine(), HostState::new(self.name.clone(), limits));
            store.limiter(|s| &mut s.limiter);
            store.epoch_deadline_trap();
            // Instantiation runs the component's start functions: same deadline as a call.
            store.set_epoch_deadline(limits.deadline_ticks());
            let bindings = self.pre.instantiate_in(&mut store).map_err(|e| CallFailure::Trap(format!("instantiation failed: {e:#}")))?;
            self.stats.instantiations += 1;
            self.live = Some(Live { store, bindings, calls: 0 });
        }
        let live = self.live.as_mut().expect("instance was just created");
        live.calls += 1;
        self.stats.calls += 1;
        let result = f(&mut live.store, &live.bindings);
        if let Err(failure) = &result {
            self.count_failure(failure);
            self.live = None;
        }
        result
    }

    /// Count a failure found after the call returned (a malformed result) and drop the store.
    pub(crate) fn count_failure(&mut self, failure: &CallFailure) {
        match failure {
            CallFailure::Timeout { .. } => self.stats.timeouts += 1,
            CallFailure::MemoryLimit { .. } => self.stats.memory_limit_hits += 1,
            CallFailure::Trap(_) | CallFailure::Malformed(_) => self.stats.traps += 1,
        }
        self.live = None;
    }
}

/// After a batch call failed with `first`: call `call_one` on each record of
/// `input` alone, so only the records that fail by themselves become failures
/// (re-indexed to the batch). `call_one` keeps what a record produced and
/// returns its own rejections.
pub(crate) fn one_by_one(
    input: &BatchRef<'_>,
    first: &CallFailure,
    max_failures: u32,
    failures: &mut Vec<RecordFailure>,
    mut call_one: impl FnMut(u32, &BatchRef<'_>) -> Result<Vec<RecordFailure>, CallFailure>,
) {
    let mut failed = 0u32;
    let mut single = BatchBuf::default();
    for i in 0..input.len() {
        let index = i as u32;
        if failed >= max_failures {
            // The batch is hopeless; stop spending deadlines on it. Nothing is lost:
            // the remaining records go to the dead letters and can be replayed.
            let reason = format!("not attempted: {failed} records of this batch already failed (last: {})", failures.last().map_or("", |f| f.reason.as_str()));
            failures.extend((index..input.len() as u32).map(|index| RecordFailure { index, kind: first.into(), reason: reason.clone() }));
            break;
        }
        single.clear();
        let rec = input.get(i);
        single.push(rec.value, rec.key, rec.timestamp);
        match call_one(index, &single.as_ref()) {
            Ok(own) => failures.extend(own.into_iter().map(|f| RecordFailure { index, ..f })),
            Err(failure) => {
                failed += 1;
                failures.push(RecordFailure { index, kind: (&failure).into(), reason: failure.to_string() });
            }
        }
    }
}

pub(crate) fn merge_counters(into: &mut Vec<(String, u64)>, from: Vec<(String, u64)>) {
    for (name, delta) in from {
        match into.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += delta,
            None => into.push((name, delta)),
        }
    }
}

/// Arm the deadline, make the call, and turn a wasmtime error into a [`CallFailure`].
pub(crate) fn call_with_limits<R>(store: &mut Store<HostState>, call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>) -> Result<R, CallFailure> {
    store.data_mut().reset_call();
    let limits = store.data().limits.clone();
    let (deadline_ms, limit_mib) = (limits.deadline_ms, limits.memory_mib);
    store.set_epoch_deadline(limits.deadline_ticks());
    match call(store) {
        Ok(r) => Ok(r),
        Err(e) => {
            let data = store.data();
            if data.limiter.hit {
                return Err(CallFailure::MemoryLimit { limit_mib });
            }
            let trap = e.downcast_ref::<Trap>().copied();
            if trap == Some(Trap::Interrupt) {
                return Err(CallFailure::Timeout { deadline_ms });
            }
            // The first link of the chain is only "error while executing at wasm backtrace".
            let root = e.root_cause().to_string();
            let mut msg = match trap {
                Some(trap) => trap.to_string(),
                None if root.starts_with("unknown import") => {
                    format!("denied capability: {root} (the sandbox grants no filesystem, network, clock, environment or randomness)")
                }
                None => root,
            };
            if let Some(said) = &data.last_error {
                msg = format!("{msg} (guest said: {said})");
            }
            Err(CallFailure::Trap(msg))
        }
    }
}
