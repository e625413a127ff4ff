//! Shard leases and checkpoints: one small JSON document per shard in the
//! landing store, `<folder>/<stream>/<shard id>.json`, changed only by
//! compare-and-swap ([`ObjectStore::put_if`]: a file lock on a local
//! directory, conditional writes on S3).
//!
//! The scheme follows the Kinesis Client Library's:
//! - A document names its holder and carries a counter that goes up on every
//!   write. A holder renews (writes) every third of the lease duration; a
//!   lease whose counter has not moved for a whole lease duration, as this
//!   process observed it on its own clock, is free to take. Clocks of
//!   different machines are never compared.
//! - Every worker aims at an equal share of the readable shards (counting the
//!   holders it sees plus itself); below its share it takes free leases, and
//!   when there are none it steals one from the most loaded holder.
//! - The checkpoint lives in the same document, so only the holder can move
//!   it: a worker that lost its lease finds its next write refused and lets go.
//! - A shard is readable once every parent is finished (read to its end, and
//!   that end checkpointed) or gone from the stream (trimmed by retention).

use super::client::ShardInfo;
use crate::position::Intent;
use crate::store::ObjectStore;
use crate::sync::lock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a shard's landed records end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    /// Nothing read yet: start where `[kinesis] start_from` says.
    Start,
    /// The record with this sequence number is the one at `next_offset`.
    At(String),
    /// The record at `next_offset` is the one after this sequence number.
    After(String),
}

/// A shard's lease and checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseDoc {
    pub stream: String,
    pub shard: String,
    pub parents: Vec<String>,
    pub owner: Option<String>,
    /// Goes up on every write; others judge a lease alive by seeing it move.
    pub counter: u64,
    /// Records of a shard are numbered from 0 in the order read (sequence
    /// numbers are too wide for the landing layout's offsets); this is the
    /// number of the first record not landed, and `resume` says which record that is.
    pub next_offset: u64,
    pub resume: Resume,
    /// Read to its end (a closed shard) and checkpointed there: its children may be read.
    pub finished: bool,
    /// The roll in flight, if any (see [`crate::position::Intent`]).
    pub intent: Option<Intent>,
}

impl LeaseDoc {
    pub fn new(stream: &str, shard: &ShardInfo) -> Self {
        LeaseDoc {
            stream: stream.to_owned(),
            shard: shard.id.clone(),
            parents: shard.parents().map(str::to_owned).collect(),
            owner: None,
            counter: 0,
            next_offset: 0,
            resume: Resume::Start,
            finished: false,
            intent: None,
        }
    }
}

/// A document as read, with the version a compare-and-swap needs.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub doc: LeaseDoc,
    pub version: String,
}

pub struct LeaseTable {
    store: Arc<dyn ObjectStore>,
    folder: String,
    pub owner: String,
    pub duration: Duration,
    /// Per document key: the counter last seen, and when it was first seen at that value.
    seen: std::sync::Mutex<HashMap<String, (u64, Instant)>>,
}

impl LeaseTable {
    pub fn new(store: Arc<dyn ObjectStore>, folder: String, owner: String, duration: Duration) -> Self {
        LeaseTable { store, folder, owner, duration, seen: Default::default() }
    }

    fn key(&self, stream: &str, shard: &str) -> String {
        format!("{}/{stream}/{shard}.json", self.folder)
    }

    /// Create the document of a shard seen for the first time.
    pub fn ensure(&self, stream: &str, shard: &ShardInfo) -> io::Result<()> {
        let key = self.key(stream, &shard.id);
        if self.store.get_versioned(&key)?.is_some() {
            return Ok(());
        }
        // Losing this race to another worker is fine: it created the same document.
        self.store.put_if(&key, &serde_json::to_vec_pretty(&LeaseDoc::new(stream, shard))?, None)?;
        Ok(())
    }

