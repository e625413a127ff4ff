//! Rolling a partition's segment: the commit protocol that makes landing
//! effectively once, written once over the part's stages.
//!
//! 1. every stage notes in the intent where the topics it writes end; the
//!    intent `[start, end)` (and transform versions) is recorded durably;
//! 2. every object of the segment is finished (durable, visible);
//! 3. every stage lands what goes with the roll (state snapshots at `end`,
//!    records moved into an internal topic, the output topic, a Delta commit);
//! 4. the source position `end` is committed and the intent cleared, atomically;
//! 5. every stage hears that `end` is committed (old snapshots can go).
//!
//! A crash before 1 leaves only invisible in-progress objects. A crash between
//! 1 and 4 is repaired on restart by re-reading exactly `[start, end)` and
//! rewriting the same objects (names depend only on `start`; content only on
//! the records and the transform versions); each stage's landing is
//! idempotent for a replayed roll. A failure at any step is [`recover`]ed the
//! same way without a restart: the stages reopen their state at the committed
//! position, and a stage that cannot fails the partition instead of folding
//! its records twice.
//!
//! [`recover`]: PipelineWorker::recover

use super::{ERROR_BACKOFF, PartitionState, PipelineWorker};
use crate::pipeline::events::PipelineEvents;
use crate::pipeline::stage::Roll;
use crate::position::Intent;
use std::time::{Duration, Instant};

impl PipelineWorker {
    pub(super) fn should_roll(&self, st: &PartitionState, stopping: bool) -> bool {
        let Some(seg) = &st.segment else { return false };
        if let Some(intent) = &st.replay {
            // An interrupted roll is rewritten exactly: same range, nothing more.
            return st.next >= intent.end;
        }
        let r = &self.config.roll;
        stopping || seg.input_records >= r.max_records || seg.buffered_bytes() >= r.max_bytes || seg.opened.elapsed() >= Duration::from_millis(r.max_age_ms)
    }

    /// Memory a partition holds until its segment rolls.
    fn held_bytes(&self, st: &PartitionState) -> u64 {
        st.segment.as_ref().map_or(0, |s| s.buffered_bytes()) + self.stages.iter().map(|s| s.held_bytes(&st.id)).sum::<u64>()
    }

    /// Roll the largest segments until what they hold fits the memory budget.
    pub(super) fn keep_within_budget(&mut self, parts: &mut [PartitionState]) {
        let budget = self.config.roll.memory_budget_bytes;
        loop {
            let held: u64 = parts.iter().map(|p| self.held_bytes(p)).sum();
            if held <= budget {
                return;
            }
            let mut candidates: Vec<(u64, usize)> = parts
                .iter()
                .enumerate()
                .filter(|(_, p)| p.replay.is_none() && p.segment.is_some() && p.failed.is_none())
                .map(|(i, p)| (self.held_bytes(p), i))
                .collect();
            candidates.sort_unstable();
            // The largest that can roll: one whose stages are still at work on its last batch cannot yet.
            let mut rolled = false;
            for (_, i) in candidates.into_iter().rev() {
                let st = &mut parts[i];
                match self.settle(st) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        self.recover(st, "delivering a batch's actions", e);
                        return;
                    }
                }
                tracing::debug!(partition = %st.id, held, budget, "memory budget reached: rolling the largest segment");
                if let Err(e) = self.roll(st) {
                    self.recover(st, "rolling a segment", e);
                    return;
                }
                rolled = true;
                break;
            }
            if !rolled {
                return;
            }
        }
    }

    pub(super) fn roll(&mut self, st: &mut PartitionState) -> anyhow::Result<()> {
        let open = st.segment.as_ref().expect("should_roll saw a segment");
        let mut intent = Intent::new(open.start, open.end, open.versions.clone());
        let replaying = st.replay.as_ref().is_some_and(|r| r.same_range(&intent));
        if replaying {
            // The ends the first run recorded: a replay looks from there for what it wrote.
            intent = st.replay.clone().expect("replaying a recorded intent");
        } else {
            // Asked while the segment is still held: if this fails, the range is read again.
            for s in &mut self.stages {
                s.prepare(&st.id, &mut intent).map_err(|e| e.context(format!("preparing the {} stage's roll", s.name())))?;
            }
            self.source.record_intent(&st.id, &intent)?;
            // From here a failure must rewrite exactly this range.
            st.replay = Some(intent.clone());
        }
        let seg = st.segment.take().expect("should_roll saw a segment");
        crate::failpoint::hit("roll.after_intent");
        let started = Instant::now();
        let mut lineage = self.lineage(&seg.versions);
        for s in &self.stages {
            lineage.extend(s.lineage());
        }
        let summary = seg.finish(&lineage)?;
        let events = PipelineEvents { pipeline: &self.config.name, stats: &self.stats };
        let roll = Roll { partition: &st.id, intent: &intent, replaying, summary: &summary, lineage: &lineage, events };
        for s in &mut self.stages {
            s.land(&roll).map_err(|e| e.context(format!("landing the {} stage's part of the roll", s.name())))?;
        }
        crate::failpoint::hit("roll.before_commit");
        self.source.commit(&st.id, intent.end)?;
        st.replay = None;
        for s in &mut self.stages {
            if let Err(e) = s.committed(&st.id, intent.end) {
                tracing::warn!(partition = %st.id, stage = s.name(), error = %format!("{e:#}"), "after a commit");
            }
        }
        self.events().rolled(&st.id, intent.end, &summary, started.elapsed());
        tracing::debug!(partition = %st.id, start = intent.start, end = intent.end, objects = summary.objects.len(), bytes = summary.bytes,
            took_ms = started.elapsed().as_millis() as u64, "segment landed and committed");
        Ok(())
    }

    /// A write or commit failed: abandon the open segment (its objects stay
    /// invisible), take every stage back to its state at the committed
    /// position, and read the range again after a pause. A stage that cannot
    /// reopen its state fails the partition: the records it already folded
    /// would be folded a second time.
    pub(super) fn recover(&mut self, st: &mut PartitionState, doing: &str, e: anyhow::Error) {
        let msg = format!("{doing} for {} failed: {e:#}", st.id);
        tracing::error!("{msg}; retrying");
        self.events().failed(msg);
        // Read the range again: exactly the recorded one if a roll had started
        // (its segment is already out of `st`), else from the open segment's start.
        let segment_start = st.segment.take().map(|seg| seg.start);
        if let Some(start) = st.replay.as_ref().map(|i| i.start).or(segment_start) {
            st.next = start;
            if let Err(e) = self.open_stages(&st.id, start) {
                self.fail_partition(st, e);
            }
        }
        std::thread::sleep(ERROR_BACKOFF);
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
}
