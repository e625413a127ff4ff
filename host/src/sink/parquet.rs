//! JSON records → Arrow → Parquet, with optional Hive-style date partitions.

use crate::store::ObjectWriter;
use arrow_array::{Array, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow_json::ReaderBuilder;
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sluice_guest::BatchRef;
use std::collections::BTreeMap;

/// A row group is closed at this many rows or at [`ROW_GROUP_BYTES`],
/// whichever comes first.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Encoded (compressed) bytes at which a row group is closed. The open row group
/// is held in memory until then, once per open file, so this (not the row count,
/// whose size depends on how wide the rows are) is what bounds the writer's memory.
/// Measured on 1M pins over 3 partitions: without it the 128k-row groups held
/// about 20 MiB each and peak RSS was 165–170 MiB; with 8 MiB, 134–140 MiB at the
/// same throughput (`cargo bench -p sluice --bench pipeline`).
const ROW_GROUP_BYTES: usize = 8 << 20;

/// Decode a batch of JSON objects into Arrow. Records that do not fit the
/// schema are returned as `(index, reason)`; the rest decode normally.
pub fn decode_json(schema: &SchemaRef, values: &BatchRef<'_>) -> (Option<RecordBatch>, Vec<(u32, String)>) {
    match decode_all(schema, values.values, values.len()) {
        Ok(batch) => (batch, Vec::new()),
        // Slow path: find the records that break the schema, one by one.
        Err(_) => {
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for (i, r) in values.iter().enumerate() {
                match decode_all(schema, r.value, 1) {
                    Ok(Some(b)) => good.push(b),
                    Ok(None) => bad.push((i as u32, "output record is empty".to_string())),
                    Err(e) => bad.push((i as u32, format!("output does not match the table schema: {e}"))),
                }
            }
            let batch = if good.is_empty() { None } else { arrow_select::concat::concat_batches(schema, &good).ok() };
            (batch, bad)
        }
    }
}

/// Fit typed columns (a 0.2.0 transform's output) to the table schema by
/// name: no JSON in between. Rows that cannot fit (a null in a required
/// column) are returned as `(index, reason)`; a column of the wrong type, or a
/// required one the output lacks, refuses every row. Columns the table does
/// not have are dropped, as JSON decoding ignores unknown fields.
pub fn fit_columns(schema: &SchemaRef, batch: &RecordBatch) -> (Option<RecordBatch>, Vec<(u32, String)>) {
    let rows = batch.num_rows();
    let mut refuse: Vec<Option<String>> = vec![None; rows];
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            found => {
                let why = match found {
                    Some(c) => format!("output column `{}` is {}, the table's is {}", field.name(), c.data_type(), field.data_type()),
                    None if !field.is_nullable() => format!("output has no `{}`, which the table requires", field.name()),
                    None => {
                        columns.push(arrow_array::new_null_array(field.data_type(), rows));
                        continue;
                    }
                };
                return (None, (0..rows as u32).map(|i| (i, format!("output does not match the table schema: {why}"))).collect());
            }
        };
        if !field.is_nullable() && column.null_count() > 0 {
            for (i, slot) in refuse.iter_mut().enumerate() {
                if column.is_null(i) && slot.is_none() {
                    *slot = Some(format!("output does not match the table schema: `{}` is null, and the table requires it", field.name()));
                }
            }
        }
        columns.push(column);
    }
    let misfits: Vec<(u32, String)> = refuse.iter().enumerate().filter_map(|(i, r)| r.clone().map(|r| (i as u32, r))).collect();
    // Schema metadata (dictionary hints) comes from the table; the data from the output.
    let fitted = match RecordBatch::try_new(schema.clone(), columns) {
        Ok(b) => b,
        Err(e) => return (None, (0..rows as u32).map(|i| (i, format!("output does not match the table schema: {e}"))).collect()),
    };
    if misfits.is_empty() {
        return ((rows > 0).then_some(fitted), misfits);
    }
    let keep: arrow_array::BooleanArray = refuse.iter().map(|r| Some(r.is_none())).collect();
    match arrow_select::filter::filter_record_batch(&fitted, &keep) {
        Ok(b) => ((b.num_rows() > 0).then_some(b), misfits),
        Err(e) => (None, (0..rows as u32).map(|i| (i, format!("output does not match the table schema: {e}"))).collect()),
    }
}

fn decode_all(schema: &SchemaRef, bytes: &[u8], rows: usize) -> Result<Option<RecordBatch>, arrow_schema::ArrowError> {
    let mut decoder = ReaderBuilder::new(schema.clone()).with_batch_size(rows.max(1)).build_decoder()?;
    let mut rest = bytes;
    let mut parts = Vec::new();
    while !rest.is_empty() {
        let used = decoder.decode(rest)?;
        rest = &rest[used..];
        if used == 0 || !rest.is_empty() {
            if let Some(b) = decoder.flush()? {
                parts.push(b);
            }
            if used == 0 {
                break;
            }
        }
    }
    if let Some(b) = decoder.flush()? {
        parts.push(b);
    }
    let decoded: usize = parts.iter().map(|b| b.num_rows()).sum();
    if decoded != rows {
        return Err(arrow_schema::ArrowError::JsonError(format!("expected {rows} records, decoded {decoded}")));
    }
    match parts.len() {
        0 => Ok(None),
        1 => Ok(parts.pop()),
        _ => arrow_select::concat::concat_batches(schema, &parts).map(Some),
    }
}

