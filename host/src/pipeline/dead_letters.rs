//! Dead letters of a pipeline: list, fetch, replay through the active
//! versions, purge. They live in the landing store next to the data, one
//! JSON-lines object per segment.

use super::chain::Chain;
use super::control::PipelineControl;
use super::land::{DeadLetters, Processed, Provenance, land_batch};
use crate::position::PartitionId;
use crate::runtime::CompiledTransform;
use crate::sink::delta::{DeltaSink, RollCommit};
use crate::sink::{DeadLetter, Segment, SegmentSpec, TableSpec, layout};
use crate::store::ObjectStore;
use serde::Serialize;
use sha2::Digest;
use sluice_guest::BatchBuf;
use std::collections::{BTreeMap, BTreeSet};

/// A dead letter's identity: where its record sits in the source.
pub fn id_of(d: &DeadLetter) -> String {
    format!("{}+{}+{}", d.topic, d.partition, d.offset)
}

/// Every dead letter of the pipeline, grouped by the object holding it.
pub fn by_object(store: &dyn ObjectStore, pipeline: &str) -> std::io::Result<BTreeMap<String, Vec<DeadLetter>>> {
    let mut out = BTreeMap::new();
    for key in store.list(&layout::dead_letter_folder(pipeline))? {
        let mut letters = Vec::new();
        for line in String::from_utf8_lossy(&store.get(&key)?).lines() {
            match serde_json::from_str::<DeadLetter>(line) {
                Ok(d) => letters.push(d),
                Err(e) => tracing::warn!(object = %key, error = %e, "skipping an unreadable dead-letter line"),
            }
        }
        out.insert(key, letters);
    }
    Ok(out)
}

/// Every dead letter of the pipeline, with the object holding it.
pub fn list(store: &dyn ObjectStore, pipeline: &str) -> std::io::Result<Vec<(String, DeadLetter)>> {
    Ok(by_object(store, pipeline)?.into_iter().flat_map(|(k, ds)| ds.into_iter().map(move |d| (k.clone(), d))).collect())
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Records that went through and landed in the table.
    pub replayed: u64,
    /// Records the active versions refused again (they stay, with the new reason).
    pub failed_again: u64,
    pub objects_written: Vec<String>,
}

