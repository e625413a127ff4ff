//! The WebAssembly transform runtime.
//!
//! One wasmtime [`Engine`](wasmtime::Engine) per process (component model,
//! pooling allocator, epoch interruption). A component is compiled once per
//! content hash — and cached on disk, keyed by the engine's compatibility hash —
//! into a [`CompiledTransform`] holding its `InstancePre`. Each pipeline stage
//! runs batches through a [`TransformInstance`], which reuses a `Store` for a
//! bounded number of batches and throws it away after any trap.
//!
//! Sandbox: guests get the `sluice:transform/host` imports (log, count) and
//! nothing else. Every other import — the WASI functions the Rust standard
//! library links against for files, sockets, clocks, environment, randomness —
//! is defined as a trap. Every call runs under a memory cap and a deadline.

mod aggregate;
mod bindings;
mod builtin;
mod cache;
mod columnar;
mod compiled;
mod engine;
mod host;
mod instance;
mod limits;
pub mod registry;
mod rows;
mod sandbox;
pub mod sql;

pub use aggregate::{AggregateInstance, Folded};
pub use builtin::{BUILTINS, builtin_names};
pub use columnar::ColumnContract;
pub use compiled::{CompiledTransform, ComponentKind, ContentHash, Contract, Descriptor, LoadError};
pub use engine::Runtime;
pub use instance::TransformInstance;
pub use limits::SandboxLimits;
pub use rows::{ColumnRows, StageRows, render_json};
pub(crate) use sandbox::merge_counters;
pub use sandbox::{CallFailure, FailureKind, InstanceStats, ProcessedBatch, RecordFailure};

#[cfg(any(test, feature = "test-guests"))]
pub mod testing {
    //! Components that only tests use.

    /// A guest that misbehaves on command: each record's value names what it does
    /// (`loop`, `alloc`, `panic`, `open`, `socket`, `env`, `clock`, `reject`; anything else is echoed).
    pub const HOSTILE_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"));

    /// clean-pin 0.2.0-marked: the real cleaning, with `v2:` before every unique_id.
    pub const CLEAN_PIN_MARKED_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/clean_pin_marked.wasm"));

    /// count-posts 0.2.0: the same counts, its state in a new format it upgrades 0.1.0's into.
    pub const COUNT_POSTS_V2_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/count_posts_v2.wasm"));

    /// clean-pin 0.1.0: the built-in cleaning, built against contract 0.1.0 (JSON records).
    pub const CLEAN_PIN_V1_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/clean_pin_v1.wasm"));

    /// hostile-columns 0.2.0: returns broken column buffers on command (see its crate docs).
    pub const HOSTILE_COLUMNS_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile_columns.wasm"));

    /// clean-pin 0.3.0-rejects-all: refuses every record.
    pub const REJECT_ALL_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reject_all.wasm"));
}

#[cfg(test)]
mod tests;
