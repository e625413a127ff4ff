//! The accumulators of windowed SQL, and folding records into them: the state
//! of one pane is, per group, the group's computed columns and one
//! accumulator per aggregate. States merge (a window is the merge of its
//! panes) and are serialized into the window state the host checkpoints.

use super::window::{Source, SqlAggregate};
use crate::runtime::rows::StageRows;
use crate::runtime::sandbox::RecordFailure;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use serde::{Deserialize, Serialize};
use sluice_guest::columns::OutputType;
use sluice_guest::{BatchBuf, BatchRef};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// What an aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// `count(*)`: rows.
    Rows,
    /// `count(x)`: rows where `x` is not null.
    Count,
    CountDistinct,
    Sum,
    Min,
    Max,
    Avg,
    /// `percentile_disc(x, p)`.
    Percentile,
}

impl AggKind {
    pub(super) fn of(function: &str, distinct: bool) -> Option<Self> {
        Some(match (function, distinct) {
            ("count", false) => AggKind::Count,
            ("count", true) => AggKind::CountDistinct,
            ("sum", false) => AggKind::Sum,
            ("min", _) => AggKind::Min,
            ("max", _) => AggKind::Max,
            ("avg", false) | ("mean", false) => AggKind::Avg,
            ("percentile_disc", false) => AggKind::Percentile,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            AggKind::Rows => "count(*)",
            AggKind::Count => "count",
            AggKind::CountDistinct => "count(distinct)",
            AggKind::Sum => "sum",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::Avg => "avg",
            AggKind::Percentile => "percentile_disc",
        }
    }

    /// The table type of its result, given its argument's.
    pub(super) fn output_type(self, arg: Option<OutputType>) -> OutputType {
        match self {
            AggKind::Rows | AggKind::Count | AggKind::CountDistinct => OutputType::Int64,
            AggKind::Avg => OutputType::Float64,
            AggKind::Sum | AggKind::Min | AggKind::Max | AggKind::Percentile => arg.unwrap_or(OutputType::Int64),
        }
    }
}

/// One value a record brought, as accumulators keep it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// Microseconds since the epoch, UTC.
    Ts(i64),
}

impl Scalar {
    fn rank(&self) -> u8 {
        match self {
            Scalar::Bool(_) => 0,
            Scalar::Int(_) | Scalar::Float(_) => 1,
            Scalar::Ts(_) => 2,
            Scalar::Str(_) => 3,
        }
    }
}

impl Ord for Scalar {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Scalar::Int(a), Scalar::Int(b)) | (Scalar::Ts(a), Scalar::Ts(b)) => a.cmp(b),
            (Scalar::Float(a), Scalar::Float(b)) => a.total_cmp(b),
            (Scalar::Int(a), Scalar::Float(b)) => (*a as f64).total_cmp(b),
            (Scalar::Float(a), Scalar::Int(b)) => a.total_cmp(&(*b as f64)),
            (Scalar::Bool(a), Scalar::Bool(b)) => a.cmp(b),
            (Scalar::Str(a), Scalar::Str(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl PartialOrd for Scalar {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scalar {}

/// One aggregate's running value in one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acc {
    Count(u64),
    Distinct(BTreeSet<Scalar>),
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    Min(Option<Scalar>),
    Max(Option<Scalar>),
    Avg {
        sum: f64,
        n: u64,
    },
    /// Every value, for an exact percentile.
    Values(Vec<Scalar>),
}

impl Acc {
    fn new(kind: AggKind, arg: Option<OutputType>) -> Self {
        match kind {
            AggKind::Rows | AggKind::Count => Acc::Count(0),
            AggKind::CountDistinct => Acc::Distinct(BTreeSet::new()),
            AggKind::Sum if arg == Some(OutputType::Float64) => Acc::SumFloat(None),
            AggKind::Sum => Acc::SumInt(None),
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
            AggKind::Avg => Acc::Avg { sum: 0.0, n: 0 },
            AggKind::Percentile => Acc::Values(Vec::new()),
        }
    }

    /// Take one record's value (`None`: SQL NULL, or no argument for `count(*)`).
    fn add(&mut self, kind: AggKind, v: Option<Scalar>) {
        match (self, v) {
            (Acc::Count(n), _) if kind == AggKind::Rows => *n += 1,
            (_, None) => {}
            (Acc::Count(n), Some(_)) => *n += 1,
            (Acc::Distinct(set), Some(v)) => {
                set.insert(v);
            }
            // Integer sums wrap rather than panic; no count in a window comes near.
            (Acc::SumInt(s), Some(Scalar::Int(v))) => *s = Some(s.unwrap_or(0).wrapping_add(v)),
            (Acc::SumFloat(s), Some(Scalar::Float(v))) => *s = Some(s.unwrap_or(0.0) + v),
            (Acc::Min(m), Some(v)) => *m = Some(m.take().map_or(v.clone(), |m| m.min(v))),
            (Acc::Max(m), Some(v)) => *m = Some(m.take().map_or(v.clone(), |m| m.max(v))),
            (Acc::Avg { sum, n }, Some(Scalar::Int(v))) => (*sum, *n) = (*sum + v as f64, *n + 1),
            (Acc::Avg { sum, n }, Some(Scalar::Float(v))) => (*sum, *n) = (*sum + v, *n + 1),
            (Acc::Values(all), Some(v)) => all.push(v),
            _ => {}
        }
    }

    fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b),
            (Acc::SumInt(a), Acc::SumInt(b)) => *a = sum_opt(*a, b, i64::wrapping_add),
            (Acc::SumFloat(a), Acc::SumFloat(b)) => *a = sum_opt(*a, b, |x, y| x + y),
            (Acc::Min(a), Acc::Min(b)) => *a = [a.take(), b].into_iter().flatten().min(),
            (Acc::Max(a), Acc::Max(b)) => *a = [a.take(), b].into_iter().flatten().max(),
            (Acc::Avg { sum, n }, Acc::Avg { sum: s, n: m }) => (*sum, *n) = (*sum + s, *n + m),
            (Acc::Values(a), Acc::Values(b)) => a.extend(b),
            // Both states come from the same state format, so the kinds always agree.
            _ => {}
        }
    }

    /// The aggregate's value; `fraction` is a percentile's p.
    fn result(&self, fraction: Option<f64>) -> Option<Scalar> {
        match self {
            Acc::Count(n) => Some(Scalar::Int(*n as i64)),
            Acc::Distinct(set) => Some(Scalar::Int(set.len() as i64)),
            Acc::SumInt(s) => s.map(Scalar::Int),
            Acc::SumFloat(s) => s.map(Scalar::Float),
            Acc::Min(m) | Acc::Max(m) => m.clone(),
            Acc::Avg { sum, n } => (*n > 0).then(|| Scalar::Float(sum / *n as f64)),
            Acc::Values(all) if all.is_empty() => None,
            Acc::Values(all) => {
                let mut sorted = all.clone();
                sorted.sort_unstable();
                let rank = ((fraction.unwrap_or(0.5) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                Some(sorted.swap_remove(rank - 1))
            }
        }
    }
}

fn sum_opt<T: Copy>(a: Option<T>, b: Option<T>, add: impl Fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(add(a, b)),
        (a, b) => a.or(b),
    }
}

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
