//! Reading input columns: by row and field name, or a column at a time.

use super::{ColumnRef, InputType, ValueKind, is_valid};
use crate::json::Field;
use std::borrow::Cow;

/// One input column, checked once per batch so reading a row never panics.
#[derive(Debug, Clone, Copy)]
pub struct ColumnView<'a> {
    ty: InputType,
    raw: ColumnRef<'a>,
    /// `raw.bytes` as text (checked once for the whole column).
    text: &'a str,
}

impl<'a> ColumnView<'a> {
    fn new(name: &str, ty: InputType, rows: usize, raw: ColumnRef<'a>) -> Result<Self, String> {
        let bad = |what: &str| Err(format!("input column `{name}` ({ty:?}, {rows} rows): {what}"));
        let per_row = |len: usize| len == rows;
        let ok = match ty {
            InputType::Any => per_row(raw.kinds.len()) && per_row(raw.ints.len()) && per_row(raw.floats.len()) && raw.offsets.len() == rows + 1,
            InputType::String => raw.offsets.len() == rows + 1,
            InputType::Int64 | InputType::Boolean | InputType::Timestamp => per_row(raw.ints.len()),
            InputType::Float64 => per_row(raw.floats.len()),
        };
        if !ok {
            return bad("buffer lengths do not match the row count");
        }
        if !raw.validity.is_empty() && raw.validity.len() != rows.div_ceil(8) {
            return bad("validity bitmap has the wrong length");
        }
        if raw.offsets.windows(2).any(|w| w[0] > w[1]) || raw.offsets.last().is_some_and(|&e| e as usize > raw.bytes.len()) {
            return bad("offsets decrease or run past the bytes");
        }
        let Ok(text) = std::str::from_utf8(raw.bytes) else { return bad("bytes are not UTF-8") };
        if raw.offsets.iter().any(|&o| !text.is_char_boundary(o as usize)) {
            return bad("an offset splits a character");
        }
        Ok(ColumnView { ty, raw, text })
    }

    pub fn input_type(&self) -> InputType {
        self.ty
    }

    pub fn is_valid(&self, i: usize) -> bool {
        match self.ty {
            InputType::Any => !matches!(self.kind(i), ValueKind::Missing | ValueKind::Null),
            _ => is_valid(self.raw.validity, i),
        }
    }

    /// The JSON kind of row `i` (`any` columns; for typed columns, `String`,
    /// `Integer`... or `Null`).
    pub fn kind(&self, i: usize) -> ValueKind {
        match self.ty {
            InputType::Any => ValueKind::from_u8(self.raw.kinds[i]).unwrap_or(ValueKind::Nested),
            _ if !is_valid(self.raw.validity, i) => ValueKind::Null,
            InputType::String => ValueKind::String,
            InputType::Int64 | InputType::Timestamp => ValueKind::Integer,
            InputType::Float64 => ValueKind::Float,
            InputType::Boolean => ValueKind::Boolean,
        }
    }

    /// The string of row `i`, if it holds one.
    pub fn str(&self, i: usize) -> Option<&'a str> {
        if self.kind(i) != ValueKind::String {
            return None;
        }
        let (a, b) = (self.raw.offsets[i] as usize, self.raw.offsets[i + 1] as usize);
        Some(&self.text[a..b])
    }

    /// The integer of row `i` (int64, timestamp in microseconds, an integer of an `any` column).
    pub fn int(&self, i: usize) -> Option<i64> {
        matches!(self.kind(i), ValueKind::Integer).then(|| self.raw.ints[i])
    }

    /// The number of row `i` (float64, or any number of an `any` column).
    pub fn float(&self, i: usize) -> Option<f64> {
        match self.kind(i) {
            ValueKind::Float => Some(self.raw.floats[i]),
            ValueKind::Integer if self.ty == InputType::Any => Some(self.raw.ints[i] as f64),
            _ => None,
        }
    }

    pub fn bool(&self, i: usize) -> Option<bool> {
        matches!(self.kind(i), ValueKind::Boolean).then(|| self.raw.ints[i] != 0)
    }

    /// Row `i` as a lenient JSON [`Field`], whatever the column's type.
    pub fn field(&self, i: usize) -> Field<'a> {
        match self.kind(i) {
            ValueKind::Missing => Field::Missing,
            ValueKind::Null => Field::Null,
            ValueKind::Boolean => Field::Bool(self.raw.ints[i] != 0),
            ValueKind::Integer => Field::Int(self.raw.ints[i]),
            ValueKind::Float => Field::Float(self.raw.floats[i]),
            ValueKind::String => Field::Str(Cow::Borrowed(self.str(i).unwrap_or_default())),
            ValueKind::Nested => Field::Nested,
        }
    }

    /// The raw buffers, for column-at-a-time work.
    pub fn raw(&self) -> ColumnRef<'a> {
        self.raw
    }
}

