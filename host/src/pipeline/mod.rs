//! Pipelines: source → transform chain → sinks, with checkpoints, dead letters
//! and supervision. Each pipeline runs on a thread of its own; the Wasm calls
//! and file writes it makes are synchronous and CPU-bound.

pub mod action;
pub mod aggregate;
pub mod chain;
pub mod config;
pub mod control;
pub mod dead_letters;
pub mod events;
pub mod join;
pub mod land;
pub mod manager;
pub mod output;
pub mod repartition;
pub mod shadow;
pub mod stats;
pub mod worker;

pub use config::PipelineConfig;
pub use control::PipelineControl;
pub use stats::{PipelineState, PipelineStats, StatsSnapshot};
pub use worker::{PipelineWorker, StopFlag};

use crate::sink::delta::DeltaSink;
use crate::sink::{SegmentSpec, TableSpec, schema};

use crate::source::Source;
use crate::store::ObjectStore;
use crate::sync::lock;
use anyhow::Context;
use chain::Chain;
use config::TableFormat;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Which part of a pipeline a worker runs. A keyed pipeline (an aggregate,
/// a join) runs in parts linked by topics of the embedded log, each keyed so
/// that the next part owns whole keys.
pub enum Part {
    /// Everything: a pipeline without an aggregate or a join.
    Whole,
    /// A keyed pipeline's first part, reading its topics: the raw landing,
    /// and the move of each record into the join topic (keyed by side and
    /// join key) or, without a join, through the transforms into the
    /// repartition topic (keyed by group key). `partitions`: of that topic.
    Router { hops: repartition::Hops, partitions: u32 },
    /// A join's part, reading the join topic: the join, then the transforms
    /// on the joined rows, then the table, or the repartition topic
    /// (`partitions` partitions) when the pipeline aggregates too.
    Join { hops: repartition::Hops, partitions: u32 },
    /// An aggregating pipeline's last part, reading the repartition topic:
    /// the windows, the table. `shared`: its partitions may be owned by
    /// several processes in turn (Kafka), so the state goes to the landing store.
    Windows { shared: bool },
}

impl Part {
    fn name(&self) -> &'static str {
        match self {
            Part::Whole => "whole",
            Part::Router { .. } => "router",
            Part::Join { .. } => "join",
            Part::Windows { .. } => "windows",
        }
    }
}

