//! Query results out: an aligned table for people, or CSV, JSON lines or Parquet.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header, for reading in a terminal.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
    /// Parquet (needs --output, or a pipe).
    Parquet,
}

/// Write `batches` to `out` in `format`.
pub fn write(format: Format, schema: &SchemaRef, batches: &[RecordBatch], out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let text = datafusion::arrow::util::pretty::pretty_format_batches(batches)?;
            // An empty result still shows its columns.
            if batches.iter().all(|b| b.num_rows() == 0) {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(out, "{}\n(no rows)", names.join(" | "))?;
            } else {
                writeln!(out, "{text}")?;
            }
        }
        Format::Csv => {
            let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(out);
            for b in batches {
                w.write(&flatten_nested(b)?)?;
            }
        }
        Format::Json => {
            let mut w = arrow_json::LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        Format::Parquet => {
            let mut buf = Vec::new();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
            out.write_all(&buf)?;
        }
    }
    Ok(())
}

/// `batches` in `format`, as bytes.
pub fn to_bytes(format: Format, schema: &SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    write(format, schema, batches, &mut out)?;
    Ok(out)
}

/// CSV has no lists or structs: such columns are written as their text (`[1.5, -2.5]`).
fn flatten_nested(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    if !batch.schema().fields().iter().any(|f| f.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.data_type().is_nested() {
            let text: StringArray = (0..c.len())
                .map(|i| if c.is_null(i) { Ok(None) } else { datafusion::arrow::util::display::array_value_to_string(c, i).map(Some) })
                .collect::<Result<_, _>>()?;
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(Arc::new(text));
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, ListArray};
    use datafusion::arrow::datatypes::Float64Type;
    use std::sync::Arc;

    #[test]
    fn every_format_writes_lists_too() {
        let coords = ListArray::from_iter_primitive::<Float64Type, _, _>([Some(vec![Some(1.5), Some(-2.5)]), None]);
        let batch = RecordBatch::try_from_iter([("ind", Arc::new(Int64Array::from(vec![1, 2])) as _), ("coordinates", Arc::new(coords) as _)]).expect("batch");
        let schema = batch.schema();
        let csv = String::from_utf8(to_bytes(Format::Csv, &schema, std::slice::from_ref(&batch)).expect("csv")).expect("utf-8");
        assert_eq!(csv, "ind,coordinates\n1,\"[1.5, -2.5]\"\n2,\n");
        let json = String::from_utf8(to_bytes(Format::Json, &schema, std::slice::from_ref(&batch)).expect("json")).expect("utf-8");
        assert_eq!(json.lines().next(), Some(r#"{"ind":1,"coordinates":[1.5,-2.5]}"#));
        let table = String::from_utf8(to_bytes(Format::Table, &schema, std::slice::from_ref(&batch)).expect("table")).expect("utf-8");
        assert!(table.contains("| ind | coordinates |") && table.contains("| 1   | [1.5, -2.5] |"), "{table}");
        let parquet = to_bytes(Format::Parquet, &schema, &[batch]).expect("parquet");
        assert_eq!(&parquet[..4], b"PAR1");
    }
}
