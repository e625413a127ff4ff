//! What a running pipeline reports about itself (status, the demo summary, metrics).

use crate::position::PartitionId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where a pipeline's workers are in their life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineState {
    /// Created, not reading yet.
    #[default]
    Starting,
    Running,
    /// Landed what it held and reads nothing until resumed.
    Paused,
    /// Stopped cleanly: every landed record is committed.
    Stopped,
    /// A worker ended with an error; see the last error.
    Failed,
}

impl PipelineState {
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Starting => "starting",
            PipelineState::Running => "running",
            PipelineState::Paused => "paused",
            PipelineState::Stopped => "stopped",
            PipelineState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for PipelineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Default)]
pub struct PipelineStats {
    pub records_in: AtomicU64,
    pub raw_records: AtomicU64,
    pub table_rows: AtomicU64,
    pub dead_letters: AtomicU64,
    pub segments: AtomicU64,
    pub bytes_landed: AtomicU64,
    pub errors: AtomicU64,
    pub rollbacks: AtomicU64,
    pub output_records: AtomicU64,
    pub repartitioned_records: AtomicU64,
    pub joined_rows: AtomicU64,
    state: Mutex<Shared>,
    /// One entry per `[[pipeline.action]]`, shared by the workers.
    actions: Mutex<BTreeMap<String, Arc<ActionStats>>>,
}

/// How an action's deliveries go, for `/status`.
#[derive(Default)]
pub struct ActionStats {
    pub detected: AtomicU64,
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    last: Mutex<ActionLast>,
}

#[derive(Default)]
struct ActionLast {
    retrying: bool,
    last_error: Option<String>,
    last_delivered_unix: Option<f64>,
}

impl ActionStats {
    pub fn delivered(&self, actions: u64) {
        self.sent.fetch_add(actions, Ordering::Relaxed);
        if let Ok(mut l) = self.last.lock() {
            l.retrying = false;
            l.last_delivered_unix = Some(crate::clock::now_secs_f64());
        }
    }

    pub fn retrying(&self, why: &str) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last.lock() {
            l.retrying = true;
            l.last_error = Some(why.to_owned());
        }
    }

    pub fn dead_lettered(&self, why: &str) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last.lock() {
            l.last_error = Some(why.to_owned());
        }
    }

    fn snapshot(&self, name: &str) -> ActionStatus {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (retrying, last_error, last_delivered_unix) =
            self.last.lock().map(|l| (l.retrying, l.last_error.clone(), l.last_delivered_unix)).unwrap_or_default();
        ActionStatus {
            name: name.to_owned(),
            state: if retrying { "retrying" } else { "ok" },
            detected: get(&self.detected),
            sent: get(&self.sent),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            last_error,
            last_delivered_unix,
        }
    }
}

/// An action in `/status`.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct ActionStatus {
    pub name: String,
    /// `ok`, or `retrying` while the webhook is failing and deliveries are retried.
    pub state: &'static str,
    /// Actions the detector emitted.
    pub detected: u64,
    /// Actions the webhook acknowledged.
    pub sent: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
    /// Actions refused by the webhook (4xx) or given up on, in the dead letters.
    pub dead_lettered: u64,
    pub last_error: Option<String>,
    pub last_delivered_unix: Option<f64>,
}

#[derive(Default)]
struct Shared {
    state: PipelineState,
    last_error: Option<String>,
    last_error_at: Option<std::time::Instant>,
    committed: BTreeMap<PartitionId, u64>,
    ends: BTreeMap<PartitionId, u64>,
    windows: BTreeMap<PartitionId, WindowsStatus>,
}

/// The windows of one repartition partition, for `/status`.
#[derive(Debug, Serialize, Clone, PartialEq, Default)]
pub struct WindowsStatus {
    /// The pipeline-wide watermark this partition's windows have reached
    /// (least event time over the input partitions that are not idle, minus
    /// the allowed lateness), RFC 3339; none until every input has reported.
    pub watermark: Option<String>,
    /// Input partitions this partition's windows hear from, and how many of them are idle.
    pub sources: usize,
    pub idle_sources: usize,
    /// Bytes of aggregate state held for the open windows.
    pub state_bytes: u64,
}

