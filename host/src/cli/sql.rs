//! `sluice sql …`: check a SQL stage before it goes live, and list the functions sluice adds.

use super::authoring::lines::process_lines;
use crate::runtime::sql::function_names;
use crate::runtime::{Runtime, SandboxLimits, StageRows};
use anyhow::Context;
use clap::Subcommand;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum SqlCommand {
    /// Plan a SQL stage and run it over sample records: prints the fields it
    /// reads (with their types), the columns it writes, the first rows and
    /// every refusal with its reason. A statement that cannot run exits 1 with
    /// the error and its line and column.
    ///
    /// Example: sluice sql check clean.sql --input pins.jsonl
    Check {
        /// The statement: `[CREATE TABLE input (field TYPE, …);] SELECT … FROM input [WHERE …]`.
        file: PathBuf,
        /// JSON lines to run it over (one record per line).
        #[arg(long)]
        input: Option<PathBuf>,
        /// How many output rows to print.
        #[arg(long, default_value_t = 10)]
        rows: usize,
    },
    /// List the functions sluice adds to SQL stages (besides DataFusion's own).
    Functions,
}

pub fn run(cmd: SqlCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SqlCommand::Functions => {
            for name in function_names() {
                println!("{name}");
            }
            println!("(docs/sql.md says what each does; every DataFusion scalar function that is deterministic works too)");
            Ok(ExitCode::SUCCESS)
        }
        SqlCommand::Check { file, input, rows } => check(file, input, rows),
    }
}

fn check(file: PathBuf, input: Option<PathBuf>, rows: usize) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sql".into());
    let runtime = Runtime::new(SandboxLimits::default(), None)?;
    let t = match runtime.load_named(&text, Some(&stem)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let program = t.sql().context("not a SQL stage: the file has no SELECT")?;
    let d = t.descriptor();
    println!("{} {} ({} -> {})", d.name, d.version, d.input_kind, d.output_kind);
    println!("reads:  {}", program.describe_input());
    println!("writes: {}", program.contract.describe_output());
    let Some(input) = input else { return Ok(ExitCode::SUCCESS) };
    let lines = BufReader::new(std::fs::File::open(&input).with_context(|| format!("opening {}", input.display()))?);
    let mut worker = t.instance();
    let (mut shown, mut written, mut refused) = (Vec::new(), 0u64, 0u64);
    let read = process_lines(lines, &mut worker, 1024, |_, line_numbers, done| {
        if let StageRows::Columns(c) = &done.output
            && shown.iter().map(|b: &arrow_array::RecordBatch| b.num_rows()).sum::<usize>() < rows
        {
            shown.push(c.batch.slice(0, c.batch.num_rows().min(rows)));
        }
        written += done.output.len() as u64;
        for f in &done.failures {
            refused += 1;
            if refused <= 20 {
                println!("line {}: refused ({}): {}", line_numbers[f.index as usize], f.kind.as_str(), f.reason);
            }
        }
        Ok(())
    })?;
    let table = datafusion::arrow::util::pretty::pretty_format_batches(&shown)?;
    println!("{table}");
    println!("{read} records read: {written} rows out, {refused} refused");
    Ok(ExitCode::SUCCESS)
}
