//! Starting, replacing and stopping pipelines while the appliance runs.
//! Pipelines from the config file are fixed; pipelines created through the
//! admin API are kept in `<data_dir>/pipelines/<name>.json` and come back on restart.

use crate::config::Config;
use crate::log::EmbeddedLog;
use crate::pipeline::config::SourceKind;
use crate::pipeline::invalid::InvalidPipeline;
use crate::pipeline::manager::{ManageError, PipelineHandle, PipelineManager};
use crate::pipeline::output::{EmbeddedOutput, KafkaOutput, OutputConfig, OutputKind, OutputTopic};
use crate::pipeline::{self, PipelineConfig, PipelineControl, PipelineStats, StatsSnapshot, Supervisor};
use crate::runtime::registry::Registry;
use crate::source::Source;
use crate::source::embedded::EmbeddedSource;
use crate::source::kafka::{self, KafkaSource};
use crate::source::kinesis::{self, KinesisSource};
use crate::store::ObjectStore;
use crate::store::write_atomically;
use crate::sync::{lock, read, write};
use crate::telemetry;
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

pub struct Launcher {
    pub(crate) config: Config,
    pub(crate) log: Arc<EmbeddedLog>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) supervisor: Supervisor,
    handles: RwLock<BTreeMap<String, PipelineHandle>>,
    /// Serialises create/replace/delete.
    changing: Mutex<()>,
    /// The `[[transform]]` SQL stages as registered at start: name → content hash.
    config_sql: BTreeMap<String, String>,
}

impl Launcher {
    pub fn new(config: Config, log: Arc<EmbeddedLog>, registry: Arc<Registry>, store: Arc<dyn ObjectStore>) -> Self {
        Launcher {
            config,
            log,
            registry,
            store,
            supervisor: Supervisor::new(),
            handles: RwLock::new(BTreeMap::new()),
            changing: Mutex::new(()),
            config_sql: BTreeMap::new(),
        }
    }

    /// Register the config's `[[transform]]` SQL stages (the same text is the
    /// same version), once at start, before any pipeline launches.
    pub fn register_sql_stages(&mut self) -> anyhow::Result<()> {
        for stage in &self.config.sql_stages {
            let text = stage.text()?;
            let v = self.registry.upload(&stage.name, text.as_bytes()).with_context(|| format!("[[transform]] `{}`", stage.name))?;
            tracing::info!(transform = %v.name, version = %v.version, hash = %v.content_hash, "SQL stage from the config registered");
            self.config_sql.insert(v.name, v.content_hash);
        }
        Ok(())
    }

    fn saved_dir(&self) -> PathBuf {
        self.config.data_dir.join("pipelines")
    }

