//! The loop of one pipeline worker: fetch a batch of a partition, pass it
//! through the part's stages, roll the partition's segment when it is due.
//!
//! Rolling a segment is the commit protocol that makes landing effectively
//! once (`roll.rs`): record the intent, finish the segment's objects, let
//! each stage land what goes with the roll, commit the input position. This
//! file keeps the partitions: which the source assigns, where each is, which
//! could not be opened.

mod batch;
mod roll;

use super::config::PipelineConfig;
use super::control::PipelineControl;
use super::events::PipelineEvents;
use super::stage::Stage;
use super::stats::{PipelineState, PipelineStats};
use crate::position::{Intent, PartitionId};
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
/// Pause before trying again to open a partition whose state could not be opened.
#[cfg(not(test))]
const REOPEN_BACKOFF: Duration = Duration::from_secs(5);
#[cfg(test)]
const REOPEN_BACKOFF: Duration = Duration::from_millis(100);

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
    /// A roll interrupted by a crash or a failure: re-read exactly up to its end, then roll.
    replay: Option<Intent>,
    segment: Option<Segment>,
    /// Its stages' state could not be opened: it is not read until it can be
    /// (going on would fold its records a second time). When, and why.
    failed: Option<(Instant, String)>,
}

impl PartitionState {
    /// Nothing held: no open segment, no roll to rewrite.
    fn settled(&self) -> bool {
        self.segment.is_none() && self.replay.is_none()
    }
}

pub struct PipelineWorker {
    pub config: PipelineConfig,
    pub spec: SegmentSpec,
    pub source: Box<dyn Source>,
    pub store: Arc<dyn ObjectStore>,
    pub stats: Arc<PipelineStats>,
    pub control: Arc<PipelineControl>,
    /// The part's stages, in the order a batch flows through them (see `plan`).
    stages: Vec<Box<dyn Stage>>,
    /// Whether the part reads an internal topic, whose records were counted in where they entered.
    reads_internal_topic: bool,
    /// Raised with the stop flag: background work (a webhook being retried) gives up waiting.
    stopping: Arc<AtomicBool>,
}

impl PipelineWorker {
    pub fn new(
        config: PipelineConfig,
        planned: super::plan::Planned,
        reads_internal_topic: bool,
        source: Box<dyn Source>,
        store: Arc<dyn ObjectStore>,
        stats: Arc<PipelineStats>,
        control: Arc<PipelineControl>,
    ) -> Self {
        PipelineWorker { config, spec: planned.spec, source, store, stats, control, stages: planned.stages, reads_internal_topic, stopping: Default::default() }
    }

    /// Run until `stop` is raised; then roll every open segment and return.
    pub fn run(mut self, stop: &StopFlag) -> anyhow::Result<()> {
        let name = self.config.name.clone();
        let _span = tracing::info_span!("pipeline", pipeline = %name).entered();
        self.stopping = stop.0.clone();
        let mut parts = Vec::new();
        for id in self.source.partitions()? {
            parts.push(self.open_partition(id)?);
        }
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
            let events = PipelineEvents { pipeline: &self.config.name, stats: &self.stats };
            for s in &mut self.stages {
                s.swap(&self.control, &events);
            }
            let mut progressed = false;
            for st in parts.iter_mut() {
                progressed |= self.step(st, stopping);
            }
            self.keep_within_budget(&mut parts);
            let settled: Vec<&PartitionId> = parts.iter().filter(|p| p.settled() && p.failed.is_none()).map(|p| &p.id).collect();
            for s in &mut self.stages {
                s.quiet(&settled, !stopping);
            }
            if stop.is_stopped() && parts.iter().all(|p| p.segment.is_none() || p.replay.is_some() || p.failed.is_some()) {
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

    /// One turn of one partition: wait for its stages, read a batch, roll
    /// when due. Returns whether anything moved.
    fn step(&mut self, st: &mut PartitionState, stopping: bool) -> bool {
        if st.failed.is_some() {
            self.retry_open(st);
            return false;
        }
        match self.settle(st) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                self.recover(st, "delivering a batch's actions", e);
                return false;
            }
        }
        let mut progressed = false;
        if !stopping {
            match self.pull(st) {
                Ok(p) => progressed |= p,
                Err(e) => self.recover(st, "reading or landing", e),
            }
        }
        if st.failed.is_none() && self.should_roll(st, stopping) {
            // The batch just read may have started work in the background (a
            // webhook delivery): the segment rolls, and its position is
            // committed, only once that is done.
            match self.settle(st) {
                Ok(true) => {
                    progressed = true;
                    if let Err(e) = self.roll(st) {
                        self.recover(st, "rolling a segment", e);
                    }
                }
                Ok(false) => {}
                Err(e) => self.recover(st, "delivering a batch's actions", e),
            }
        }
        progressed
    }

