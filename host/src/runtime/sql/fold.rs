//! Folding records into a windowed statement's state: the state of one pane
//! is, per group, the group's computed columns and one accumulator per
//! aggregate. States merge (a window is the merge of its panes) and are
//! serialized into the window state the host checkpoints.

use super::accumulate::{Acc, Scalar};
use super::window::{Source, SqlAggregate};
use crate::runtime::rows::StageRows;
use crate::runtime::sandbox::RecordFailure;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use serde::{Deserialize, Serialize};
use sluice_guest::columns::OutputType;
use sluice_guest::{BatchBuf, BatchRef};
use std::collections::BTreeMap;

/// The state of one pane: per group (the router's key and the computed group
/// values), the computed values and the accumulators.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct PaneState {
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Group {
    /// The router's key: a JSON object of the plain group columns.
    key: String,
    computed: Vec<Option<Scalar>>,
    accs: Vec<Acc>,
}

impl PaneState {
    fn read(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(PaneState::default());
        }
        serde_json::from_slice(bytes).map_err(|e| format!("the window state is not this statement's: {e}"))
    }

    fn write(&self) -> Vec<u8> {
        // Plain data of strings, numbers and sets: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What folding a batch gave: the new state, and the records refused.
pub struct FoldedRows {
    pub state: Vec<u8>,
    pub failures: Vec<RecordFailure>,
    pub counters: Vec<(String, u64)>,
}

impl SqlAggregate {
    /// Fold the records of `input` (keyed by the router) into `state`.
    pub fn fold(&self, state: &[u8], input: &BatchRef<'_>) -> Result<FoldedRows, String> {
        let mut pane = PaneState::read(state)?;
        let done = self.rows.process(input);
        let StageRows::Columns(rows) = &done.output else { return Err("the row program made records, not columns".into()) };
        let columns: Vec<&ArrayRef> = rows.batch.columns().iter().collect();
        for (row, &origin) in done.origins.iter().enumerate() {
            let key = String::from_utf8_lossy(input.get(origin as usize).key).into_owned();
            let computed: Vec<Option<Scalar>> = (0..self.computed_groups).map(|c| scalar(columns[c], row)).collect();
            let id = serde_json::to_string(&(&key, &computed)).unwrap_or_default();
            let group =
                pane.groups.entry(id).or_insert_with(|| Group { key, computed, accs: self.aggregates.iter().map(|a| Acc::new(a.kind, a.arg_type)).collect() });
            for (acc, spec) in group.accs.iter_mut().zip(&self.aggregates) {
                acc.add(spec.kind, spec.arg.and_then(|c| scalar(columns[c], row)));
            }
        }
        Ok(FoldedRows { state: pane.write(), failures: done.failures, counters: done.counters })
    }

    pub fn merge(&self, a: &[u8], b: &[u8]) -> Result<Vec<u8>, String> {
        let (mut into, other) = (PaneState::read(a)?, PaneState::read(b)?);
        for (id, g) in other.groups {
            match into.groups.get_mut(&id) {
                Some(mine) => {
                    for (acc, theirs) in mine.accs.iter_mut().zip(g.accs) {
                        acc.merge(theirs);
                    }
                }
                None => {
                    into.groups.insert(id, g);
                }
            }
        }
        Ok(into.write())
    }

    /// One JSON row per group: the router's key, then the SELECT list.
    pub fn emit(&self, state: &[u8]) -> Result<BatchBuf, String> {
        let pane = PaneState::read(state)?;
        let mut rows = BatchBuf::default();
        let mut buf = Vec::new();
        let mut text = String::new();
        for g in pane.groups.values() {
            buf.clear();
            let mut w = sluice_guest::aggregate::row_with_key(&mut buf, g.key.as_bytes());
            for (name, source, ty) in &self.outputs {
                let v = match source {
                    Source::Key(_) => continue,
                    Source::Group(i) => g.computed[*i].clone(),
                    Source::Aggregate(j) => g.accs[*j].result(self.aggregates[*j].fraction),
                };
                write(&mut w, name, *ty, v, &mut text);
            }
            w.end();
            rows.push(&buf, g.key.as_bytes(), 0);
        }
        Ok(rows)
    }
}

fn write(w: &mut sluice_guest::json::JsonWriter<'_>, name: &str, ty: OutputType, v: Option<Scalar>, text: &mut String) {
    match (ty, v) {
        (OutputType::Int64, Some(Scalar::Int(i))) => w.int(name, Some(i)),
        (OutputType::Float64, Some(Scalar::Float(f))) => w.float(name, Some(f)),
        (OutputType::Float64, Some(Scalar::Int(i))) => w.float(name, Some(i as f64)),
        (OutputType::Boolean, Some(Scalar::Bool(b))) => w.bool(name, Some(b)),
        (OutputType::Timestamp, Some(Scalar::Ts(us))) => {
            text.clear();
            sluice_guest::time::format_rfc3339_ms(us.div_euclid(1000), text);
            w.str(name, Some(text))
        }
        (OutputType::String, Some(Scalar::Str(s))) => w.str(name, Some(&s)),
        (OutputType::Int64, None) => w.int(name, None),
        (OutputType::Float64, None) => w.float(name, None),
        (OutputType::Boolean, None) => w.bool(name, None),
        _ => w.str(name, None),
    };
}

/// Row `row` of a row-program column (already cast to a table type).
fn scalar(c: &ArrayRef, row: usize) -> Option<Scalar> {
    if c.is_null(row) {
        return None;
    }
    Some(match c.data_type() {
        arrow_schema::DataType::Int64 => Scalar::Int(c.as_primitive::<Int64Type>().value(row)),
        arrow_schema::DataType::Float64 => Scalar::Float(c.as_primitive::<Float64Type>().value(row)),
        arrow_schema::DataType::Boolean => Scalar::Bool(c.as_boolean().value(row)),
        arrow_schema::DataType::Utf8 => Scalar::Str(c.as_string::<i32>().value(row).to_owned()),
        arrow_schema::DataType::Timestamp(..) => Scalar::Ts(c.as_primitive::<TimestampMicrosecondType>().value(row)),
        // Lists are not grouped or aggregated.
        _ => return None,
    })
}
