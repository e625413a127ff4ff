//! Backfill: re-run landed raw data through a chosen transform version into
//! the tables, so a fixed cleaning bug can be applied to history.
//!
//! The unit is the segment: the raw object `topics/<topic>/partition=<p>/<topic>+<p>+<start>.json`
//! holds the input records `[start, next segment's start)`, and the pipeline
//! that landed it wrote its table objects under the same `<topic>+<p>+<start>`
//! name. A backfill rewrites exactly those table objects (every hive partition
//! and format the table has), deletes the ones the new output no longer fills,
//! and touches nothing else: raw data, other segments, replayed dead-letter
//! output (`…+<start>.replay-….parquet`) and checkpoints stay as they are.
//! Records the chosen version refuses become dead letters under
//! `dead-letters/<pipeline>/backfill/`, where the dead-letter API finds them.
//! Running the same backfill twice writes the same objects.
//!
//! A Delta table's files are never rewritten in place (readers of earlier
//! versions may be reading them): a backfill writes the segments' new files
//! under new names (`…+<start>.backfill-<run>.parquet`) and, in one commit at
//! the end, takes the segments' files out of the table's snapshot and puts the
//! new ones in, so readers see the whole backfill at once or none of it. The
//! files taken out stay on disk until `vacuum`.

use crate::pipeline::PipelineConfig;
use crate::pipeline::chain::Chain;
use crate::pipeline::land::{DeadLetters, Processed, Provenance, land_batch};
use crate::position::PartitionId;
use crate::runtime::CompiledTransform;
use crate::runtime::registry::Registry;
use crate::sink::delta::DeltaSink;
use crate::sink::{DeadLetter, Segment, SegmentSpec, layout};
use crate::store::ObjectStore;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use sluice_guest::BatchBuf;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Records run through the chain per call.
const BATCH: usize = 1000;

/// What to backfill. The JSON body of `POST /api/v1/jobs/backfill/run`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// The pipeline whose table is rewritten (it must land raw data).
    pub pipeline: String,
    /// The version of each stage, in chain order: `name@version` or
    /// `name@sha256:<hash prefix>`; a bare `name` is its default version.
    /// Empty: the pipeline's transforms at their default versions.
    #[serde(default)]
    pub transforms: Vec<String>,
    /// First input offset of the range (inclusive).
    #[serde(default)]
    pub from_offset: u64,
    /// End of the range (exclusive); unset: to the end of what landed.
    #[serde(default)]
    pub to_offset: Option<u64>,
    /// Only these partitions; unset: all.
    #[serde(default)]
    pub partitions: Option<Vec<u32>>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BackfillOutcome {
    pub segments: u64,
    pub records: u64,
    pub rows: u64,
    pub dead_letters: u64,
    /// Table objects written (replacing what was there under the same name).
    pub written: Vec<String>,
    /// Table objects of the rewritten segments that the new output no longer fills
    /// (for a Delta table: every file of the rewritten segments, taken out of the table).
    pub deleted: Vec<String>,
}

/// `name[@what]` → the compiled version.
fn resolve(registry: &Registry, spec: &str) -> anyhow::Result<Arc<CompiledTransform>> {
    let info = match spec.split_once('@') {
        Some((name, what)) => registry.find(name, what)?,
        None => registry.default_version(spec)?,
    };
    Ok(registry.compiled(&info)?)
}

/// A landed raw object: its partition and first offset.
struct RawSegment {
    key: String,
    partition: PartitionId,
    start: u64,
}

/// The raw segments of `topic` that hold offsets in `[from, to)`.
fn segments_in_range(store: &dyn ObjectStore, topic: &str, req: &BackfillRequest) -> anyhow::Result<Vec<RawSegment>> {
    let mut by_partition: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for key in store.list(&layout::raw_folder(topic))? {
        if let Some((p, start)) = layout::parse_raw_object(topic, &key) {
            by_partition.entry(p).or_default().push((start, key));
        }
    }
    let mut out = Vec::new();
    for (p, mut starts) in by_partition {
        if req.partitions.as_ref().is_some_and(|ps| !ps.contains(&p)) {
            continue;
        }
        starts.sort();
        for (i, (start, key)) in starts.iter().enumerate() {
            // A segment ends where the next begins.
            let end = starts.get(i + 1).map_or(u64::MAX, |(s, _)| *s);
            if *start < req.to_offset.unwrap_or(u64::MAX) && end > req.from_offset {
                out.push(RawSegment { key: key.clone(), partition: PartitionId { topic: topic.into(), partition: p }, start: *start });
            }
        }
    }
    Ok(out)
}

/// The table objects the pipeline wrote for the segment starting at `start`
/// (any hive partition, any format; not tagged replay output).
fn table_objects_of(store: &dyn ObjectStore, table: &str, p: &PartitionId, start: u64) -> anyhow::Result<Vec<String>> {
    Ok(store.list(&layout::table_folder(table))?.into_iter().filter(|k| layout::is_table_object_of(k, p, start)).collect())
}

/// Records re-read from a raw object: a dead letter keeps the record's position.
struct FromRaw<'a> {
    pipeline: &'a str,
    partition: &'a PartitionId,
    /// Offset of the batch's first record.
    first_offset: u64,
}

impl Provenance for FromRaw<'_> {
    fn letter(&self, index: u32, stage: u32, transform: &CompiledTransform, kind: &str, reason: &str) -> DeadLetter {
        DeadLetter::refused(self.pipeline, self.partition, self.first_offset + u64::from(index), stage, transform, kind, reason)
    }
}