/// Run the selected dead letters (all when `ids` is `None`) through the active
/// versions from the stage that refused them, land what comes out, and keep
/// the rest as dead letters. Safe to repeat after a crash: the output names
/// depend only on the dead-letter object and the first record replayed.
pub fn replay(store: &dyn ObjectStore, spec: &SegmentSpec, control: &PipelineControl, ids: Option<&BTreeSet<String>>) -> anyhow::Result<ReplayOutcome> {
    let (_, transforms) = control.chain();
    let mut outcome = ReplayOutcome::default();
    let mut delta = match &spec.table {
        Some(TableSpec { name, schema: Some(schema), partition_by, delta: Some(options), .. }) => {
            let native = store.native().ok_or_else(|| anyhow::anyhow!("{} cannot hold Delta tables", store.location()))?;
            Some(DeltaSink::open(&native, store, &spec.pipeline, name, schema, partition_by.is_some(), options)?)
        }
        _ => None,
    };
    for (key, letters) in by_object(store, &spec.pipeline)? {
        let (chosen, mut kept): (Vec<DeadLetter>, Vec<DeadLetter>) = letters.into_iter().partition(|d| ids.is_none_or(|ids| ids.contains(&id_of(d))));
        let Some(first) = chosen.first() else { continue };
        let partition = PartitionId { topic: first.topic.as_str().into(), partition: first.partition };
        let start = layout::dead_letter_segment_start(&key).unwrap_or(first.offset);
        let mut seg = Segment::new(partition, start).with_table_tag(&format!("replay-{:010}", first.offset));
        let mut again = Vec::new();
        for d in &chosen {
            let stage = d.stage as usize;
            let Some(value) = d.value.as_deref() else {
                again.push(DeadLetter { reason: format!("{} (not replayable: the record is not UTF-8)", d.reason), ..d.clone() });
                continue;
            };
            if d.kind.starts_with("action_") {
                again.push(DeadLetter {
                    reason: format!(
                        "{} (not replayable through the pipeline: the value is the action record; send it to the receiver again yourself)",
                        d.reason
                    ),
                    ..d.clone()
                });
                continue;
            }
            let mut chain = Chain::new(transforms.get(stage..).unwrap_or_default().to_vec());
            let mut input = BatchBuf::default();
            input.push(value.as_bytes(), d.key.as_deref().unwrap_or("").as_bytes(), d.timestamp);
            let out = chain.run(&input);
            let Some(last) = chain.stages().len().checked_sub(1) else {
                again.push(DeadLetter {
                    reason: format!("{} (not replayable: stage {stage} is not a transform of the pipeline now; an aggregate stage takes no replays)", d.reason),
                    ..d.clone()
                });
                continue;
            };
            let processed = Processed {
                chain: &chain,
                failures: &out.failures,
                rows: &out.output,
                origins: &out.origins,
                writer: Some((last as u32, chain.stages()[last].transform.as_ref())),
                more_dead: Vec::new(),
            };
            let landed = land_batch(&mut seg, store, spec.table.as_ref(), DeadLetters::Return, &ReplayOf(d), processed)?;
            if landed.dead_letters.is_empty() {
                outcome.replayed += 1;
            }
            again.extend(landed.dead_letters);
        }
        outcome.failed_again += again.len() as u64;
        let lineage = vec![("sluice.replay.of".to_owned(), key.clone())];
        let summary = seg.finish(&lineage)?;
        if let Some(d) = &mut delta {
            // Into the Delta table once: a repeat of this replay (same letters) finds its txn.
            let ids: Vec<String> = chosen.iter().map(id_of).collect();
            let digest = hex::encode(&sha2::Sha256::digest(ids.join(",").as_bytes())[..8]);
            let app_id = format!("{}/replay/{key}/{digest}", spec.pipeline);
            d.commit(RollCommit { app_id, version: 1, files: &summary.table_files, lineage: &lineage, replay: true })?;
        }
        outcome.objects_written.extend(summary.objects);
        // Only after the output is durable do the replayed records leave the dead letters.
        kept.extend(again);
        kept.sort_by_key(|d| d.offset);
        rewrite(store, &key, &kept)?;
    }
    Ok(outcome)
}

/// A dead letter run again from the stage that refused it: what fails again
/// keeps its source position, key and timestamp, with the new stage and reason.
struct ReplayOf<'a>(&'a DeadLetter);

impl Provenance for ReplayOf<'_> {
    fn letter(&self, _index: u32, stage: u32, transform: &CompiledTransform, kind: &str, reason: &str) -> DeadLetter {
        let d = transform.descriptor();
        DeadLetter {
            stage: self.0.stage + stage,
            transform: d.name.clone(),
            version: d.version.clone(),
            content_hash: transform.content_hash().to_owned(),
            kind: kind.to_owned(),
            reason: reason.to_owned(),
            ..self.0.clone()
        }
    }
}

/// Remove the selected dead letters (all when `ids` is `None`). Returns how many went.
pub fn purge(store: &dyn ObjectStore, pipeline: &str, ids: Option<&BTreeSet<String>>) -> anyhow::Result<u64> {
    let mut removed = 0;
    for (key, letters) in by_object(store, pipeline)? {
        let (gone, kept): (Vec<DeadLetter>, Vec<DeadLetter>) = letters.into_iter().partition(|d| ids.is_none_or(|ids| ids.contains(&id_of(d))));
        removed += gone.len() as u64;
        if !gone.is_empty() {
            rewrite(store, &key, &kept)?;
        }
    }
    Ok(removed)
}

fn rewrite(store: &dyn ObjectStore, key: &str, letters: &[DeadLetter]) -> std::io::Result<()> {
    if letters.is_empty() {
        return store.delete(key);
    }
    let mut w = store.create(key)?;
    for d in letters {
        let mut line = serde_json::to_vec(d).map_err(std::io::Error::other)?;
        line.push(b'\n');
        std::io::Write::write_all(&mut w, &line)?;
    }
    w.finish(&[])
}
