//! A SQL stage's statement, parsed, checked and planned once per version into
//! the steps each batch goes through.
//!
//! The text is: optional `-- name:`, `-- version:`, `-- input:`, `-- output:`
//! header comments; an optional `CREATE TABLE input (…)` declaring the types
//! of the fields it reads; one `SELECT … FROM input [WHERE …]`. A field the
//! statement reads without declaring it is a `VARCHAR`.

use super::error::SqlError;
use super::input;
use crate::runtime::columnar::ColumnContract;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, SchemaError};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use sluice_guest::columns::{InputType, OutputType};
use std::sync::Arc;

/// The column a statement sets to a reason to refuse a row.
pub const REJECT_COLUMN: &str = "_reject";

/// Most input fields a statement may read.
const MAX_INPUT_FIELDS: usize = 256;

/// What the text says about itself: its header comments, and the join its FROM names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub name: Option<String>,
    pub version: Option<String>,
    pub input_kind: Option<String>,
    pub output_kind: Option<String>,
    /// `FROM a JOIN b …`: the pipeline's join (the rest reads the joined rows).
    pub join: Option<super::join::JoinSpec>,
}

/// One step of a batch through the plan.
pub(super) enum Step {
    /// Keep these columns of the `input` table.
    Scan(Vec<usize>),
    /// Keep the rows the predicate is true for.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute new columns.
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
    /// The statement can select no row (`WHERE false`).
    Empty(SchemaRef),
}

/// A statement ready to run on batches.
pub struct SqlProgram {
    pub header: Header,
    /// The input fields it reads and the columns it writes.
    pub contract: Arc<ColumnContract>,
    pub(super) input_schema: SchemaRef,
    pub(super) steps: Vec<Step>,
    /// Where `_reject` is among the last step's columns.
    pub(super) reject: Option<usize>,
    /// Each output column: its index among the last step's columns.
    pub(super) outputs: Vec<usize>,
}

/// Whether these bytes are a SQL stage's text rather than a component: text
/// with a `SELECT` in it (anything else is tried, and refused, as a component).
pub fn is_sql(text: &str) -> bool {
    !text.starts_with("\0asm") && text.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w.eq_ignore_ascii_case("select"))
}

fn parse_header(text: &str) -> Header {
    let mut h = Header::default();
    for line in text.lines().map(str::trim).take_while(|l| l.is_empty() || l.starts_with("--")) {
        let Some((key, value)) = line.trim_start_matches('-').split_once(':') else { continue };
        let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        match key.trim() {
            "name" => h.name = value,
            "version" => h.version = value,
            "input" => h.input_kind = value,
            "output" => h.output_kind = value,
            _ => {}
        }
    }
    h
}

/// A statement parsed and planned against its `input` table, not yet checked
/// for what kind of stage it makes.
pub(super) struct Planned {
    pub header: Header,
    pub ctx: SessionContext,
    /// The input fields it reads, with their types.
    pub fields: Vec<(String, InputType)>,
    /// The plan as the SQL planner made it (before the optimizer).
    pub plan: LogicalPlan,
}

/// Parse and plan `text`: its header, its optional `CREATE TABLE input`, its SELECT.
pub(super) fn plan(text: &str) -> Result<Planned, SqlError> {
    let mut header = parse_header(text);
    let mut statements = DFParser::parse_sql(text).map_err(SqlError::from_datafusion)?;
    let (declared, query) = match statements.len() {
        1 => (Vec::new(), statements.pop_front().expect("one statement")),
        2 => {
            let first = statements.pop_front().expect("two statements");
            (declarations(first)?, statements.pop_front().expect("two statements"))
        }
        0 => return Err(SqlError::new("no statement: write `SELECT … FROM input`")),
        n => {
            return Err(SqlError::new(format!("{n} statements; a SQL stage is one SELECT, optionally after `CREATE TABLE input (…)` declaring field types")));
        }
    };
    if !matches!(&query, Statement::Statement(s) if matches!(**s, SqlStatement::Query(_))) {
        return Err(SqlError::new(format!("a SQL stage must be a SELECT; got `{}`", first_words(&query.to_string()))));
    }
    let mut query = query;
    header.join = super::join::take_join(&mut query)?;
    let ctx = session();
    let (fields, plan) = plan_reading_fields(&ctx, declared, &query)?;
    Ok(Planned { header, ctx, fields, plan })
}