/// Split rows by the UTC date of a timestamp column: `dt=YYYY-MM-DD`
/// (`dt=__HIVE_DEFAULT_PARTITION__` for nulls, as Hive names them).
pub fn split_by_date(batch: &RecordBatch, column: &str) -> Result<Vec<(String, RecordBatch)>, String> {
    let idx = batch.schema().index_of(column).map_err(|_| format!("partition column `{column}` is not in the table"))?;
    let col = batch.column(idx);
    let ts = match col.data_type() {
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => {
            col.as_any().downcast_ref::<TimestampMicrosecondArray>().ok_or("timestamp column has an unexpected layout")?
        }
        other => return Err(format!("partition column `{column}` is {other}, not a timestamp")),
    };
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut day = String::with_capacity(24);
    for i in 0..ts.len() {
        let key = if ts.is_null(i) {
            "dt=__HIVE_DEFAULT_PARTITION__".to_string()
        } else {
            day.clear();
            sluice_guest::time::format_rfc3339_ms(ts.value(i).div_euclid(1000), &mut day);
            format!("dt={}", &day[..10])
        };
        groups.entry(key).or_default().push(i as u32);
    }
    if groups.len() == 1 {
        let (k, _) = groups.into_iter().next().expect("one group");
        return Ok(vec![(k, batch.clone())]);
    }
    groups
        .into_iter()
        .map(|(k, rows)| arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows)).map(|b| (k, b)).map_err(|e| e.to_string()))
        .collect()
}

/// One Parquet object being written.
pub struct ParquetObject {
    writer: ArrowWriter<Box<dyn ObjectWriter>>,
}

impl ParquetObject {
    pub fn new(out: Box<dyn ObjectWriter>, schema: SchemaRef) -> Result<Self, String> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES));
        for f in schema.fields() {
            if f.metadata().get(super::schema::DICTIONARY_KEY).is_some_and(|v| v == "false") {
                props = props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
            }
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(out, schema, Some(props)).map_err(|e| e.to_string())?;
        Ok(ParquetObject { writer })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.writer.write(batch).map_err(|e| e.to_string())
    }

    /// Bytes encoded so far, including what is still buffered in the open row group.
    pub fn bytes(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Write the footer, with `lineage` as key-value metadata, and return the
    /// underlying object, ready to finish.
    pub fn close(mut self, lineage: &[(String, String)]) -> Result<Box<dyn ObjectWriter>, String> {
        for (k, v) in lineage {
            self.writer.append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
        }
        self.writer.into_inner().map_err(|e| e.to_string())
    }
}

/// `batch` with `schema`'s columns by name: missing nullable ones null, types cast (timestamp zones spelled differently).
pub fn align(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow_cast::cast(c, f.data_type()).map_err(|e| format!("column `{}`: {e}", f.name())),
            None if f.is_nullable() => Ok(arrow_array::new_null_array(f.data_type(), batch.num_rows())),
            None => Err(format!("column `{}` is missing", f.name())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectStore;
    use crate::store::local::LocalStore;
    use arrow_array::StringArray;
    use arrow_schema::{Field, Schema};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use std::sync::Arc;

    #[test]
    fn wide_rows_close_row_groups_by_bytes_before_the_row_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path()).expect("store");
        let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false)]));
        let mut object = ParquetObject::new(store.create("t.parquet").expect("create"), schema.clone()).expect("writer");
        // 24,000 rows of 1 KiB each: far below the row cap, three times the byte
        // cap. Pseudo-random hex, so Snappy cannot shrink it below the cap.
        let (batches, rows_per_batch) = (24, 1000);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut text = move || {
            (0..64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    format!("{state:016x}")
                })
                .collect::<String>()
        };
        for _ in 0..batches {
            let rows: Vec<String> = (0..rows_per_batch).map(|_| text()).collect();
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(rows))]).expect("batch");
            object.write(&batch).expect("write");
        }
        object.close(&[]).expect("close").finish(&[]).expect("finish");

        let file = std::fs::File::open(dir.path().join("t.parquet")).expect("open");
        let meta = SerializedFileReader::new(file).expect("read").metadata().clone();
        assert_eq!(meta.file_metadata().num_rows(), (batches * rows_per_batch) as i64);
        assert!(meta.num_row_groups() >= 3, "{} row groups for 24 MiB of rows", meta.num_row_groups());
        for g in meta.row_groups() {
            let size = g.compressed_size() as usize;
            assert!(size <= ROW_GROUP_BYTES + (1 << 20), "a row group of {size} bytes");
            assert!(g.num_rows() < ROW_GROUP_ROWS as i64);
        }
    }
}
