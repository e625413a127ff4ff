//! Windowed aggregation end to end: the real binary, killed with SIGKILL in
//! the middle of open windows and restarted, emits exactly the windows an
//! uninterrupted run emits — each once — and they equal a count made here
//! without the aggregate component.

use serde_json::{Value, json};
use sluice_tests::{START_MS, Server, WINDOW_MS, assert_same_windows as assert_same, every_window, free_port, json_lines, landed_windows, posts};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const LATENESS_MS: i64 = 5_000;

fn config_text(dir: &Path) -> String {
    format!(
        r#"data_dir = "{}"
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
"#,
        dir.join("data").display()
    )
}

/// `posts` over a topic of `partitions` partitions, repartitioned into 4 by
/// group key; quiet partitions go idle after 1 s, and after 3 s of quiet the
/// open windows close, so in the end every window of the input lands.
fn repartitioned_config(dir: &Path, partitions: u32) -> std::path::PathBuf {
    let text =
        config_text(dir).replace("partitions = 1", &format!("partitions = {partitions}")).replace("name = \"posts\"", "name = \"posts\"\nland_raw = true")
            + "partitions = 4\n\n[pipeline.watermark]\nidle_timeout_ms = 1000\nclose_idle_after_ms = 3000\n";
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let text = config_text(dir);
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `(window start ms, country, category) → post_count` of every landed row; panics on a row landed twice.
fn landed(data: &Path) -> BTreeMap<(i64, String, String), i64> {
    landed_windows(&data.join("landing"), "posts_by_country")
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

/// The same count, made directly: distinct row ids per tumbling window and key,
/// for the windows the final watermark has closed.
fn expected(records: &[Value]) -> BTreeMap<(i64, String, String), i64> {
    let max = records.iter().map(|r| sluice_guest::time::parse_timestamp_ms(r["timestamp"].as_str().expect("ts")).expect("ts")).max().expect("records");
    let closed = (max - LATENESS_MS).div_euclid(WINDOW_MS) * WINDOW_MS;
    let mut ids: BTreeMap<(i64, String, String), BTreeSet<i64>> = BTreeMap::new();
    for r in records {
        let t = sluice_guest::time::parse_timestamp_ms(r["timestamp"].as_str().expect("ts")).expect("ts");
        let start = t.div_euclid(WINDOW_MS) * WINDOW_MS;
        if start + WINDOW_MS <= closed {
            ids.entry((start, r["country"].as_str().expect("c").to_owned(), r["category"].as_str().expect("k").to_owned()))
                .or_default()
                .insert(r["ind"].as_i64().expect("ind"));
        }
    }
    ids.into_iter().map(|(k, v)| (k, v.len() as i64)).collect()
}

#[test]
fn kill_9_mid_window_and_restart_emits_the_same_windows_once() {
    let records = posts(3_000);
    let chunks: Vec<&[Value]> = records.chunks(150).collect();

    let want = expected(&records);
    assert!(want.len() > 100, "the input spans many windows and keys");

    // Uninterrupted.
    let calm = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(SLUICE, &write_config(calm.path()), free_port(), &[]).expect("start");
    for c in &chunks {
        produce(&server.base_url, c);
    }
    wait_for_windows(&calm.path().join("data"), want.len());
    assert!(server.terminate().expect("terminate"), "clean exit");
    let uninterrupted = landed(&calm.path().join("data"));

    // Killed with SIGKILL five times while windows are open, restarted each time.
    let rough = tempfile::tempdir().expect("tempdir");
    let config = write_config(rough.path());
    let mut server = Server::start(SLUICE, &config, free_port(), &[]).expect("start");
    for (i, c) in chunks.iter().enumerate() {
        produce(&server.base_url, c);
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_millis(20 + (i as u64 * 37) % 200));
            server.kill9();
            server = Server::start(SLUICE, &config, free_port(), &[]).expect("restart");
        }
    }
    wait_for_windows(&rough.path().join("data"), want.len());
    assert!(server.terminate().expect("terminate"), "clean exit");
    let killed = landed(&rough.path().join("data"));
    assert_same(&uninterrupted, &want, "the uninterrupted run differs from a count made without the aggregate");
    assert_same(&killed, &uninterrupted, "kill -9 and restart changed the emitted windows");
}

