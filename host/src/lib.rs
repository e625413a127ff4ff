//! sluice: a WebAssembly-extensible stream processor appliance.
//!
//! One module per stage: [`ingest`] (the HTTP shapes clients post to),
//! [`source`] (the embedded log, Kafka, Kinesis), [`runtime`] (sandboxed Wasm
//! transforms), [`pipeline`] (workers that read, transform and land), [`sink`]
//! (the landing store and its file formats), [`jobs`] and [`report`] (the batch
//! side), [`admin`] and [`telemetry`] (control and metrics); [`app`] wires them
//! into a process and [`cli`] is the command line. See ARCHITECTURE.md for the
//! whole picture.

pub mod admin;
pub mod app;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod emulate;
pub mod failpoint;
pub mod ingest;
pub mod jobs;
pub(crate) mod jsonl;
pub mod log;
pub mod pipeline;
pub mod position;
pub mod report;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod store;
pub(crate) mod sync;
pub mod telemetry;