#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: u32,
    pub committed: u64,
    pub end: Option<u64>,
    pub lag: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<WindowsStatus>,
}

#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct StatsSnapshot {
    pub state: PipelineState,
    pub records_in: u64,
    pub raw_records: u64,
    pub table_rows: u64,
    pub dead_letters: u64,
    pub segments: u64,
    pub bytes_landed: u64,
    pub errors: u64,
    pub rollbacks: u64,
    /// Records written to the pipeline's output topic.
    pub output_records: u64,
    /// Records an aggregating pipeline moved into its repartition topic.
    #[serde(skip_serializing_if = "is_zero")]
    pub repartitioned_records: u64,
    /// Rows a join emitted.
    #[serde(skip_serializing_if = "is_zero")]
    pub joined_rows: u64,
    pub last_error: Option<String>,
    pub partitions: Vec<PartitionStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionStatus>,
}

impl PipelineStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_state(&self, state: PipelineState) {
        if let Ok(mut s) = self.state.lock() {
            s.state = state;
        }
    }

    pub fn set_error(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            s.last_error = Some(error);
            s.last_error_at = Some(std::time::Instant::now());
        }
    }

    pub fn set_committed(&self, p: &PartitionId, next_offset: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.committed.insert(p.clone(), next_offset);
        }
    }

    /// A partition this process no longer reads (it went to another group member).
    pub fn forget_partition(&self, p: &PartitionId) {
        if let Ok(mut s) = self.state.lock() {
            s.committed.remove(p);
            s.ends.remove(p);
            s.windows.remove(p);
        }
    }

    /// Seconds since the last error, if there was one.
    pub fn seconds_since_error(&self) -> Option<u64> {
        self.state.lock().ok()?.last_error_at.map(|t| t.elapsed().as_secs())
    }

    pub fn committed(&self, p: &PartitionId) -> Option<u64> {
        self.state.lock().ok()?.committed.get(p).copied()
    }

    pub fn set_windows(&self, p: &PartitionId, w: WindowsStatus) {
        if let Ok(mut s) = self.state.lock() {
            s.windows.insert(p.clone(), w);
        }
    }

    pub fn set_end(&self, p: &PartitionId, end: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.ends.insert(p.clone(), end);
        }
    }

    /// The shared status of the action `name` (made on first use).
    pub fn action(&self, name: &str) -> Arc<ActionStats> {
        match self.actions.lock() {
            Ok(mut a) => a.entry(name.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let s = self.state.lock().map(|s| (s.state, s.last_error.clone(), s.committed.clone(), s.ends.clone(), s.windows.clone()));
        let (state, last_error, committed, ends, windows) = s.unwrap_or_default();
        let partitions = committed
            .iter()
            .map(|(p, &c)| {
                let end = ends.get(p).copied();
                PartitionStatus {
                    topic: p.topic.to_string(),
                    partition: p.partition,
                    committed: c,
                    end,
                    lag: end.map(|e| e.saturating_sub(c)),
                    windows: windows.get(p).cloned(),
                }
            })
            .collect();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            state,
            records_in: get(&self.records_in),
            raw_records: get(&self.raw_records),
            table_rows: get(&self.table_rows),
            dead_letters: get(&self.dead_letters),
            segments: get(&self.segments),
            bytes_landed: get(&self.bytes_landed),
            errors: get(&self.errors),
            rollbacks: get(&self.rollbacks),
            output_records: get(&self.output_records),
            repartitioned_records: get(&self.repartitioned_records),
            joined_rows: get(&self.joined_rows),
            last_error,
            partitions,
            actions: self.actions.lock().map(|a| a.iter().map(|(name, s)| s.snapshot(name)).collect()).unwrap_or_default(),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