/// A topic of `partitions` partitions (keyless records spread over them by
/// request), aggregated through the repartition topic while sluice is killed
/// with SIGKILL every few requests: the windows that land are exactly a count
/// made here over the whole input, each once.
fn repartitioned_windows_equal_a_batch_count_through_kill_9(partitions: u32) {
    windows_through_kill_9(repartitioned_config, partitions, "");
}

/// count-posts written as SQL: its GROUP BY gives the window, time field and keys.
fn sql_config(dir: &Path, partitions: u32) -> std::path::PathBuf {
    let path = repartitioned_config(dir, partitions);
    let component = format!("name = \"count-posts\"\ntime_field = \"timestamp\"\ngroup_by = [\"country\", \"category\"]\nwindow_ms = {WINDOW_MS}\n");
    let text = std::fs::read_to_string(&path).expect("config").replace(&component, "name = \"posts-per-minute\"\n");
    let statement = format!(
        "-- output: post-count\nCREATE TABLE input (ind BIGINT);\n\
         SELECT country, category, count(DISTINCT ind) AS post_count FROM input\n\
         GROUP BY TUMBLE(\"timestamp\", INTERVAL '{}' SECOND), country, category",
        WINDOW_MS / 1000
    );
    std::fs::write(&path, format!("{text}\n[[transform]]\nname = \"posts-per-minute\"\nsql = '''{statement}'''\n")).expect("write config");
    path
}

#[test]
fn windows_written_in_sql_equal_a_batch_count_through_kill_9() {
    windows_through_kill_9(sql_config, 3, " (SQL windows)");
}

fn windows_through_kill_9(config_of: fn(&Path, u32) -> std::path::PathBuf, partitions: u32, what: &str) {
    let records = posts(3_000);
    let want = every_window(&records);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_of(dir.path(), partitions);
    let mut server = Server::start(SLUICE, &config, free_port(), &[]).expect("start");
    for (i, c) in records.chunks(100).enumerate() {
        produce(&server.base_url, c);
        if i % 7 == 6 {
            std::thread::sleep(Duration::from_millis(20 + (i as u64 * 37) % 300));
            server.kill9();
            server = Server::start(SLUICE, &config, free_port(), &[]).expect("restart");
        }
    }
    let data = dir.path().join("data");
    wait_for_windows(&data, want.len());
    let status: Value = reqwest::blocking::get(format!("{}/status", server.base_url)).and_then(|r| r.json()).unwrap_or_default();
    assert!(server.terminate().expect("terminate"), "clean exit");
    assert_same(&landed(&data), &want, &format!("{partitions} partitions, killed 4 times{what}"));
    let raw = json_lines(&data.join("landing/topics/t.post"));
    assert_eq!(raw.len(), records.len(), "every record landed raw once");
    let topics: BTreeSet<String> =
        status["posts"]["partitions"].as_array().map(|ps| ps.iter().filter_map(|p| p["topic"].as_str().map(str::to_owned)).collect()).unwrap_or_default();
    assert!(topics.contains("posts-repartition"), "status shows the repartition partitions: {status}");
}

#[test]
fn three_partitions_aggregated_through_the_repartition_topic_equal_a_batch_count_through_kill_9() {
    repartitioned_windows_equal_a_batch_count_through_kill_9(3);
}

#[test]
fn twelve_partitions_aggregated_through_the_repartition_topic_equal_a_batch_count_through_kill_9() {
    repartitioned_windows_equal_a_batch_count_through_kill_9(12);
}

