//! The worker against a scripted source: what it does when the source's
//! partitions change under it.

use super::StopFlag;
use crate::pipeline::config::{BatchConfig, RollConfig};
use crate::pipeline::control::AutoRollbackConfig;
use crate::pipeline::{PipelineConfig, PipelineControl, PipelineStats};
use crate::position::{Checkpoint, Fetched, Intent, PartitionId};
use crate::runtime::registry::Registry;
use crate::runtime::{Runtime, SandboxLimits};
use crate::source::Source;
use crate::store::ObjectStore;
use crate::store::local::LocalStore;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records 0..`RECORDS` of one partition, `{"n": offset}` each.
const RECORDS: u64 = 100;

/// What the scripted source saw and how it is set up; shared with the test.
#[derive(Default)]
struct Script {
    /// After this many fetches, another reader lands and commits records up
    /// to the given offset while this one loses the partition and takes it back.
    retake_after: Option<(usize, u64)>,
    fetches: usize,
    checkpoint: u64,
    intent: Option<Intent>,
    /// The loss not yet reported through `revoked`.
    unreported_loss: bool,
    changed: bool,
    /// `[start, end)` of every batch handed out, in order, and whether it came after the retake.
    served: Vec<(u64, u64, bool)>,
    commits: Vec<u64>,
    retaken: bool,
}

struct ScriptedSource {
    id: PartitionId,
    script: Arc<Mutex<Script>>,
}

impl ScriptedSource {
    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().expect("script")
    }
}

impl Source for ScriptedSource {
    fn partitions(&mut self) -> anyhow::Result<Vec<PartitionId>> {
        Ok(vec![self.id.clone()])
    }

    fn checkpoint(&mut self, _: &PartitionId) -> anyhow::Result<Checkpoint> {
        let s = self.script();
        Ok(Checkpoint { next_offset: s.checkpoint, intent: s.intent.clone() })
    }

    fn fetch(&mut self, _: &PartitionId, offset: u64, max_records: usize) -> anyhow::Result<Fetched> {
        let mut s = self.script();
        s.fetches += 1;
        if let Some((after, landed_to)) = s.retake_after
            && s.fetches > after
            && !s.retaken
        {
            s.retaken = true;
            s.checkpoint = landed_to;
            s.intent = None;
            s.unreported_loss = true;
            s.changed = true;
        }
        if s.unreported_loss {
            // As the Kinesis source does: nothing for a position the pipeline must first drop.
            return Ok(Fetched { next_offset: offset, ..Default::default() });
        }
        let end = (offset + max_records as u64).min(RECORDS);
        let mut out = Fetched::starting_at(offset, 16, 256);
        for n in offset..end {
            out.push(n, format!("{{\"n\":{n}}}").as_bytes(), b"k", 1_700_000_000_000);
        }
        if end > offset {
            let retaken = s.retaken;
            s.served.push((offset, end, retaken));
        }
        Ok(out)
    }

    fn record_intent(&mut self, _: &PartitionId, intent: &Intent) -> anyhow::Result<()> {
        let mut s = self.script();
        anyhow::ensure!(!s.unreported_loss, "lost since read");
        s.intent = Some(intent.clone());
        Ok(())
    }

    fn commit(&mut self, _: &PartitionId, next_offset: u64) -> anyhow::Result<()> {
        let mut s = self.script();
        anyhow::ensure!(!s.unreported_loss, "lost since read");
        s.checkpoint = next_offset;
        s.intent = None;
        s.commits.push(next_offset);
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) {
        std::thread::sleep(timeout.min(Duration::from_millis(5)));
    }

    fn end_offset(&mut self, _: &PartitionId) -> anyhow::Result<Option<u64>> {
        Ok(Some(RECORDS))
    }

    fn assignment_changed(&mut self) -> bool {
        std::mem::take(&mut self.script().changed)
    }

    fn revoked(&mut self) -> Vec<PartitionId> {
        let lost = std::mem::take(&mut self.script().unreported_loss);
        if lost { vec![self.id.clone()] } else { Vec::new() }
    }
}

