//! The columnar batch layout shared by guests and the host.
//!
//! Record `i` occupies `values[value_ends[i-1]..value_ends[i]]` (0 for `i = 0`);
//! keys likewise. The layout crosses the Wasm boundary as five buffers, so the
//! cost of a call does not grow with the number of fields or records.

/// A borrowed view of a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchRef<'a> {
    pub values: &'a [u8],
    pub value_ends: &'a [u32],
    pub keys: &'a [u8],
    pub key_ends: &'a [u32],
    pub timestamps: &'a [i64],
}

/// One record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub value: &'a [u8],
    /// Empty when the record had no key.
    pub key: &'a [u8],
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl<'a> BatchRef<'a> {
    pub fn len(&self) -> usize {
        self.value_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value_ends.is_empty()
    }

    pub fn values_len(&self) -> usize {
        self.values.len()
    }

    /// The layout is produced by the other side of the boundary, so it is not
    /// trusted: a malformed batch yields an error rather than a panic.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.value_ends.len();
        if self.key_ends.len() != n || self.timestamps.len() != n {
            return Err(format!("batch columns disagree: {n} value ends, {} key ends, {} timestamps", self.key_ends.len(), self.timestamps.len()));
        }
        check_ends("value", self.value_ends, self.values.len())?;
        check_ends("key", self.key_ends, self.keys.len())
    }

    /// Record `i`. Panics if `i` is out of range or the batch is malformed;
    /// call [`BatchRef::validate`] first on untrusted batches.
    pub fn get(&self, i: usize) -> Record<'a> {
        let vs = if i == 0 { 0 } else { self.value_ends[i - 1] as usize };
        let ks = if i == 0 { 0 } else { self.key_ends[i - 1] as usize };
        Record { value: &self.values[vs..self.value_ends[i] as usize], key: &self.keys[ks..self.key_ends[i] as usize], timestamp: self.timestamps[i] }
    }

    pub fn iter(&self) -> impl Iterator<Item = Record<'a>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

fn check_ends(what: &str, ends: &[u32], buf_len: usize) -> Result<(), String> {
    let mut prev = 0u32;
    for (i, &end) in ends.iter().enumerate() {
        if end < prev {
            return Err(format!("{what} end offset {i} ({end}) is before the previous one ({prev})"));
        }
        prev = end;
    }
    if prev as usize != buf_len {
        return Err(format!("{what} offsets end at {prev} but the buffer holds {buf_len} bytes"));
    }
    Ok(())
}

/// An owned batch in the columnar layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchBuf {
    pub values: Vec<u8>,
    pub value_ends: Vec<u32>,
    pub keys: Vec<u8>,
    pub key_ends: Vec<u32>,
    pub timestamps: Vec<i64>,
}

impl BatchBuf {
    pub fn with_capacity(records: usize, value_bytes: usize) -> Self {
        Self {
            values: Vec::with_capacity(value_bytes),
            value_ends: Vec::with_capacity(records),
            keys: Vec::new(),
            key_ends: Vec::with_capacity(records),
            timestamps: Vec::with_capacity(records),
        }
    }

    pub fn push(&mut self, value: &[u8], key: &[u8], timestamp: i64) {
        self.values.extend_from_slice(value);
        self.keys.extend_from_slice(key);
        self.seal(timestamp);
    }

    /// Close the record whose value and key bytes were appended directly.
    pub(crate) fn seal(&mut self, timestamp: i64) {
        self.value_ends.push(self.values.len() as u32);
        self.key_ends.push(self.keys.len() as u32);
        self.timestamps.push(timestamp);
    }

    pub fn len(&self) -> usize {
        self.value_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value_ends.is_empty()
    }

    /// A batch of JSON values without keys (for tests and tools).
    pub fn from_json(values: &[serde_json::Value]) -> Self {
        let mut b = BatchBuf::default();
        for v in values {
            b.push(v.to_string().as_bytes(), b"", 0);
        }
        b
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.value_ends.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.timestamps.clear();
    }

    pub fn as_ref(&self) -> BatchRef<'_> {
        BatchRef { values: &self.values, value_ends: &self.value_ends, keys: &self.keys, key_ends: &self.key_ends, timestamps: &self.timestamps }
    }

    /// Total bytes of values and keys: what the batch weighs in memory and on the wire.
    pub fn byte_size(&self) -> usize {
        self.values.len() + self.keys.len() + self.value_ends.len() * 16
    }
}

impl<'a> FromIterator<Record<'a>> for BatchBuf {
    fn from_iter<I: IntoIterator<Item = Record<'a>>>(iter: I) -> Self {
        let mut b = BatchBuf::default();
        for r in iter {
            b.push(r.value, r.key, r.timestamp);
        }
        b
    }
}

