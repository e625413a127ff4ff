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

use super::chain::Chain;
use super::config::PipelineConfig;
use super::stats::PipelineStats;
use crate::sink::{DeadLetter, ObjectStore, Segment, SegmentSpec};
use crate::source::{Fetched, Intent, PartitionId, Source};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
}

pub struct PipelineWorker {
    pub config: PipelineConfig,
    pub spec: SegmentSpec,
    pub source: Box<dyn Source>,
    pub chain: Chain,
    pub store: Arc<dyn ObjectStore>,
    pub stats: Arc<PipelineStats>,
}

impl PipelineWorker {
    /// Run until `stop` is raised; then roll every open segment and return.
    pub fn run(mut self, stop: &StopFlag) -> anyhow::Result<()> {
        let name = self.config.name.clone();
        let _span = tracing::info_span!("pipeline", pipeline = %name).entered();
        let mut parts = self.load_partitions()?;
        self.stats.set_state("running");
        tracing::info!(partitions = parts.len(), "pipeline started");
        loop {
            let stopping = stop.is_stopped();
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
            if stopping && parts.iter().all(|p| p.segment.is_none() || p.replay.is_some()) {
                break;
            }
            if !progressed {
                self.source.wait(self.idle_wait(&parts));
            }
        }
        self.stats.set_state("stopped");
        tracing::info!("pipeline stopped; every landed record is committed");
        Ok(())
    }

    fn load_partitions(&mut self) -> anyhow::Result<Vec<PartitionState>> {
        let mut parts = Vec::new();
        for id in self.source.partitions()? {
            let cp = self.source.checkpoint(&id)?;
            let mut next = cp.next_offset;
            if let Some(intent) = &cp.intent {
                tracing::warn!(partition = %id, start = intent.start, end = intent.end, "resuming an interrupted roll: rewriting its objects");
                next = intent.start;
                if intent.versions.last().map(|(_, h)| h) != Some(&self.chain.hashes()) && !self.chain.is_empty() {
                    tracing::warn!(partition = %id, "the interrupted roll used other transform versions than the active ones; its objects are rewritten with the active ones");
                }
            }
            self.stats.set_committed(&id, cp.next_offset);
            parts.push(PartitionState { id, next, replay: cp.intent, segment: None });
        }
        Ok(parts)
    }

    /// Fetch and process one batch of a partition. Returns whether anything was read.
    fn pull(&mut self, st: &mut PartitionState) -> anyhow::Result<bool> {
        let mut want = self.config.batch.max_records;
        if let Some(intent) = &st.replay {
            want = want.min(intent.end.saturating_sub(st.next) as usize);
            if want == 0 {
                return Ok(false);
            }
        }
        let fetched = self.source.fetch(&st.id, st.next, want, Duration::ZERO)?;
        if let Ok(Some(end)) = self.source.end_offset(&st.id) {
            self.stats.set_end(&st.id, end);
        }
        if fetched.offsets.is_empty() {
            st.next = st.next.max(fetched.next_offset);
            return Ok(false);
        }
        self.process(st, fetched)?;
        Ok(true)
    }

    fn process(&mut self, st: &mut PartitionState, fetched: Fetched) -> anyhow::Result<()> {
        let store = self.store.clone();
        let first = fetched.offsets[0];
        let lineage = self.lineage();
        let segment_start = st.replay.as_ref().map_or(first, |i| i.start);
        let seg = st.segment.get_or_insert_with(|| Segment::new(st.id.clone(), segment_start, lineage));
        let hashes = self.chain.hashes();
        if seg.versions.last().map(|(_, h)| h) != Some(&hashes) {
            seg.versions.push((first, hashes));
        }
        let n = fetched.offsets.len() as u64;
        if self.spec.land_raw {
            seg.write_raw(store.as_ref(), &fetched.batch.as_ref())?;
            PipelineStats::add(&self.stats.raw_records, n);
        }
        if !self.chain.is_empty() {
            let out = self.chain.run(&fetched.batch);
            let mut dead = Vec::with_capacity(out.failures.len());
            for f in &out.failures {
                let mut d = self.dead_letter(&st.id, &fetched, f.input_index as usize, f.stage, f.kind, &f.reason);
                d.set_value(&f.value);
                dead.push(d);
            }
            if let Some(table) = &self.spec.table {
                let misfits = seg.write_table(store.as_ref(), table, &out.output.as_ref())?;
                PipelineStats::add(&self.stats.table_rows, (out.output.len() - misfits.len()) as u64);
                // The last stage wrote output the table cannot hold.
                let last = self.chain.stages().len() as u32 - 1;
                for (i, reason) in misfits {
                    let mut d = self.dead_letter(&st.id, &fetched, out.origins[i as usize] as usize, last, "schema", &reason);
                    d.set_value(out.output.as_ref().get(i as usize).value);
                    dead.push(d);
                }
            }
            PipelineStats::add(&self.stats.dead_letters, dead.len() as u64);
            seg.write_dead_letters(store.as_ref(), &self.config.name, &dead)?;
        }
        seg.end = fetched.next_offset;
        seg.input_records += n;
        seg.input_bytes += fetched.batch.byte_size() as u64;
        st.next = fetched.next_offset;
        PipelineStats::add(&self.stats.records_in, n);
        Ok(())
    }

