//! Command-line interface. Each subcommand lives in its own module.

mod authoring;
mod demo;
mod emulate;
mod locate;
mod remote;
mod report;
mod serve;
mod sql;
mod transform;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// sluice — a stream processor appliance: ingest events over HTTP, clean them in
/// sandboxed WebAssembly transforms, land them in S3 or a local directory.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// Log as JSON lines (for log shippers) instead of human-readable text.
    #[arg(long, global = true, env = "SLUICE_LOG_JSON")]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole pipeline on this machine with no external service: the
    /// embedded log, a local landing directory (sluice-demo/run-<time>/), and the
    /// emulator posting to the appliance's own REST Proxy endpoint. Prints what
    /// landed where and the next commands to try; `query` and `report` then read
    /// the most recent run by default.
    Demo(demo::DemoArgs),
    /// Run the appliance from a config file until Ctrl-C or SIGTERM.
    Serve(serve::ServeArgs),
    /// Post generated pin/geo/user events to an ingest endpoint.
    Emulate(emulate::EmulateArgs),
    /// Inspect and control the pipelines of a running sluice.
    Pipeline {
        #[command(subcommand)]
        command: remote::PipelineCommand,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Inspect and replay the dead letters of a running sluice.
    Dlq {
        #[command(subcommand)]
        command: remote::DlqCommand,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Run the jobs of a running sluice.
    Job {
        #[command(subcommand)]
        command: remote::JobCommand,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Validate a config file and exit (non-zero, naming the offending key, when invalid).
    CheckConfig {
        /// The config file to check.
        file: std::path::PathBuf,
    },
    /// Run SQL over the landed tables (pin, geo, user, …): an aligned table, CSV, JSON lines or Parquet.
    Query(report::QueryArgs),
    /// Run the nine reports now over the landed tables: print them, write each as
    /// Parquet and CSV under reports/<name>/run=<time>/, and an HTML summary with charts.
    Report(report::ReportArgs),
    /// Work with transform components: write one (new, build, test, deploy), run one over a file, list the built-ins.
    #[command(subcommand)]
    Transform(transform::TransformCommand),
    /// Work with SQL stages: check one over sample records, list the functions sluice adds.
    #[command(subcommand)]
    Sql(sql::SqlCommand),
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo speaks for itself (progress, summary, next steps); its pipelines'
    // log is there with RUST_LOG=info.
    let default_level = if matches!(cli.command, Command::Demo(_)) { "warn" } else { "info" };
    crate::telemetry::init_logging(cli.log_json, default_level);
    let result = match cli.command {
        Command::Transform(cmd) => transform::run(cmd),
        Command::Sql(cmd) => sql::run(cmd),
        Command::CheckConfig { file } => serve::check_config(file),
        Command::Demo(args) => block_on(demo::run(args)),
        Command::Query(args) => block_on(report::query(args)),
        Command::Report(args) => block_on(report::report(args)),
        Command::Serve(args) => block_on(serve::serve(args)),
        Command::Emulate(args) => block_on(emulate::run(args)),
        Command::Pipeline { command, remote } => block_on(async move { remote::pipeline(&remote, command).await }),
        Command::Dlq { command, remote } => block_on(async move { remote::dlq(&remote, command).await }),
        Command::Job { command, remote } => block_on(async move { remote::job(&remote, command).await }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
