//! Event-time windows over one partition of the repartition topic: panes, the
//! pipeline-wide watermark, when a window closes, what is late.
//!
//! Records arrive keyed by group key with their event time as the record
//! timestamp (see [`crate::pipeline::repartition`]); between them, watermark
//! markers say how far each source partition of the pipeline has read in
//! event time. The watermark is the minimum over the sources that are not
//! idle, so a window closes only when every partition that may still send to
//! it has passed its end (plus the allowed lateness).
//!
//! Windows start at multiples of the slide (from the Unix epoch) and last the
//! window length, which is a multiple of the slide. The state of each slide-long
//! pane is kept once; a window is the merge of the panes it covers, so a record
//! of a sliding window is folded once, not once per window.
//!
//! Records are taken one at a time, in input order: a window closes exactly
//! when the marker that moves the watermark past its end is read, whatever the
//! batch boundaries were. That makes the emitted rows a function of the input
//! sequence alone, so a replay after a crash emits the same rows.

use super::config::{AggregateConfig, LatePolicy};
use crate::pipeline::watermark::{MARKER_KEY, Marker, SourceClock, SourceState, watermark};
use crate::runtime::{AggregateInstance, CallFailure};
use serde::{Deserialize, Serialize};
use sluice_guest::{BatchBuf, BatchRef};
use std::collections::{BTreeMap, BTreeSet};

/// The durable state of one partition's windows (what a checkpoint holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// The state format of the aggregate version that wrote the pane states.
    pub format: String,
    /// The largest event time seen.
    pub max_event_ms: Option<i64>,
    /// Every window ending at or before this has closed.
    pub closed_until: Option<i64>,
    /// Pane start → aggregate state.
    pub panes: BTreeMap<i64, Pane>,
    /// Window end → the revision last emitted (kept only with `late = "update"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revisions: BTreeMap<i64, u32>,
    /// Source partition (writer name) → how far it has read in event time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceClock>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pane {
    #[serde(with = "base64_bytes")]
    pub state: Vec<u8>,
}

impl WindowState {
    pub fn new(format: &str) -> Self {
        WindowState {
            format: format.to_owned(),
            max_event_ms: None,
            closed_until: None,
            panes: BTreeMap::new(),
            revisions: BTreeMap::new(),
            sources: BTreeMap::new(),
        }
    }

    /// The pipeline-wide event-time watermark (before the allowed lateness); see [`watermark`].
    pub fn watermark_ms(&self) -> Option<i64> {
        watermark(&self.sources)
    }

    /// Bytes of aggregate state held (what the memory budget measures).
    pub fn state_bytes(&self) -> u64 {
        self.panes.values().map(|p| p.state.len() as u64 + 32).sum()
    }
}

/// A record that did not make it into a window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowFailure {
    /// Index in the input batch.
    pub index: u32,
    /// `late`, `no_event_time`, or a guest failure kind (`rejected`, `trap`, ...).
    pub kind: &'static str,
    pub reason: String,
}

/// What one batch produced.
#[derive(Debug, Default)]
pub struct WindowOutput {
    /// One JSON object per group per emitted window, with `window_start`,
    /// `window_end` and `revision` first.
    pub rows: BatchBuf,
    /// For each row, the input index of the record that closed (or updated) its window.
    pub origins: Vec<u32>,
    pub failures: Vec<WindowFailure>,
    pub counters: Vec<(String, u64)>,
    pub windows_emitted: u64,
}

/// Why windows could not go on: the pipeline stops with this error.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("aggregate `{name}` failed in {call}: {failure}; the pipeline cannot close windows without it (roll the aggregate back to a working version)")]
    Call { name: String, call: &'static str, failure: CallFailure },
    #[error(
        "the open windows hold {held} bytes of aggregate state, over aggregate.max_state_bytes = {budget}: raise the budget, shorten window_ms / allowed_lateness_ms, or group by fewer keys"
    )]
    OverBudget { held: u64, budget: u64 },
    #[error("aggregate `{name}` cannot take over state in format `{format}`: {reason}")]
    Handover { name: String, format: String, reason: String },
}

