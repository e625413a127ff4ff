//! The commit protocol against a stage that fails at each hook: no record is
//! folded twice, none is lost, and a partition whose state cannot be opened
//! again is failed loudly instead of folding on.

use super::tests::{control_and_store, raw_config};
use super::{PipelineWorker, StopFlag};
use crate::pipeline::PipelineStats;
use crate::pipeline::config::RollConfig;
use crate::pipeline::plan::Planned;
use crate::pipeline::stage::{Flow, Roll, Stage};
use crate::pipeline::table::RawStage;
use crate::position::{Checkpoint, Fetched, Intent, PartitionId};
use crate::sink::SegmentSpec;
use crate::source::Source;
use crate::store::ObjectStore;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records per partition, `{"n": offset}` each.
const RECORDS: u64 = 120;

fn partition(n: u32) -> PartitionId {
    PartitionId { topic: Arc::from("t"), partition: n }
}

/// A source of `partitions` partitions whose positions live in memory.
/// `revoke_at`: after that many fetches, partition 0 goes away; after as
/// many more it comes back.
#[derive(Default)]
struct Positions {
    checkpoints: BTreeMap<u32, (u64, Option<Intent>)>,
    commits: BTreeMap<u32, Vec<u64>>,
    fetches: usize,
    revoke_at: Option<usize>,
    revoked: bool,
    given_back: bool,
    changed: bool,
    /// Records come in one every this long from the first fetch on (none: all there at once).
    trickle: Option<(Duration, Option<Instant>)>,
}

struct MemorySource {
    partitions: u32,
    positions: Arc<Mutex<Positions>>,
}

impl MemorySource {
    fn positions(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions.lock().expect("positions")
    }
}

impl Source for MemorySource {
    fn partitions(&mut self) -> anyhow::Result<Vec<PartitionId>> {
        let revoked = self.positions().revoked && !self.positions().given_back;
        Ok((0..self.partitions).filter(|p| !(revoked && *p == 0)).map(partition).collect())
    }

    fn checkpoint(&mut self, p: &PartitionId) -> anyhow::Result<Checkpoint> {
        let (next_offset, intent) = self.positions().checkpoints.get(&p.partition).cloned().unwrap_or_default();
        Ok(Checkpoint { next_offset, intent })
    }

    fn fetch(&mut self, p: &PartitionId, offset: u64, max_records: usize) -> anyhow::Result<Fetched> {
        let mut s = self.positions();
        s.fetches += 1;
        if let Some(at) = s.revoke_at {
            if s.fetches == at && !s.revoked {
                s.revoked = true;
                s.changed = true;
            } else if s.fetches == 2 * at && s.revoked && !s.given_back {
                s.given_back = true;
                s.changed = true;
            }
        }
        let mut end = (offset + max_records as u64).min(RECORDS);
        if let Some((every, started)) = &mut s.trickle {
            let arrived = started.get_or_insert_with(Instant::now).elapsed().as_micros() / every.as_micros().max(1);
            end = end.min(arrived as u64);
        }
        let mut out = Fetched::starting_at(offset, 16, 256);
        for n in offset..end.max(offset) {
            out.push(n, format!("{{\"p\":{},\"n\":{n}}}", p.partition).as_bytes(), b"", 1_700_000_000_000);
        }
        Ok(out)
    }

    fn record_intent(&mut self, p: &PartitionId, intent: &Intent) -> anyhow::Result<()> {
        self.positions().checkpoints.entry(p.partition).or_default().1 = Some(intent.clone());
        Ok(())
    }

    fn commit(&mut self, p: &PartitionId, next_offset: u64) -> anyhow::Result<()> {
        let mut s = self.positions();
        s.checkpoints.insert(p.partition, (next_offset, None));
        s.commits.entry(p.partition).or_default().push(next_offset);
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) {
        std::thread::sleep(timeout.min(Duration::from_millis(2)));
    }

    fn end_offset(&mut self, _: &PartitionId) -> anyhow::Result<Option<u64>> {
        Ok(Some(RECORDS))
    }

    fn assignment_changed(&mut self) -> bool {
        std::mem::take(&mut self.positions().changed)
    }

