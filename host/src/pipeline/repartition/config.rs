//! `[pipeline.watermark]`: how the event-time watermark of a keyed pipeline
//! (an aggregate, a join) moves when input partitions go quiet.

use serde::{Deserialize, Serialize};

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
