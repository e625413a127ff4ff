//! The built-in schedule: `[jobs.schedule]` maps job names to cron expressions
//! (UTC), e.g. `reports = "0 0 * * *"` for daily at 00:00 like the original DAG.

use super::JobRunner;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

/// `[jobs]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Job name → cron expression in UTC: 5 fields (`min hour day month weekday`)
    /// or 6 with seconds first. Default: the reports daily at 00:00 UTC, the
    /// Delta tables' compaction at 01:00 and vacuum at 02:00 (each does nothing
    /// without Delta tables). `schedule = {}` turns the schedule off.
    pub schedule: BTreeMap<String, String>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        let daily = |job: &str, hour: u32| (job.to_owned(), format!("0 {hour} * * *"));
        JobsConfig { schedule: [daily("reports", 0), daily("compact", 1), daily("vacuum", 2)].into() }
    }
}

/// The jobs a config may schedule.
pub const SCHEDULABLE: [&str; 4] = ["reports", "retention", "compact", "vacuum"];

/// Parse a 5- or 6-field cron expression.
pub fn parse(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expr}"),
        6 => expr.to_owned(),
        _ => return Err(format!("`{expr}` has {fields} fields; write 5 (min hour day month weekday) or 6 (sec min hour day month weekday)")),
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("`{expr}` is not a cron expression: {e}"))
}

impl JobsConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (job, expr) in &self.schedule {
            if !SCHEDULABLE.contains(&job.as_str()) {
                return Err(format!("jobs.schedule.{job}: no such job to schedule (jobs: {})", SCHEDULABLE.join(", ")));
            }
            parse(expr).map_err(|e| format!("jobs.schedule.{job}: {e}"))?;
        }
        Ok(())
    }
}

/// Start each scheduled job at its times, for as long as the task lives. A
/// run still going at the next time is left alone (and logged).
pub fn spawn(runner: Arc<JobRunner>, config: &JobsConfig) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (job, expr) in &config.schedule {
        let Ok(schedule) = parse(expr) else { continue };
        let (runner, job) = (runner.clone(), job.clone());
        tracing::info!(job = %job, cron = %expr, next = ?schedule.upcoming(chrono::Utc).next(), "job scheduled (UTC)");
        tasks.push(tokio::spawn(async move {
            for at in schedule.upcoming(chrono::Utc) {
                let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                match runner.start(&job) {
                    Ok(run) => tracing::info!(job = %job, run = run.id, "scheduled run started"),
                    Err(e) => tracing::warn!(job = %job, error = %e, "scheduled run not started"),
                }
            }
        }));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_and_six_field_expressions_fire_at_their_times() {
        let daily = parse("0 0 * * *").expect("valid");
        let after = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 13, 5, 0).single().expect("time");
        let next: Vec<_> = daily.after(&after).take(2).collect();
        assert_eq!(next, [chrono::Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(), chrono::Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0).unwrap()]);
        let every_10s = parse("*/10 * * * * *").expect("valid");
        assert_eq!(every_10s.after(&after).next(), Some(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 13, 5, 10).unwrap()));
    }

    #[test]
    fn mistakes_name_the_job_and_say_what_is_wrong() {
        let bad = |job: &str, expr: &str| JobsConfig { schedule: [(job.to_owned(), expr.to_owned())].into() }.validate().expect_err("invalid");
        assert!(bad("reports", "0 0 *").contains("jobs.schedule.reports: `0 0 *` has 3 fields"));
        assert!(bad("reports", "0 99 * * *").contains("is not a cron expression"));
        assert!(bad("report", "0 0 * * *").contains("no such job to schedule (jobs: reports, retention, compact, vacuum)"));
        JobsConfig::default().validate().expect("the default schedule is valid");
    }

    #[tokio::test]
    async fn a_scheduled_job_runs_by_itself() {
        struct Count(std::sync::atomic::AtomicU32);
        impl super::super::Job for Count {
            fn description(&self) -> &str {
                "counts"
            }
            fn run(&self, _: &super::super::JobContext) -> anyhow::Result<String> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(String::new())
            }
        }
        let count = Arc::new(Count(Default::default()));
        let mut runner = JobRunner::new();
        runner.register("retention", count.clone());
        let tasks = spawn(Arc::new(runner), &JobsConfig { schedule: [("retention".to_owned(), "* * * * * *".to_owned())].into() });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while count.0.load(std::sync::atomic::Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tasks.iter().for_each(|t| t.abort());
        assert!(count.0.load(std::sync::atomic::Ordering::SeqCst) >= 2, "ran every second");
    }
}