    fn revoked(&mut self) -> Vec<PartitionId> {
        Vec::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Open,
    Process,
    Prepare,
    Land,
    Committed,
}

/// What the fake stage did, shared with the test.
#[derive(Default)]
struct Folds {
    /// The offsets folded into each partition's live state.
    live: BTreeMap<u32, BTreeSet<u64>>,
    /// Snapshots at each landed position.
    snapshots: BTreeMap<(u32, u64), BTreeSet<u64>>,
    /// Offsets folded into a state that already held them.
    twice: Vec<(u32, u64)>,
    calls: BTreeMap<&'static str, usize>,
    forgotten: Vec<u32>,
    /// Rolls landed while the stage was still busy with a batch of the segment.
    landed_busy: usize,
}

/// A stage that keeps, per partition, the set of offsets it folded (a stand-in
/// for windows or a join), snapshots it at each roll, and fails on purpose:
/// for each `(hook, n, times)`, from the `n`-th call of `hook` on, `times` calls.
struct FoldStage {
    folds: Arc<Mutex<Folds>>,
    fails: Vec<(Hook, usize, usize)>,
    /// After each batch, `settle` says busy this many times (work in the background).
    busy_for: usize,
    busy_left: BTreeMap<u32, usize>,
}

impl FoldStage {
    fn call(&self, hook: Hook) -> anyhow::Result<()> {
        let name = match hook {
            Hook::Open => "open",
            Hook::Process => "process",
            Hook::Prepare => "prepare",
            Hook::Land => "land",
            Hook::Committed => "committed",
        };
        let mut f = self.folds.lock().expect("folds");
        let n = f.calls.entry(name).or_default();
        *n += 1;
        if self.fails.iter().any(|&(h, from, times)| h == hook && *n >= from && *n < from + times) {
            anyhow::bail!("the fold stage fails at {name} (call {n}) on purpose");
        }
        Ok(())
    }
}

impl Stage for FoldStage {
    fn name(&self) -> &'static str {
        "fold"
    }

    fn open(&mut self, p: &PartitionId, committed: u64) -> anyhow::Result<()> {
        self.call(Hook::Open)?;
        let mut f = self.folds.lock().expect("folds");
        let state = if committed == 0 {
            BTreeSet::new()
        } else {
            f.snapshots.get(&(p.partition, committed)).cloned().ok_or_else(|| anyhow::anyhow!("no snapshot at {committed}"))?
        };
        f.live.insert(p.partition, state);
        Ok(())
    }

    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        let p = flow.partition.partition;
        self.busy_left.insert(p, self.busy_for);
        {
            let mut f = self.folds.lock().expect("folds");
            let mut twice = Vec::new();
            let live = f.live.entry(p).or_default();
            for &o in &flow.fetched.offsets {
                if !live.insert(o) {
                    twice.push((p, o));
                }
            }
            f.twice.extend(twice);
        }
        self.call(Hook::Process)
    }

    fn prepare(&mut self, _: &PartitionId, _: &mut Intent) -> anyhow::Result<()> {
        self.call(Hook::Prepare)
    }

    fn settle(&mut self, p: &PartitionId, _: &mut crate::pipeline::stage::Landing<'_>) -> anyhow::Result<crate::pipeline::stage::Settled> {
        let left = self.busy_left.entry(p.partition).or_default();
        if *left == 0 {
            return Ok(crate::pipeline::stage::Settled::Done);
        }
        *left -= 1;
        Ok(crate::pipeline::stage::Settled::Busy)
    }

    fn land(&mut self, roll: &Roll<'_>) -> anyhow::Result<()> {
        self.call(Hook::Land)?;
        let busy = self.busy_left.get(&roll.partition.partition).is_some_and(|n| *n > 0);
        let mut f = self.folds.lock().expect("folds");
        f.landed_busy += usize::from(busy);
        let live = f.live.get(&roll.partition.partition).cloned().unwrap_or_default();
        f.snapshots.insert((roll.partition.partition, roll.intent.end), live);
        Ok(())
    }

    fn committed(&mut self, _: &PartitionId, _: u64) -> anyhow::Result<()> {
        self.call(Hook::Committed)
    }

    fn forget(&mut self, p: &PartitionId) {
        let mut f = self.folds.lock().expect("folds");
        f.live.remove(&p.partition);
        f.forgotten.push(p.partition);
    }
}

struct Run {
    folds: Arc<Mutex<Folds>>,
    positions: Arc<Mutex<Positions>>,
    stats: Arc<PipelineStats>,
    store: Arc<dyn ObjectStore>,
}

