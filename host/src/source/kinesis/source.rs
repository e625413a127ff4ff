//! A Kinesis shard reader as a pipeline [`Source`].
//!
//! Each pipeline worker holds leases on some shards of the pipeline's streams
//! (see [`super::lease`]) and reads them with GetRecords, one call per shard at
//! a time, paced to Kinesis' five calls per second per shard and slower when
//! the shard is caught up. Throttling is answered with a doubling pause, never
//! with an error.
//!
//! Positions: the landing layout names objects after 10-digit offsets, and
//! Kinesis sequence numbers are up to 128 bits wide, so records of a shard are
//! numbered 0, 1, 2… in the order read. The lease document keeps the number of
//! the first record not landed together with the sequence number that record
//! comes after, so a restart — on this machine or another — numbers every
//! record as before and rewrites the same objects. The first record of a shard
//! is pinned (its sequence number written down) before it is handed out, so
//! `latest` or a retention trim cannot shift the numbering after a crash.
//!
//! Resharding: a child shard becomes readable only once each parent is read to
//! its end and that end is checkpointed, so per partition key, every record of
//! the parent lands before any record of the child.

use super::client::{CallError, Kinesis, StartAt, block_on, shard_number};
use super::config::KinesisConfig;
use super::lease::{LeaseDoc, LeaseTable, Resume, Versioned, plan, readable};
use crate::position::{Checkpoint, Fetched, Intent, PartitionId};
use crate::source::Source;
use crate::store::ObjectStore;
use crate::sync::lock;
use crate::telemetry::metrics;
use anyhow::Context as _;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kinesis allows 5 GetRecords calls per second per shard.
const MIN_CALL_SPACING: Duration = Duration::from_millis(200);
/// The first pause after a throttled call; it doubles up to `max_backoff_ms`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A call error is reported as the source's problem for this long.
const PROBLEM_FOR: Duration = Duration::from_secs(15);

struct Buffered {
    offset: u64,
    sequence_number: String,
    key: String,
    data: Vec<u8>,
    arrived_ms: i64,
}

/// A held lease as the renewer thread and the worker share it: every write
/// to the document goes through here, so the two never race each other.
struct LeaseSlot {
    lease: Versioned,
    last_write: Instant,
    /// A write was refused: another worker holds the shard now.
    lost: bool,
}

type Slots = Arc<Mutex<BTreeMap<PartitionId, Arc<Mutex<LeaseSlot>>>>>;

/// A shard this worker holds the lease of.
struct Held {
    slot: Arc<Mutex<LeaseSlot>>,
    /// The document as this worker last wrote it (the renewer only moves its counter).
    doc: LeaseDoc,
    /// `(offset, sequence number)` of records handed to the pipeline since the
    /// last checkpoint, in order: where to resume if the pipeline goes back.
    handed: VecDeque<(u64, String)>,
    /// Records read from Kinesis and not yet asked for.
    ahead: VecDeque<Buffered>,
    /// The offset the next record read gets.
    read_to: u64,
    /// Where reading goes on when a new iterator is needed.
    read_from: StartAt,
    iterator: Option<String>,
    /// A closed shard read to its end.
    ended: bool,
    not_before: Instant,
    backoff: Duration,
    millis_behind: Option<i64>,
}

impl Held {
    fn new(lease: Versioned, config: &KinesisConfig) -> Self {
        let read_from = anchor(&lease.doc, config);
        let read_to = lease.doc.next_offset;
        Held {
            doc: lease.doc.clone(),
            slot: Arc::new(Mutex::new(LeaseSlot { lease, last_write: Instant::now(), lost: false })),
            handed: VecDeque::new(),
            ahead: VecDeque::new(),
            read_to,
            read_from,
            iterator: None,
            ended: false,
            not_before: Instant::now(),
            backoff: FIRST_BACKOFF,
            millis_behind: None,
        }
    }

    /// The offset of the next record the pipeline would get.
    fn position(&self) -> u64 {
        self.ahead.front().map_or(self.read_to, |r| r.offset)
    }

