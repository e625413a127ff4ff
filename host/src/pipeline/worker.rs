//! The loop of one pipeline: fetch, transform, write into open segments, roll.
//!
//! Rolling a segment is the commit protocol that makes landing effectively-once:
//! 1. record the intent `[start, end)` (and transform versions) durably;
//! 2. finish every object of the segment (durable, visible);
//! 3. commit the source position `end` and clear the intent, atomically.
//!
//! A crash before 1 leaves only invisible in-progress objects. A crash between
//! 1 and 3 is repaired on restart by re-reading exactly `[start, end)` and
//! rewriting the same objects (names depend only on `start`; content only on
//! the records and the transform versions).

use super::action::{ActionRows, ActionStage};
use super::aggregate::AggregateStage;
use super::chain::{Chain, ChainOutput};
use super::config::PipelineConfig;
use super::control::PipelineControl;
use super::events::PipelineEvents;
use super::join::JoinStage;
use super::land::{DeadLetters, FromSource, Processed, land_batch};
use super::output::{self, OutputTopic, PendingOutput};
use super::repartition::{Moving, Repartition, SourceState};
use super::stats::{PipelineState, PipelineStats};
use crate::position::{Fetched, Intent, PartitionId};
use crate::runtime::{FailureKind, StageRows};
use crate::sink::DeadLetter;
use crate::sink::delta::{DeltaSink, RollCommit};
use crate::sink::{Segment, SegmentSpec};
use crate::source::Source;
use crate::store::ObjectStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest nap when there is nothing to read (also bounds how long a stop request waits).
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Pause after a failed write or commit before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(500);

/// Asks pipeline threads to stop: they roll what they hold and return.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct PartitionState {
    id: PartitionId,
    /// Next offset to read.
    next: u64,
    /// A roll interrupted by a crash: re-read exactly up to its end, then roll.
    replay: Option<Intent>,
    segment: Option<Segment>,
    /// What the open segment writes to the output topic when it rolls.
    output: PendingOutput,
    /// What the open segment moves to the repartition topic when it rolls (a router).
    moving: Moving,
    /// When a record was last read, and what the router last told the windows about this partition.
    last_record: Instant,
    said: SourceState,
}

impl PartitionState {
    /// Memory the partition holds until its segment rolls.
    fn held_bytes(&self) -> u64 {
        self.segment.as_ref().map_or(0, Segment::buffered_bytes) + self.output.bytes() as u64 + self.moving.bytes() as u64
    }
}

pub struct PipelineWorker {
    pub config: PipelineConfig,
    pub spec: SegmentSpec,
    pub source: Box<dyn Source>,
    pub store: Arc<dyn ObjectStore>,
    pub stats: Arc<PipelineStats>,
    pub control: Arc<PipelineControl>,
    /// The active chain, as of `generation`.
    pub(crate) chain: Chain,
    /// Event-time windows after the chain, when the pipeline aggregates.
    pub(crate) aggregate: Option<AggregateStage>,
    pub(crate) generation: u64,
    /// A chain of other versions, for rewriting an interrupted roll exactly as it was.
    pub(crate) replay_chain: Option<Chain>,
    pub(crate) probe: Option<Probe>,
    /// `(shadow generation, stage, candidate instance)` while a shadow run is on.
    pub(crate) shadow: Option<(u64, usize, crate::runtime::TransformInstance)>,
    /// Detectors and webhooks, after the chain (and the aggregate).
    pub(crate) actions: Option<ActionStage>,
    /// Raised with the stop flag: a webhook that is being retried gives up waiting.
    pub(crate) stopping: Arc<AtomicBool>,
    /// The topic the table's rows also go to, when the pipeline has an output.
    pub(crate) output: Option<Box<dyn OutputTopic>>,
    /// The router of an aggregating pipeline: records go on to the repartition
    /// topic, keyed by group key (the windows are folded by other workers).
    pub(crate) repartition: Option<Repartition>,
    /// A join's part: joins the records of the join topic before the chain.
    pub(crate) join: Option<JoinStage>,
    /// Whether this part runs the pipeline's transforms (not a join's router,
    /// not the windows): a swap picks up new versions only where they run.
    pub(crate) runs_transforms: bool,
    /// The table's Delta log, when the table is a Delta table: each roll's
    /// files are added in one commit before the input position is.
    pub(crate) delta: Option<DeltaSink>,
}