    /// Every document of `stream`, noting whose counters moved.
    pub fn read_stream(&self, stream: &str) -> io::Result<Vec<Versioned>> {
        let mut out = Vec::new();
        for key in self.store.list(&format!("{}/{stream}/", self.folder))? {
            if !key.ends_with(".json") {
                continue;
            }
            let Some((bytes, version)) = self.store.get_versioned(&key)? else { continue };
            let doc: LeaseDoc =
                serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("lease document {key} is not valid: {e}")))?;
            let now = Instant::now();
            let mut seen = lock(&self.seen);
            let entry = seen.entry(key).or_insert((doc.counter, now));
            if entry.0 != doc.counter {
                *entry = (doc.counter, now);
            }
            out.push(Versioned { doc, version });
        }
        Ok(out)
    }

    /// Whether the holder of `v` has stopped renewing it (or there is none).
    pub fn is_free(&self, v: &Versioned) -> bool {
        match &v.doc.owner {
            None => true,
            Some(o) if *o == self.owner => false,
            Some(_) => lock(&self.seen)
                .get(&self.key(&v.doc.stream, &v.doc.shard))
                .is_some_and(|(counter, since)| *counter == v.doc.counter && since.elapsed() >= self.duration),
        }
    }

    /// Change the document and write it if nobody else did since it was read.
    /// `Ok(false)`: somebody did (`v` is then stale).
    pub fn write(&self, v: &mut Versioned, change: impl FnOnce(&mut LeaseDoc)) -> io::Result<bool> {
        let mut doc = v.doc.clone();
        change(&mut doc);
        doc.counter += 1;
        let key = self.key(&doc.stream, &doc.shard);
        match self.store.put_if(&key, &serde_json::to_vec_pretty(&doc)?, Some(&v.version))? {
            Some(version) => {
                *v = Versioned { doc, version };
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// What a worker should take this round.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Free leases to take, by shard id.
    pub take: Vec<String>,
    /// A lease to steal from an over-loaded holder.
    pub steal: Option<String>,
}

/// Shards of a stream that may be read now: not finished, and every parent
/// finished or gone from the stream (`listed`).
pub fn readable<'a>(docs: &'a [Versioned], listed: &BTreeSet<String>) -> Vec<&'a Versioned> {
    let finished: BTreeSet<&str> = docs.iter().filter(|v| v.doc.finished).map(|v| v.doc.shard.as_str()).collect();
    docs.iter().filter(|v| !v.doc.finished).filter(|v| v.doc.parents.iter().all(|p| finished.contains(p.as_str()) || !listed.contains(p))).collect()
}

