//! Running a planned statement on one batch: decode the fields it reads, run
//! its steps natively on the columns, split refused rows off, cast to the table types.

use super::input;
use super::program::{SqlProgram, Step};
use crate::runtime::rows::{ColumnRows, StageRows};
use crate::runtime::sandbox::{FailureKind, ProcessedBatch, RecordFailure};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow_schema::SchemaRef;
use sluice_guest::columns::{Decoded, decode_json};
use sluice_guest::{BatchBuf, BatchRef};
use std::sync::Arc;

/// Rows a statement produced from a batch, before the refused are split off.
struct Selected {
    batch: RecordBatch,
    /// Input index of each row.
    origins: Vec<u32>,
}

impl SqlProgram {
    /// Run the statement on `input`. Never fails as a whole: if the statement
    /// fails on the batch (a cast that overflows, a division by zero), each
    /// record is run alone and those it fails on are refused with the error.
    pub fn process(&self, input: &BatchRef<'_>) -> ProcessedBatch {
        let decoded = self.decode(input);
        let mut failures: Vec<RecordFailure> =
            decoded.refused.iter().map(|(index, reason)| RecordFailure { index: *index, kind: FailureKind::Rejected, reason: reason.clone() }).collect();
        let counters = decoded.counters.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let rows = decoded.rows();
        let accepted = decoded.accepted;
        let run = input::batch(&self.input_schema, &self.contract.input, decoded.columns, rows)
            .and_then(|batch| self.run(batch, accepted.clone()).map_err(|e| e.to_string()));
        let (selected, isolated) = match run {
            Ok(selected) => (selected, false),
            Err(first) => (self.isolate(input, &accepted, &first, &mut failures), true),
        };
        let (batch, origins) = self.split_refused(selected, &mut failures);
        failures.sort_by_key(|f| f.index);
        let output = StageRows::Columns(ColumnRows::from_input(batch, input, &origins));
        ProcessedBatch { output, origins, failures, counters, isolated }
    }

    /// The fields the statement reads, decoded from each record of `input`.
    fn decode(&self, input: &BatchRef<'_>) -> Decoded {
        let fields: Vec<(&str, sluice_guest::columns::InputType)> = self.contract.input.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        decode_json(&fields, input)
    }

    /// The steps on the `input` batch whose row `i` came from record `origins[i]`.
    fn run(&self, mut batch: RecordBatch, mut origins: Vec<u32>) -> datafusion::common::Result<Selected> {
        for step in &self.steps {
            let rows = batch.num_rows();
            batch = match step {
                Step::Scan(columns) => batch.project(columns)?,
                Step::Filter(predicate) => {
                    let keep = predicate.evaluate(&batch)?.into_array(rows)?;
                    let keep = keep.as_boolean_opt().ok_or_else(|| datafusion::common::DataFusionError::Internal("WHERE is not a boolean".into()))?;
                    // A null condition drops the row, as SQL's WHERE does.
                    let keep = if keep.null_count() > 0 { arrow_select::filter::prep_null_mask_filter(keep) } else { keep.clone() };
                    origins = kept(&origins, &keep);
                    arrow_select::filter::filter_record_batch(&batch, &keep)?
                }
                Step::Project(exprs, schema) => {
                    let arrays = exprs.iter().map(|e| e.evaluate(&batch).and_then(|v| v.into_array(rows))).collect::<Result<Vec<ArrayRef>, _>>()?;
                    RecordBatch::try_new_with_options(schema.clone(), arrays, &RecordBatchOptions::new().with_row_count(Some(rows)))?
                }
                Step::Empty(schema) => {
                    origins.clear();
                    RecordBatch::new_empty(schema.clone())
                }
            };
        }
        Ok(Selected { batch, origins })
    }