    /// Start reading a partition where its checkpoint says. A stage whose
    /// state cannot be opened leaves the partition failed (retried later).
    fn open_partition(&mut self, id: PartitionId) -> anyhow::Result<PartitionState> {
        let mut st = PartitionState { id, next: 0, replay: None, segment: None, failed: None };
        self.position(&mut st)?;
        if let Err(e) = self.open_stages(&st.id, st.replay.as_ref().map_or(st.next, |i| i.start)) {
            self.fail_partition(&mut st, e);
        }
        Ok(st)
    }

    /// Set `st` at its committed position (and the roll to rewrite, if one was interrupted).
    fn position(&mut self, st: &mut PartitionState) -> anyhow::Result<()> {
        let cp = self.source.checkpoint(&st.id)?;
        st.next = cp.next_offset;
        if let Some(intent) = &cp.intent {
            tracing::warn!(partition = %st.id, start = intent.start, end = intent.end, "resuming an interrupted roll: rewriting its objects");
            st.next = intent.start;
        }
        st.replay = cp.intent;
        st.segment = None;
        self.events().committed(&st.id, cp.next_offset);
        Ok(())
    }

    /// Every stage takes `p` up at `committed`, in order.
    fn open_stages(&mut self, p: &PartitionId, committed: u64) -> anyhow::Result<()> {
        for s in &mut self.stages {
            s.open(p, committed).map_err(|e| e.context(format!("opening the {} stage's state of {p} at position {committed}", s.name())))?;
        }
        Ok(())
    }

    /// The partition's state could not be opened: say so loudly and read none of it until it can.
    fn fail_partition(&mut self, st: &mut PartitionState, e: anyhow::Error) {
        let msg = format!("partition {} is not read: {e:#}; retrying every {} s", st.id, REOPEN_BACKOFF.as_secs());
        tracing::error!("{msg}");
        self.events().failed(msg.clone());
        st.segment = None;
        st.failed = Some((Instant::now(), msg));
    }

    /// A failed partition: open it again from its checkpoint, once the pause is over.
    fn retry_open(&mut self, st: &mut PartitionState) {
        if st.failed.as_ref().is_some_and(|(at, _)| at.elapsed() < REOPEN_BACKOFF) {
            return;
        }
        let opened = self.position(st).and_then(|()| self.open_stages(&st.id, st.replay.as_ref().map_or(st.next, |i| i.start)));
        match opened {
            Ok(()) => {
                tracing::info!(partition = %st.id, next = st.next, "partition reopened from its checkpoint");
                st.failed = None;
            }
            Err(e) => self.fail_partition(st, e),
        }
    }

    /// The source's partitions changed (a consumer-group rebalance, a lease
    /// taken over): drop the ones that went to another member, and the ones
    /// that went away and came back (another member may have landed past
    /// what this worker holds of them), with every stage's state of them;
    /// open the ones that came to this one.
    fn reassign(&mut self, parts: &mut Vec<PartitionState>) -> anyhow::Result<()> {
        // Asked after `partitions`, so a loss during that call is not missed.
        let now = self.source.partitions()?;
        let revoked = self.source.revoked();
        let mut kept = Vec::with_capacity(parts.len());
        for mut st in parts.drain(..) {
            let (held, lost) = (now.contains(&st.id), revoked.contains(&st.id));
            if held && !lost {
                kept.push(st);
                continue;
            }
            // Never made visible; whoever lands these records next starts from the committed offset.
            let abandoned = st.segment.take().map_or(0, |s| s.input_records);
            for s in &mut self.stages {
                s.forget(&st.id);
            }
            self.stats.forget_partition(&st.id);
            if held {
                tracing::info!(partition = %st.id, abandoned_records = abandoned, "partition lost and taken back: its open segment and state are dropped, reading resumes from its checkpoint");
            } else {
                tracing::info!(partition = %st.id, abandoned_records = abandoned, "partition revoked: its open segment and state are dropped for the new owner");
            }
        }
        *parts = kept;
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

    fn events(&self) -> PipelineEvents<'_> {
        PipelineEvents { pipeline: &self.config.name, stats: &self.stats }
    }

    fn idle_wait(&self, parts: &[PartitionState]) -> Duration {
        let max_age = Duration::from_millis(self.config.roll.max_age_ms);
        parts.iter().filter_map(|p| p.segment.as_ref()).map(|s| max_age.saturating_sub(s.opened.elapsed())).fold(IDLE_WAIT, Duration::min)
    }
}

#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod tests;
