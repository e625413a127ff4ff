//! The appliance assembled from its config: runtime, embedded log, landing
//! store, pipelines and the HTTP server, started in order and stopped in the
//! reverse order (ingest first, so nothing new arrives; pipelines land and
//! commit what they hold; the log closes last).

mod health;
mod launcher;
mod tls;

pub use launcher::Launcher;

use crate::admin::{self, AdminState};
use crate::config::{Config, tokens};
use crate::consume::{self, ConsumeFrom, ConsumeState, EmbeddedGroups, KafkaGroups, KinesisReads};
use crate::ingest::{self, IngestState};
use crate::ingest::{KafkaProducer, KinesisProducer};
use crate::jobs::tables::{DeltaTablesJob, Upkeep};
use crate::jobs::{JobRunner, RetentionJob};
use crate::log::EmbeddedLog;
use crate::pipeline::manager::PipelineManager;
use crate::pipeline::{StatsSnapshot, Supervisor};
use crate::report::job::{BackfillJob, ReportJob};
use crate::runtime::Runtime;
use crate::runtime::registry::Registry;
use crate::store::ObjectStore;
use crate::store::local::LocalStore;
use crate::store::s3::S3Store;
use crate::telemetry;
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct RunningApp {
    pub addr: SocketAddr,
    /// Whether the listener speaks HTTPS (`[server.tls]`).
    pub https: bool,
    /// The admin API's bearer token.
    pub admin_token: Arc<str>,
    pub log: Arc<EmbeddedLog>,
    pub store: Arc<dyn ObjectStore>,
    launcher: Arc<Launcher>,
    server_stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Reloads the TLS certificate on SIGHUP (with `[server.tls]` only: without
    /// it SIGHUP keeps its default meaning).
    certificate_reload: Option<tokio::task::JoinHandle<()>>,
    retention: tokio::task::JoinHandle<()>,
    schedule: Vec<tokio::task::JoinHandle<()>>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
    consume_expiry: tokio::task::JoinHandle<()>,
    destination: ingest::Destination,
}

/// The admin token kept at `path`, created (random, owner-only) when the file
/// is missing or empty; a file holding a token that breaks the rule is refused.
fn generated_token(path: &std::path::Path) -> anyhow::Result<String> {
    if let Some(token) = tokens::from_file(path).map_err(anyhow::Error::msg)? {
        return Ok(token);
    }
    use rand::TryRngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the admin token: {e}"))?;
    let token = hex::encode(bytes);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(token.as_bytes())?;
    }
    tracing::info!(path = %path.display(), "generated an admin API token (set server.admin_token or SLUICE_ADMIN_TOKEN to choose one)");
    Ok(token)
}

/// How often old records are removed from the embedded log.
const RETENTION_INTERVAL: Duration = Duration::from_secs(300);
/// How often the log's disk is looked at: the `sluice_log_*` gauges, and a
/// reopen after an I/O error even while nothing reads or appends.
const STORAGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The embedded log's upkeep: its storage checked every second, retention every five minutes.
fn spawn_log_upkeep(log: Arc<EmbeddedLog>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STORAGE_CHECK_INTERVAL);
        let mut last_retention: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            let checked = log.clone();
            // A reopen may repair the file: blocking work, off the async threads.
            if let Err(e) = tokio::task::spawn_blocking(move || checked.check_storage()).await {
                tracing::warn!(error = %e, "the log's storage check failed");
            }
            if last_retention.is_some_and(|t| t.elapsed() < RETENTION_INTERVAL) {
                continue;
            }
            last_retention = Some(tokio::time::Instant::now());
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

