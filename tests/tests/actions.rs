//! Actions end to end: the real binary detects conditions in windows and
//! records and delivers them to a receiver that misbehaves on purpose (bursts
//! of 500, answers slower than the timeout, dropped connections, 429 with
//! `Retry-After`, a 400 for one category), and is killed with SIGKILL in the
//! middle of it. Every action is delivered or dead-lettered, none is lost,
//! and a duplicate only ever repeats the same key with the same body.

use serde_json::{Value, json};
use sluice_tests::{Answer, Received, Receiver, Server, free_port, json_lines};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const WINDOW_MS: i64 = 60_000;
const LATENESS_MS: i64 = 5_000;
const START_MS: i64 = 1_598_586_767_000;
const BUSY_ABOVE: i64 = 6;

fn config(dir: &Path, hook: &str) -> std::path::PathBuf {
    let text = format!(
        r#"data_dir = "{data}"
[server]
[log]
topics = ["t.post"]
partitions = 1

[[pipeline]]
name = "posts"
topics = ["t.post"]
table = {{ name = "posts_by_country", formats = ["jsonl"] }}
batch = {{ max_records = 64 }}
roll = {{ max_records = 200, max_age_ms = 150 }}

[pipeline.aggregate]
name = "count-posts"
time_field = "timestamp"
group_by = ["country", "category"]
window_ms = {WINDOW_MS}
allowed_lateness_ms = {LATENESS_MS}

[[pipeline.action]]
name = "busy"
detector = "threshold"
when = {{ column = "post_count", above = {BUSY_ABOVE} }}
[pipeline.action.webhook]
url = "{hook}/busy?token=${{HOOK_TOKEN}}"
headers = {{ Authorization = "Bearer ${{HOOK_TOKEN}}" }}
body = '{{"text": "{{{{category}}}} in {{{{country}}}}: {{{{post_count}}}} posts", "window": "{{{{window_start}}}}", "record": {{{{record}}}}}}'
timeout_ms = 400
retry_initial_ms = 20
retry_max_ms = 200
max_in_flight = 3

[[pipeline.action]]
name = "swing"
detector = "change"
group_by = ["country", "category"]
when = {{ column = "post_count", factor = 2 }}
webhook = {{ url = "{hook}/swing", timeout_ms = 400, retry_initial_ms = 20, retry_max_ms = 200 }}

[[pipeline.action]]
name = "travel"
on = "records"
detector = "match"
when = {{ field = "category", any_of = ["travel", "quotes"] }}
webhook = {{ url = "{hook}/travel", batch_max = 40, timeout_ms = 400, retry_initial_ms = 20, retry_max_ms = 200 }}
"#,
        data = dir.join("data").display()
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Joined posts, event time rising a second per record with some disorder, some rows resent;
/// the share of each group varies from minute to minute so counts swing.
fn posts(n: i64) -> Vec<Value> {
    let countries = ["Albania", "Peru"];
    let categories = ["art", "travel", "quotes"];
    (0..n)
        .map(|i| {
            let t = START_MS + i * 1_000 - (i * 7919 % 4) * 1_000;
            let minute = i / 60;
            let mut ts = String::new();
            sluice_guest::time::format_rfc3339_ms(t, &mut ts);
            let ind = if i % 13 == 12 { i - 5 } else { i };
            let c = if minute % 3 == 0 { (i * 17 % 3) as usize } else { ((i * 17 % 5) as usize).min(2) };
            json!({"ind": ind, "country": countries[(i * 31 % (2 + minute % 2)) as usize % 2], "category": categories[c], "timestamp": ts})
        })
        .collect()
}

fn produce(base: &str, values: &[Value]) {
    let records: Vec<Value> = values.iter().map(|v| json!({ "value": v })).collect();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/topics/t.post"))
        .header("content-type", "application/vnd.kafka.json.v2+json")
        .body(json!({ "records": records }).to_string())
        .send()
        .expect("ingest reachable");
    assert_eq!(resp.status(), 200);
}

type Window = (i64, String, String);

/// Every closed window's distinct-post count, computed here without sluice.
fn windows(records: &[Value]) -> BTreeMap<Window, i64> {
    let ms = |r: &Value| sluice_guest::time::parse_timestamp_ms(r["timestamp"].as_str().expect("ts")).expect("ts");
    let closed = (records.iter().map(ms).max().expect("records") - LATENESS_MS).div_euclid(WINDOW_MS) * WINDOW_MS;
    let mut ids: BTreeMap<Window, BTreeSet<i64>> = BTreeMap::new();
    for r in records {
        let start = ms(r).div_euclid(WINDOW_MS) * WINDOW_MS;
        if start + WINDOW_MS <= closed {
            let key = (start, r["country"].as_str().expect("c").to_owned(), r["category"].as_str().expect("k").to_owned());
            ids.entry(key).or_default().insert(r["ind"].as_i64().expect("ind"));
        }
    }
    ids.into_iter().map(|(k, v)| (k, v.len() as i64)).collect()
}

/// The windows whose count is at least twice or at most half the group's previous emitted window's.
fn swings(w: &BTreeMap<Window, i64>) -> BTreeSet<Window> {
    let mut by_group: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
    for ((start, country, category), n) in w {
        by_group.entry((country.clone(), category.clone())).or_default().push((*start, *n));
    }
    let mut out = BTreeSet::new();
    for ((country, category), rows) in by_group {
        for pair in rows.windows(2) {
            let ((_, before), (start, now)) = (pair[0], pair[1]);
            if before >= 1 && (now >= before * 2 || now * 2 <= before) {
                out.insert((start, country.clone(), category.clone()));
            }
        }
    }
    out
}

fn window_of(record: &Value) -> Window {
    let start = sluice_guest::time::parse_timestamp_ms(record["window_start"].as_str().expect("window_start")).expect("a timestamp");
    (start, record["country"].as_str().expect("country").to_owned(), record["category"].as_str().expect("category").to_owned())
}

/// The requests of one action that were answered 200, with keys checked:
/// one key for each action, and a repeated key always with the same body.
fn acknowledged(received: &[Received], path: &str) -> BTreeMap<String, Value> {
    let mut by_key: BTreeMap<String, Value> = BTreeMap::new();
    for r in received.iter().filter(|r| r.answer == Answer::Ok && r.path == path) {
        let body: Value = serde_json::from_slice(&r.body).expect("a JSON body");
        let keys: Vec<&str> = r.idempotency_key.split(',').collect();
        let items = match &body {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        assert_eq!(keys.len(), items.len(), "one key per action in a request: {}", r.idempotency_key);
        for (key, item) in keys.into_iter().zip(items) {
            if let Some(before) = by_key.insert(key.to_owned(), item.clone()) {
                assert_eq!(before, item, "a redelivery under key {key} carried another action");
            }
        }
    }
    by_key
}

/// The receiver's plan: misbehave by request number; refuse quotes for good.
fn plan(number: u64, body: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(body);
    if text.contains("quotes") && !text.starts_with('[') {
        return Answer::Status(400, "{\"error\": \"quotes are not accepted here\"}".into());
    }
    match number {
        1..=6 => Answer::Status(500, "warming up".into()),
        n if n % 7 == 0 => Answer::Throttle(1),
        n if n % 11 == 0 => Answer::Slow(Duration::from_millis(700)),
        n if n % 13 == 0 => Answer::Drop,
        n if n % 17 == 0 => Answer::Status(503, "busy".into()),
        _ => Answer::Ok,
    }
}

fn dead_letters(data: &Path) -> Vec<Value> {
    json_lines(&data.join("landing/dead-letters/posts"))
}

#[test]
fn every_action_is_delivered_or_dead_lettered_through_misbehaviour_and_kill_9() {
    let records = posts(1_500);
    let chunks: Vec<&[Value]> = records.chunks(150).collect();
    let want = windows(&records);
    let busy: BTreeSet<Window> = want.iter().filter(|(_, n)| **n > BUSY_ABOVE).map(|(w, _)| w.clone()).collect();
    let swing = swings(&want);
    assert!(busy.len() > 10 && swing.len() > 5, "the input makes busy windows ({}) and swings ({})", busy.len(), swing.len());

    let hook = Receiver::start(plan);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = config(dir.path(), &hook.url(""));
    let env = [("HOOK_TOKEN", "s3cret")];
    let mut server = Server::start(SLUICE, &config, free_port(), &env).expect("start");
    for (i, c) in chunks.iter().enumerate() {
        produce(&server.base_url, c);
        if i % 3 == 2 {
            // Kill while deliveries are under way (the receiver is misbehaving meanwhile).
            let seen = hook.received().len();
            let deadline = Instant::now() + Duration::from_secs(10);
            while hook.received().len() < seen + 3 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            server.kill9();
            server = Server::start(SLUICE, &config, free_port(), &env).expect("restart");
        }
    }

    // Quotes records (40 per request) are refused whole; every other record of the travel action is acknowledged.
    let travel_offsets: BTreeSet<u64> = records.iter().enumerate().filter(|(_, r)| r["category"] == "travel").map(|(i, _)| i as u64).collect();
    let quotes_offsets: BTreeSet<u64> = records.iter().enumerate().filter(|(_, r)| r["category"] == "quotes").map(|(i, _)| i as u64).collect();
    let settled = |received: &[Received], dead: &[Value]| {
        let acked = |path| acknowledged(received, path).into_values().collect::<Vec<_>>();
        let busy_done = acked("/busy").len() + dead.iter().filter(|d| d["stage"] == 1).count();
        let swing_done = acked("/swing").len() + dead.iter().filter(|d| d["stage"] == 2).count();
        busy_done >= busy.len() && swing_done >= swing.len() && acknowledged(received, "/travel").len() >= travel_offsets.len() + quotes_offsets.len()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !settled(&hook.received(), &dead_letters(&data)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status: Value = reqwest::blocking::get(format!("{}/status", server.base_url)).expect("status").json().expect("JSON");
    assert!(server.terminate().expect("terminate"), "clean exit");
    let received = hook.received();
    let dead = dead_letters(&data);

    assert!(received.iter().all(|r| !r.idempotency_key.is_empty()), "every request carries an Idempotency-Key");
    assert!(received.iter().filter(|r| r.path == "/busy").all(|r| r.authorization == "Bearer s3cret"), "the header's secret came from the environment");

    // busy: every window above the threshold, once per key; quotes windows refused with the status and body.
    let busy_acked = acknowledged(&received, "/busy");
    let mut busy_seen: BTreeMap<Window, String> = BTreeMap::new();
    for (key, body) in &busy_acked {
        assert!(body["text"].as_str().expect("text").ends_with(" posts"), "the template rendered: {body}");
        let w = window_of(&body["record"]);
        assert!(busy_seen.insert(w.clone(), key.clone()).is_none(), "window {w:?} delivered under two keys");
    }
    let busy_refused: BTreeSet<Window> = dead
        .iter()
        .filter(|d| d["kind"] == "action_refused" && d["stage"] == 1)
        .map(|d| {
            assert!(d["reason"].as_str().expect("reason").contains("HTTP 400: {\"error\": \"quotes are not accepted here\"}"), "{d}");
            window_of(&serde_json::from_str::<Value>(d["value"].as_str().expect("value")).expect("JSON")["record"])
        })
        .collect();
    let busy_done: BTreeSet<Window> = busy_seen.keys().cloned().chain(busy_refused.iter().cloned()).collect();
    assert_eq!(busy_done, busy, "busy windows delivered or dead-lettered");
    assert!(busy_refused.iter().all(|w| w.2 == "quotes") && busy_seen.keys().all(|w| w.2 != "quotes"));
    assert!(!busy_refused.is_empty(), "some quotes windows are busy");
    assert_eq!(dead.iter().filter(|d| d["kind"] == "action_refused" && d["stage"] == 1).count(), busy_refused.len(), "each refusal dead-lettered once");

    // swing: the windows that doubled or halved against their group's previous one.
    let swing_acked = acknowledged(&received, "/swing");
    let swing_refused: BTreeSet<Window> = dead
        .iter()
        .filter(|d| d["kind"] == "action_refused" && d["stage"] == 2)
        .map(|d| window_of(&serde_json::from_str::<Value>(d["value"].as_str().expect("value")).expect("JSON")["record"]))
        .collect();
    let swing_done: BTreeSet<Window> = swing_acked.values().map(|b| window_of(&b["record"])).chain(swing_refused.iter().cloned()).collect();
    assert_eq!(swing_done, swing, "swinging windows delivered or dead-lettered");
    assert_eq!(swing_acked.len() + swing_refused.len(), swing.len(), "one key per swinging window");

    // travel: every travel and quotes record, by its position (batches that hold a quotes record are not refused:
    // the receiver refuses only single quotes bodies), keyed by offset.
    let travel = acknowledged(&received, "/travel");
    let offsets: BTreeSet<u64> = travel.keys().map(|k| k.split('/').nth(4).expect("offset in the key").parse().expect("a number")).collect();
    let all: BTreeSet<u64> = travel_offsets.union(&quotes_offsets).copied().collect();
    assert_eq!(offsets, all, "every matching record's action, by offset");
    for (key, body) in &travel {
        let offset: usize = key.split('/').nth(4).expect("offset").parse().expect("number");
        assert_eq!(body["record"], records[offset], "the action under {key} is about the record at that offset");
    }

    // No action gave up, and the misbehaviour really happened.
    assert!(dead.iter().all(|d| d["kind"] != "action_gave_up"), "nothing was given up on");
    let answers = |f: fn(&Answer) -> bool| received.iter().filter(|r| f(&r.answer)).count();
    assert!(answers(|a| matches!(a, Answer::Throttle(_))) > 0 && answers(|a| matches!(a, Answer::Slow(_))) > 0 && answers(|a| *a == Answer::Drop) > 0);
    let ok: Vec<&Received> = received.iter().filter(|r| r.answer == Answer::Ok).collect();
    let distinct = ok.iter().map(|r| r.idempotency_key.as_str()).collect::<BTreeSet<_>>().len();
    eprintln!("{} requests, {} acknowledged, {} of them again (same key, same body)", received.len(), ok.len(), ok.len() - distinct);

    // /status shows each action.
    let actions = status["posts"]["actions"].as_array().expect("actions in /status");
    assert_eq!(actions.iter().map(|a| a["name"].as_str().expect("name")).collect::<Vec<_>>(), vec!["busy", "swing", "travel"]);
    assert!(actions.iter().map(|a| a["sent"].as_u64().expect("sent")).sum::<u64>() > 0, "{status}");
}
