//! `sluice serve` and `sluice check-config`.

use crate::app::RunningApp;
use crate::config::Config;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The config file (see README "Configuration"). Without it, nothing is configured to run.
    #[arg(long, short, env = "SLUICE_CONFIG")]
    config: PathBuf,
    /// Override `server.listen`, e.g. 0.0.0.0:8080.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(&args.config)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let app = RunningApp::start(&config).await?;
    eprintln!("sluice listening on {} — landing in {}; Ctrl-C stops it after landing what it holds", app.base_url(), app.store.location());
    wait_for_signal().await?;
    eprintln!("stopping: ingest closed, landing and committing what is in flight…");
    app.shutdown().await?;
    eprintln!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM (what systemd, Kubernetes and `docker stop` send).
pub async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

pub fn check_config(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = Config::load(&path)?;
    // The environment's tokens too: this runs where the service runs (systemd's ExecStartPre).
    config.server.tokens(&config.data_dir, |var| std::env::var_os(var)).map_err(anyhow::Error::msg)?;
    println!(
        "{}: valid — {} topic(s), {} pipeline(s), landing in {}",
        path.display(),
        config.log.topics.len(),
        config.pipelines.len(),
        config.landing_dir().display()
    );
    Ok(ExitCode::SUCCESS)
}
