//! A pipeline's plan: which parts it runs in, which stages each part runs, in
//! which order, and which part writes the table and the output topic. Decided
//! here once; the launcher starts the parts, the worker drives the stages.
//!
//! A pipeline without an aggregate or a join is one part (`Whole`). A keyed
//! pipeline runs in parts linked by internal topics (the embedded log's, or
//! Kafka's), each keyed so that the next part owns whole keys, as Kafka
//! Streams' repartition topics do:
//!
//! | part | stages |
//! |---|---|
//! | whole | raw, transforms, table, output, actions on records |
//! | router (join) | raw, router into the join topic, table (dead letters only) |
//! | router (aggregate) | raw, transforms, router into the repartition topic, table (dead letters only), actions on records |
//! | join | join, transforms, router into the repartition topic *or* table and output, actions on records |
//! | windows | windows, table, output, actions on windows |

use super::action::{ActionInput, ActionStage, Placed};
use super::aggregate::{self, AggregateStage};
use super::config::{PipelineConfig, TableFormat};
use super::control::PipelineControl;
use super::invalid::InvalidPipeline;
use super::join::JoinStage;
use super::output::{OutputStage, OutputTopic};
use super::repartition::{self, Hops, Keying, Repartition, RouteStage};
use super::snapshot::Snapshots;
use super::stage::Stage;
use super::stats::PipelineStats;
use super::table::{RawStage, TableStage};
use super::transforms::TransformsStage;
use crate::runtime::ComponentKind;
use crate::sink::delta::DeltaSink;
use crate::sink::{SegmentSpec, TableSpec, schema};
use crate::store::ObjectStore;
use anyhow::Context;
use arrow_schema::SchemaRef;
use std::sync::Arc;

/// Which part of a pipeline a worker runs.
pub enum Part {
    /// Everything: a pipeline without an aggregate or a join.
    Whole,
    /// A keyed pipeline's first part, reading its topics: the raw landing,
    /// and the move of each record into the join topic (keyed by side and
    /// join key) or, without a join, through the transforms into the
    /// repartition topic (keyed by group key). `partitions`: of that topic.
    Router { hops: Hops, partitions: u32 },
    /// A join's part, reading the join topic: the join, then the transforms
    /// on the joined rows, then the table, or the repartition topic
    /// (`partitions` partitions) when the pipeline aggregates too.
    Join { hops: Hops, partitions: u32 },
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

    /// Whether this part lands the pipeline's table rows, and so writes its output topic too.
    pub fn writes_table(&self, config: &PipelineConfig) -> bool {
        match self {
            Part::Whole | Part::Windows { .. } => true,
            Part::Join { .. } => config.aggregate.is_none(),
            Part::Router { .. } => false,
        }
    }

    /// Whether this part reads an internal topic (its records were counted in where they entered).
    pub fn reads_internal_topic(&self) -> bool {
        matches!(self, Part::Join { .. } | Part::Windows { .. })
    }

    /// Which actions run here: those on records where the records (or joined
    /// rows) are, those on windows where the windows close. `None`: no action here.
    fn actions(&self, config: &PipelineConfig) -> Option<Option<ActionInput>> {
        match (self, config.join.is_some()) {
            (Part::Whole, _) => Some(None),
            (Part::Router { .. }, false) | (Part::Join { .. }, true) => Some(Some(ActionInput::Records)),
            (Part::Windows { .. }, _) => Some(Some(ActionInput::Windows)),
            _ => None,
        }
    }
}

/// A part's stages, in the order a batch flows through them, and the spec of
/// the segments it lands.
pub struct Planned {
    pub spec: SegmentSpec,
    pub stages: Vec<Box<dyn Stage>>,
}

/// What a part is built from.
pub struct Parts<'a> {
    pub config: &'a PipelineConfig,
    pub control: &'a Arc<PipelineControl>,
    pub store: &'a Arc<dyn ObjectStore>,
    pub stats: &'a PipelineStats,
    /// The output topic's writer, for the part that writes the table.
    pub output: Option<Box<dyn OutputTopic>>,
}

