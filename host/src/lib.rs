//! sluice: a WebAssembly-extensible stream processor appliance.
//!
//! Stages, one module each: [`runtime`] (sandboxed Wasm transforms) and the
//! command line in [`cli`]. See ARCHITECTURE.md for the whole picture.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod emulate;
pub mod failpoint;
pub mod ingest;
pub mod jobs;
pub mod pipeline;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod report;
pub mod telemetry;
