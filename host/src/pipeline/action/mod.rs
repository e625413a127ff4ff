//! Actions: detectors over a pipeline's rows, and the webhooks their actions go to.
//!
//! After a batch has landed in its open segment, each action's detector (a
//! Wasm transform: the built-in `detect`, or an uploaded one) reads the batch's
//! cleaned records or window rows, each wrapped in an envelope with the
//! action's settings (and, for window rows, the same group's previous row). What
//! it emits is delivered to the action's webhook in the background; the
//! partition reads on only once every action of the batch was acknowledged or
//! went to the dead letters, so its segment — and with it the input position —
//! is committed only after that: at least once, nothing lost. The worker's
//! other partitions go on meanwhile, so a webhook being retried holds back
//! only the partition whose actions it carries. A redelivery after a crash carries the same
//! `Idempotency-Key`: `<pipeline>/<action>/<topic>/<partition>/<offset>/<n>`,
//! the position of the input record the action came from (for a window row,
//! the record that closed the window) and its number among that record's
//! actions.

pub mod config;
mod stage;
pub mod template;
pub mod webhook;

pub use config::{ActionConfig, ActionInput};

use super::invalid::InvalidPipeline;
use super::land::Provenance;
use super::snapshot::Snapshots;
use super::stage::Flow;
use super::stats::{ActionStats, PipelineStats};
use crate::position::PartitionId;
use crate::runtime::registry::Registry;
use crate::runtime::{CompiledTransform, TransformInstance};
use crate::telemetry::metrics;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_guest::{BatchBuf, BatchRef};
use std::collections::BTreeMap;
use std::sync::Arc;
use template::Template;
use webhook::{Request, Webhook};

/// Dead-letter kinds of actions.
pub const REFUSED: &str = "action_refused";
pub const GAVE_UP: &str = "action_gave_up";

/// Which of a pipeline's actions a worker runs, and how they are numbered.
pub struct Placed {
    /// Only those on records, or on windows (`None`: all of them).
    pub only: Option<ActionInput>,
    /// The stage number of the first action: the transforms, the aggregate, then the actions.
    pub first_stage: u32,
}

/// The actions of one pipeline worker.
pub struct ActionStage {
    pipeline: String,
    actions: Vec<Action>,
    /// The stage number of the first action: the transforms, the aggregate, then the actions.
    first_stage: u32,
    /// Per partition, the deliveries of its last batch still on their way.
    in_flight: BTreeMap<PartitionId, Vec<stage::InFlight>>,
}

struct Action {
    config: ActionConfig,
    /// Its place among the pipeline's actions (its stage is the first action stage + this).
    index: u32,
    input: ActionInput,
    compiled: Arc<CompiledTransform>,
    instance: TransformInstance,
    /// The envelope's `"when"` value, serialized once.
    when: String,
    template: Option<Template>,
    webhook: Webhook,
    stats: Arc<ActionStats>,
    /// Window rows: the latest row of each group, per partition.
    previous: BTreeMap<PartitionId, Groups>,
    snapshots: Snapshots,
}

/// Group key (its values as JSON) → what the action last saw of that group.
type Groups = BTreeMap<String, GroupRows>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct GroupRows {
    window_start: Value,
    row: Value,
    /// The row of the window before `row`'s (a revision of `row`'s window is compared with it).
    before: Option<Value>,
}

/// The rows a batch offers the actions, each with the input record it came from.
pub struct ActionRows<'a> {
    pub records: Option<(BatchRef<'a>, &'a [u32])>,
    pub windows: Option<(BatchRef<'a>, &'a [u32])>,
}

