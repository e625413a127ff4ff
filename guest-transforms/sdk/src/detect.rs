//! Detectors: transforms that emit an action record when a condition holds.
//!
//! A pipeline's `[[pipeline.action]]` runs a detector over its cleaned records
//! or its window rows, and delivers whatever the detector emits to a webhook.
//! The host hands the detector each row wrapped in an envelope, so one
//! component serves any settings and any row shape:
//!
//! ```json
//! {"when": {"column": "post_count", "above": 100}, "record": {...}, "previous": {...} | null}
//! ```
//!
//! `when` is the action's `[pipeline.action.when]` table, `record` the row, and
//! `previous` (window rows only) the same group's row of the window before, as
//! the host last saw it. A detector is one function from the envelope to
//! "emit this action" or "nothing":
//!
//! ```ignore
//! struct Busy;
//! impl sluice_guest::detect::Detector for Busy {
//!     const DESCRIPTOR: sluice_guest::Descriptor = sluice_guest::Descriptor {
//!         name: "busy", version: "1.0.0", input_kind: "detector-envelope", output_kind: "action",
//!     };
//!     fn detect(e: &sluice_guest::detect::Envelope) -> Result<Option<serde_json::Value>, sluice_guest::Reject> {
//!         let n = sluice_guest::detect::Envelope::field_f64(&e.record, "post_count")?.unwrap_or(0.0);
//!         Ok((n > 100.0).then(|| e.action("busy", format!("{n} posts"), Default::default())))
//!     }
//! }
//! sluice_guest::export_transform!(sluice_guest::detect::Detect<Busy>);
//! ```

use crate::{Descriptor, Output, Record, Reject, Transform};
use serde_json::{Map, Value};
use std::marker::PhantomData;

/// The input kind a detector declares: the host's envelope.
pub const ENVELOPE_KIND: &str = "detector-envelope";
/// The output kind of a detector: action records.
pub const ACTION_KIND: &str = "action";

/// One row as a detector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The action's settings (`[pipeline.action.when]`).
    pub when: Map<String, Value>,
    /// The row: a cleaned record or a window row.
    pub record: Value,
    /// The same group's row of the previous window, when the host has one.
    pub previous: Option<Value>,
}

impl Envelope {
    /// Read an envelope; anything else is refused with a reason.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, Reject> {
        let mut v: Map<String, Value> = match serde_json::from_slice(bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(Reject::from("a detector reads an envelope object {\"when\", \"record\", \"previous\"}")),
            Err(e) => return Err(Reject::from(format!("the envelope is not JSON: {e}"))),
        };
        let when = match v.remove("when") {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(Reject::from("the envelope's `when` is not an object")),
        };
        let record = v.remove("record").ok_or_else(|| Reject::from("the envelope has no `record`"))?;
        let previous = v.remove("previous").filter(|p| !p.is_null());
        Ok(Envelope { when, record, previous })
    }

    /// A setting that must be a string.
    pub fn setting_str(&self, name: &str) -> Result<&str, Reject> {
        match self.when.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Reject::from(format!("setting `{name}` must be a string"))),
            None => Err(Reject::from(format!("setting `{name}` is missing"))),
        }
    }

    /// A setting that must be a number, if present.
    pub fn setting_f64(&self, name: &str) -> Result<Option<f64>, Reject> {
        match self.when.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| Reject::from(format!("setting `{name}` must be a number"))),
        }
    }

    /// A numeric field of the row (a JSON number, or a string holding one).
    /// `None` when the field is absent or null.
    pub fn field_f64(row: &Value, field: &str) -> Result<Option<f64>, Reject> {
        match row.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| Reject::from(format!("field `{field}` ({s:?}) is not a number"))),
            Some(_) => Err(Reject::from(format!("field `{field}` is not a number"))),
        }
    }

    /// The action record every built-in emits: which detector fired, why, and the row.
    pub fn action(&self, detector: &str, reason: String, details: Map<String, Value>) -> Value {
        let mut m = Map::new();
        m.insert("detector".into(), Value::String(detector.into()));
        m.insert("reason".into(), Value::String(reason));
        for (k, v) in details {
            m.insert(k, v);
        }
        m.insert("record".into(), self.record.clone());
        if let Some(p) = &self.previous {
            m.insert("previous".into(), p.clone());
        }
        Value::Object(m)
    }
}

/// A condition over one row: `Some(action)` when it holds.
pub trait Detector {
    const DESCRIPTOR: Descriptor;
    fn detect(envelope: &Envelope) -> Result<Option<Value>, Reject>;
}

/// Adapts a [`Detector`] to the transform world: export it with
/// `sluice_guest::export_transform!(sluice_guest::detect::Detect<MyDetector>)`.
pub struct Detect<T>(PhantomData<T>);

impl<T: Detector> Transform for Detect<T> {
    const DESCRIPTOR: Descriptor = T::DESCRIPTOR;

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        let envelope = Envelope::parse(record.value)?;
        if let Some(action) = T::detect(&envelope)? {
            out.count("actions", 1);
            out.emit(|buf| serde_json::to_writer(buf, &action).expect("a JSON value serializes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuf, run_batch};
    use serde_json::json;

    struct Above;
    impl Detector for Above {
        const DESCRIPTOR: Descriptor = Descriptor { name: "above", version: "1.0.0", input_kind: ENVELOPE_KIND, output_kind: ACTION_KIND };
        fn detect(e: &Envelope) -> Result<Option<Value>, Reject> {
            let limit = e.setting_f64("above")?.ok_or_else(|| Reject::from("no limit"))?;
            let n = Envelope::field_f64(&e.record, "n")?.unwrap_or(0.0);
            Ok((n > limit).then(|| e.action("above", format!("{n} > {limit}"), Map::new())))
        }
    }

    #[test]
    fn a_detector_emits_only_when_its_condition_holds_and_refuses_bad_envelopes() {
        let mut input = BatchBuf::default();
        for v in [
            json!({"when": {"above": 5}, "record": {"n": 7}}),
            json!({"when": {"above": 5}, "record": {"n": 3}}),
            json!([1]),
            json!({"when": {}, "record": {}}),
        ] {
            input.push(v.to_string().as_bytes(), b"", 0);
        }
        let r = run_batch::<Detect<Above>>(&input.as_ref());
        assert_eq!(r.origins, vec![0]);
        let action: Value = serde_json::from_slice(r.output.as_ref().get(0).value).unwrap();
        assert_eq!(action, json!({"detector": "above", "reason": "7 > 5", "record": {"n": 7}}));
        assert_eq!(r.rejections.iter().map(|r| r.index).collect::<Vec<_>>(), vec![2, 3]);
        assert!(r.rejections[0].reason.contains("envelope object"), "{}", r.rejections[0].reason);
        assert_eq!(r.rejections[1].reason, "no limit");
    }
}
