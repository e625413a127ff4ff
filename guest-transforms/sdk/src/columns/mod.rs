//! Contract 0.2.0: transforms over typed columns.
//!
//! The host parses each record's JSON once, natively, into the columns a
//! transform declares it reads ([`ColumnTransform::INPUT`]); the transform
//! writes the typed columns it declares ([`ColumnTransform::OUTPUT`]), which
//! the host turns into the table directly. An author still writes one function
//! per record, reading fields by name from a [`Row`] and setting output fields
//! by name on a [`RowOut`]; [`ColumnTransform::process`] can be overridden to
//! work a column at a time.
//!
//! ```ignore
//! struct Shout;
//! impl sluice_guest::ColumnTransform for Shout {
//!     const DESCRIPTOR: sluice_guest::Descriptor =
//!         sluice_guest::Descriptor { name: "shout", version: "1.0.0", input_kind: "any", output_kind: "shout" };
//!     const INPUT: &'static [InputField] = &[InputField::new("text", InputType::String)];
//!     const OUTPUT: &'static [OutputField] = &[OutputField::new("text", OutputType::String, true)];
//!     fn transform(row: &Row<'_, '_>, out: &mut Emitter) -> Result<(), Reject> {
//!         let upper = row.str("text").map(str::to_uppercase);
//!         out.emit(|r| r.str("text", upper.as_deref()));
//!         Ok(())
//!     }
//! }
//! sluice_guest::export_columns!(Shout);
//! ```

mod decode;
mod read;
mod write;

pub use decode::{Decoded, decode_json};
pub use read::{ColumnView, ColumnsView, Row};
pub use write::{ColumnBuilder, Emitter, RowOut};

use crate::{Descriptor, Reject, Rejection};

/// Append row `row`'s validity bit (`true`: a value) to an Arrow-style bitmap.
pub(crate) fn push_validity(bits: &mut Vec<u8>, row: usize, valid: bool) {
    if row.is_multiple_of(8) {
        bits.push(0);
    }
    if valid {
        *bits.last_mut().expect("pushed above") |= 1 << (row % 8);
    }
}

/// The type of a column a transform reads (WIT `input-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputType {
    /// Any JSON value, with its kind: what a transform that must tell a string
    /// `"437"` from a number `437` reads.
    Any,
    /// A JSON string; any other type becomes null, counted as `field_wrong_type`.
    String,
    /// A JSON integer or a string of decimal digits; else null, counted as `<name>_unparsed`.
    Int64,
    /// A JSON number or numeric string; else null, counted as `<name>_unparsed`.
    Float64,
    /// A JSON boolean; else null, counted as `<name>_unparsed`.
    Boolean,
    /// A timestamp string or epoch milliseconds, as microseconds (UTC); else null, counted.
    Timestamp,
}

/// The JSON kind of one value of an [`InputType::Any`] column (WIT `value-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ValueKind {
    Missing = 0,
    Null = 1,
    Boolean = 2,
    Integer = 3,
    Float = 4,
    String = 5,
    Nested = 6,
}

impl ValueKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => ValueKind::Missing,
            1 => ValueKind::Null,
            2 => ValueKind::Boolean,
            3 => ValueKind::Integer,
            4 => ValueKind::Float,
            5 => ValueKind::String,
            6 => ValueKind::Nested,
            _ => return None,
        })
    }
}

/// The type of a column a transform writes (WIT `output-type`): the table's column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputType {
    Int64,
    Float64,
    Boolean,
    String,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    Float64List,
}

impl OutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::Int64 => "int64",
            OutputType::Float64 => "float64",
            OutputType::Boolean => "boolean",
            OutputType::String => "string",
            OutputType::Timestamp => "timestamp",
            OutputType::Float64List => "float64_list",
        }
    }
}

/// A field a transform reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputField {
    pub name: &'static str,
    pub ty: InputType,
}

