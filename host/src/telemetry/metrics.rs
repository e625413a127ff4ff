//! Every metric sluice exports, named in this one module.
//!
//! Names follow `sluice_<what>_<unit>` (`_total` for counters). Labels are
//! bounded: pipeline, stage, transform, version, topic, partition, kind,
//! route, status, reason — never record keys or values.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder, exponential_buckets,
};
use std::sync::OnceLock;

pub struct Metrics {
    pub registry: Registry,
    // Ingest.
    pub ingest_requests: IntCounterVec,
    pub ingest_records: IntCounterVec,
    pub consume_records: IntCounterVec,
    pub output_records: IntCounterVec,
    pub repartition_records: IntCounterVec,
    pub delta_commits: IntCounterVec,
    pub delta_table_version: IntGaugeVec,
    pub ingest_bytes: IntCounterVec,
    // The embedded log's disk.
    pub log_writable: IntGauge,
    pub log_free_bytes: IntGauge,
    pub log_min_free_bytes: IntGauge,
    pub log_reopens: IntCounter,
    // Sources.
    pub source_records: IntCounterVec,
    pub source_bytes: IntCounterVec,
    pub source_lag_records: IntGaugeVec,
    pub committed_offset: IntGaugeVec,
    pub source_throttled: IntCounterVec,
    pub source_millis_behind: IntGaugeVec,
    pub last_commit_timestamp: GaugeVec,
    // Transforms.
    pub transform_batch_seconds: HistogramVec,
    pub transform_batch_records: HistogramVec,
    pub transform_records_in: IntCounterVec,
    pub transform_records_out: IntCounterVec,
    pub transform_failures: IntCounterVec,
    pub transform_instantiations: IntCounterVec,
    pub transform_guest_counter: IntCounterVec,
    pub transform_swaps: IntCounterVec,
    // Pipelines and sinks.
    pub dead_letters: IntCounterVec,
    pub sink_records: IntCounterVec,
    pub sink_objects: IntCounterVec,
    pub sink_bytes: IntCounterVec,
    pub sink_flush_seconds: HistogramVec,
    pub sink_upload_retries: IntCounterVec,
    pub pipeline_errors: IntCounterVec,
    pub pipeline_up: IntGaugeVec,
    // Aggregates.
    pub aggregate_windows_emitted: IntCounterVec,
    pub aggregate_state_bytes: IntGaugeVec,
    pub aggregate_over_budget: IntCounterVec,
    pub aggregate_watermark: GaugeVec,
    pub aggregate_idle_sources: IntGaugeVec,
    pub join_matched: IntCounterVec,
    pub join_expired: IntCounterVec,
    pub join_duplicates: IntCounterVec,
    pub join_waiting: IntGaugeVec,
    pub join_state_bytes: IntGaugeVec,
    pub join_over_budget: IntCounterVec,
    // Actions.
    pub action_detected: IntCounterVec,
    pub action_sent: IntCounterVec,
    pub action_retries: IntCounterVec,
    pub action_failed: IntCounterVec,
    pub action_latency: HistogramVec,
}

/// Kinds of transform failure, as the `kind` label spells them.
pub const FAILURE_KINDS: &[&str] = &["rejected", "timeout", "memory_limit", "trap", "malformed_output"];
/// Why a stage's version changed.
pub const SWAP_REASONS: &[&str] = &["activated", "rolled_back", "auto_rollback"];
/// Why an action went to the dead letters (the `reason` label of `sluice_action_failed_total`).
pub const ACTION_FAILURES: &[&str] = &["refused", "gave_up"];
/// What a sink writes.
pub const OBJECT_KINDS: &[&str] = &["raw", "table", "dead_letters"];

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(g.clone())).expect("metric names are unique");
    g
}

