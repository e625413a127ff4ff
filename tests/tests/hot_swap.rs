//! Hot swap through the real HTTP API while records flow, and the automatic
//! rollback of a version that refuses everything.

use serde_json::{Value, json};
use sluice::app::RunningApp;
use sluice::config::Config;
use sluice::runtime::testing::{CLEAN_PIN_MARKED_WASM, CLEAN_PIN_V1_WASM, REJECT_ALL_WASM};
use sluice_tests::{column, files, parquet_batches};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(dir: &Path) -> Config {
    Config::parse(&config_text(dir)).expect("valid config")
}

fn config_text(dir: &Path) -> String {
    sluice_tests::pin_config(
        &dir.join("data"),
        "listen = \"127.0.0.1:0\"",
        "batch = { max_records = 500 }\nroll = { max_age_ms = 300 }\nauto_rollback = { batches = 3, max_rejection_rate = 0.5 }",
    )
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn post_pins(&self, from: u64, count: u64) {
        let values =
            (from..from + count).map(|n| json!({"index": n, "unique_id": format!("id-{n:07}"), "title": "t", "follower_count": "1k", "category": "art"}));
        sluice_tests::produce(&self.base, "t.pin", values).await;
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("admin reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

async fn start(dir: &Path) -> (RunningApp, Client) {
    let app = RunningApp::start(&config(dir)).await.expect("start");
    let client = Client { http: reqwest::Client::new(), base: format!("http://{}", app.addr), token: app.admin_token.to_string() };
    (app, client)
}

/// unique_id → (partition, position in the partition's landed order, version mark)
fn landed(landing: &Path) -> BTreeMap<String, Vec<(u32, usize, bool)>> {
    let mut out: BTreeMap<String, Vec<(u32, usize, bool)>> = BTreeMap::new();
    for p in 0..3u32 {
        // Files of one partition, in offset order (names carry the start offset), rows in order within a file.
        let mut batches = Vec::new();
        for f in files(&landing.join("tables/pin")) {
            let name = f.file_name().expect("name").to_string_lossy().into_owned();
            if name.starts_with(&format!("t.pin+{p}+")) && !name.contains(".replay-") {
                batches.extend(parquet_batches_of(&f));
            }
        }
        for (i, id) in column(&batches, "unique_id").iter().enumerate() {
            let id = id.as_str().expect("unique_id");
            let (bare, v2) = match id.strip_prefix("v2:") {
                Some(rest) => (rest, true),
                None => (id, false),
            };
            out.entry(bare.to_owned()).or_default().push((p, i, v2));
        }
    }
    out
}

fn parquet_batches_of(file: &Path) -> Vec<arrow_array::RecordBatch> {
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).expect("open"))
        .expect("footer")
        .build()
        .expect("reader");
    r.map(|b| b.expect("batch")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_over_between_batches_without_losing_or_repeating_a_record() {
    const TOTAL: u64 = 200_000;
    const PER_REQUEST: u64 = 500;
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, c) = start(dir.path()).await;
    let (s, v) = c.admin(reqwest::Method::PUT, "/api/v1/transforms/clean-pin", Some(CLEAN_PIN_MARKED_WASM.to_vec())).await;
    assert_eq!(s, 201, "{v}");

    let mut swap_took = None;
    for n in (0..TOTAL).step_by(PER_REQUEST as usize) {
        c.post_pins(n, PER_REQUEST).await;
        if n == TOTAL / 2 {
            let started = Instant::now();
            let (s, v) = c.admin(reqwest::Method::POST, "/api/v1/pipelines/pin/stages/0/activate", Some(br#"{"version":"0.2.0-marked"}"#.to_vec())).await;
            assert_eq!(s, 200, "{v}");
            swap_took = Some(started.elapsed());
        }
    }
    assert!(app.wait_caught_up(Duration::from_secs(180)).await, "did not catch up: {:?}", app.snapshot());
    let (_, status) = c.admin(reqwest::Method::GET, "/api/v1/pipelines/pin", None).await;
    app.shutdown().await.expect("clean shutdown");

    let landed = landed(&dir.path().join("data/landing"));
    assert_eq!(landed.len() as u64, TOTAL, "every record landed");
    let twice: Vec<_> = landed.iter().filter(|(_, v)| v.len() > 1).take(3).collect();
    assert!(twice.is_empty(), "landed twice: {twice:?}");
    // Per partition, in input order: old version, then new version, never back.
    let mut by_partition: BTreeMap<u32, Vec<(usize, bool)>> = BTreeMap::new();
    for rows in landed.values() {
        let (p, i, v2) = rows[0];
        by_partition.entry(p).or_default().push((i, v2));
    }
    let mut v2_rows = 0;
    for (p, mut rows) in by_partition {
        rows.sort();
        let first_v2 = rows.iter().position(|(_, v2)| *v2).unwrap_or(rows.len());
        assert!(rows[first_v2..].iter().all(|(_, v2)| *v2), "partition {p}: a v1 row after a v2 row");
        v2_rows += rows.len() - first_v2;
    }
    assert!(v2_rows > 0 && (v2_rows as u64) < TOTAL, "the swap happened mid-stream ({v2_rows} rows by v2)");
    assert_eq!(status["stages"][0]["active"]["version"], "0.2.0-marked");
    assert_eq!(status["stats"]["dead_letters"], 0);
    // The activation is a pointer swap: the component was compiled at upload.
    assert!(swap_took.expect("swapped") < Duration::from_secs(5), "activation took {swap_took:?}");
}

/// The transform versions named in a Parquet file's lineage metadata.
fn lineage_of(file: &Path) -> String {
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(file).expect("open")).expect("footer");
    let meta = parquet::file::reader::FileReader::metadata(&reader).file_metadata().key_value_metadata().cloned().unwrap_or_default();
    meta.iter().filter(|kv| kv.key.starts_with("sluice.transforms")).filter_map(|kv| kv.value.clone()).collect::<Vec<_>>().join(" ")
}

/// From a 0.1.0 build (JSON records across the boundary) to the 0.2.0
/// built-in (typed columns) while records flow: the contracts swap between
/// batches like any two versions, and the rows are the same either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_from_contract_0_1_to_0_2_under_load_loses_and_repeats_nothing() {
    const TOTAL: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, c) = start(dir.path()).await;
    let (s, v) = c.admin(reqwest::Method::PUT, "/api/v1/transforms/clean-pin", Some(CLEAN_PIN_V1_WASM.to_vec())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["contract"], "0.1.0", "{v}");
    let (s, v) = c.admin(reqwest::Method::POST, "/api/v1/pipelines/pin/stages/0/activate", Some(br#"{"version":"0.1.0"}"#.to_vec())).await;
    assert_eq!(s, 200, "{v}");
    let status = post_swapping(app, &c, TOTAL, &[(TOTAL / 2, "0.2.0")]).await;
    let lineage = landed_once_alike(dir.path(), TOTAL, &status, "0.2.0");
    assert!(lineage.iter().any(|l| l.contains("clean-pin@0.1.0")), "nothing landed by 0.1.0: {lineage:?}");
    assert!(lineage.iter().any(|l| l.contains("clean-pin@0.2.0")), "nothing landed by 0.2.0: {lineage:?}");
}

/// The built-in clean-pin-sql's statement, as a version of the `clean-pin` stage.
fn clean_pin_as_sql() -> Vec<u8> {
    let text = include_str!("../../host/src/runtime/sql/builtins/clean-pin.sql");
    text.replace("-- name: clean-pin-sql\n-- version: 0.1.0", "-- name: clean-pin\n-- version: 0.3.0-sql").into_bytes()
}

/// From the Wasm component to the same cleaning as a SQL stage and back, while
/// records flow: each swap happens between batches, nothing is lost or
/// repeated, and every row is cleaned alike whichever version cleaned it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_from_wasm_to_sql_and_back_under_load_loses_and_repeats_nothing() {
    const TOTAL: u64 = 150_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, c) = start(dir.path()).await;
    let (s, v) = c.admin(reqwest::Method::PUT, "/api/v1/transforms/clean-pin", Some(clean_pin_as_sql())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["contract"].as_str(), v["version"].as_str()), (Some("sql"), Some("0.3.0-sql")), "{v}");
    let status = post_swapping(app, &c, TOTAL, &[(TOTAL / 3, "0.3.0-sql"), (2 * TOTAL / 3, "0.2.0")]).await;
    let lineage = landed_once_alike(dir.path(), TOTAL, &status, "0.2.0");
    assert!(lineage.iter().any(|l| l.contains("clean-pin@0.3.0-sql")), "nothing landed by the SQL version: {lineage:?}");
    assert!(lineage.iter().filter(|l| l.contains("clean-pin@0.2.0")).count() >= 2, "the Wasm version before and after: {lineage:?}");
}

