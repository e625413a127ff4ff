//! `detect`: the built-in detectors an action can use without code.
//!
//! The action's `when` table chooses one with `kind` and sets it:
//! - `threshold`: `column`, and `above` and/or `below`. Fires when the row's
//!   value is strictly above `above` or strictly below `below`.
//! - `change`: `column`, `factor` (> 1), `direction` (`spike`, `drop` or
//!   `both`, the default) and `min_previous` (default 1). Fires when the value
//!   is at least `factor` times the same group's value in the previous window
//!   (spike) or at most that divided by `factor` (drop). Without a previous
//!   window, or one below `min_previous`, there is nothing to compare and
//!   nothing fires.
//! - `match`: `field` and `any_of` (a list of strings or numbers), with
//!   `case_insensitive` (default false) for strings. Fires when the row's
//!   field equals one of them.
//!
//! A row without the column (or with null) fires nothing; a row whose column is not a number is refused with the
//! reason, like any bad record. The host checks the settings when the
//! pipeline starts, so a bad `when` table is a start-up error, not a flood of
//! refusals.

use serde_json::{Map, Value, json};
use sluice_guest::detect::{ACTION_KIND, Detect, Detector, ENVELOPE_KIND, Envelope};
use sluice_guest::{Descriptor, Reject};

pub struct Builtin;

impl Detector for Builtin {
    const DESCRIPTOR: Descriptor = Descriptor { name: "detect", version: "0.1.0", input_kind: ENVELOPE_KIND, output_kind: ACTION_KIND };

    fn detect(e: &Envelope) -> Result<Option<Value>, Reject> {
        match e.setting_str("kind")? {
            "threshold" => threshold(e),
            "change" => change(e),
            "match" => matches(e),
            other => Err(Reject::from(format!("unknown detector kind `{other}` (threshold, change or match)"))),
        }
    }
}

fn threshold(e: &Envelope) -> Result<Option<Value>, Reject> {
    let column = e.setting_str("column")?;
    let (above, below) = (e.setting_f64("above")?, e.setting_f64("below")?);
    let Some(value) = Envelope::field_f64(&e.record, column)? else { return Ok(None) };
    let reason = match (above, below) {
        (Some(a), _) if value > a => format!("{column} = {value} is above {a}"),
        (_, Some(b)) if value < b => format!("{column} = {value} is below {b}"),
        _ => return Ok(None),
    };
    let details = obj(json!({"column": column, "value": value, "above": above, "below": below}));
    Ok(Some(e.action("threshold", reason, details)))
}

fn change(e: &Envelope) -> Result<Option<Value>, Reject> {
    let column = e.setting_str("column")?;
    let factor = e.setting_f64("factor")?.ok_or_else(|| Reject::from("setting `factor` is missing"))?;
    let min_previous = e.setting_f64("min_previous")?.unwrap_or(1.0);
    let direction = match e.when.get("direction") {
        None => "both",
        Some(Value::String(d)) if ["spike", "drop", "both"].contains(&d.as_str()) => d.as_str(),
        Some(_) => return Err(Reject::from("setting `direction` must be \"spike\", \"drop\" or \"both\"")),
    };
    let Some(value) = Envelope::field_f64(&e.record, column)? else { return Ok(None) };
    let Some(previous) = e.previous.as_ref().map(|p| Envelope::field_f64(p, column)).transpose()?.flatten() else { return Ok(None) };
    if previous < min_previous {
        return Ok(None);
    }
    let (what, fired) = if value >= previous * factor && direction != "drop" {
        ("spike", true)
    } else if value <= previous / factor && direction != "spike" {
        ("drop", true)
    } else {
        ("", false)
    };
    if !fired {
        return Ok(None);
    }
    let reason = format!("{column} went from {previous} to {value} ({what}, factor {factor})");
    let details = obj(json!({"change": what, "column": column, "value": value, "previous_value": previous, "factor": factor}));
    Ok(Some(e.action("change", reason, details)))
}

fn matches(e: &Envelope) -> Result<Option<Value>, Reject> {
    let field = e.setting_str("field")?;
    let Some(Value::Array(any_of)) = e.when.get("any_of") else { return Err(Reject::from("setting `any_of` must be a list")) };
    let fold = matches!(e.when.get("case_insensitive"), Some(Value::Bool(true)));
    let value = match e.record.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let hit = any_of.iter().any(|want| match (want, value) {
        (Value::String(w), Value::String(v)) if fold => w.eq_ignore_ascii_case(v) || w.to_lowercase() == v.to_lowercase(),
        (Value::Number(w), Value::Number(v)) => w.as_f64() == v.as_f64(),
        (w, v) => w == v,
    });
    if !hit {
        return Ok(None);
    }
    let reason = format!("{field} = {value} is one of the listed values");
    Ok(Some(e.action("match", reason, obj(json!({"field": field, "value": value})))))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => Map::new(),
    }
}

sluice_guest::export_transform!(sluice_guest::detect::Detect<Builtin>);

/// The native form, for the host's tests and for checking settings.
pub type Native = Detect<Builtin>;

#[cfg(test)]
mod tests;