/// Run the backfill. `progress(done, total)` counts segments. Blocking.
pub fn run(
    store: &dyn ObjectStore,
    registry: &Registry,
    config: &PipelineConfig,
    req: &BackfillRequest,
    progress: &dyn Fn(u64, u64, &str),
) -> anyhow::Result<BackfillOutcome> {
    if !config.land_raw {
        anyhow::bail!("pipeline `{}` does not land raw data (land_raw = false), so there is nothing to backfill from", config.name);
    }
    let names: Vec<String> = if req.transforms.is_empty() { config.transform_names() } else { req.transforms.clone() };
    if names.len() != config.transforms.len() {
        anyhow::bail!(
            "pipeline `{}` has {} stage(s) ({}); give one version per stage, got {}",
            config.name,
            config.transforms.len(),
            config.transforms.join(", "),
            names.len()
        );
    }
    if names.is_empty() {
        anyhow::bail!("pipeline `{}` has no transform stages, so its table is its raw data: there is nothing to backfill", config.name);
    }
    let transforms = names.iter().map(|n| resolve(registry, n).with_context(|| format!("transform `{n}`"))).collect::<anyhow::Result<Vec<_>>>()?;
    let last = transforms.last();
    let table =
        crate::pipeline::table_spec(config, last.map(|t| t.descriptor().output_kind.clone()), last.and_then(|t| t.columns().map(|c| c.schema.clone())))?
            .with_context(|| format!("pipeline `{}` writes no table to backfill", config.name))?;
    let spec = SegmentSpec { pipeline: config.name.clone(), land_raw: false, table: Some(table.clone()) };
    let lineage_versions: Vec<String> =
        transforms.iter().map(|t| format!("{}@{} sha256:{}", t.descriptor().name, t.descriptor().version, t.content_hash())).collect();
    let lineage = vec![("sluice.pipeline".to_owned(), config.name.clone()), ("sluice.backfill.transforms".to_owned(), lineage_versions.join(" | "))];
    let mut segments = Vec::new();
    for topic in &config.topics {
        segments.extend(segments_in_range(store, topic, req)?);
    }
    let mut chain = Chain::new(transforms);
    let dead_dir = layout::backfill_dead_letter_dir(&spec.pipeline);
    let mut outcome = BackfillOutcome::default();
    let total = segments.len() as u64;
    let mut delta = open_delta(store, config, &table)?;
    let tag = format!("backfill-{}", super::run::run_id_now());
    let (mut taken_out, mut put_in) = (Vec::new(), Vec::new());
    for (i, raw) in segments.iter().enumerate() {
        let before = match &delta {
            Some(d) => d.files_of_segment(&raw.partition, raw.start)?,
            None => table_objects_of(store, &table.name, &raw.partition, raw.start)?,
        };
        let text = store.get(&raw.key).with_context(|| format!("reading {}", raw.key))?;
        let mut seg = Segment::new(raw.partition.clone(), raw.start);
        if delta.is_some() {
            seg = seg.with_table_tag(&tag);
        }
        let mut offset = raw.start;
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        for chunk in lines.chunks(BATCH) {
            let mut input = BatchBuf::default();
            for line in chunk {
                input.push(line, b"", 0);
            }
            let out = chain.run(&input);
            let last = chain.stages().len() as u32 - 1;
            let processed = Processed {
                chain: &chain,
                failures: &out.failures,
                rows: &out.output,
                origins: &out.origins,
                writer: Some((last, chain.stages()[last as usize].transform.as_ref())),
                more_dead: Vec::new(),
            };
            let from = FromRaw { pipeline: &config.name, partition: &raw.partition, first_offset: offset };
            let landed = land_batch(&mut seg, store, Some(&table), DeadLetters::Segment(&dead_dir), &from, processed)?;
            outcome.rows += landed.rows;
            outcome.dead_letters += landed.dead_letters.len() as u64;
            offset += chunk.len() as u64;
        }
        outcome.records += lines.len() as u64;
        let summary = seg.finish(&lineage)?;
        let written = summary.objects;
        if delta.is_some() {
            put_in.extend(summary.table_files);
            taken_out.extend(before);
        } else {
            for key in before {
                if !written.contains(&key) {
                    store.delete(&key).with_context(|| format!("deleting {key}"))?;
                    outcome.deleted.push(key);
                }
            }
        }
        let prefix = layout::table_folder(&table.name);
        outcome.written.extend(written.into_iter().filter(|k| k.starts_with(&prefix)));
        outcome.segments += 1;
        progress(i as u64 + 1, total, &raw.key);
    }
    if let Some(d) = &mut delta {
        let what = format!("backfill of pipeline `{}` offsets {}..{}", config.name, req.from_offset, req.to_offset.map_or("end".to_owned(), |o| o.to_string()));
        d.replace(&taken_out, &put_in, &lineage, &what).with_context(|| format!("committing the backfill to the Delta table `{}`", table.name))?;
        outcome.deleted = taken_out;
    }
    Ok(outcome)
}

/// The pipeline's Delta table, if its table is one.
fn open_delta(store: &dyn ObjectStore, config: &PipelineConfig, table: &crate::sink::TableSpec) -> anyhow::Result<Option<DeltaSink>> {
    let (Some(options), Some(schema)) = (&table.delta, &table.schema) else { return Ok(None) };
    let native = store.native().with_context(|| format!("{} cannot hold Delta tables", store.location()))?;
    Ok(Some(DeltaSink::open(&native, store, &config.name, &table.name, schema, table.partition_by.is_some(), options)?))
}
