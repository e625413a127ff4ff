//! How one appended batch is laid out as a single value in the store.
//!
//! `count u32 | append_ms i64 | timestamps i64×count | key_ends u32×count |
//! value_ends u32×count | keys | values`, little-endian. The record columns are
//! the same columnar layout the transforms take, so a read is a few memcpys.

use sluice_guest::{BatchBuf, BatchRef};

const HEADER: usize = 4 + 8;

pub fn encode(batch: &BatchRef<'_>, append_ms: i64, out: &mut Vec<u8>) {
    let n = batch.len();
    out.reserve(HEADER + n * 16 + batch.keys.len() + batch.values.len());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&append_ms.to_le_bytes());
    for t in batch.timestamps {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for e in batch.key_ends {
        out.extend_from_slice(&e.to_le_bytes());
    }
    for e in batch.value_ends {
        out.extend_from_slice(&e.to_le_bytes());
    }
    out.extend_from_slice(batch.keys);
    out.extend_from_slice(batch.values);
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
        encode(&b.as_ref(), 99, &mut bytes);
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
}
