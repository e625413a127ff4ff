//! Joins in SQL: `FROM "t.pin" AS pin JOIN "t.geo" AS geo USING (ind) …` names
//! the pipeline's join — each table a topic, each alias a side, the USING or ON
//! columns the keys — which runs on the join workers (join topic, waiting
//! sides, expiry, dedupe, checkpointed state). The rest of the statement then
//! reads the joined rows as its `input`: `pin.category` is the row's
//! `category`, the key is the first side's key field.

use super::error::SqlError;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, SelectItem, SetExpr, Statement as SqlStatement, TableFactor,
    visit_expressions_mut,
};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// The join a statement's FROM names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSpec {
    pub sides: Vec<JoinSide>,
    /// `LEFT JOIN`s: a left row whose partners do not come is emitted alone.
    pub left: bool,
    /// The joined row's key field: the first side's key.
    pub key_as: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSide {
    /// The topic the table names.
    pub topic: String,
    /// The table's alias (or the topic's last dot-separated part).
    pub name: String,
    /// The field its records are joined on.
    pub key: String,
}

fn object_name(n: &ObjectName) -> String {
    n.0.iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// When the statement's FROM joins tables: the join, and the statement
/// rewritten to read the joined rows from `input`. `None` for `FROM input`.
pub(super) fn take_join(statement: &mut Statement) -> Result<Option<JoinSpec>, SqlError> {
    let Statement::Statement(s) = statement else { return Ok(None) };
    let SqlStatement::Query(query) = s.as_mut() else { return Ok(None) };
    let SetExpr::Select(select) = query.body.as_mut() else { return Ok(None) };
    let [from] = select.from.as_slice() else {
        return match select.from.len() {
            0 => Ok(None),
            _ => Err(SqlError::new("tables listed with commas: join them with `JOIN … USING (key)` or `ON a.key = b.key`")),
        };
    };
    if from.joins.is_empty() {
        return Ok(None);
    }
    let mut sides = vec![side(&from.relation)?];
    let mut keys: Vec<Option<String>> = vec![None];
    let mut left = None;
    for join in &from.joins {
        sides.push(side(&join.relation)?);
        keys.push(None);
        let (is_left, constraint) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (false, c),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (true, c),
            other => {
                return Err(SqlError::new(format!("`{other:?}`: a stream join is INNER (every side) or LEFT (the first side, with any others that come)")));
            }
        };
        if *left.get_or_insert(is_left) != is_left {
            return Err(SqlError::new("mix of INNER and LEFT joins: a stream join is all INNER or all LEFT"));
        }
        let new = sides.len() - 1;
        match constraint {
            JoinConstraint::Using(cols) => {
                let [col] = cols.as_slice() else { return Err(SqlError::new("USING takes one key column: a stream join has one key")) };
                let k = object_name(col);
                for key in keys.iter_mut() {
                    set_key(key, &k)?;
                }
            }
            JoinConstraint::On(Expr::BinaryOp { left: a, op: BinaryOperator::Eq, right: b }) => {
                let (Some((sa, ka)), Some((sb, kb))) = (qualified(a, &sides), qualified(b, &sides)) else {
                    return Err(SqlError::new("ON compares two sides' key columns: `ON a.key = b.key`"));
                };
                if sa != new && sb != new {
                    return Err(SqlError::new("each JOIN's ON names the table it joins"));
                }
                set_key(&mut keys[sa], &ka)?;
                set_key(&mut keys[sb], &kb)?;
            }
            _ => return Err(SqlError::new("a stream join needs `USING (key)` or `ON a.key = b.key`: records meet by key")),
        }
    }
    let sides: Vec<JoinSide> = sides
        .into_iter()
        .zip(keys)
        .map(|((topic, name), key)| key.map(|key| JoinSide { topic, name, key }))
        .collect::<Option<_>>()
        .ok_or_else(|| SqlError::new("every side of a stream join needs its key in USING or ON"))?;
    if let Some((i, n)) = sides.iter().enumerate().find_map(|(i, s)| sides[..i].iter().any(|t| t.name.eq_ignore_ascii_case(&s.name)).then_some((i, &s.name))) {
        return Err(SqlError::new(format!("two sides are called `{n}` (side {i}): give each table its own alias")));
    }
    let key_as = sides[0].key.clone();
    rewrite_columns(select, &sides, &key_as)?;
    let input = datafusion::sql::parser::DFParser::parse_sql("SELECT 1 FROM input").map_err(SqlError::from_datafusion)?;
    let Some(Statement::Statement(one)) = input.into_iter().next() else { unreachable!("a SELECT parses") };
    let SqlStatement::Query(q) = *one else { unreachable!("a SELECT is a query") };
    let SetExpr::Select(s) = *q.body else { unreachable!("a SELECT is a select") };
    select.from = s.from;
    Ok(Some(JoinSpec { sides, left: left.unwrap_or(false), key_as }))
}

