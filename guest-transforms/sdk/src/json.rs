//! Lenient JSON reading and fast JSON writing for transforms.
//!
//! Upstream data is dirty: a field may be missing, null, of the wrong type or a
//! placeholder string. [`Field`] accepts any JSON value without failing the
//! record, so a transform can decide per field what to keep, null or count.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Any JSON value, as far as a flat record cares.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<'a> {
    /// The key was absent.
    #[default]
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array or object (skipped, not kept).
    Nested,
}

impl<'a> Field<'a> {
    /// The string, if this is a non-blank string.
    pub fn text(&self) -> Option<&str> {
        match self {
            Field::Str(s) if !s.trim().is_empty() => Some(s),
            _ => None,
        }
    }

    /// An integer from a JSON integer or a string of decimal digits.
    pub fn int_lenient(&self) -> Option<i64> {
        match self {
            Field::Int(i) => Some(*i),
            Field::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Field::Str(s) => s.trim().parse().ok(),
            Field::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// A float from a JSON number or a numeric string.
    pub fn float_lenient(&self) -> Option<f64> {
        match self {
            Field::Int(i) => Some(*i as f64),
            Field::Float(f) => Some(*f),
            Field::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    /// The JSON type, in words, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Field::Missing => "missing",
            Field::Null => "null",
            Field::Bool(_) => "a boolean",
            Field::Int(_) => "an integer",
            Field::Float(_) => "a float",
            Field::Str(_) => "a string",
            Field::Nested => "an array or object",
        }
    }

    /// True when the field carries no value at all (missing or null).
    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Missing | Field::Null)
    }
}

// Like `Cow<'a, str>`: borrows from the input when the string has no escapes.
impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor(std::marker::PhantomData))
    }
}

struct FieldVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
    type Value = Field<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map(Field::Int).unwrap_or(Field::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Field::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Nested)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Nested)
    }
}

/// A row id: it must be a JSON integer, or the record cannot be joined and is refused.
pub fn row_id(field: &Field<'_>, name: &str) -> Result<i64, crate::Reject> {
    match field {
        Field::Int(i) => Ok(*i),
        Field::Missing => Err(crate::Reject(format!("no row id: field `{name}` is missing"))),
        other => Err(crate::Reject(format!("no row id: field `{name}` is not an integer ({})", other.type_name()))),
    }
}

/// Parse a record that must be a JSON object into `T` (a struct of [`Field`]s
/// with `#[serde(default)]`). Anything else is refused with a reason.
pub fn parse_object<'a, T: Deserialize<'a>>(value: &'a [u8]) -> Result<T, String> {
    // serde's derived struct visitor also accepts arrays; a record must be an object.
    match value.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err("record is not a JSON object".into()),
        None => return Err("record is empty".into()),
    }
    // Reading from a `str` spares serde_json a UTF-8 check per string: one
    // check of the whole record costs less than a dozen short ones.
    let text = std::str::from_utf8(value).map_err(|e| format!("invalid JSON: the record is not UTF-8 ({e})"))?;
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}