/// Window arithmetic and rules, from the config.
#[derive(Debug, Clone)]
pub struct WindowRules {
    size: i64,
    slide: i64,
    lateness: i64,
    late: LatePolicy,
    update_for: i64,
    time_field: String,
    group_by: Vec<String>,
    pub max_state_bytes: u64,
    /// Whether idle and closing markers count. Not when the partitions may
    /// move between processes: a process killed after saying its partitions
    /// were idle cannot take that back, while records pile up in them until
    /// another process takes them over; they must keep holding the watermark.
    pub(crate) idleness: bool,
}

impl WindowRules {
    pub fn new(c: &AggregateConfig) -> Self {
        WindowRules {
            size: c.window_ms as i64,
            slide: c.slide() as i64,
            lateness: c.allowed_lateness_ms as i64,
            late: c.late,
            update_for: c.update_for() as i64,
            time_field: c.time_field.clone(),
            group_by: c.group_by.clone(),
            max_state_bytes: c.max_state_bytes,
            idleness: true,
        }
    }

    /// Whether idle and closing markers count (not across processes).
    pub fn with_idleness(mut self, idleness: bool) -> Self {
        self.idleness = idleness;
        self
    }

    pub fn lateness_ms(&self) -> i64 {
        self.lateness
    }

    fn pane_of(&self, t: i64) -> i64 {
        t.div_euclid(self.slide) * self.slide
    }

    /// Ends of the windows that contain pane `p`, in order.
    fn window_ends(&self, p: i64) -> impl Iterator<Item = i64> + '_ {
        (1..=self.size / self.slide).map(move |k| p + k * self.slide)
    }

    /// Ends of the windows a record of event time `t` falls in, in order.
    pub fn windows_of(&self, t: i64) -> impl Iterator<Item = i64> + '_ {
        self.window_ends(self.pane_of(t))
    }

    /// The event time and group key of a record, or why it has none.
    pub(crate) fn time_and_key(&self, value: &[u8]) -> Result<(i64, Vec<u8>), String> {
        let v: serde_json::Value = serde_json::from_slice(value).map_err(|e| format!("record is not JSON: {e}"))?;
        let obj = v.as_object().ok_or("record is not a JSON object")?;
        let field = &self.time_field;
        let t = match obj.get(field) {
            None | Some(serde_json::Value::Null) => return Err(format!("no event time: field `{field}` is missing or null")),
            Some(serde_json::Value::String(s)) => {
                sluice_guest::time::parse_timestamp_ms(s).ok_or_else(|| format!("no event time: field `{field}` = {s:?} is not a timestamp"))?
            }
            Some(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(|| format!("no event time: field `{field}` = {n} is not epoch milliseconds"))?,
            Some(other) => return Err(format!("no event time: field `{field}` is {other}, not a timestamp")),
        };
        let mut key = serde_json::Map::new();
        for f in &self.group_by {
            key.insert(f.clone(), obj.get(f).cloned().unwrap_or(serde_json::Value::Null));
        }
        let key = serde_json::to_vec(&serde_json::Value::Object(key)).map_err(|e| e.to_string())?;
        Ok((t, key))
    }
}

/// One partition's windows, driving one aggregate instance.
pub struct Windows<'a> {
    pub rules: &'a WindowRules,
    pub state: &'a mut WindowState,
    pub agg: &'a mut AggregateInstance,
    pub name: &'a str,
}

/// Records waiting to be folded, per pane.
#[derive(Default)]
struct Pending {
    panes: BTreeMap<i64, (BatchBuf, Vec<u32>)>,
}