/// Resolve a pipeline's config into a runnable worker. Workers of one
/// pipeline share `stats` and `control`.
pub fn build(
    config: &PipelineConfig,
    part: Part,
    control: Arc<PipelineControl>,
    source: Box<dyn Source>,
    store: Arc<dyn ObjectStore>,
    stats: Arc<PipelineStats>,
) -> anyhow::Result<PipelineWorker> {
    let (generation, stages) = control.chain();
    let (mut transforms, mut aggregate) = aggregate::split_stages(stages, config.aggregate.is_some());
    let (keyed, joins) = (config.aggregate.is_some() || config.join.is_some(), config.join.is_some());
    let mut repartition = None;
    let mut join = None;
    let into_windows = |hops: &repartition::Hops, partitions: u32| -> anyhow::Result<Option<repartition::Repartition>> {
        config
            .aggregate
            .as_ref()
            .map(|a| {
                let topic = hops.topic(&repartition::topic_name(&config.name));
                repartition::Repartition::new(hops, &config.name, topic, partitions, repartition::Keying::group(a), &config.watermark)
            })
            .transpose()
    };
    // Where keyed state is kept: the state directory, or the landing store when
    // the partitions may move between processes.
    let checkpoints = |what: &str, shared: bool| match shared {
        true => aggregate::checkpoint::Checkpoints::in_store(store.clone(), what, &config.name),
        false => aggregate::checkpoint::Checkpoints::under(control.state_dir(), what, &config.name),
    };
    let mut windows_shared = false;
    match (&part, &config.join) {
        (Part::Whole, _) if !keyed => {}
        (Part::Router { hops, partitions }, Some(j)) => {
            let topic = hops.topic(&repartition::join_topic_name(&config.name));
            repartition = Some(repartition::Repartition::new(hops, &config.name, topic, *partitions, repartition::Keying::join(j), &config.watermark)?);
            aggregate = None;
        }
        (Part::Router { hops, partitions }, None) if keyed => {
            repartition = into_windows(hops, *partitions)?;
            aggregate = None;
        }
        (Part::Join { hops, partitions }, Some(j)) => {
            join = Some(join::JoinStage::new(&config.name, j, checkpoints("joins", hops.shared()), hops.shared()));
            repartition = into_windows(hops, *partitions)?;
            aggregate = None;
        }
        (Part::Windows { shared }, _) if config.aggregate.is_some() => windows_shared = *shared,
        _ => anyhow::bail!("pipeline `{}`: a {} worker does not fit the pipeline's config", config.name, part.name()),
    }
    // A join's router moves its input untransformed (the transforms run on the joined rows);
    // the windows fold what was transformed before them.
    let runs_transforms = !matches!((&part, &config.join), (Part::Router { .. }, Some(_)) | (Part::Windows { .. }, _));
    if !runs_transforms {
        transforms.clear();
    }
    if let Some(t) = transforms.iter().find(|t| t.kind() != crate::runtime::ComponentKind::Transform) {
        anyhow::bail!(
            "pipeline `{}`: `{}` is an aggregate component; name it in `[pipeline.aggregate]`, not in `transforms`",
            config.name,
            t.descriptor().name
        );
    }
    let aggregate = match (&config.aggregate, aggregate) {
        (Some(a), Some(compiled)) => {
            Some(aggregate::AggregateStage::new(&config.name, a, compiled, checkpoints("aggregates", windows_shared), windows_shared)?)
        }
        _ => None,
    };
    let last_kind = match &aggregate {
        Some(a) => Some(a.output_kind().to_owned()),
        None => transforms.last().map(|x| x.descriptor().output_kind.clone()),
    };
    // Routers land the raw records and dead letters; the table is the last part's.
    let table = if repartition.is_some() { None } else { table_spec(config, last_kind)? };
    // Actions on records run where the records (or joined rows) are; actions on windows where they close.
    let only = match (&part, joins) {
        (Part::Whole, _) => Some(None),
        (Part::Router { .. }, false) | (Part::Join { .. }, true) => Some(Some(action::ActionInput::Records)),
        (Part::Windows { .. }, _) => Some(Some(action::ActionInput::Windows)),
        _ => None,
    };
    let actions = match only {
        Some(only) => {
            action::ActionStage::new(&config.name, &config.actions, config.aggregate.is_some(), only, control.registry(), control.state_dir(), &stats)?
        }
        None => None,
    };
    let land_raw = config.land_raw && matches!(part, Part::Whole | Part::Router { .. });
    let delta = match &table {
        Some(TableSpec { name, schema: Some(schema), partition_by, delta: Some(options), .. }) => {
            let native = store.native().with_context(|| {
                format!(
                    "pipeline `{}`: table `{name}` is a Delta table, which needs a local directory or S3 landing; {} is neither",
                    config.name,
                    store.location()
                )
            })?;
            Some(
                DeltaSink::open(&native, store.as_ref(), &config.name, name, schema, partition_by.is_some(), options)
                    .with_context(|| format!("pipeline `{}`", config.name))?,
            )
        }
        _ => None,
    };
    Ok(PipelineWorker {
        config: config.clone(),
        spec: SegmentSpec { pipeline: config.name.clone(), land_raw, table },
        source,
        chain: Chain::new(transforms),
        aggregate,
        generation,
        replay_chain: None,
        probe: None,
        shadow: None,
        actions,
        stopping: Default::default(),
        output: None,
        repartition,
        join,
        runs_transforms,
        delta,
        store,
        stats,
        control,
    })
}

/// Where a pipeline's output lands: the table named in its config, with the
/// schema its config or `last_kind` (the output kind of its last stage) gives.
pub fn table_spec(config: &PipelineConfig, last_kind: Option<String>) -> anyhow::Result<Option<TableSpec>> {
    Ok(match &config.table {
        None => None,
        Some(t) => {
            let kind = t.schema.clone().or(last_kind);
            let schema = match (&t.columns, &kind) {
                (Some(cols), _) => Some(schema::from_columns(cols)),
                (None, Some(kind)) => schema::builtin(kind),
                (None, None) => None,
            };
            let delta = t.formats.contains(&TableFormat::Delta).then(|| t.delta.clone().unwrap_or_default());
            let parquet = t.formats.contains(&TableFormat::Parquet) || delta.is_some();
            if schema.is_none() && (parquet || t.partition_by.is_some()) {
                anyhow::bail!(
                    "pipeline `{}`: table `{}` needs a schema for Parquet, Delta or partitioning; the output kind {:?} has no built-in one, so give table.columns",
                    config.name,
                    t.name,
                    kind.unwrap_or_default()
                );
            }
            if let (Some(col), Some(s)) = (&t.partition_by, &schema) {
                s.index_of(col).map_err(|_| anyhow::anyhow!("pipeline `{}`: table.partition_by `{col}` is not a column of the table", config.name))?;
            }
            Some(TableSpec {
                name: t.name.clone(),
                schema,
                parquet,
                jsonl: t.formats.contains(&TableFormat::Jsonl),
                partition_by: t.partition_by.clone(),
                delta,
            })
        }
    })
}