/// Whether `a` and `b` are the same string in memory (not merely equal text).
#[inline]
pub(crate) fn same_literal(a: &str, b: &str) -> bool {
    std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()
}

/// A batch of input columns, named as the transform declared them.
#[derive(Debug, Clone)]
pub struct ColumnsView<'a> {
    names: Vec<&'a str>,
    /// Where the next lookup looks first.
    hint: std::cell::Cell<usize>,
    rows: usize,
    columns: Vec<ColumnView<'a>>,
}

impl<'a> ColumnsView<'a> {
    /// Check the buffers against the declared fields: a batch the view accepts
    /// can be read row by row without a panic.
    pub fn new_typed(fields: &[(&'a str, InputType)], rows: usize, columns: Vec<ColumnRef<'a>>) -> Result<Self, String> {
        if fields.len() != columns.len() {
            return Err(format!("{} columns for {} declared input fields", columns.len(), fields.len()));
        }
        let columns = fields.iter().zip(columns).map(|(&(name, ty), raw)| ColumnView::new(name, ty, rows, raw)).collect::<Result<Vec<_>, _>>()?;
        Ok(ColumnsView { names: fields.iter().map(|f| f.0).collect(), hint: Default::default(), rows, columns })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The column of a declared input field.
    pub fn column(&self, name: &str) -> Option<&ColumnView<'a>> {
        // A transform names its fields with the same string literals as its
        // INPUT, which the compiler stores once: comparing addresses finds the
        // column without comparing text (a per-field memcmp was 10% of a
        // pipeline's time, profiled in Wasm). Text is the fallback.
        // Fields are mostly read in declared order: try the one after the last first.
        let hint = self.hint.get();
        let i = match self.names.get(hint) {
            Some(n) if same_literal(n, name) || *n == name => hint,
            _ => self.names.iter().position(|n| same_literal(n, name)).or_else(|| self.names.iter().position(|n| *n == name))?,
        };
        self.hint.set(i + 1);
        Some(&self.columns[i])
    }

    pub fn row(&self, index: usize) -> Row<'_, 'a> {
        Row { batch: self, index }
    }

    fn col(&self, name: &str) -> &ColumnView<'a> {
        self.column(name).unwrap_or_else(|| panic!("the transform reads `{name}`, which is not among its declared INPUT fields"))
    }
}

/// One input row: its fields by name.
#[derive(Debug, Clone, Copy)]
pub struct Row<'v, 'a> {
    batch: &'v ColumnsView<'a>,
    index: usize,
}

impl<'a> Row<'_, 'a> {
    /// The row's index in the batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The field as a lenient JSON value: `Missing`, `Null`, `Str`, `Int`...
    pub fn field(&self, name: &str) -> Field<'a> {
        self.batch.col(name).field(self.index)
    }

    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.batch.col(name).str(self.index)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.batch.col(name).int(self.index)
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        self.batch.col(name).float(self.index)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.batch.col(name).bool(self.index)
    }
}
