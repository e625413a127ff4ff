//! The `input` table of a SQL stage: the columns it reads, decoded from each
//! record's JSON by the host (the same decoder 0.2.0 components get), as Arrow.

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_guest::columns::{ColumnBuf, InputType, ValueKind};
use std::fmt::Write;
use std::sync::Arc;

/// The SQL type of an input column as the statement's `CREATE TABLE input` names it.
pub fn declared_type(name: &str, sql_type: &str) -> Result<InputType, String> {
    let t = sql_type.trim().to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    Ok(match base {
        "bigint" | "int" | "integer" | "int64" | "long" | "smallint" | "tinyint" => InputType::Int64,
        "double" | "float" | "real" | "float64" | "decimal" | "numeric" => InputType::Float64,
        "boolean" | "bool" => InputType::Boolean,
        "varchar" | "text" | "string" | "char" | "character" => InputType::String,
        "timestamp" | "timestamptz" => InputType::Timestamp,
        "json" => InputType::Any,
        _ => {
            return Err(format!(
                "input column `{name}` is declared {sql_type}; declare BIGINT, DOUBLE, BOOLEAN, VARCHAR, TIMESTAMP or JSON (any JSON value, as its JSON text)"
            ));
        }
    })
}

/// The Arrow type an input column has in the `input` table.
pub fn arrow_type(t: InputType) -> DataType {
    match t {
        InputType::Int64 => DataType::Int64,
        InputType::Float64 => DataType::Float64,
        InputType::Boolean => DataType::Boolean,
        InputType::String | InputType::Any => DataType::Utf8,
        InputType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
    }
}

pub fn schema(fields: &[(String, InputType)]) -> SchemaRef {
    Arc::new(Schema::new(fields.iter().map(|(n, t)| Field::new(n, arrow_type(*t), true)).collect::<Vec<_>>()))
}

/// The decoded columns as the `input` table's batch.
pub fn batch(schema: &SchemaRef, fields: &[(String, InputType)], columns: Vec<ColumnBuf>, rows: usize) -> Result<RecordBatch, String> {
    let arrays = fields.iter().zip(columns).map(|((_, t), c)| array(*t, c, rows)).collect::<Result<Vec<ArrayRef>, String>>()?;
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &options).map_err(|e| e.to_string())
}

fn nulls(validity: Vec<u8>, rows: usize) -> Option<NullBuffer> {
    (!validity.is_empty()).then(|| NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(validity), 0, rows)))
}

/// One decoded column as Arrow. The decoder fills exactly the buffers its type uses.
fn array(t: InputType, c: ColumnBuf, rows: usize) -> Result<ArrayRef, String> {
    let err = |e: arrow_schema::ArrowError| e.to_string();
    Ok(match t {
        InputType::Int64 => Arc::new(Int64Array::try_new(ScalarBuffer::from(c.ints), nulls(c.validity, rows)).map_err(err)?),
        InputType::Timestamp => {
            Arc::new(TimestampMicrosecondArray::try_new(ScalarBuffer::from(c.ints), nulls(c.validity, rows)).map_err(err)?.with_timezone("+00:00"))
        }
        InputType::Float64 => Arc::new(Float64Array::try_new(ScalarBuffer::from(c.floats), nulls(c.validity, rows)).map_err(err)?),
        InputType::Boolean => {
            let values: BooleanBuffer = c.ints.iter().map(|&v| v == 1).collect();
            Arc::new(BooleanArray::new(values, nulls(c.validity, rows)))
        }
        InputType::String => {
            let offsets = OffsetBuffer::new(ScalarBuffer::from(c.offsets.iter().map(|&o| o as i32).collect::<Vec<i32>>()));
            Arc::new(StringArray::try_new(offsets, Buffer::from_vec(c.bytes), nulls(c.validity, rows)).map_err(err)?)
        }
        InputType::Any => Arc::new(json_text(&c)),
    })
}

/// An `any` column as the JSON text of each value (`"26k"` with its quotes,
/// `437`, `4.5`, `true`, `null`; `{}` for any object or array), null where the
/// field is missing: what `json_type`, `json_str`, `json_int` read.
fn json_text(c: &ColumnBuf) -> StringArray {
    let mut b = arrow_array::builder::StringBuilder::with_capacity(c.kinds.len(), c.bytes.len() + 8 * c.kinds.len());
    let mut text = String::new();
    for (i, &k) in c.kinds.iter().enumerate() {
        text.clear();
        match ValueKind::from_u8(k) {
            None | Some(ValueKind::Missing) => {
                b.append_null();
                continue;
            }
            Some(ValueKind::Null) => text.push_str("null"),
            Some(ValueKind::Boolean) => text.push_str(if c.ints[i] == 1 { "true" } else { "false" }),
            Some(ValueKind::Integer) => _ = write!(text, "{}", c.ints[i]),
            // `{:?}` always writes a fraction or an exponent, so the text stays a float.
            Some(ValueKind::Float) => _ = write!(text, "{:?}", c.floats[i]),
            Some(ValueKind::String) => {
                let s = std::str::from_utf8(&c.bytes[c.offsets[i] as usize..c.offsets[i + 1] as usize]).unwrap_or_default();
                text = serde_json::to_string(s).unwrap_or_default();
            }
            Some(ValueKind::Nested) => text.push_str("{}"),
        }
        b.append_value(&text);
    }
    b.finish()
}
