//! Windowed SQL: `SELECT …, count(…) FROM input GROUP BY TUMBLE(t, INTERVAL …), k…`
//! compiled onto the pipeline's keyed machinery. The window and the plain
//! group columns become the pipeline's windows settings (the router keys
//! records by those columns through the repartition topic, the watermark closes
//! windows); what each record adds to its group is computed by a row program
//! (the same native evaluation as SQL transforms); the aggregates are
//! accumulators the host keeps in the window state and checkpoints.

use super::accumulate::AggKind;
use super::error::SqlError;
use super::program::{Header, Planned, SqlProgram};
use super::window_functions::{HOP, TUMBLE, names_a_window};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use sluice_guest::columns::{InputType, OutputType};
use std::sync::Arc;

/// The window a statement groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// The record field holding the event time.
    pub time_field: String,
    pub size_ms: u64,
    pub slide_ms: u64,
}

/// Where an output column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Source {
    /// A plain group column: the value the router keyed the record by.
    Key(String),
    /// A computed group column: column `i` of the row program.
    Group(usize),
    /// Aggregate `i`.
    Aggregate(usize),
}

/// One aggregate: what it computes, over which row-program column (none for `count(*)`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AggSpec {
    pub kind: AggKind,
    pub arg: Option<usize>,
    /// The argument's table type (for min/max and sum).
    pub arg_type: Option<OutputType>,
    /// `percentile_disc`'s p.
    pub fraction: Option<f64>,
}

/// A windowed SQL statement, ready to fold records.
pub struct SqlAggregate {
    pub header: Header,
    pub window: WindowSpec,
    /// The plain columns grouped by: the pipeline's `group_by`.
    pub group_by: Vec<String>,
    /// Computes, per record: the computed group columns, then each aggregate's argument.
    pub rows: SqlProgram,
    pub(super) computed_groups: usize,
    pub(super) aggregates: Vec<AggSpec>,
    /// The output columns after the window's: name, source, type.
    pub(super) outputs: Vec<(String, Source, OutputType)>,
    /// The layout of the state: a version that folds alike reads it.
    pub state_format: String,
    /// The rows it lands: sluice's window columns, then the SELECT list.
    pub contract: Arc<crate::runtime::columnar::ColumnContract>,
}

