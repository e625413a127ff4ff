//! `{{name}}`: a sluice windowed aggregate.
//!
//! The host keeps the state, cuts event time into windows and calls `fold` for
//! each record of a window, `merge` to combine states (sliding windows, batches
//! cut anywhere) and `emit` for a closed window's rows. The state is JSON, so a
//! checkpoint is readable; `state_format` names its layout.

use serde::{Deserialize, Serialize};
use sluice_guest::aggregate::row_with_key;
use sluice_guest::json::{Field, parse_object};
use sluice_guest::{Aggregate, AggregateDescriptor, BatchBuf, Counters, Record, Reject, Window};
use std::collections::BTreeMap;

pub struct {{type_name}};

/// Records per group key (the key's JSON text, from the pipeline's `key` fields).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub counts: BTreeMap<String, i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Input<'a> {
    #[serde(borrow)]
    ind: Field<'a>,
}

impl Aggregate for {{type_name}} {
    // Bump `version` for every change you deploy; change `state_format` when an
    // old state would not decode under the new code.
    const DESCRIPTOR: AggregateDescriptor = AggregateDescriptor {
        name: "{{name}}",
        version: "0.1.0",
        input_kind: "any",
        output_kind: "{{name}}",
        state_format: "{{name}}/counts-by-key/1",
        upgrades_from: &[],
    };
    type State = State;

    fn fold(state: &mut State, record: &Record<'_>, counters: &mut Counters) -> Result<(), Reject> {
        // Check everything before changing the state: a refusal must leave it untouched.
        let input: Input = parse_object(record.value)?;
        if input.ind.is_absent() {
            counters.count("no_ind", 1);
        }
        let key = std::str::from_utf8(record.key).map_err(|_| Reject("group key is not UTF-8".into()))?;
        *state.counts.entry(key.to_owned()).or_default() += 1;
        Ok(())
    }

    fn merge(into: &mut State, other: State) {
        for (key, n) in other.counts {
            *into.counts.entry(key).or_default() += n;
        }
    }

    fn emit(state: &State, _window: Window, rows: &mut BatchBuf) {
        let mut buf = Vec::new();
        for (key, n) in &state.counts {
            buf.clear();
            row_with_key(&mut buf, key.as_bytes()).int("records", Some(*n)).end();
            rows.push(&buf, key.as_bytes(), 0);
        }
    }
}

sluice_guest::export_aggregate!({{type_name}});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::aggregate::{run_emit, run_fold, run_init, run_merge};

    fn batch(records: &[(Value, &str)]) -> BatchBuf {
        let mut b = BatchBuf::default();
        for (v, k) in records {
            b.push(v.to_string().as_bytes(), k.as_bytes(), 0);
        }
        b
    }

    fn rows(state: &[u8]) -> Vec<Value> {
        let out = run_emit::<{{type_name}}>(state, Window { start: 0, end: 60_000 }).expect("emit");
        out.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("json")).collect()
    }

    #[test]
    fn counts_per_key_and_merges() {
        let art = r#"{"category":"art"}"#;
        let b = batch(&[(json!({"ind": 1}), art), (json!({"ind": 2}), art), (json!("not an object"), art)]);
        let one = run_fold::<{{type_name}}>(&run_init::<{{type_name}}>(), &b.as_ref()).expect("fold");
        assert_eq!(one.rejections.len(), 1);
        assert_eq!(rows(&one.state), vec![json!({"category": "art", "records": 2})]);
        let both = run_merge::<{{type_name}}>(&one.state, &one.state).expect("merge");
        assert_eq!(rows(&both), vec![json!({"category": "art", "records": 4})]);
    }
}
