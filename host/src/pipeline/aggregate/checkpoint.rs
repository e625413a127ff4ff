//! State snapshots, one per committed input position (the aggregate's windows,
//! the actions' previous window rows).
//!
//! `<state dir>/aggregates/<pipeline>/<topic>+<partition>/<offset, 20 digits>.json`
//! holds the windows after every record before `offset`. A snapshot is written
//! before the source position is committed and older ones are deleted after,
//! so the snapshot at (or just below) the committed position always exists: a
//! restart resumes from it and re-reads exactly what it does not cover.

use crate::position::PartitionId;
use crate::store::write_atomically;
use anyhow::Context;
use std::path::PathBuf;

pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn new(state_dir: &std::path::Path, pipeline: &str) -> Self {
        Self::under(state_dir, "aggregates", pipeline)
    }

    /// Snapshots under `<state dir>/<what>/<pipeline>/`.
    pub fn under(state_dir: &std::path::Path, what: &str, pipeline: &str) -> Self {
        Checkpoints { dir: state_dir.join(what).join(pipeline) }
    }

    fn partition_dir(&self, p: &PartitionId) -> PathBuf {
        self.dir.join(format!("{}+{}", p.topic, p.partition))
    }

    /// Offsets with a snapshot, ascending.
    fn offsets(&self, p: &PartitionId) -> anyhow::Result<Vec<u64>> {
        let dir = self.partition_dir(p);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut out: Vec<u64> =
            entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse().ok())).collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The latest snapshot at or before `offset`: `(its offset, state)`.
    /// Snapshots beyond `offset` were written for a commit that never happened; they are ignored.
    pub fn load<T: serde::de::DeserializeOwned>(&self, p: &PartitionId, offset: u64) -> anyhow::Result<Option<(u64, T)>> {
        let Some(at) = self.offsets(p)?.into_iter().rev().find(|o| *o <= offset) else { return Ok(None) };
        let path = self.partition_dir(p).join(format!("{at:020}.json"));
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let state = serde_json::from_slice(&bytes).with_context(|| format!("{} is not a state snapshot", path.display()))?;
        Ok(Some((at, state)))
    }

    /// Whether any snapshot of the partition exists.
    pub fn any(&self, p: &PartitionId) -> anyhow::Result<bool> {
        Ok(!self.offsets(p)?.is_empty())
    }

    /// Durably store the windows after every record before `offset`.
    pub fn save<T: serde::Serialize>(&self, p: &PartitionId, offset: u64, state: &T) -> anyhow::Result<u64> {
        let dir = self.partition_dir(p);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let bytes = serde_json::to_vec(state)?;
        write_atomically(&dir.join(format!("{offset:020}.json")), &bytes).with_context(|| format!("writing a state snapshot in {}", dir.display()))?;
        Ok(bytes.len() as u64)
    }

    /// Delete the snapshots before `offset` (the one at `offset` is what a restart needs).
    pub fn prune(&self, p: &PartitionId, offset: u64) -> anyhow::Result<()> {
        for old in self.offsets(p)?.into_iter().filter(|o| *o < offset) {
            let path = self.partition_dir(p).join(format!("{old:020}.json"));
            std::fs::remove_file(&path).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })?;
        }
        Ok(())
    }
}
