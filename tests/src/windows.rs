//! Windowed counts for the aggregate tests: the input, what landed, and the
//! same count made here without the aggregate component.

use crate::landing::json_lines;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The tests' window length.
pub const WINDOW_MS: i64 = 60_000;
/// 2020-08-28T03:52:47Z, a geo timestamp.
pub const START_MS: i64 = 1_598_586_767_000;

/// `(window start ms, country, category)`.
pub type WindowKey = (i64, String, String);

/// Joined posts (pin category + geo country and timestamp), event time rising
/// one second per record with up to three seconds of disorder, some rows resent.
pub fn posts(n: i64) -> Vec<Value> {
    let countries = ["Albania", "Peru", "France", "Chad"];
    let categories = ["art", "travel", "quotes"];
    (0..n)
        .map(|i| {
            let t = START_MS + i * 1_000 - (i * 7919 % 4) * 1_000;
            let mut ts = String::new();
            sluice_guest::time::format_rfc3339_ms(t, &mut ts);
            let ind = if i % 13 == 12 { i - 5 } else { i };
            json!({"ind": ind, "country": countries[(i * 31 % 4) as usize], "category": categories[(i * 17 % 3) as usize], "timestamp": ts})
        })
        .collect()
}

/// `window key → post_count` of every row landed in `table` (under the landing dir); panics on a row landed twice.
pub fn landed_windows(landing: &Path, table: &str) -> BTreeMap<WindowKey, i64> {
    let mut out = BTreeMap::new();
    for r in json_lines(&landing.join("tables").join(table)) {
        let start = sluice_guest::time::parse_timestamp_ms(r["window_start"].as_str().expect("window_start")).expect("a timestamp");
        let key = (start, r["country"].as_str().expect("country").to_owned(), r["category"].as_str().expect("category").to_owned());
        assert_eq!(r["revision"], 0);
        let count = r["post_count"].as_i64().expect("post_count");
        assert!(out.insert(key.clone(), count).is_none(), "window {key:?} was emitted twice");
    }
    out
}

/// Every window of the input: distinct row ids per tumbling window and key.
pub fn every_window(records: &[Value]) -> BTreeMap<WindowKey, i64> {
    let mut ids: BTreeMap<WindowKey, BTreeSet<i64>> = BTreeMap::new();
    for r in records {
        let t = sluice_guest::time::parse_timestamp_ms(r["timestamp"].as_str().expect("ts")).expect("ts");
        let key = (t.div_euclid(WINDOW_MS) * WINDOW_MS, r["country"].as_str().expect("c").to_owned(), r["category"].as_str().expect("k").to_owned());
        ids.entry(key).or_default().insert(r["ind"].as_i64().expect("ind"));
    }
    ids.into_iter().map(|(k, v)| (k, v.len() as i64)).collect()
}

/// Equal maps, or a panic naming the first few differences.
pub fn assert_same_windows(got: &BTreeMap<WindowKey, i64>, want: &BTreeMap<WindowKey, i64>, what: &str) {
    let keys: BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let diff: Vec<String> =
        keys.into_iter().filter(|k| got.get(*k) != want.get(*k)).take(5).map(|k| format!("{k:?}: got {:?}, want {:?}", got.get(k), want.get(k))).collect();
    assert!(diff.is_empty(), "{what} ({} vs {} rows): {}", got.len(), want.len(), diff.join("; "));
}