/// How a version on probation has fared in this worker.
pub(crate) struct Probe {
    generation: u64,
    stage: usize,
    batches: u32,
    records: u64,
    rejected: u64,
    failed: u64,
}

impl PipelineWorker {
    /// Also write what lands in the table to `topic` (see [`super::output`]).
    pub fn with_output(mut self, topic: Box<dyn OutputTopic>) -> Self {
        self.output = Some(topic);
        self
    }

    /// Run until `stop` is raised; then roll every open segment and return.
    pub fn run(mut self, stop: &StopFlag) -> anyhow::Result<()> {
        let name = self.config.name.clone();
        let _span = tracing::info_span!("pipeline", pipeline = %name).entered();
        self.stopping = stop.0.clone();
        let mut parts = self.load_partitions()?;
        self.events().state(PipelineState::Running);
        tracing::info!(partitions = parts.len(), "pipeline started");
        let mut was_paused = false;
        let mut reported_problem: Option<(Instant, String)> = None;
        let mut reassign_pending = false;
        loop {
            if self.source.assignment_changed() || reassign_pending {
                reassign_pending = false;
                if let Err(e) = self.reassign(&mut parts) {
                    let msg = format!("taking over partitions failed: {e:#}");
                    tracing::error!("{msg}; retrying");
                    self.events().problem(msg);
                    reassign_pending = true;
                    std::thread::sleep(ERROR_BACKOFF);
                }
            }
            self.report_source_problem(&mut reported_problem);
            let paused = self.control.is_paused();
            if paused != was_paused {
                self.events().state(if paused { PipelineState::Paused } else { PipelineState::Running });
                tracing::info!(paused, "pipeline {}", if paused { "paused: landing what it holds" } else { "resumed" });
                was_paused = paused;
            }
            // A paused pipeline lands what it holds, like a stopping one, and reads nothing.
            let stopping = stop.is_stopped() || paused;
            self.pick_up_swap();
            let mut progressed = false;
            for st in parts.iter_mut() {
                if !stopping {
                    match self.pull(st) {
                        Ok(p) => progressed |= p,
                        Err(e) => self.recover(st, "reading or landing", e),
                    }
                }
                if self.should_roll(st, stopping) {
                    progressed = true;
                    if let Err(e) = self.roll(st) {
                        self.recover(st, "rolling a segment", e);
                    }
                }
            }
            self.keep_within_budget(&mut parts);
            if !stopping {
                self.announce_idle(&mut parts);
            }
            if stop.is_stopped() && parts.iter().all(|p| p.segment.is_none() || p.replay.is_some()) {
                break;
            }
            if !progressed {
                self.source.wait(self.idle_wait(&parts));
            }
        }
        self.events().state(PipelineState::Stopped);
        tracing::info!("pipeline stopped; every landed record is committed");
        Ok(())
    }

    fn load_partitions(&mut self) -> anyhow::Result<Vec<PartitionState>> {
        let mut parts = Vec::new();
        for id in self.source.partitions()? {
            parts.push(self.open_partition(id)?);
        }
        Ok(parts)
    }

    /// Start reading a partition where its checkpoint says.
    fn open_partition(&mut self, id: PartitionId) -> anyhow::Result<PartitionState> {
        let cp = self.source.checkpoint(&id)?;
        let mut next = cp.next_offset;
        if let Some(intent) = &cp.intent {
            tracing::warn!(partition = %id, start = intent.start, end = intent.end, "resuming an interrupted roll: rewriting its objects");
            next = intent.start;
        }
        self.events().committed(&id, cp.next_offset);
        if let Some(a) = &mut self.aggregate {
            // The windows as they were at the committed position.
            a.resume(&id, cp.next_offset)?;
        }
        if let Some(a) = &mut self.actions {
            a.resume(&id, cp.next_offset)?;
        }
        if let Some(j) = &mut self.join {
            j.resume(&id, cp.next_offset)?;
        }
        if let Some(r) = &mut self.repartition {
            // Present from the start: the windows wait for this partition until it passes them or goes idle.
            r.announce(&output::writer(&self.config.name, &id), SourceState::Active)?;
        }
        Ok(PartitionState {
            id,
            next,
            replay: cp.intent,
            segment: None,
            output: PendingOutput::default(),
            moving: Moving::default(),
            last_record: Instant::now(),
            said: SourceState::Active,
        })
    }

