//! `[pipeline.aggregate]`: a windowed aggregate at the end of a pipeline.

use serde::{Deserialize, Serialize};

/// Group records by key fields into event-time windows and aggregate each
/// window with a Wasm aggregate component. The pipeline's table receives one
/// row per group per window when the window closes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The aggregate: `count-posts`, `follower-percentiles`, the name of an
    /// uploaded component, or of a windowed SQL statement (whose `GROUP BY
    /// TUMBLE(…)` / `HOP(…)` and columns then give `time_field`, `window_ms`,
    /// `slide_ms` and `group_by`, which may be left out).
    pub name: String,
    /// The record field holding its event time: a timestamp string in any of
    /// the SPEC forms (e.g. geo `timestamp`) or epoch milliseconds.
    #[serde(default)]
    pub time_field: String,
    /// Fields whose values form the group key (e.g. `["country", "category"]`).
    /// Each becomes a column of the output rows; a missing field groups as null.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Window length, in milliseconds.
    #[serde(default)]
    pub window_ms: u64,
    /// How far consecutive windows start apart, in milliseconds. Defaults to
    /// `window_ms` (tumbling windows); smaller makes sliding windows, and
    /// `window_ms` must then be a multiple of it.
    pub slide_ms: Option<u64>,
    /// The watermark trails the largest event time seen by this much: a window
    /// closes (and is emitted, once) when the watermark passes its end.
    #[serde(default)]
    pub allowed_lateness_ms: u64,
    /// What happens to a record whose window was already emitted.
    #[serde(default)]
    pub late: LatePolicy,
    /// With `late = "update"`: how long after a window closed its state is kept
    /// so late records can still update it. Defaults to `window_ms`.
    pub update_for_ms: Option<u64>,
    /// Memory budget for the state of open windows, per pipeline worker, in
    /// bytes. Past it the pipeline stops with an error (status, log, metric)
    /// rather than growing without bound.
    #[serde(default = "default_max_state_bytes")]
    pub max_state_bytes: u64,
    /// Partitions of the pipeline's repartition topic (`<pipeline>-repartition`
    /// in the embedded log), through which every record goes, keyed by its
    /// group key, so each window worker owns whole keys. Default:
    /// `log.partitions`. More partitions spread the windows over more workers;
    /// it can be raised later (keys then move: let the windows close first),
    /// never lowered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
}

/// What to do with a record whose window has already been emitted.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// Send it to the dead letters with kind `late`.
    #[default]
    DeadLetter,
    /// Fold it into its window and emit the window again with `revision` + 1.
    Update,
}

fn default_max_state_bytes() -> u64 {
    64 << 20
}

/// Up to this many panes (window / slide) make one window.
const MAX_PANES_PER_WINDOW: u64 = 1000;

impl AggregateConfig {
    pub fn slide(&self) -> u64 {
        self.slide_ms.unwrap_or(self.window_ms)
    }

    pub fn update_for(&self) -> u64 {
        match self.late {
            LatePolicy::Update => self.update_for_ms.unwrap_or(self.window_ms),
            LatePolicy::DeadLetter => 0,
        }
    }

    /// Whether the window is left to a SQL statement's GROUP BY (no window, time field or keys given).
    pub fn from_statement(&self) -> bool {
        self.window_ms == 0 && self.slide_ms.is_none() && self.time_field.is_empty() && self.group_by.is_empty()
    }