fn plain_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric definition");
    r.register(Box::new(g.clone())).expect("metric names are unique");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric definition");
    r.register(Box::new(h.clone())).expect("metric names are unique");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        let seconds = exponential_buckets(0.0001, 4.0, 10).expect("valid buckets");
        let stage = &["pipeline", "stage", "transform", "version"][..];
        let lg = GaugeVec::new(
            Opts::new(
                "sluice_pipeline_last_commit_timestamp_seconds",
                "When the partition's position was last committed (Unix time); its age is time() minus this",
            ),
            &["pipeline", "topic", "partition"],
        )
        .expect("valid metric definition");
        r.register(Box::new(lg.clone())).expect("metric names are unique");
        Metrics {
            ingest_requests: counter(&r, "sluice_ingest_requests_total", "Ingest HTTP requests by route and status", &["route", "status"]),
            ingest_records: counter(&r, "sluice_ingest_records_total", "Records stored by the ingest API", &["topic"]),
            consume_records: counter(&r, "sluice_consume_records_total", "Records read by HTTP consumers (REST Proxy v2 consumer API)", &["topic"]),
            output_records: counter(&r, "sluice_output_records_total", "Records a pipeline wrote to its output topic", &["pipeline", "topic"]),
            delta_commits: counter(
                &r,
                "sluice_delta_commits_total",
                "Rolls committed to a Delta table's log (outcome: committed, or already, for a replayed roll the log had)",
                &["pipeline", "table", "outcome"],
            ),
            delta_table_version: gauge(&r, "sluice_delta_table_version", "The latest version of a Delta table a pipeline committed", &["pipeline", "table"]),
            repartition_records: counter(
                &r,
                "sluice_repartition_records_total",
                "Records an aggregating pipeline moved into its repartition topic, keyed by group key",
                &["pipeline", "topic"],
            ),
            ingest_bytes: counter(&r, "sluice_ingest_bytes_total", "Record bytes stored by the ingest API", &["topic"]),
            log_writable: plain_gauge(
                &r,
                "sluice_log_writable",
                "1 while the embedded log takes new records; 0 while its disk is full or below [log] min_free_bytes, or it is reopening after an I/O error",
            ),
            log_free_bytes: plain_gauge(&r, "sluice_log_free_bytes", "Free bytes on the filesystem holding the embedded log"),
            log_min_free_bytes: plain_gauge(&r, "sluice_log_min_free_bytes", "The low-water mark ([log] min_free_bytes): ingest refuses new records below it"),
            log_reopens: {
                let c = IntCounter::new("sluice_log_reopens_total", "Times the embedded log was closed and reopened after an I/O error (a full disk)")
                    .expect("valid metric definition");
                r.register(Box::new(c.clone())).expect("metric names are unique");
                c
            },
            source_records: counter(&r, "sluice_source_records_total", "Records read by pipelines", &["pipeline", "topic", "partition"]),
            source_bytes: counter(&r, "sluice_source_bytes_total", "Record bytes read by pipelines", &["pipeline", "topic", "partition"]),
            source_lag_records: gauge(
                &r,
                "sluice_source_lag_records",
                "Records in the source not yet committed by the pipeline",
                &["pipeline", "topic", "partition"],
            ),
            source_throttled: counter(
                &r,
                "sluice_source_throttled_total",
                "Source calls the service throttled (Kinesis ProvisionedThroughputExceeded); answered with backoff",
                &["source", "operation"],
            ),
            source_millis_behind: gauge(
                &r,
                "sluice_source_millis_behind_latest",
                "How far a Kinesis shard's reader is behind the newest record, in ms",
                &["pipeline", "topic", "partition"],
            ),
            committed_offset: gauge(
                &r,
                "sluice_pipeline_committed_offset",
                "Next offset the pipeline reads after a restart",
                &["pipeline", "topic", "partition"],
            ),
            last_commit_timestamp: lg,
            transform_batch_seconds: histogram(&r, "sluice_transform_batch_duration_seconds", "Time of one batch through one stage", stage, seconds.clone()),
            transform_batch_records: histogram(
                &r,
                "sluice_transform_batch_records",
                "Records per batch into a stage",
                stage,
                exponential_buckets(1.0, 4.0, 9).expect("valid buckets"),
            ),
            transform_records_in: counter(&r, "sluice_transform_records_in_total", "Records into a stage", stage),
            transform_records_out: counter(&r, "sluice_transform_records_out_total", "Records out of a stage", stage),
            transform_failures: counter(
                &r,
                "sluice_transform_failures_total",
                "Records a stage refused (kind=rejected) or lost to a trap, timeout or the memory cap",
                &["pipeline", "stage", "transform", "version", "kind"],
            ),
            transform_instantiations: counter(
                &r,
                "sluice_transform_instantiations_total",
                "Fresh instances created (first use, reuse limit, or after a failure)",
                stage,
            ),
            transform_guest_counter: counter(
                &r,
                "sluice_transform_guest_counter_total",
                "Counters transforms bump through the host interface",
                &["transform", "name"],
            ),
            transform_swaps: counter(&r, "sluice_transform_swaps_total", "Version changes of a stage", &["pipeline", "stage", "reason"]),
            dead_letters: counter(&r, "sluice_dead_letters_total", "Records sent to the dead letters", &["pipeline", "kind"]),
            sink_records: counter(&r, "sluice_sink_records_total", "Records landed (raw lines or table rows)", &["pipeline", "kind"]),
            sink_objects: counter(&r, "sluice_sink_objects_total", "Objects made durable and visible", &["pipeline", "kind"]),
            sink_bytes: counter(&r, "sluice_sink_bytes_total", "Bytes of objects landed", &["pipeline"]),
            sink_flush_seconds: histogram(&r, "sluice_sink_flush_duration_seconds", "Time to finish a segment's objects and commit", &["pipeline"], seconds),
            sink_upload_retries: counter(&r, "sluice_sink_upload_retries_total", "Object-store writes retried after an error", &["pipeline"]),
            pipeline_errors: counter(&r, "sluice_pipeline_errors_total", "Failed reads, writes or commits (each retried)", &["pipeline"]),
            pipeline_up: gauge(&r, "sluice_pipeline_up", "1 while the pipeline runs, 0 when paused, stopped or failed", &["pipeline"]),
            aggregate_windows_emitted: counter(
                &r,
                "sluice_aggregate_windows_emitted_total",
                "Windows closed and emitted (revisions of late updates included)",
                &["pipeline"],
            ),
            aggregate_state_bytes: gauge(
                &r,
                "sluice_aggregate_state_bytes",
                "Aggregate state held for open windows, per input partition",
                &["pipeline", "topic", "partition"],
            ),
            aggregate_over_budget: counter(
                &r,
                "sluice_aggregate_over_budget_total",
                "Batches refused because the open windows' state passed aggregate.max_state_bytes",
                &["pipeline"],
            ),
            join_matched: counter(&r, "sluice_join_matched_total", "Joined rows a pipeline's join emitted (every side of a key came)", &["pipeline"]),
            join_expired: counter(
                &r,
                "sluice_join_expired_total",
                "Keys whose partners did not come within join.within_ms (left rows emitted, or dead letters)",
                &["pipeline"],
            ),
            join_duplicates: counter(
                &r,
                "sluice_join_duplicates_total",
                "Resent records a join ignored (their key was joined or already waiting)",
                &["pipeline"],
            ),
            join_waiting: gauge(&r, "sluice_join_waiting_keys", "Keys waiting for their partners, per join partition", &["pipeline", "topic", "partition"]),
            join_state_bytes: gauge(
                &r,
                "sluice_join_state_bytes",
                "Join state held (records waiting for partners, keys remembered as joined), per join partition",
                &["pipeline", "topic", "partition"],
            ),
            join_over_budget: counter(
                &r,
                "sluice_join_over_budget_total",
                "Batches refused because the join's state passed join.max_state_bytes",
                &["pipeline"],
            ),
            aggregate_idle_sources: gauge(
                &r,
                "sluice_aggregate_idle_sources",
                "Input partitions a repartition partition's windows hear from that are idle (they do not hold the watermark back)",
                &["pipeline", "topic", "partition"],
            ),
            aggregate_watermark: {
                let g = GaugeVec::new(
                    Opts::new("sluice_aggregate_watermark_seconds", "Pipeline-wide event-time watermark of a repartition partition's windows (least event time over the input partitions that are not idle, minus allowed lateness), Unix seconds"),
                    &["pipeline", "topic", "partition"],
                )
                .expect("valid metric definition");
                r.register(Box::new(g.clone())).expect("metric names are unique");
                g
            },
            action_detected: counter(&r, "sluice_action_detected_total", "Actions a detector emitted", &["pipeline", "action"]),
            action_sent: counter(&r, "sluice_action_sent_total", "Actions the webhook acknowledged (2xx)", &["pipeline", "action"]),
            action_retries: counter(
                &r,
                "sluice_action_retries_total",
                "Webhook attempts that failed and were retried (reason: connection, timeout, throttled, server_error)",
                &["pipeline", "action", "reason"],
            ),
            action_failed: counter(
                &r,
                "sluice_action_failed_total",
                "Actions sent to the dead letters (reason: refused by a 4xx, gave_up after give_up_after_ms)",
                &["pipeline", "action", "reason"],
            ),
            action_latency: histogram(
                &r,
                "sluice_action_delivery_seconds",
                "From an action's first attempt to its acknowledgement, retries included",
                &["pipeline", "action"],
                exponential_buckets(0.005, 4.0, 10).expect("valid buckets"),
            ),
            registry: r,
        }
    }

    /// Create a pipeline's series at zero, so dashboards and alerts see them
    /// (and `rate()` works) before the first event.
    pub fn init_pipeline(&self, pipeline: &str, stages: &[(String, String)]) {
        for kind in OBJECT_KINDS {
            self.sink_objects.with_label_values(&[pipeline, kind]);
        }
        for kind in ["raw", "table"] {
            self.sink_records.with_label_values(&[pipeline, kind]);
        }
        for kind in FAILURE_KINDS.iter().chain(["schema"].iter()) {
            self.dead_letters.with_label_values(&[pipeline, kind]);
        }
        self.sink_bytes.with_label_values(&[pipeline]);
        self.sink_upload_retries.with_label_values(&[pipeline]);
        self.pipeline_errors.with_label_values(&[pipeline]);
        self.pipeline_up.with_label_values(&[pipeline]);
        // Zero for pipelines without an aggregate, so one alert rule covers every pipeline.
        self.aggregate_windows_emitted.with_label_values(&[pipeline]);
        self.aggregate_over_budget.with_label_values(&[pipeline]);
        for (i, (transform, version)) in stages.iter().enumerate() {
            let stage = i.to_string();
            for reason in SWAP_REASONS {
                self.transform_swaps.with_label_values(&[pipeline, &stage, reason]);
            }
            let l = [pipeline, stage.as_str(), transform.as_str(), version.as_str()];
            self.transform_records_in.with_label_values(&l);
            self.transform_records_out.with_label_values(&l);
            self.transform_instantiations.with_label_values(&l);
            for kind in FAILURE_KINDS {
                self.transform_failures.with_label_values(&[pipeline, &stage, transform, version, kind]);
            }
        }
    }

    /// Create an action's series at zero (see [`Metrics::init_pipeline`]).
    pub fn init_action(&self, pipeline: &str, action: &str) {
        self.action_detected.with_label_values(&[pipeline, action]);
        self.action_sent.with_label_values(&[pipeline, action]);
        self.action_latency.with_label_values(&[pipeline, action]);
        for reason in ["connection", "timeout", "throttled", "server_error"] {
            self.action_retries.with_label_values(&[pipeline, action, reason]);
        }
        for reason in ACTION_FAILURES {
            self.action_failed.with_label_values(&[pipeline, action, reason]);
        }
        for kind in ["action_refused", "action_gave_up"] {
            self.dead_letters.with_label_values(&[pipeline, kind]);
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// `GET /metrics`.
pub async fn handler() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics().render())
}
