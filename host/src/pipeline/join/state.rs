//! The join of one partition of the join topic: records waiting for their
//! partners, keys already joined, the clock that expires them.
//!
//! Records arrive keyed `<side>:<key JSON>` with their log timestamp (see
//! [`crate::pipeline::repartition`]); every key lives in one partition, so
//! all its sides meet here. The clock is the watermark of the routers'
//! markers — the least log time reached over the input partitions that are
//! not idle — so a key expires only when every input has read past its
//! deadline (a topic read ahead of the others does not expire the keys still
//! waiting for them), and expiry depends only on the sequence read: a replay
//! after a crash joins and expires exactly as the first run.

use super::config::{JoinConfig, JoinKind};
use crate::pipeline::watermark::{MARKER_KEY, Marker, SourceClock, SourceState, watermark};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_guest::{BatchBuf, BatchRef};
use std::collections::{BTreeMap, BTreeSet};

/// Why a waiting key expired.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// The inputs' clock passed `within_ms` after its first record.
    Waited,
    /// Every input went quiet for `close_idle_after_ms`: nobody is coming.
    Quiet,
}

/// A record waiting for its partners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrived {
    /// Its position in the join topic.
    pub offset: u64,
    pub timestamp: i64,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// Log time of the key's first record: it expires `within_ms` after.
    pub since_ms: i64,
    pub sides: Vec<Option<Arrived>>,
}

/// The durable state of one partition's join (what a checkpoint holds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinState {
    /// The watermark reached (log time).
    pub clock_ms: Option<i64>,
    pub waiting: BTreeMap<String, Waiting>,
    /// `(since, key)` of every waiting key, oldest first.
    pub expiring: BTreeSet<(i64, String)>,
    /// Keys joined (or expired) → until when (log time) they are remembered, and whether they joined:
    /// a resend of a joined key is ignored, a latecomer to an expired one is unjoined.
    pub done: BTreeMap<String, (i64, bool)>,
    /// `(until, key)` of every remembered key.
    pub forgetting: BTreeSet<(i64, String)>,
    /// What the routers of each source partition said last (idle, closing).
    #[serde(default)]
    pub sources: BTreeMap<String, SourceClock>,
    #[serde(skip)]
    bytes: Option<u64>,
}

/// What the rules need of the config.
#[derive(Debug, Clone)]
pub struct JoinRules {
    names: Vec<String>,
    keys: Vec<String>,
    kind: JoinKind,
    key_as: String,
    within: i64,
    dedupe_for: i64,
    pub max_state_bytes: u64,
    /// Whether idle and closing markers count (see `WindowRules`).
    pub(crate) idleness: bool,
}

impl JoinRules {
    /// Whether idle and closing markers count (not across processes).
    pub fn with_idleness(mut self, idleness: bool) -> Self {
        self.idleness = idleness;
        self
    }

    pub fn new(c: &JoinConfig) -> Self {
        JoinRules {
            names: c.inputs.iter().map(|i| i.side_name()).collect(),
            keys: c.inputs.iter().map(|i| i.key.clone()).collect(),
            kind: c.kind,
            key_as: c.key_as.clone(),
            within: c.within_ms.min(i64::MAX as u64 / 4) as i64,
            dedupe_for: c.dedupe_for_ms.min(i64::MAX as u64 / 4) as i64,
            max_state_bytes: c.max_state_bytes,
            idleness: true,
        }
    }
}

/// A record that expired without its partners (inner join, or a left join's
/// right side), for the dead letters.
#[derive(Debug, Clone, PartialEq)]
pub struct Unjoined {
    pub arrived: Arrived,
    pub reason: String,
}

/// What one batch produced.
#[derive(Debug, Default)]
pub struct JoinOutput {
    pub rows: BatchBuf,
    /// For each row, the input index of the record (or marker) that completed or expired it.
    pub origins: Vec<u32>,
    pub unjoined: Vec<Unjoined>,
    /// Records of the batch that are not join input (bad key), with why.
    pub malformed: Vec<(u32, String)>,
    pub matched: u64,
    pub expired: u64,
    pub duplicates: u64,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the join holds {held} bytes of waiting records and remembered keys, over join.max_state_bytes = {budget}: raise the budget, or shorten join.within_ms / join.dedupe_for_ms"
)]
pub struct OverBudget {
    pub held: u64,
    pub budget: u64,
}

impl JoinState {
    /// Bytes held (what the budget measures).
    pub fn state_bytes(&mut self) -> u64 {
        if let Some(b) = self.bytes {
            return b;
        }
        let waiting: u64 = self.waiting.iter().map(|(k, w)| entry_bytes(k, w)).sum();
        let done: u64 = self.done.keys().map(|k| 2 * k.len() as u64 + 48).sum();
        *self.bytes.get_or_insert(waiting + done)
    }

