//! `{{name}}`: a sluice detector — it emits an action when its condition holds
//! for a row, and nothing otherwise.
//!
//! Name it in a pipeline's `[[pipeline.action]]` (`detector = "{{name}}"`,
//! see docs/actions.md): sluice hands it each cleaned record (or window row)
//! in an envelope with the action's `when` settings, and delivers what it
//! emits to the action's webhook.
//!
//! ```toml
//! [[pipeline.action]]
//! name = "watch"
//! on = "records"
//! detector = "{{name}}"
//! when = { categories = ["travel", "finance"] }
//! webhook = { url = "https://hooks.example.com/${HOOK_ID}" }
//! ```

use serde_json::{Map, Value, json};
use sluice_guest::detect::{ACTION_KIND, Detector, ENVELOPE_KIND, Envelope};
use sluice_guest::{Descriptor, Reject};

pub struct {{type_name}};

/// Watched when the action's `when` table names no `categories`.
const WATCHED: &[&str] = &["travel", "finance"];

impl Detector for {{type_name}} {
    // Bump `version` for every change you deploy.
    const DESCRIPTOR: Descriptor = Descriptor { name: "{{name}}", version: "0.1.0", input_kind: ENVELOPE_KIND, output_kind: ACTION_KIND };

    fn detect(e: &Envelope) -> Result<Option<Value>, Reject> {
        let watched: Vec<&str> = match e.when.get("categories") {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(Reject::from("setting `categories` must be a list of strings")),
            None => WATCHED.to_vec(),
        };
        let Some(category) = e.record.get("category").and_then(Value::as_str).map(str::trim) else { return Ok(None) };
        if !watched.iter().any(|w| w.eq_ignore_ascii_case(category)) {
            return Ok(None);
        }
        let details: Map<String, Value> = [("category".to_owned(), json!(category))].into_iter().collect();
        Ok(Some(e.action("{{name}}", "watched category".into(), details)))
    }
}

sluice_guest::export_transform!(sluice_guest::detect::Detect<{{type_name}}>);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::detect::Detect;
    use sluice_guest::{BatchBuf, run_batch};

    /// The actions emitted for these rows, each wrapped as sluice wraps it.
    fn actions(when: Value, rows: &[Value]) -> Vec<Value> {
        let envelopes: Vec<Value> = rows.iter().map(|r| json!({"when": when, "record": r, "previous": null})).collect();
        let res = run_batch::<Detect<{{type_name}}>>(&BatchBuf::from_json(&envelopes).as_ref());
        res.output.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("JSON")).collect()
    }

    #[test]
    fn emits_only_when_the_condition_holds() {
        let got = actions(json!({}), &[json!({"ind": 1, "category": "Travel"}), json!({"ind": 2, "category": "art"}), json!({"ind": 3})]);
        let want = json!({"detector": "{{name}}", "reason": "watched category", "category": "Travel", "record": {"ind": 1, "category": "Travel"}});
        assert_eq!(got, vec![want]);
        assert_eq!(actions(json!({"categories": ["art"]}), &[json!({"category": "art"})]).len(), 1, "the action's `when` chooses");
    }
}
