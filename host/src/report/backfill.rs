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

use crate::pipeline::chain::Chain;
use crate::pipeline::PipelineConfig;
use crate::runtime::registry::Registry;
use crate::runtime::CompiledTransform;
use crate::sink::{DeadLetter, ObjectStore, Segment, SegmentSpec};
use crate::source::PartitionId;
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
    /// Table objects of the rewritten segments that the new output no longer fills.
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

/// `topics/<topic>/partition=<p>/<topic>+<p>+<start>.json` → (partition, start).
fn parse_raw(topic: &str, key: &str) -> Option<(u32, u64)> {
    let name = key.rsplit('/').next()?.strip_suffix(".json")?;
    let rest = name.strip_prefix(topic)?.strip_prefix('+')?;
    let (p, start) = rest.split_once('+')?;
    Some((p.parse().ok()?, start.parse().ok()?))
}

/// The raw segments of `topic` that hold offsets in `[from, to)`.
fn segments_in_range(store: &dyn ObjectStore, topic: &str, req: &BackfillRequest) -> anyhow::Result<Vec<RawSegment>> {
    let mut by_partition: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for key in store.list(&format!("topics/{topic}/"))? {
        if let Some((p, start)) = parse_raw(topic, &key) {
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
    let stem = format!("{}+{}+{start:010}.", p.topic, p.partition);
    Ok(store
        .list(&format!("tables/{table}/"))?
        .into_iter()
        .filter(|k| k.rsplit('/').next().and_then(|n| n.strip_prefix(&stem)).is_some_and(|ext| ext == "parquet" || ext == "json"))
        .collect())
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
    let names: Vec<String> = if req.transforms.is_empty() { config.transforms.clone() } else { req.transforms.clone() };
    if names.len() != config.transforms.len() {
        anyhow::bail!("pipeline `{}` has {} stage(s) ({}); give one version per stage, got {}", config.name, config.transforms.len(), config.transforms.join(", "), names.len());
    }
    let transforms = names.iter().map(|n| resolve(registry, n).with_context(|| format!("transform `{n}`"))).collect::<anyhow::Result<Vec<_>>>()?;
    let table = crate::pipeline::table_spec(config, transforms.last().map(|t| t.descriptor().output_kind.clone()))?.with_context(|| format!("pipeline `{}` writes no table to backfill", config.name))?;
    let spec = SegmentSpec { pipeline: config.name.clone(), land_raw: false, table: Some(table.clone()) };
    let lineage_versions: Vec<String> = transforms.iter().map(|t| format!("{}@{} sha256:{}", t.descriptor().name, t.descriptor().version, t.content_hash())).collect();
    let lineage = vec![
        ("sluice.pipeline".to_owned(), config.name.clone()),
        ("sluice.backfill.transforms".to_owned(), lineage_versions.join(" | ")),
    ];
    let mut segments = Vec::new();
    for topic in &config.topics {
        segments.extend(segments_in_range(store, topic, req)?);
    }
    let mut chain = Chain::new(transforms);
    let mut outcome = BackfillOutcome::default();
    let total = segments.len() as u64;
    for (i, raw) in segments.iter().enumerate() {
        let before = table_objects_of(store, &table.name, &raw.partition, raw.start)?;
        let text = store.get(&raw.key).with_context(|| format!("reading {}", raw.key))?;
        let mut seg = Segment::new(raw.partition.clone(), raw.start);
        let mut offset = raw.start;
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        for chunk in lines.chunks(BATCH) {
            let mut input = BatchBuf::default();
            for line in chunk {
                input.push(line, b"", 0);
            }
            let out = chain.run(&input);
            let mut dead = Vec::new();
            let letter = |index: u32, stage: u32, kind: &str, reason: &str, value: &[u8]| {
                let t = &chain.stages()[stage as usize].transform;
                let mut d = DeadLetter::refused(&config.name, &raw.partition, offset + u64::from(index), stage, t, kind, reason);
                d.set_value(value);
                d
            };
            for f in &out.failures {
                dead.push(letter(f.input_index, f.stage, f.kind, &f.reason, &f.value));
            }
            let misfits = seg.write_table(store, &table, &out.output.as_ref())?;
            let last = chain.stages().len() as u32 - 1;
            for (i, reason) in &misfits {
                dead.push(letter(out.origins[*i as usize], last, "schema", reason, out.output.as_ref().get(*i as usize).value));
            }
            outcome.rows += (out.output.len() - misfits.len()) as u64;
            outcome.dead_letters += dead.len() as u64;
            seg.write_dead_letters(store, &format!("{}/backfill", spec.pipeline), &dead)?;
            offset += chunk.len() as u64;
        }
        outcome.records += lines.len() as u64;
        let written = seg.finish(&lineage)?.objects;
        for key in before {
            if !written.contains(&key) {
                store.delete(&key).with_context(|| format!("deleting {key}"))?;
                outcome.deleted.push(key);
            }
        }
        let prefix = format!("tables/{}/", table.name);
        outcome.written.extend(written.into_iter().filter(|k| k.starts_with(&prefix)));
        outcome.segments += 1;
        progress(i as u64 + 1, total, &raw.key);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::layout;

    #[test]
    fn raw_object_names_give_partition_and_start() {
        let p = PartitionId { topic: "u.pin".into(), partition: 2 };
        let key = layout::raw_object(&p, 42);
        assert_eq!(parse_raw("u.pin", &key), Some((2, 42)));
        assert_eq!(parse_raw("u.geo", &key), None);
    }
}
