//! Writing output columns: a row at a time, fields set by name.

use super::{ColumnBuf, OutputField, OutputType};

/// One output column being built.
#[derive(Debug, Clone)]
pub struct ColumnBuilder {
    ty: OutputType,
    buf: ColumnBuf,
    rows: usize,
    nulls: usize,
}

impl ColumnBuilder {
    pub fn new(ty: OutputType, capacity: usize) -> Self {
        let mut buf = ColumnBuf { validity: Vec::with_capacity(capacity.div_ceil(8)), ..Default::default() };
        match ty {
            OutputType::Int64 | OutputType::Boolean | OutputType::Timestamp => buf.ints.reserve(capacity),
            OutputType::Float64 => buf.floats.reserve(capacity),
            OutputType::String => {
                buf.offsets.reserve(capacity + 1);
                buf.offsets.push(0);
                buf.bytes.reserve(capacity * 16);
            }
            OutputType::Float64List => {
                buf.offsets.reserve(capacity + 1);
                buf.offsets.push(0);
            }
        }
        ColumnBuilder { ty, buf, rows: 0, nulls: 0 }
    }

    pub fn output_type(&self) -> OutputType {
        self.ty
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    fn bit(&mut self, valid: bool) {
        super::push_validity(&mut self.buf.validity, self.rows, valid);
        self.nulls += usize::from(!valid);
        self.rows += 1;
    }

    pub fn push_null(&mut self) {
        match self.ty {
            OutputType::Int64 | OutputType::Boolean | OutputType::Timestamp => self.buf.ints.push(0),
            OutputType::Float64 => self.buf.floats.push(0.0),
            OutputType::String => self.buf.offsets.push(self.buf.bytes.len() as u32),
            OutputType::Float64List => self.buf.offsets.push(self.buf.floats.len() as u32),
        }
        self.bit(false);
    }

    fn mismatch(&self, wrote: &str) -> ! {
        panic!("wrote {wrote} into a {} column", self.ty.as_str())
    }

    pub fn push_int(&mut self, v: i64) {
        if !matches!(self.ty, OutputType::Int64 | OutputType::Timestamp) {
            self.mismatch("an integer");
        }
        self.buf.ints.push(v);
        self.bit(true);
    }

    pub fn push_bool(&mut self, v: bool) {
        if self.ty != OutputType::Boolean {
            self.mismatch("a boolean");
        }
        self.buf.ints.push(v as i64);
        self.bit(true);
    }

    pub fn push_float(&mut self, v: f64) {
        if self.ty != OutputType::Float64 {
            self.mismatch("a float");
        }
        self.buf.floats.push(v);
        self.bit(true);
    }

    pub fn push_str(&mut self, v: &str) {
        if self.ty != OutputType::String {
            self.mismatch("a string");
        }
        self.buf.bytes.extend_from_slice(v.as_bytes());
        self.buf.offsets.push(self.buf.bytes.len() as u32);
        self.bit(true);
    }

    pub fn push_floats(&mut self, v: &[f64]) {
        if self.ty != OutputType::Float64List {
            self.mismatch("a float list");
        }
        self.buf.floats.extend_from_slice(v);
        self.buf.offsets.push(self.buf.floats.len() as u32);
        self.bit(true);
    }

    /// Drop every row from `rows` on.
    pub fn truncate(&mut self, rows: usize) {
        if rows >= self.rows {
            return;
        }
        let dropped_nulls = (rows..self.rows).filter(|&i| !super::is_valid(&self.buf.validity, i)).count();
        match self.ty {
            OutputType::Int64 | OutputType::Boolean | OutputType::Timestamp => self.buf.ints.truncate(rows),
            OutputType::Float64 => self.buf.floats.truncate(rows),
            OutputType::String => {
                self.buf.bytes.truncate(self.buf.offsets[rows] as usize);
                self.buf.offsets.truncate(rows + 1);
            }
            OutputType::Float64List => {
                self.buf.floats.truncate(self.buf.offsets[rows] as usize);
                self.buf.offsets.truncate(rows + 1);
            }
        }
        self.buf.validity.truncate(rows.div_ceil(8));
        if let Some(last) = self.buf.validity.last_mut().filter(|_| !rows.is_multiple_of(8)) {
            *last &= (1u8 << (rows % 8)) - 1;
        }
        self.nulls -= dropped_nulls;
        self.rows = rows;
    }

    /// The finished column; its validity bitmap is dropped when nothing is null.
    pub fn finish(mut self) -> ColumnBuf {
        if self.nulls == 0 {
            self.buf.validity.clear();
        }
        self.buf
    }
}

/// Where a column transform writes its output rows for the current input row.
pub struct Emitter {
    fields: &'static [OutputField],
    columns: Vec<ColumnBuilder>,
    /// Which columns the row being written has set.
    set: Vec<bool>,
    origins: Vec<u32>,
    counters: Vec<(&'static str, u64)>,
    origin: u32,
    mark: usize,
}

impl Emitter {
    pub fn new(fields: &'static [OutputField], capacity: usize) -> Self {
        Emitter {
            fields,
            columns: fields.iter().map(|f| ColumnBuilder::new(f.ty, capacity)).collect(),
            set: vec![false; fields.len()],
            origins: Vec::with_capacity(capacity),
            counters: Vec::new(),
            origin: 0,
            mark: 0,
        }
    }