/// Appends JSON to a byte buffer without building an intermediate value.
pub struct JsonWriter<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> JsonWriter<'b> {
    /// Start an object.
    pub fn object(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        JsonWriter { buf, first: true }
    }

    /// Continue the JSON object `object` (e.g. a group key): its fields come
    /// first, the writer's after them. Anything but a JSON object starts an empty one.
    pub fn extend_object(buf: &'b mut Vec<u8>, object: &[u8]) -> Self {
        let trimmed = object.trim_ascii();
        match trimmed.strip_suffix(b"}").filter(|_| trimmed.starts_with(b"{")) {
            Some(open) if open[1..].iter().any(|b| !b.is_ascii_whitespace()) => {
                buf.extend_from_slice(open);
                JsonWriter { buf, first: false }
            }
            _ => JsonWriter::object(buf),
        }
    }

    /// Write a float, or null (NaN and infinities, which JSON cannot hold, become null).
    pub fn float(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        self.key(k);
        match v.filter(|f| f.is_finite()) {
            Some(f) => {
                let _ = serde_json::to_writer(&mut *self.buf, &f);
            }
            None => self.buf.extend_from_slice(b"null"),
        }
        self
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        write_str(self.buf, k);
        self.buf.push(b':');
    }

    pub fn int(&mut self, k: &str, v: Option<i64>) -> &mut Self {
        self.key(k);
        match v {
            Some(v) => self.buf.extend_from_slice(itoa(v, &mut [0u8; 20])),
            None => self.buf.extend_from_slice(b"null"),
        }
        self
    }

    pub fn bool(&mut self, k: &str, v: Option<bool>) -> &mut Self {
        self.key(k);
        self.buf.extend_from_slice(match v {
            Some(true) => b"true",
            Some(false) => b"false",
            None => b"null",
        });
        self
    }

    pub fn str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        self.key(k);
        match v {
            Some(v) => write_str(self.buf, v),
            None => self.buf.extend_from_slice(b"null"),
        }
        self
    }

    /// Write a float array, or null.
    pub fn floats(&mut self, k: &str, v: Option<&[f64]>) -> &mut Self {
        self.key(k);
        match v {
            Some(v) => {
                self.buf.push(b'[');
                for (i, f) in v.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    // serde_json writes the shortest representation that round-trips.
                    let _ = serde_json::to_writer(&mut *self.buf, f);
                }
                self.buf.push(b']');
            }
            None => self.buf.extend_from_slice(b"null"),
        }
        self
    }

    /// Close the object.
    pub fn end(&mut self) {
        self.buf.push(b'}');
    }
}

fn itoa(mut v: i64, scratch: &mut [u8; 20]) -> &[u8] {
    if v == i64::MIN {
        return b"-9223372036854775808";
    }
    let neg = v < 0;
    if neg {
        v = -v;
    }
    let mut i = scratch.len();
    loop {
        i -= 1;
        scratch[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        scratch[i] = b'-';
    }
    &scratch[i..]
}

/// Write `s` as a JSON string literal, escaping as RFC 8259 requires.
///
/// Most strings need no escaping at all, so the work is finding the clean runs
/// fast ([`clean_prefix`]) and copying each in one go.
pub fn write_str(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    loop {
        let clean_end = start + clean_prefix(&bytes[start..]);
        buf.extend_from_slice(&bytes[start..clean_end]);
        let Some(&b) = bytes.get(clean_end) else { break };
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
        }
        start = clean_end + 1;
    }
    buf.push(b'"');
}

/// How many leading bytes of `bytes` need no escaping in a JSON string.
///
/// Plain 64-bit arithmetic over eight bytes at a time, four words per step:
/// in Wasm every loop iteration also pays an epoch check, so fewer, wider
/// steps matter more there than natively.
fn clean_prefix(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 32) {
        if escapes(word(chunk, 0)) | escapes(word(chunk, 8)) | escapes(word(chunk, 16)) | escapes(word(chunk, 24)) != 0 {
            break;
        }
        i += 32;
    }
    while let Some(chunk) = bytes.get(i..i + 8) {
        let found = escapes(word(chunk, 0));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + bytes[i..].iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').unwrap_or(bytes.len() - i)
}

