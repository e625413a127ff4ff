//! The words of event time shared by the keyed stages: the watermark markers
//! routers append to internal topics, what each source partition said last,
//! the watermark over them, and `[pipeline.watermark]`.
//!
//! A router (see `repartition`) appends markers; the windows (`aggregate`) and
//! the join (`join`) read them. Living below all three, this module keeps
//! their imports running one way.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The key of a watermark marker. Group keys are JSON objects, so no record key starts with `!`.
pub const MARKER_KEY: &[u8] = b"!sluice.watermark";

/// What one source partition says about its progress in event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The source partition (its writer name).
    pub source: String,
    /// The largest event time among the records it appended with this marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_ms: Option<i64>,
    pub state: SourceState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Reading: holds the watermark back until it passes.
    Active,
    /// No record for `idle_timeout_ms`: the watermark moves without it.
    Idle,
    /// Every source of the router idle for `close_idle_after_ms`: close every open window.
    Closing,
}

impl Marker {
    pub fn parse(value: &[u8]) -> Result<Marker, String> {
        serde_json::from_slice(value).map_err(|e| format!("a watermark marker that does not parse ({e}): {}", String::from_utf8_lossy(value)))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a marker serialises")
    }
}

/// What the markers of one source partition said last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceClock {
    /// The largest event time (or log time, for a join) it has sent; none yet: it holds the watermark back.
    pub max_event_ms: Option<i64>,
    /// No record for `idle_timeout_ms`: it does not hold the watermark back.
    #[serde(default)]
    pub idle: bool,
}

/// The watermark over the source partitions a reader hears from: the least
/// of the largest times of the sources that are not idle; none while one of
/// them has sent nothing yet. When every source is idle, everything sent has
/// arrived: the largest time of all.
pub fn watermark(sources: &BTreeMap<String, SourceClock>) -> Option<i64> {
    let active: Vec<Option<i64>> = sources.values().filter(|c| !c.idle).map(|c| c.max_event_ms).collect();
    if active.is_empty() {
        return sources.values().filter_map(|c| c.max_event_ms).max();
    }
    active.into_iter().collect::<Option<Vec<i64>>>()?.into_iter().min()
}

/// `[pipeline.watermark]`: how the event-time watermark of a keyed pipeline
/// (an aggregate, a join) moves when input partitions go quiet.

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkConfig {
    /// An input partition that sent no record for this long stops holding the
    /// watermark back (the watermark is the least event time reached over the
    /// input partitions that are not idle).
    pub idle_timeout_ms: u64,
    /// When every input partition has been idle this long, every open window
    /// is closed and emitted (and a join's waiting records expire), so the
    /// last windows of a quiet stream land within this bound; a record for one
    /// of them afterwards is late. 0: close on event time only.
    pub close_idle_after_ms: u64,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig { idle_timeout_ms: 10_000, close_idle_after_ms: 30_000 }
    }
}

impl WatermarkConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_timeout_ms == 0 {
            return Err("watermark.idle_timeout_ms must be above zero".into());
        }
        if self.close_idle_after_ms > 0 && self.close_idle_after_ms < self.idle_timeout_ms {
            return Err(format!(
                "watermark.close_idle_after_ms ({}) must be at least watermark.idle_timeout_ms ({}), or 0 to close on event time only",
                self.close_idle_after_ms, self.idle_timeout_ms
            ));
        }
        Ok(())
    }
}