impl Windows<'_> {
    /// Take a batch, in order: fold its records into their panes, emit the
    /// windows the watermark closes, deal with late records.
    pub fn process(&mut self, input: &BatchRef<'_>) -> Result<WindowOutput, WindowError> {
        let mut out = WindowOutput::default();
        let mut pending = Pending::default();
        for (i, rec) in input.iter().enumerate() {
            let index = i as u32;
            if rec.key == MARKER_KEY {
                match Marker::parse(rec.value) {
                    Ok(m) => self.on_marker(m, index, &mut pending, &mut out)?,
                    Err(reason) => out.failures.push(WindowFailure { index, kind: "malformed", reason }),
                }
                continue;
            }
            // The router put the group key in the key and the event time in the timestamp.
            let (t, key) = (rec.timestamp, rec.key);
            let pane = self.rules.pane_of(t);
            if let Some(closed) = self.state.closed_until.filter(|c| pane + self.rules.slide <= *c) {
                let keep_until = pane + self.rules.size + self.rules.update_for;
                if self.rules.late == LatePolicy::Update && keep_until > closed {
                    // Fold now and emit the updated windows now: the result must not depend on batch boundaries.
                    pending.push(pane, rec.value, key, t, index);
                    self.flush(&mut pending, &mut out)?;
                    self.reemit(pane, closed, index, &mut out)?;
                } else {
                    let reason = format!(
                        "late: event time {} is in window [{}, {}), which closed when the watermark passed {} (allowed lateness {} ms)",
                        fmt_ms(t),
                        fmt_ms(pane + self.rules.slide - self.rules.size),
                        fmt_ms(pane + self.rules.slide),
                        fmt_ms(closed),
                        self.rules.lateness
                    );
                    out.failures.push(WindowFailure { index, kind: "late", reason });
                }
                continue;
            }
            pending.push(pane, rec.value, key, t, index);
            self.state.max_event_ms = Some(self.state.max_event_ms.map_or(t, |m| m.max(t)));
        }
        self.flush(&mut pending, &mut out)?;
        Ok(out)
    }

    /// A source partition said how far it has read: move the watermark, and
    /// close the windows it passed. A `closing` marker when every source is
    /// idle closes every open window (the stream went quiet).
    fn on_marker(&mut self, m: Marker, index: u32, pending: &mut Pending, out: &mut WindowOutput) -> Result<(), WindowError> {
        let clock = self.state.sources.entry(m.source).or_default();
        if let Some(t) = m.max_event_ms {
            clock.max_event_ms = Some(clock.max_event_ms.map_or(t, |c| c.max(t)));
        }
        clock.idle = m.state != SourceState::Active && self.rules.idleness;
        let all_idle = self.state.sources.values().all(|c| c.idle);
        let closes = if m.state == SourceState::Closing && all_idle {
            let last_pane = self.state.panes.keys().next_back().into_iter().chain(pending.panes.keys().next_back()).max().copied();
            last_pane.map(|p| p + self.rules.size)
        } else {
            self.state.watermark_ms().map(|w| self.rules.pane_of(w.saturating_sub(self.rules.lateness)))
        };
        let Some(closes) = closes.filter(|c| self.state.closed_until.is_none_or(|done| *c > done)) else { return Ok(()) };
        self.flush(pending, out)?;
        self.close(closes, index, out)
    }

    fn call_failed(&self, call: &'static str, failure: CallFailure) -> WindowError {
        WindowError::Call { name: self.name.to_owned(), call, failure }
    }

    /// Fold every pending record into its pane.
    fn flush(&mut self, pending: &mut Pending, out: &mut WindowOutput) -> Result<(), WindowError> {
        for (pane, (batch, indexes)) in std::mem::take(&mut pending.panes) {
            let state = match self.state.panes.get(&pane) {
                Some(p) => p.state.clone(),
                None => self.agg.init().map_err(|f| self.call_failed("init", f))?,
            };
            let folded = self.agg.fold(&state, &batch.as_ref());
            for f in folded.failures {
                out.failures.push(WindowFailure { index: indexes[f.index as usize], kind: f.kind.as_str(), reason: f.reason });
            }
            crate::runtime::merge_counters(&mut out.counters, folded.counters);
            self.state.panes.insert(pane, Pane { state: folded.state });
        }
        let held = self.state.state_bytes();
        if held > self.rules.max_state_bytes {
            return Err(WindowError::OverBudget { held, budget: self.rules.max_state_bytes });
        }
        Ok(())
    }

    /// The watermark passed `closes`: emit every window ending in (closed_until, closes].
    fn close(&mut self, closes: i64, origin: u32, out: &mut WindowOutput) -> Result<(), WindowError> {
        let after = self.state.closed_until.unwrap_or(i64::MIN);
        let ends: BTreeSet<i64> =
            self.state.panes.keys().flat_map(|&p| self.rules.window_ends(p).collect::<Vec<_>>()).filter(|&e| e > after && e <= closes).collect();
        for end in ends {
            self.emit(end, 0, origin, out)?;
        }
        self.state.closed_until = Some(closes);
        self.prune();
        Ok(())
    }

    /// A late record changed pane `pane`: emit its closed windows again, one revision up.
    fn reemit(&mut self, pane: i64, closed: i64, origin: u32, out: &mut WindowOutput) -> Result<(), WindowError> {
        let ends: Vec<i64> = self.rules.window_ends(pane).filter(|&e| e <= closed).collect();
        for end in ends {
            let revision = self.state.revisions.get(&end).map_or(1, |r| r + 1);
            self.emit(end, revision, origin, out)?;
        }
        Ok(())
    }

    fn emit(&mut self, end: i64, revision: u32, origin: u32, out: &mut WindowOutput) -> Result<(), WindowError> {
        let start = end - self.rules.size;
        let mut covered = self.state.panes.range(start..end).map(|(_, p)| p.state.as_slice());
        let Some(first) = covered.next() else { return Ok(()) };
        let mut merged = first.to_vec();
        for next in covered.collect::<Vec<_>>() {
            merged = self.agg.merge(&merged, next).map_err(|f| self.call_failed("merge", f))?;
        }
        let rows = self.agg.emit(&merged, start, end).map_err(|f| self.call_failed("emit", f))?;
        let (ws, we) = (fmt_ms(start), fmt_ms(end));
        let mut line = Vec::new();
        for r in rows.as_ref().iter() {
            line.clear();
            line.extend_from_slice(format!(r#"{{"window_start":"{ws}","window_end":"{we}","revision":{revision}"#).as_bytes());
            let body = r.value.trim_ascii();
            match body.strip_prefix(b"{").map(<[u8]>::trim_ascii_start) {
                Some(rest) if rest.starts_with(b"}") => line.push(b'}'),
                Some(rest) => {
                    line.push(b',');
                    line.extend_from_slice(rest);
                }
                None => {
                    let failure = CallFailure::Malformed(format!("emit() gave a row that is not a JSON object: {}", String::from_utf8_lossy(r.value)));
                    return Err(self.call_failed("emit", failure));
                }
            }
            out.rows.push(&line, r.key, end);
            out.origins.push(origin);
        }
        out.windows_emitted += 1;
        if self.rules.late == LatePolicy::Update {
            self.state.revisions.insert(end, revision);
        }
        Ok(())
    }

    /// Drop the panes no open (or still updatable) window needs.
    fn prune(&mut self) {
        let Some(closed) = self.state.closed_until else { return };
        let (size, keep) = (self.rules.size, self.rules.update_for);
        self.state.panes.retain(|p, _| p + size + keep > closed);
        self.state.revisions.retain(|e, _| e + size + keep > closed);
    }

    /// Hand the state to a new aggregate version: as it is if the format
    /// matches, through the new version's `upgrade` otherwise.
    pub fn hand_over(&mut self, format: &str, upgrades_from: &[String]) -> Result<(), WindowError> {
        if self.state.format == format {
            return Ok(());
        }
        let old = self.state.format.clone();
        let refuse = |reason: String| WindowError::Handover { name: self.name.to_owned(), format: old.clone(), reason };
        if !upgrades_from.contains(&old) {
            return Err(refuse(format!("it keeps format `{format}` and upgrades only from [{}]", upgrades_from.join(", "))));
        }
        let mut upgraded = BTreeMap::new();
        for (pane, p) in &self.state.panes {
            match self.agg.upgrade(&old, &p.state) {
                Ok(Ok(state)) => upgraded.insert(*pane, Pane { state }),
                Ok(Err(reason)) => return Err(refuse(reason)),
                Err(failure) => return Err(refuse(failure.to_string())),
            };
        }
        self.state.panes = upgraded;
        self.state.format = format.to_owned();
        Ok(())
    }
}

impl Pending {
    fn push(&mut self, pane: i64, value: &[u8], key: &[u8], t: i64, index: u32) {
        let (batch, indexes) = self.panes.entry(pane).or_default();
        batch.push(value, key, t);
        indexes.push(index);
    }
}

fn fmt_ms(ms: i64) -> String {
    let mut s = String::new();
    sluice_guest::time::format_rfc3339_ms(ms, &mut s);
    s
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}
