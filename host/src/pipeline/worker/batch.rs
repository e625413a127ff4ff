//! One batch of one partition: fetched, passed through the stages into the
//! partition's open segment.

use super::{PartitionState, PipelineWorker};
use crate::pipeline::events::PipelineEvents;
use crate::pipeline::stage::{Flow, Landing, Settled};
use crate::position::{Fetched, Intent};
use crate::sink::Segment;

impl PipelineWorker {
    /// Whether every stage is done with the partition's last batch (work in
    /// the background lands in the segment when it is).
    pub(super) fn settle(&mut self, st: &mut PartitionState) -> anyhow::Result<bool> {
        // Work in the background belongs to a batch of the open segment: none without one.
        let Some(segment) = st.segment.as_mut() else { return Ok(true) };
        let mut landing = Landing { segment, store: self.store.as_ref(), events: PipelineEvents { pipeline: &self.config.name, stats: &self.stats } };
        let mut done = true;
        for s in &mut self.stages {
            done &= s.settle(&st.id, &mut landing)? == Settled::Done;
        }
        Ok(done)
    }

    /// Fetch and process one batch of a partition. Returns whether anything was read.
    pub(super) fn pull(&mut self, st: &mut PartitionState) -> anyhow::Result<bool> {
        let mut want = self.config.batch.max_records;
        if let Some(intent) = &st.replay {
            want = want.min(intent.end.saturating_sub(st.next) as usize);
            if want == 0 {
                return Ok(false);
            }
            // Rewrite with the versions that made the interrupted roll, switching where it switched.
            let (_, until) = versions_at(intent, st.next);
            want = want.min(until.saturating_sub(st.next) as usize).max(1);
        }
        let fetched = self.source.fetch(&st.id, st.next, want)?;
        if let Ok(Some(end)) = self.source.end_offset(&st.id) {
            self.events().source_end(&st.id, end);
        }
        if fetched.offsets.is_empty() {
            st.next = st.next.max(fetched.next_offset);
            return Ok(false);
        }
        self.process(st, &fetched)?;
        Ok(true)
    }

    /// Pass a fetched batch through every stage, into the partition's open segment.
    fn process(&mut self, st: &mut PartitionState, fetched: &Fetched) -> anyhow::Result<()> {
        let first = fetched.offsets[0];
        let _span = tracing::debug_span!("batch", partition = %st.id, first_offset = first, records = fetched.offsets.len()).entered();
        let segment_start = st.replay.as_ref().map_or(first, |i| i.start);
        let segment = st.segment.get_or_insert_with(|| Segment::new(st.id.clone(), segment_start));
        let events = PipelineEvents { pipeline: &self.config.name, stats: &self.stats };
        let landing = Landing { segment, store: self.store.as_ref(), events };
        let mut flow = Flow::new(landing, &st.id, fetched, &self.stopping);
        flow.replay = st.replay.as_ref();
        flow.replay_versions = st.replay.as_ref().and_then(|i| versions_at(i, first).0).map(Vec::as_slice);
        for s in &mut self.stages {
            s.process(&mut flow).map_err(|e| e.context(format!("the {} stage", s.name())))?;
        }
        let versions = std::mem::take(&mut flow.versions);
        drop(flow);
        let seg = st.segment.as_mut().expect("opened above");
        if seg.versions.last().map(|(_, h)| h) != Some(&versions) {
            seg.versions.push((first, versions));
        }
        let n = fetched.offsets.len() as u64;
        seg.end = fetched.next_offset;
        seg.input_records += n;
        seg.input_bytes += fetched.batch.byte_size() as u64;
        st.next = fetched.next_offset;
        let bytes = fetched.batch.values.len() as u64;
        if self.reads_internal_topic {
            // Its records were counted in when the router read them.
            self.events().repartition_read(&st.id, n, bytes);
        } else {
            self.events().batch_read(&st.id, n, bytes);
        }
        Ok(())
    }
}

/// The transform versions an intent used at `offset`, and the offset where they change.
pub(super) fn versions_at(intent: &Intent, offset: u64) -> (Option<&Vec<String>>, u64) {
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