    /// A router tells the windows which of its partitions went quiet (they stop
    /// holding the watermark back), and, once all of them have been quiet for
    /// `close_idle_after_ms`, that the open windows can close.
    fn announce_idle(&mut self, parts: &mut [PartitionState]) {
        let Some(r) = &mut self.repartition else { return };
        let mut failed = None;
        for st in parts.iter_mut() {
            let quiet = st.segment.is_none() && st.replay.is_none() && st.last_record.elapsed() >= r.idle_timeout;
            if st.said == SourceState::Active && quiet {
                match r.announce(&output::writer(&self.config.name, &st.id), SourceState::Idle) {
                    Ok(()) => st.said = SourceState::Idle,
                    Err(e) => failed = Some(e),
                }
            }
        }
        if let Some(after) = r.close_after
            && !parts.is_empty()
            && parts.iter().all(|st| st.said == SourceState::Idle && st.last_record.elapsed() >= after)
        {
            for st in parts.iter_mut() {
                match r.announce(&output::writer(&self.config.name, &st.id), SourceState::Closing) {
                    Ok(()) => st.said = SourceState::Closing,
                    Err(e) => failed = Some(e),
                }
            }
            tracing::info!(after_ms = after.as_millis() as u64, "every input partition is quiet: closing the open windows");
        }
        if let Some(e) = failed {
            tracing::warn!(error = %format!("{e:#}"), "could not tell the windows that a partition is quiet; trying again");
        }
    }

    /// The source's partitions changed (a consumer-group rebalance, a lease
    /// taken over): drop the ones that went to another member, and the ones
    /// that went away and came back (another member may have landed past
    /// what this worker holds of them); open the ones that came to this one.
    fn reassign(&mut self, parts: &mut Vec<PartitionState>) -> anyhow::Result<()> {
        // Asked after `partitions`, so a loss during that call is not missed.
        let now = self.source.partitions()?;
        let revoked = self.source.revoked();
        parts.retain_mut(|st| {
            let (held, lost) = (now.contains(&st.id), revoked.contains(&st.id));
            if !held || lost {
                // Never made visible; whoever lands these records next starts from the committed offset.
                let abandoned = st.segment.take().map_or(0, |s| s.input_records);
                self.stats.forget_partition(&st.id);
                if held {
                    tracing::info!(partition = %st.id, abandoned_records = abandoned, "partition lost and taken back: its open segment is abandoned, reading resumes from its checkpoint");
                } else {
                    tracing::info!(partition = %st.id, abandoned_records = abandoned, "partition revoked: its open segment is abandoned for the new owner to land");
                }
            }
            held && !lost
        });
        for id in now {
            if parts.iter().any(|st| st.id == id) {
                continue;
            }
            parts.push(self.open_partition(id)?);
        }
        Ok(())
    }

    /// A problem the source reports by itself (e.g. brokers unreachable) shows
    /// in the pipeline's health; reported again at most every few seconds.
    fn report_source_problem(&mut self, last: &mut Option<(Instant, String)>) {
        let Some(problem) = self.source.problem() else { return };
        if last.as_ref().is_some_and(|(at, text)| *text == problem && at.elapsed() < Duration::from_secs(5)) {
            return;
        }
        tracing::warn!(problem = %problem, "source problem");
        self.events().problem(problem.clone());
        *last = Some((Instant::now(), problem));
    }

    /// Fetch and process one batch of a partition. Returns whether anything was read.
    fn pull(&mut self, st: &mut PartitionState) -> anyhow::Result<bool> {
        let mut want = self.config.batch.max_records;
        let mut use_replay_chain = false;
        if let Some(intent) = &st.replay {
            want = want.min(intent.end.saturating_sub(st.next) as usize);
            if want == 0 {
                return Ok(false);
            }
            // Rewrite with the versions that made the interrupted roll, switching where it switched.
            let (versions, until) = versions_at(intent, st.next);
            want = want.min(until.saturating_sub(st.next) as usize).max(1);
            if let Some(hashes) = versions.filter(|h| **h != self.chain.hashes()) {
                use_replay_chain = self.prepare_replay_chain(hashes);
            }
        }
        let fetched = self.source.fetch(&st.id, st.next, want)?;
        if let Ok(Some(end)) = self.source.end_offset(&st.id) {
            self.events().source_end(&st.id, end);
        }
        if fetched.offsets.is_empty() {
            st.next = st.next.max(fetched.next_offset);
            return Ok(false);
        }
        st.last_record = Instant::now();
        st.said = SourceState::Active;
        self.process(st, fetched, use_replay_chain)?;
        Ok(true)
    }