/// Whether a plan groups rows (a windowed aggregate) rather than mapping each row.
pub(super) fn groups(plan: &LogicalPlan) -> bool {
    plan.exists(|node| Ok(matches!(node, LogicalPlan::Aggregate(_)))).unwrap_or(false)
}

impl SqlProgram {
    /// The row-by-row program of a checked plan over `input` of `fields`.
    pub(super) fn from_plan(header: Header, ctx: &SessionContext, fields: Vec<(String, InputType)>, plan: &LogicalPlan) -> Result<Self, SqlError> {
        check_row_by_row(plan)?;
        let optimized = ctx.state().optimize(plan).map_err(SqlError::from_datafusion)?;
        let input_schema = input::schema(&fields);
        let mut steps = Vec::new();
        lower(ctx, &optimized, &mut steps)?;
        let last = optimized.schema();
        let (reject, outputs, output) = output_columns(last.as_arrow())?;
        let schema =
            Arc::new(Schema::new(output.iter().map(|(n, t, nullable)| Field::new(n, crate::runtime::columnar::arrow_type(*t), *nullable)).collect::<Vec<_>>()));
        let contract = Arc::new(ColumnContract { input: fields, output, schema });
        Ok(SqlProgram { header, contract, input_schema, steps, reject, outputs })
    }

    /// `name type` of each input field, for `sluice sql check` and descriptors.
    pub fn describe_input(&self) -> String {
        self.contract.input.iter().map(|(n, t)| format!("{n} {}", sql_type_name(*t))).collect::<Vec<_>>().join(", ")
    }
}

pub(super) fn sql_type_name(t: InputType) -> &'static str {
    match t {
        InputType::Any => "JSON",
        InputType::String => "VARCHAR",
        InputType::Int64 => "BIGINT",
        InputType::Float64 => "DOUBLE",
        InputType::Boolean => "BOOLEAN",
        InputType::Timestamp => "TIMESTAMP",
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

/// A session with sluice's functions, spans on errors, and one partition (a batch is small).
pub(super) fn session() -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(1);
    config.options_mut().sql_parser.collect_spans = true;
    let ctx = SessionContext::new_with_config(config);
    for f in super::udf::all().into_iter().chain(super::window_functions::placeholders()) {
        ctx.register_udf(f);
    }
    for f in super::window_functions::aggregate_functions() {
        ctx.register_udaf(f);
    }
    ctx
}

/// The field types `CREATE TABLE input (…)` declares.
fn declarations(statement: Statement) -> Result<Vec<(String, InputType)>, SqlError> {
    let Statement::Statement(s) = statement else {
        return Err(SqlError::new("the first of two statements must be `CREATE TABLE input (field TYPE, …)`"));
    };
    let SqlStatement::CreateTable(table) = *s else {
        return Err(SqlError::new(format!("the first of two statements must be `CREATE TABLE input (field TYPE, …)`, not `{}`", first_words(&s.to_string()))));
    };
    if !table.name.to_string().eq_ignore_ascii_case("input") {
        return Err(SqlError::new(format!("`CREATE TABLE {}`: the table a SQL stage reads is called `input`", table.name)));
    }
    let mut fields: Vec<(String, InputType)> = Vec::new();
    for c in table.columns {
        let name = c.name.value.clone();
        if fields.iter().any(|(n, _)| *n == name) {
            return Err(SqlError::new(format!("input field `{name}` is declared twice")));
        }
        let t = input::declared_type(&name, &c.data_type.to_string()).map_err(SqlError::new)?;
        fields.push((name, t));
    }
    Ok(fields)
}