impl ActionStage {
    pub fn new(
        pipeline: &str,
        configs: &[ActionConfig],
        aggregates: bool,
        placed: Placed,
        registry: &Registry,
        state_dir: &std::path::Path,
        stats: &PipelineStats,
    ) -> anyhow::Result<Option<ActionStage>> {
        if configs.is_empty() {
            return Ok(None);
        }
        let Placed { only, first_stage } = placed;
        let mut actions = Vec::new();
        for (index, c) in configs.iter().enumerate() {
            if only.is_some_and(|o| o != c.input(aggregates)) {
                continue;
            }
            let (component, when) = c.component();
            let version = registry
                .default_version(component)
                .map_err(|e| InvalidPipeline(format!("pipeline `{pipeline}`, action `{}`: detector `{}`: {e}", c.name, c.detector)))?;
            let compiled = registry.compiled(&version)?;
            let template = c
                .webhook
                .body
                .as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(|e| InvalidPipeline(format!("pipeline `{pipeline}`, action `{}`: webhook.body: {e}", c.name)))?;
            let status = stats.action(&c.name);
            metrics().init_action(pipeline, &c.name);
            actions.push(Action {
                index: index as u32,
                input: c.input(aggregates),
                instance: compiled.instance(),
                compiled,
                when: serde_json::to_string(&when)?,
                template,
                webhook: Webhook::new(pipeline, &c.name, &c.webhook, status.clone()).with_context(|| format!("pipeline `{pipeline}`"))?,
                stats: status,
                previous: BTreeMap::new(),
                snapshots: Snapshots::under(state_dir, "actions", &format!("{pipeline}/{}", c.name)),
                config: c.clone(),
            });
        }
        if actions.is_empty() {
            return Ok(None);
        }
        Ok(Some(ActionStage { pipeline: pipeline.to_owned(), actions, first_stage, in_flight: BTreeMap::new() }))
    }

    /// Detect the actions of one batch of partition `p` and start delivering
    /// them. Rows the detector refuses are dead letters at once.
    fn detect(&mut self, flow: &mut Flow<'_>) -> Vec<stage::InFlight> {
        let p = flow.partition;
        let from = flow.from();
        let offsets = &flow.fetched.offsets;
        let records_origins = flow.origins().into_owned();
        flow.render();
        let records = flow.rendered_records();
        let mut refused = Vec::new();
        let mut started = Vec::new();
        for (k, a) in self.actions.iter_mut().enumerate() {
            let stage = self.first_stage + a.index;
            let (batch, origins) = match a.input {
                ActionInput::Records => (records, records_origins.as_slice()),
                ActionInput::Windows => match &flow.windows {
                    Some((rows, origins)) => (rows.as_ref(), origins.as_slice()),
                    None => continue,
                },
            };
            if batch.is_empty() {
                continue;
            }
            let envelopes = a.envelopes(p, &batch);
            let out = a.instance.process(&envelopes.as_ref());
            for f in &out.failures {
                let mut d = from.letter(origins[f.index as usize], stage, &a.compiled, f.kind.as_str(), &f.reason);
                d.set_value(batch.get(f.index as usize).value);
                refused.push(d);
            }
            let detected = out.output.to_json();
            let detected = detected.as_ref().as_ref();
            if detected.is_empty() {
                continue;
            }
            metrics().action_detected.with_label_values(&[&self.pipeline, &a.config.name]).inc_by(detected.len() as u64);
            PipelineStats::add(&a.stats.detected, detected.len() as u64);
            // Each action's key: the input record it came from, and its number among that record's actions.
            let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
            let mut keyed = Vec::with_capacity(detected.len());
            for (i, &row) in out.origins.iter().enumerate() {
                let origin = origins[row as usize];
                let n = seen.entry(origin).or_default();
                let key = format!("{}/{}/{}/{}/{}/{}", self.pipeline, a.config.name, p.topic, p.partition, offsets[origin as usize], n);
                *n += 1;
                let record: Value = serde_json::from_slice(detected.get(i).value).unwrap_or(Value::Null);
                keyed.push((origin, key, record));
            }
            let requests = a.requests(&keyed);
            let mut next = 0;
            let letters = requests
                .iter()
                .map(|r| {
                    let carried = &keyed[next..next + r.keys.len()];
                    next += r.keys.len();
                    carried
                        .iter()
                        .map(|(origin, key, record)| {
                            let mut d = from.letter(*origin, stage, &a.compiled, "", "");
                            d.set_value(record.to_string().as_bytes());
                            (key.clone(), d)
                        })
                        .collect()
                })
                .collect();
            started.push(stage::InFlight { action: k, delivery: a.webhook.start(requests, flow.stopping), letters });
        }
        flow.late.extend(refused);
        started
    }
}