    /// Start the output of input row `origin`.
    pub fn begin(&mut self, origin: u32) {
        self.origin = origin;
        self.mark = self.origins.len();
    }

    /// Drop whatever the current input row emitted (it was refused after emitting).
    pub fn rollback(&mut self) {
        for c in &mut self.columns {
            c.truncate(self.mark);
        }
        self.origins.truncate(self.mark);
    }

    /// Emit one output row: `write` sets its fields by name; fields it does not set are null.
    pub fn emit(&mut self, write: impl FnOnce(&mut RowOut<'_>)) {
        self.set.iter_mut().for_each(|s| *s = false);
        let mut row = RowOut { fields: self.fields, columns: &mut self.columns, set: &mut self.set, next: 0 };
        write(&mut row);
        for (c, set) in self.columns.iter_mut().zip(&self.set) {
            if !set {
                c.push_null();
            }
        }
        self.origins.push(self.origin);
    }

    /// Add `delta` to the counter `name` (summed per batch, reported to the host once).
    pub fn count(&mut self, name: &'static str, delta: u64) {
        match self.counters.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += delta,
            None => self.counters.push((name, delta)),
        }
    }

    /// Rows, columns, origins and counters.
    pub fn finish(self) -> (usize, Vec<ColumnBuf>, Vec<u32>, Counters) {
        (self.origins.len(), self.columns.into_iter().map(ColumnBuilder::finish).collect(), self.origins, self.counters)
    }
}

/// Counters a batch bumped: `(name, total)`.
pub type Counters = Vec<(&'static str, u64)>;

/// The output row being written. Setting a field twice, a field that is not
/// declared, or a value of the wrong type is a bug in the transform: it panics,
/// and the host dead-letters the record with the message.
pub struct RowOut<'e> {
    fields: &'static [OutputField],
    columns: &'e mut [ColumnBuilder],
    set: &'e mut [bool],
    /// Where the next lookup starts: fields are usually set in declared order.
    next: usize,
}

impl RowOut<'_> {
    fn slot(&mut self, name: &str) -> &mut ColumnBuilder {
        let n = self.fields.len();
        // From after the last field set (fields are mostly set in declared order);
        // the same literal (see `ColumnsView::column`) answers before the text.
        let next = self.next.min(n);
        let i = (next..n)
            .chain(0..next)
            .find(|&i| super::read::same_literal(self.fields[i].name, name) || self.fields[i].name == name)
            .unwrap_or_else(|| panic!("the transform writes `{name}`, which is not among its declared OUTPUT columns"));
        if std::mem::replace(&mut self.set[i], true) {
            panic!("the transform sets `{name}` twice in one row");
        }
        self.next = i + 1;
        &mut self.columns[i]
    }

    pub fn int(&mut self, name: &str, v: Option<i64>) -> &mut Self {
        let c = self.slot(name);
        match v {
            Some(v) => c.push_int(v),
            None => c.push_null(),
        }
        self
    }

    /// A timestamp, microseconds since the Unix epoch (UTC).
    pub fn timestamp_us(&mut self, name: &str, v: Option<i64>) -> &mut Self {
        self.int(name, v)
    }

    pub fn float(&mut self, name: &str, v: Option<f64>) -> &mut Self {
        let c = self.slot(name);
        match v {
            Some(v) => c.push_float(v),
            None => c.push_null(),
        }
        self
    }

    pub fn bool(&mut self, name: &str, v: Option<bool>) -> &mut Self {
        let c = self.slot(name);
        match v {
            Some(v) => c.push_bool(v),
            None => c.push_null(),
        }
        self
    }

    pub fn str(&mut self, name: &str, v: Option<&str>) -> &mut Self {
        let c = self.slot(name);
        match v {
            Some(v) => c.push_str(v),
            None => c.push_null(),
        }
        self
    }

    pub fn floats(&mut self, name: &str, v: Option<&[f64]>) -> &mut Self {
        let c = self.slot(name);
        match v {
            Some(v) => c.push_floats(v),
            None => c.push_null(),
        }
        self
    }
}