/// A worker over `partitions` partitions with the raw landing and `stage`,
/// run until `done` says so (or 30 s pass), then stopped.
fn run(dir: &std::path::Path, partitions: u32, positions: Positions, stage: FoldStage, done: impl Fn(&Positions) -> bool) -> Run {
    let config = raw_config("protocol", RollConfig { max_records: 30, max_age_ms: 60_000, ..Default::default() });
    let (control, store) = control_and_store(&config, dir);
    let positions = Arc::new(Mutex::new(positions));
    let folds = stage.folds.clone();
    let source = MemorySource { partitions, positions: positions.clone() };
    let stats = Arc::new(PipelineStats::default());
    let planned =
        Planned { spec: SegmentSpec { pipeline: config.name.clone(), land_raw: true, table: None }, stages: vec![Box::new(RawStage), Box::new(stage)] };
    let worker = PipelineWorker::new(config, planned, false, Box::new(source), store.clone(), stats.clone(), control);
    let stop = StopFlag::default();
    let thread = std::thread::spawn({
        let stop = stop.clone();
        move || worker.run(&stop)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&positions.lock().expect("positions")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.stop();
    thread.join().expect("worker thread").expect("worker");
    Run { folds, positions, stats, store }
}

fn all_committed(partitions: u32) -> impl Fn(&Positions) -> bool {
    move |s| (0..partitions).all(|p| s.checkpoints.get(&p).is_some_and(|(next, intent)| *next == RECORDS && intent.is_none()))
}

/// How often each `(partition, n)` landed raw (finished objects only).
fn landed(store: &dyn ObjectStore) -> BTreeMap<(u64, u64), usize> {
    let mut counts = BTreeMap::new();
    for key in store.list("topics/").expect("list") {
        for line in String::from_utf8(store.get(&key).expect("object")).expect("UTF-8").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a landed line is JSON");
            *counts.entry((v["p"].as_u64().expect("p"), v["n"].as_u64().expect("n"))).or_default() += 1;
        }
    }
    counts
}

fn stage(fails: &[(Hook, usize, usize)]) -> FoldStage {
    FoldStage { folds: Arc::default(), fails: fails.to_vec(), busy_for: 0, busy_left: BTreeMap::new() }
}

/// Every record landed raw once, and the state committed at the end holds each offset once.
fn assert_exact(r: &Run, partitions: u32, what: &str) {
    let f = r.folds.lock().expect("folds");
    assert!(f.twice.is_empty(), "{what}: records folded twice: {:?}", f.twice);
    for p in 0..partitions {
        let last = f.snapshots.get(&(p, RECORDS)).unwrap_or_else(|| panic!("{what}: no snapshot at the end of partition {p}"));
        assert_eq!(last, &(0..RECORDS).collect::<BTreeSet<u64>>(), "{what}: partition {p}'s committed state");
        let commits = &r.positions.lock().expect("positions").commits[&p];
        assert!(commits.windows(2).all(|w| w[0] < w[1]), "{what}: commits of {p} went back: {commits:?}");
    }
    let want: BTreeMap<(u64, u64), usize> = (0..partitions as u64).flat_map(|p| (0..RECORDS).map(move |n| ((p, n), 1))).collect();
    assert_eq!(landed(r.store.as_ref()), want, "{what}: every record landed raw exactly once");
}

#[test]
fn a_stage_failing_once_at_any_hook_folds_nothing_twice_and_loses_nothing() {
    // Open fails at the start (the partition is failed, then opened again); the others mid-stream.
    for (hook, fail_on) in [(Hook::Open, 1), (Hook::Process, 4), (Hook::Prepare, 2), (Hook::Land, 2), (Hook::Committed, 1)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path(), 2, Positions::default(), stage(&[(hook, fail_on, 1)]), all_committed(2));
        assert_exact(&r, 2, &format!("{hook:?}"));
        let error = r.stats.snapshot().last_error.unwrap_or_default();
        if hook != Hook::Committed {
            assert!(error.contains("fails at"), "{hook:?}: the failure shows in the pipeline's health: {error:?}");
        }
    }
}

#[test]
fn a_partition_whose_state_cannot_be_reopened_is_failed_loudly_then_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The second land fails (its partition is rewound), then reopening the
    // state fails twice (the two opens at the start are calls 1 and 2): the
    // partition is not read meanwhile, the other one goes on, nothing is
    // folded twice, and once the state opens again everything lands once.
    let r = run(dir.path(), 2, Positions::default(), stage(&[(Hook::Land, 2, 1), (Hook::Open, 3, 2)]), all_committed(2));
    assert_exact(&r, 2, "reopened");
    let f = r.folds.lock().expect("folds");
    assert_eq!(f.calls["open"], 5, "two starts, two failed reopens, one that worked: {:?}", f.calls);
    let error = r.stats.snapshot().last_error.unwrap_or_default();
    assert!(error.contains("is not read") || error.contains("fails at"), "the failed partition shows in the pipeline's health: {error:?}");
}

#[test]
fn a_roll_waits_for_the_background_work_of_its_last_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every batch keeps the stage busy for a few turns; segments are due to
    // roll right after a batch (30 records, batches of 10).
    let mut s = stage(&[]);
    s.busy_for = 3;
    let r = run(dir.path(), 2, Positions::default(), s, all_committed(2));
    assert_exact(&r, 2, "busy");
    assert_eq!(r.folds.lock().expect("folds").landed_busy, 0, "no roll landed before the stage was done with its batches");
}