/// A pipeline over topic `t` landing raw records, in batches of 10, rolling as `roll` says.
pub(super) fn raw_config(name: &str, roll: RollConfig) -> PipelineConfig {
    PipelineConfig {
        name: name.into(),
        source: None,
        topics: vec!["t".into()],
        transforms: Vec::new(),
        land_raw: true,
        table: None,
        batch: BatchConfig { max_records: 10 },
        roll,
        workers: None,
        auto_rollback: AutoRollbackConfig::default(),
        aggregate: None,
        join: None,
        watermark: Default::default(),
        actions: Vec::new(),
        output: None,
    }
}

/// The control of `config`'s pipeline (a registry with the built-ins) and a landing, under `dir`.
pub(super) fn control_and_store(config: &PipelineConfig, dir: &std::path::Path) -> (Arc<PipelineControl>, Arc<dyn ObjectStore>) {
    let runtime = Runtime::new(SandboxLimits::default(), None).expect("runtime");
    let registry = Arc::new(Registry::open(runtime, dir.join("transforms")).expect("registry"));
    let control = PipelineControl::load(&config.name, &[], registry, config.auto_rollback.clone(), &dir.join("state")).expect("control");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.join("landing")).expect("store"));
    (control, store)
}

/// Run a raw-landing pipeline over the scripted source until every record
/// was handed out and rolled; returns the landed `n`s, counted.
fn run(script: Arc<Mutex<Script>>, dir: &std::path::Path) -> BTreeMap<u64, usize> {
    let config = raw_config("scripted", RollConfig { max_records: 25, max_age_ms: 60_000, ..Default::default() });
    let (control, store) = control_and_store(&config, dir);
    let source = ScriptedSource { id: PartitionId { topic: Arc::from("t"), partition: 0 }, script: script.clone() };
    let worker = super::super::build(&config, super::super::Part::Whole, control, Box::new(source), store.clone(), Arc::new(PipelineStats::default()), None)
        .expect("worker");
    let stop = StopFlag::default();
    let thread = std::thread::spawn({
        let stop = stop.clone();
        move || worker.run(&stop)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let read_to_the_end = || script.lock().expect("script").served.last().is_some_and(|(_, end, _)| *end == RECORDS);
    while !read_to_the_end() {
        assert!(Instant::now() < deadline, "the worker did not read to the end: served {:?}", script.lock().expect("script").served);
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.stop();
    thread.join().expect("worker thread").expect("worker");
    landed(store.as_ref())
}

/// How often each `n` landed raw (finished objects only).
fn landed(store: &dyn ObjectStore) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for key in store.list("topics/").expect("list") {
        for line in String::from_utf8(store.get(&key).expect("object")).expect("UTF-8").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a landed line is JSON");
            *counts.entry(v["n"].as_u64().expect("n")).or_default() += 1;
        }
    }
    counts
}

#[test]
fn a_partition_lost_and_taken_back_is_reopened_from_its_checkpoint_not_from_the_stale_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two batches (records 0..20) are read into an open segment; then another
    // reader lands and commits 0..40 while this one loses the partition, and
    // this one takes it back before it looks at its assignment again.
    let script = Arc::new(Mutex::new(Script { retake_after: Some((2, 40)), ..Default::default() }));
    let counts = run(script.clone(), dir.path());
    let s = script.lock().expect("script");
    let after: Vec<(u64, u64)> = s.served.iter().filter(|(_, _, retaken)| *retaken).map(|(a, b, _)| (*a, *b)).collect();
    assert_eq!(after.first().map(|(start, _)| *start), Some(40), "reading went on from the other reader's checkpoint: {after:?}");
    assert!(s.commits.iter().all(|c| *c > 40), "no commit went back below the other reader's checkpoint: {:?}", s.commits);
    assert_eq!(s.commits.last(), Some(&RECORDS), "everything read was committed");
    let want: BTreeMap<u64, usize> = (40..RECORDS).map(|n| (n, 1)).collect();
    assert_eq!(counts, want, "this worker landed exactly the records after the other reader's, once each");
}

#[test]
fn without_a_change_of_assignment_every_record_lands_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Arc::new(Mutex::new(Script::default()));
    let counts = run(script.clone(), dir.path());
    let want: BTreeMap<u64, usize> = (0..RECORDS).map(|n| (n, 1)).collect();
    assert_eq!(counts, want);
    let commits = script.lock().expect("script").commits.clone();
    assert!(commits.windows(2).all(|w| w[0] < w[1]) && commits.last() == Some(&RECORDS), "commits: {commits:?}");
}