    /// Read again from `offset` (the pipeline retries a failed roll).
    fn rewind(&mut self, offset: u64, config: &KinesisConfig) -> anyhow::Result<()> {
        let from = if offset == self.doc.next_offset {
            anchor(&self.doc, config)
        } else {
            let (_, seq) = self
                .handed
                .iter()
                .find(|(o, _)| *o + 1 == offset)
                .with_context(|| format!("cannot read offset {offset} again: only offsets from {} on are known", self.doc.next_offset))?;
            StartAt::After(seq.clone())
        };
        self.handed.retain(|(o, _)| *o < offset);
        self.ahead.clear();
        self.read_from = from;
        self.read_to = offset;
        self.iterator = None;
        self.ended = false;
        self.not_before = Instant::now();
        Ok(())
    }

    /// Pause reading for the current backoff (plus `jitter`), and double it up to `max`.
    fn back_off(&mut self, jitter: Duration, max: Duration) {
        self.not_before = Instant::now() + self.backoff + jitter;
        self.backoff = (self.backoff * 2).min(max);
    }

    /// Whether everything of a closed shard is read and checkpointed.
    fn finished(&self) -> bool {
        self.ended && self.ahead.is_empty() && self.doc.next_offset == self.read_to
    }
}

/// Where a shard's landed records end, as a place to start reading.
fn anchor(doc: &LeaseDoc, config: &KinesisConfig) -> StartAt {
    match &doc.resume {
        Resume::At(seq) => StartAt::At(seq.clone()),
        Resume::After(seq) => StartAt::After(seq.clone()),
        // A child of a split or merge is read from its beginning: its parents
        // were read to their ends, so its first record is the next one.
        Resume::Start if !doc.parents.is_empty() => StartAt::TrimHorizon,
        Resume::Start => StartAt::configured(config),
    }
}

pub struct KinesisSource {
    kinesis: Kinesis,
    config: KinesisConfig,
    pipeline: String,
    streams: Vec<String>,
    leases: Arc<LeaseTable>,
    held: BTreeMap<PartitionId, Held>,
    /// The held leases, as the renewer thread sees them.
    slots: Slots,
    renewer: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    names: BTreeMap<String, Arc<str>>,
    /// Shard ids per stream as last listed.
    listed: BTreeMap<String, BTreeSet<String>>,
    listed_at: Option<Instant>,
    next_round: Instant,
    changed: bool,
    /// Leases lost since the pipeline last asked, whether or not taken back
    /// since: what the pipeline holds of these shards is stale.
    revoked: BTreeSet<PartitionId>,
    problem: Option<(Instant, String)>,
    /// Workers of this pipeline starting in this process: counted for one
    /// lease duration from this worker's first lease round, time enough for
    /// each to take its first lease (a worker that has not by then is gone,
    /// as one that stops renewing is, and must not keep a share). Counted in
    /// the first round only, a slow-starting sibling had its shard taken by
    /// the first worker and then stole it back, abandoning what was read.
    starting_workers: usize,
    /// Until when `starting_workers` counts; set by the first lease round.
    starting_until: Option<Instant>,
}

impl KinesisSource {
    /// A worker of `pipeline` reading `streams`; `owner` names it in the lease
    /// documents, which live in `store` (the landing store).
    pub fn new(config: &KinesisConfig, pipeline: &str, owner: String, streams: &[String], store: Arc<dyn ObjectStore>) -> anyhow::Result<Self> {
        Self::with_client(block_on(Kinesis::connect(config)), config, pipeline, owner, streams, store)
    }

    /// As [`KinesisSource::new`], through a client made elsewhere (other credentials).
    pub fn with_client(
        kinesis: Kinesis,
        config: &KinesisConfig,
        pipeline: &str,
        owner: String,
        streams: &[String],
        store: Arc<dyn ObjectStore>,
    ) -> anyhow::Result<Self> {
        let leases = Arc::new(LeaseTable::new(store, config.lease_folder(pipeline), owner, Duration::from_millis(config.lease_duration_ms)));
        let slots = Slots::default();
        let renewer = Some(spawn_renewer(leases.clone(), slots.clone(), config.renew_every()).context("starting the lease renewer thread")?);
        Ok(KinesisSource {
            kinesis,
            config: config.clone(),
            pipeline: pipeline.to_owned(),
            streams: streams.to_vec(),
            leases,
            held: BTreeMap::new(),
            slots,
            renewer,
            names: BTreeMap::new(),
            listed: BTreeMap::new(),
            listed_at: None,
            next_round: Instant::now(),
            changed: false,
            revoked: BTreeSet::new(),
            problem: None,
            starting_workers: 1,
            starting_until: None,
        })
    }

