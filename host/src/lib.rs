//! sluice: a WebAssembly-extensible stream processor appliance.
//!
//! One folder per stage or shared layer, imports running one way (lowest
//! first): [`position`], [`store`], [`telemetry`] (the words and storage every
//! stage shares); [`log`], [`source`], [`runtime`], [`sink`] (the embedded log,
//! where pipelines read, the Wasm sandbox, what lands); [`ingest`], [`consume`],
//! [`pipeline`], [`report`], [`jobs`], [`emulate`] (the stages); [`config`] and
//! [`admin`]; [`app`], which assembles a process; [`cli`], the command line.
//! `docs/architecture.md` has the whole picture and the path of one record;
//! `scripts/module-deps.py --check` keeps the imports one way.

pub mod admin;
pub mod app;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod consume;
pub mod emulate;
pub mod failpoint;
pub mod ingest;
pub mod jobs;
pub(crate) mod jsonl;
pub mod log;
pub mod partitioner;
pub mod pipeline;
pub mod position;
pub mod report;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod store;
pub(crate) mod sync;
pub mod telemetry;