#[test]
fn a_revoked_partition_is_forgotten_and_restored_from_its_snapshot_when_given_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let positions = Positions { revoke_at: Some(14), ..Default::default() };
    let r = run(dir.path(), 2, positions, stage(&[]), |s| s.given_back && all_committed(2)(s));
    assert!(r.positions.lock().expect("positions").given_back, "the partition was revoked and given back");
    let f = r.folds.lock().expect("folds");
    assert_eq!(f.forgotten, vec![0], "the revoked partition's state was dropped");
    assert_eq!(f.calls["open"], 3, "opened at the start (2), and again from its snapshot when given back");
    drop(f);
    assert_exact_state(&r, 2);
}

/// The committed state holds each offset once (records may land raw again
/// after a revocation: the new owner re-reads what was not committed).
fn assert_exact_state(r: &Run, partitions: u32) {
    let f = r.folds.lock().expect("folds");
    assert!(f.twice.is_empty(), "records folded twice: {:?}", f.twice);
    for p in 0..partitions {
        assert_eq!(f.snapshots.get(&(p, RECORDS)), Some(&(0..RECORDS).collect::<BTreeSet<u64>>()), "partition {p}'s committed state");
    }
}

/// An HTTP receiver that refuses (503) every request carrying actions of
/// partition 0 and acknowledges the others; counts both.
fn receiver() -> (String, Arc<Mutex<(u64, u64)>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let seen = counts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let (mut key, mut length, mut line) = (String::new(), 0usize, String::new());
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("idempotency-key:") {
                    key = v.trim().to_owned();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let refuse = key.contains("/t/0/");
            {
                let mut c = seen.lock().expect("counts");
                if refuse { c.0 += 1 } else { c.1 += 1 }
            }
            let status = if refuse { "503 Service Unavailable" } else { "200 OK" };
            let _ = conn.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
        }
    });
    (url, counts)
}

#[test]
fn a_webhook_retrying_for_one_partition_holds_back_only_that_partition() {
    use crate::pipeline::action::{ActionStage, Placed};
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, counts) = receiver();
    let action: crate::pipeline::action::ActionConfig = toml::from_str(&format!(
        "name = \"every\"\non = \"records\"\ndetector = \"threshold\"\nwhen = {{ column = \"n\", above = -1 }}\n\
         [webhook]\nurl = \"{url}\"\nbatch_max = 50\ntimeout_ms = 2000\nretry_initial_ms = 20\nretry_max_ms = 100\ngive_up_after_ms = 600000\n"
    ))
    .expect("action config");
    let config = raw_config("protocol", RollConfig { max_records: 1000, max_age_ms: 200, ..Default::default() });
    let (control, store) = control_and_store(&config, dir.path());
    let stats = Arc::new(PipelineStats::default());
    let actions = ActionStage::new("protocol", &[action], false, Placed { only: None, first_stage: 0 }, control.registry(), &dir.path().join("state"), &stats)
        .expect("actions")
        .expect("an action");
    // 120 records a partition over about 2.4 s: partition 1 rolls every 200 ms meanwhile.
    let positions = Arc::new(Mutex::new(Positions { trickle: Some((Duration::from_millis(20), None)), ..Default::default() }));
    let source = MemorySource { partitions: 2, positions: positions.clone() };
    let planned =
        Planned { spec: SegmentSpec { pipeline: config.name.clone(), land_raw: true, table: None }, stages: vec![Box::new(RawStage), Box::new(actions)] };
    let worker = PipelineWorker::new(config, planned, false, Box::new(source), store.clone(), stats.clone(), control);
    let stop = StopFlag::default();
    let thread = std::thread::spawn({
        let stop = stop.clone();
        move || worker.run(&stop)
    });
    // Partition 1 reads, delivers and commits in rolls of 200 ms while
    // partition 0's first batch is retried against the 503s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = || {
        let s = positions.lock().expect("positions");
        s.commits.get(&1).and_then(|c| c.last()).copied() == Some(RECORDS) && counts.lock().expect("counts").0 >= 5
    };
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (commits_0, commits_1) = {
        let s = positions.lock().expect("positions");
        (s.commits.get(&0).cloned().unwrap_or_default(), s.commits.get(&1).cloned().unwrap_or_default())
    };
    stop.stop();
    thread.join().expect("worker thread").expect("worker");
    let (refused, acknowledged) = *counts.lock().expect("counts");
    assert_eq!(commits_1.last(), Some(&RECORDS), "partition 1 rolled and committed everything meanwhile: {commits_1:?}");
    assert!(commits_1.len() >= 4, "in rolls as the records came, not held until the end: {commits_1:?}");
    assert!(commits_0.is_empty(), "partition 0 committed nothing its webhook did not acknowledge: {commits_0:?}");
    assert!(refused >= 5 && acknowledged > 0, "the receiver refused partition 0's actions {refused} times and took partition 1's {acknowledged} times");
}
