//! The three detectors on windows whose answers are known.

use super::*;
use sluice_guest::{BatchBuf, run_batch};

/// What a run gave: `(row, action)` of each action, `(row, reason)` of each refusal.
type Ran = (Vec<(u32, Value)>, Vec<(u32, String)>);

/// Run the detector over `(when, record, previous)` rows.
fn run(rows: &[(Value, Value, Value)]) -> Ran {
    let mut input = BatchBuf::default();
    for (when, record, previous) in rows {
        input.push(json!({"when": when, "record": record, "previous": previous}).to_string().as_bytes(), b"", 0);
    }
    let r = run_batch::<Native>(&input.as_ref());
    let out = r.output.as_ref();
    let actions = r.origins.iter().enumerate().map(|(i, o)| (*o, serde_json::from_slice(out.get(i).value).unwrap())).collect();
    (actions, r.rejections.into_iter().map(|r| (r.index, r.reason)).collect())
}

/// Per-minute post counts of three categories, as count-posts emits them.
fn window(minute: i64, category: &str, posts: i64) -> Value {
    json!({"window_start": format!("2020-08-28T03:{minute:02}:00.000Z"), "category": category, "post_count": posts})
}

#[test]
fn threshold_fires_on_the_windows_above_or_below_the_bounds_only() {
    let when = json!({"kind": "threshold", "column": "post_count", "above": 100});
    let counts = [("art", 99), ("art", 100), ("art", 101), ("travel", 250), ("quotes", 0)];
    let rows: Vec<_> = counts.iter().enumerate().map(|(m, (c, n))| (when.clone(), window(m as i64, c, *n), Value::Null)).collect();
    let (actions, refused) = run(&rows);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(actions.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![2, 3], "strictly above 100: 101 and 250");
    assert_eq!(actions[0].1["reason"], "post_count = 101 is above 100");
    assert_eq!(actions[1].1["record"]["category"], "travel");
    assert_eq!(actions[1].1["value"], 250.0);

    let both = json!({"kind": "threshold", "column": "post_count", "above": 10, "below": 2});
    let rows: Vec<_> = [1, 2, 10, 11].iter().map(|n| (both.clone(), window(0, "art", *n), Value::Null)).collect();
    let (actions, _) = run(&rows);
    assert_eq!(actions.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 3]);
    assert_eq!(actions[0].1["reason"], "post_count = 1 is below 2");
}

#[test]
fn change_compares_each_window_with_the_previous_one_of_its_group() {
    let when = json!({"kind": "change", "column": "post_count", "factor": 2.0});
    // (current, previous): spike at ×2 and above, drop at ÷2 and below, nothing without a previous window.
    let cases = [(20, Some(10)), (19, Some(10)), (5, Some(10)), (6, Some(10)), (50, None), (3, Some(0))];
    let rows: Vec<_> = cases.iter().map(|(now, before)| (when.clone(), window(1, "art", *now), before.map_or(Value::Null, |b| window(0, "art", b)))).collect();
    let (actions, refused) = run(&rows);
    assert!(refused.is_empty(), "{refused:?}");
    let fired: Vec<(u32, &str)> = actions.iter().map(|(i, a)| (*i, a["change"].as_str().unwrap())).collect();
    assert_eq!(fired, vec![(0, "spike"), (2, "drop")], "a previous count of 0 is below min_previous = 1");
    assert_eq!(actions[0].1["previous"]["post_count"], 10);
    assert_eq!(actions[0].1["reason"], "post_count went from 10 to 20 (spike, factor 2)");

    let spikes_only = json!({"kind": "change", "column": "post_count", "factor": 2.0, "direction": "spike"});
    let (actions, _) = run(&[(spikes_only, window(1, "art", 1), window(0, "art", 10))]);
    assert!(actions.is_empty(), "a drop is not reported when only spikes are asked for");
}

#[test]
fn match_fires_on_listed_values_of_a_field() {
    let when = json!({"kind": "match", "field": "category", "any_of": ["Vehicles", "finance"], "case_insensitive": true});
    let rows: Vec<_> = ["vehicles", "art", "FINANCE", "finances"].iter().map(|c| (when.clone(), json!({"category": c}), Value::Null)).collect();
    let (actions, _) = run(&rows);
    assert_eq!(actions.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 2]);

    let exact = json!({"kind": "match", "field": "country", "any_of": ["Peru", 7]});
    let rows: Vec<_> = [json!({"country": "peru"}), json!({"country": "Peru"}), json!({"country": 7}), json!({})]
        .into_iter()
        .map(|r| (exact.clone(), r, Value::Null))
        .collect();
    let (actions, _) = run(&rows);
    assert_eq!(
        actions.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 2],
        "case matters unless asked; numbers match numbers; a missing field fires nothing"
    );
}

#[test]
fn bad_settings_and_bad_rows_are_refused_with_the_reason() {
    let rows = [
        (json!({"kind": "sometimes"}), json!({}), Value::Null),
        (json!({"kind": "threshold", "column": "n", "above": "ten"}), json!({"n": 1}), Value::Null),
        (json!({"kind": "threshold", "column": "n", "above": 1}), json!({"n": "many"}), Value::Null),
        (json!({"kind": "change", "column": "n"}), json!({"n": 1}), Value::Null),
        (json!({"kind": "match", "field": "c", "any_of": "x"}), json!({"c": "x"}), Value::Null),
    ];
    let (actions, refused) = run(&rows);
    assert!(actions.is_empty());
    let reasons: Vec<&str> = refused.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "unknown detector kind `sometimes` (threshold, change or match)",
            "setting `above` must be a number",
            "field `n` (\"many\") is not a number",
            "setting `factor` is missing",
            "setting `any_of` must be a list",
        ]
    );
}
