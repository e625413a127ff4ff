//! Command-line interface. Each subcommand lives in its own module.

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
    /// Work with transform components: run one over a file, list the built-ins.
    #[command(subcommand)]
    Transform(transform::TransformCommand),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init_logging(cli.log_json);
    let result = match cli.command {
        Command::Transform(cmd) => transform::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
