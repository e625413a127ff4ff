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
    let d = t.descriptor();
    println!("{} {} ({} -> {})", d.name, d.version, d.input_kind, d.output_kind);
    if let Some(j) = t.sql_join() {
        let sides: Vec<String> = j.sides.iter().map(|s| format!("{} AS {} on {}", s.topic, s.name, s.key)).collect();
        println!("joins:  {} ({}; the joined row's key is `{}`)", sides.join(" + "), if j.left { "left" } else { "inner" }, j.key_as);
    }
    if let Some(w) = t.sql_windows() {
        return windows(w, input.as_deref(), rows);
    }
    let program = t.sql().context("not a SQL stage: the file has no SELECT")?;
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

/// A windowed statement: its window and keys; with `input`, the rows each
/// window of the sample would land once closed (every window, as at the end of a stream).
fn windows(w: &crate::runtime::sql::SqlAggregate, input: Option<&std::path::Path>, rows: usize) -> anyhow::Result<ExitCode> {
    let s = &w.window;
    let kind = if s.size_ms == s.slide_ms { format!("tumbling {} ms", s.size_ms) } else { format!("{} ms every {} ms", s.size_ms, s.slide_ms) };
    println!("window: {kind} of `{}`; keys: {}", s.time_field, if w.group_by.is_empty() { "none".to_owned() } else { w.group_by.join(", ") });
    println!("reads:  {}", w.rows.describe_input());
    println!("writes: window_start timestamp, window_end timestamp, revision int64, {}", w.describe_output());
    let Some(input) = input else { return Ok(ExitCode::SUCCESS) };
    let text = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    // The pipeline's own routing rules: event time and group key as the router finds them.
    let bare = crate::pipeline::aggregate::AggregateConfig {
        name: "check".into(),
        time_field: String::new(),
        group_by: Vec::new(),
        window_ms: 0,
        slide_ms: None,
        allowed_lateness_ms: 0,
        late: Default::default(),
        update_for_ms: None,
        max_state_bytes: u64::MAX,
        partitions: None,
    };
    let config = bare.with_statement(&s.time_field, s.size_ms, s.slide_ms, &w.group_by).map_err(anyhow::Error::msg)?;
    let rules = crate::pipeline::aggregate::window::WindowRules::new(&config);
    // Records by window end, keyed as the router keys them.
    let mut by_window: std::collections::BTreeMap<i64, sluice_guest::BatchBuf> = Default::default();
    let mut refused = 0u64;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match rules.time_and_key(line.as_bytes()) {
            Ok((t, key)) => {
                for end in rules.windows_of(t) {
                    by_window.entry(end).or_default().push(line.as_bytes(), &key, t);
                }
            }
            Err(reason) => {
                refused += 1;
                println!("line {}: refused: {reason}", n + 1);
            }
        }
    }
    let mut shown = 0;
    for (end, batch) in &by_window {
        let folded = w.fold(&[], &batch.as_ref()).map_err(anyhow::Error::msg)?;
        for f in &folded.failures {
            refused += 1;
            println!("refused ({}): {}", f.kind.as_str(), f.reason);
        }
        for r in w.emit(&folded.state).map_err(anyhow::Error::msg)?.as_ref().iter() {
            if shown < rows {
                let mut start = String::new();
                sluice_guest::time::format_rfc3339_ms(end - s.size_ms as i64, &mut start);
                println!("[{start}, +{} ms) {}", s.size_ms, String::from_utf8_lossy(r.value));
                shown += 1;
            }
        }
    }
    println!("{} windows; {refused} records refused", by_window.len());
    Ok(ExitCode::SUCCESS)
}