    fn add_bytes(&mut self, delta: i64) {
        let now = self.state_bytes() as i64 + delta;
        self.bytes = Some(now.max(0) as u64);
    }
}

fn entry_bytes(key: &str, w: &Waiting) -> u64 {
    2 * key.len() as u64 + 64 + w.sides.iter().flatten().map(|a| a.value.len() as u64 + 32).sum::<u64>()
}

/// One partition's join.
pub struct Joiner<'a> {
    pub rules: &'a JoinRules,
    pub state: &'a mut JoinState,
}

impl Joiner<'_> {
    /// Take a batch of the join topic, in order; `offsets[i]` is record `i`'s position.
    pub fn process(&mut self, input: &BatchRef<'_>, offsets: &[u64]) -> Result<JoinOutput, OverBudget> {
        let mut out = JoinOutput::default();
        // Measured before anything changes, so the changes below are counted once.
        self.state.state_bytes();
        for (i, rec) in input.iter().enumerate() {
            let index = i as u32;
            if rec.key == MARKER_KEY {
                match Marker::parse(rec.value) {
                    Ok(m) => self.on_marker(m, index, &mut out),
                    Err(reason) => out.malformed.push((index, reason)),
                }
                continue;
            }
            let Some((side, key)) = split_key(rec.key, self.rules.names.len()) else {
                out.malformed.push((index, format!("not a join record: key {:?}", String::from_utf8_lossy(rec.key))));
                continue;
            };
            let value = String::from_utf8_lossy(rec.value).into_owned();
            let arrived = Arrived { offset: offsets[i], timestamp: rec.timestamp, value };
            match self.state.done.get(key) {
                Some((_, true)) => {
                    out.duplicates += 1;
                    continue;
                }
                Some((_, false)) => {
                    let reason = format!(
                        "unjoined: this {} record of key {key} came after the key expired (its first record waited join.within_ms = {} ms of log time, or every input went quiet for watermark.close_idle_after_ms; the dead letters of its first records say which)",
                        self.rules.names[side], self.rules.within
                    );
                    out.unjoined.push(Unjoined { arrived, reason });
                    continue;
                }
                None => {}
            }
            let sides = self.rules.names.len();
            let is_new = !self.state.waiting.contains_key(key);
            let w = self.state.waiting.entry(key.to_owned()).or_insert_with(|| Waiting { since_ms: rec.timestamp, sides: vec![None; sides] });
            if w.sides[side].is_some() {
                out.duplicates += 1;
                continue;
            }
            let added = arrived.value.len() as i64 + 32 + if is_new { 2 * key.len() as i64 + 64 } else { 0 };
            w.sides[side] = Some(arrived);
            let complete = w.sides.iter().all(Option::is_some);
            let since = w.since_ms;
            if is_new {
                self.state.expiring.insert((since, key.to_owned()));
            }
            self.state.add_bytes(added);
            if complete {
                let w = self.take(key);
                out.rows.push(self.row(key, &w).as_bytes(), b"", rec.timestamp);
                out.origins.push(index);
                out.matched += 1;
                self.remember(key, rec.timestamp, true);
            }
        }
        let held = self.state.state_bytes();
        if held > self.rules.max_state_bytes {
            return Err(OverBudget { held, budget: self.rules.max_state_bytes });
        }
        Ok(out)
    }

    /// The clock reached `t`: expire what waited too long, forget what was remembered long enough.
    fn tick(&mut self, t: i64, index: u32, out: &mut JoinOutput) {
        let clock = self.state.clock_ms.map_or(t, |c| c.max(t));
        self.state.clock_ms = Some(clock);
        while let Some((since, key)) = self.state.expiring.first().cloned() {
            if since.saturating_add(self.rules.within) > clock {
                break;
            }
            self.expire(&key, index, Expiry::Waited, out);
        }
        while let Some((until, key)) = self.state.forgetting.first().cloned() {
            if until > clock {
                break;
            }
            self.state.forgetting.remove(&(until, key.clone()));
            self.state.done.remove(&key);
            self.state.add_bytes(-(2 * key.len() as i64 + 48));
        }
    }

    fn on_marker(&mut self, m: Marker, index: u32, out: &mut JoinOutput) {
        let clock = self.state.sources.entry(m.source).or_default();
        clock.idle = m.state != SourceState::Active && self.rules.idleness;
        if let Some(t) = m.max_event_ms {
            clock.max_event_ms = Some(clock.max_event_ms.map_or(t, |c| c.max(t)));
        }
        if let Some(w) = watermark(&self.state.sources) {
            self.tick(w, index, out);
        }
        if m.state == SourceState::Closing && self.state.sources.values().all(|c| c.idle) {
            // Every source went quiet: nobody is coming for the waiting records.
            let keys: Vec<String> = self.state.expiring.iter().map(|(_, k)| k.clone()).collect();
            for key in keys {
                self.expire(&key, index, Expiry::Quiet, out);
            }
        }
    }

    fn take(&mut self, key: &str) -> Waiting {
        let w = self.state.waiting.remove(key).expect("a waiting key");
        self.state.expiring.remove(&(w.since_ms, key.to_owned()));
        self.state.add_bytes(-(entry_bytes(key, &w) as i64));
        w
    }

    fn remember(&mut self, key: &str, at: i64, joined: bool) {
        let until = at.saturating_add(self.rules.dedupe_for);
        if let Some((old, _)) = self.state.done.insert(key.to_owned(), (until, joined)) {
            self.state.forgetting.remove(&(old, key.to_owned()));
        } else {
            self.state.add_bytes(2 * key.len() as i64 + 48);
        }
        self.state.forgetting.insert((until, key.to_owned()));
    }

    /// `key` expired by `rule`: a left join emits what it has if the left side
    /// came; everything else that waited is unjoined, with the rule that expired it.
    fn expire(&mut self, key: &str, index: u32, rule: Expiry, out: &mut JoinOutput) {
        let w = self.take(key);
        out.expired += 1;
        let clock = self.state.clock_ms.unwrap_or(w.since_ms);
        if self.rules.kind == JoinKind::Left && w.sides[0].is_some() {
            out.rows.push(self.row(key, &w).as_bytes(), b"", clock);
            out.origins.push(index);
        } else {
            let missing: Vec<&str> = w.sides.iter().zip(&self.rules.names).filter(|(s, _)| s.is_none()).map(|(_, n)| n.as_str()).collect();
            for (side, arrived) in w.sides.iter().enumerate() {
                if let Some(a) = arrived {
                    let (side, missing) = (&self.rules.names[side], missing.join(" or "));
                    let reason = match rule {
                        Expiry::Waited => format!(
                            "unjoined: the {side} record of key {key} waited {} ms (join.within_ms) of the inputs' log time and no {missing} record came",
                            self.rules.within
                        ),
                        Expiry::Quiet => format!(
                            "unjoined: the {side} record of key {key} expired after {} ms of the inputs' log time, short of join.within_ms ({} ms), because every input of the join went quiet for watermark.close_idle_after_ms; no {missing} record came",
                            clock.saturating_sub(w.since_ms).max(0),
                            self.rules.within
                        ),
                    };
                    out.unjoined.push(Unjoined { arrived: a.clone(), reason });
                }
            }
        }
        // A left row counts as joined: a resend of its key is a duplicate, not a latecomer.
        self.remember(key, clock, self.rules.kind == JoinKind::Left && w.sides[0].is_some());
    }

    /// The joined row: the key as `key_as`, then every side's fields but its
    /// key; a field more than one side has is `<side>_<field>`.
    fn row(&self, key: &str, w: &Waiting) -> String {
        let objects: Vec<Option<Map<String, Value>>> =
            w.sides.iter().map(|s| s.as_ref().and_then(|a| serde_json::from_str::<Value>(&a.value).ok()).and_then(|v| v.as_object().cloned())).collect();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (side, o) in objects.iter().enumerate() {
            for f in o.iter().flat_map(|o| o.keys()).filter(|f| **f != self.rules.keys[side]) {
                *seen.entry(f.as_str()).or_default() += 1;
            }
        }
        let mut row = Map::new();
        row.insert(self.rules.key_as.clone(), serde_json::from_str(key).unwrap_or(Value::Null));
        for (side, o) in objects.iter().enumerate() {
            for (f, v) in o.iter().flat_map(|o| o.iter()).filter(|(f, _)| **f != self.rules.keys[side]) {
                let clash = seen.get(f.as_str()).is_some_and(|n| *n > 1) || *f == self.rules.key_as;
                let name = if clash { format!("{}_{f}", self.rules.names[side]) } else { f.clone() };
                row.insert(name, v.clone());
            }
        }
        Value::Object(row).to_string()
    }
}

/// `<side>:<key JSON>` → (side, key JSON).
fn split_key(key: &[u8], sides: usize) -> Option<(usize, &str)> {
    let text = std::str::from_utf8(key).ok()?;
    let (side, rest) = text.split_once(':')?;
    let side: usize = side.parse().ok()?;
    (side < sides && !rest.is_empty()).then_some((side, rest))
}

/// The key a router gives a record of `side` with key value `key` (JSON).
pub fn join_key(side: usize, key: &str) -> String {
    format!("{side}:{key}")
}
