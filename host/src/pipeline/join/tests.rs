//! The join engine over records keyed as the routers key them.

use super::state::join_key;
use super::*;
use crate::pipeline::watermark::MARKER_KEY;
use serde_json::{Value, json};
use sluice_guest::BatchBuf;

fn config(kind: &str, within_ms: u64) -> JoinConfig {
    let text = format!(
        "inputs = [{{ topic = \"u.pin\", key = \"ind\" }}, {{ topic = \"u.geo\", key = \"ind\" }}, {{ topic = \"u.user\", key = \"ind\" }}]\n\
         kind = \"{kind}\"\nwithin_ms = {within_ms}\n"
    );
    toml::from_str(&text).expect("join config")
}

/// `(side, ind, log time, fields)` as a router moves them.
fn batch(records: &[(usize, i64, i64, Value)]) -> (BatchBuf, Vec<u64>) {
    let mut b = BatchBuf::default();
    for (side, ind, t, fields) in records {
        let mut v = fields.clone();
        v["ind"] = json!(ind);
        b.push(v.to_string().as_bytes(), join_key(*side, &ind.to_string()).as_bytes(), *t);
    }
    let offsets = (0..b.len() as u64).collect();
    (b, offsets)
}

fn rows(out: &JoinOutput) -> Vec<Value> {
    out.rows.as_ref().iter().map(|r| serde_json::from_slice(r.value).expect("row is JSON")).collect()
}

fn pin(cat: &str) -> Value {
    json!({"category": cat, "title": "t"})
}
fn geo(country: &str) -> Value {
    json!({"country": country, "timestamp": "2020-08-28T03:52:47Z", "title": "geo title"})
}
fn user(age: i64) -> Value {
    json!({"age": age})
}

#[test]
fn every_side_of_a_key_makes_one_row_and_resends_are_ignored() {
    let c = config("inner", 60_000);
    let rules = JoinRules::new(&c);
    let mut state = JoinState::default();
    let (b, offsets) = batch(&[
        (0, 1, 100, pin("art")),
        (1, 2, 101, geo("Peru")),
        (1, 1, 102, geo("Chad")),
        (0, 1, 103, pin("art")), // resent while waiting
        (2, 1, 104, user(30)),
        (0, 1, 105, pin("art")), // resent after it joined
        (2, 2, 106, user(40)),
        (0, 2, 107, pin("travel")),
    ]);
    let out = Joiner { rules: &rules, state: &mut state }.process(&b.as_ref(), &offsets).expect("join");
    let got = rows(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0],
        json!({"ind": 1, "category": "art", "pin_title": "t", "country": "Chad", "timestamp": "2020-08-28T03:52:47Z", "geo_title": "geo title", "age": 30})
    );
    assert_eq!(got[1]["country"], "Peru");
    assert_eq!((out.matched, out.duplicates, out.expired), (2, 2, 0));
    assert_eq!(out.origins, vec![4, 7], "the record that completed each row");
    assert!(state.waiting.is_empty() && state.done.len() == 2);
}

/// Every input partition says it read up to `t` (log time): the join's clock moves there.
fn all_at(b: &mut BatchBuf, t: i64) {
    for source in ["r/u.pin/0", "r/u.geo/0", "r/u.user/0"] {
        b.push(json!({"source": source, "max_event_ms": t, "state": "active"}).to_string().as_bytes(), MARKER_KEY, t);
    }
}

