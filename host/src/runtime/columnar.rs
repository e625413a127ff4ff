//! Contract 0.2.0 on the host side: decode records into the columns a
//! component declares, call it, and turn the columns it returns into Arrow —
//! checking every buffer first, since the guest is not trusted.

use super::bindings::columns::{BatchOutput, ColumnParam, ColumnResult, ColumnsBatchParam, InputType as WitInput, OutputType as WitOutput, Transform};
use super::host::HostState;
use super::rows::{ColumnRows, StageRows};
use super::sandbox::{CallFailure, FailureKind, ProcessedBatch, RecordFailure, Sandboxed, call_with_limits, merge_counters, one_by_one};

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_guest::BatchRef;
use sluice_guest::columns::{ColumnBuf, InputType, OutputType, decode_json};
use std::sync::Arc;

/// What a 0.2.0 component declared: the fields it reads, the columns it writes.
#[derive(Debug, Clone)]
pub struct ColumnContract {
    pub input: Vec<(String, InputType)>,
    pub output: Vec<(String, OutputType, bool)>,
    /// The Arrow schema of its output rows.
    pub schema: SchemaRef,
}

/// Most fields a component may declare on either side.
const MAX_FIELDS: usize = 256;

impl ColumnContract {
    pub(crate) fn from_wit(d: &super::bindings::columns::Descriptor) -> Result<Self, String> {
        if d.input.len() > MAX_FIELDS || d.output.len() > MAX_FIELDS {
            return Err(format!("at most {MAX_FIELDS} input and {MAX_FIELDS} output fields"));
        }
        if d.output.is_empty() {
            return Err("it declares no output columns".into());
        }
        let input: Vec<(String, InputType)> = d.input.iter().map(|f| (f.name.clone(), input_type(f.type_))).collect();
        let output: Vec<(String, OutputType, bool)> = d.output.iter().map(|f| (f.name.clone(), output_type(f.type_), f.nullable)).collect();
        for names in [input.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), output.iter().map(|f| f.0.as_str()).collect()] {
            if let Some(dup) = names.iter().enumerate().find_map(|(i, n)| names[..i].contains(n).then_some(n)) {
                return Err(format!("field `{dup}` is declared twice"));
            }
            if let Some(bad) = names.iter().find(|n| n.is_empty() || n.len() > 128) {
                return Err(format!("field name {bad:?} must be 1-128 bytes"));
            }
        }
        let schema = Arc::new(Schema::new(output.iter().map(|(n, t, nullable)| Field::new(n, arrow_type(*t), *nullable)).collect::<Vec<_>>()));
        Ok(ColumnContract { input, output, schema })
    }

    /// An empty contract, for the one call (`describe`) made before the real one is known.
    pub(crate) fn placeholder() -> Self {
        ColumnContract { input: Vec::new(), output: Vec::new(), schema: Arc::new(Schema::empty()) }
    }

    /// `name type` pairs of the output, for descriptors and messages.
    pub fn describe_output(&self) -> String {
        self.output.iter().map(|(n, t, nullable)| format!("{n} {}{}", t.as_str(), if *nullable { "" } else { " not null" })).collect::<Vec<_>>().join(", ")
    }
}

fn input_type(t: WitInput) -> InputType {
    match t {
        WitInput::Any => InputType::Any,
        WitInput::String => InputType::String,
        WitInput::Int64 => InputType::Int64,
        WitInput::Float64 => InputType::Float64,
        WitInput::Boolean => InputType::Boolean,
        WitInput::Timestamp => InputType::Timestamp,
    }
}

fn output_type(t: WitOutput) -> OutputType {
    match t {
        WitOutput::Int64 => OutputType::Int64,
        WitOutput::Float64 => OutputType::Float64,
        WitOutput::Boolean => OutputType::Boolean,
        WitOutput::String => OutputType::String,
        WitOutput::Timestamp => OutputType::Timestamp,
        WitOutput::Float64List => OutputType::Float64List,
    }
}

/// The Arrow type of an output column: the same types the table schemas use.
pub(crate) fn arrow_type(t: OutputType) -> DataType {
    match t {
        OutputType::Int64 => DataType::Int64,
        OutputType::Float64 => DataType::Float64,
        OutputType::Boolean => DataType::Boolean,
        OutputType::String => DataType::Utf8,
        OutputType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        OutputType::Float64List => DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
    }
}

impl super::sandbox::Instantiate for super::bindings::columns::TransformPre<HostState> {
    type Bindings = Transform;
    fn instantiate_in(&self, store: &mut wasmtime::Store<HostState>) -> wasmtime::Result<Transform> {
        self.instantiate(store)
    }
}