/// Resolve `part` of a pipeline into its stages.
pub fn plan(part: &Part, with: Parts<'_>) -> anyhow::Result<Planned> {
    let Parts { config, control, store, stats, output } = with;
    let name = &config.name;
    let (generation, stages) = control.chain();
    let (mut transforms, aggregate_version) = aggregate::split_stages(stages, config.aggregate.is_some());
    // Where keyed state is kept: the state directory, or the landing store when
    // the partitions may move between processes.
    let snapshots = |what: &str, shared: bool| match shared {
        true => Snapshots::in_store(store.clone(), what, name),
        false => Snapshots::under(control.state_dir(), what, name),
    };
    let Keyed { join, route, windows } = keyed(part, config, &snapshots)?;
    // A join's router moves its input untransformed (the transforms run on the joined rows);
    // the windows fold what was transformed before them.
    let runs_transforms = !matches!((part, &config.join), (Part::Router { .. }, Some(_)) | (Part::Windows { .. }, _));
    if !runs_transforms {
        transforms.clear();
    }
    if let Some(t) = transforms.iter().find(|t| t.kind() != ComponentKind::Transform) {
        let why = format!("pipeline `{name}`: `{}` is an aggregate component; name it in `[pipeline.aggregate]`, not in `transforms`", t.descriptor().name);
        return Err(InvalidPipeline(why).into());
    }
    let aggregate = match (&config.aggregate, aggregate_version) {
        (Some(a), Some(compiled)) => match windows {
            Some(shared) => Some(AggregateStage::new(name, a, compiled, snapshots("aggregates", shared), shared)?),
            None => None,
        },
        _ => None,
    };
    let (last_kind, last_columns) = match &aggregate {
        Some(a) => (Some(a.output_kind().to_owned()), None),
        None => (transforms.last().map(|x| x.descriptor().output_kind.clone()), transforms.last().and_then(|x| x.columns().map(|c| c.schema.clone()))),
    };
    // Routers land the raw records and dead letters; the table is the last part's.
    let table = if route.is_some() { None } else { table_spec(config, last_kind, last_columns)? };
    let delta = match &table {
        Some(t) => open_delta(config, store, t)?,
        None => None,
    };
    let actions = match part.actions(config) {
        Some(only) => {
            let first_stage = config.transforms.len() as u32 + u32::from(config.aggregate.is_some());
            ActionStage::new(name, &config.actions, config.aggregate.is_some(), Placed { only, first_stage }, control.registry(), control.state_dir(), stats)?
        }
        None => None,
    };
    let land_raw = config.land_raw && matches!(part, Part::Whole | Part::Router { .. });

    let mut stages: Vec<Box<dyn Stage>> = Vec::new();
    if land_raw {
        stages.push(Box::new(RawStage));
    }
    if let Some(j) = join {
        stages.push(Box::new(j));
    }
    stages.push(Box::new(TransformsStage::new(control.clone(), generation, transforms, runs_transforms, config.aggregate.is_some())));
    if let Some(a) = aggregate {
        stages.push(Box::new(a));
    }
    if let Some(r) = route {
        stages.push(Box::new(r));
    }
    stages.push(Box::new(TableStage::new(table.clone(), delta)));
    if let Some(topic) = output.filter(|_| part.writes_table(config)) {
        stages.push(Box::new(OutputStage::new(name, topic)));
    }
    if let Some(a) = actions {
        stages.push(Box::new(a));
    }
    Ok(Planned { spec: SegmentSpec { pipeline: name.clone(), land_raw, table }, stages })
}

/// The keyed stages of a part: the join, the router into the next internal
/// topic, and whether it runs the windows (with their state shared between
/// processes or not).
struct Keyed {
    join: Option<JoinStage>,
    route: Option<RouteStage>,
    windows: Option<bool>,
}

