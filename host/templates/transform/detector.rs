//! `{{name}}`: a sluice detector — a transform that emits an action record only
//! when its condition holds, and nothing otherwise.
//!
//! Put it on a pipeline's cleaned records (or its window rows); each record it
//! emits is one action, for whatever the pipeline does with its output.

use serde::Deserialize;
use sluice_guest::json::{Field, JsonWriter, parse_object};
use sluice_guest::{Descriptor, Output, Record, Reject, Transform};

pub struct {{type_name}};

/// The condition: a category on this list. Change it, or the fields below.
const WATCHED: &[&str] = &["travel", "finance"];

#[derive(Deserialize, Default)]
#[serde(default)]
struct Input<'a> {
    #[serde(borrow)]
    ind: Field<'a>,
    #[serde(borrow)]
    category: Field<'a>,
}

impl Transform for {{type_name}} {
    // Bump `version` for every change you deploy.
    const DESCRIPTOR: Descriptor = Descriptor { name: "{{name}}", version: "0.1.0", input_kind: "any", output_kind: "action" };

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        let input: Input = parse_object(record.value)?;
        let Some(category) = input.category.text().map(str::trim) else { return Ok(()) };
        if !WATCHED.iter().any(|w| w.eq_ignore_ascii_case(category)) {
            return Ok(());
        }
        out.count("matched", 1);
        out.emit(|buf| {
            JsonWriter::object(buf)
                .str("detector", Some("{{name}}"))
                .str("reason", Some("watched category"))
                .str("category", Some(category))
                .int("ind", input.ind.int_lenient())
                .end();
        });
        Ok(())
    }
}

sluice_guest::export_transform!({{type_name}});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::{BatchBuf, run_batch};

    fn actions(records: &[Value]) -> Vec<Value> {
        let res = run_batch::<{{type_name}}>(&BatchBuf::from_json(records).as_ref());
        res.output.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("JSON")).collect()
    }

    #[test]
    fn emits_only_when_the_condition_holds() {
        let got = actions(&[json!({"ind": 1, "category": "Travel"}), json!({"ind": 2, "category": "art"}), json!({"ind": 3})]);
        assert_eq!(got, vec![json!({"detector": "{{name}}", "reason": "watched category", "category": "Travel", "ind": 1})]);
    }
}
