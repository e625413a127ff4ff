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
        string_fn("json_type", |v| kind(v).map(Kind::name)),
        string_fn("json_str", json_str),
        string_fn::<i64>("json_int", |v| matches!(kind(v), Some(Kind::Integer)).then(|| v.parse().ok()).flatten()),
        string_fn("json_to_int", json_to_int),
        string_fn::<f64>("json_float", |v| matches!(kind(v), Some(Kind::Integer | Kind::Float)).then(|| v.parse().ok()).flatten()),
        string_fn("parse_count", sluice_guest::text::parse_count),
        null_if_blank(),
        string_fn("trim_whitespace", |s| Some(s.trim().to_owned())),
        string_fn("parse_timestamp", |s| sluice_guest::time::parse_timestamp_ms(s).and_then(|ms| ms.checked_mul(1000)).map(Micros)),
        integer_problem(),
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

/// Apply `f` to each value of the first argument (`None` for NULL).
fn map_strings<B, T>(args: &[ColumnarValue], mut builder: B, push: impl Fn(&mut B, Option<T>), f: impl Fn(Option<&str>) -> Option<T>) -> Result<ColumnarValue>
where
    B: arrow_array::builder::ArrayBuilder,
{
    let scalar = matches!(args[0], ColumnarValue::Scalar(_));
    let input = args[0].to_array(1)?;
    let input = arrow_cast::cast(&input, &DataType::Utf8)?;
    let strings = input.as_string::<i32>();
    for i in 0..strings.len() {
        push(&mut builder, f(strings.is_valid(i).then(|| strings.value(i))));
    }
    let out: ArrayRef = builder.finish();
    Ok(if scalar { ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?) } else { ColumnarValue::Array(out) })
}

/// What a function of one string returns, as an Arrow column.
trait Returned: Sized {
    type Builder: arrow_array::builder::ArrayBuilder;
    fn data_type() -> DataType;
    fn builder() -> Self::Builder;
    fn push(b: &mut Self::Builder, v: Option<Self>);
}

impl Returned for String {
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder() -> StringBuilder {
        StringBuilder::new()
    }
    fn push(b: &mut StringBuilder, v: Option<String>) {
        b.append_option(v)
    }
}

impl Returned for i64 {
    type Builder = Int64Builder;
    fn data_type() -> DataType {
        DataType::Int64
    }
    fn builder() -> Int64Builder {
        Int64Builder::new()
    }
    fn push(b: &mut Int64Builder, v: Option<i64>) {
        b.append_option(v)
    }
}

impl Returned for f64 {
    type Builder = arrow_array::builder::Float64Builder;
    fn data_type() -> DataType {
        DataType::Float64
    }
    fn builder() -> Self::Builder {
        arrow_array::builder::Float64Builder::new()
    }
    fn push(b: &mut Self::Builder, v: Option<f64>) {
        b.append_option(v)
    }
}

/// Microseconds since the epoch, returned as a UTC timestamp.
struct Micros(i64);

impl Returned for Micros {
    type Builder = TimestampMicrosecondBuilder;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
    }
    fn builder() -> TimestampMicrosecondBuilder {
        TimestampMicrosecondBuilder::new().with_timezone("+00:00")
    }
    fn push(b: &mut TimestampMicrosecondBuilder, v: Option<Micros>) {
        b.append_option(v.map(|m| m.0))
    }
}

/// A deterministic function of one string.
fn string_fn<T: Returned + 'static>(name: &str, f: impl Fn(&str) -> Option<T> + Send + Sync + 'static) -> ScalarUDF {
    let f = Arc::new(f);
    create_udf(
        name,
        vec![DataType::Utf8],
        T::data_type(),
        Volatility::Immutable,
        // NULL in, NULL out.
        Arc::new(move |args| map_strings(args, T::builder(), T::push, |s| s.and_then(|s| f(s)))),
    )
}

/// `null_if_blank(s)`: the same strings, NULL where one is empty or all
/// whitespace. Only the validity changes: the text is not copied (cleaning
/// passes every free-text column through it).
fn null_if_blank() -> ScalarUDF {
    create_udf(
        "null_if_blank",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args| {
            let ColumnarValue::Array(a) = &args[0] else {
                return map_strings(args, StringBuilder::new(), <String as Returned>::push, |s| s.filter(|s| !s.trim().is_empty()).map(str::to_owned));
            };
            let a = arrow_cast::cast(a, &DataType::Utf8)?;
            let s = a.as_string::<i32>();
            let filled: arrow_buffer::BooleanBuffer = (0..s.len()).map(|i| !s.value(i).trim().is_empty()).collect();
            let nulls = arrow_buffer::NullBuffer::union(s.nulls(), Some(&arrow_buffer::NullBuffer::new(filled)));
            Ok(ColumnarValue::Array(Arc::new(arrow_array::StringArray::new(s.offsets().clone(), s.values().clone(), nulls))))
        }),
    )
}

/// `integer_problem(j, 'field')`: why a JSON-typed value is not an integer
/// (`field `ind` is missing`, `… is not an integer (a string)`), NULL when it is
/// one: the reason the built-in cleaning gives a record without a row id.
fn integer_problem() -> ScalarUDF {
    create_udf(
        "integer_problem",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args| {
            let ColumnarValue::Scalar(name) = &args[1] else {
                return Err(datafusion::common::DataFusionError::Plan("integer_problem(value, 'field name'): the name is a literal".into()));
            };
            let name = name.to_string();
            map_strings(&args[..1], StringBuilder::new(), <String as Returned>::push, |v| {
                let Some(v) = v else { return Some(format!("field `{name}` is missing")) };
                let what = match kind(v)? {
                    Kind::Integer => return None,
                    Kind::Null => "null",
                    Kind::Boolean => "a boolean",
                    Kind::Float => "a float",
                    Kind::String => "a string",
                    Kind::Nested => "an array or object",
                };
                Some(format!("field `{name}` is not an integer ({what})"))
            })
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
}