/// The KCL's balancing rule over the readable shards of every stream.
/// `expected_workers` counts workers known to exist though they may hold
/// nothing yet (this process's other workers, at start-up), so the first to
/// start does not take everything only to have it stolen back.
pub fn plan(readable: &[&Versioned], me: &str, expected_workers: usize, is_free: impl Fn(&Versioned) -> bool) -> Plan {
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    load.insert(me, 0);
    for v in readable {
        if let Some(o) = v.doc.owner.as_deref().filter(|_| !is_free(v)) {
            *load.entry(o).or_default() += 1;
        }
    }
    let target = readable.len().div_ceil(load.len().max(expected_workers));
    let mine = load[me];
    let free: Vec<String> = readable.iter().filter(|v| is_free(v)).map(|v| v.doc.shard.clone()).collect();
    let want = target.saturating_sub(mine);
    let take: Vec<String> = free.into_iter().take(want).collect();
    let mut steal = None;
    if take.is_empty() && want > 0 {
        let busiest = load.iter().filter(|(o, _)| **o != me).max_by_key(|(o, n)| (**n, std::cmp::Reverse(**o)));
        if let Some((victim, _)) = busiest.filter(|(_, n)| **n > target) {
            steal = readable.iter().find(|v| v.doc.owner.as_deref() == Some(*victim)).map(|v| v.doc.shard.clone());
        }
    }
    Plan { take, steal }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::LocalStore;

    fn shard(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parent: parents.first().map(|p| p.to_string()),
            adjacent_parent: parents.get(1).map(|p| p.to_string()),
            closed: false,
            hash_key_start: "0".into(),
            hash_key_end: "1".into(),
        }
    }

    fn doc(id: &str, parents: &[&str], owner: Option<&str>, finished: bool) -> Versioned {
        let mut d = LeaseDoc::new("s", &shard(id, parents));
        d.owner = owner.map(str::to_owned);
        d.finished = finished;
        Versioned { doc: d, version: String::new() }
    }

    fn listed(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn children_wait_for_every_parent() {
        let docs = vec![doc("p", &[], None, false), doc("c1", &["p"], None, false), doc("c2", &["p"], None, false)];
        let ids: Vec<&str> = readable(&docs, &listed(&["p", "c1", "c2"])).iter().map(|v| v.doc.shard.as_str()).collect();
        assert_eq!(ids, ["p"], "children of an unfinished parent wait");
        let docs = vec![doc("p", &[], None, true), doc("c1", &["p"], None, false), doc("c2", &["p"], None, false)];
        let ids: Vec<&str> = readable(&docs, &listed(&["p", "c1", "c2"])).iter().map(|v| v.doc.shard.as_str()).collect();
        assert_eq!(ids, ["c1", "c2"]);
        // A merge: both parents must be finished.
        let docs = vec![doc("a", &[], None, true), doc("b", &[], None, false), doc("m", &["a", "b"], None, false)];
        let ids: Vec<&str> = readable(&docs, &listed(&["a", "b", "m"])).iter().map(|v| v.doc.shard.as_str()).collect();
        assert_eq!(ids, ["b"]);
        // A parent trimmed away by retention does not block its child.
        let docs = vec![doc("c", &["gone"], None, false)];
        assert_eq!(readable(&docs, &listed(&["c"])).len(), 1);
    }

    #[test]
    fn workers_take_an_equal_share_then_steal() {
        let docs = [doc("0", &[], None, false), doc("1", &[], None, false), doc("2", &[], None, false), doc("3", &[], None, false)];
        let r: Vec<&Versioned> = docs.iter().collect();
        let free = |v: &Versioned| v.doc.owner.is_none();
        assert_eq!(plan(&r, "a", 1, free).take.len(), 4, "alone: everything");
        assert_eq!(plan(&r, "a", 2, free).take.len(), 2, "with a sibling starting: half");
        let docs = [doc("0", &[], Some("a"), false), doc("1", &[], Some("a"), false), doc("2", &[], Some("a"), false), doc("3", &[], Some("a"), false)];
        let r: Vec<&Versioned> = docs.iter().collect();
        let p = plan(&r, "b", 1, free);
        assert_eq!(p.take, Vec::<String>::new());
        assert_eq!(p.steal.as_deref(), Some("0"), "a newcomer steals from the busiest holder");
        let docs = [doc("0", &[], Some("a"), false), doc("1", &[], Some("a"), false), doc("2", &[], Some("b"), false), doc("3", &[], Some("b"), false)];
        let r: Vec<&Versioned> = docs.iter().collect();
        assert_eq!(plan(&r, "b", 1, free), Plan { take: vec![], steal: None }, "balanced: nothing moves");
        // An expired lease counts as free, and its holder as gone.
        let p = plan(&r, "b", 1, |v: &Versioned| v.doc.owner.as_deref() == Some("a"));
        assert_eq!(p.take, vec!["0".to_string(), "1".to_string()]);
    }

    #[test]
    fn writes_are_refused_to_a_stale_holder_and_expiry_is_observed() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let a = LeaseTable::new(store.clone(), "_sluice/kinesis/t".into(), "a".into(), Duration::from_millis(200));
        let b = LeaseTable::new(store, "_sluice/kinesis/t".into(), "b".into(), Duration::from_millis(200));
        a.ensure("s", &shard("shardId-000000000000", &[])).unwrap();
        b.ensure("s", &shard("shardId-000000000000", &[])).unwrap();
        let mut va = a.read_stream("s").unwrap().remove(0);
        assert!(a.write(&mut va, |d| d.owner = Some("a".into())).unwrap());
        let mut vb = b.read_stream("s").unwrap().remove(0);
        assert!(!b.is_free(&vb), "just renewed");
        std::thread::sleep(Duration::from_millis(250));
        let mut vb2 = b.read_stream("s").unwrap().remove(0);
        assert!(b.is_free(&vb2), "not renewed for a lease duration");
        assert!(b.write(&mut vb2, |d| d.owner = Some("b".into())).unwrap());
        assert!(!a.write(&mut va, |d| d.next_offset = 10).unwrap(), "the old holder's checkpoint is refused");
        assert!(!b.write(&mut vb, |d| d.next_offset = 10).unwrap(), "a stale read is refused too");
        assert_eq!(b.read_stream("s").unwrap()[0].doc.owner.as_deref(), Some("b"));
    }
}