/// Wait until `n` window rows landed (or 60 s passed; the comparison then says what is missing).
/// Lag alone cannot tell: it is measured against the end the pipeline last saw.
fn wait_for_windows(data: &Path, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while landed(data).len() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Poll `check` every 50 ms until it holds or `secs` pass; returns whether it held.
async fn eventually(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// One post at event time `t` (ms).
fn post(ind: i64, t: i64) -> Value {
    let mut ts = String::new();
    sluice_guest::time::format_rfc3339_ms(t, &mut ts);
    json!({"ind": ind, "country": "Peru", "category": "art", "timestamp": ts})
}

async fn admin(app: &sluice::app::RunningApp, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("http://{}{path}", app.addr))
        .bearer_auth(app.admin_token.to_string())
        .body(body)
        .send()
        .await
        .expect("admin reachable");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swap_mid_window_hands_the_state_over_and_the_count_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = sluice::config::Config::parse(&config_text(dir.path()).replace("[server]", "[server]\nlisten = \"127.0.0.1:0\"")).expect("config");
    let app = sluice::app::RunningApp::start(&config).await.expect("start");
    let base = format!("http://{}", app.addr);
    let window = START_MS.div_euclid(WINDOW_MS) * WINDOW_MS;

    // The first half of a window, folded by 0.1.0.
    sluice_tests::produce(&base, "t.post", (0..40).map(|i| post(i, window + i * 500))).await;
    let folded = async || app.snapshot().get("posts").is_some_and(|s| s.records_in == 40);
    assert!(eventually(30, folded).await, "0.1.0 folded the first half before the swap");
    let (s, v) = admin(&app, reqwest::Method::PUT, "/api/v1/transforms/count-posts", sluice::runtime::testing::COUNT_POSTS_V2_WASM.to_vec()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state_format"], "count-posts/ids-by-key/2");
    let (s, v) = admin(&app, reqwest::Method::POST, "/api/v1/pipelines/posts/stages/0/activate", br#"{"version":"0.2.0"}"#.to_vec()).await;
    assert_eq!(s, 200, "{v}");

    // The second half (a resent row among it), then a record that closes the window.
    sluice_tests::produce(&base, "t.post", (40..80).map(|i| post(i, window + i * 500)).chain([post(3, window + 59_000)])).await;
    sluice_tests::produce(&base, "t.post", [post(1000, window + WINDOW_MS + LATENESS_MS + 1)]).await;
    let table = dir.path().join("data/landing/tables/posts_by_country");
    assert!(eventually(30, async || !json_lines(&table).is_empty()).await, "the window closed and landed");

    // A record for the emitted window is late: a dead letter saying so, not a second row.
    sluice_tests::produce(&base, "t.post", [post(2000, window + 30_000)]).await;
    let mut v = Value::Null;
    assert!(
        eventually(30, async || {
            v = admin(&app, reqwest::Method::GET, "/api/v1/dead-letters/posts", Vec::new()).await.1;
            v["total"] != 0
        })
        .await,
        "the late record became a dead letter: {v}"
    );
    let letters = v["dead_letters"].as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 1, "{v}");
    assert_eq!(letters[0]["letter"]["kind"], "late", "{v}");
    assert!(letters[0]["letter"]["reason"].as_str().unwrap_or_default().contains("closed when the watermark passed"), "{v}");

    // 0.1.0 cannot read the state 0.2.0 keeps: going back is refused, not a silent reset.
    let (s, v) = admin(&app, reqwest::Method::POST, "/api/v1/pipelines/posts/stages/0/rollback", Vec::new()).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("cannot take the state over"), "{v}");
    app.shutdown().await.expect("clean shutdown");

    let rows = json_lines(&table);
    assert_eq!(rows.len(), 1, "one window closed: {rows:?}");
    assert_eq!(rows[0]["post_count"], 80, "the count went on across the swap: {rows:?}");
    let snapshots = sluice_tests::files(&dir.path().join("data/state/aggregates/posts"));
    let last: Value = serde_json::from_slice(&std::fs::read(snapshots.last().expect("a snapshot")).expect("read")).expect("json");
    assert_eq!(last["format"], "count-posts/ids-by-key/2", "the open window's state was upgraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_past_the_budget_stops_the_windows_with_an_error_the_operator_sees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path()).replace("[server]", "[server]\nlisten = \"127.0.0.1:0\"") + "max_state_bytes = 4096\n";
    let app = sluice::app::RunningApp::start(&sluice::config::Config::parse(&text).expect("config")).await.expect("start");
    let base = format!("http://{}", app.addr);
    // Many groups in one open window: far more state than 4 KiB.
    let window = START_MS.div_euclid(WINDOW_MS) * WINDOW_MS;
    sluice_tests::produce(&base, "t.post", (0..500).map(|i| json!({"ind": i, "country": format!("c{i}"), "category": "art", "timestamp": window + i}))).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let snap = app.snapshot();
        let s = snap.get("posts").expect("pipeline").clone();
        if s.last_error.is_some() || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = status.last_error.clone().unwrap_or_default();
    assert!(error.contains("over aggregate.max_state_bytes = 4096"), "{status:?}");
    let scrape = sluice::telemetry::metrics().render();
    let over = scrape.lines().find(|l| l.starts_with("sluice_aggregate_over_budget_total{pipeline=\"posts\"}")).expect("the counter is exported");
    assert!(!over.ends_with(" 0"), "{over}");
    assert_eq!(status.table_rows, 0, "nothing half-aggregated landed");
    app.shutdown().await.expect("the pipeline still stops cleanly");
}