    fn dead_letter(&self, p: &PartitionId, fetched: &Fetched, index: usize, stage: u32, kind: &str, reason: &str) -> DeadLetter {
        let rec = fetched.batch.as_ref().get(index);
        let t = &self.chain.stages()[stage as usize].transform;
        DeadLetter {
            pipeline: self.config.name.clone(),
            topic: p.topic.to_string(),
            partition: p.partition,
            offset: fetched.offsets[index],
            stage,
            transform: t.descriptor().name.clone(),
            version: t.descriptor().version.clone(),
            content_hash: t.content_hash().to_owned(),
            kind: kind.to_owned(),
            reason: reason.to_owned(),
            timestamp: rec.timestamp,
            key: (!rec.key.is_empty()).then(|| String::from_utf8_lossy(rec.key).into_owned()),
            value: None,
            value_base64: None,
        }
    }

    /// Lineage written into every object: which transforms made it.
    fn lineage(&self) -> Vec<(String, String)> {
        let mut l = vec![("sluice.pipeline".to_owned(), self.config.name.clone())];
        for (i, s) in self.chain.stages().iter().enumerate() {
            let d = s.transform.descriptor();
            l.push((format!("sluice.transform.{i}"), format!("{}@{} sha256:{}", d.name, d.version, s.transform.content_hash())));
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
        stopping
            || seg.input_records >= r.max_records
            || seg.buffered_bytes() >= r.max_bytes
            || seg.opened.elapsed() >= Duration::from_millis(r.max_age_ms)
    }

    fn roll(&mut self, st: &mut PartitionState) -> anyhow::Result<()> {
        let seg = st.segment.take().expect("should_roll saw a segment");
        let intent = Intent { start: seg.start, end: seg.end, versions: seg.versions.clone() };
        if st.replay.as_ref() != Some(&intent) {
            self.source.record_intent(&st.id, &intent)?;
            // From here a failure must rewrite exactly this range.
            st.replay = Some(intent.clone());
        }
        crate::failpoint::hit("roll.after_intent");
        let started = Instant::now();
        let summary = seg.finish()?;
        crate::failpoint::hit("roll.before_commit");
        self.source.commit(&st.id, intent.end)?;
        st.replay = None;
        self.stats.set_committed(&st.id, intent.end);
        PipelineStats::add(&self.stats.segments, 1);
        PipelineStats::add(&self.stats.bytes_landed, summary.bytes);
        tracing::debug!(partition = %st.id, start = intent.start, end = intent.end, objects = summary.objects.len(), bytes = summary.bytes,
            took_ms = started.elapsed().as_millis() as u64, "segment landed and committed");
        Ok(())
    }

    /// A write or commit failed: abandon the open segment (its objects stay
    /// invisible) and read its range again after a pause.
    fn recover(&mut self, st: &mut PartitionState, doing: &str, e: anyhow::Error) {
        let msg = format!("{doing} for {} failed: {e:#}", st.id);
        tracing::error!("{msg}; retrying");
        self.stats.set_error(msg);
        if let Some(seg) = st.segment.take() {
            st.next = st.replay.as_ref().map_or(seg.start, |i| i.start);
        }
        std::thread::sleep(ERROR_BACKOFF);
    }

    fn idle_wait(&self, parts: &[PartitionState]) -> Duration {
        let max_age = Duration::from_millis(self.config.roll.max_age_ms);
        parts
            .iter()
            .filter_map(|p| p.segment.as_ref())
            .map(|s| max_age.saturating_sub(s.opened.elapsed()))
            .fold(IDLE_WAIT, Duration::min)
    }
}
