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
    /// or 6 with seconds first, read as Unix cron reads them (weekdays 0-7 with
    /// 0 and 7 Sunday, or SUN-SAT; a day of the month and a weekday both given
    /// mean either). Default: the reports daily at 00:00 UTC, the
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

/// A schedule in Unix cron's terms: weekdays 0-7 (0 and 7 are Sunday) or
/// SUN-SAT, and, when both the day of the month and the weekday are
/// restricted, a time matching either (as Vixie cron and POSIX have it).
/// The `cron` crate reads weekdays the Quartz way (1 is Sunday) and wants
/// both days to match, so an expression is translated into one or two of its
/// schedules.
#[derive(Debug, Clone)]
pub struct Schedule {
    parts: Vec<cron::Schedule>,
}

impl Schedule {
    /// The first time after `t`.
    pub fn next_after(&self, t: &chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        self.parts.iter().filter_map(|s| s.after(t).next()).min()
    }

    /// Every time after `t`, in order.
    pub fn after(&self, t: chrono::DateTime<chrono::Utc>) -> impl Iterator<Item = chrono::DateTime<chrono::Utc>> + '_ {
        std::iter::successors(self.next_after(&t), move |p| self.next_after(p))
    }

    /// Every time from now on.
    pub fn upcoming(&self) -> impl Iterator<Item = chrono::DateTime<chrono::Utc>> + '_ {
        self.after(chrono::Utc::now())
    }
}

/// Parse a 5-field (`min hour day month weekday`) or 6-field (seconds first) cron expression, Unix semantics.
pub fn parse(expr: &str) -> Result<Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut f: Vec<String> = match fields.len() {
        5 => std::iter::once("0").chain(fields.iter().copied()).map(str::to_owned).collect(),
        6 => fields.iter().map(|s| (*s).to_owned()).collect(),
        n => return Err(format!("`{expr}` has {n} fields; write 5 (min hour day month weekday) or 6 (sec min hour day month weekday)")),
    };
    let unrestricted = |s: &str| s == "*" || s == "?";
    let weekdays = unix_weekdays(&f[5]).map_err(|e| format!("`{expr}`: the weekday field `{}`: {e}", f[5]))?;
    let one = |f: &[String]| cron::Schedule::from_str(&f.join(" ")).map_err(|e| format!("`{expr}` is not a cron expression: {e}"));
    let parts = match (unrestricted(&f[3]), weekdays) {
        // Every weekday: the day of the month alone decides.
        (_, None) => {
            f[5] = "*".into();
            vec![one(&f)?]
        }
        (true, Some(days)) => {
            f[5] = days;
            vec![one(&f)?]
        }
        // Both restricted: a time matching either.
        (false, Some(days)) => {
            let mut by_weekday = f.clone();
            (by_weekday[3], by_weekday[5]) = ("*".into(), days);
            f[5] = "*".into();
            vec![one(&f)?, one(&by_weekday)?]
        }
    };
    Ok(Schedule { parts })
}

/// A Unix weekday field as the `cron` crate's list of days (1 = Sunday … 7 =
/// Saturday); `None` when every day is in it.
fn unix_weekdays(field: &str) -> Result<Option<String>, String> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let day = |s: &str| -> Result<u32, String> {
        if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32);
        }
        match s.parse::<u32>() {
            Ok(d) if d <= 7 => Ok(d),
            _ => Err(format!("`{s}` is not a weekday (0-7, 0 and 7 are Sunday, or SUN-SAT)")),
        }
    };
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| format!("`{s}` is not a step"))?),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" | "?" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None if step > 1 => (day(r)?, 6),
                None => (day(r)?, day(r)?),
            },
        };
        if from > to {
            return Err(format!("the range `{range}` runs backwards"));
        }
        for d in (from..=to).step_by(step as usize) {
            days[(d % 7) as usize] = true;
        }
    }
    if days.iter().all(|d| *d) && field.split(',').all(|p| p == "*" || p == "?") {
        return Ok(None);
    }
    let list: Vec<String> = days.iter().enumerate().filter(|(_, on)| **on).map(|(d, _)| (d + 1).to_string()).collect();
    Ok(Some(list.join(",")))
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
        tracing::info!(job = %job, cron = %expr, next = ?schedule.upcoming().next(), "job scheduled (UTC)");
        tasks.push(tokio::spawn(async move {
            for at in schedule.upcoming() {
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
        let next: Vec<_> = daily.after(after).take(2).collect();
        assert_eq!(next, [chrono::Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(), chrono::Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0).unwrap()]);
        let every_10s = parse("*/10 * * * * *").expect("valid");
        assert_eq!(every_10s.after(after).next(), Some(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 13, 5, 10).unwrap()));
    }

    /// The times of `expr` after 2026-03-01 (a Sunday) 00:00, as (day of month, weekday) pairs.
    fn days(expr: &str, n: usize) -> Vec<(u32, chrono::Weekday)> {
        use chrono::Datelike;
        let start = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 30).single().expect("time");
        parse(expr).expect("valid").after(start).take(n).map(|t| (t.day(), t.weekday())).collect()
    }

    #[test]
    fn weekdays_are_read_as_unix_cron_reads_them() {
        use chrono::Weekday::*;
        assert_eq!(days("0 2 * * 1-5", 6), [(2, Mon), (3, Tue), (4, Wed), (5, Thu), (6, Fri), (9, Mon)], "1-5 is Monday to Friday");
        assert_eq!(days("0 2 * * MON-FRI", 6), days("0 2 * * 1-5", 6));
        assert_eq!(days("0 0 * * 0", 2), [(8, Sun), (15, Sun)], "0 is Sunday");
        assert_eq!(days("0 0 * * 7", 2), [(8, Sun), (15, Sun)], "7 is Sunday too");
        assert_eq!(days("0 0 * * sun", 1), [(8, Sun)]);
        assert_eq!(days("0 0 * * 5-7", 3), [(6, Fri), (7, Sat), (8, Sun)], "a range may end on 7");
        assert_eq!(days("0 0 * * */2", 4), [(3, Tue), (5, Thu), (7, Sat), (8, Sun)], "every second day from Sunday");
        assert_eq!(days("0 0 * * 1,3", 3), [(2, Mon), (4, Wed), (9, Mon)]);
        // Both days restricted: either matches (the 13th, and every Friday).
        assert_eq!(days("0 0 13 * FRI", 4), [(6, Fri), (13, Fri), (20, Fri), (27, Fri)]);
        assert_eq!(days("0 0 10 * MON", 3), [(2, Mon), (9, Mon), (10, Tue)]);
        assert_eq!(days("0 0 1 * *", 1), [(1, Wed)], "the day of the month alone: April 1st, a Wednesday");
    }

    #[test]
    fn mistakes_name_the_job_and_say_what_is_wrong() {
        let bad = |job: &str, expr: &str| JobsConfig { schedule: [(job.to_owned(), expr.to_owned())].into() }.validate().expect_err("invalid");
        assert!(bad("reports", "0 0 *").contains("jobs.schedule.reports: `0 0 *` has 3 fields"));
        assert!(bad("reports", "0 99 * * *").contains("is not a cron expression"));
        assert!(bad("reports", "0 0 * * 8").contains("`8` is not a weekday"), "{}", bad("reports", "0 0 * * 8"));
        assert!(bad("reports", "0 0 * * 5-2").contains("runs backwards"));
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
