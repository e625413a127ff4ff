//! The process-wide engine, its epoch ticker and the sandbox limits.

use super::builtin::builtin_bytes;
use super::cache::ArtifactCache;
use super::compiled::{CompiledTransform, LoadError};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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

/// The shared wasmtime engine and everything tied to it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    cache: Option<ArtifactCache>,
    limits: SandboxLimits,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Build the engine. `cache_dir`, when given, keeps precompiled components
    /// across restarts so a start does not pay for Cranelift again.
    pub fn new(limits: SandboxLimits, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        limits.validate().map_err(|e| anyhow::anyhow!("sandbox limits: {e}"))?;
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Components may have several core instances and memories; these bound the
        // pool's virtual reservation, not its resident memory.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(512)
            .max_memories_per_component(8)
            .max_tables_per_component(8)
            .max_core_instances_per_component(16)
            .max_memory_size(limits.memory_bytes());
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Guest code is JIT-compiled, so a profiler sees bare addresses; with this set,
        // wasmtime writes /tmp/perf-<pid>.map and `perf report` names guest functions.
        if std::env::var_os("SLUICE_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("creating the wasm engine: {e:#}"))?;
        let cache = cache_dir.map(|dir| ArtifactCache::new(&engine, dir));

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| anyhow::anyhow!("starting the epoch ticker thread: {e}"))?;

        Ok(Runtime { inner: Arc::new(RuntimeInner { engine, cache, limits, stop_ticker }) })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.inner.limits
    }

    /// Compile (or fetch from the disk cache) and validate a component.
    pub fn load(&self, wasm: &[u8]) -> Result<Arc<CompiledTransform>, LoadError> {
        CompiledTransform::load(self, self.inner.cache.as_ref(), wasm).map(Arc::new)
    }

    /// Load a built-in transform by name (`clean-pin`, `clean-geo`, `clean-user`).
    pub fn load_builtin(&self, name: &str) -> Result<Arc<CompiledTransform>, LoadError> {
        let bytes = builtin_bytes(name).ok_or_else(|| LoadError::UnknownBuiltin(name.to_owned()))?;
        self.load(bytes)
    }
}