    /// After the statement failed on a whole batch: each decoded record alone.
    fn isolate(&self, input: &BatchRef<'_>, accepted: &[u32], first: &str, failures: &mut Vec<RecordFailure>) -> Selected {
        tracing::warn!(
            transform = self.header.name.as_deref().unwrap_or("sql"),
            records = accepted.len(),
            reason = first,
            "SQL statement failed on a batch; running its records one by one"
        );
        let (mut parts, mut origins) = (Vec::new(), Vec::new());
        let mut single = BatchBuf::default();
        for &index in accepted {
            single.clear();
            let r = input.get(index as usize);
            single.push(r.value, r.key, r.timestamp);
            let decoded = self.decode(&single.as_ref());
            let one = input::batch(&self.input_schema, &self.contract.input, decoded.columns, decoded.accepted.len())
                .and_then(|b| self.run(b, vec![index]).map_err(|e| e.to_string()));
            match one {
                Ok(s) => {
                    origins.extend(s.origins);
                    parts.push(s.batch);
                }
                Err(e) => failures.push(RecordFailure { index, kind: FailureKind::Rejected, reason: format!("the SQL statement failed on this record: {e}") }),
            }
        }
        let schema = self.last_schema();
        let batch = arrow_select::concat::concat_batches(&schema, &parts).unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()));
        Selected { batch, origins }
    }

    fn last_schema(&self) -> SchemaRef {
        match self.steps.last() {
            Some(Step::Project(_, s) | Step::Empty(s)) => s.clone(),
            _ => self.input_schema.clone(),
        }
    }

    /// Rows with a `_reject` reason become failures; the rest become the
    /// output, cast to the contract's table types.
    fn split_refused(&self, selected: Selected, failures: &mut Vec<RecordFailure>) -> (RecordBatch, Vec<u32>) {
        let Selected { mut batch, mut origins } = selected;
        if let Some(r) = self.reject {
            let reasons = arrow_cast::cast(batch.column(r), &arrow_schema::DataType::Utf8)
                .unwrap_or_else(|_| arrow_array::new_null_array(&arrow_schema::DataType::Utf8, batch.num_rows()));
            let reasons = reasons.as_string::<i32>();
            if reasons.null_count() < reasons.len() {
                for i in (0..reasons.len()).filter(|&i| reasons.is_valid(i)) {
                    failures.push(RecordFailure { index: origins[i], kind: FailureKind::Rejected, reason: reasons.value(i).to_owned() });
                }
                let keep: BooleanArray = (0..reasons.len()).map(|i| Some(reasons.is_null(i))).collect();
                origins = kept(&origins, &keep);
                batch = arrow_select::filter::filter_record_batch(&batch, &keep).unwrap_or_else(|_| RecordBatch::new_empty(batch.schema()));
            }
        }
        let schema = self.contract.schema.clone();
        let rows = batch.num_rows();
        let columns: Result<Vec<ArrayRef>, String> = self
            .outputs
            .iter()
            .zip(schema.fields())
            .map(|(&i, f)| {
                let c = batch.column(i);
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow_cast::cast(c, f.data_type()).map_err(|e| format!("column `{}`: {e}", f.name()))
                }
            })
            .collect();
        let table_schema = Arc::new(arrow_schema::Schema::new(schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>()));
        match columns
            .and_then(|c| RecordBatch::try_new_with_options(table_schema, c, &RecordBatchOptions::new().with_row_count(Some(rows))).map_err(|e| e.to_string()))
        {
            Ok(b) => (b, origins),
            Err(e) => {
                failures.extend(origins.iter().map(|&index| RecordFailure {
                    index,
                    kind: FailureKind::Rejected,
                    reason: format!("the SQL statement's output does not cast to its table types: {e}"),
                }));
                (RecordBatch::new_empty(schema), Vec::new())
            }
        }
    }
}

/// The origins of the rows a (null-free) filter keeps.
fn kept(origins: &[u32], keep: &BooleanArray) -> Vec<u32> {
    origins.iter().zip(keep.values().iter()).filter_map(|(o, k)| k.then_some(*o)).collect()
}