/// Runs batches through one 0.2.0 component.
pub(crate) struct ColumnsInstance {
    pub(crate) sandbox: Sandboxed<super::bindings::columns::TransformPre<HostState>>,
    pub(crate) contract: Arc<ColumnContract>,
}

/// One successful call: rows, the input record of each, and what was refused.
struct Called {
    isolated: bool,
    batch: RecordBatch,
    origins: Vec<u32>,
    failures: Vec<RecordFailure>,
    counters: Vec<(String, u64)>,
}

impl ColumnsInstance {
    pub(crate) fn process(&mut self, input: &BatchRef<'_>) -> ProcessedBatch {
        let called = match self.call(input) {
            Ok(called) => called,
            Err(first) => self.isolate(input, first),
        };
        let output = StageRows::Columns(ColumnRows::from_input(called.batch, input, &called.origins));
        ProcessedBatch { output, origins: called.origins, failures: called.failures, counters: called.counters, isolated: called.isolated }
    }

    fn call(&mut self, input: &BatchRef<'_>) -> Result<Called, CallFailure> {
        let fields: Vec<(&str, InputType)> = self.contract.input.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        let decoded = decode_json(&fields, input);
        let mut failures: Vec<RecordFailure> =
            decoded.refused.iter().map(|(index, reason)| RecordFailure { index: *index, kind: FailureKind::Rejected, reason: reason.clone() }).collect();
        let mut counters: Vec<(String, u64)> = decoded.counters.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        if decoded.rows() == 0 {
            let empty = RecordBatch::new_empty(self.contract.schema.clone());
            return Ok(Called { isolated: false, batch: empty, origins: Vec::new(), failures, counters });
        }
        let columns: Vec<ColumnParam<'_>> = decoded.columns.iter().map(param).collect();
        let arg = ColumnsBatchParam { rows: decoded.rows() as u32, columns: &columns };
        let (result, guest_counters): (BatchOutput, _) = self.sandbox.with_instance(|store, bindings: &Transform| {
            let r = call_with_limits(store, |s| bindings.call_process(s, arg))?;
            Ok((r, std::mem::take(&mut store.data_mut().counters)))
        })?;
        let checked = check(&self.contract, decoded.rows(), result).map_err(CallFailure::Malformed);
        let (batch, origins, rejections) = match checked {
            Ok(ok) => ok,
            Err(failure) => {
                self.sandbox.count_failure(&failure);
                return Err(failure);
            }
        };
        merge_counters(&mut counters, guest_counters);
        let to_input = |i: u32| decoded.accepted[i as usize];
        failures.extend(rejections.into_iter().map(|(i, reason)| RecordFailure { index: to_input(i), kind: FailureKind::Rejected, reason }));
        failures.sort_by_key(|f| f.index);
        Ok(Called { isolated: false, batch, origins: origins.into_iter().map(to_input).collect(), failures, counters })
    }

    /// After a failed batch call: each record alone, as 0.1.0 instances do.
    fn isolate(&mut self, input: &BatchRef<'_>, first: CallFailure) -> Called {
        let schema = self.contract.schema.clone();
        if input.len() == 1 {
            let failures = vec![RecordFailure { index: 0, kind: (&first).into(), reason: first.to_string() }];
            return Called { isolated: true, batch: RecordBatch::new_empty(schema), origins: Vec::new(), failures, counters: Vec::new() };
        }
        let max_failures = self.sandbox.limits().max_isolation_failures;
        tracing::warn!(transform = &*self.sandbox.name, records = input.len(), reason = %first, "batch failed; retrying its records one by one");
        let (mut parts, mut origins, mut failures, mut counters) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        one_by_one(input, &first, max_failures, &mut failures, |index, single| {
            let one = self.call(single)?;
            origins.extend(one.origins.iter().map(|_| index));
            parts.push(one.batch);
            merge_counters(&mut counters, one.counters);
            Ok(one.failures)
        });
        // Every part has the contract's schema, so concatenating cannot fail.
        let batch = arrow_select::concat::concat_batches(&schema, &parts).unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()));
        Called { isolated: true, batch, origins, failures, counters }
    }
}

fn param(c: &ColumnBuf) -> ColumnParam<'_> {
    ColumnParam { validity: &c.validity, ints: &c.ints, floats: &c.floats, bytes: &c.bytes, offsets: &c.offsets, kinds: &c.kinds }
}

