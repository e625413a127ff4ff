//! The accumulators of windowed SQL: what each aggregate keeps per group, how
//! a record's value is added, how two panes' values merge, and the result.

use serde::{Deserialize, Serialize};
use sluice_guest::columns::OutputType;
use std::cmp::Ordering;
use std::collections::BTreeSet;

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
    pub(super) fn new(kind: AggKind, arg: Option<OutputType>) -> Self {
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
    pub(super) fn add(&mut self, kind: AggKind, v: Option<Scalar>) {
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

    pub(super) fn merge(&mut self, other: Acc) {
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
    pub(super) fn result(&self, fraction: Option<f64>) -> Option<Scalar> {
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
