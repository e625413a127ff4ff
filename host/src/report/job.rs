//! The report run as a named job (`reports`), for the schedule and the admin API.

use super::catalog::Landing;
use super::run;
use crate::jobs::{Job, JobContext};
use crate::store::ObjectStore;
use std::sync::Arc;

pub struct ReportJob {
    pub landing: Landing,
    pub store: Arc<dyn ObjectStore>,
}

impl ReportJob {
    /// Read the tables from `store` (in place when it is a local directory).
    pub fn new(store: Arc<dyn ObjectStore>, local_dir: Option<std::path::PathBuf>) -> Self {
        let landing = match local_dir {
            Some(d) => Landing::Dir(d),
            None => Landing::Store(store.clone()),
        };
        ReportJob { landing, store }
    }
}

impl Job for ReportJob {
    fn description(&self) -> &str {
        "Run the nine reports over the landed pin/geo/user tables; write Parquet, CSV and an HTML summary under reports/"
    }

    fn run(&self, ctx: &JobContext) -> anyhow::Result<String> {
        let run_id = run::run_id_now();
        ctx.log(format!("run {run_id}: reading the tables in {}", self.landing.location()));
        // On the runtime for blocking calls: the job runs on a thread of its own, off the server's workers.
        let results = crate::sync::block_on(run::execute(&self.landing, &|done, total, name| {
            ctx.progress(0.9 * done as f64 / total as f64);
            ctx.log(format!("report {done}/{total} {name} done"));
        }))?;
        let keys = run::write(self.store.as_ref(), &run_id, &results)?;
        let rows: usize = results.iter().map(|r| r.rows()).sum();
        ctx.log(format!("wrote {} objects", keys.len()));
        Ok(format!(
            "{} reports, {rows} rows, written under reports/<name>/run={run_id}/ in {}; summary {}",
            results.len(),
            self.store.location(),
            run::summary_key(&run_id)
        ))
    }
}

/// A backfill as a named job (`backfill`): the run's parameters are a
/// [`BackfillRequest`](super::backfill::BackfillRequest).
pub struct BackfillJob {
    pub store: Arc<dyn ObjectStore>,
    pub registry: Arc<crate::runtime::registry::Registry>,
    pub pipelines: Arc<dyn crate::pipeline::manager::PipelineManager>,
}

impl Job for BackfillJob {
    fn description(&self) -> &str {
        "Re-run landed raw data of a pipeline through chosen transform versions into its table, replacing the affected table objects; \
         body: {\"pipeline\": \"pin\", \"transforms\": [\"clean-pin@0.2.0\"], \"from_offset\": 0, \"to_offset\": 1000}"
    }

    fn run(&self, ctx: &JobContext) -> anyhow::Result<String> {
        let req: super::backfill::BackfillRequest = serde_json::from_value(ctx.params().clone()).map_err(|e| {
            anyhow::anyhow!("a backfill needs a JSON body like {{\"pipeline\": \"pin\", \"transforms\": [\"clean-pin@0.2.0\"], \"from_offset\": 0}}: {e}")
        })?;
        let handle = self.pipelines.get(&req.pipeline).ok_or_else(|| {
            let known: Vec<String> = self.pipelines.list().into_iter().map(|(n, _)| n).collect();
            anyhow::anyhow!("no pipeline named `{}` (pipelines: {})", req.pipeline, known.join(", "))
        })?;
        ctx.log(format!(
            "backfilling pipeline `{}` offsets {}..{} with {:?}",
            req.pipeline,
            req.from_offset,
            req.to_offset.map_or("end".to_owned(), |o| o.to_string()),
            req.transforms
        ));
        let outcome = super::backfill::run(self.store.as_ref(), &self.registry, &handle.config, &req, &|done, total, key| {
            ctx.progress(done as f64 / total.max(1) as f64);
            ctx.log(format!("segment {done}/{total}: {key}"));
        })?;
        for key in &outcome.deleted {
            ctx.log(format!("deleted {key} (the new output has no rows for it)"));
        }
        Ok(format!(
            "{} segments, {} records: {} rows landed, {} dead letters; {} table objects rewritten, {} deleted",
            outcome.segments,
            outcome.records,
            outcome.rows,
            outcome.dead_letters,
            outcome.written.len(),
            outcome.deleted.len()
        ))
    }
}
