//! Every limit the sandbox puts on a guest, and the engine's pool sizes, in
//! one place: what an operator can set (`[sandbox]`) and what is fixed.

use serde::Deserialize;
use std::time::Duration;

/// How often the engine's epoch advances. Deadlines are measured in these ticks,
/// so a deadline overshoots by at most one tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits every guest call runs under.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// Largest linear memory a guest may grow to, in MiB. Growing past it fails
    /// the call and the culprit record becomes a rejection with reason `memory limit`.
    pub memory_mib: u32,
    /// Wall-clock budget for one `process` call, in milliseconds. A guest still
    /// running then is interrupted and the culprit becomes a rejection with reason `timeout`.
    pub deadline_ms: u64,
    /// Batches one instance serves before it is replaced by a fresh one
    /// (bounds whatever state a guest accumulates between calls).
    pub reuse_batches: u32,
    /// While isolating the culprit of a failed batch record by record, give up
    /// after this many more failures and reject the rest of the batch with the last reason.
    pub max_isolation_failures: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits { memory_mib: 64, deadline_ms: 2_000, reuse_batches: 10_000, max_isolation_failures: 8 }
    }
}

impl SandboxLimits {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4096).contains(&self.memory_mib) {
            return Err(format!("memory_mib must be between 1 and 4096, got {}", self.memory_mib));
        }
        if !(1..=600_000).contains(&self.deadline_ms) {
            return Err(format!("deadline_ms must be between 1 and 600000, got {}", self.deadline_ms));
        }
        if self.reuse_batches == 0 {
            return Err("reuse_batches must be at least 1".into());
        }
        Ok(())
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory_mib as usize * 1024 * 1024
    }

    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.deadline_ms * 1000).div_ceil(EPOCH_TICK.as_micros() as u64) + 1
    }
}

/// Largest component accepted for upload.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Guests may log, but not flood the host's log: lines per call, bytes per line.
pub(crate) const MAX_LOG_LINES_PER_CALL: u32 = 64;
pub(crate) const MAX_LOG_LINE_BYTES: usize = 2048;
/// Guest counters become metric labels, so their number must stay small.
pub(crate) const MAX_COUNTER_NAMES: usize = 32;
pub(crate) const MAX_COUNTER_NAME_BYTES: usize = 64;
/// Largest table (of function references) a guest may grow to.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Sizes of the engine's pooling allocator. Components may have several core
/// instances and memories; these bound the pool's virtual reservation, not its
/// resident memory.
pub(crate) mod pool {
    pub const TOTAL_COMPONENT_INSTANCES: u32 = 256;
    pub const TOTAL_CORE_INSTANCES: u32 = 1024;
    pub const TOTAL_MEMORIES: u32 = 512;
    pub const TOTAL_TABLES: u32 = 512;
    pub const MAX_MEMORIES_PER_COMPONENT: u32 = 8;
    pub const MAX_TABLES_PER_COMPONENT: u32 = 8;
    pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;
}
