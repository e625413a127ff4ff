//! The per-partition state store of the keyed stages: one snapshot per
//! committed input position (the windows, the join, the actions' previous
//! window rows), below every stage that keeps state.
//!
//! `<state dir>/<what>/<pipeline>/<topic>+<partition>/<offset, 20 digits>.json`
//! holds a stage's state after every record before `offset`. A snapshot is
//! written when a roll lands, before the source position is committed, and
//! older ones are deleted after, so the snapshot at (or just below) the
//! committed position always exists: a restart (or a rewind after a failed
//! roll) reopens it and re-reads exactly what it does not cover. Kafka
//! Streams keeps its state stores with the offsets the same way.
//!
//! The state of a partition several processes may own in turn (a Kafka
//! internal topic's) is kept in the landing store instead, under
//! `_sluice/state/<what>/<pipeline>/…`, so the member that takes the
//! partition over restores it.

use crate::position::PartitionId;
use crate::store::{ObjectStore, write_atomically};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Snapshots {
    place: Place,
}

enum Place {
    Dir(PathBuf),
    Store { store: Arc<dyn ObjectStore>, prefix: String },
}

impl Snapshots {
    /// Snapshots under `<state dir>/<what>/<pipeline>/`.
    pub fn under(state_dir: &std::path::Path, what: &str, pipeline: &str) -> Self {
        Snapshots { place: Place::Dir(state_dir.join(what).join(pipeline)) }
    }

    /// Snapshots in the landing store, under `_sluice/state/<what>/<pipeline>/`: shared by the
    /// processes that own the partitions in turn.
    pub fn in_store(store: Arc<dyn ObjectStore>, what: &str, pipeline: &str) -> Self {
        Snapshots { place: Place::Store { store, prefix: format!("_sluice/state/{what}/{pipeline}/") } }
    }

    fn partition_dir(&self, p: &PartitionId) -> String {
        format!("{}+{}", p.topic, p.partition)
    }

    /// Offsets with a snapshot, ascending.
    fn offsets(&self, p: &PartitionId) -> anyhow::Result<Vec<u64>> {
        let names: Vec<String> = match &self.place {
            Place::Dir(dir) => {
                let dir = dir.join(self.partition_dir(p));
                match std::fs::read_dir(&dir) {
                    Ok(e) => e.flatten().filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
                }
            }
            Place::Store { store, prefix } => {
                let folder = format!("{prefix}{}/", self.partition_dir(p));
                let keys = store.list(&folder).with_context(|| format!("listing {folder} in {}", store.location()))?;
                keys.into_iter().filter_map(|k| k.rsplit('/').next().map(str::to_owned)).collect()
            }
        };
        let mut out: Vec<u64> = names.iter().filter_map(|n| n.strip_suffix(".json")).filter_map(|n| n.parse().ok()).collect();
        out.sort_unstable();
        Ok(out)
    }

    fn read(&self, p: &PartitionId, at: u64) -> anyhow::Result<(String, Vec<u8>)> {
        let name = format!("{}/{at:020}.json", self.partition_dir(p));
        match &self.place {
            Place::Dir(dir) => {
                let path = dir.join(&name);
                Ok((path.display().to_string(), std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?))
            }
            Place::Store { store, prefix } => {
                let key = format!("{prefix}{name}");
                let bytes = store.get(&key).with_context(|| format!("reading {key} from {}", store.location()))?;
                Ok((key, bytes))
            }
        }
    }

    /// The latest snapshot at or before `offset`: `(its offset, state)`.
    /// Snapshots beyond `offset` were written for a commit that never happened; they are ignored.
    pub fn load<T: serde::de::DeserializeOwned>(&self, p: &PartitionId, offset: u64) -> anyhow::Result<Option<(u64, T)>> {
        let Some(at) = self.offsets(p)?.into_iter().rev().find(|o| *o <= offset) else { return Ok(None) };
        let (path, bytes) = self.read(p, at)?;
        let state = serde_json::from_slice(&bytes).with_context(|| format!("{path} is not a state snapshot"))?;
        Ok(Some((at, state)))
    }

    /// Whether any snapshot of the partition exists.
    pub fn any(&self, p: &PartitionId) -> anyhow::Result<bool> {
        Ok(!self.offsets(p)?.is_empty())
    }

    /// Durably store the windows after every record before `offset`.
    pub fn save<T: serde::Serialize>(&self, p: &PartitionId, offset: u64, state: &T) -> anyhow::Result<u64> {
        let bytes = serde_json::to_vec(state)?;
        let name = format!("{}/{offset:020}.json", self.partition_dir(p));
        match &self.place {
            Place::Dir(dir) => {
                let path = dir.join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                }
                write_atomically(&path, &bytes).with_context(|| format!("writing the state snapshot {}", path.display()))?;
            }
            Place::Store { store, prefix } => {
                let key = format!("{prefix}{name}");
                let mut w = store.create(&key).with_context(|| format!("writing {key} to {}", store.location()))?;
                std::io::Write::write_all(&mut w, &bytes)?;
                w.finish(&[]).with_context(|| format!("writing {key} to {}", store.location()))?;
            }
        }
        Ok(bytes.len() as u64)
    }

    /// Delete the snapshots before `offset` (the one at `offset` is what a restart needs).
    pub fn prune(&self, p: &PartitionId, offset: u64) -> anyhow::Result<()> {
        for old in self.offsets(p)?.into_iter().filter(|o| *o < offset) {
            let name = format!("{}/{old:020}.json", self.partition_dir(p));
            let gone = match &self.place {
                Place::Dir(dir) => std::fs::remove_file(dir.join(&name)),
                Place::Store { store, prefix } => store.delete(&format!("{prefix}{name}")),
            };
            gone.or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })?;
        }
        Ok(())
    }
}