impl InputField {
    pub const fn new(name: &'static str, ty: InputType) -> Self {
        InputField { name, ty }
    }
}

/// A column a transform writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputField {
    pub name: &'static str,
    pub ty: OutputType,
    pub nullable: bool,
}

impl OutputField {
    pub const fn new(name: &'static str, ty: OutputType, nullable: bool) -> Self {
        OutputField { name, ty, nullable }
    }
}

/// One column as flat buffers, owned: what crosses the boundary (WIT `column`).
/// Only the buffers the column's type uses are filled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnBuf {
    /// One bit per row, LSB first, 1 = a value; empty when every row has one.
    pub validity: Vec<u8>,
    pub ints: Vec<i64>,
    pub floats: Vec<f64>,
    pub bytes: Vec<u8>,
    /// `rows + 1` offsets into `bytes` (strings) or `floats` (lists).
    pub offsets: Vec<u32>,
    /// [`ValueKind`] per row, for `any` columns.
    pub kinds: Vec<u8>,
}

/// A borrowed column (the WIT `column` as the host or the guest binding hands it over).
#[derive(Debug, Clone, Copy, Default)]
pub struct ColumnRef<'a> {
    pub validity: &'a [u8],
    pub ints: &'a [i64],
    pub floats: &'a [f64],
    pub bytes: &'a [u8],
    pub offsets: &'a [u32],
    pub kinds: &'a [u8],
}

impl ColumnBuf {
    pub fn as_ref(&self) -> ColumnRef<'_> {
        ColumnRef { validity: &self.validity, ints: &self.ints, floats: &self.floats, bytes: &self.bytes, offsets: &self.offsets, kinds: &self.kinds }
    }
}