#[test]
fn keys_expire_when_every_input_passed_their_deadline_as_unjoined_or_left_rows_and_state_survives_a_checkpoint() {
    let records = [(0, 1, 1_000, pin("art")), (1, 1, 1_500, geo("Peru")), (0, 2, 2_000, pin("diy")), (1, 9, 70_000, geo("Chad"))];
    // At start every input partition is announced (the launcher does it), then the records.
    let mut b = BatchBuf::default();
    for source in ["r/u.pin/0", "r/u.geo/0", "r/u.user/0"] {
        b.push(json!({"source": source, "state": "active"}).to_string().as_bytes(), MARKER_KEY, 0);
    }
    for r in batch(&records).0.as_ref().iter() {
        b.push(r.value, r.key, r.timestamp);
    }
    // The pin and geo inputs read far ahead, the user input not: nothing expires yet.
    b.push(json!({"source": "r/u.pin/0", "max_event_ms": 90_000, "state": "active"}).to_string().as_bytes(), MARKER_KEY, 0);
    b.push(json!({"source": "r/u.geo/0", "max_event_ms": 90_000, "state": "active"}).to_string().as_bytes(), MARKER_KEY, 0);
    b.push(json!({"source": "r/u.user/0", "max_event_ms": 30_000, "state": "active"}).to_string().as_bytes(), MARKER_KEY, 0);
    let c = config("inner", 60_000);
    let rules = JoinRules::new(&c);
    let mut state = JoinState::default();
    let offsets: Vec<u64> = (0..b.len() as u64).collect();
    let out = Joiner { rules: &rules, state: &mut state }.process(&b.as_ref(), &offsets).expect("join");
    assert!(out.unjoined.is_empty() && out.expired == 0, "the user input has not passed the deadlines: {:?}", out.unjoined);
    // Every input at 70 s: keys 1 and 2 waited 60 s without a user; key 9 still waits.
    let mut tick = BatchBuf::default();
    all_at(&mut tick, 70_000);
    let out = Joiner { rules: &rules, state: &mut state }.process(&tick.as_ref(), &[10, 11, 12]).expect("join");
    assert!(out.rows.is_empty());
    let unjoined: Vec<(u64, &str)> = out.unjoined.iter().map(|u| (u.arrived.offset, u.reason.as_str())).collect();
    assert_eq!(unjoined.len(), 3, "{unjoined:?}");
    assert!(unjoined[0].1.contains("the pin record of key 1 waited 60000 ms") && unjoined[0].1.contains("no user record came"), "{unjoined:?}");
    assert_eq!(out.expired, 2);
    assert!(state.waiting.contains_key("9"));

    // Left: the same input emits the pins with what came (no user fields).
    let left = config("left", 60_000);
    let rules = JoinRules::new(&left);
    let (mut b, _) = batch(&records);
    all_at(&mut b, 70_000);
    let offsets: Vec<u64> = (0..b.len() as u64).collect();
    let mut state = JoinState::default();
    let out = Joiner { rules: &rules, state: &mut state }.process(&b.as_ref(), &offsets).expect("join");
    let got = rows(&out);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        json!({"ind": 1, "category": "art", "pin_title": "t", "country": "Peru", "timestamp": "2020-08-28T03:52:47Z", "geo_title": "geo title"})
    );
    assert!(got[1].get("country").is_none() && got[1]["category"] == "diy");
    assert!(out.unjoined.is_empty(), "a left join keeps the left records");

    // Checkpointed state continues exactly: the rest in a second run equals one run over everything.
    let (more, _) = batch(&[(2, 9, 70_100, user(50)), (0, 9, 70_200, pin("art"))]);
    let mut whole_b = b.clone();
    for r in more.as_ref().iter() {
        whole_b.push(r.value, r.key, r.timestamp);
    }
    let whole_o: Vec<u64> = (0..whole_b.len() as u64).collect();
    let mut whole = JoinState::default();
    let whole_out = Joiner { rules: &rules, state: &mut whole }.process(&whole_b.as_ref(), &whole_o).expect("join");
    let mut resumed: JoinState = serde_json::from_slice(&serde_json::to_vec(&state).expect("json")).expect("parse");
    let rest = Joiner { rules: &rules, state: &mut resumed }.process(&more.as_ref(), &whole_o[b.len()..]).expect("join");
    let mut both = got;
    both.extend(rows(&rest));
    assert_eq!(both, rows(&whole_out));
    assert_eq!(resumed.state_bytes(), whole.state_bytes(), "the budget counts the same after a restore");
}

#[test]
fn closing_from_every_quiet_source_expires_the_waiting_and_the_budget_is_an_error() {
    let c = config("inner", 600_000);
    let rules = JoinRules::new(&c);
    let mut state = JoinState::default();
    let (mut b, _) = batch(&[(0, 1, 1_000, pin("art"))]);
    for (source, st) in [("r/u.pin/0", "closing"), ("r/u.geo/0", "idle"), ("r/u.geo/0", "closing")] {
        b.push(json!({"source": source, "state": st}).to_string().as_bytes(), MARKER_KEY, 0);
    }
    let out = Joiner { rules: &rules, state: &mut state }.process(&b.as_ref(), &[0, 1, 2, 3]).expect("join");
    assert_eq!(out.unjoined.len(), 1, "expired when the last source said closing");
    assert_eq!(out.origins.len(), 0);
    // A partner that comes after its key expired is not dropped: it is unjoined too.
    let (late, _) = batch(&[(1, 1, 2_000, geo("Peru"))]);
    let out = Joiner { rules: &rules, state: &mut state }.process(&late.as_ref(), &[4]).expect("join");
    assert_eq!((out.unjoined.len(), out.duplicates), (1, 0));
    assert!(out.unjoined[0].reason.contains("came after the key expired"), "{}", out.unjoined[0].reason);

    let mut small = c.clone();
    small.max_state_bytes = 300;
    let rules = JoinRules::new(&small);
    let mut state = JoinState::default();
    let many: Vec<_> = (0..20).map(|i| (0, i, 1_000 + i, pin("art"))).collect();
    let (b, offsets) = batch(&many);
    let err = Joiner { rules: &rules, state: &mut state }.process(&b.as_ref(), &offsets).expect_err("over budget");
    assert!(err.to_string().contains("join.max_state_bytes = 300"), "{err}");
}
