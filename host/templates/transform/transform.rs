//! `{{name}}`: a sluice transform.
//!
//! The host calls it with batches of records; for each record (one JSON value)
//! it emits zero or more output records, or refuses the record with a reason.
//! A refused record goes to the pipeline's dead letters with that reason; its
//! neighbours in the batch are not affected. Counters (`out.count`) become the
//! `sluice_transform_guest_counter_total` metric.

use serde::Deserialize;
use sluice_guest::json::{Field, JsonWriter, parse_object, row_id};
use sluice_guest::{Descriptor, Output, Record, Reject, Transform};

pub struct {{type_name}};

/// The fields this transform reads. A `Field` takes any JSON type (or none),
/// so a record with an odd value still parses and the code decides what to do.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Input<'a> {
    #[serde(borrow)]
    ind: Field<'a>,
    #[serde(borrow)]
    category: Field<'a>,
}

impl Transform for {{type_name}} {
    // Bump `version` for every change you deploy: a running sluice refuses the
    // same version string with other bytes.
    const DESCRIPTOR: Descriptor = Descriptor { name: "{{name}}", version: "0.1.0", input_kind: "any", output_kind: "{{name}}" };

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        // Refuses what is not a JSON object, and a record without an integer `ind`.
        let input: Input = parse_object(record.value)?;
        let ind = row_id(&input.ind, "ind")?;
        // Keep the record, but count what is missing.
        let category = input.category.text().map(|c| c.trim().to_lowercase());
        if category.is_none() {
            out.count("category_missing", 1);
        }
        out.emit(|buf| {
            JsonWriter::object(buf).int("ind", Some(ind)).str("category", category.as_deref()).end();
        });
        Ok(())
    }
}

sluice_guest::export_transform!({{type_name}});

/// Native unit tests: `cargo test` runs the same code the component runs.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::{BatchBuf, run_batch};

    fn run(records: &[Value]) -> (Vec<Value>, Vec<String>) {
        let res = run_batch::<{{type_name}}>(&BatchBuf::from_json(records).as_ref());
        let out = res.output.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("JSON")).collect();
        (out, res.rejections.into_iter().map(|r| r.reason).collect())
    }

    #[test]
    fn cleans_the_category() {
        let (out, refused) = run(&[json!({"ind": 7, "category": "  Travel "})]);
        assert_eq!(out, vec![json!({"ind": 7, "category": "travel"})]);
        assert!(refused.is_empty());
    }

    #[test]
    fn refuses_a_record_without_an_id() {
        let (out, refused) = run(&[json!({"category": "art"}), json!({"ind": 1})]);
        assert_eq!(out, vec![json!({"ind": 1, "category": null})]);
        assert_eq!(refused.len(), 1, "{refused:?}");
    }
}