/// Whether bit `i` of a validity bitmap is set; an empty bitmap means all valid.
pub fn is_valid(validity: &[u8], i: usize) -> bool {
    validity.is_empty() || validity.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// What a transform made of one batch of columns.
#[derive(Debug, Default)]
pub struct ColumnsResult {
    pub rows: usize,
    /// One per declared output field, in order.
    pub columns: Vec<ColumnBuf>,
    /// Input row of each output row.
    pub origins: Vec<u32>,
    pub rejections: Vec<Rejection>,
    pub counters: Vec<(&'static str, u64)>,
}

/// A transform over typed columns (contract 0.2.0).
pub trait ColumnTransform {
    const DESCRIPTOR: Descriptor;
    /// The fields read; their columns arrive in this order.
    const INPUT: &'static [InputField];
    /// The columns written, in this order.
    const OUTPUT: &'static [OutputField];

    /// Turn one input row into zero or more output rows (through `out`), or refuse it.
    fn transform(row: &Row<'_, '_>, out: &mut Emitter) -> Result<(), Reject>;

    /// The whole batch. The default calls [`transform`](Self::transform) per
    /// row; override it to work a column at a time (`input.column(name)`),
    /// calling `out.begin(row)` before emitting for each input row.
    fn process(input: &ColumnsView<'_>, out: &mut Emitter) -> Vec<Rejection> {
        let mut rejections = Vec::new();
        for index in 0..input.rows() {
            out.begin(index as u32);
            if let Err(reject) = Self::transform(&input.row(index), out) {
                out.rollback();
                rejections.push(Rejection { index: index as u32, reason: reject.0 });
            }
        }
        rejections
    }
}

/// Run a column transform over a batch: what the component does on each
/// `process` call, and what native tests and benchmarks call directly.
pub fn run_columns<T: ColumnTransform>(input: &ColumnsView<'_>) -> ColumnsResult {
    let mut out = Emitter::new(T::OUTPUT, input.rows());
    let rejections = T::process(input, &mut out);
    let (rows, columns, origins, counters) = out.finish();
    ColumnsResult { rows, columns, origins, rejections, counters }
}

/// Decode JSON records as the host does and run the transform on them: for
/// native tests of a column transform against raw records. Records the decoder
/// refuses come back as rejections with their batch index; origins and
/// rejections refer to the input batch.
pub fn run_json<T: ColumnTransform>(input: &crate::BatchRef<'_>) -> ColumnsResult {
    let fields: Vec<(&str, InputType)> = T::INPUT.iter().map(|f| (f.name, f.ty)).collect();
    let decoded = decode_json(&fields, input);
    let view = ColumnsView::new_typed(&fields, decoded.rows(), decoded.columns.iter().map(ColumnBuf::as_ref).collect())
        .expect("the decoder's columns are well formed");
    let mut res = run_columns::<T>(&view);
    for o in &mut res.origins {
        *o = decoded.accepted[*o as usize];
    }
    for r in &mut res.rejections {
        r.index = decoded.accepted[r.index as usize];
    }
    res.rejections.extend(decoded.refused.into_iter().map(|(index, reason)| Rejection { index, reason }));
    res.rejections.sort_by_key(|r| r.index);
    for (name, delta) in decoded.counters {
        match res.counters.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += delta,
            None => res.counters.push((name, delta)),
        }
    }
    res
}

/// Append output row `row` as a JSON object, exactly as a 0.1.0 transform
/// writing the same values with [`crate::json::JsonWriter`] would (timestamps as
/// RFC 3339 UTC, to the millisecond).
pub fn row_json(fields: &[OutputField], columns: &[ColumnBuf], row: usize, buf: &mut Vec<u8>) {
    let mut w = crate::json::JsonWriter::object(buf);
    for (f, c) in fields.iter().zip(columns) {
        let valid = is_valid(&c.validity, row);
        match f.ty {
            OutputType::Int64 => w.int(f.name, valid.then(|| c.ints[row])),
            OutputType::Boolean => w.bool(f.name, valid.then(|| c.ints[row] != 0)),
            OutputType::Float64 => w.float(f.name, valid.then(|| c.floats[row])),
            OutputType::String => {
                let text = valid.then(|| std::str::from_utf8(&c.bytes[c.offsets[row] as usize..c.offsets[row + 1] as usize]).unwrap_or_default());
                w.str(f.name, text)
            }
            OutputType::Timestamp => {
                let text = valid.then(|| {
                    let mut s = String::with_capacity(24);
                    crate::time::format_rfc3339_ms(c.ints[row].div_euclid(1000), &mut s);
                    s
                });
                w.str(f.name, text.as_deref())
            }
            OutputType::Float64List => w.floats(f.name, valid.then(|| &c.floats[c.offsets[row] as usize..c.offsets[row + 1] as usize])),
        };
    }
    w.end();
}

/// Run a transform that implements both contracts on the same records, check
/// that they agree (output bytes, origins, rejections, counters) and return the
/// 0.1.0 result: what the built-ins' tests run, so every rule is checked on both.
pub fn run_both<T: crate::Transform + ColumnTransform>(input: &crate::BatchRef<'_>) -> crate::BatchResult {
    let old = crate::run_batch::<T>(input);
    let new = run_json::<T>(input);
    let mut line = Vec::new();
    let new_values: Vec<Vec<u8>> = (0..new.rows)
        .map(|r| {
            line.clear();
            row_json(T::OUTPUT, &new.columns, r, &mut line);
            line.clone()
        })
        .collect();
    let old_values: Vec<Vec<u8>> = old.output.as_ref().iter().map(|r| r.value.to_vec()).collect();
    let text = |v: &[Vec<u8>]| v.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>();
    assert_eq!(text(&new_values), text(&old_values), "0.2.0 output differs from 0.1.0");
    assert_eq!(new.origins, old.origins, "origins differ");
    assert_eq!(new.rejections, old.rejections, "rejections differ");
    let sorted = |c: &[(&'static str, u64)]| {
        let mut c = c.to_vec();
        c.sort();
        c
    };
    assert_eq!(sorted(&new.counters), sorted(&old.counters), "counters differ");
    old
}
