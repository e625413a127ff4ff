//! The functions sluice adds to SQL stages: what the cleaning rules need and
//! plain SQL cannot say exactly (a JSON value's type, the `26k` follower
//! counts, Unicode blanks, the timestamp formats the built-ins accept).
//!
//! All are deterministic (`Immutable`): a replay of a batch gives the same rows.

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use std::sync::Arc;

/// Every function, for registering with a session and for the docs' list.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        text_fn("json_type", |v| kind(v).map(Kind::name)),
        text_fn("json_str", json_str),
        int_fn("json_int", |v| matches!(kind(v), Some(Kind::Integer)).then(|| v.parse().ok()).flatten()),
        int_fn("json_to_int", json_to_int),
        float_fn("json_float", |v| matches!(kind(v), Some(Kind::Integer | Kind::Float)).then(|| v.parse().ok()).flatten()),
        int_fn("parse_count", parse_count),
        text_fn("null_if_blank", |s| (!s.trim().is_empty()).then(|| s.to_owned())),
        text_fn("trim_whitespace", |s| Some(s.trim().to_owned())),
        timestamp_fn("parse_timestamp", |s| sluice_guest::time::parse_timestamp_ms(s).and_then(|ms| ms.checked_mul(1000))),
    ]
}

/// The kind of a JSON value as a JSON-typed column holds it (its JSON text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Integer,
    Float,
    String,
    Nested,
}

impl Kind {
    fn name(self) -> String {
        match self {
            Kind::Null => "null",
            Kind::Boolean => "boolean",
            Kind::Integer => "integer",
            Kind::Float => "float",
            Kind::String => "string",
            Kind::Nested => "nested",
        }
        .to_owned()
    }
}

/// The kind of a JSON text as `columns::json_text` writes it; `None` for text it never writes.
fn kind(v: &str) -> Option<Kind> {
    Some(match v.as_bytes().first()? {
        b'"' => Kind::String,
        b'n' => Kind::Null,
        b't' | b'f' => Kind::Boolean,
        b'{' | b'[' => Kind::Nested,
        b'-' | b'0'..=b'9' if v.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) => Kind::Float,
        b'-' | b'0'..=b'9' => Kind::Integer,
        _ => return None,
    })
}

fn json_str(v: &str) -> Option<String> {
    match kind(v)? {
        Kind::String => serde_json::from_str::<String>(v).ok(),
        _ => None,
    }
}

/// An integer from a JSON integer, an integral float, a string of decimal
/// digits or a boolean: the lenient reading the built-in cleaning uses for ages.
fn json_to_int(v: &str) -> Option<i64> {
    match kind(v)? {
        Kind::Integer => v.parse().ok(),
        Kind::Float => v.parse::<f64>().ok().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64),
        Kind::String => json_str(v)?.trim().parse().ok(),
        Kind::Boolean => Some(i64::from(v == "true")),
        Kind::Null | Kind::Nested => None,
    }
}

/// "437" → 437, "26k" → 26000, "6M" → 6000000, "1.5k" → 1500 (also `b` for
/// billions); anything else → null. The rule of SPEC section 5, as clean-pin has it.
pub fn parse_count(s: &str) -> Option<i64> {
    let s = s.trim();
    let (number, multiplier) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1_000.0),
        b'm' | b'M' => (&s[..s.len() - 1], 1_000_000.0),
        b'b' | b'B' => (&s[..s.len() - 1], 1_000_000_000.0),
        _ => return s.parse::<i64>().ok().filter(|n| *n >= 0),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value = number.parse::<f64>().ok()? * multiplier;
    (value.is_finite() && value < 9.0e18).then(|| value.round() as i64)
}

/// Apply `f` to each string of the one argument, nulls staying null.
fn map_strings<B, T>(args: &[ColumnarValue], mut builder: B, push: impl Fn(&mut B, Option<T>), f: impl Fn(&str) -> Option<T>) -> Result<ColumnarValue>
where
    B: arrow_array::builder::ArrayBuilder,
{
    let scalar = matches!(args[0], ColumnarValue::Scalar(_));
    let input = args[0].to_array(1)?;
    let input = arrow_cast::cast(&input, &DataType::Utf8)?;
    let strings = input.as_string::<i32>();
    for i in 0..strings.len() {
        push(&mut builder, if strings.is_valid(i) { f(strings.value(i)) } else { None });
    }
    let out: ArrayRef = builder.finish();
    Ok(if scalar { ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?) } else { ColumnarValue::Array(out) })
}

fn text_fn(name: &str, f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> ScalarUDF {
    let f = Arc::new(f);
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args| map_strings(args, StringBuilder::new(), |b, v| b.append_option(v), |s| f(s))),
    )
}

fn int_fn(name: &str, f: impl Fn(&str) -> Option<i64> + Send + Sync + 'static) -> ScalarUDF {
    let f = Arc::new(f);
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(move |args| map_strings(args, Int64Builder::new(), |b, v| b.append_option(v), |s| f(s))),
    )
}

fn float_fn(name: &str, f: impl Fn(&str) -> Option<f64> + Send + Sync + 'static) -> ScalarUDF {
    let f = Arc::new(f);
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(move |args| map_strings(args, arrow_array::builder::Float64Builder::new(), |b, v| b.append_option(v), |s| f(s))),
    )
}

fn timestamp_fn(name: &str, f: impl Fn(&str) -> Option<i64> + Send + Sync + 'static) -> ScalarUDF {
    let f = Arc::new(f);
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    create_udf(
        name,
        vec![DataType::Utf8],
        utc,
        Volatility::Immutable,
        Arc::new(move |args| {
            let builder = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
            map_strings(args, builder, |b, v| b.append_option(v), |s| f(s))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_kinds_and_values_read_as_the_cleaning_rules_read_fields() {
        let kinds: Vec<Option<Kind>> = ["\"26k\"", "437", "-3", "4.5", "1e3", "true", "null", "{}", ""].iter().map(|v| kind(v)).collect();
        use Kind::*;
        assert_eq!(kinds, vec![Some(String), Some(Integer), Some(Integer), Some(Float), Some(Float), Some(Boolean), Some(Null), Some(Nested), None]);
        assert_eq!(json_str("\"a \\\"b\\\"\""), Some("a \"b\"".into()));
        assert_eq!(json_str("437"), None);
        assert_eq!(
            [json_to_int("\" 42 \""), json_to_int("42.0"), json_to_int("true"), json_to_int("4.5"), json_to_int("null")],
            [Some(42), Some(42), Some(1), None, None]
        );
    }

    #[test]
    fn follower_counts_follow_the_spec() {
        let got: Vec<Option<i64>> =
            ["437", "26k", "6M", "1.5k", " 2K ", "User Info Error", "-5", "1e3", "k", "", "3b"].iter().map(|s| parse_count(s)).collect();
        assert_eq!(got, vec![Some(437), Some(26_000), Some(6_000_000), Some(1_500), Some(2_000), None, None, None, None, None, Some(3_000_000_000)]);
    }
}