    fn process(&mut self, st: &mut PartitionState, fetched: Fetched, use_replay_chain: bool) -> anyhow::Result<()> {
        let store = self.store.clone();
        let first = fetched.offsets[0];
        let _span = tracing::debug_span!("batch", partition = %st.id, first_offset = first, records = fetched.offsets.len()).entered();
        let segment_start = st.replay.as_ref().map_or(first, |i| i.start);
        if st.segment.is_none() {
            let mut seg = Segment::new(st.id.clone(), segment_start);
            if let (Some(intent), Some(delta)) = (&st.replay, &mut self.delta)
                && intent.start == segment_start
                && delta.has(&delta_app_id(&self.config.name, &st.id), intent.end)?
            {
                // The log references this roll's files: rewriting them could change their bytes under readers.
                tracing::warn!(partition = %st.id, start = intent.start, end = intent.end, "the Delta log has this roll: its table files are not written again");
                seg = seg.without_table_files();
            }
            st.segment = Some(seg);
        }
        let seg = st.segment.as_mut().expect("opened above");
        let chain = match (&mut self.replay_chain, use_replay_chain) {
            (Some(c), true) => c,
            _ => &mut self.chain,
        };
        let hashes = chain.hashes();
        if seg.versions.last().map(|(_, h)| h) != Some(&hashes) {
            seg.versions.push((first, hashes));
        }
        let n = fetched.offsets.len() as u64;
        let pipeline = self.config.name.as_str();
        let events = PipelineEvents { pipeline, stats: &self.stats };
        if self.spec.land_raw {
            seg.write_raw(store.as_ref(), &fetched.batch.as_ref())?;
            events.raw_written(n);
        }
        if !chain.is_empty() || self.aggregate.is_some() || self.repartition.is_some() || self.join.is_some() {
            let shadow_stage = self.shadow.as_ref().filter(|_| !use_replay_chain).map(|(_, stage, _)| *stage);
            // A join's part: the joined rows are what the chain reads.
            let mut late = Vec::new();
            let joined = match &mut self.join {
                Some(j) => Some(super::join::land::join(j, &st.id, &fetched, pipeline, &mut late)?),
                None => None,
            };
            let (mut out, captured) = chain.run_capturing(joined.as_ref().map_or(&fetched.batch, |j| &j.rows), shadow_stage);
            if let Some(j) = &joined {
                events.joined(j.rows.len() as u64);
                // Chain origins point at joined rows; the segment wants input records.
                super::join::land::to_input(&mut out, &j.origins);
            }
            if let (Some(seen), Some((generation, _, candidate))) = (captured, self.shadow.as_mut()) {
                let mut part = super::shadow::ShadowReport::default();
                super::shadow::compare(candidate, &seen, &mut part);
                self.control.add_shadow_results(*generation, &part);
            }
            let chain: &Chain = if use_replay_chain { self.replay_chain.as_ref().unwrap_or(&self.chain) } else { &self.chain };
            events.stages_ran(chain, &out);
            let from = FromSource { pipeline, partition: &st.id, fetched: &fetched };
            // The chain's output as JSON records (a 0.2.0 last stage writes columns), rendered once for
            // everyone who reads records: the aggregate, the output topic, actions on records.
            let reads_records =
                self.aggregate.is_some() || self.repartition.is_some() || self.output.is_some() || self.actions.as_ref().is_some_and(|a| a.reads_records());
            let records = reads_records.then(|| out.output.to_json());
            // With an aggregate, the table gets window rows; their origin is the record that closed the window.
            let windows = match (&mut self.aggregate, &records) {
                (Some(a), Some(records)) => Some(super::aggregate::land::fold(a, &st.id, &out, records.as_ref().as_ref(), &from, &mut late)?),
                _ => None,
            };
            let last = chain.stages().len() as u32;
            if let (Some(r), Some(records)) = (&self.repartition, &records) {
                // The records go on (to the join or the windows); those that cannot be keyed stop here.
                let what = if self.join.is_none() && self.config.join.is_some() { "join" } else { "aggregate" };
                for (origin, kind, reason) in r.route(&mut st.moving, &st.id.topic, records.as_ref().as_ref(), &out.origins, fetched.batch.as_ref()) {
                    late.push(from.host_letter(origin, last, what, kind, &reason));
                }
            }
            let window_rows = windows.as_ref().map(|w| StageRows::Json(w.rows.clone()));
            let (rows, origins, writer) = match (&windows, &window_rows, &self.aggregate) {
                (Some(w), Some(rows), Some(a)) => (rows, w.origins.as_slice(), Some((last, a.compiled().as_ref()))),
                // The last stage wrote output the table cannot hold (a router lands no table).
                _ => (&out.output, out.origins.as_slice(), chain.stages().last().map(|s| (last - 1, s.transform.as_ref()))),
            };
            let processed = Processed { chain, failures: &out.failures, rows, origins, writer, more_dead: late };
            let landed = land_batch(seg, store.as_ref(), self.spec.table.as_ref(), DeadLetters::Segment(pipeline), &from, processed)?;
            let table_records = (rows.len() + out.failures.len()).saturating_sub(landed.dead_letters.len()) as u64;
            events.batch_landed(&landed, self.spec.table.is_some().then_some(table_records));
            if let (Some(topic), Some(records)) = (&self.output, &records) {
                // What the table got: the window rows, or the records.
                let table_rows = windows.as_ref().map_or_else(|| records.as_ref().as_ref(), |w| w.rows.as_ref());
                st.output.add(table_rows, origins, &landed.misfits, fetched.batch.as_ref(), &st.id, topic.partitions());
            }
            if let Some(actions) = &mut self.actions {
                let rows = ActionRows {
                    records: records.as_ref().filter(|_| actions.reads_records()).map(|r| (r.as_ref().as_ref(), out.origins.as_slice())),
                    windows: windows.as_ref().map(|w| (w.rows.as_ref(), w.origins.as_slice())),
                };
                // Stages count as the config has them: the transforms, the aggregate, then the actions.
                let first_stage = self.config.transforms.len() as u32 + u32::from(self.config.aggregate.is_some());
                let dead = actions.run(&st.id, &rows, &from, &fetched.offsets, first_stage, &self.stopping)?;
                land_action_letters(seg, store.as_ref(), &events, dead)?;
            }
            if !use_replay_chain {
                self.judge(&out, fetched.offsets.len() as u64);
            }
        } else {
            // No transforms: the output topic mirrors the input, and the actions read it.
            let origins: Vec<u32> = (0..fetched.offsets.len() as u32).collect();
            if let Some(topic) = &self.output {
                st.output.add(fetched.batch.as_ref(), &origins, &[], fetched.batch.as_ref(), &st.id, topic.partitions());
            }
            if let Some(actions) = &mut self.actions {
                let rows = ActionRows { records: Some((fetched.batch.as_ref(), origins.as_slice())), windows: None };
                let from = FromSource { pipeline, partition: &st.id, fetched: &fetched };
                let dead = actions.run(&st.id, &rows, &from, &fetched.offsets, 0, &self.stopping)?;
                land_action_letters(seg, store.as_ref(), &events, dead)?;
            }
        }
        seg.end = fetched.next_offset;
        seg.input_records += n;
        seg.input_bytes += fetched.batch.byte_size() as u64;
        st.next = fetched.next_offset;
        let bytes = fetched.batch.values.len() as u64;
        // A windows or join worker reads an internal topic: its records were counted in when the router read them.
        let keyed = match (&self.aggregate, &mut self.join) {
            (Some(a), _) => Some(a.status(&st.id)),
            (None, Some(j)) => Some(j.status(&st.id)),
            (None, None) => None,
        };
        match keyed {
            Some(status) => {
                self.events().repartition_read(&st.id, n, bytes);
                if let Some(w) = status {
                    self.stats.set_windows(&st.id, w);
                }
            }
            None => self.events().batch_read(&st.id, n, bytes),
        }
        Ok(())
    }

