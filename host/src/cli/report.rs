//! `sluice query` and `sluice report`: SQL over the landed tables, and the nine reports.

use super::locate;
use crate::config::Config;
use crate::report::output::{self, Format};
use crate::report::{self, Landing, run};
use crate::store::ObjectStore;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Which landing store to read (and write reports into).
#[derive(Args, Debug, Clone)]
pub struct LandingArgs {
    /// The config file: its `[landing]` section says where the tables are (a directory or S3).
    #[arg(long, short, env = "SLUICE_CONFIG", conflicts_with = "landing")]
    pub config: Option<PathBuf>,
    /// A local landing directory instead of a config file. Default: sluice-data/landing
    /// (what `sluice serve` fills without a `data_dir`), else the landing of the most recent
    /// `sluice demo` run (sluice-demo/run-<time>/landing).
    #[arg(long)]
    pub landing: Option<PathBuf>,
}

impl LandingArgs {
    /// The landing to read, and the store to write into. Call inside a tokio runtime.
    pub async fn open(&self) -> anyhow::Result<(Landing, Arc<dyn ObjectStore>)> {
        let dir = match (&self.config, &self.landing) {
            (Some(path), _) => {
                let config = Config::load(path)?;
                if let Some(s3) = config.landing.s3.clone() {
                    let store: Arc<dyn ObjectStore> = Arc::new(crate::store::s3::S3Store::new(s3, tokio::runtime::Handle::current()).await?);
                    return Ok((Landing::Store(store.clone()), store));
                }
                config.landing_dir()
            }
            (None, Some(dir)) => dir.clone(),
            (None, None) => {
                let Some(found) = locate::default_data_dir_here()? else {
                    anyhow::bail!(
                        "no landing to read here: neither {}/landing (what `sluice serve` fills by default) nor a run under {}/ \
                         (what `sluice demo` fills). Run `sluice demo` first, or give --landing DIR or --config FILE",
                        locate::SERVE_DATA_DIR,
                        locate::DEMO_ROOT
                    );
                };
                let dir = found.dir.join("landing");
                eprintln!("reading {} ({}); --landing or --config reads another", dir.display(), found.what);
                dir
            }
        };
        if !dir.is_dir() {
            anyhow::bail!("no landing directory at {}: give the one your config lands in, with --landing DIR or --config FILE", dir.display());
        }
        let store: Arc<dyn ObjectStore> = Arc::new(crate::store::local::LocalStore::new(&dir).with_context(|| format!("opening {}", dir.display()))?);
        Ok((Landing::Dir(dir), store))
    }
}

/// `sluice query "SELECT …"`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The SQL statement. Tables: every folder under tables/ (pin, geo, user, …),
    /// e.g. "SELECT category, count(*) FROM pin GROUP BY category ORDER BY 2 DESC".
    pub sql: String,
    #[command(flatten)]
    pub landing: LandingArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub async fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let (landing, _) = args.landing.open().await?;
    let (schema, batches) = report::query(&landing, &args.sql).await?;
    let bytes = output::to_bytes(args.format, &schema, &batches)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            eprintln!("{rows} rows written to {}", path.display());
        }
        None if args.format == Format::Parquet && std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            anyhow::bail!("Parquet is binary: give --output FILE or pipe the output");
        }
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `sluice report`: run the nine reports now, print them and write them.
#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub landing: LandingArgs,
    /// Print nothing but where the results went.
    #[arg(long, short)]
    pub quiet: bool,
}

pub async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let (landing, store) = args.landing.open().await?;
    let run_id = run::run_id_now();
    let started = std::time::Instant::now();
    let results = run::execute(&landing, &|done, total, name| {
        let bar: String = (0..total).map(|i| if i < done { '#' } else { '.' }).collect();
        eprint!("\rreports [{bar}] {done}/{total} {name:<48}");
        if done == total {
            eprintln!();
        }
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    if !args.quiet {
        for (i, r) in results.iter().enumerate() {
            println!("\n{}. {} ({})", i + 1, r.title, r.name);
            output::write(Format::Table, &r.schema, &r.batches, &mut std::io::stdout().lock())?;
        }
    }
    let keys = {
        let (store, run_id) = (store.clone(), run_id.clone());
        tokio::task::spawn_blocking(move || run::write(store.as_ref(), &run_id, &results)).await??
    };
    eprintln!(
        "{} reports in {seconds:.2} s; {} objects written under {}/reports/<name>/run={run_id}/",
        crate::report::definitions::all().len(),
        keys.len(),
        store.location(),
    );
    let summary = run::summary_key(&run_id);
    match &landing {
        Landing::Dir(dir) => {
            let path = std::path::absolute(dir.join(&summary)).unwrap_or_else(|_| dir.join(&summary));
            eprintln!("HTML summary with charts: file://{}", path.display());
        }
        Landing::Store(_) => eprintln!("HTML summary with charts: {}/{summary}", store.location()),
    }
    Ok(ExitCode::SUCCESS)
}
