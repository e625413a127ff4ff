//! `count-posts`: how many distinct posts (row ids) each group has in a window.
//!
//! The streaming form of report 1 of SPEC section 6 (popular category by
//! country): group by `country` and `category` and each window holds the
//! counts the report ranks. A resent row (same `ind`) counts once per window,
//! as the report counts after removing duplicates by row id.

use serde::{Deserialize, Serialize};
use sluice_guest::aggregate::row_with_key;
use sluice_guest::json::{Field, parse_object, row_id};
use sluice_guest::{Aggregate, AggregateDescriptor, BatchBuf, Counters, Record, Reject, Window};
use std::collections::{BTreeMap, BTreeSet};

pub struct CountPosts;

/// Row ids seen per group key (the key's JSON text).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub groups: BTreeMap<String, BTreeSet<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Post<'a> {
    #[serde(borrow)]
    ind: Field<'a>,
}

impl Aggregate for CountPosts {
    const DESCRIPTOR: AggregateDescriptor = AggregateDescriptor {
        name: "count-posts",
        version: "0.1.0",
        input_kind: "post",
        output_kind: "post-count",
        state_format: "count-posts/ids-by-key/1",
        upgrades_from: &[],
    };
    type State = State;

    fn fold(state: &mut State, record: &Record<'_>, _counters: &mut Counters) -> Result<(), Reject> {
        let post: Post = parse_object(record.value)?;
        let ind = row_id(&post.ind, "ind")?;
        let key = std::str::from_utf8(record.key).map_err(|_| Reject("group key is not UTF-8".into()))?;
        state.groups.entry(key.to_owned()).or_default().insert(ind);
        Ok(())
    }

    fn merge(into: &mut State, other: State) {
        for (key, ids) in other.groups {
            into.groups.entry(key).or_default().extend(ids);
        }
    }

    fn emit(state: &State, _window: Window, rows: &mut BatchBuf) {
        let mut buf = Vec::new();
        for (key, ids) in &state.groups {
            buf.clear();
            row_with_key(&mut buf, key.as_bytes()).int("post_count", Some(ids.len() as i64)).end();
            rows.push(&buf, key.as_bytes(), 0);
        }
    }
}

#[cfg(feature = "component")]
sluice_guest::export_aggregate!(CountPosts);

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
        let out = run_emit::<CountPosts>(state, Window { start: 0, end: 60_000 }).expect("emit");
        out.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("json")).collect()
    }

    #[test]
    fn counts_distinct_row_ids_per_key() {
        let al = r#"{"country":"Albania","category":"art"}"#;
        let fr = r#"{"country":"France","category":"art"}"#;
        let b = batch(&[(json!({"ind": 1}), al), (json!({"ind": 2}), al), (json!({"ind": 1}), al), (json!({"ind": 3}), fr), (json!({"x": 1}), fr)]);
        let done = run_fold::<CountPosts>(&run_init::<CountPosts>(), &b.as_ref()).expect("fold");
        assert_eq!(done.rejections.len(), 1);
        assert_eq!(done.rejections[0].index, 4);
        assert_eq!(
            rows(&done.state),
            vec![json!({"country":"Albania","category":"art","post_count":2}), json!({"country":"France","category":"art","post_count":1})]
        );
    }

    #[test]
    fn merge_is_union_and_fold_is_batch_independent() {
        let k = "{}";
        let all = batch(&[(json!({"ind": 1}), k), (json!({"ind": 2}), k), (json!({"ind": 2}), k), (json!({"ind": 5}), k)]);
        let one = run_fold::<CountPosts>(&run_init::<CountPosts>(), &all.as_ref()).expect("fold").state;
        let first: BatchBuf = all.as_ref().iter().take(2).collect();
        let rest: BatchBuf = all.as_ref().iter().skip(2).collect();
        let s1 = run_fold::<CountPosts>(&run_init::<CountPosts>(), &first.as_ref()).expect("fold").state;
        let two = run_fold::<CountPosts>(&s1, &rest.as_ref()).expect("fold").state;
        assert_eq!(one, two);
        let s2 = run_fold::<CountPosts>(&run_init::<CountPosts>(), &rest.as_ref()).expect("fold").state;
        assert_eq!(run_merge::<CountPosts>(&s1, &s2).expect("merge"), one);
        assert_eq!(rows(&one), vec![json!({"post_count": 3})]);
    }
}
