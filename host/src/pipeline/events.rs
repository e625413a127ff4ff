//! What happens in a pipeline, recorded once: each event updates the
//! pipeline's status counters (`/status`, the status page, the demo summary)
//! and its Prometheus metrics together, so the two never disagree and the
//! worker names no metric. In the spirit of Vector's internal events.

use super::chain::{Chain, ChainOutput};
use super::land::Landed;
use super::stats::{PipelineState, PipelineStats};
use crate::position::PartitionId;
use crate::sink::SegmentSummary;
use crate::sink::layout;
use crate::telemetry::metrics;
use std::time::Duration;

/// The events of one pipeline.
pub struct PipelineEvents<'a> {
    pub pipeline: &'a str,
    pub stats: &'a PipelineStats,
}

impl PipelineEvents<'_> {
    /// The workers changed state.
    pub fn state(&self, state: PipelineState) {
        self.stats.set_state(state);
        metrics().pipeline_up.with_label_values(&[self.pipeline]).set(i64::from(state == PipelineState::Running));
    }

    /// A problem shown in the pipeline's health (a source that cannot reach its
    /// brokers, a rebalance being retried), not counted as a failed step.
    pub fn problem(&self, message: String) {
        self.stats.set_error(message);
    }

    /// A step failed (reading, landing, committing, a swap) and is retried.
    pub fn failed(&self, message: String) {
        self.stats.set_error(message);
        metrics().pipeline_errors.with_label_values(&[self.pipeline]).inc();
    }

    /// The source's end of a partition, for lag.
    pub fn source_end(&self, p: &PartitionId, end: u64) {
        self.stats.set_end(p, end);
        let committed = self.stats.committed(p).unwrap_or(0);
        metrics().source_lag_records.with_label_values(&[self.pipeline, &p.topic, &p.partition.to_string()]).set(end.saturating_sub(committed) as i64);
    }

    /// A batch read from a partition.
    pub fn batch_read(&self, p: &PartitionId, records: u64, bytes: u64) {
        let m = metrics();
        let (topic, partition) = (&*p.topic, p.partition.to_string());
        m.source_records.with_label_values(&[self.pipeline, topic, &partition]).inc_by(records);
        m.source_bytes.with_label_values(&[self.pipeline, topic, &partition]).inc_by(bytes);
        PipelineStats::add(&self.stats.records_in, records);
    }

    /// A windows worker read a batch of the repartition topic: counted per
    /// partition, not again in the pipeline's `records_in` (the router did).
    pub fn repartition_read(&self, p: &PartitionId, records: u64, bytes: u64) {
        let m = metrics();
        let (topic, partition) = (&*p.topic, p.partition.to_string());
        m.source_records.with_label_values(&[self.pipeline, topic, &partition]).inc_by(records);
        m.source_bytes.with_label_values(&[self.pipeline, topic, &partition]).inc_by(bytes);
    }

    /// A batch written into the raw landing.
    pub fn raw_written(&self, records: u64) {
        PipelineStats::add(&self.stats.raw_records, records);
        metrics().sink_records.with_label_values(&[self.pipeline, "raw"]).inc_by(records);
    }

    /// The transform chain ran over a batch: per stage, its time, sizes, failures and guest counters.
    pub fn stages_ran(&self, chain: &Chain, out: &ChainOutput) {
        let m = metrics();
        for (i, (run, stage)) in out.stage_runs.iter().zip(chain.stages()).enumerate() {
            let d = stage.transform.descriptor();
            let stage_no = i.to_string();
            let l = [self.pipeline, stage_no.as_str(), d.name.as_str(), d.version.as_str()];
            m.transform_batch_seconds.with_label_values(&l).observe(run.seconds);
            m.transform_batch_records.with_label_values(&l).observe(run.records_in as f64);
            m.transform_records_in.with_label_values(&l).inc_by(run.records_in as u64);
            m.transform_records_out.with_label_values(&l).inc_by(run.records_out as u64);
            if run.instantiations > 0 {
                m.transform_instantiations.with_label_values(&l).inc_by(run.instantiations);
            }
            for (kind, n) in &run.failures {
                m.transform_failures.with_label_values(&[self.pipeline, &stage_no, &d.name, &d.version, kind.as_str()]).inc_by(*n);
            }
        }
        for (stage, name, value) in &out.counters {
            if let Some(s) = chain.stages().get(*stage as usize) {
                m.transform_guest_counter.with_label_values(&[&s.transform.descriptor().name, name]).inc_by(*value);
            }
        }
    }

    /// A processed batch landed in the open segment. `table_records` counts the
    /// input records it accounts for in the table (None without a table).
    pub fn batch_landed(&self, landed: &Landed, table_records: Option<u64>) {
        let m = metrics();
        PipelineStats::add(&self.stats.table_rows, landed.rows);
        PipelineStats::add(&self.stats.dead_letters, landed.dead_letters.len() as u64);
        for d in &landed.dead_letters {
            m.dead_letters.with_label_values(&[self.pipeline, &d.kind]).inc();
        }
        if let Some(n) = table_records {
            m.sink_records.with_label_values(&[self.pipeline, "table"]).inc_by(n);
        }
    }

    /// Dead letters landed besides a batch's own (the actions').
    pub fn dead_lettered(&self, letters: &[crate::sink::DeadLetter]) {
        PipelineStats::add(&self.stats.dead_letters, letters.len() as u64);
        for d in letters {
            metrics().dead_letters.with_label_values(&[self.pipeline, &d.kind]).inc();
        }
    }

    /// A partition's committed position, as read at start or after a roll.
    pub fn committed(&self, p: &PartitionId, next_offset: u64) {
        self.stats.set_committed(p, next_offset);
    }

    /// A segment rolled: its objects are durable and `end` is committed.
    pub fn rolled(&self, p: &PartitionId, end: u64, summary: &SegmentSummary, took: Duration) {
        let m = metrics();
        let partition = p.partition.to_string();
        self.stats.set_committed(p, end);
        for key in &summary.objects {
            m.sink_objects.with_label_values(&[self.pipeline, layout::object_kind(key)]).inc();
        }
        m.sink_bytes.with_label_values(&[self.pipeline]).inc_by(summary.bytes);
        m.sink_flush_seconds.with_label_values(&[self.pipeline]).observe(took.as_secs_f64());
        m.committed_offset.with_label_values(&[self.pipeline, &p.topic, &partition]).set(end as i64);
        m.last_commit_timestamp.with_label_values(&[self.pipeline, &p.topic, &partition]).set(crate::clock::now_secs_f64());
        PipelineStats::add(&self.stats.segments, 1);
        PipelineStats::add(&self.stats.bytes_landed, summary.bytes);
    }

    /// A roll wrote `records` to the output topic (0 when a replayed roll found them written).
    pub fn output_written(&self, topic: &str, records: u64) {
        PipelineStats::add(&self.stats.output_records, records);
        metrics().output_records.with_label_values(&[self.pipeline, topic]).inc_by(records);
    }

    /// A roll reached the table's Delta log (or found itself there).
    pub fn delta_committed(&self, table: &str, outcome: crate::sink::delta::commit::Committed) {
        use crate::sink::delta::commit::Committed;
        let m = metrics();
        match outcome {
            Committed::Version(v) => {
                m.delta_commits.with_label_values(&[self.pipeline, table, "committed"]).inc();
                m.delta_table_version.with_label_values(&[self.pipeline, table]).set(v as i64);
            }
            Committed::Already => m.delta_commits.with_label_values(&[self.pipeline, table, "already"]).inc(),
            Committed::Nothing => {}
        }
    }

    /// A router moved `records` into its repartition topic.
    pub fn repartitioned(&self, topic: &str, records: u64) {
        PipelineStats::add(&self.stats.repartitioned_records, records);
        metrics().repartition_records.with_label_values(&[self.pipeline, topic]).inc_by(records);
    }

    /// A join emitted `rows`.
    pub fn joined(&self, rows: u64) {
        PipelineStats::add(&self.stats.joined_rows, rows);
    }

    /// A version on probation was rolled back by itself.
    pub fn rolled_back(&self) {
        PipelineStats::add(&self.stats.rollbacks, 1);
    }
}