/// Rows, origins and rejections of a guest's output, once every buffer is
/// checked against the declared columns. `inputs` is the number of rows it was given.
#[allow(clippy::type_complexity)]
fn check(contract: &ColumnContract, inputs: usize, out: BatchOutput) -> Result<(RecordBatch, Vec<u32>, Vec<(u32, String)>), String> {
    let rows = out.output.rows as usize;
    if out.origins.len() != rows {
        return Err(format!("{rows} output rows but {} origins", out.origins.len()));
    }
    if let Some(bad) = out.origins.iter().chain(out.rejections.iter().map(|r| &r.index)).find(|&&i| i as usize >= inputs) {
        return Err(format!("refers to input row {bad} of a batch of {inputs}"));
    }
    if out.output.columns.len() != contract.output.len() {
        return Err(format!("{} columns, but it declares {} ({})", out.output.columns.len(), contract.output.len(), contract.describe_output()));
    }
    let arrays = out
        .output
        .columns
        .into_iter()
        .zip(&contract.output)
        .map(|(c, (name, ty, nullable))| column_array(c, *ty, *nullable, rows).map_err(|e| format!("column `{name}` ({}): {e}", ty.as_str())))
        .collect::<Result<Vec<ArrayRef>, String>>()?;
    let batch = RecordBatch::try_new(contract.schema.clone(), arrays).map_err(|e| e.to_string())?;
    Ok((batch, out.origins, out.rejections.into_iter().map(|r| (r.index, r.reason)).collect()))
}

/// One column's buffers as an Arrow array, through checked constructors only.
fn column_array(c: ColumnResult, ty: OutputType, nullable: bool, rows: usize) -> Result<ArrayRef, String> {
    let nulls = validity(c.validity, rows)?;
    if let Some(n) = nulls.as_ref().filter(|n| n.null_count() > 0)
        && !nullable
    {
        return Err(format!("{} nulls in a column declared not nullable", n.null_count()));
    }
    let unused = |filled: &[bool]| -> Result<(), String> {
        let names = ["ints", "floats", "bytes", "offsets", "kinds"];
        let lens = [c.ints.len(), c.floats.len(), c.bytes.len(), c.offsets.len(), c.kinds.len()];
        match names.iter().zip(lens).zip(filled).find(|((_, len), used)| !**used && *len > 0) {
            Some(((name, len), _)) => Err(format!("{len} values in `{name}`, which this type does not use")),
            None => Ok(()),
        }
    };
    let per_row = |what: &str, len: usize| if len == rows { Ok(()) } else { Err(format!("{len} {what} for {rows} rows")) };
    Ok(match ty {
        OutputType::Int64 | OutputType::Timestamp => {
            unused(&[true, false, false, false, false])?;
            per_row("ints", c.ints.len())?;
            let values = ScalarBuffer::from(c.ints);
            if ty == OutputType::Int64 {
                Arc::new(Int64Array::try_new(values, nulls).map_err(|e| e.to_string())?)
            } else {
                Arc::new(TimestampMicrosecondArray::try_new(values, nulls).map_err(|e| e.to_string())?.with_timezone("+00:00"))
            }
        }
        OutputType::Boolean => {
            unused(&[true, false, false, false, false])?;
            per_row("ints", c.ints.len())?;
            if let Some(v) = c.ints.iter().find(|v| !matches!(v, 0 | 1)) {
                return Err(format!("boolean value {v} (must be 0 or 1)"));
            }
            let values: BooleanBuffer = c.ints.iter().map(|&v| v == 1).collect();
            // Lengths agree: `values` has one bit per checked int, `nulls` one per row.
            Arc::new(BooleanArray::new(values, nulls))
        }
        OutputType::Float64 => {
            unused(&[false, true, false, false, false])?;
            per_row("floats", c.floats.len())?;
            Arc::new(Float64Array::try_new(ScalarBuffer::from(c.floats), nulls).map_err(|e| e.to_string())?)
        }
        OutputType::String => {
            unused(&[false, false, true, true, false])?;
            let offsets = offsets(&c.offsets, rows, c.bytes.len(), "bytes")?;
            // `try_new` checks the UTF-8 of every value and that offsets fall on character boundaries.
            Arc::new(StringArray::try_new(offsets, Buffer::from_vec(c.bytes), nulls).map_err(|e| e.to_string())?)
        }
        OutputType::Float64List => {
            unused(&[false, true, false, true, false])?;
            let offsets = offsets(&c.offsets, rows, c.floats.len(), "floats")?;
            let item = Arc::new(Field::new("item", DataType::Float64, true));
            let values = Arc::new(Float64Array::new(ScalarBuffer::from(c.floats), None));
            Arc::new(ListArray::try_new(item, offsets, values, nulls).map_err(|e| e.to_string())?)
        }
    })
}

fn validity(bits: Vec<u8>, rows: usize) -> Result<Option<NullBuffer>, String> {
    if bits.is_empty() {
        return Ok(None);
    }
    if bits.len() != rows.div_ceil(8) {
        return Err(format!("validity bitmap of {} bytes for {rows} rows (needs {})", bits.len(), rows.div_ceil(8)));
    }
    Ok(Some(NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(bits), 0, rows))))
}

