//! What a guest's store holds: its memory limiter and the `sluice:transform/host` imports.

use super::bindings::{Host, Level};
use super::limits::{MAX_COUNTER_NAME_BYTES, MAX_COUNTER_NAMES, MAX_LOG_LINE_BYTES, MAX_LOG_LINES_PER_CALL, MAX_TABLE_ELEMENTS, SandboxLimits};
use std::sync::Arc;
use wasmtime::ResourceLimiter;

pub(crate) struct HostState {
    pub(crate) limits: SandboxLimits,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) transform: Arc<str>,
    /// The last error the guest logged (its panic message, if it panicked).
    pub(crate) last_error: Option<String>,
    pub(crate) counters: Vec<(String, u64)>,
    log_lines: u32,
}

impl HostState {
    pub(crate) fn new(transform: Arc<str>, limits: &SandboxLimits) -> Self {
        HostState {
            limits: limits.clone(),
            limiter: MemoryLimiter { max_bytes: limits.memory_bytes(), hit: false },
            transform,
            last_error: None,
            counters: Vec::new(),
            log_lines: 0,
        }
    }

    /// Forget per-call state before the next call.
    pub(crate) fn reset_call(&mut self) {
        self.limiter.hit = false;
        self.last_error = None;
        self.log_lines = 0;
    }
}

// The `types` interface has no functions; its trait is empty.
impl super::bindings::TypesHost for HostState {}
impl super::bindings::columns::ColumnsHost for HostState {}

/// The 0.2.0 world's `host` interface: the same two functions as 0.1.0's.
impl super::bindings::columns::Host for HostState {
    fn log(&mut self, level: super::bindings::columns::Level, message: String) {
        use super::bindings::columns::Level as L2;
        let level = match level {
            L2::Trace => Level::Trace,
            L2::Debug => Level::Debug,
            L2::Info => Level::Info,
            L2::Warn => Level::Warn,
            L2::Error => Level::Error,
        };
        Host::log(self, level, message)
    }

    fn count(&mut self, name: String, delta: u64) {
        Host::count(self, name, delta)
    }
}
impl super::bindings::aggregate::AggregateTypesHost for HostState {}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        if matches!(level, Level::Error) {
            self.last_error = Some(message.clone());
        }
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            return;
        }
        let t = &*self.transform;
        match level {
            Level::Trace => tracing::trace!(transform = t, "{message}"),
            Level::Debug => tracing::debug!(transform = t, "{message}"),
            Level::Info => tracing::info!(transform = t, "{message}"),
            Level::Warn => tracing::warn!(transform = t, "{message}"),
            Level::Error => tracing::error!(transform = t, "{message}"),
        }
    }

    fn count(&mut self, name: String, delta: u64) {
        if let Some((_, v)) = self.counters.iter_mut().find(|(n, _)| *n == name) {
            *v = v.saturating_add(delta);
        } else if self.counters.len() < MAX_COUNTER_NAMES && name.len() <= MAX_COUNTER_NAME_BYTES {
            self.counters.push((name, delta));
        } else {
            tracing::debug!(transform = &*self.transform, counter = %name, "guest counter dropped: too many names or name too long");
        }
    }
}

/// Caps a guest's linear memory and remembers that the cap was hit, so the
/// resulting trap (a Rust guest aborts when allocation fails) can be reported
/// as what it really is.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
