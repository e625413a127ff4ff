//! `[[pipeline]]` sections of the config file.

use crate::sink::schema::ColumnSpec;
use serde::Deserialize;

/// One pipeline: topics → transforms → raw landing, table, dead letters.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Unique name; also the consumer group and the dead-letter folder name.
    pub name: String,
    /// Where the pipeline reads: `embedded` (the embedded log), `kafka` or
    /// `kinesis`. Default: `kafka` when `[kafka]` is configured, else `kinesis`
    /// when `[kinesis]` is, else `embedded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceKind>,
    /// Topics read (embedded-log topics, Kinesis stream names; on Kafka,
    /// a name starting with `^` is a regular expression, e.g. `^0a1b2c\\..*`).
    pub topics: Vec<String>,
    /// Transform chain, applied in order: built-in names (`clean-pin`, …) or the
    /// names of uploaded transforms. Each stage starts on the built-in (or first
    /// uploaded) version until another is activated through the admin API.
    #[serde(default)]
    pub transforms: Vec<String>,
    /// Land the input records unchanged under `topics/` in the Confluent S3 sink layout.
    #[serde(default)]
    pub land_raw: bool,
    /// Land the transform output as a table under `tables/<name>/`.
    pub table: Option<TableConfig>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub roll: RollConfig,
    /// Threads running this pipeline, each owning a share of its partitions.
    /// Default: one per CPU core, at most one per partition; one per partition
    /// when they do not split evenly between the cores and number at most twice the cores.
    pub workers: Option<usize>,
    /// When a newly activated transform version is rolled back by itself.
    #[serde(default)]
    pub auto_rollback: super::control::AutoRollbackConfig,
    /// Aggregate the transformed records in event-time windows; the table then
    /// receives one row per group per window instead of the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<super::aggregate::AggregateConfig>,
    /// `[pipeline.join]`: join the records of the pipeline's topics by key
    /// first; the transforms, then the table or the aggregate, get the joined rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<super::join::JoinConfig>,
    /// `[pipeline.watermark]`: how a keyed pipeline's watermark moves when
    /// inputs go quiet (aggregates and joins).
    #[serde(default, skip_serializing_if = "is_default")]
    pub watermark: super::watermark::WatermarkConfig,
    /// `[[pipeline.action]]`: detectors over the pipeline's records or window
    /// rows, and the webhooks their actions are delivered to (at least once).
    #[serde(default, rename = "action", skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<super::action::ActionConfig>,
    /// `[pipeline.output]`: also write the table's rows (or, with no
    /// transforms, the input records) to a topic of the embedded log, for
    /// consumers downstream; effectively once, committed after it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<super::output::OutputConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Embedded,
    Kafka,
    Kinesis,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    pub name: String,
    /// `parquet` (the default), `delta`, `jsonl`, or a list (`["parquet", "jsonl"]`).
    /// `format = "delta"` says the same. Delta tables are Parquet files plus a
    /// transaction log: Spark, Databricks, DuckDB, Polars and the `deltalake`
    /// package read them as one consistent table.
    #[serde(default = "default_formats", alias = "format", deserialize_with = "one_or_many")]
    pub formats: Vec<TableFormat>,
    /// A built-in schema by output kind (`pin-clean`, `geo-clean`, `user-clean`).
    /// Defaults to the last transform's output kind when that is built in.
    pub schema: Option<String>,
    /// Explicit columns, for transforms whose output kind has no built-in schema.
    pub columns: Option<Vec<ColumnSpec>>,
    /// A timestamp column whose UTC date partitions the table (`dt=YYYY-MM-DD`;
    /// in a Delta table, the partition column `dt`).
    pub partition_by: Option<String>,
    /// How a Delta table is kept (`[pipeline.table.delta]`); only with `format = "delta"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::sink::delta::DeltaOptions>,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Parquet,
    Jsonl,
    Delta,
}

/// `"delta"` or `["parquet", "jsonl"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<TableFormat>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(TableFormat),
        Many(Vec<TableFormat>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(f) => vec![f],
        OneOrMany::Many(v) => v,
    })
}

fn default_formats() -> Vec<TableFormat> {
    vec![TableFormat::Parquet]
}

/// How many records go through the transforms at once.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Records per transform call.
    pub max_records: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_records: 4096 }
    }
}

/// When a segment's objects are closed, made visible and the input committed.
/// Whichever limit is reached first rolls it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RollConfig {
    /// Input records per segment.
    pub max_records: u64,
    /// Bytes of open objects per segment.
    pub max_bytes: u64,
    /// Age of a segment's first record, in milliseconds: how stale landed data may get.
    pub max_age_ms: u64,
    /// Bytes held in open objects across all of a worker's segments. Past it,
    /// the segment holding the most is rolled first: many partitions or date
    /// partitions cannot add up to unbounded memory (or thousands of tiny objects
    /// from rolling everything early).
    pub memory_budget_bytes: u64,
}

impl Default for RollConfig {
    fn default() -> Self {
        RollConfig { max_records: 500_000, max_bytes: 128 << 20, max_age_ms: 10_000, memory_budget_bytes: 256 << 20 }
    }
}

