//! `sluice transform …`: write, build, test and deploy a transform; run one over a JSON-lines file; list built-ins.

use super::authoring;
use super::authoring::lines::process_lines;
use crate::runtime::{Runtime, SandboxLimits, builtin_names};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum TransformCommand {
    /// Run a transform over a JSON-lines file, one record per line.
    ///
    /// Every input line comes out either as output or as a rejection with its
    /// reason; the exit code is 0 even when records are rejected (2 when all are).
    ///
    /// Example: sluice transform run --transform clean-pin --input pins.jsonl --output out.jsonl --rejects rejects.jsonl
    Run(RunArgs),
    /// List the built-in transforms compiled into this binary, with versions and content hashes.
    Builtins,
    /// Start a transform crate of your own, outside this repository: a commented
    /// example, native unit tests, golden samples, and the SDK it builds with.
    ///
    /// Then: `sluice transform build DIR`, `sluice transform test DIR`,
    /// `sluice transform deploy DIR --pipeline P --stage N` (docs/transform-authoring.md).
    New {
        /// The transform's name (lowercase letters, digits, `-`): the crate's and the component's.
        name: String,
        /// What to start from.
        #[arg(long, value_enum, default_value = "transform")]
        kind: authoring::scaffold::Kind,
        /// Where to write the crate. Default: ./NAME.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the crate in DIR (default: here) into a component for wasm32-wasip2
    /// (adding the target through rustup when missing), and check that this sluice
    /// runs it: the world it implements, its version, size and content hash.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run the crate's golden samples (samples.json) through its built component,
    /// in the sandbox and limits the server uses; a diff for each failing sample,
    /// and a non-zero exit when any fails. With --input, run it over a JSON-lines
    /// file and summarise outputs, refusals and counters instead.
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// A JSON-lines file to run the component over.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Upload a component to a running sluice and, with --pipeline, put it live.
    ///
    /// `deploy [DIR] --pipeline P --stage N [--shadow SECONDS]` uploads the crate's
    /// built component and its golden samples (checked again by the server), runs it
    /// as a shadow of the active version for SECONDS and prints the comparison, then
    /// activates it between batches and prints how to roll back.
    /// `deploy NAME FILE.wasm` uploads a component file as transform NAME.
    Deploy {
        /// The crate's folder (default: here), or with FILE, the transform's name.
        target: Option<String>,
        /// A component file to upload as transform TARGET.
        file: Option<PathBuf>,
        /// Put it live on this pipeline…
        #[arg(long, requires = "stage", conflicts_with = "file")]
        pipeline: Option<String>,
        /// …at this stage (0 is the first transform).
        #[arg(long, requires = "pipeline")]
        stage: Option<usize>,
        /// Run it as a shadow this many seconds first and print how it compares.
        #[arg(long, requires = "pipeline")]
        shadow: Option<u64>,
        #[command(flatten)]
        remote: super::remote::Remote,
    },
    /// Every transform and version a running sluice knows.
    List {
        #[command(flatten)]
        remote: super::remote::Remote,
    },
    /// Make a version (version string or sha256 prefix) active on a pipeline stage, between batches.
    Activate {
        pipeline: String,
        /// 0 for the pipeline's first transform.
        stage: usize,
        version: String,
        #[command(flatten)]
        remote: super::remote::Remote,
    },
    /// Return a pipeline stage to its previous version.
    Rollback {
        pipeline: String,
        stage: usize,
        #[command(flatten)]
        remote: super::remote::Remote,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A built-in name (clean-pin, clean-geo, clean-user) or the path of a `.wasm` component.
    #[arg(long, short)]
    transform: String,
    /// Input file of JSON lines; `-` reads standard input.
    #[arg(long, short, default_value = "-")]
    input: PathBuf,
    /// Where output records go, one per line; `-` is standard output.
    #[arg(long, short, default_value = "-")]
    output: PathBuf,
    /// Where rejected records go (JSON lines with line number, reason and the raw record).
    /// Without it, rejections are summarised on standard error only.
    #[arg(long, short)]
    rejects: Option<PathBuf>,
    /// Records per call into the component.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_size: u32,
    /// Memory cap of the component, in MiB.
    #[arg(long, default_value_t = SandboxLimits::default().memory_mib)]
    memory_mib: u32,
    /// Deadline of one batch call, in milliseconds.
    #[arg(long, default_value_t = SandboxLimits::default().deadline_ms)]
    deadline_ms: u64,
}

pub fn run(cmd: TransformCommand) -> anyhow::Result<ExitCode> {
    use super::remote;
    match cmd {
        TransformCommand::Run(args) => run_file(args),
        TransformCommand::New { name, kind, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            authoring::scaffold::write_crate(&dir, &name, kind)?;
            println!("wrote the {} crate `{name}` in {}:", format!("{kind:?}").to_lowercase(), dir.display());
            println!("  src/lib.rs            the transform, with native unit tests (`cargo test`)");
            println!("  samples.json          golden samples: checked by `test`, and by the server on every upload");
            println!("  sdk/, wit/            the SDK and the contract of this sluice, which the crate builds with");
            println!("next:");
            println!("  sluice transform build {}", dir.display());
            println!("  sluice transform test {}", dir.display());
            println!("  sluice transform deploy {} --pipeline <pipeline> --stage <n> [--shadow 30]", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        TransformCommand::Build { dir } => {
            let (krate, t) = authoring::build::build(&dir)?;
            println!("built {}", authoring::build::describe(&t));
            println!("  {}", krate.component_path().display());
            Ok(ExitCode::SUCCESS)
        }
        TransformCommand::Test { dir, input } => {
            let krate = authoring::TransformCrate::open(&dir)?;
            let t = authoring::build::load(&krate)?;
            println!("testing {}", authoring::build::describe(&t));
            if let Some(input) = input {
                authoring::test::input_file(&t, &input)?;
                return Ok(ExitCode::SUCCESS);
            }
            Ok(if authoring::test::samples(&krate, &t)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        TransformCommand::Deploy { target, file: Some(file), remote: r, .. } => {
            let name = target.context("give the transform's name before the file: sluice transform deploy NAME FILE.wasm")?;
            super::block_on(async move { remote::deploy(&r, &name, &file).await })
        }
        TransformCommand::Deploy { target, file: None, pipeline, stage, shadow, remote: r } => {
            let dir = PathBuf::from(target.unwrap_or_else(|| ".".into()));
            super::block_on(async move {
                let live = pipeline.as_deref().zip(stage).map(|(pipeline, stage)| authoring::deploy::Target {
                    pipeline,
                    stage,
                    shadow: shadow.map(std::time::Duration::from_secs),
                });
                authoring::deploy::deploy(&r, &dir, live).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        TransformCommand::List { remote: r } => super::block_on(async move { remote::list(&r).await }),
        TransformCommand::Activate { pipeline, stage, version, remote: r } => {
            super::block_on(async move { remote::activate(&r, &pipeline, stage, &version).await })
        }
        TransformCommand::Rollback { pipeline, stage, remote: r } => super::block_on(async move { remote::rollback(&r, &pipeline, stage).await }),
        TransformCommand::Builtins => {
            let rt = Runtime::new(SandboxLimits::default(), None)?;
            for name in builtin_names() {
                let t = rt.load_builtin(name)?;
                let d = t.descriptor();
                println!("{:<20} {:<8} {:>6} -> {:<14} {:<5} sha256:{}", d.name, d.version, d.input_kind, d.output_kind, d.contract.as_str(), t.content_hash());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Serialize)]
struct RejectLine<'a> {
    line: u64,
    transform: &'a str,
    version: &'a str,
    kind: &'static str,
    reason: &'a str,
    record: &'a str,
}

fn run_file(args: RunArgs) -> anyhow::Result<ExitCode> {
    let limits = SandboxLimits { memory_mib: args.memory_mib, deadline_ms: args.deadline_ms, ..Default::default() };
    let runtime = Runtime::new(limits, None)?;
    let transform = if args.transform.ends_with(".wasm") || Path::new(&args.transform).exists() {
        let bytes = std::fs::read(&args.transform).with_context(|| format!("reading component {}", args.transform))?;
        // A SQL file without a `-- name:` header is named after the file.
        let stem = Path::new(&args.transform).file_stem().map(|s| s.to_string_lossy().into_owned());
        runtime.load_named(&bytes, stem.as_deref()).with_context(|| format!("loading {}", args.transform))?
    } else {
        runtime.load_builtin(&args.transform)?
    };
    let d = transform.descriptor().clone();
    let mut worker = transform.instance();

    let input: Box<dyn Read> = if args.input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.input).with_context(|| format!("opening input {}", args.input.display()))?)
    };
    let lines = BufReader::with_capacity(1 << 20, input);
    let mut output = open_out(&args.output)?;
    let mut rejects = args.rejects.as_deref().map(open_out).transpose()?;

    let started = Instant::now();
    let (mut written, mut rejected) = (0u64, 0u64);
    let read = process_lines(lines, &mut worker, args.batch_size as usize, |batch, batch_lines, done| {
        for r in done.output.to_json().as_ref().as_ref().iter() {
            output.write_all(r.value)?;
            output.write_all(b"\n")?;
        }
        written += done.output.len() as u64;
        rejected += done.failures.len() as u64;
        for f in &done.failures {
            let record = batch.as_ref().get(f.index as usize).value;
            let line = RejectLine {
                line: batch_lines[f.index as usize],
                transform: &d.name,
                version: &d.version,
                kind: f.kind.as_str(),
                reason: &f.reason,
                record: &String::from_utf8_lossy(record),
            };
            match rejects.as_mut() {
                Some(w) => {
                    serde_json::to_writer(&mut *w, &line)?;
                    w.write_all(b"\n")?;
                }
                None => eprintln!("line {}: {}", line.line, line.reason),
            }
        }
        Ok(())
    })?;
    output.flush()?;
    if let Some(w) = rejects.as_mut() {
        w.flush()?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{} {}: {read} records in, {written} out, {rejected} rejected in {secs:.2}s ({:.0} records/s)", d.name, d.version, read as f64 / secs.max(1e-9));
    Ok(if read > 0 && rejected == read { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

fn open_out(path: &Path) -> anyhow::Result<Box<dyn Write>> {
    Ok(if path == Path::new("-") {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::with_capacity(1 << 20, File::create(path).with_context(|| format!("creating {}", path.display()))?))
    })
}