/// `rows + 1` offsets, starting at 0, never decreasing, within `len`: checked
/// here because `OffsetBuffer::new` panics on a bad one.
fn offsets(raw: &[u32], rows: usize, len: usize, into: &str) -> Result<OffsetBuffer<i32>, String> {
    if raw.len() != rows + 1 {
        return Err(format!("{} offsets for {rows} rows (needs {})", raw.len(), rows + 1));
    }
    if raw[0] != 0 {
        return Err(format!("offsets start at {}, not 0", raw[0]));
    }
    if let Some(i) = raw.windows(2).position(|w| w[1] < w[0]) {
        return Err(format!("offset {} ({}) is before the previous one ({})", i + 1, raw[i + 1], raw[i]));
    }
    let end = raw[rows] as usize;
    if end > len || end > i32::MAX as usize {
        return Err(format!("the last offset ({end}) is past the {len} {into}"));
    }
    Ok(OffsetBuffer::new(ScalarBuffer::from(raw.iter().map(|&o| o as i32).collect::<Vec<i32>>())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> ColumnContract {
        let output = vec![("n".to_string(), OutputType::Int64, false), ("s".to_string(), OutputType::String, true)];
        let schema = Arc::new(Schema::new(output.iter().map(|(n, t, nl)| Field::new(n, arrow_type(*t), *nl)).collect::<Vec<_>>()));
        ColumnContract { input: vec![], output, schema }
    }

    fn col(ints: Vec<i64>, bytes: &[u8], offsets: Vec<u32>) -> ColumnResult {
        ColumnResult { validity: vec![], ints, floats: vec![], bytes: bytes.to_vec(), offsets, kinds: vec![] }
    }

    fn out(rows: u32, columns: Vec<ColumnResult>, origins: Vec<u32>) -> BatchOutput {
        BatchOutput { output: super::super::bindings::columns::sluice::transform::columns::ColumnsBatchResult { rows, columns }, origins, rejections: vec![] }
    }

    #[test]
    fn well_formed_columns_become_a_record_batch() {
        let o = out(2, vec![col(vec![1, 2], b"", vec![]), col(vec![], b"abcd", vec![0, 1, 4])], vec![0, 1]);
        let (batch, origins, _) = check(&contract(), 2, o).expect("valid");
        assert_eq!((batch.num_rows(), origins), (2, vec![0, 1]));
    }

    #[test]
    fn every_broken_layout_is_refused_with_a_reason() {
        let cases: Vec<(BatchOutput, &str)> = vec![
            (out(2, vec![col(vec![1, 2], b"", vec![]), col(vec![], b"abcd", vec![0, 3, 1])], vec![0, 1]), "before the previous"),
            (out(2, vec![col(vec![1, 2], b"", vec![]), col(vec![], b"abcd", vec![0, 1, 9])], vec![0, 1]), "past the 4 bytes"),
            (out(2, vec![col(vec![1], b"", vec![]), col(vec![], b"abcd", vec![0, 1, 4])], vec![0, 1]), "1 ints for 2 rows"),
            (out(2, vec![col(vec![1, 2], b"", vec![]), col(vec![], &[0xff, 0xfe, 0xfd, 0xfc], vec![0, 1, 4])], vec![0, 1]), "utf-8"),
            (out(2, vec![col(vec![1, 2], b"", vec![])], vec![0, 1]), "1 columns, but it declares 2"),
            (out(2, vec![col(vec![1, 2], b"", vec![]), col(vec![], b"abcd", vec![0, 1, 4])], vec![0, 7]), "input row 7"),
            (out(u32::MAX, vec![col(vec![1, 2], b"", vec![]), col(vec![], b"abcd", vec![0, 1, 4])], vec![0, 1]), "origins"),
        ];
        for (o, want) in cases {
            let err = check(&contract(), 2, o).expect_err(want);
            assert!(err.to_lowercase().contains(&want.to_lowercase()), "{err:?} should say {want:?}");
        }
        let mut wrong_type = col(vec![], b"", vec![]);
        wrong_type.floats = vec![1.0, 2.0];
        let err = check(&contract(), 2, out(2, vec![wrong_type, col(vec![], b"ab", vec![0, 1, 2])], vec![0, 1])).expect_err("wrong type");
        assert!(err.contains("`floats`, which this type does not use"), "{err}");
        let mut null_required = col(vec![1, 2], b"", vec![]);
        null_required.validity = vec![0b10];
        let err = check(&contract(), 2, out(2, vec![null_required, col(vec![], b"ab", vec![0, 1, 2])], vec![0, 1])).expect_err("null");
        assert!(err.contains("declared not nullable"), "{err}");
    }
}