/// Why a transform refused a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject(pub String);

impl<S: Into<String>> From<S> for Reject {
    fn from(s: S) -> Self {
        Reject(s.into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: u32,
    pub reason: String,
}

/// What a batch produced.
#[derive(Debug, Clone, Default)]
pub struct BatchResult {
    pub output: BatchBuf,
    /// Input index of each output record.
    pub origins: Vec<u32>,
    pub rejections: Vec<Rejection>,
    /// Counters the transform bumped while processing this batch.
    pub counters: Vec<(&'static str, u64)>,
}

/// Where a transform writes its output records for the current input record.
pub struct Output {
    batch: BatchBuf,
    origins: Vec<u32>,
    counters: Vec<(&'static str, u64)>,
    // The input record being processed, and where its outputs start (for rollback).
    origin: u32,
    in_key: Vec<u8>,
    timestamp: i64,
    mark: (usize, usize, usize),
}

impl Output {
    pub(crate) fn with_capacity(records: usize, value_bytes: usize) -> Self {
        Output {
            batch: BatchBuf::with_capacity(records, value_bytes),
            origins: Vec::with_capacity(records),
            counters: Vec::new(),
            origin: 0,
            in_key: Vec::new(),
            timestamp: 0,
            mark: (0, 0, 0),
        }
    }

    pub(crate) fn begin(&mut self, origin: u32, key: &[u8], timestamp: i64) {
        self.origin = origin;
        self.in_key.clear();
        self.in_key.extend_from_slice(key);
        self.timestamp = timestamp;
        self.mark = (self.batch.len(), self.batch.values.len(), self.batch.keys.len());
    }

    /// Drop whatever the current record emitted (it was rejected after emitting).
    pub(crate) fn rollback(&mut self) {
        let (n, v, k) = self.mark;
        self.batch.value_ends.truncate(n);
        self.batch.key_ends.truncate(n);
        self.batch.timestamps.truncate(n);
        self.batch.values.truncate(v);
        self.batch.keys.truncate(k);
        self.origins.truncate(n);
    }

    /// Emit one output record, writing its value into the buffer given to `write`.
    /// It keeps the input record's key and timestamp.
    pub fn emit(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.batch.values);
        self.batch.keys.extend_from_slice(&self.in_key);
        self.batch.seal(self.timestamp);
        self.origins.push(self.origin);
    }

    /// Emit one output record with its own key and timestamp.
    pub fn emit_keyed(&mut self, key: &[u8], timestamp: i64, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.batch.values);
        self.batch.keys.extend_from_slice(key);
        self.batch.seal(timestamp);
        self.origins.push(self.origin);
    }

    /// Add `delta` to the counter `name` (summed per batch, reported to the host once).
    pub fn count(&mut self, name: &'static str, delta: u64) {
        match self.counters.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += delta,
            None => self.counters.push((name, delta)),
        }
    }

    pub(crate) fn finish(self) -> (BatchBuf, Vec<u32>, Vec<(&'static str, u64)>) {
        (self.batch, self.origins, self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_records_through_the_columnar_layout() {
        let mut b = BatchBuf::default();
        b.push(b"{\"a\":1}", b"k1", 10);
        b.push(b"", b"", 11);
        b.push(b"[2]", b"key-3", 12);
        let r = b.as_ref();
        r.validate().expect("valid");
        let got: Vec<_> = r.iter().collect();
        assert_eq!(got[0], Record { value: b"{\"a\":1}", key: b"k1", timestamp: 10 });
        assert_eq!(got[1], Record { value: b"", key: b"", timestamp: 11 });
        assert_eq!(got[2], Record { value: b"[2]", key: b"key-3", timestamp: 12 });
        let copy: BatchBuf = r.iter().collect();
        assert_eq!(copy, b);
    }

    #[test]
    fn validate_refuses_inconsistent_offsets() {
        let bad = BatchRef { values: b"abc", value_ends: &[2, 1], keys: b"", key_ends: &[0, 0], timestamps: &[0, 0] };
        assert!(bad.validate().unwrap_err().contains("before the previous"));
        let short = BatchRef { values: b"abc", value_ends: &[2], keys: b"", key_ends: &[0], timestamps: &[0] };
        assert!(short.validate().unwrap_err().contains("buffer holds 3"));
        let ragged = BatchRef { values: b"", value_ends: &[0], keys: b"", key_ends: &[], timestamps: &[0] };
        assert!(ragged.validate().unwrap_err().contains("disagree"));
    }
}