fn keyed(part: &Part, config: &PipelineConfig, snapshots: &dyn Fn(&str, bool) -> Snapshots) -> anyhow::Result<Keyed> {
    let name = &config.name;
    let into_windows = |hops: &Hops, partitions: u32| -> anyhow::Result<Option<RouteStage>> {
        config
            .aggregate
            .as_ref()
            .map(|a| {
                let hop = Repartition::new(hops, name, hops.topic(&repartition::topic_name(name)), partitions, Keying::group(a), &config.watermark)?;
                Ok(RouteStage::new(name, hop, "aggregate"))
            })
            .transpose()
    };
    let keyed = config.aggregate.is_some() || config.join.is_some();
    let none = Keyed { join: None, route: None, windows: None };
    Ok(match (part, &config.join) {
        (Part::Whole, _) if !keyed => none,
        (Part::Router { hops, partitions }, Some(j)) => {
            let topic = hops.topic(&repartition::join_topic_name(name));
            let hop = Repartition::new(hops, name, topic, *partitions, Keying::join(j), &config.watermark)?;
            Keyed { route: Some(RouteStage::new(name, hop, "join")), ..none }
        }
        (Part::Router { hops, partitions }, None) if keyed => Keyed { route: into_windows(hops, *partitions)?, ..none },
        (Part::Join { hops, partitions }, Some(j)) => Keyed {
            join: Some(JoinStage::new(name, j, snapshots("joins", hops.shared()), hops.shared())),
            route: into_windows(hops, *partitions)?,
            windows: None,
        },
        (Part::Windows { shared }, _) if config.aggregate.is_some() => Keyed { windows: Some(*shared), ..none },
        _ => anyhow::bail!("pipeline `{name}`: a {} worker does not fit the pipeline's config", part.name()),
    })
}

/// The table's Delta log, when the table is a Delta table.
fn open_delta(config: &PipelineConfig, store: &Arc<dyn ObjectStore>, table: &TableSpec) -> anyhow::Result<Option<DeltaSink>> {
    let TableSpec { name, schema: Some(schema), partition_by, delta: Some(options), .. } = table else { return Ok(None) };
    let native = store.native().with_context(|| {
        format!("pipeline `{}`: table `{name}` is a Delta table, which needs a local directory or S3 landing; {} is neither", config.name, store.location())
    })?;
    let sink = DeltaSink::open(&native, store.as_ref(), &config.name, name, schema, partition_by.is_some(), options)
        .with_context(|| format!("pipeline `{}`", config.name))?;
    Ok(Some(sink))
}

/// Where a pipeline's output lands: the table named in its config, with the
/// schema its config or `last_kind` (the output kind of its last stage) gives,
/// else the columns its last stage declares (a SQL stage's, a 0.2.0 component's).
pub fn table_spec(config: &PipelineConfig, last_kind: Option<String>, last_columns: Option<SchemaRef>) -> anyhow::Result<Option<TableSpec>> {
    Ok(match &config.table {
        None => None,
        Some(t) => {
            let kind = t.schema.clone().or(last_kind);
            let schema = match (&t.columns, &kind) {
                (Some(cols), _) => Some(schema::from_columns(cols)),
                (None, Some(kind)) => schema::builtin(kind).or(last_columns.filter(|_| t.schema.is_none())),
                (None, None) => last_columns,
            };
            let delta = t.formats.contains(&TableFormat::Delta).then(|| t.delta.clone().unwrap_or_default());
            let parquet = t.formats.contains(&TableFormat::Parquet) || delta.is_some();
            if schema.is_none() && (parquet || t.partition_by.is_some()) {
                return Err(InvalidPipeline(format!(
                    "pipeline `{}`: table `{}` needs a schema for Parquet, Delta or partitioning; the output kind {:?} has no built-in one, so give table.columns",
                    config.name,
                    t.name,
                    kind.unwrap_or_default()
                ))
                .into());
            }
            if let (Some(col), Some(s)) = (&t.partition_by, &schema) {
                s.index_of(col).map_err(|_| InvalidPipeline(format!("pipeline `{}`: table.partition_by `{col}` is not a column of the table", config.name)))?;
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