/// Where ingest writes: the embedded log, or Kafka or Kinesis through a producer.
async fn ingest_destination(config: &Config, log: &Arc<EmbeddedLog>) -> anyhow::Result<ingest::Destination> {
    Ok(match config.ingest_destination() {
        ingest::DestinationKind::Embedded => ingest::Destination::Embedded(log.clone()),
        ingest::DestinationKind::Kafka => {
            let kafka = config.kafka.as_ref().context("ingest.destination is kafka but [kafka] is missing")?;
            ingest::Destination::Kafka(Arc::new(KafkaProducer::new(kafka)?))
        }
        ingest::DestinationKind::Kinesis => {
            let kinesis = config.kinesis.as_ref().context("ingest.destination is kinesis but [kinesis] is missing")?;
            ingest::Destination::Kinesis(Arc::new(KinesisProducer::new(kinesis).await))
        }
    })
}

/// What the consumer API reads: consumer groups of the embedded log or of
/// Kafka, and Kinesis reads from wherever the Kinesis shapes write.
fn consume_state(config: &Config, log: &Arc<EmbeddedLog>, destination: &ingest::Destination) -> anyhow::Result<Arc<ConsumeState>> {
    let idle = Duration::from_millis(config.consume.instance_timeout_ms);
    let groups: Arc<dyn consume::Groups> = match config.consume_from() {
        ConsumeFrom::Embedded => Arc::new(EmbeddedGroups::open(log.clone(), idle).context("loading the HTTP consumer instances")?),
        ConsumeFrom::Kafka => Arc::new(KafkaGroups::new(config.kafka.clone().context("consume.from is kafka but [kafka] is missing")?, idle)),
    };
    let kinesis = match destination {
        ingest::Destination::Kinesis(producer) => KinesisReads::Kinesis(producer.client().clone()),
        _ => KinesisReads::Embedded(log.clone()),
    };
    Ok(ConsumeState::new(groups, kinesis, config.consume.clone()))
}

/// The jobs an operator can run: log retention, the reports, backfill, Delta tables' upkeep.
fn job_runner(
    config: &Config,
    log: &Arc<EmbeddedLog>,
    store: &Arc<dyn ObjectStore>,
    registry: &Arc<Registry>,
    manager: &Arc<dyn PipelineManager>,
) -> JobRunner {
    let mut jobs = JobRunner::new();
    jobs.register("retention", Arc::new(RetentionJob(log.clone())));
    let local_dir = config.landing.s3.is_none().then(|| config.landing_dir());
    jobs.register("reports", Arc::new(ReportJob::new(store.clone(), local_dir)));
    jobs.register("backfill", Arc::new(BackfillJob { store: store.clone(), registry: registry.clone(), pipelines: manager.clone() }));
    for (name, upkeep) in [("compact", Upkeep::Compact), ("vacuum", Upkeep::Vacuum)] {
        jobs.register(name, Arc::new(DeltaTablesJob { upkeep, store: store.clone(), pipelines: manager.clone() }));
    }
    jobs
}

impl RunningApp {
    /// Start everything the config describes. Call from inside a tokio runtime.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        // Before anything starts: a token or certificate refused here must not leave pipelines running.
        let chosen = config.server.tokens(&config.data_dir, |var| std::env::var_os(var)).map_err(anyhow::Error::msg)?;
        let certificate = config.server.tls.as_ref().map(tls::ServerCertificate::load).transpose()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
        let runtime = Runtime::new(config.sandbox.clone(), Some(config.data_dir.join("compiled")))?;
        let log = EmbeddedLog::open(&config.data_dir.join("log.redb"), &config.log)?;
        let store: Arc<dyn ObjectStore> = match &config.landing.s3 {
            Some(s3) => Arc::new(S3Store::new(s3.clone(), tokio::runtime::Handle::current()).await?),
            None => {
                Arc::new(LocalStore::new(config.landing_dir()).with_context(|| format!("creating the landing directory {}", config.landing_dir().display()))?)
            }
        };
        let cleaning = store.clone();
        let cleaned = tokio::task::spawn_blocking(move || cleaning.clean_incomplete()).await?.context("cleaning up unfinished objects")?;
        if cleaned > 0 {
            tracing::info!(objects = cleaned, "removed objects left unfinished by the previous run");
        }
        let registry = Arc::new(Registry::open(runtime.clone(), config.data_dir.join("transforms"))?);
        let mut launcher = Launcher::new(config.clone(), log.clone(), registry.clone(), store.clone());
        launcher.register_sql_stages()?;
        let launcher = Arc::new(launcher);
        let saved = launcher.saved()?;
        for p in config.pipelines.iter().chain(saved.iter().filter(|s| !launcher::names(&config.pipelines).contains(s.name.as_str()))) {
            launcher.launch(p).with_context(|| format!("starting pipeline `{}`", p.name))?;
        }
        let retention = spawn_log_upkeep(log.clone());