    /// This worker starts together with `n` workers of the same pipeline in this process.
    pub fn starting_with(mut self, n: usize) -> Self {
        self.starting_workers = n.max(1);
        self
    }

    fn id(&mut self, stream: &str, shard: &str) -> anyhow::Result<PartitionId> {
        let number = shard_number(shard).with_context(|| format!("shard id `{shard}` of stream `{stream}` does not end in a number"))?;
        let topic = self.names.entry(stream.to_owned()).or_insert_with(|| Arc::from(stream)).clone();
        Ok(PartitionId { topic, partition: number })
    }

    /// Refuse to move a shard's checkpoint for a pipeline that has not yet
    /// heard that the lease was lost (and maybe taken back) since it read.
    fn ensure_current(&self, p: &PartitionId) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.revoked.contains(p),
            "the lease of {p} was lost since these records were read; the pipeline reopens the shard from its checkpoint"
        );
        Ok(())
    }

    fn set_problem(&mut self, text: String) {
        tracing::warn!(problem = %text, "kinesis source");
        self.problem = Some((Instant::now(), text));
    }

    /// A lease write was refused: another worker holds the shard now.
    fn lost(&mut self, p: &PartitionId) -> anyhow::Error {
        self.held.remove(p);
        lock(&self.slots).remove(p);
        self.changed = true;
        self.revoked.insert(p.clone());
        tracing::info!(partition = %p, "shard lease taken over by another worker: its open segment is abandoned, the new holder lands it");
        anyhow::anyhow!("the lease of {p} went to another worker")
    }

    fn write(&mut self, p: &PartitionId, change: impl FnOnce(&mut super::lease::LeaseDoc)) -> anyhow::Result<()> {
        let held = self.held.get_mut(p).with_context(|| format!("this worker holds no lease of {p}"))?;
        let mut slot = lock(&held.slot);
        let written = !slot.lost && self.leases.write(&mut slot.lease, change).with_context(|| format!("writing the lease of {p}"))?;
        if written {
            slot.last_write = Instant::now();
            held.doc = slot.lease.doc.clone();
            return Ok(());
        }
        slot.lost = true;
        drop(slot);
        Err(self.lost(p))
    }

    /// Renew leases, list shards when due, take or steal leases (every third of
    /// the lease duration).
    fn lease_round(&mut self) {
        if Instant::now() < self.next_round {
            return;
        }
        self.next_round = Instant::now() + self.config.renew_every();
        if let Err(e) = self.try_lease_round() {
            self.set_problem(format!("kinesis leases: {e:#}"));
        }
    }

    fn try_lease_round(&mut self) -> anyhow::Result<()> {
        // Leases the renewer found taken over.
        let refused: Vec<PartitionId> = self.held.iter().filter(|(_, h)| lock(&h.slot).lost).map(|(p, _)| p.clone()).collect();
        for p in refused {
            let _ = self.lost(&p);
        }
        let list_due = self.listed_at.is_none_or(|at| at.elapsed() >= Duration::from_millis(self.config.list_shards_every_ms));
        if list_due {
            for stream in self.streams.clone() {
                let shards = block_on(self.kinesis.list_shards(&stream)).with_context(|| format!("listing the shards of stream `{stream}`"))?;
                for s in &shards {
                    self.leases.ensure(&stream, s).with_context(|| format!("creating the lease of {stream}/{}", s.id))?;
                }
                self.listed.insert(stream, shards.into_iter().map(|s| s.id).collect());
            }
            self.listed_at = Some(Instant::now());
        }
        let mut docs: Vec<(String, Vec<Versioned>)> = Vec::new();
        for stream in &self.streams {
            docs.push((stream.clone(), self.leases.read_stream(stream)?));
        }
        // Leases this worker believes it holds but another worker took.
        let me = self.leases.owner.clone();
        let taken: Vec<PartitionId> = self
            .held
            .iter()
            .filter(|(_, h)| {
                let of_stream = docs.iter().filter(|(stream, _)| *stream == h.doc.stream).flat_map(|(_, of_stream)| of_stream);
                of_stream.filter(|v| v.doc.shard == h.doc.shard).any(|v| v.doc.owner.as_deref() != Some(&me))
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in taken {
            let _ = self.lost(&p);
        }
        let empty = BTreeSet::new();
        let ready: Vec<&Versioned> = docs.iter().flat_map(|(stream, of_stream)| readable(of_stream, self.listed.get(stream).unwrap_or(&empty))).collect();
        let until = *self.starting_until.get_or_insert_with(|| Instant::now() + Duration::from_millis(self.config.lease_duration_ms));
        let expected_workers = if Instant::now() < until { self.starting_workers } else { 1 };
        let plan = plan(&ready, &me, expected_workers, |v| self.leases.is_free(v));
        let wanted: Vec<Versioned> =
            ready.iter().filter(|v| plan.take.contains(&v.doc.shard) || plan.steal.as_deref() == Some(v.doc.shard.as_str())).map(|v| (*v).clone()).collect();
        for mut v in wanted {
            let stolen_from = v.doc.owner.clone().filter(|_| plan.steal.as_deref() == Some(v.doc.shard.as_str()));
            if !self.leases.write(&mut v, |d| d.owner = Some(me.clone()))? {
                continue;
            }
            let p = self.id(&v.doc.stream, &v.doc.shard)?;
            tracing::info!(partition = %p, next_offset = v.doc.next_offset, stolen_from = ?stolen_from, "took the lease of a shard");
            let held = Held::new(v, &self.config);
            lock(&self.slots).insert(p.clone(), held.slot.clone());
            self.held.insert(p, held);
            self.changed = true;
        }
        Ok(())
    }

    /// One GetRecords call for `p` into its read-ahead. Failures pause the
    /// shard (and show as the source's problem) rather than fail the fetch.
    fn read(&mut self, p: &PartitionId) {
        let max_backoff = Duration::from_millis(self.config.max_backoff_ms);
        let idle = Duration::from_millis(self.config.idle_poll_ms);
        let limit = self.config.records_per_call;
        let held = self.held.get_mut(p).expect("read only held shards");
        let (stream, shard) = (held.doc.stream.clone(), held.doc.shard.clone());
        let result = (|| {
            let iterator = match held.iterator.clone() {
                Some(it) => it,
                None => match block_on(self.kinesis.shard_iterator(&stream, &shard, &held.read_from))? {
                    Some(it) => it,
                    None => return Ok(None),
                },
            };
            block_on(self.kinesis.get_records(&iterator, limit)).map(Some)
        })();
        match result {
            Ok(None) => {
                held.ended = true;
            }
            Ok(Some(batch)) => {
                held.backoff = FIRST_BACKOFF;
                let got = batch.records.len();
                for r in batch.records {
                    held.read_from = StartAt::After(r.sequence_number.clone());
                    held.ahead.push_back(Buffered {
                        offset: held.read_to,
                        sequence_number: r.sequence_number,
                        key: r.partition_key,
                        data: r.data,
                        arrived_ms: r.arrived_ms,
                    });
                    held.read_to += 1;
                }
                held.ended = batch.next_iterator.is_none();
                held.iterator = batch.next_iterator;
                held.millis_behind = batch.millis_behind_latest;
                let caught_up = got == 0 && batch.millis_behind_latest.unwrap_or(0) == 0;
                held.not_before = Instant::now() + if caught_up { idle } else { MIN_CALL_SPACING };
                if let Some(ms) = batch.millis_behind_latest {
                    metrics().source_millis_behind.with_label_values(&[self.pipeline.as_str(), &p.topic, &p.partition.to_string()]).set(ms);
                }
                self.problem = None;
            }
            Err(CallError::Throttled(code)) => {
                metrics().source_throttled.with_label_values(&["kinesis", "GetRecords"]).inc();
                tracing::debug!(partition = %p, pause_ms = held.backoff.as_millis() as u64, "{code}: backing off");
                // A little jitter keeps workers of one stream from retrying in step.
                held.back_off(Duration::from_millis(rand::random::<u64>() % 50), max_backoff);
            }
            Err(CallError::IteratorExpired) => {
                // Older than five minutes (the pipeline was paused): a new one from where reading got to.
                held.iterator = None;
            }
            Err(CallError::Other(m)) if m.starts_with("ResourceNotFoundException") && !self.listed.get(&stream).is_some_and(|s| s.contains(&shard)) => {
                // The shard aged out of the stream: nothing more to read from it.
                held.ended = true;
            }
            Err(CallError::Other(m)) => {
                // Nothing read is lost: the open segment stays, reading resumes
                // after the last record read once the pause is over. The
                // pipeline's health shows the error meanwhile.
                held.iterator = None;
                held.back_off(Duration::ZERO, max_backoff);
                self.set_problem(format!("kinesis GetRecords on {p}: {m}"));
            }
        }
    }

    /// A closed shard is read and checkpointed to its end: let its children be read.
    fn finish(&mut self, p: &PartitionId) -> anyhow::Result<()> {
        self.write(p, |d| {
            d.finished = true;
            d.owner = None;
        })?;
        let held = self.held.remove(p).expect("written above");
        lock(&self.slots).remove(p);
        tracing::info!(partition = %p, records = held.read_to, "shard read to its end and checkpointed; its children may be read now");
        self.changed = true;
        self.next_round = Instant::now();
        Ok(())
    }
}

impl Source for KinesisSource {
    fn partitions(&mut self) -> anyhow::Result<Vec<PartitionId>> {
        self.lease_round();
        Ok(self.held.keys().cloned().collect())
    }

    fn assignment_changed(&mut self) -> bool {
        self.lease_round();
        std::mem::take(&mut self.changed)
    }

    fn revoked(&mut self) -> Vec<PartitionId> {
        std::mem::take(&mut self.revoked).into_iter().collect()
    }

    fn checkpoint(&mut self, p: &PartitionId) -> anyhow::Result<Checkpoint> {
        let held = self.held.get(p).with_context(|| format!("this worker holds no lease of {p}"))?;
        let doc = &held.doc;
        Ok(Checkpoint { next_offset: doc.next_offset, intent: doc.intent.clone().filter(|i| i.end > doc.next_offset) })
    }

    fn fetch(&mut self, p: &PartitionId, offset: u64, max_records: usize) -> anyhow::Result<Fetched> {
        self.lease_round();
        // A lease lost (and perhaps taken back) since the pipeline last looked:
        // `offset` is the pipeline's stale position; it reopens the shard first.
        let Some(held) = self.held.get_mut(p).filter(|_| !self.revoked.contains(p)) else {
            return Ok(Fetched { next_offset: offset, ..Default::default() });
        };
        if held.position() != offset {
            held.rewind(offset, &self.config)?;
        }
        if held.ahead.is_empty() && !held.ended && Instant::now() >= held.not_before {
            self.read(p);
        }
        let held = self.held.get_mut(p).expect("held above");
        let n = held.ahead.len().min(max_records);
        if n > 0 && held.doc.resume == Resume::Start && held.ahead[0].offset == held.doc.next_offset {
            // Pin the numbering before the first record goes out.
            let seq = held.ahead[0].sequence_number.clone();
            if let Err(e) = self.write(p, |d| d.resume = Resume::At(seq)) {
                if self.held.contains_key(p) {
                    return Err(e);
                }
                // Taken over by another worker: nothing to hand out here any more.
                return Ok(Fetched { next_offset: offset, ..Default::default() });
            }
        }
        let held = self.held.get_mut(p).expect("held above");
        let bytes: usize = held.ahead.iter().take(n).map(|r| r.data.len() + r.key.len()).sum();
        let mut out = Fetched::starting_at(offset, n, bytes);
        for r in held.ahead.drain(..n) {
            out.push(r.offset, &r.data, r.key.as_bytes(), r.arrived_ms);
            held.handed.push_back((r.offset, r.sequence_number));
        }
        if n == 0 && held.handed.is_empty() && held.finished() {
            self.finish(p)?;
        }
        Ok(out)
    }

    fn record_intent(&mut self, p: &PartitionId, intent: &Intent) -> anyhow::Result<()> {
        self.ensure_current(p)?;
        self.write(p, |d| d.intent = Some(intent.clone())).with_context(|| format!("recording the roll intent of {p}"))
    }

    fn commit(&mut self, p: &PartitionId, next_offset: u64) -> anyhow::Result<()> {
        self.ensure_current(p)?;
        let held = self.held.get(p).with_context(|| format!("cannot commit {p}: this worker holds no lease of it"))?;
        let resume = match held.handed.iter().find(|(o, _)| *o + 1 == next_offset) {
            Some((_, seq)) => Resume::After(seq.clone()),
            None if next_offset == held.doc.next_offset => held.doc.resume.clone(),
            None => anyhow::bail!("cannot commit offset {next_offset} of {p}: no record before it was read"),
        };
        self.write(p, |d| {
            d.next_offset = next_offset;
            d.resume = resume;
            d.intent = None;
        })
        .with_context(|| format!("checkpointing {p} at offset {next_offset}"))?;
        let held = self.held.get_mut(p).expect("written above");
        held.handed.retain(|(o, _)| *o >= next_offset);
        if held.handed.is_empty() && held.finished() {
            self.finish(p)?;
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) {
        let now = Instant::now();
        let next_read = self.held.values().filter(|h| h.ahead.is_empty() && !h.ended).map(|h| h.not_before).min();
        let until = next_read.unwrap_or(self.next_round).min(self.next_round).min(now + timeout);
        std::thread::sleep(until.saturating_duration_since(now).max(Duration::from_millis(1)));
    }

    fn end_offset(&mut self, p: &PartitionId) -> anyhow::Result<Option<u64>> {
        // Only a caught-up reader knows where the shard ends, in its own numbering.
        Ok(self.held.get(p).filter(|h| h.millis_behind == Some(0) || h.ended).map(|h| h.read_to))
    }

    fn problem(&mut self) -> Option<String> {
        self.problem.as_ref().filter(|(at, _)| at.elapsed() < PROBLEM_FOR).map(|(_, text)| text.clone())
    }
}

impl Drop for KinesisSource {
    /// Let go of the leases, so another worker (or this process restarted)
    /// takes the shards at once instead of after a lease duration.
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.renewer.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        for p in self.held.keys().cloned().collect::<Vec<_>>() {
            if let Err(e) = self.write(&p, |d| d.owner = None) {
                tracing::debug!(partition = %p, error = %format!("{e:#}"), "releasing a lease");
            }
        }
    }
}

/// Renew every held lease each third of the lease duration, from a thread of
/// its own: a long roll (a slow upload to S3) must not let a lease lapse.
fn spawn_renewer(leases: Arc<LeaseTable>, slots: Slots, every: Duration) -> std::io::Result<(Arc<AtomicBool>, std::thread::JoinHandle<()>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new().name("sluice-kinesis-leases".into()).spawn(move || {
        while !stopped.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            let held: Vec<(PartitionId, Arc<Mutex<LeaseSlot>>)> = lock(&slots).iter().map(|(p, s)| (p.clone(), s.clone())).collect();
            for (p, slot) in held {
                let mut slot = lock(&slot);
                if slot.lost || slot.last_write.elapsed() < every {
                    continue;
                }
                match leases.write(&mut slot.lease, |_| {}) {
                    Ok(true) => slot.last_write = Instant::now(),
                    Ok(false) => slot.lost = true,
                    // Tried again on the next turn; the lease lapses only if this goes on for a whole duration.
                    Err(e) => tracing::warn!(partition = %p, error = %e, "renewing a Kinesis shard lease"),
                }
            }
        }
    })?;
    Ok((stop, thread))
}

/// Open shards of the named streams (to size a pipeline's worker pool).
pub fn open_shard_count(config: &KinesisConfig, streams: &[String]) -> Option<usize> {
    let kinesis = block_on(Kinesis::connect(config));
    let mut total = 0;
    for s in streams {
        total += block_on(kinesis.open_shards(s)).ok()??;
    }
    Some(total)
}