    /// The pipelines created through the API in earlier runs.
    pub fn saved(&self) -> anyhow::Result<Vec<PipelineConfig>> {
        let mut out = Vec::new();
        let dir = self.saved_dir();
        if !dir.exists() {
            return Ok(out);
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path)?;
            out.push(serde_json::from_slice(&bytes).with_context(|| format!("reading the saved pipeline {}", path.display()))?);
        }
        Ok(out)
    }

    /// Build a pipeline's control and workers and start them.
    pub fn launch(&self, p: &PipelineConfig) -> anyhow::Result<PipelineHandle> {
        check_sql_marks(&self.registry, p)?;
        let control = PipelineControl::load(&p.name, &p.stage_names(), self.registry.clone(), p.auto_rollback.clone(), &self.config.data_dir.join("state"))?;
        self.run_config_sql(p, &control)?;
        let resolved = with_sql_windows(&with_sql_join(p, &control)?, &control)?;
        let p = &resolved;
        let stages: Vec<(String, String)> = control.status().into_iter().map(|s| (s.active.name, s.active.version)).collect();
        telemetry::metrics().init_pipeline(&p.name, &stages);
        let stats = Arc::new(PipelineStats::default());
        let mut workers = Vec::new();
        // A keyed pipeline runs in parts linked by internal topics (the embedded log's, or Kafka's; see `pipeline::plan`):
        // routers → (join topic → join workers) → (repartition topic → windows workers).
        let default_partitions = self.config.log.partitions;
        let hops = match (self.config.source_of(p), &self.config.kafka) {
            // Kafka pipelines (and Kinesis ones where Kafka is configured) keep their internal
            // topics in Kafka, so several processes share them.
            (SourceKind::Kafka | SourceKind::Kinesis, Some(k)) => {
                let mut k = k.clone();
                k.start_from = kafka::StartFrom::Earliest;
                pipeline::repartition::Hops::Kafka(k)
            }
            _ => pipeline::repartition::Hops::Embedded(self.log.clone()),
        };
        let windows = p.aggregate.as_ref().map(|a| (hops.topic(&pipeline::repartition::topic_name(&p.name)), a.partitions.unwrap_or(default_partitions)));
        let join = p.join.as_ref().map(|j| (hops.topic(&pipeline::repartition::join_topic_name(&p.name)), j.partitions.unwrap_or(default_partitions)));
        let first_hop = join.clone().or_else(|| windows.clone());
        let mut sources: Vec<(pipeline::Part, Box<dyn Source>)> = Vec::new();
        for source in self.sources(p)? {
            let part = match &first_hop {
                Some((_, partitions)) => pipeline::Part::Router { hops: hops.clone(), partitions: *partitions },
                None => pipeline::Part::Whole,
            };
            sources.push((part, source));
        }
        // Each internal topic is created (with every partition writing to it announced) before its readers.
        let made = match &first_hop {
            Some((topic, partitions)) => self.open_hop(p, &hops, topic, *partitions, self.input_partitions(p))?,
            None => 0,
        };
        let mut windows_made = made;
        if let Some((topic, _)) = &join {
            // At zero from the start, so rates over them are defined before the first match.
            let m = telemetry::metrics();
            for c in [&m.join_matched, &m.join_expired, &m.join_duplicates, &m.join_over_budget] {
                c.with_label_values(&[&p.name]);
            }
            let into = windows.as_ref().map_or(default_partitions, |(_, n)| *n);
            for source in self.hop_readers(p, &hops, topic, made, "join")? {
                sources.push((pipeline::Part::Join { hops: hops.clone(), partitions: into }, source));
            }
            if let Some((windows_topic, windows_partitions)) = &windows {
                // The join workers are the windows' sources: one per join partition.
                let joins = (0..made).map(|k| crate::position::PartitionId { topic: Arc::from(topic.as_str()), partition: k }).collect();
                windows_made = self.open_hop(p, &hops, windows_topic, *windows_partitions, joins)?;
            }
        }
        if let Some((topic, _)) = &windows {
            for source in self.hop_readers(p, &hops, topic, windows_made, "windows")? {
                sources.push((pipeline::Part::Windows { shared: hops.shared() }, source));
            }
        }
        for (part, source) in sources {
            // The output topic gets the table's rows: the part that lands them writes it.
            let output = match p.output.as_ref().filter(|_| part.writes_table(p)) {
                Some(out) => {
                    // At zero from the start, so a rate over it is defined before the first roll.
                    telemetry::metrics().output_records.with_label_values(&[&p.name, &out.topic]);
                    Some(self.output_topic(p, out).with_context(|| format!("pipeline `{}`", p.name))?)
                }
                None => None,
            };
            workers.push(pipeline::build(p, part, control.clone(), source, self.store.clone(), stats.clone(), output)?);
        }
        // The table's spec is the windows' (the last workers) when the pipeline aggregates.
        let spec = workers.last().map(|w| w.spec.clone()).context("a pipeline has at least one worker")?;
        self.supervisor.start(workers)?;
        let handle = PipelineHandle { config: p.clone(), control, stats, spec };
        write(&self.handles).insert(p.name.clone(), handle.clone());
        Ok(handle)
    }

    /// The writer of a pipeline's output topic (one per worker).
    fn output_topic(&self, p: &PipelineConfig, out: &OutputConfig) -> anyhow::Result<Box<dyn OutputTopic>> {
        Ok(match self.config.output_of(p) {
            Some(OutputKind::Kafka) => {
                let kafka = self.config.kafka.as_ref().context("the pipeline's output goes to Kafka but [kafka] is missing")?;
                Box::new(KafkaOutput::new(kafka, &out.topic, &p.name)?)
            }
            _ => Box::new(EmbeddedOutput::new(self.log.clone(), &out.topic)?),
        })
    }

    /// Create a keyed pipeline's internal topic and announce every partition
    /// that writes to it (held by this process or not), so the next part waits
    /// for all of them; the topic's partition count. (On a thread of its own:
    /// the log's blocking append must not run on the async runtime.)
    fn open_hop(
        &self,
        p: &PipelineConfig,
        hops: &pipeline::repartition::Hops,
        topic: &str,
        partitions: u32,
        writers: Vec<crate::position::PartitionId>,
    ) -> anyhow::Result<u32> {
        let made = match hops {
            pipeline::repartition::Hops::Embedded(log) => log.ensure_topic(topic, partitions).map(|t| t.partitions),
            pipeline::repartition::Hops::Kafka(k) => kafka::ensure_topic(k, topic, partitions),
        }
        .with_context(|| format!("pipeline `{}`: creating its topic `{topic}`", p.name))?;
        if made != partitions {
            tracing::warn!(pipeline = %p.name, topic, partitions = made, configured = partitions, "the internal topic already exists with another partition count; using it as it is");
        }
        telemetry::metrics().repartition_records.with_label_values(&[&p.name, topic]);
        let writers: Vec<String> = writers.iter().map(|w| pipeline::output::writer(&p.name, w)).collect();
        std::thread::scope(|s| {
            s.spawn(|| pipeline::repartition::announce_on(hops, &p.name, topic, made, &writers, pipeline::watermark::SourceState::Active))
                .join()
                .map_err(|_| anyhow::anyhow!("announcing the partitions writing to `{topic}` panicked"))
        })??;
        Ok(made)
    }

    /// The workers' sources reading an internal topic of `partitions`
    /// partitions: shares of the embedded log's partitions, or members of the
    /// consumer group `<group_prefix><pipeline>-<part>`.
    fn hop_readers(
        &self,
        p: &PipelineConfig,
        hops: &pipeline::repartition::Hops,
        topic: &str,
        partitions: u32,
        part: &str,
    ) -> anyhow::Result<Vec<Box<dyn Source>>> {
        let mut out: Vec<Box<dyn Source>> = Vec::new();
        let n = pipeline::worker_count(p, partitions as usize);
        match hops {
            pipeline::repartition::Hops::Embedded(log) => {
                let reader = EmbeddedSource::new(log.clone(), p.name.clone(), vec![topic.to_owned()])?;
                for w in 0..n {
                    out.push(Box::new(reader.clone().assigned(w, n)));
                }
            }
            pipeline::repartition::Hops::Kafka(k) => {
                let group = k.group(&format!("{}-{part}", p.name));
                let host = hostname();
                for w in 0..n {
                    let client_id = format!("sluice-{host}-{}-{}-{part}-{w}", std::process::id(), p.name);
                    out.push(Box::new(KafkaSource::new(k, &group, &client_id, &[topic.to_owned()], self.store.clone())?));
                }
            }
        }
        Ok(out)
    }

    /// Every partition of a pipeline's input that is known now (Kinesis shards
    /// come and go: their routers announce the ones they hold).
    fn input_partitions(&self, p: &PipelineConfig) -> Vec<crate::position::PartitionId> {
        let counts: Vec<(String, u32)> = match self.config.source_of(p) {
            SourceKind::Embedded => p.topics.iter().filter_map(|t| self.log.topic(t)).map(|t| (t.name.to_string(), t.partitions)).collect(),
            SourceKind::Kafka => self.config.kafka.as_ref().and_then(|k| kafka::partitions_of(k, &p.topics)).unwrap_or_default(),
            SourceKind::Kinesis => Vec::new(),
        };
        counts.into_iter().flat_map(|(t, n)| (0..n).map(move |partition| crate::position::PartitionId { topic: Arc::from(t.as_str()), partition })).collect()
    }

    /// One source per worker thread of the pipeline.
    fn sources(&self, p: &PipelineConfig) -> anyhow::Result<Vec<Box<dyn Source>>> {
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        match self.config.source_of(p) {
            SourceKind::Embedded => {
                let reader = EmbeddedSource::new(self.log.clone(), p.name.clone(), p.topics.clone())?;
                let n = pipeline::worker_count(p, reader.partition_count());
                for w in 0..n {
                    sources.push(Box::new(reader.clone().assigned(w, n)));
                }
            }
            SourceKind::Kafka => {
                // Each worker is a member of the pipeline's consumer group; the
                // group shares the partitions among them and among other sluice processes.
                let kafka = self.config.kafka.as_ref().context("the pipeline reads Kafka but [kafka] is missing")?;
                let known = kafka::partition_count(kafka, &p.topics);
                let n = pipeline::worker_count(p, known.unwrap_or(usize::MAX));
                let host = hostname();
                for w in 0..n {
                    let client_id = format!("sluice-{host}-{}-{}-{w}", std::process::id(), p.name);
                    sources.push(Box::new(KafkaSource::new(kafka, &kafka.group(&p.name), &client_id, &p.topics, self.store.clone())?));
                }
            }
            SourceKind::Kinesis => {
                // Each worker holds leases on a share of the streams' shards;
                // other sluice processes with the same config share them too.
                let config = self.config.kinesis.as_ref().context("the pipeline reads Kinesis but [kinesis] is missing")?;
                let known = kinesis::open_shard_count(config, &p.topics);
                let n = pipeline::worker_count(p, known.unwrap_or(usize::MAX));
                let host = hostname();
                for w in 0..n {
                    let owner = format!("{host}-{}-{}-w{w}", std::process::id(), p.name);
                    sources.push(Box::new(KinesisSource::new(config, &p.name, owner, &p.topics, self.store.clone())?.starting_with(n)));
                }
            }
        }
        Ok(sources)
    }

    /// Every pipeline's stats, with the end offsets of embedded-log partitions
    /// read now (the workers only see them when they next read), so a lag of 0
    /// means everything stored so far is landed.
    pub fn status(&self) -> BTreeMap<String, StatsSnapshot> {
        let mut out = BTreeMap::new();
        for (name, handle) in self.list() {
            let mut snap = handle.stats.snapshot();
            let internal = [pipeline::repartition::topic_name(&name), pipeline::repartition::join_topic_name(&name)];
            // (On Kafka the internal topics carry the group prefix; their lag comes from the workers.)
            let embedded = self.config.source_of(&handle.config) == SourceKind::Embedded;
            for p in snap.partitions.iter_mut().filter(|p| embedded || internal.contains(&p.topic)) {
                if let Some(end) = self.log.end_offset(&p.topic, p.partition) {
                    p.end = Some(end);
                    p.lag = Some(end.saturating_sub(p.committed));
                }
            }
            out.insert(name, snap);
        }
        out
    }

    /// Wait until every pipeline has no lag (see [`Launcher::status`]), or `timeout` passes.
    pub fn wait_caught_up(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let caught_up = self.status().values().all(|s| !s.partitions.is_empty() && s.partitions.iter().all(|p| p.lag == Some(0)));
            if caught_up {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// A SQL stage defined in the config file (`[[transform]]`) runs the text
    /// the file has now: when it changed since the last start, the new version
    /// is activated (recorded as a swap; the old one stays in the history for a rollback).
    fn run_config_sql(&self, p: &PipelineConfig, control: &PipelineControl) -> anyhow::Result<()> {
        for (i, name) in p.stage_names().iter().enumerate() {
            let Some(hash) = self.config_sql.get(name) else { continue };
            match control.activate(i, None, hash) {
                Ok(_) => tracing::info!(pipeline = %p.name, stage = i, transform = %name, "the config's SQL text changed: its new version is active"),
                Err(crate::pipeline::control::ControlError::AlreadyActive(_)) => {}
                Err(e) => return Err(anyhow::anyhow!("pipeline `{}`, stage {i} (`{name}`): running the config's SQL text: {e}", p.name)),
            }
        }
        Ok(())
    }

    fn declared_in_file(&self, name: &str) -> bool {
        self.config.pipelines.iter().any(|p| p.name == name)
    }

    /// The config as it would be with `p` in place of any pipeline of its name.
    fn check(&self, p: &PipelineConfig) -> Result<(), ManageError> {
        let mut whole = self.config.clone();
        let others: Vec<PipelineConfig> = self.list().into_iter().map(|(_, h)| h.config).filter(|c| c.name != p.name).collect();
        whole.pipelines = others;
        whole.pipelines.push(p.clone());
        whole.validate().map_err(ManageError::Invalid)?;
        for t in &p.stage_names() {
            self.registry.versions(t).map_err(|e| ManageError::Invalid(format!("pipeline `{}`: {e}", p.name)))?;
        }
        check_sql_marks(&self.registry, p).map_err(|e| ManageError::Invalid(e.to_string()))
    }

    fn save(&self, p: &PipelineConfig) -> Result<(), ManageError> {
        let dir = self.saved_dir();
        std::fs::create_dir_all(&dir)?;
        let bytes = serde_json::to_vec_pretty(p).map_err(|e| ManageError::Internal(e.to_string()))?;
        write_atomically(&dir.join(format!("{}.json", p.name)), &bytes)?;
        Ok(())
    }

    fn stop(&self, name: &str) -> Result<(), ManageError> {
        self.supervisor.stop(name).map_err(ManageError::from)?;
        write(&self.handles).remove(name);
        Ok(())
    }
}

impl PipelineManager for Launcher {
    fn list(&self) -> Vec<(String, PipelineHandle)> {
        read(&self.handles).iter().map(|(n, h)| (n.clone(), h.clone())).collect()
    }

    fn get(&self, name: &str) -> Option<PipelineHandle> {
        read(&self.handles).get(name).cloned()
    }

    fn create(&self, p: PipelineConfig) -> Result<PipelineHandle, ManageError> {
        let _one_at_a_time = lock(&self.changing);
        if self.get(&p.name).is_some() {
            return Err(ManageError::Conflict(format!("pipeline `{}` already exists; PUT /api/v1/pipelines/{} replaces it", p.name, p.name)));
        }
        self.check(&p)?;
        // Kept only once it runs: a definition that cannot start must not come back at the next start.
        let handle = self.launch(&p).map_err(launch_error)?;
        if let Err(e) = self.save(&p) {
            self.stop(&p.name)?;
            return Err(e);
        }
        tracing::info!(pipeline = %p.name, "pipeline created through the admin API");
        Ok(handle)
    }

    fn replace(&self, p: PipelineConfig) -> Result<PipelineHandle, ManageError> {
        let _one_at_a_time = lock(&self.changing);
        if self.declared_in_file(&p.name) {
            return Err(ManageError::Conflict(format!("pipeline `{}` is defined in the config file; change it there", p.name)));
        }
        self.check(&p)?;
        let old = self.get(&p.name).map(|h| h.config);
        self.stop(&p.name)?;
        // The new definition is kept only once it runs; if it cannot start,
        // the old one starts again from where it stopped.
        let started = self.launch(&p).map_err(launch_error).and_then(|handle| match self.save(&p) {
            Ok(()) => Ok(handle),
            Err(e) => self.stop(&p.name).and(Err(e)),
        });
        let handle = match (started, old) {
            (Ok(handle), _) => handle,
            (Err(e), Some(old)) => {
                if let Err(again) = self.launch(&old) {
                    tracing::error!(pipeline = %p.name, error = %format!("{again:#}"), "the previous definition did not start again either");
                }
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        };
        tracing::info!(pipeline = %p.name, "pipeline replaced through the admin API");
        Ok(handle)
    }

    fn delete(&self, name: &str) -> Result<(), ManageError> {
        let _one_at_a_time = lock(&self.changing);
        if self.declared_in_file(name) {
            return Err(ManageError::Conflict(format!("pipeline `{name}` is defined in the config file; remove it there")));
        }
        self.stop(name)?;
        match std::fs::remove_file(self.saved_dir().join(format!("{name}.json"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        tracing::info!(pipeline = %name, "pipeline deleted through the admin API");
        Ok(())
    }
}

/// Why a pipeline did not start: the definition's fault (answered 422, with
/// what to change) or the appliance's (answered 500).
fn launch_error(e: anyhow::Error) -> ManageError {
    if pipeline::invalid::is_invalid(&e) { ManageError::Invalid(format!("{e:#}")) } else { ManageError::from(e) }
}

/// Names of the pipelines a launcher runs (for start-up checks).
pub fn names(ps: &[PipelineConfig]) -> BTreeSet<&str> {
    ps.iter().map(|p| p.name.as_str()).collect()
}

/// This machine's name, for Kafka client ids (visible in the brokers' group listings).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into())
}

/// A transform marked `sql:` must be a SQL stage (its versions are SQL statements).
fn check_sql_marks(registry: &Registry, p: &PipelineConfig) -> Result<(), InvalidPipeline> {
    for name in p.sql_marked() {
        let v = registry.default_version(name).map_err(|e| InvalidPipeline(format!("pipeline `{}`: `sql:{name}`: {e}", p.name)))?;
        if v.contract != crate::runtime::Contract::Sql {
            return Err(InvalidPipeline(format!(
                "pipeline `{}`: `sql:{name}` is marked a SQL stage, but `{name}` is a WebAssembly component (contract {}); drop the `sql:` or name a SQL stage",
                p.name,
                v.contract.as_str()
            )));
        }
    }
    Ok(())
}

/// A windowed SQL statement as the aggregate brings the pipeline its window
/// (time field, size, slide) and keys; a component aggregate needs them in the config.
fn with_sql_windows(p: &PipelineConfig, control: &PipelineControl) -> Result<PipelineConfig, InvalidPipeline> {
    let Some(a) = &p.aggregate else { return Ok(p.clone()) };
    let (_, stages) = control.chain();
    let statement = stages.last().and_then(|s| s.sql_windows().cloned());
    let filled = match statement {
        Some(s) => a.with_statement(&s.window.time_field, s.window.size_ms, s.window.slide_ms, &s.group_by),
        None if a.from_statement() => {
            Err(format!("aggregate `{}` is a component: give aggregate.time_field and aggregate.window_ms (a windowed SQL statement brings its own)", a.name))
        }
        None => return Ok(p.clone()),
    };
    let filled = filled.map_err(|e| InvalidPipeline(format!("pipeline `{}`: {e}", p.name)))?;
    Ok(PipelineConfig { aggregate: Some(filled), ..p.clone() })
}

/// A SQL statement whose FROM joins topics, as the pipeline's first stage,
/// brings the pipeline its join (the join runs before every stage).
fn with_sql_join(p: &PipelineConfig, control: &PipelineControl) -> Result<PipelineConfig, InvalidPipeline> {
    let invalid = |e: String| InvalidPipeline(format!("pipeline `{}`: {e}", p.name));
    let (_, stages) = control.chain();
    let joins: Vec<(usize, crate::runtime::sql::JoinSpec)> = stages.iter().enumerate().filter_map(|(i, s)| s.sql_join().map(|j| (i, j.clone()))).collect();
    match joins.as_slice() {
        [] if p.join.as_ref().is_some_and(|j| j.inputs.is_empty()) => {
            Err(invalid("[pipeline.join] names no inputs, and no SQL statement of the pipeline joins (FROM … JOIN …)".into()))
        }
        [] => Ok(p.clone()),
        [(0, spec)] => {
            let sides: Vec<(String, String, String)> = spec.sides.iter().map(|s| (s.topic.clone(), s.name.clone(), s.key.clone())).collect();
            let join = p.join.clone().unwrap_or_default().with_statement(&sides, spec.left, &spec.key_as, &p.topics).map_err(invalid)?;
            Ok(PipelineConfig { join: Some(join), ..p.clone() })
        }
        _ => Err(invalid("only the pipeline's first stage may join (FROM … JOIN …): the join runs before every stage".into())),
    }
}
