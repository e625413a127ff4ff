//! What a transform stage produces: JSON records (contract 0.1.0) or typed
//! columns (0.2.0), and the JSON rendering of columns for whatever reads records.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use sluice_guest::BatchBuf;
use sluice_guest::json::JsonWriter;
use std::borrow::Cow;

/// Rows a 0.2.0 transform wrote: the typed columns, and each row's key and
/// timestamp (those of the input record it came from).
#[derive(Debug, Clone)]
pub struct ColumnRows {
    pub batch: RecordBatch,
    /// Keys and timestamps per row; its values are empty.
    pub meta: BatchBuf,
}

impl ColumnRows {
    /// Rows whose row `i` came from input record `origins[i]`: each takes that
    /// record's key and timestamp.
    pub(crate) fn from_input(batch: RecordBatch, input: &sluice_guest::BatchRef<'_>, origins: &[u32]) -> Self {
        let mut meta = BatchBuf::with_capacity(origins.len(), 0);
        for &o in origins {
            let r = input.get(o as usize);
            meta.push(b"", r.key, r.timestamp);
        }
        ColumnRows { batch, meta }
    }
}

/// The output of a stage.
#[derive(Debug, Clone)]
pub enum StageRows {
    /// One JSON value per record (0.1.0 transforms, or no transform at all).
    Json(BatchBuf),
    /// Typed columns (0.2.0 transforms): they go to the table without JSON.
    Columns(ColumnRows),
}

impl Default for StageRows {
    fn default() -> Self {
        StageRows::Json(BatchBuf::default())
    }
}

impl StageRows {
    pub fn len(&self) -> usize {
        match self {
            StageRows::Json(b) => b.len(),
            StageRows::Columns(c) => c.batch.num_rows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows as JSON records, rendered when they are columns: for what reads
    /// records (a next stage of contract 0.1.0, an aggregate, samples, shadow
    /// comparisons, `transform run`). The hot path to the table does not call it.
    pub fn to_json(&self) -> Cow<'_, BatchBuf> {
        match self {
            StageRows::Json(b) => Cow::Borrowed(b),
            StageRows::Columns(c) => Cow::Owned(render_json(c)),
        }
    }
}

/// Each row as a JSON object, the bytes a 0.1.0 transform writing the same
/// values with `JsonWriter` gives (timestamps RFC 3339 UTC to the millisecond).
pub fn render_json(rows: &ColumnRows) -> BatchBuf {
    let batch = &rows.batch;
    let mut out = BatchBuf::with_capacity(batch.num_rows(), batch.get_array_memory_size());
    let meta = rows.meta.as_ref();
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        let mut value = Vec::with_capacity(256);
        let mut w = JsonWriter::object(&mut value);
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = field.name().as_str();
            let valid = col.is_valid(row);
            match col.data_type() {
                DataType::Int64 => w.int(name, valid.then(|| col.as_primitive::<Int64Type>().value(row))),
                DataType::Float64 => w.float(name, valid.then(|| col.as_primitive::<Float64Type>().value(row))),
                DataType::Boolean => w.bool(name, valid.then(|| col.as_boolean().value(row))),
                DataType::Utf8 => w.str(name, valid.then(|| col.as_string::<i32>().value(row))),
                DataType::Timestamp(_, _) => {
                    text.clear();
                    if valid {
                        let us = col.as_primitive::<TimestampMicrosecondType>().value(row);
                        sluice_guest::time::format_rfc3339_ms(us.div_euclid(1000), &mut text);
                    }
                    w.str(name, valid.then_some(text.as_str()))
                }
                DataType::List(_) => {
                    let items = valid.then(|| col.as_list::<i32>().value(row));
                    let floats = items.as_ref().map(|a| a.as_primitive::<Float64Type>().values().to_vec());
                    w.floats(name, floats.as_deref())
                }
                // The host builds only the types above (see `columnar::arrow_type`).
                _ => w.str(name, None),
            };
        }
        w.end();
        let r = meta.get(row);
        out.push(&value, r.key, r.timestamp);
    }
    out
}