/// Plan the query against an `input` table of the declared fields, adding as a
/// `VARCHAR` each field the planner finds read but undeclared, until it plans.
fn plan_reading_fields(
    ctx: &SessionContext,
    mut fields: Vec<(String, InputType)>,
    query: &Statement,
) -> Result<(Vec<(String, InputType)>, LogicalPlan), SqlError> {
    loop {
        let schema = input::schema(&fields);
        let table = MemTable::try_new(schema, vec![vec![]]).map_err(SqlError::from_datafusion)?;
        let _ = ctx.deregister_table("input");
        ctx.register_table("input", Arc::new(table)).map_err(SqlError::from_datafusion)?;
        let state = ctx.state();
        match crate::sync::block_on(state.statement_to_plan(query.clone())) {
            Ok(plan) => return Ok((fields, plan)),
            Err(e) => match unknown_field(&e) {
                Some(name) if fields.len() < MAX_INPUT_FIELDS && !fields.iter().any(|(n, _)| *n == name) => fields.push((name, InputType::String)),
                _ => return Err(SqlError::from_datafusion(e)),
            },
        }
    }
}

/// The unqualified (or `input.`-qualified) field a planner error says is not in the table.
fn unknown_field(e: &DataFusionError) -> Option<String> {
    let DataFusionError::SchemaError(schema_error, _) = e.find_root() else { return None };
    let SchemaError::FieldNotFound { field, .. } = schema_error.as_ref() else { return None };
    match &field.relation {
        None => Some(field.name.clone()),
        Some(r) if r.table() == "input" => Some(field.name.clone()),
        Some(_) => None,
    }
}

/// A transform stage works row by row on one batch: refuse what needs more.
fn check_row_by_row(plan: &LogicalPlan) -> Result<(), SqlError> {
    let mut problem: Option<String> = None;
    let _ = plan.apply(|node| {
        let why = match node {
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::TableScan(_) => None,
            LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) | LogicalPlan::Distinct(_) => Some(
                "GROUP BY, DISTINCT, aggregates and window functions need rows across batches: a SQL transform works on each row alone (see docs/sql.md for windowed aggregates)"
                    .to_owned(),
            ),
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
                Some("ORDER BY and LIMIT are refused: a stage sees one batch at a time, whose order and size mean nothing".to_owned())
            }
            LogicalPlan::Join(_) | LogicalPlan::Union(_) | LogicalPlan::Subquery(_) | LogicalPlan::RecursiveQuery(_) => {
                Some("a SQL transform reads one table, `input`; joins across topics are join stages (see docs/sql.md)".to_owned())
            }
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Some("the statement must read `FROM input`".to_owned()),
            other => Some(format!("`{}` is not something a SQL transform can do", other.display())),
        };
        if let Some(why) = why {
            problem = Some(why);
            return Ok(TreeNodeRecursion::Stop);
        }
        node.apply_expressions(|e| {
            if let Some(why) = expression_problem(e) {
                problem = Some(why);
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    match problem {
        Some(p) => Err(SqlError::new(p)),
        None => Ok(()),
    }
}

/// Functions whose value changes from one run to the next would make a replay
/// after a crash land different rows than the first run; subqueries read other tables.
fn expression_problem(e: &Expr) -> Option<String> {
    let mut why = None;
    let _ = e.apply(|e| {
        match e {
            e if super::window_functions::names_a_window(e) && matches!(e, Expr::ScalarFunction(_)) => {
                why = Some("TUMBLE and HOP name a window in GROUP BY (docs/sql.md, windows)".into());
            }
            Expr::ScalarFunction(f) if f.func.signature().volatility != Volatility::Immutable => {
                why = Some(format!(
                    "`{}()` gives a different value each time it runs; a replayed batch must land the same rows, so a SQL stage takes only deterministic functions",
                    f.func.name()
                ));
            }
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => why = Some("subqueries are refused: a SQL transform reads only `input`".into()),
            Expr::AggregateFunction(_) | Expr::WindowFunction(_) => {
                why = Some("aggregate and window functions need rows across batches; a SQL transform works on each row alone".into())
            }
            _ => return Ok(TreeNodeRecursion::Continue),
        }
        Ok(TreeNodeRecursion::Stop)
    });
    why
}

/// The optimized plan as steps, from the table scan up.
fn lower(ctx: &SessionContext, plan: &LogicalPlan, steps: &mut Vec<Step>) -> Result<(), SqlError> {
    let physical = |e: &Expr, schema: &DFSchema| ctx.create_physical_expr(e.clone(), schema).map_err(SqlError::from_datafusion);
    match plan {
        LogicalPlan::TableScan(scan) => {
            if !scan.filters.is_empty() || scan.fetch.is_some() {
                return Err(SqlError::new(format!("unexpected plan for a SQL transform: {}", plan.display())));
            }
            let all = (0..scan.source.schema().fields().len()).collect();
            steps.push(Step::Scan(scan.projection.clone().unwrap_or(all)));
        }
        LogicalPlan::Filter(f) => {
            lower(ctx, &f.input, steps)?;
            steps.push(Step::Filter(physical(&f.predicate, f.input.schema())?));
        }
        LogicalPlan::Projection(p) => {
            lower(ctx, &p.input, steps)?;
            let exprs = p.expr.iter().map(|e| physical(e, p.input.schema())).collect::<Result<Vec<_>, _>>()?;
            steps.push(Step::Project(exprs, nullable(p.schema.as_arrow())));
        }
        LogicalPlan::SubqueryAlias(a) => lower(ctx, &a.input, steps)?,
        LogicalPlan::EmptyRelation(e) if !e.produce_one_row => steps.push(Step::Empty(nullable(e.schema.as_arrow()))),
        other => return Err(SqlError::new(format!("unexpected plan for a SQL transform: {}", other.display()))),
    }
    Ok(())
}

/// The schema with every field nullable: intermediate steps are checked by
/// their results, not by the planner's guesses.
fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>()))
}