/// A table of the FROM clause: (topic, side name).
fn side(t: &TableFactor) -> Result<(String, String), SqlError> {
    let TableFactor::Table { name, alias, .. } = t else {
        return Err(SqlError::new(format!("`{t}`: a stream join joins topics, named as tables")));
    };
    let topic = object_name(name);
    let side = alias.as_ref().map(|a| a.name.value.clone()).unwrap_or_else(|| topic.rsplit('.').next().unwrap_or(&topic).to_owned());
    Ok((topic, side))
}

fn set_key(slot: &mut Option<String>, key: &str) -> Result<(), SqlError> {
    match slot {
        Some(k) if k != key => Err(SqlError::new(format!("a side joins on `{k}` and on `{key}`: a stream join has one key per side"))),
        _ => {
            *slot = Some(key.to_owned());
            Ok(())
        }
    }
}

/// `side.field` → (side index, field).
fn qualified(e: &Expr, sides: &[(String, String)]) -> Option<(usize, String)> {
    let Expr::CompoundIdentifier(parts) = e else { return None };
    let [q, f] = parts.as_slice() else { return None };
    let i = sides.iter().position(|(topic, name)| name.eq_ignore_ascii_case(&q.value) || *topic == q.value)?;
    Some((i, f.value.clone()))
}

/// `side.field` → `field` of the joined row (`side.key` → the row's key);
/// two sides' fields of one name are refused: the row renames them.
fn rewrite_columns(select: &mut datafusion::sql::sqlparser::ast::Select, sides: &[JoinSide], key_as: &str) -> Result<(), SqlError> {
    if select.projection.iter().any(|p| matches!(p, SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(..))) {
        return Err(SqlError::new("`*` over a join is refused: name the columns the statement writes"));
    }
    let named: Vec<(String, String)> = sides.iter().map(|s| (s.topic.clone(), s.name.clone())).collect();
    let mut from_side: BTreeMap<String, usize> = BTreeMap::new();
    let mut problem = None;
    let _ = visit_expressions_mut(select, |e: &mut Expr| {
        if let Some((i, f)) = qualified(e, &named) {
            let field = if f == sides[i].key { key_as.to_owned() } else { f };
            if let Some(&j) = from_side.get(&field).filter(|&&j| j != i && field != key_as) {
                problem = Some(format!(
                    "`{field}` is read from {} and {}: the joined row names them `{}_{field}` and `{}_{field}`; refer to those",
                    sides[j].name, sides[i].name, sides[j].name, sides[i].name
                ));
                return ControlFlow::Break(());
            }
            from_side.insert(field.clone(), i);
            // The field's own identifier (its quotes, its place in the text), renamed.
            let Expr::CompoundIdentifier(parts) = e else { unreachable!("`qualified` matched a compound identifier") };
            let ident = parts.last().cloned().unwrap_or_else(|| Ident::new(""));
            *e = Expr::Identifier(Ident { value: field, ..ident });
        }
        ControlFlow::Continue(())
    });
    match problem {
        Some(p) => Err(SqlError::new(p)),
        None => Ok(()),
    }
}