        let server = &config.server;
        let admin_token: Arc<str> = match &chosen.admin {
            Some(t) => Arc::from(t.as_str()),
            None => Arc::from(generated_token(&config.data_dir.join(tokens::ADMIN_TOKEN_FILE))?.as_str()),
        };
        let dyn_store = store.clone();
        let manager: Arc<dyn PipelineManager> = launcher.clone();
        let jobs = Arc::new(job_runner(config, &log, &store, &registry, &manager));
        let schedule = crate::jobs::schedule::spawn(jobs.clone(), &config.jobs);
        let admin_state = Arc::new(AdminState { registry: registry.clone(), pipelines: manager, store: dyn_store, jobs, log: Some(log.clone()) });
        let destination = ingest_destination(config, &log).await?;
        let consumers = consume_state(config, &log, &destination)?;
        let consume_expiry = consume::spawn_expiry(consumers.clone());
        // Producing and consuming share the token rules: open, or the ingest token.
        let mut ingest_routes = ingest::router(IngestState::new(destination.clone(), config.ingest.clone())).merge(consume::router(consumers));
        if let Some(t) = &chosen.ingest {
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
            .merge(health::routes(launcher.clone()));
        let listener =
            tokio::net::TcpListener::bind(config.server.listen).await.with_context(|| format!("listening on {} (server.listen)", config.server.listen))?;
        let addr = listener.local_addr()?;
        let (server_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let (server, certificate_reload) = match certificate {
            Some(certificate) => {
                let reload = tls::reload_on_sighup(certificate.clone())?;
                let listener = tls::TlsListener::new(listener, certificate)?;
                (tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await }), Some(reload))
            }
            None => (tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await }), None),
        };
        let https = certificate_reload.is_some();
        tracing::info!(%addr, https, landing = %store.location(), "sluice is running");
        Ok(RunningApp {
            addr,
            https,
            admin_token,
            log,
            store,
            launcher,
            server_stop,
            server,
            certificate_reload,
            retention,
            schedule,
            metrics_server,
            consume_expiry,
            destination,
        })
    }

    /// Where clients reach the listener: `http://…` or `https://…`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.addr)
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.launcher.supervisor
    }

    /// Wait until every pipeline has landed everything the log holds now.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let launcher = self.launcher.clone();
        tokio::task::block_in_place(|| launcher.wait_caught_up(timeout))
    }

    pub fn snapshot(&self) -> BTreeMap<String, StatsSnapshot> {
        self.launcher.status()
    }

    /// Ordered shutdown: stop ingest, let pipelines land and commit, close the log.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.retention.abort();
        self.consume_expiry.abort();
        self.schedule.iter().for_each(|t| t.abort());
        if let Some(m) = &self.metrics_server {
            m.abort();
        }
        if let Some(r) = &self.certificate_reload {
            r.abort();
        }
        let _ = self.server_stop.send(());
        match tokio::time::timeout(Duration::from_secs(10), &mut self.server).await {
            Ok(r) => r.context("the HTTP server task failed")?.context("the HTTP server failed")?,
            Err(_) => tracing::warn!("HTTP connections still open after 10 s; closing them"),
        }
        if let ingest::Destination::Kafka(producer) = &self.destination {
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await?;
        }
        let launcher = self.launcher.clone();
        tokio::task::spawn_blocking(move || launcher.supervisor.shutdown()).await.context("joining the pipelines")??;
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.close()).await?;
        Ok(())
    }
}