    fn events(&self) -> PipelineEvents<'_> {
        PipelineEvents { pipeline: &self.config.name, stats: &self.stats }
    }

    /// Lineage written into every object: which transform versions made it, from which offset.
    fn lineage(&self, versions: &[(u64, Vec<String>)]) -> Vec<(String, String)> {
        let registry = self.control.registry();
        let mut l = vec![("sluice.pipeline".to_owned(), self.config.name.clone())];
        for (i, (from, hashes)) in versions.iter().enumerate() {
            let names: Vec<String> = hashes
                .iter()
                .map(|h| match registry.by_hash(h) {
                    Some(v) => format!("{}@{} sha256:{h}", v.name, v.version),
                    None => format!("sha256:{h}"),
                })
                .collect();
            l.push((format!("sluice.transforms.{i}"), format!("from offset {from}: {}", names.join(" | "))));
        }
        l
    }

    fn should_roll(&self, st: &PartitionState, stopping: bool) -> bool {
        let Some(seg) = &st.segment else { return false };
        if let Some(intent) = &st.replay {
            // An interrupted roll is rewritten exactly: same range, nothing more.
            return st.next >= intent.end;
        }
        let r = &self.config.roll;
        stopping || seg.input_records >= r.max_records || seg.buffered_bytes() >= r.max_bytes || seg.opened.elapsed() >= Duration::from_millis(r.max_age_ms)
    }

    /// Roll the largest segments until what they hold fits the memory budget.
    fn keep_within_budget(&mut self, parts: &mut [PartitionState]) {
        let budget = self.config.roll.memory_budget_bytes;
        loop {
            let held: u64 = parts.iter().map(PartitionState::held_bytes).sum();
            if held <= budget {
                return;
            }
            let largest = parts.iter_mut().filter(|p| p.replay.is_none()).filter(|p| p.segment.is_some()).max_by_key(|p| p.held_bytes());
            let Some(st) = largest else { return };
            tracing::debug!(partition = %st.id, held, budget, "memory budget reached: rolling the largest segment");
            if let Err(e) = self.roll(st) {
                self.recover(st, "rolling a segment", e);
                return;
            }
        }
    }

    fn roll(&mut self, st: &mut PartitionState) -> anyhow::Result<()> {
        let open = st.segment.as_ref().expect("should_roll saw a segment");
        let mut intent = Intent { start: open.start, end: open.end, versions: open.versions.clone(), output_from: None };
        let replaying = st.replay.as_ref().is_some_and(|r| r.same_range(&intent));
        if replaying {
            intent.output_from = st.replay.as_ref().and_then(|r| r.output_from.clone());
        } else {
            // Asked while the segment is still held: if this fails, the range is read again.
            // (A router has no output topic: its hop's ends go in their place.)
            if let Some(topic) = &mut self.output {
                intent.output_from = topic.ends()?;
            } else if let Some(r) = &mut self.repartition {
                intent.output_from = r.ends()?;
            }
            self.source.record_intent(&st.id, &intent)?;
            // From here a failure must rewrite exactly this range.
            st.replay = Some(intent.clone());
        }
        let seg = st.segment.take().expect("should_roll saw a segment");
        crate::failpoint::hit("roll.after_intent");
        let started = Instant::now();
        let mut lineage = self.lineage(&seg.versions);
        if let Some(a) = &self.aggregate {
            lineage.push(("sluice.aggregate".to_owned(), a.lineage()));
        }
        let summary = seg.finish(&lineage)?;
        if let Some(delta) = &mut self.delta {
            // The files are durable; the log takes them with the position they reach, once.
            let app_id = delta_app_id(&self.config.name, &st.id);
            let committed = delta.commit(RollCommit { app_id, version: intent.end, files: &summary.table_files, lineage: &lineage, replay: replaying })?;
            PipelineEvents { pipeline: &self.config.name, stats: &self.stats }.delta_committed(delta.name(), committed);
        }
        if let Some(a) = &mut self.aggregate {
            // The window state goes with the position: saved before it is committed.
            a.checkpoint(&st.id, intent.end)?;
        }
        if let Some(a) = &self.actions {
            a.checkpoint(&st.id, intent.end)?;
        }
        if let Some(j) = &self.join {
            j.checkpoint(&st.id, intent.end)?;
        }
        if let Some(r) = &mut self.repartition
            && !st.moving.is_empty()
        {
            // Moved once the raw records and dead letters are durable; a replay of this roll moves nothing twice.
            let replay_from = if replaying { intent.output_from.as_ref() } else { None };
            let moved = r.write(&output::writer(&self.config.name, &st.id), intent.end, std::mem::take(&mut st.moving), replay_from)?;
            PipelineEvents { pipeline: &self.config.name, stats: &self.stats }.repartitioned(r.topic(), moved);
        }
        if let Some(topic) = &mut self.output
            && !st.output.is_empty()
        {
            // Written once the objects are durable; a replay of this roll writes only what the topic lacks.
            let replay_from = if replaying { intent.output_from.as_ref() } else { None };
            let written = topic.write(&output::writer(&self.config.name, &st.id), intent.end, st.output.take(), replay_from)?;
            PipelineEvents { pipeline: &self.config.name, stats: &self.stats }.output_written(topic.topic(), written);
        }
        crate::failpoint::hit("roll.before_commit");
        self.source.commit(&st.id, intent.end)?;
        st.replay = None;
        if let Some(a) = &mut self.aggregate {
            a.committed(&st.id, intent.end);
        }
        if let Some(a) = &self.actions {
            a.committed(&st.id, intent.end);
        }
        if let Some(j) = &self.join {
            j.committed(&st.id, intent.end);
        }
        self.events().rolled(&st.id, intent.end, &summary, started.elapsed());
        tracing::debug!(partition = %st.id, start = intent.start, end = intent.end, objects = summary.objects.len(), bytes = summary.bytes,
            took_ms = started.elapsed().as_millis() as u64, "segment landed and committed");
        Ok(())
    }

    /// A write or commit failed: abandon the open segment (its objects stay
    /// invisible) and read its range again after a pause.
    fn recover(&mut self, st: &mut PartitionState, doing: &str, e: anyhow::Error) {
        let msg = format!("{doing} for {} failed: {e:#}", st.id);
        tracing::error!("{msg}; retrying");
        self.events().failed(msg);
        // Read the range again: exactly the recorded one if a roll had started
        // (its segment is already out of `st`), else from the open segment's start.
        let segment_start = st.segment.take().map(|seg| seg.start);
        st.output.take();
        st.moving = Moving::default();
        if let Some(start) = st.replay.as_ref().map(|i| i.start).or(segment_start) {
            st.next = start;
            // The windows folded records that will be read again: go back to their state at the start.
            if let Some(a) = &mut self.aggregate
                && let Err(e) = a.resume(&st.id, start)
            {
                tracing::error!(partition = %st.id, error = %format!("{e:#}"), "could not reload the aggregate state");
            }
            if let Some(a) = &mut self.actions
                && let Err(e) = a.resume(&st.id, start)
            {
                tracing::error!(partition = %st.id, error = %format!("{e:#}"), "could not reload the actions' previous window rows");
            }
            if let Some(j) = &mut self.join
                && let Err(e) = j.resume(&st.id, start)
            {
                tracing::error!(partition = %st.id, error = %format!("{e:#}"), "could not reload the join state");
            }
        }
        std::thread::sleep(ERROR_BACKOFF);
    }

    /// Between batches: if an operator (or an automatic rollback) changed a
    /// version, switch to the new chain now. Records already processed stay
    /// with the old version; everything read from here on gets the new one.
    fn pick_up_swap(&mut self) {
        let shadow_generation = self.control.shadow_generation();
        if self.shadow.as_ref().map_or(0, |(g, _, _)| *g) != shadow_generation {
            self.shadow = self.control.shadow_target().map(|(g, stage, candidate)| (g, stage, candidate.instance()));
        }
        if self.control.generation() == self.generation {
            return;
        }
        let (generation, stages) = self.control.chain();
        let (mut transforms, aggregate) = super::aggregate::split_stages(stages, self.config.aggregate.is_some());
        if !self.runs_transforms {
            transforms.clear();
        }
        if let (Some(stage), Some(next)) = (&mut self.aggregate, aggregate)
            && stage.compiled().content_hash() != next.content_hash()
            && let Err(e) = stage.swap(next)
        {
            // Activation checks the state format, so this is a failing upgrade: keep the running version.
            let msg = format!("handing the window state to the new aggregate version failed: {e}");
            tracing::error!("{msg}");
            self.events().failed(msg);
        }
        self.chain = Chain::new(transforms);
        self.generation = generation;
        self.probe = self.control.on_probation().filter(|(g, _)| *g == generation).map(|(generation, stage)| Probe {
            generation,
            stage,
            batches: 0,
            records: 0,
            rejected: 0,
            failed: 0,
        });
        tracing::info!(generation, versions = ?self.chain.hashes(), "switched transform versions between batches");
    }

    /// Build the chain an interrupted roll used, if its versions are still known.
    fn prepare_replay_chain(&mut self, hashes: &[String]) -> bool {
        if self.replay_chain.as_ref().is_some_and(|c| c.hashes() == hashes) {
            return true;
        }
        let registry = self.control.registry().clone();
        let resolved: Option<Vec<_>> = hashes.iter().map(|h| registry.by_hash(h).and_then(|v| registry.compiled(&v).ok())).collect();
        match resolved {
            Some(transforms) => {
                self.replay_chain = Some(Chain::new(transforms));
                true
            }
            None => {
                tracing::error!(?hashes, "an interrupted roll used transform versions that are no longer stored; rewriting it with the active ones");
                false
            }
        }
    }

    /// Count how a version on probation does; roll it back if it does badly.
    fn judge(&mut self, out: &ChainOutput, records: u64) {
        let Some(p) = self.probe.as_mut() else { return };
        let cfg = &self.control.auto_rollback;
        p.batches += 1;
        p.records += records;
        for f in &out.failures {
            if f.kind == FailureKind::Rejected { p.rejected += 1 } else { p.failed += 1 }
        }
        if p.batches < cfg.batches {
            return;
        }
        let seen = p.records;
        let (rejection_rate, failure_rate) = (p.rejected as f64 / seen.max(1) as f64, p.failed as f64 / seen.max(1) as f64);
        let (generation, stage) = (p.generation, p.stage);
        self.probe = None;
        let why = if rejection_rate > cfg.max_rejection_rate {
            format!("auto-rollback: {:.0}% of {seen} records refused (limit {:.0}%)", rejection_rate * 100.0, cfg.max_rejection_rate * 100.0)
        } else if failure_rate > cfg.max_trap_rate {
            format!("auto-rollback: {:.1}% of {seen} records trapped or timed out (limit {:.1}%)", failure_rate * 100.0, cfg.max_trap_rate * 100.0)
        } else {
            self.control.trust(generation);
            return;
        };
        let events = self.events();
        match self.control.rollback_counted(stage, &why, Some(generation), || events.rolled_back()) {
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "automatic rollback failed"),
        }
    }

    fn idle_wait(&self, parts: &[PartitionState]) -> Duration {
        let max_age = Duration::from_millis(self.config.roll.max_age_ms);
        parts.iter().filter_map(|p| p.segment.as_ref()).map(|s| max_age.saturating_sub(s.opened.elapsed())).fold(IDLE_WAIT, Duration::min)
    }
}

/// The actions' dead letters go into the segment with the batch's own.
fn land_action_letters(seg: &mut Segment, store: &dyn ObjectStore, events: &PipelineEvents<'_>, dead: Vec<DeadLetter>) -> anyhow::Result<()> {
    if !dead.is_empty() {
        seg.write_dead_letters(store, events.pipeline, &dead)?;
        events.dead_lettered(&dead);
    }
    Ok(())
}

/// Whose position a Delta commit's `txn` action records: one input partition of one pipeline.
fn delta_app_id(pipeline: &str, p: &PartitionId) -> String {
    format!("{pipeline}/{}/{}", p.topic, p.partition)
}

/// The transform versions an intent used at `offset`, and the offset where they change.
fn versions_at(intent: &Intent, offset: u64) -> (Option<&Vec<String>>, u64) {
    let mut current = None;
    let mut until = intent.end;
    for (from, hashes) in &intent.versions {
        if *from <= offset {
            current = Some(hashes);
        } else {
            until = *from;
            break;
        }
    }
    (current, until)
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