impl SqlAggregate {
    pub(super) fn compile(planned: Planned) -> Result<Self, SqlError> {
        let Planned { header, ctx, fields, plan } = planned;
        let (select, aggregate) = split(&plan)?;
        let LogicalPlan::Aggregate(agg) = aggregate else { unreachable!("split returns the aggregate") };
        let group_names: Vec<String> = agg.schema.fields().iter().map(|f| f.name().clone()).collect();

        // GROUP BY: one window, plain columns (router keys) and computed groups.
        let (mut window, mut group_by, mut computed) = (None, Vec::new(), Vec::new());
        let mut group_source = Vec::new();
        for g in &agg.group_expr {
            match g {
                Expr::ScalarFunction(f) if matches!(f.func.name(), TUMBLE | HOP) => {
                    if window.is_some() {
                        return Err(SqlError::new("GROUP BY names two windows; give one TUMBLE or HOP"));
                    }
                    window = Some(window_spec(f.func.name(), &f.args)?);
                    group_source.push(None);
                }
                Expr::Column(c) => {
                    group_by.push(c.name.clone());
                    group_source.push(Some(Source::Key(c.name.clone())));
                }
                other if names_a_window(other) => return Err(SqlError::new("TUMBLE and HOP go in GROUP BY on their own, not inside an expression")),
                other => {
                    group_source.push(Some(Source::Group(computed.len())));
                    computed.push(other.clone());
                }
            }
        }
        let window = window.ok_or_else(|| {
            SqlError::new(
                "GROUP BY needs a window, TUMBLE(time, INTERVAL …) or HOP(time, slide, size): a stream has no end, so a group must close; \
                 a SQL transform without GROUP BY works on each row alone",
            )
        })?;
        if group_by.contains(&window.time_field) {
            return Err(SqlError::new(format!("`{}` is the window's time; group by the window, not by the time itself", window.time_field)));
        }

        // The aggregates and their arguments.
        let mut args = computed.clone();
        let mut aggregates = Vec::new();
        for e in &agg.aggr_expr {
            let (f, _alias) = match e {
                Expr::Alias(a) => (&*a.expr, Some(a.name.clone())),
                other => (other, None),
            };
            let Expr::AggregateFunction(f) = f else { return Err(SqlError::new(format!("`{e}` is not an aggregate function"))) };
            let p = &f.params;
            if p.filter.is_some() || !p.order_by.is_empty() {
                return Err(SqlError::new(format!("`{e}`: FILTER and ORDER BY inside an aggregate are not supported; filter with WHERE")));
            }
            let kind = AggKind::of(f.func.name(), p.distinct).ok_or_else(|| {
                SqlError::new(format!(
                    "`{}` is not an aggregate windows compute; they compute count, count(DISTINCT …), sum, min, max, avg and percentile_disc(value, p)",
                    f.func.name()
                ))
            })?;
            let (arg, fraction) = match p.args.as_slice() {
                [Expr::Literal(..)] if kind == AggKind::Count => (None, None),
                [] if kind == AggKind::Count => (None, None),
                [a] if kind != AggKind::Percentile => (Some(a), None),
                [a, Expr::Literal(ScalarValue::Float64(Some(p)), _)] if kind == AggKind::Percentile && (0.0..=1.0).contains(p) => (Some(a), Some(*p)),
                _ if kind == AggKind::Percentile => {
                    return Err(SqlError::new(format!("`{e}`: write percentile_disc(value, p) with p a number from 0 to 1, e.g. 0.5")));
                }
                _ => return Err(SqlError::new(format!("`{e}` takes one argument"))),
            };
            let arg = arg.map(|a| {
                args.push(a.clone());
                args.len() - 1
            });
            let kind = if arg.is_none() { AggKind::Rows } else { kind };
            aggregates.push(AggSpec { kind, arg, arg_type: None, fraction });
        }

        // The row program: WHERE, then the computed groups and the arguments.
        let input = agg.input.as_ref().clone();
        let mut projected: Vec<Expr> = args.iter().enumerate().map(|(i, e)| e.clone().alias(format!("__sluice_{i}"))).collect();
        // One column at least, so `count(*)` alone still sees every row.
        projected.push(datafusion::logical_expr::lit(true).alias("__sluice_row"));
        let row_plan = LogicalPlanBuilder::from(input).project(projected).and_then(|b| b.build()).map_err(SqlError::from_datafusion)?;
        let rows = SqlProgram::from_plan(Header::default(), &ctx, fields.clone(), &row_plan)?;
        let types: Vec<OutputType> = rows.contract.output.iter().map(|(_, t, _)| *t).collect();
        for a in &mut aggregates {
            a.arg_type = a.arg.map(|i| types[i]);
            if matches!(a.kind, AggKind::Sum | AggKind::Avg) && !matches!(a.arg_type, Some(OutputType::Int64 | OutputType::Float64)) {
                return Err(SqlError::new(format!("{} takes a number, not {}", a.kind.name(), a.arg_type.map_or("nothing", |t| t.as_str()))));
            }
        }

        // The SELECT list: group columns and aggregates, by name.
        let aggregate_names = &group_names[agg.group_expr.len()..];
        let mut outputs = Vec::new();
        for e in select {
            // The outermost alias is the column's name (the planner may nest one inside, as for `count(*)`).
            let (mut inner, alias) = match e {
                Expr::Alias(a) => (&*a.expr, Some(a.name.clone())),
                other => (other, None),
            };
            while let Expr::Alias(a) = inner {
                inner = &a.expr;
            }
            let Expr::Column(c) = inner else {
                return Err(SqlError::new(format!(
                    "`{e}`: a windowed SELECT lists group columns and aggregates as they are (arithmetic over them is not supported yet)"
                )));
            };
            let name = alias.unwrap_or_else(|| c.name.clone());
            if ["window_start", "window_end", "revision"].contains(&name.as_str()) {
                return Err(SqlError::new(format!("`{name}` is added to every window row by sluice; do not select it")));
            }
            let (source, ty) = if let Some(i) = group_names.iter().position(|n| *n == c.name).filter(|&i| i < agg.group_expr.len()) {
                match &group_source[i] {
                    None => return Err(SqlError::new("the window itself is not a column: sluice adds window_start and window_end to every row")),
                    Some(Source::Key(field)) => {
                        if name != *field {
                            return Err(SqlError::new(format!("group column `{field}` lands under its own name; select it as `{field}`, not `{name}`")));
                        }
                        let t = fields.iter().find(|(n, _)| n == field).map(|(_, t)| *t).unwrap_or(InputType::String);
                        (Source::Key(field.clone()), key_type(t))
                    }
                    Some(Source::Group(g)) => (Source::Group(*g), types[*g]),
                    Some(Source::Aggregate(_)) => unreachable!("groups are keys or computed"),
                }
            } else if let Some(j) = aggregate_names.iter().position(|n| *n == c.name) {
                (Source::Aggregate(j), aggregates[j].kind.output_type(aggregates[j].arg_type))
            } else {
                return Err(SqlError::new(format!("`{}` is neither a group column nor an aggregate", c.name)));
            };
            outputs.push((name, source, ty));
        }
        if !outputs.iter().any(|(_, s, _)| matches!(s, Source::Aggregate(_))) {
            return Err(SqlError::new("a windowed SELECT computes at least one aggregate"));
        }
        let state_format = format!(
            "sql-window/1 window={}/{} time={} keys={} groups={} aggregates={}",
            window.size_ms,
            window.slide_ms,
            window.time_field,
            group_by.join(","),
            computed.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("|"),
            aggregates.iter().map(|a| format!("{}{}", a.kind.name(), a.fraction.map(|p| format!("({p})")).unwrap_or_default())).collect::<Vec<_>>().join(",")
        );
        let computed_groups = computed.len();
        let contract = Arc::new(table_contract(&fields, &outputs));
        Ok(SqlAggregate { header, window, group_by, rows, computed_groups, aggregates, outputs, state_format, contract })
    }

