//! The appliance assembled from its config: runtime, embedded log, landing
//! store, pipelines and the HTTP server, started in order and stopped in the
//! reverse order (ingest first, so nothing new arrives; pipelines land and
//! commit what they hold; the log closes last).

use crate::admin::{self, AdminState, PipelineHandle};
use crate::config::Config;
use crate::telemetry;
use crate::ingest::{self, IngestState};
use crate::pipeline::{self, PipelineControl, StatsSnapshot, Supervisor};
use crate::runtime::registry::Registry;
use crate::runtime::Runtime;
use crate::sink::local::LocalStore;
use crate::sink::ObjectStore;
use crate::source::embedded::{EmbeddedLog, EmbeddedSource};
use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct RunningApp {
    pub addr: SocketAddr,
    /// The admin API's bearer token.
    pub admin_token: Arc<str>,
    pub log: Arc<EmbeddedLog>,
    pub store: Arc<LocalStore>,
    supervisor: Option<Supervisor>,
    server_stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    retention: tokio::task::JoinHandle<()>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
}

/// The admin token kept at `path`, created (random, owner-only) on first use.
fn generated_token(path: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        if t.trim().len() >= 16 {
            return Ok(t.trim().to_owned());
        }
    }
    use rand::TryRngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the admin token: {e}"))?;
    let token = hex::encode(bytes);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).with_context(|| format!("writing {}", path.display()))?;
        f.write_all(token.as_bytes())?;
    }
    tracing::info!(path = %path.display(), "generated an admin API token (set server.admin_token or SLUICE_ADMIN_TOKEN to choose one)");
    Ok(token)
}

/// How often old records are removed from the embedded log.
const RETENTION_INTERVAL: Duration = Duration::from_secs(300);

fn spawn_retention(log: Arc<EmbeddedLog>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        loop {
            tick.tick().await;
            let log = log.clone();
            match tokio::task::spawn_blocking(move || log.enforce_retention()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(batches = n, "retention removed old batches from the embedded log"),
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "retention failed; will try again"),
                Err(e) => tracing::warn!(error = %e, "retention task failed"),
            }
        }
    })
}

impl RunningApp {
    /// Start everything the config describes. Call from inside a tokio runtime.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
        let runtime = Runtime::new(config.sandbox.clone(), Some(config.data_dir.join("compiled")))?;
        let log = EmbeddedLog::open(&config.data_dir.join("log.redb"), &config.log)?;
        let store = Arc::new(LocalStore::new(config.landing_dir()).with_context(|| format!("creating the landing directory {}", config.landing_dir().display()))?);
        let cleaned = store.clean_incomplete().context("cleaning up unfinished objects")?;
        if cleaned > 0 {
            tracing::info!(objects = cleaned, "removed objects left unfinished by the previous run");
        }
        let mut workers = Vec::new();
        let registry = Arc::new(Registry::open(runtime.clone(), config.data_dir.join("transforms"))?);
        let mut controls = BTreeMap::new();
        let mut specs = Vec::new();
        for p in &config.pipelines {
            let control = PipelineControl::load(&p.name, &p.transforms, registry.clone(), p.auto_rollback.clone(), &config.data_dir.join("state"))?;
            let stages: Vec<(String, String)> = control.status().into_iter().map(|s| (s.active.name, s.active.version)).collect();
            telemetry::metrics().init_pipeline(&p.name, &stages);
            controls.insert(p.name.clone(), control.clone());
            let mut spec = None;
            let stats = Arc::new(pipeline::PipelineStats::default());
            let partitions = EmbeddedSource::new(log.clone(), p.name.clone(), p.topics.clone())?.partition_count();
            let n = pipeline::worker_count(p, partitions);
            for w in 0..n {
                let source = EmbeddedSource::new(log.clone(), p.name.clone(), p.topics.clone())?.assigned(w, n);
                let dyn_store: Arc<dyn ObjectStore> = store.clone();
                let worker = pipeline::build(p, control.clone(), Box::new(source), dyn_store, stats.clone())?;
                spec = Some(worker.spec.clone());
                workers.push(worker);
            }
            specs.push((p.name.clone(), spec.expect("at least one worker per pipeline")));
        }
        let supervisor = Supervisor::start(workers)?;
        let stats = supervisor.stats();
        let retention = spawn_retention(log.clone());