impl Action {
    /// Wrap each row for the detector; window rows get their group's previous row.
    fn envelopes(&mut self, p: &PartitionId, rows: &BatchRef<'_>) -> BatchBuf {
        let mut out = BatchBuf::default();
        let mut buf = Vec::new();
        let groups = self.previous.entry(p.clone()).or_default();
        for r in rows.iter() {
            buf.clear();
            buf.extend_from_slice(b"{\"when\":");
            buf.extend_from_slice(self.when.as_bytes());
            buf.extend_from_slice(b",\"record\":");
            buf.extend_from_slice(r.value);
            buf.extend_from_slice(b",\"previous\":");
            if self.input == ActionInput::Windows {
                let previous = remember(groups, &self.config.group_by, r.value);
                serde_json::to_writer(&mut buf, &previous).expect("a JSON value serializes");
            } else {
                buf.extend_from_slice(b"null");
            }
            buf.push(b'}');
            out.push(&buf, r.key, r.timestamp);
        }
        out
    }

    /// Group the keyed actions into requests of at most `batch_max`.
    fn requests(&self, keyed: &[(u32, String, Value)]) -> Vec<Request> {
        let batched = self.config.webhook.batch_max > 1;
        keyed
            .chunks(self.config.webhook.batch_max)
            .map(|chunk| {
                let mut body = Vec::new();
                if batched {
                    body.push(b'[');
                }
                for (i, (_, key, record)) in chunk.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    match &self.template {
                        Some(t) => t.render(record, key, &mut body),
                        None => serde_json::to_writer(&mut body, record).expect("a JSON value serializes"),
                    }
                }
                if batched {
                    body.push(b']');
                }
                Request { keys: chunk.iter().map(|(_, k, _)| k.clone()).collect(), body }
            })
            .collect()
    }
}

/// Note window row `row` of its group and return the group's row of the
/// window before it (a later revision of the same window is compared with the
/// same earlier row).
fn remember(groups: &mut Groups, group_by: &[String], row: &[u8]) -> Value {
    let Ok(row) = serde_json::from_slice::<Value>(row) else { return Value::Null };
    let key = serde_json::to_string(&group_by.iter().map(|c| row.get(c).cloned().unwrap_or(Value::Null)).collect::<Vec<_>>()).unwrap_or_default();
    let start = row.get("window_start").cloned().unwrap_or(Value::Null);
    match groups.get_mut(&key) {
        Some(g) if g.window_start == start => {
            g.row = row;
            g.before.clone().unwrap_or(Value::Null)
        }
        Some(g) => {
            let before = std::mem::replace(&mut g.row, row);
            g.window_start = start;
            g.before = Some(before.clone());
            before
        }
        None => {
            groups.insert(key, GroupRows { window_start: start, row, before: None });
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_window_row_is_paired_with_its_groups_previous_window() {
        let mut groups = Groups::new();
        let by = vec!["category".to_owned()];
        let row = |start: &str, c: &str, n: i64| json!({"window_start": start, "category": c, "post_count": n}).to_string();
        assert_eq!(remember(&mut groups, &by, row("03:00", "art", 5).as_bytes()), Value::Null);
        assert_eq!(remember(&mut groups, &by, row("03:00", "travel", 9).as_bytes()), Value::Null);
        assert_eq!(remember(&mut groups, &by, row("03:01", "art", 12).as_bytes())["post_count"], 5);
        // A revision of 03:01 is still compared with 03:00.
        assert_eq!(remember(&mut groups, &by, row("03:01", "art", 13).as_bytes())["post_count"], 5);
        assert_eq!(remember(&mut groups, &by, row("03:02", "art", 1).as_bytes())["post_count"], 13);
        assert_eq!(remember(&mut groups, &by, row("03:02", "travel", 1).as_bytes())["post_count"], 9);
        // No group columns: the whole stream is one group.
        let mut one = Groups::new();
        remember(&mut one, &[], row("03:00", "art", 5).as_bytes());
        assert_eq!(remember(&mut one, &[], row("03:01", "travel", 7).as_bytes())["category"], "art");
    }
}
