//! The process-wide engine and its epoch ticker.

use super::cache::ArtifactCache;
use super::limits::{EPOCH_TICK, SandboxLimits, pool};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(pool::TOTAL_COMPONENT_INSTANCES)
            .total_core_instances(pool::TOTAL_CORE_INSTANCES)
            .total_memories(pool::TOTAL_MEMORIES)
            .total_tables(pool::TOTAL_TABLES)
            .max_memories_per_component(pool::MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(pool::MAX_TABLES_PER_COMPONENT)
            .max_core_instances_per_component(pool::MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memory_size(limits.memory_bytes());
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
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

    pub(crate) fn cache(&self) -> Option<&ArtifactCache> {
        self.inner.cache.as_ref()
    }
}