/// Before a transform name, says the stage is a SQL stage (`sql:clean-pin-sql`);
/// sluice refuses to start the pipeline when it is not.
pub const SQL_PREFIX: &str = "sql:";

impl PipelineConfig {
    /// The components the pipeline runs, in order: its transforms, then its aggregate.
    /// Each is a stage an operator can swap through the admin API.
    pub fn stage_names(&self) -> Vec<String> {
        self.transform_names().into_iter().chain(self.aggregate.as_ref().map(|a| a.name.clone())).collect()
    }

    /// The transforms' names, without the `sql:` marks.
    pub fn transform_names(&self) -> Vec<String> {
        self.transforms.iter().map(|t| t.strip_prefix(SQL_PREFIX).unwrap_or(t).to_owned()).collect()
    }

    /// The transforms marked `sql:`, by name.
    pub fn sql_marked(&self) -> impl Iterator<Item = &str> {
        self.transforms.iter().filter_map(|t| t.strip_prefix(SQL_PREFIX))
    }

    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty() || n.len() > 64 || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("pipeline name `{n}` must be 1-64 characters of a-z A-Z 0-9 - _"));
        }
        if self.topics.is_empty() {
            return Err(format!("pipeline `{n}`: `topics` is empty"));
        }
        if !self.land_raw && self.table.is_none() {
            return Err(format!("pipeline `{n}` lands nothing: set `land_raw = true` or a `[pipeline.table]`"));
        }
        if self.table.is_some() && self.transforms.is_empty() && self.aggregate.is_none() {
            return Err(format!("pipeline `{n}`: a table needs at least one transform or an aggregate"));
        }
        if let Some(j) = &self.join {
            j.validate(&self.topics).map_err(|e| format!("pipeline `{n}`: {e}"))?;
        }
        self.watermark.validate().map_err(|e| format!("pipeline `{n}`: {e}"))?;
        if let Some(a) = &self.aggregate {
            if self.table.is_none() {
                return Err(format!("pipeline `{n}`: an aggregate needs a `[pipeline.table]` for its window rows"));
            }
            if a.name.is_empty() || !a.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
                return Err(format!("pipeline `{n}`: aggregate.name `{}` must be a-z 0-9 - _", a.name));
            }
            a.validate().map_err(|e| format!("pipeline `{n}`: {e}"))?;
        }
        if let Some(t) = &self.table {
            if t.formats.is_empty() {
                return Err(format!("pipeline `{n}`: table.formats is empty"));
            }
            if t.formats.contains(&TableFormat::Delta) && t.formats.len() > 1 {
                return Err(format!(
                    "pipeline `{n}`: a Delta table is its own format (Parquet files and a log): give `format = \"delta\"` alone, not {:?}",
                    t.formats
                ));
            }
            match (&t.delta, t.formats.contains(&TableFormat::Delta)) {
                (Some(_), false) => return Err(format!("pipeline `{n}`: [pipeline.table.delta] is set but the table is not `format = \"delta\"`")),
                (Some(d), true) => d.validate().map_err(|e| format!("pipeline `{n}`: {e}"))?,
                _ => {}
            }
            if t.schema.is_some() && t.columns.is_some() {
                return Err(format!("pipeline `{n}`: give table.schema or table.columns, not both"));
            }
            if t.name.is_empty() || !t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(format!("pipeline `{n}`: table name `{}` must be a-z A-Z 0-9 - _", t.name));
            }
        }
        if self.batch.max_records == 0 || self.batch.max_records > 1_000_000 {
            return Err(format!("pipeline `{n}`: batch.max_records must be between 1 and 1000000"));
        }
        if let Some(bad) = self.transform_names().into_iter().find(|t| !crate::runtime::registry::valid_name(t)) {
            return Err(format!("pipeline `{n}`: transform name `{bad}` must be 1-64 characters of a-z 0-9 - _ (after `sql:`, for a SQL stage)"));
        }
        let r = &self.auto_rollback;
        if !(0.0..=1.0).contains(&r.max_rejection_rate) || !(0.0..=1.0).contains(&r.max_trap_rate) || r.batches == 0 {
            return Err(format!("pipeline `{n}`: auto_rollback rates must be between 0 and 1 and batches above 0"));
        }
        for (i, a) in self.actions.iter().enumerate() {
            a.validate(self.aggregate.is_some()).map_err(|e| format!("pipeline `{n}`: {e}"))?;
            if self.actions[..i].iter().any(|b| b.name == a.name) {
                return Err(format!("pipeline `{n}`: two actions are named `{}`", a.name));
            }
        }
        if self.workers == Some(0) || self.workers.is_some_and(|w| w > 256) {
            return Err(format!("pipeline `{n}`: workers must be between 1 and 256"));
        }
        if self.roll.max_records == 0 || self.roll.max_bytes == 0 || self.roll.max_age_ms == 0 || self.roll.memory_budget_bytes == 0 {
            return Err(format!("pipeline `{n}`: roll limits must be above zero"));
        }
        Ok(())
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
