//! `follower-percentiles`: follower-count percentiles per age group per window.
//!
//! The streaming form of report 6 of SPEC section 6 (median followers by age
//! group). Each record must carry `ind`, `age` and `follower_count` (an
//! integer, as clean-pin writes it); the age groups are the report's: 18-24,
//! 25-35, 36-50, 50+. A row resent with the same `ind` counts once per window.
//! Percentiles are nearest-rank: the value at position ceil(p·n) of the
//! ascending values, so p50 is the report's lower median. They are exact,
//! which is why the state keeps every value: the memory budget bounds it.

use serde::{Deserialize, Serialize};
use sluice_guest::aggregate::row_with_key;
use sluice_guest::json::{Field, parse_object, row_id};
use sluice_guest::{Aggregate, AggregateDescriptor, BatchBuf, Counters, Record, Reject, Window};
use std::collections::BTreeMap;

pub struct FollowerPercentiles;

/// Per group key and age group: follower count by row id.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub groups: BTreeMap<String, BTreeMap<String, BTreeMap<i64, i64>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Row<'a> {
    #[serde(borrow)]
    ind: Field<'a>,
    #[serde(borrow)]
    age: Field<'a>,
    #[serde(borrow)]
    follower_count: Field<'a>,
}

/// SPEC section 6's age groups; `None` below 18.
pub fn age_group(age: i64) -> Option<&'static str> {
    match age {
        18..=24 => Some("18-24"),
        25..=35 => Some("25-35"),
        36..=50 => Some("36-50"),
        51.. => Some("50+"),
        _ => None,
    }
}

/// Nearest-rank percentile of ascending `sorted` (non-empty): position ceil(p·n), 1-based.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Aggregate for FollowerPercentiles {
    const DESCRIPTOR: AggregateDescriptor = AggregateDescriptor {
        name: "follower-percentiles",
        version: "0.1.0",
        input_kind: "post",
        output_kind: "follower-percentiles",
        state_format: "follower-percentiles/counts-by-id/1",
        upgrades_from: &[],
    };
    type State = State;

    fn fold(state: &mut State, record: &Record<'_>, counters: &mut Counters) -> Result<(), Reject> {
        let row: Row = parse_object(record.value)?;
        let ind = row_id(&row.ind, "ind")?;
        let key = std::str::from_utf8(record.key).map_err(|_| Reject("group key is not UTF-8".into()))?;
        // As in the report, a row whose fields are null is left out (and counted).
        let (Some(group), Some(followers)) = (row.age.int_lenient().and_then(age_group), row.follower_count.int_lenient()) else {
            counters.count("left_out_null_or_out_of_range", 1);
            return Ok(());
        };
        state.groups.entry(key.to_owned()).or_default().entry(group.to_owned()).or_default().insert(ind, followers);
        Ok(())
    }

    fn merge(into: &mut State, other: State) {
        for (key, groups) in other.groups {
            let mine = into.groups.entry(key).or_default();
            for (group, rows) in groups {
                mine.entry(group).or_default().extend(rows);
            }
        }
    }

    fn emit(state: &State, _window: Window, rows: &mut BatchBuf) {
        let mut buf = Vec::new();
        for (key, groups) in &state.groups {
            for (group, by_id) in groups {
                let mut values: Vec<i64> = by_id.values().copied().collect();
                values.sort_unstable();
                buf.clear();
                row_with_key(&mut buf, key.as_bytes())
                    .str("age_group", Some(group))
                    .int("post_count", Some(values.len() as i64))
                    .int("follower_count_p50", Some(percentile(&values, 0.5)))
                    .int("follower_count_p90", Some(percentile(&values, 0.9)))
                    .int("follower_count_p99", Some(percentile(&values, 0.99)))
                    .end();
                rows.push(&buf, key.as_bytes(), 0);
            }
        }
    }
}

sluice_guest::export_aggregate!(FollowerPercentiles);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_guest::aggregate::{run_emit, run_fold, run_init};

    #[test]
    fn percentiles_per_age_group() {
        let mut b = BatchBuf::default();
        for (ind, age, followers) in [(1, 20, 10), (2, 22, 30), (3, 23, 20), (4, 40, 5), (5, 20, 1000), (1, 20, 10)] {
            b.push(json!({"ind": ind, "age": age, "follower_count": followers}).to_string().as_bytes(), b"{}", 0);
        }
        b.push(json!({"ind": 9, "age": null, "follower_count": 3}).to_string().as_bytes(), b"{}", 0);
        let done = run_fold::<FollowerPercentiles>(&run_init::<FollowerPercentiles>(), &b.as_ref()).expect("fold");
        assert!(done.rejections.is_empty());
        assert_eq!(done.counters, vec![("left_out_null_or_out_of_range", 1)]);
        let out = run_emit::<FollowerPercentiles>(&done.state, Window { start: 0, end: 1 }).expect("emit");
        let rows: Vec<Value> = out.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("json")).collect();
        assert_eq!(
            rows,
            vec![
                json!({"age_group":"18-24","post_count":4,"follower_count_p50":20,"follower_count_p90":1000,"follower_count_p99":1000}),
                json!({"age_group":"36-50","post_count":1,"follower_count_p50":5,"follower_count_p90":5,"follower_count_p99":5}),
            ]
        );
    }

    #[test]
    fn lower_median_as_the_report_defines_it() {
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), 2);
        assert_eq!(percentile(&[1, 2, 3], 0.5), 2);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(age_group(50), Some("36-50"));
        assert_eq!(age_group(51), Some("50+"));
    }
}
