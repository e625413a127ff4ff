//! JSON values one per line, as the log, the raw landing and dead letters keep them.

use std::borrow::Cow;

/// `value` on a single line: unchanged when it already is (the common case,
/// no parsing), else parsed and written back compactly (a pretty-printed value
/// from a producer). Fails when a value spanning lines is not JSON.
pub(crate) fn one_line(value: &[u8]) -> Result<Cow<'_, [u8]>, serde_json::Error> {
    if !value.contains(&b'\n') && !value.contains(&b'\r') {
        return Ok(Cow::Borrowed(value));
    }
    let parsed: serde_json::Value = serde_json::from_slice(value)?;
    serde_json::to_vec(&parsed).map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn compacts_only_values_that_span_lines() {
        assert_eq!(&*one_line(br#"{"a": 1}"#).expect("json"), br#"{"a": 1}"#);
        assert_eq!(&*one_line(b"{\n  \"a\": [1,\r\n 2]\n}").expect("json"), br#"{"a":[1,2]}"#);
        assert!(one_line(b"{\n not json").is_err());
    }
}