/// Post `total` pins, 500 a request, activating stage 0's version `v` when
/// record `n` is reached for each `(n, v)` of `swaps`; the pipeline's status
/// once every record is through, and the app stopped.
async fn post_swapping(app: RunningApp, c: &Client, total: u64, swaps: &[(u64, &str)]) -> Value {
    const PER_REQUEST: u64 = 500;
    for n in (0..total).step_by(PER_REQUEST as usize) {
        c.post_pins(n, PER_REQUEST).await;
        if let Some((_, version)) = swaps.iter().find(|(at, _)| *at == n) {
            let body = format!(r#"{{"version":"{version}"}}"#).into_bytes();
            let (s, v) = c.admin(reqwest::Method::POST, "/api/v1/pipelines/pin/stages/0/activate", Some(body)).await;
            assert_eq!(s, 200, "{v}");
        }
    }
    assert!(app.wait_caught_up(Duration::from_secs(180)).await, "did not catch up: {:?}", app.snapshot());
    let (_, status) = c.admin(reqwest::Method::GET, "/api/v1/pipelines/pin", None).await;
    app.shutdown().await.expect("clean shutdown");
    status
}

/// Every record landed once and none was refused, `active` is the version
/// running at the end, and the rows were cleaned alike whichever version
/// cleaned them. Returns each table file's lineage.
fn landed_once_alike(dir: &Path, total: u64, status: &Value, active: &str) -> Vec<String> {
    let landed = landed(&dir.join("data/landing"));
    assert_eq!(landed.len() as u64, total, "every record landed");
    assert!(landed.values().all(|rows| rows.len() == 1), "a record landed twice");
    assert_eq!(status["stages"][0]["active"]["version"], active);
    assert_eq!(status["stats"]["dead_letters"], 0);
    let batches = parquet_batches(&dir.join("data/landing/tables/pin"));
    assert!(column(&batches, "follower_count").iter().all(|v| v == &json!(1000)), "a row cleaned differently");
    assert!(column(&batches, "category").iter().all(|v| v == &json!("art")), "a row cleaned differently");
    files(&dir.join("data/landing/tables/pin")).iter().map(|f| lineage_of(f)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_refuses_everything_is_rolled_back_and_its_victims_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The table is a Delta table: the replay's output must reach its log, once.
    let text = config_text(dir.path()).replace("table = { name = \"pin\" }", "table = { name = \"pin\", format = \"delta\" }");
    let app = RunningApp::start(&Config::parse(&text).expect("valid config")).await.expect("start");
    let c = Client { http: reqwest::Client::new(), base: format!("http://{}", app.addr), token: app.admin_token.to_string() };
    let (s, v) = c.admin(reqwest::Method::PUT, "/api/v1/transforms/clean-pin", Some(REJECT_ALL_WASM.to_vec())).await;
    assert_eq!(s, 201, "{v}");
    c.post_pins(0, 1000).await;
    let (s, v) = c.admin(reqwest::Method::POST, "/api/v1/pipelines/pin/stages/0/activate", Some(br#"{"version":"0.3.0-rejects-all"}"#.to_vec())).await;
    assert_eq!(s, 200, "{v}");

    // Keep records flowing until the pipeline gives up on the bad version by itself.
    let mut next = 1000;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        c.post_pins(next, 50).await;
        next += 50;
        let (_, st) = c.admin(reqwest::Method::GET, "/api/v1/pipelines/pin", None).await;
        if st["stages"][0]["active"]["version"] == "0.2.0" {
            break st;
        }
        assert!(Instant::now() < deadline, "never rolled back: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reasons: Vec<&str> = status["recent_swaps"].as_array().expect("swaps").iter().filter_map(|s| s["reason"].as_str()).collect();
    assert!(reasons.iter().any(|r| r.starts_with("auto-rollback: 100% of")), "{reasons:?}");
    assert!(status["stats"]["rollbacks"].as_u64() >= Some(1));
    c.post_pins(next, 500).await;
    next += 500;
    assert!(app.wait_caught_up(Duration::from_secs(60)).await);

    let (_, dl) = c.admin(reqwest::Method::GET, "/api/v1/dead-letters/pin?limit=10000", None).await;
    let refused = dl["total"].as_u64().expect("total");
    assert!(refused > 0, "the bad version refused something: {dl}");
    assert!(dl["dead_letters"].as_array().expect("list").iter().all(|d| d["letter"]["reason"] == "this build refuses everything"));
    let one = dl["dead_letters"][0]["id"].as_str().expect("id").to_owned();
    let (s, got) = c.admin(reqwest::Method::GET, &format!("/api/v1/dead-letters/pin/{one}"), None).await;
    assert_eq!(s, 200, "{got}");

    let (s, r) = c.admin(reqwest::Method::POST, "/api/v1/dead-letters/pin/replay", None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["outcome"]["replayed"].as_u64(), Some(refused), "{r}");
    assert_eq!(r["outcome"]["failed_again"], 0);
    let (_, after) = c.admin(reqwest::Method::GET, "/api/v1/dead-letters/pin", None).await;
    assert_eq!(after["total"], 0, "{after}");
    app.shutdown().await.expect("clean shutdown");

    // Every record is in the table exactly once, read through its Delta snapshot: cleaned in the stream or by the replay.
    let landing = sluice::report::Landing::Dir(dir.path().join("data/landing"));
    let (_, batches) = sluice::report::query(&landing, "SELECT unique_id FROM pin").await.expect("query over the Delta table");
    let ids: Vec<String> = column(&batches, "unique_id").iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    let log = std::fs::read_dir(dir.path().join("data/landing/tables/pin/_delta_log")).expect("a Delta log").flatten();
    let replay_commits = log
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("sluice.replay.of")))
        .count();
    assert!(replay_commits >= 1, "the replay's output was committed to the log");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &ids {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len() as u64, next, "every posted record is in the table");
    assert!(counts.values().all(|n| *n == 1), "some record is in the table twice");
}

/// Upload `candidate` as a version of clean-pin, shadow the running version
/// with it over 5,000 live pins, and return the comparison; the app is stopped
/// and the running version checked to be the one it was.
async fn shadow_report(dir: &Path, candidate: Vec<u8>, version: &str) -> Value {
    let (app, c) = start(dir).await;
    let (s, v) = c.admin(reqwest::Method::PUT, "/api/v1/transforms/clean-pin", Some(candidate)).await;
    assert_eq!(s, 201, "{v}");
    let body = format!(r#"{{"version":"{version}"}}"#).into_bytes();
    let (s, v) = c.admin(reqwest::Method::POST, "/api/v1/pipelines/pin/stages/0/shadow", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    for n in (0..5000).step_by(250) {
        c.post_pins(n, 250).await;
    }
    assert!(app.wait_caught_up(Duration::from_secs(60)).await);
    let (s, report) = c.admin(reqwest::Method::DELETE, "/api/v1/pipelines/pin/stages/0/shadow", None).await;
    assert_eq!(s, 200, "{report}");
    let (_, st) = c.admin(reqwest::Method::GET, "/api/v1/pipelines/pin", None).await;
    assert_eq!(st["stages"][0]["active"]["version"], "0.2.0", "a shadow run activates nothing");
    app.shutdown().await.expect("clean shutdown");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_run_compares_a_candidate_on_live_batches_without_landing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = shadow_report(dir.path(), CLEAN_PIN_MARKED_WASM.to_vec(), "0.2.0-marked").await;
    let r = &report["shadow"];
    // Every record was compared once; the candidate marks every unique_id, so all differ.
    assert_eq!(r["records"], 5000, "{report}");
    assert_eq!(r["different"], 5000, "{report}");
    assert_eq!(r["same"], 0);
    assert_eq!(r["examples"].as_array().map(Vec::len), Some(20));
    assert_eq!(report["agreement"], 0.0);
    // Nothing the candidate made was landed.
    let ids = column(&parquet_batches(&dir.path().join("data/landing/tables/pin")), "unique_id");
    assert_eq!(ids.len(), 5000);
    assert!(ids.iter().all(|id| !id.as_str().unwrap_or_default().starts_with("v2:")));
}

/// A SQL statement shadowing the Wasm component it is meant to replace: every
/// live record compared, all agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_candidate_shadowing_the_component_agrees_on_every_live_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = shadow_report(dir.path(), clean_pin_as_sql(), "0.3.0-sql").await;
    assert_eq!((report["shadow"]["records"].as_u64(), report["shadow"]["different"].as_u64()), (Some(5000), Some(0)), "{report}");
    assert_eq!(report["agreement"], 1.0, "{report}");
}
