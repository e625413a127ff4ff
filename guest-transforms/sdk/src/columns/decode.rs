//! Records' JSON → the input columns a transform declares: the host's one
//! parse of each record (natively, so a guest never parses JSON).

use super::{ColumnBuf, InputType, ValueKind};
use crate::BatchRef;
use crate::json::Field;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The decoded batch: one row per accepted record.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One column per declared field, in order.
    pub columns: Vec<ColumnBuf>,
    /// Input index of each row (records the decoder refused have none).
    pub accepted: Vec<u32>,
    /// `(input index, reason)` of records that are not JSON objects.
    pub refused: Vec<(u32, String)>,
    /// Values that did not fit their declared type and became null.
    pub counters: Vec<(&'static str, u64)>,
}

impl Decoded {
    pub fn rows(&self) -> usize {
        self.accepted.len()
    }
}

/// Counter of a value that is not a string where a string was declared.
pub const WRONG_TYPE: &str = "field_wrong_type";
/// Counter of a value that does not parse as its declared int64, float64, boolean or timestamp.
pub const UNPARSED: &str = "field_unparsed";

/// Decode each record of `input` into the `fields` columns. A record that is
/// not a JSON object (or not JSON) is refused with the reason 0.1.0
/// transforms give; a value that does not fit its type is null and counted.
pub fn decode_json(fields: &[(&str, InputType)], input: &BatchRef<'_>) -> Decoded {
    let n = input.len();
    let mut columns: Vec<Builder> = fields.iter().map(|&(_, ty)| Builder::new(ty, n)).collect();
    let mut out = Decoded { accepted: Vec::with_capacity(n), ..Default::default() };
    let mut slots: Vec<Field<'_>> = vec![Field::Missing; fields.len()];
    let (mut wrong_type, mut unparsed) = (0u64, 0u64);
    for (i, record) in input.iter().enumerate() {
        slots.iter_mut().for_each(|s| *s = Field::Missing);
        if let Err(reason) = parse_into(record.value, fields, &mut slots) {
            out.refused.push((i as u32, reason));
            continue;
        }
        for (c, f) in columns.iter_mut().zip(slots.iter()) {
            match c.push(f) {
                Fit::Ok => {}
                Fit::WrongType => wrong_type += 1,
                Fit::Unparsed => unparsed += 1,
            }
        }
        out.accepted.push(i as u32);
    }
    out.columns = columns.into_iter().map(Builder::finish).collect();
    for (name, n) in [(WRONG_TYPE, wrong_type), (UNPARSED, unparsed)] {
        if n > 0 {
            out.counters.push((name, n));
        }
    }
    out
}

/// Parse one record, keeping the declared fields' values in `slots`.
fn parse_into<'a>(value: &'a [u8], fields: &[(&str, InputType)], slots: &mut [Field<'a>]) -> Result<(), String> {
    // The same checks and messages as `json::parse_object`, so a record is
    // refused for the same reason under either contract.
    match value.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err("record is not a JSON object".into()),
        None => return Err("record is empty".into()),
    }
    let text = std::str::from_utf8(value).map_err(|e| format!("invalid JSON: the record is not UTF-8 ({e})"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(ObjectVisitor { fields, slots }).and_then(|()| de.end()).map_err(|e| format!("invalid JSON: {e}"))
}

struct ObjectVisitor<'f, 's, 'a> {
    fields: &'f [(&'f str, InputType)],
    slots: &'s mut [Field<'a>],
}

impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0u64;
        // Keys tend to come in the declared order: look from after the last match first.
        let (n, mut next) = (self.fields.len(), 0usize);
        while let Some(key) = map.next_key_seed(Key)? {
            match (next.min(n)..n).chain(0..next.min(n)).find(|&i| self.fields[i].0 == key.as_ref()) {
                Some(i) => {
                    next = i + 1;
                    // serde's derived structs refuse a repeated field; so do we.
                    if i < 64 && seen & (1 << i) != 0 {
                        return Err(serde::de::Error::custom(format_args!("duplicate field `{key}`")));
                    }
                    seen |= 1u64.checked_shl(i as u32).unwrap_or(0);
                    self.slots[i] = map.next_value()?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

enum Fit {
    Ok,
    WrongType,
    Unparsed,
}

/// One input column being decoded.
struct Builder {
    ty: InputType,
    buf: ColumnBuf,
    rows: usize,
    nulls: usize,
}

impl Builder {
    fn new(ty: InputType, n: usize) -> Self {
        let mut buf = ColumnBuf { validity: Vec::with_capacity(n.div_ceil(8)), ..Default::default() };
        match ty {
            InputType::Any => {
                buf.kinds.reserve(n);
                buf.ints.reserve(n);
                buf.floats.reserve(n);
                buf.offsets.reserve(n + 1);
                buf.offsets.push(0);
            }
            InputType::String => {
                buf.offsets.reserve(n + 1);
                buf.offsets.push(0);
                buf.bytes.reserve(n * 16);
            }
            InputType::Int64 | InputType::Boolean | InputType::Timestamp => buf.ints.reserve(n),
            InputType::Float64 => buf.floats.reserve(n),
        }
        Builder { ty, buf, rows: 0, nulls: 0 }
    }

    fn bit(&mut self, valid: bool) {
        super::push_validity(&mut self.buf.validity, self.rows, valid);
        self.nulls += usize::from(!valid);
        self.rows += 1;
    }

    fn push(&mut self, f: &Field<'_>) -> Fit {
        let absent = matches!(f, Field::Missing | Field::Null);
        match self.ty {
            InputType::Any => {
                let (kind, int, float) = match f {
                    Field::Missing => (ValueKind::Missing, 0, 0.0),
                    Field::Null => (ValueKind::Null, 0, 0.0),
                    Field::Bool(b) => (ValueKind::Boolean, *b as i64, 0.0),
                    Field::Int(i) => (ValueKind::Integer, *i, 0.0),
                    Field::Float(x) => (ValueKind::Float, 0, *x),
                    Field::Str(s) => {
                        self.buf.bytes.extend_from_slice(s.as_bytes());
                        (ValueKind::String, 0, 0.0)
                    }
                    Field::Nested => (ValueKind::Nested, 0, 0.0),
                };
                self.buf.kinds.push(kind as u8);
                self.buf.ints.push(int);
                self.buf.floats.push(float);
                self.buf.offsets.push(self.buf.bytes.len() as u32);
                self.bit(!absent);
                Fit::Ok
            }
            InputType::String => {
                let s = match f {
                    Field::Str(s) => Some(s.as_ref()),
                    _ => None,
                };
                if let Some(s) = s {
                    self.buf.bytes.extend_from_slice(s.as_bytes());
                }
                self.buf.offsets.push(self.buf.bytes.len() as u32);
                self.bit(s.is_some());
                if s.is_none() && !absent { Fit::WrongType } else { Fit::Ok }
            }
            InputType::Int64 => {
                let v = match f {
                    Field::Bool(_) => None,
                    other => other.int_lenient(),
                };
                self.fixed_int(v, absent)
            }
            InputType::Timestamp => {
                let v = match f {
                    Field::Str(s) => crate::time::parse_timestamp_ms(s).and_then(|ms| ms.checked_mul(1000)),
                    Field::Int(ms) => ms.checked_mul(1000),
                    _ => None,
                };
                self.fixed_int(v, absent)
            }
            InputType::Boolean => {
                let v = match f {
                    Field::Bool(b) => Some(*b as i64),
                    _ => None,
                };
                self.fixed_int(v, absent)
            }
            InputType::Float64 => {
                let v = f.float_lenient();
                self.buf.floats.push(v.unwrap_or(0.0));
                self.bit(v.is_some());
                if v.is_none() && !absent { Fit::Unparsed } else { Fit::Ok }
            }
        }
    }

    fn fixed_int(&mut self, v: Option<i64>, absent: bool) -> Fit {
        self.buf.ints.push(v.unwrap_or(0));
        self.bit(v.is_some());
        if v.is_none() && !absent { Fit::Unparsed } else { Fit::Ok }
    }

    fn finish(mut self) -> ColumnBuf {
        // `any` columns say absence through their kinds.
        if self.nulls == 0 || self.ty == InputType::Any {
            self.buf.validity.clear();
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchBuf;
    use crate::columns::ColumnsView;

    fn batch(values: &[&str]) -> BatchBuf {
        let mut b = BatchBuf::default();
        for v in values {
            b.push(v.as_bytes(), b"", 0);
        }
        b
    }

    #[test]
    fn refuses_what_is_not_an_object_and_reads_the_rest_by_type() {
        let fields = [("a", InputType::Any), ("s", InputType::String), ("i", InputType::Int64), ("f", InputType::Float64), ("t", InputType::Timestamp)];
        let b = batch(&[
            r#"{"a": "x\"y", "s": "text", "i": "42", "f": "1.5", "t": "2020-08-28 03:52:47", "other": [1, {"deep": 2}]}"#,
            "[1, 2]",
            r#"{"a": 7, "s": 7, "i": "seven", "f": null, "t": 1598586767000}"#,
            r#"{"a": }"#,
            r#"{"a": 1.25, "a": 2}"#,
            r#"{}"#,
        ]);
        let d = decode_json(&fields, &b.as_ref());
        assert_eq!(d.accepted, vec![0, 2, 5]);
        assert_eq!(d.refused[0], (1, "record is not a JSON object".to_string()));
        assert!(d.refused[1].1.starts_with("invalid JSON:"), "{:?}", d.refused[1]);
        assert!(d.refused[2].1.contains("duplicate field `a`"), "{:?}", d.refused[2]);
        assert_eq!(d.counters, vec![(WRONG_TYPE, 1), (UNPARSED, 1)]);

        let view = ColumnsView::new_typed(&fields, d.rows(), d.columns.iter().map(ColumnBuf::as_ref).collect()).expect("valid");
        let (r0, r1, r2) = (view.row(0), view.row(1), view.row(2));
        assert_eq!(r0.str("a"), Some("x\"y"));
        assert_eq!(r1.field("a"), Field::Int(7));
        assert_eq!(r2.field("a"), Field::Missing);
        assert_eq!((r0.str("s"), r1.str("s"), r2.str("s")), (Some("text"), None, None));
        assert_eq!((r0.int("i"), r1.int("i")), (Some(42), None));
        assert_eq!((r0.float("f"), r1.float("f")), (Some(1.5), None));
        assert_eq!(r0.int("t"), Some(1_598_586_767_000_000));
        assert_eq!(r1.int("t"), Some(1_598_586_767_000_000));
    }

    #[test]
    fn a_view_refuses_buffers_that_break_the_layout() {
        let fields = [("s", InputType::String)];
        let bad_offsets = ColumnBuf { bytes: b"abc".to_vec(), offsets: vec![0, 2, 1], ..Default::default() };
        assert!(ColumnsView::new_typed(&fields, 2, vec![bad_offsets.as_ref()]).is_err());
        let past_end = ColumnBuf { bytes: b"abc".to_vec(), offsets: vec![0, 9], ..Default::default() };
        assert!(ColumnsView::new_typed(&fields, 1, vec![past_end.as_ref()]).is_err());
        let split = ColumnBuf { bytes: "é".as_bytes().to_vec(), offsets: vec![0, 1], ..Default::default() };
        assert!(ColumnsView::new_typed(&fields, 1, vec![split.as_ref()]).is_err());
    }
}