/// The statement's columns: where `_reject` is, and the table columns with their types.
#[allow(clippy::type_complexity)]
fn output_columns(schema: &Schema) -> Result<(Option<usize>, Vec<usize>, Vec<(String, OutputType, bool)>), SqlError> {
    let mut reject = None;
    let (mut outputs, mut columns) = (Vec::new(), Vec::new());
    for (i, f) in schema.fields().iter().enumerate() {
        if f.name() == REJECT_COLUMN {
            if !matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null) {
                return Err(SqlError::new(format!("`{REJECT_COLUMN}` is the reason a row is refused: it must be text (or NULL), not {}", f.data_type())));
            }
            reject = Some(i);
            continue;
        }
        let t = output_type(f.data_type()).ok_or_else(|| {
            SqlError::new(format!(
                "output column `{}` is {}; tables take BIGINT, DOUBLE, BOOLEAN, VARCHAR, TIMESTAMP and arrays of DOUBLE: CAST it to one of them",
                f.name(),
                f.data_type()
            ))
        })?;
        outputs.push(i);
        columns.push((f.name().clone(), t, f.is_nullable()));
    }
    if columns.is_empty() {
        return Err(SqlError::new("the statement writes no column besides `_reject`"));
    }
    Ok((reject, outputs, columns))
}

/// The table type a computed column lands as (cast when it differs).
pub(super) fn output_type(t: &DataType) -> Option<OutputType> {
    Some(match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            OutputType::Int64
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => OutputType::Float64,
        DataType::Boolean => OutputType::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => OutputType::String,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => OutputType::Timestamp,
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _)
            if matches!(output_type(item.data_type()), Some(OutputType::Int64 | OutputType::Float64)) =>
        {
            OutputType::Float64List
        }
        DataType::Dictionary(_, value) => output_type(value)?,
        _ => return None,
    })
}