        let server = config.server.clone().with_env();
        let admin_token: Arc<str> = match &server.admin_token {
            Some(t) => Arc::from(t.as_str()),
            None => Arc::from(generated_token(&config.data_dir.join("admin.token"))?.as_str()),
        };
        let mut handles = BTreeMap::new();
        for w in &specs {
            let (name, spec) = w;
            let p = config.pipelines.iter().find(|p| &p.name == name).expect("spec of a configured pipeline");
            handles.insert(
                name.clone(),
                PipelineHandle { config: p.clone(), control: controls[name].clone(), stats: stats[name].clone(), spec: spec.clone() },
            );
        }
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let admin_state = Arc::new(AdminState { registry: registry.clone(), pipelines: handles, store: dyn_store });
        let mut ingest_routes = ingest::router(IngestState::new(log.clone(), config.ingest.clone()));
        if let Some(t) = &server.ingest_token {
            ingest_routes = ingest_routes.layer(axum::middleware::from_fn_with_state(Arc::<str>::from(t.as_str()), crate::admin::require_token));
        }
        let mut page = admin::status_page(admin_state.clone());
        if !server.public_status_page {
            page = page.layer(axum::middleware::from_fn_with_state(admin_token.clone(), crate::admin::require_token));
        }
        let mut metrics_route = Router::new().route("/metrics", get(telemetry::metrics::handler));
        if !server.public_metrics {
            metrics_route = metrics_route.layer(axum::middleware::from_fn_with_state(admin_token.clone(), crate::admin::require_token));
        }
        let metrics_server = match server.metrics_listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr} (server.metrics_listen)"))?;
                let only_metrics = Router::new().route("/metrics", get(telemetry::metrics::handler));
                Some(tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, only_metrics).await {
                        tracing::error!(error = %e, "the metrics listener failed");
                    }
                }))
            }
            None => None,
        };

        let app = Router::new()
            .merge(ingest_routes)
            .merge(page)
            .merge(metrics_route)
            .merge(admin::router(admin_state, admin_token.clone()))
            .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
            .route(
                "/status",
                get(move || {
                    let snap: BTreeMap<String, StatsSnapshot> = stats.iter().map(|(n, s)| (n.clone(), s.snapshot())).collect();
                    async move { Json(snap) }
                }),
            );
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("listening on {} (server.listen)", config.server.listen))?;
        let addr = listener.local_addr()?;
        let (server_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
        });
        tracing::info!(%addr, landing = %store.location(), "sluice is running");
        Ok(RunningApp { addr, admin_token, log, store, supervisor: Some(supervisor), server_stop, server, retention, metrics_server })
    }

    pub fn supervisor(&self) -> &Supervisor {
        self.supervisor.as_ref().expect("present until shutdown")
    }

    /// Wait until every pipeline has landed everything the log holds now.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let sup = self.supervisor();
        tokio::task::block_in_place(|| sup.wait_caught_up(timeout))
    }

    pub fn snapshot(&self) -> BTreeMap<String, StatsSnapshot> {
        self.supervisor().stats().iter().map(|(n, s)| (n.clone(), s.snapshot())).collect()
    }

    /// Ordered shutdown: stop ingest, let pipelines land and commit, close the log.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.retention.abort();
        if let Some(m) = &self.metrics_server {
            m.abort();
        }
        let _ = self.server_stop.send(());
        match tokio::time::timeout(Duration::from_secs(10), &mut self.server).await {
            Ok(r) => r.context("the HTTP server task failed")?.context("the HTTP server failed")?,
            Err(_) => tracing::warn!("HTTP connections still open after 10 s; closing them"),
        }
        if let Some(sup) = self.supervisor.take() {
            tokio::task::spawn_blocking(move || sup.shutdown()).await.context("joining the pipelines")??;
        }
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.close()).await?;
        Ok(())
    }
}