    /// `name type` of each output column after the window's, for descriptors and `sluice sql check`.
    pub fn describe_output(&self) -> String {
        self.outputs.iter().map(|(n, _, t)| format!("{n} {}", t.as_str())).collect::<Vec<_>>().join(", ")
    }
}

/// The table of window rows: `window_start`, `window_end`, `revision`, then the SELECT list.
fn table_contract(fields: &[(String, InputType)], outputs: &[(String, Source, OutputType)]) -> crate::runtime::columnar::ColumnContract {
    let window = [("window_start", OutputType::Timestamp), ("window_end", OutputType::Timestamp), ("revision", OutputType::Int64)];
    let output: Vec<(String, OutputType, bool)> =
        window.iter().map(|(n, t)| (n.to_string(), *t, false)).chain(outputs.iter().map(|(n, _, t)| (n.clone(), *t, true))).collect();
    let schema = Arc::new(arrow_schema::Schema::new(
        output.iter().map(|(n, t, nullable)| arrow_schema::Field::new(n, crate::runtime::columnar::arrow_type(*t), *nullable)).collect::<Vec<_>>(),
    ));
    crate::runtime::columnar::ColumnContract { input: fields.to_vec(), output, schema }
}

/// The type a plain group column lands as: the JSON value the router keyed by.
fn key_type(t: InputType) -> OutputType {
    match t {
        InputType::Int64 => OutputType::Int64,
        InputType::Float64 => OutputType::Float64,
        InputType::Boolean => OutputType::Boolean,
        InputType::String | InputType::Any | InputType::Timestamp => OutputType::String,
    }
}

/// The SELECT list and the Aggregate node of a windowed statement.
fn split(plan: &LogicalPlan) -> Result<(&[Expr], &LogicalPlan), SqlError> {
    let LogicalPlan::Projection(p) = plan else {
        return Err(SqlError::new(format!(
            "a windowed statement is `SELECT … FROM input GROUP BY …`; ORDER BY, LIMIT and DISTINCT are refused ({})",
            plan.display()
        )));
    };
    match p.input.as_ref() {
        a @ LogicalPlan::Aggregate(agg) => {
            check_below(&agg.input)?;
            Ok((&p.expr, a))
        }
        LogicalPlan::Filter(_) => Err(SqlError::new("HAVING is not supported in windowed statements yet; filter rows with WHERE")),
        other => Err(SqlError::new(format!("unexpected plan for a windowed statement: {}", other.display()))),
    }
}

/// Below the aggregate: WHERE over `input`, nothing else.
fn check_below(plan: &LogicalPlan) -> Result<(), SqlError> {
    match plan {
        LogicalPlan::Filter(f) => {
            if names_a_window(&f.predicate) {
                return Err(SqlError::new("TUMBLE and HOP go in GROUP BY"));
            }
            check_below(&f.input)
        }
        LogicalPlan::SubqueryAlias(a) => check_below(&a.input),
        LogicalPlan::TableScan(_) => Ok(()),
        other => Err(SqlError::new(format!("a windowed statement reads `input` alone (joins go to join stages): {}", other.display()))),
    }
}

/// `TUMBLE(t, size)` / `HOP(t, slide, size)` as a window over field `t`.
fn window_spec(function: &str, args: &[Expr]) -> Result<WindowSpec, SqlError> {
    let usage = "TUMBLE(time_field, INTERVAL '1' MINUTE) or HOP(time_field, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE) (slide, then size)";
    let (time, intervals) = match (function, args) {
        (TUMBLE, [Expr::Column(c), size]) => (c, vec![size]),
        (HOP, [Expr::Column(c), slide, size]) => (c, vec![slide, size]),
        _ => return Err(SqlError::new(format!("write {usage}"))),
    };
    let ms: Vec<u64> = intervals
        .into_iter()
        .map(|e| interval_ms(e).ok_or_else(|| SqlError::new(format!("`{e}` is not a fixed interval: write {usage}"))))
        .collect::<Result<_, _>>()?;
    let (slide_ms, size_ms) = match ms.as_slice() {
        [size] => (*size, *size),
        [slide, size] => (*slide, *size),
        _ => unreachable!("one or two intervals"),
    };
    if size_ms == 0 || slide_ms == 0 || size_ms % slide_ms != 0 {
        return Err(SqlError::new(format!("the window size ({size_ms} ms) must be a positive multiple of its slide ({slide_ms} ms)")));
    }
    Ok(WindowSpec { time_field: time.name.clone(), size_ms, slide_ms })
}

/// A literal interval of days, hours, minutes, seconds or milliseconds (not months: they vary).
fn interval_ms(e: &Expr) -> Option<u64> {
    let Expr::Literal(v, _) = e else { return None };
    let ms = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => i64::from(i.days) * 86_400_000 + i.nanoseconds / 1_000_000,
        ScalarValue::IntervalDayTime(Some(i)) => i64::from(i.days) * 86_400_000 + i64::from(i.milliseconds),
        _ => return None,
    };
    u64::try_from(ms).ok().filter(|&ms| ms > 0)
}
