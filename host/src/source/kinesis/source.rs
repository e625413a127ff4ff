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

use super::client::{block_on, shard_number, CallError, Kinesis, StartAt};
use super::config::KinesisConfig;
use super::lease::{plan, readable, LeaseTable, Resume, Versioned};
use crate::sink::ObjectStore;
use crate::source::{Checkpoint, Fetched, Intent, PartitionId, Source};
use crate::telemetry::metrics;
use anyhow::Context as _;
use sluice_guest::BatchBuf;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
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

/// A shard this worker holds the lease of.
struct Held {
    lease: Versioned,
    last_write: Instant,
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
        let read_from = anchor(&lease, config);
        let read_to = lease.doc.next_offset;
        Held {
            lease,
            last_write: Instant::now(),
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
        let from = if offset == self.lease.doc.next_offset {
            anchor(&self.lease, config)
        } else {
            let (_, seq) = self
                .handed
                .iter()
                .find(|(o, _)| *o + 1 == offset)
                .with_context(|| format!("cannot read offset {offset} again: only offsets from {} on are known", self.lease.doc.next_offset))?;
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

    /// Whether everything of a closed shard is read and checkpointed.
    fn finished(&self) -> bool {
        self.ended && self.ahead.is_empty() && self.lease.doc.next_offset == self.read_to
    }
}

/// Where a shard's landed records end, as a place to start reading.
fn anchor(lease: &Versioned, config: &KinesisConfig) -> StartAt {
    match &lease.doc.resume {
        Resume::At(seq) => StartAt::At(seq.clone()),
        Resume::After(seq) => StartAt::After(seq.clone()),
        // A child of a split or merge is read from its beginning: its parents
        // were read to their ends, so its first record is the next one.
        Resume::Start if !lease.doc.parents.is_empty() => StartAt::TrimHorizon,
        Resume::Start => StartAt::configured(config),
    }
}

pub struct KinesisSource {
    kinesis: Kinesis,
    config: KinesisConfig,
    pipeline: String,
    streams: Vec<String>,
    leases: LeaseTable,
    held: BTreeMap<PartitionId, Held>,
    names: BTreeMap<String, Arc<str>>,
    /// Shard ids per stream as last listed.
    listed: BTreeMap<String, BTreeSet<String>>,
    listed_at: Option<Instant>,
    next_round: Instant,
    changed: bool,
    problem: Option<(Instant, String)>,
    /// Workers of this pipeline starting in this process: counted in the first
    /// lease round only (a worker that died later must not keep a share).
    starting_workers: usize,
}

impl KinesisSource {
    /// A worker of `pipeline` reading `streams`; `owner` names it in the lease
    /// documents, which live in `store` (the landing store).
    pub fn new(config: &KinesisConfig, pipeline: &str, owner: String, streams: &[String], store: Arc<dyn ObjectStore>) -> Self {
        let kinesis = block_on(Kinesis::connect(config));
        let leases = LeaseTable::new(store, config.lease_folder(pipeline), owner, Duration::from_millis(config.lease_duration_ms));
        KinesisSource {
            kinesis,
            config: config.clone(),
            pipeline: pipeline.to_owned(),
            streams: streams.to_vec(),
            leases,
            held: BTreeMap::new(),
            names: BTreeMap::new(),
            listed: BTreeMap::new(),
            listed_at: None,
            next_round: Instant::now(),
            changed: false,
            problem: None,
            starting_workers: 1,
        }
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

    fn set_problem(&mut self, text: String) {
        tracing::warn!(problem = %text, "kinesis source");
        self.problem = Some((Instant::now(), text));
    }

    fn renew_every(&self) -> Duration {
        Duration::from_millis(self.config.lease_duration_ms / 3)
    }

    /// A lease write was refused: another worker holds the shard now.
    fn lost(&mut self, p: &PartitionId) -> anyhow::Error {
        self.held.remove(p);
        self.changed = true;
        tracing::info!(partition = %p, "shard lease taken over by another worker: its open segment is abandoned, the new holder lands it");
        anyhow::anyhow!("the lease of {p} went to another worker")
    }

    fn write(&mut self, p: &PartitionId, change: impl FnOnce(&mut super::lease::LeaseDoc)) -> anyhow::Result<()> {
        let held = self.held.get_mut(p).with_context(|| format!("this worker holds no lease of {p}"))?;
        let written = self.leases.write(&mut held.lease, change).with_context(|| format!("writing the lease of {p}"))?;
        held.last_write = Instant::now();
        if written { Ok(()) } else { Err(self.lost(p)) }
    }

    /// Renew leases, list shards when due, take or steal leases (every third of
    /// the lease duration).
    fn lease_round(&mut self) {
        if Instant::now() < self.next_round {
            return;
        }
        self.next_round = Instant::now() + self.renew_every();
        if let Err(e) = self.try_lease_round() {
            self.set_problem(format!("kinesis leases: {e:#}"));
        }
    }

    fn try_lease_round(&mut self) -> anyhow::Result<()> {
        let renew: Vec<PartitionId> = self.held.iter().filter(|(_, h)| h.last_write.elapsed() >= self.renew_every()).map(|(p, _)| p.clone()).collect();
        for p in renew {
            if let Err(e) = self.write(&p, |_| {}) {
                tracing::debug!(partition = %p, error = %format!("{e:#}"), "renewing a lease");
            }
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
        let mut docs = Vec::new();
        for stream in self.streams.clone() {
            docs.extend(self.leases.read_stream(&stream)?);
        }
        // Leases this worker believes it holds but another worker took.
        let me = self.leases.owner.clone();
        let taken: Vec<PartitionId> = self
            .held
            .iter()
            .filter(|(_, h)| docs.iter().any(|v| v.doc.stream == h.lease.doc.stream && v.doc.shard == h.lease.doc.shard && v.doc.owner.as_deref() != Some(&me)))
            .map(|(p, _)| p.clone())
            .collect();
        for p in taken {
            let _ = self.lost(&p);
        }
        let mut ready: Vec<&Versioned> = Vec::new();
        let empty = BTreeSet::new();
        for stream in &self.streams {
            let of_stream: Vec<&Versioned> = docs.iter().filter(|v| v.doc.stream == *stream).collect();
            let owned: Vec<Versioned> = of_stream.iter().map(|v| (*v).clone()).collect();
            let listed = self.listed.get(stream).unwrap_or(&empty);
            let ids: BTreeSet<String> = readable(&owned, listed).iter().map(|v| v.doc.shard.clone()).collect();
            ready.extend(of_stream.into_iter().filter(|v| ids.contains(&v.doc.shard)));
        }
        let plan = plan(&ready, &me, self.starting_workers, |v| self.leases.is_free(v));
        self.starting_workers = 1;
        let wanted: Vec<Versioned> = ready
            .iter()
            .filter(|v| plan.take.contains(&v.doc.shard) || plan.steal.as_deref() == Some(v.doc.shard.as_str()))
            .map(|v| (*v).clone())
            .collect();
        for mut v in wanted {
            let stolen_from = v.doc.owner.clone().filter(|_| plan.steal.as_deref() == Some(v.doc.shard.as_str()));
            if !self.leases.write(&mut v, |d| d.owner = Some(me.clone()))? {
                continue;
            }
            let p = self.id(&v.doc.stream, &v.doc.shard)?;
            tracing::info!(partition = %p, next_offset = v.doc.next_offset, stolen_from = ?stolen_from, "took the lease of a shard");
            self.held.insert(p, Held::new(v, &self.config));
            self.changed = true;
        }
        Ok(())
    }

    /// One GetRecords call for `p` into its read-ahead.
    fn read(&mut self, p: &PartitionId) -> anyhow::Result<()> {
        let max_backoff = Duration::from_millis(self.config.max_backoff_ms);
        let idle = Duration::from_millis(self.config.idle_poll_ms);
        let limit = self.config.records_per_call;
        let held = self.held.get_mut(p).expect("read only held shards");
        let (stream, shard) = (held.lease.doc.stream.clone(), held.lease.doc.shard.clone());
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
                let jitter = Duration::from_millis(rand::random::<u64>() % 50);
                held.not_before = Instant::now() + held.backoff + jitter;
                held.backoff = (held.backoff * 2).min(max_backoff);
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
                held.iterator = None;
                held.not_before = Instant::now() + held.backoff;
                held.backoff = (held.backoff * 2).min(max_backoff);
                self.set_problem(format!("kinesis GetRecords on {p}: {m}"));
                anyhow::bail!("reading {p} from Kinesis: {m}");
            }
        }
        Ok(())
    }

    /// A closed shard is read and checkpointed to its end: let its children be read.
    fn finish(&mut self, p: &PartitionId) -> anyhow::Result<()> {
        self.write(p, |d| {
            d.finished = true;
            d.owner = None;
        })?;
        let held = self.held.remove(p).expect("written above");
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

    fn checkpoint(&mut self, p: &PartitionId) -> anyhow::Result<Checkpoint> {
        let held = self.held.get(p).with_context(|| format!("this worker holds no lease of {p}"))?;
        let doc = &held.lease.doc;
        Ok(Checkpoint { next_offset: doc.next_offset, intent: doc.intent.clone().filter(|i| i.end > doc.next_offset) })
    }

    fn fetch(&mut self, p: &PartitionId, offset: u64, max_records: usize, _wait: Duration) -> anyhow::Result<Fetched> {
        self.lease_round();
        let Some(held) = self.held.get_mut(p) else {
            return Ok(Fetched { next_offset: offset, ..Default::default() });
        };
        if held.position() != offset {
            held.rewind(offset, &self.config)?;
        }
        if held.ahead.is_empty() && !held.ended && Instant::now() >= held.not_before {
            self.read(p)?;
        }
        let held = self.held.get_mut(p).expect("held above");
        let n = held.ahead.len().min(max_records);
        if n > 0 && held.lease.doc.resume == Resume::Start && held.ahead[0].offset == held.lease.doc.next_offset {
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
        let mut out = Fetched { batch: BatchBuf::with_capacity(n, bytes), offsets: Vec::with_capacity(n), next_offset: offset };
        for r in held.ahead.drain(..n) {
            out.batch.push(&r.data, r.key.as_bytes(), r.arrived_ms);
            out.offsets.push(r.offset);
            out.next_offset = r.offset + 1;
            held.handed.push_back((r.offset, r.sequence_number));
        }
        if n == 0 && held.handed.is_empty() && held.finished() {
            self.finish(p)?;
        }
        Ok(out)
    }

    fn record_intent(&mut self, p: &PartitionId, intent: &Intent) -> anyhow::Result<()> {
        self.write(p, |d| d.intent = Some(intent.clone())).with_context(|| format!("recording the roll intent of {p}"))
    }

    fn commit(&mut self, p: &PartitionId, next_offset: u64) -> anyhow::Result<()> {
        let held = self.held.get(p).with_context(|| format!("cannot commit {p}: this worker holds no lease of it"))?;
        let resume = match held.handed.iter().find(|(o, _)| *o + 1 == next_offset) {
            Some((_, seq)) => Resume::After(seq.clone()),
            None if next_offset == held.lease.doc.next_offset => held.lease.doc.resume.clone(),
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
        for p in self.held.keys().cloned().collect::<Vec<_>>() {
            if let Err(e) = self.write(&p, |d| d.owner = None) {
                tracing::debug!(partition = %p, error = %format!("{e:#}"), "releasing a lease");
            }
        }
    }
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
