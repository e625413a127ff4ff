//! Named jobs run on demand (and, with the reports, on a schedule): each run
//! has a state (queued, running, succeeded, failed), progress and a log.

pub mod schedule;
pub mod tables;

use crate::sync::lock;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Runs kept for inspection.
const KEEP_RUNS: usize = 100;
/// Log lines kept per run.
const KEEP_LINES: usize = 1000;

/// What a job can tell the runner while it works.
pub struct JobContext {
    run: Arc<Mutex<JobRun>>,
    params: serde_json::Value,
}

impl JobContext {
    /// What the run was started with (the JSON body of the run request; `null` if none).
    pub fn params(&self) -> &serde_json::Value {
        &self.params
    }

    pub fn log(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!(job = %self.lock().job, "{line}");
        let mut r = self.lock();
        if r.log.len() < KEEP_LINES {
            r.log.push(line);
        }
    }

    /// Progress from 0.0 to 1.0.
    pub fn progress(&self, fraction: f64) {
        self.lock().progress = fraction.clamp(0.0, 1.0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobRun> {
        lock(&self.run)
    }
}

pub trait Job: Send + Sync {
    fn description(&self) -> &str;
    /// Do the work; the returned text is the run's summary.
    fn run(&self, ctx: &JobContext) -> anyhow::Result<String>;
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobRun {
    pub id: u64,
    pub job: String,
    pub state: RunState,
    pub queued_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub progress: f64,
    pub summary: Option<String>,
    pub error: Option<String>,
    pub log: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job named `{0}` (jobs: {1})")]
    Unknown(String, String),
    #[error("job `{0}` is already running (run {1})")]
    Busy(String, u64),
    #[error("no job run {0}")]
    NoRun(u64),
}

#[derive(Default)]
pub struct JobRunner {
    jobs: BTreeMap<String, Arc<dyn Job>>,
    runs: Mutex<VecDeque<Arc<Mutex<JobRun>>>>,
    next_id: AtomicU64,
}

impl JobRunner {
    pub fn new() -> Self {
        JobRunner::default()
    }

    pub fn register(&mut self, name: &str, job: Arc<dyn Job>) {
        self.jobs.insert(name.to_owned(), job);
    }

    /// `(name, description)` of every job.
    pub fn jobs(&self) -> Vec<(String, String)> {
        self.jobs.iter().map(|(n, j)| (n.clone(), j.description().to_owned())).collect()
    }

    pub fn runs(&self) -> Vec<JobRun> {
        lock(&self.runs).iter().rev().map(|r| lock(r).clone()).collect()
    }

    pub fn run_info(&self, id: u64) -> Result<JobRun, JobError> {
        self.runs().into_iter().find(|r| r.id == id).ok_or(JobError::NoRun(id))
    }

    /// Start a run of `name` on a thread of its own; one run per job at a time.
    pub fn start(self: &Arc<Self>, name: &str) -> Result<JobRun, JobError> {
        self.start_with(name, serde_json::Value::Null)
    }

    /// Start a run with parameters (what a backfill is to do, say).
    pub fn start_with(self: &Arc<Self>, name: &str, params: serde_json::Value) -> Result<JobRun, JobError> {
        let job = self.jobs.get(name).cloned().ok_or_else(|| JobError::Unknown(name.to_owned(), self.jobs.keys().cloned().collect::<Vec<_>>().join(", ")))?;
        let run = {
            let mut runs = lock(&self.runs);
            if let Some(busy) = runs.iter().map(|r| lock(r).clone()).find(|r| r.job == name && matches!(r.state, RunState::Queued | RunState::Running)) {
                return Err(JobError::Busy(name.to_owned(), busy.id));
            }
            let run = Arc::new(Mutex::new(JobRun {
                id: self.next_id.fetch_add(1, Ordering::SeqCst) + 1,
                job: name.to_owned(),
                state: RunState::Queued,
                queued_at_ms: crate::clock::now_ms(),
                started_at_ms: None,
                finished_at_ms: None,
                progress: 0.0,
                summary: None,
                error: None,
                log: Vec::new(),
            }));
            runs.push_back(run.clone());
            while runs.len() > KEEP_RUNS {
                runs.pop_front();
            }
            run
        };
        let info = lock(&run).clone();
        std::thread::spawn(move || {
            {
                let mut r = lock(&run);
                r.state = RunState::Running;
                r.started_at_ms = Some(crate::clock::now_ms());
            }
            let ctx = JobContext { run: run.clone(), params };
            let outcome = job.run(&ctx);
            let mut r = lock(&run);
            r.finished_at_ms = Some(crate::clock::now_ms());
            match outcome {
                Ok(summary) => {
                    r.state = RunState::Succeeded;
                    r.progress = 1.0;
                    r.summary = Some(summary);
                }
                Err(e) => {
                    r.state = RunState::Failed;
                    r.error = Some(format!("{e:#}"));
                    tracing::error!(job = %r.job, error = %format!("{e:#}"), "job failed");
                }
            }
        });
        Ok(info)
    }
}

/// Remove embedded-log batches past their retention now, instead of at the next timer tick.
pub struct RetentionJob(pub Arc<crate::log::EmbeddedLog>);

impl Job for RetentionJob {
    fn description(&self) -> &str {
        "Remove embedded-log records older than log.retention_hours that every pipeline has committed past"
    }

    fn run(&self, ctx: &JobContext) -> anyhow::Result<String> {
        ctx.log("enforcing retention on the embedded log");
        let removed = self.0.enforce_retention()?;
        Ok(format!("removed {removed} stored batches"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    struct Slow(u64);
    impl Job for Slow {
        fn description(&self) -> &str {
            "waits, then fails if asked to"
        }
        fn run(&self, ctx: &JobContext) -> anyhow::Result<String> {
            ctx.log("working");
            ctx.progress(0.5);
            std::thread::sleep(Duration::from_millis(self.0));
            if self.0 == 0 {
                anyhow::bail!("failed on purpose");
            }
            Ok("done".into())
        }
    }

    fn wait(runner: &JobRunner, id: u64) -> JobRun {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = runner.run_info(id).expect("run");
            if matches!(r.state, RunState::Succeeded | RunState::Failed) || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn runs_have_states_logs_and_one_at_a_time() {
        let mut runner = JobRunner::new();
        runner.register("slow", Arc::new(Slow(200)));
        runner.register("broken", Arc::new(Slow(0)));
        let runner = Arc::new(runner);
        let first = runner.start("slow").expect("starts");
        assert!(matches!(runner.start("slow"), Err(JobError::Busy(_, id)) if id == first.id));
        let done = wait(&runner, first.id);
        assert_eq!((done.state, done.summary.as_deref(), done.progress), (RunState::Succeeded, Some("done"), 1.0));
        assert_eq!(done.log, vec!["working"]);
        let failed = wait(&runner, runner.start("broken").expect("starts").id);
        assert_eq!((failed.state, failed.error.as_deref()), (RunState::Failed, Some("failed on purpose")));
        assert!(matches!(runner.start("nope"), Err(JobError::Unknown(_, known)) if known == "broken, slow"));
        assert!(runner.run_info(999).is_err());
    }
}