/// Worker threads for a pipeline over `partitions` partitions.
pub fn worker_count(config: &PipelineConfig, partitions: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    config.workers.unwrap_or_else(|| default_workers(cores, partitions)).clamp(1, partitions.max(1))
}

/// One worker per core, unless the partitions do not split evenly between them:
/// 3 partitions on 2 workers leave one worker with twice the work and a core idle
/// once the other is done (measured: 25–35% less throughput on 2 cores). Up to
/// twice as many workers as cores, one per partition is the better split: the
/// scheduler shares the cores evenly between them.
fn default_workers(cores: usize, partitions: usize) -> usize {
    let per_core = cores.min(partitions).max(1);
    if !partitions.is_multiple_of(per_core) && partitions <= 2 * cores { partitions } else { per_core }
}

/// Owns the pipeline threads: starts them, reports on them, stops them (one
/// pipeline, or all in order).
#[derive(Default)]
pub struct Supervisor {
    running: std::sync::Mutex<Vec<Running>>,
}

struct Running {
    name: String,
    stats: Arc<PipelineStats>,
    stop: StopFlag,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        lock(&self.running)
    }

    /// Start workers; the workers of one pipeline share a stop flag.
    pub fn start(&self, workers: Vec<PipelineWorker>) -> anyhow::Result<()> {
        let mut running = self.lock();
        let mut flags: BTreeMap<String, StopFlag> = BTreeMap::new();
        for w in workers {
            let name = w.config.name.clone();
            if !flags.contains_key(&name) && running.iter().any(|r| r.name == name) {
                anyhow::bail!("pipeline `{name}` is already running");
            }
            let flag = flags.entry(name.clone()).or_default().clone();
            let stats = w.stats.clone();
            let n = running.iter().filter(|r| r.name == name).count();
            let worker_flag = flag.clone();
            let handle = std::thread::Builder::new()
                .name(format!("pipeline-{name}-{n}"))
                .spawn(move || {
                    let stats = w.stats.clone();
                    let result = w.run(&worker_flag);
                    if let Err(e) = &result {
                        stats.set_error(format!("{e:#}"));
                        stats.set_state(PipelineState::Failed);
                        tracing::error!(error = %format!("{e:#}"), "pipeline failed");
                    }
                    result
                })
                .with_context(|| format!("starting pipeline `{name}`"))?;
            running.push(Running { name, stats, stop: flag, handle });
        }
        Ok(())
    }

    pub fn stats(&self) -> BTreeMap<String, Arc<PipelineStats>> {
        self.lock().iter().map(|r| (r.name.clone(), r.stats.clone())).collect()
    }

    /// Stop one pipeline (it lands what it holds and commits) and wait for it.
    pub fn stop(&self, name: &str) -> anyhow::Result<()> {
        let mine: Vec<Running> = {
            let mut running = self.lock();
            let (mine, rest) = std::mem::take(&mut *running).into_iter().partition(|r| r.name == name);
            *running = rest;
            mine
        };
        join_all(mine)
    }

    /// Ask every pipeline to land what it holds and stop; wait for them.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        let all = std::mem::take(&mut *self.lock());
        join_all(all)
    }
}

fn join_all(running: Vec<Running>) -> anyhow::Result<()> {
    for r in &running {
        r.stop.stop();
    }
    let mut failed = Vec::new();
    for r in running {
        match r.handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(format!("{}: {e:#}", r.name)),
            Err(_) => failed.push(format!("{}: the pipeline thread panicked", r.name)),
        }
    }
    if failed.is_empty() { Ok(()) } else { anyhow::bail!("pipelines failed: {}", failed.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::default_workers;

    #[test]
    fn default_workers_split_partitions_evenly() {
        // (cores, partitions) -> workers
        let cases = [((2, 3), 3), ((2, 4), 2), ((2, 6), 2), ((2, 1), 1), ((2, 5), 2), ((4, 3), 3), ((4, 6), 6), ((4, 12), 4), ((1, 3), 1), ((8, 3), 3)];
        for ((cores, partitions), want) in cases {
            assert_eq!(default_workers(cores, partitions), want, "{cores} cores, {partitions} partitions");
        }
    }
}