    /// This config with the window a SQL statement groups by: filled in when
    /// left out, else checked to be the same.
    pub fn with_statement(&self, time_field: &str, window_ms: u64, slide_ms: u64, group_by: &[String]) -> Result<Self, String> {
        if self.from_statement() {
            let mut c = self.clone();
            (c.time_field, c.window_ms, c.slide_ms, c.group_by) = (time_field.to_owned(), window_ms, Some(slide_ms), group_by.to_vec());
            c.validate()?;
            return Ok(c);
        }
        let given = (self.time_field.as_str(), self.window_ms, self.slide(), self.group_by.as_slice());
        if given != (time_field, window_ms, slide_ms, group_by) {
            return Err(format!(
                "aggregate `{}` is a SQL statement grouping by time `{time_field}`, window {window_ms} ms, slide {slide_ms} ms, keys {group_by:?}, \
                 but [pipeline.aggregate] says `{}`, {} ms, {} ms, {:?}: leave time_field, window_ms, slide_ms and group_by out, and the statement decides",
                self.name, given.0, given.1, given.2, given.3
            ));
        }
        Ok(self.clone())
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.from_statement() {
            // Checked again once the statement filled them in (`with_statement`).
            return self.validate_budgets();
        }
        let slide = self.slide();
        if self.window_ms == 0 || slide == 0 {
            return Err("aggregate.window_ms and aggregate.slide_ms must be above zero".into());
        }
        if slide > self.window_ms || !self.window_ms.is_multiple_of(slide) {
            return Err(format!("aggregate.window_ms ({}) must be a multiple of aggregate.slide_ms ({slide})", self.window_ms));
        }
        if self.window_ms / slide > MAX_PANES_PER_WINDOW {
            return Err(format!("aggregate.window_ms / aggregate.slide_ms must be at most {MAX_PANES_PER_WINDOW}"));
        }
        if self.window_ms > i64::MAX as u64 / 4 || self.allowed_lateness_ms > i64::MAX as u64 / 4 || self.update_for() > i64::MAX as u64 / 4 {
            return Err("aggregate durations are too large".into());
        }
        if self.time_field.is_empty() {
            return Err("aggregate.time_field is empty".into());
        }
        if let Some(bad) = self.group_by.iter().find(|f| f.is_empty() || ["window_start", "window_end", "revision"].contains(&f.as_str())) {
            return Err(format!("aggregate.group_by field `{bad}` is empty or the name of a column the host adds"));
        }
        self.validate_budgets()
    }

    fn validate_budgets(&self) -> Result<(), String> {
        if self.max_state_bytes == 0 {
            return Err("aggregate.max_state_bytes must be above zero".into());
        }
        if self.allowed_lateness_ms > i64::MAX as u64 / 4 {
            return Err("aggregate durations are too large".into());
        }
        if self.partitions.is_some_and(|n| !(1..=1024).contains(&n)) {
            return Err("aggregate.partitions must be between 1 and 1024".into());
        }
        if self.update_for_ms.is_some() && self.late != LatePolicy::Update {
            return Err("aggregate.update_for_ms only applies with late = \"update\"".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> Result<AggregateConfig, String> {
        let c: AggregateConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.validate().map(|_| c)
    }

    #[test]
    fn windows_and_lateness_are_checked_with_the_key_named() {
        let base = "name = \"count-posts\"\ntime_field = \"timestamp\"\n";
        let c = config(&format!("{base}window_ms = 60000\n")).expect("tumbling");
        assert_eq!((c.slide(), c.update_for(), c.late), (60_000, 0, LatePolicy::DeadLetter));
        let c = config(&format!("{base}window_ms = 60000\nslide_ms = 10000\nlate = \"update\"\n")).expect("sliding");
        assert_eq!((c.slide(), c.update_for()), (10_000, 60_000));
        for (extra, msg) in [
            ("window_ms = 60000\nslide_ms = 7000\n", "must be a multiple of aggregate.slide_ms"),
            ("window_ms = 0\n", "must be above zero"),
            ("window_ms = 60000\ngroup_by = [\"revision\"]\n", "a column the host adds"),
            ("window_ms = 60000\nupdate_for_ms = 5\n", "only applies with late = \"update\""),
            ("window_ms = 60000\nlate = \"drop\"\n", "unknown variant `drop`"),
            ("window_ms = 60000\nwindow = 5\n", "unknown field `window`"),
            ("window_ms = 60000\npartitions = 0\n", "between 1 and 1024"),
        ] {
            let err = config(&format!("{base}{extra}")).expect_err(extra);
            assert!(err.contains(msg), "{extra}: {err}");
        }
    }
}
