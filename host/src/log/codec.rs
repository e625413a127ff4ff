//! How one appended batch is laid out as a single value in the store.
//!
//! `count u32 | append_ms i64 | timestamps i64×count | key_ends u32×count |
//! value_ends u32×count | keys | values`, little-endian. The record columns are
//! the same columnar layout the transforms take, so a read is a few memcpys.

use sluice_guest::{BatchBuf, BatchRef};
use std::ops::Range;

const HEADER: usize = 4 + 8;

/// Largest stored value the log writes: an append bigger than this is split into
/// several stored batches. A read loads whole stored values, so their size bounds
/// how much a fetch reads beyond what it asked for; large values also miss the
/// store's page cache and cost a fresh zeroed buffer per read.
pub const CHUNK_BYTES: usize = 256 << 10;

/// Split `batch` into consecutive record ranges of at most `limit` encoded bytes
/// each (a single larger record gets a range of its own).
pub fn chunks(batch: &BatchRef<'_>, limit: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for i in 0..batch.len() {
        let r = batch.get(i);
        let bytes = 16 + r.key.len() + r.value.len();
        if i > start && size + bytes > limit {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += bytes;
    }
    if start < batch.len() {
        out.push(start..batch.len());
    }
    out
}

/// Encode records `records` of `batch` as one stored value.
pub fn encode(batch: &BatchRef<'_>, records: Range<usize>, append_ms: i64, out: &mut Vec<u8>) {
    let n = records.len();
    let end_before = |ends: &[u32], i: usize| if i == 0 { 0 } else { ends[i - 1] };
    let (k0, v0) = (end_before(batch.key_ends, records.start), end_before(batch.value_ends, records.start));
    let (k1, v1) = (end_before(batch.key_ends, records.end), end_before(batch.value_ends, records.end));
    out.reserve(HEADER + n * 16 + (k1 - k0) as usize + (v1 - v0) as usize);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&append_ms.to_le_bytes());
    for t in &batch.timestamps[records.clone()] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for e in &batch.key_ends[records.clone()] {
        out.extend_from_slice(&(e - k0).to_le_bytes());
    }
    for e in &batch.value_ends[records.clone()] {
        out.extend_from_slice(&(e - v0).to_le_bytes());
    }
    out.extend_from_slice(&batch.keys[k0 as usize..k1 as usize]);
    out.extend_from_slice(&batch.values[v0 as usize..v1 as usize]);
}

/// A stored batch, decoded lazily.
pub struct StoredBatch<'a> {
    pub count: usize,
    pub append_ms: i64,
    bytes: &'a [u8],
}

impl<'a> StoredBatch<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        if bytes.len() < HEADER {
            return Err(format!("stored batch of {} bytes is shorter than its header", bytes.len()));
        }
        let count = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let append_ms = i64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
        if bytes.len() < HEADER + count * 16 {
            return Err(format!("stored batch claims {count} records but holds {} bytes", bytes.len()));
        }
        Ok(StoredBatch { count, append_ms, bytes })
    }

    fn u32_at(&self, column: usize, i: usize) -> usize {
        let at = HEADER + self.count * 8 + column * self.count * 4 + i * 4;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes")) as usize
    }

    /// Append records `from..` (at most `max`) to `out`; returns how many.
    pub fn copy_into(&self, from: usize, max: usize, out: &mut BatchBuf) -> Result<usize, String> {
        let keys_start = HEADER + self.count * 16;
        let keys_len = if self.count == 0 { 0 } else { self.u32_at(0, self.count - 1) };
        let values_start = keys_start + keys_len;
        let values_len = if self.count == 0 { 0 } else { self.u32_at(1, self.count - 1) };
        if self.bytes.len() != values_start + values_len {
            return Err(format!("stored batch is {} bytes, its offsets say {}", self.bytes.len(), values_start + values_len));
        }
        let to = self.count.min(from.saturating_add(max));
        for i in from..to {
            let ts_at = HEADER + i * 8;
            let ts = i64::from_le_bytes(self.bytes[ts_at..ts_at + 8].try_into().expect("8 bytes"));
            let (ks, ke) = (if i == 0 { 0 } else { self.u32_at(0, i - 1) }, self.u32_at(0, i));
            let (vs, ve) = (if i == 0 { 0 } else { self.u32_at(1, i - 1) }, self.u32_at(1, i));
            if ks > ke || ke > keys_len || vs > ve || ve > values_len {
                return Err(format!("stored batch has inconsistent offsets at record {i}"));
            }
            out.push(&self.bytes[values_start + vs..values_start + ve], &self.bytes[keys_start + ks..keys_start + ke], ts);
        }
        Ok(to.saturating_sub(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_from_any_record() {
        let mut b = BatchBuf::default();
        b.push(b"{\"a\":1}", b"", 5);
        b.push(b"{\"b\":2}", b"key", 6);
        b.push(b"", b"k", -7);
        let mut bytes = Vec::new();
        encode(&b.as_ref(), 0..3, 99, &mut bytes);
        let stored = StoredBatch::parse(&bytes).expect("parses");
        assert_eq!((stored.count, stored.append_ms), (3, 99));
        let mut all = BatchBuf::default();
        assert_eq!(stored.copy_into(0, 10, &mut all), Ok(3));
        assert_eq!(all, b);
        let mut tail = BatchBuf::default();
        assert_eq!(stored.copy_into(1, 1, &mut tail), Ok(1));
        assert_eq!(tail.as_ref().get(0).key, b"key");
        assert!(StoredBatch::parse(&bytes[..bytes.len() - 1]).expect("header ok").copy_into(0, 3, &mut tail).is_err());
        assert!(StoredBatch::parse(&bytes[..5]).is_err());
    }

    #[test]
    fn chunks_round_trip_to_the_same_records() {
        let mut b = BatchBuf::default();
        for i in 0..100u32 {
            let value = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i as usize));
            b.push(value.as_bytes(), i.to_string().as_bytes(), i as i64);
        }
        let batch = b.as_ref();
        let ranges = chunks(&batch, 600);
        assert!(ranges.len() > 5, "{ranges:?}");
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start && !w[0].is_empty()));
        assert_eq!(ranges.last().map(|r| r.end), Some(100));
        let mut back = BatchBuf::default();
        for r in ranges {
            let mut bytes = Vec::new();
            encode(&batch, r.clone(), 1, &mut bytes);
            assert!(bytes.len() <= 600 + HEADER || r.len() == 1, "chunk {r:?} is {} bytes", bytes.len());
            let stored = StoredBatch::parse(&bytes).expect("parses");
            assert_eq!(stored.copy_into(0, usize::MAX, &mut back), Ok(r.len()));
        }
        assert_eq!(back, b);
        // A record larger than the limit still gets stored, alone.
        assert_eq!(chunks(&batch, 10).len(), 100);
        assert!(chunks(&BatchBuf::default().as_ref(), 10).is_empty());
    }
}