fn word(chunk: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(chunk[at..at + 8].try_into().expect("eight bytes"))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is a control character, `"` or `\`.
/// A borrow can also mark a byte above a marked one, never below it, so the
/// lowest mark is exact (which is all [`clean_prefix`] reads).
fn escapes(x: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    // Below 0x20 (bytes >= 0x80 have the high bit set and are excluded by `!x`).
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    control | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug)]
    #[serde(default)]
    struct Probe<'a> {
        #[serde(borrow)]
        a: Field<'a>,
        #[serde(borrow)]
        b: Field<'a>,
    }

    #[test]
    fn fields_accept_every_json_type() {
        let p: Probe = parse_object(br#"{"a": [1, {"x": 2}], "c": 1}"#).expect("object");
        assert_eq!(p.a, Field::Nested);
        assert_eq!(p.b, Field::Missing);
        let p: Probe = parse_object(br#"{"a": "x\"y", "b": 18446744073709551615}"#).expect("object");
        assert_eq!(p.a, Field::Str("x\"y".into()));
        assert!(matches!(p.b, Field::Float(_)));
    }

    #[test]
    fn records_in_any_utf8_parse_and_other_bytes_are_refused() {
        let long = "é✓ ".repeat(20);
        let json = format!(r#"{{"a": "{long}", "b": "plain ascii, longer than thirty-two bytes"}}"#);
        let p: Probe = parse_object(json.as_bytes()).expect("UTF-8 object");
        assert_eq!(p.a, Field::Str(long.into()));
        assert_eq!(p.b.text(), Some("plain ascii, longer than thirty-two bytes"));
        for at in [2, 40] {
            let mut bytes = br#"{"a": "0123456789012345678901234567890123456789"}"#.to_vec();
            bytes[6 + at] = 0xff;
            let err = parse_object::<Probe>(&bytes).expect_err("refused");
            assert!(err.starts_with("invalid JSON: the record is not UTF-8"), "{err}");
        }
    }

    #[test]
    fn only_objects_are_records() {
        assert_eq!(parse_object::<Probe>(b" [1,2]").err().as_deref(), Some("record is not a JSON object"));
        assert_eq!(parse_object::<Probe>(b"  ").err().as_deref(), Some("record is empty"));
        assert!(parse_object::<Probe>(b"{\"a\":").unwrap_err().starts_with("invalid JSON"));
    }

    #[test]
    fn writer_escapes_and_round_trips() {
        let mut buf = Vec::new();
        JsonWriter::object(&mut buf).int("i", Some(-42)).int("n", None).str("s", Some("a\"b\\c\n\u{1}é")).floats("f", Some(&[-89.9787, 1.0])).end();
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("valid JSON");
        assert_eq!(v["i"], -42);
        assert!(v["n"].is_null());
        assert_eq!(v["s"], "a\"b\\c\n\u{1}é");
        assert_eq!(v["f"][0], -89.9787);
        assert_eq!(itoa(i64::MIN, &mut [0; 20]), b"-9223372036854775808");
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
    }

    #[test]
    fn escaping_agrees_with_serde_json_at_every_position() {
        let specials = ["\"", "\\", "\n", "\r", "\t", "\u{1}", "\u{1f}", "é", "✓", " ", "a", "\u{7f}"];
        // Up to 70 bytes: the 32-byte steps, the 8-byte steps and the tail all see each special.
        for len in 0..70 {
            for sp in specials {
                for pos in 0..=len {
                    let mut s: String = "x".repeat(len);
                    s.insert_str(pos, sp);
                    let mut mine = Vec::new();
                    write_str(&mut mine, &s);
                    let theirs: String = serde_json::from_slice(&mine).unwrap_or_else(|e| panic!("{s:?} -> {:?}: {e}", String::from_utf8_lossy(&mine)));
                    assert_eq!(theirs, s);
                }
            }
        }
    }

    #[test]
    fn a_row_continues_its_group_key() {
        let mut buf = Vec::new();
        JsonWriter::extend_object(&mut buf, br#"{"country":"Chad"}"#).int("n", Some(2)).end();
        assert_eq!(buf, br#"{"country":"Chad","n":2}"#);
        for empty in [&b"{}"[..], b" { } ", b"", b"[1]"] {
            buf.clear();
            JsonWriter::extend_object(&mut buf, empty).float("x", Some(0.5)).float("nan", Some(f64::NAN)).end();
            assert_eq!(buf, br#"{"x":0.5,"nan":null}"#, "{:?}", String::from_utf8_lossy(empty));
        }
    }
}
