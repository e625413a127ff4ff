//! SQL stages as a data engineer uses them: defined in the config file, marked
//! `sql:` in a pipeline, landing the columns the statement writes; refused
//! rows as dead letters, `WHERE` dropping rows silently; a changed text taking
//! over at the next start; `sluice sql check` before any of it.

use serde_json::{Value, json};
use sluice::app::RunningApp;
use sluice::config::Config;
use sluice_tests::{column, json_lines, parquet_batches, produce};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SUMMARY: &str = r#"
CREATE TABLE input ("index" BIGINT);
SELECT
  "index" AS ind,
  upper(category) AS category,
  parse_count(follower_count) AS followers,
  CASE WHEN "index" IS NULL THEN 'no index' END AS _reject
FROM input
WHERE category <> 'skip'
"#;

fn config_text(dir: &Path, sql: &str) -> String {
    format!(
        "data_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[log]\ntopics = [\"t.pin\"]\npartitions = 2\n\n\
         [[transform]]\nname = \"pin-summary\"\nsql = '''{sql}'''\n\n\
         [[pipeline]]\nname = \"pin\"\ntopics = [\"t.pin\"]\ntransforms = [\"sql:pin-summary\"]\nland_raw = true\n\
         table = {{ name = \"summary\" }}\nroll = {{ max_age_ms = 200 }}\n",
        dir.join("data").display()
    )
}

async fn post(app: &RunningApp, values: Vec<Value>) {
    produce(&format!("http://{}", app.addr), "t.pin", values).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_stage_from_the_config_lands_its_columns_and_its_new_text_takes_over_at_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = RunningApp::start(&Config::parse(&config_text(dir.path(), SUMMARY)).expect("config")).await.expect("start");
    post(
        &app,
        vec![
            json!({"index": 1, "category": "art", "follower_count": "26k"}),
            json!({"index": 2, "category": "skip", "follower_count": "1"}),
            json!({"category": "art", "follower_count": "3"}),
            json!({"index": 4, "category": "travel", "follower_count": "1.5k"}),
        ],
    )
    .await;
    assert!(app.wait_caught_up(Duration::from_secs(60)).await, "did not catch up: {:?}", app.snapshot());
    app.shutdown().await.expect("shutdown");

    let landing = dir.path().join("data/landing");
    let rows = |batches: &[arrow_array::RecordBatch]| -> Vec<(Value, Value, Value)> {
        let (ind, cat, fol) = (column(batches, "ind"), column(batches, "category"), column(batches, "followers"));
        let mut rows: Vec<_> = ind.into_iter().zip(cat).zip(fol).map(|((a, b), c)| (a, b, c)).collect();
        rows.sort_by_key(|r| r.0.as_i64());
        rows
    };
    let first = parquet_batches(&landing.join("tables/summary"));
    assert_eq!(
        rows(&first),
        vec![(json!(1), json!("ART"), json!(26000)), (json!(4), json!("TRAVEL"), json!(1500))],
        "WHERE dropped `skip`, _reject refused the third"
    );
    let schema = first[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["ind", "category", "followers"], "the table has the statement's columns");
    let dead = json_lines(&landing.join("dead-letters/pin"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0]["reason"].as_str(), dead[0]["transform"].as_str(), dead[0]["kind"].as_str()),
        (Some("no index"), Some("pin-summary"), Some("rejected"))
    );

    // The engineer edits the statement; the next start runs the new text, and says so.
    let edited = SUMMARY.replace("upper(category)", "lower(category)");
    let app = RunningApp::start(&Config::parse(&config_text(dir.path(), &edited)).expect("config")).await.expect("restart");
    post(&app, vec![json!({"index": 5, "category": "Food", "follower_count": "7"})]).await;
    assert!(app.wait_caught_up(Duration::from_secs(60)).await, "did not catch up: {:?}", app.snapshot());
    let base = format!("http://{}", app.addr);
    let status: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/pipelines/pin"))
        .bearer_auth(&*app.admin_token)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    app.shutdown().await.expect("shutdown");
    let stage = &status["stages"][0];
    assert_eq!(stage["active"]["contract"], "sql", "{stage}");
    assert_eq!(stage["previous"].as_array().map(Vec::len), Some(1), "the first text stays for a rollback: {stage}");
    assert_ne!(stage["active"]["content_hash"], stage["previous"][0], "{stage}");
    let all = rows(&parquet_batches(&landing.join("tables/summary")));
    assert_eq!(all.last(), Some(&(json!(5), json!("food"), json!(7))), "{all:?}");
    assert_eq!(all.len(), 3, "nothing landed twice across the restart: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_mark_on_a_component_and_a_statement_failing_its_samples_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), SUMMARY).replace("transforms = [\"sql:pin-summary\"]", "transforms = [\"sql:clean-pin\"]");
    let err = RunningApp::start(&Config::parse(&text).expect("config")).await.err().expect("refused");
    let err = format!("{err:#}");
    assert!(err.contains("`sql:clean-pin` is marked a SQL stage, but `clean-pin` is a WebAssembly component"), "{err}");

    let app = RunningApp::start(&Config::parse(&config_text(dir.path(), SUMMARY)).expect("config")).await.expect("start");
    let (base, token) = (format!("http://{}", app.addr), app.admin_token.to_string());
    let http = reqwest::Client::new();
    let put = |path: &str, body: &str| http.put(format!("{base}{path}")).bearer_auth(&token).body(body.to_owned()).send();
    let samples = json!([{"input": {"index": 9, "category": "art", "follower_count": "2k"}, "output": [{"ind": 9, "category": "ART", "followers": 2000}]}]);
    let resp = put("/api/v1/transforms/pin-summary/samples", &samples.to_string()).await.expect("reachable");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let wrong = SUMMARY.replace("upper(category)", "category");
    let resp = put("/api/v1/transforms/pin-summary", &wrong).await.expect("reachable");
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.expect("json");
    assert!(body.to_string().contains("golden sample 0 failed"), "{body}");
    let resp = put("/api/v1/transforms/pin-summary", "SELECT category, count(*) AS n FROM input GROUP BY category").await.expect("reachable");
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.expect("json");
    assert!(body.to_string().contains("works on each row alone"), "{body}");
    app.shutdown().await.expect("shutdown");
}

#[test]
fn sql_check_prints_what_a_statement_reads_writes_and_refuses_and_where_it_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stmt, input) = (dir.path().join("summary.sql"), dir.path().join("pins.jsonl"));
    std::fs::write(&stmt, SUMMARY).expect("write");
    std::fs::write(&input, "{\"index\": 1, \"category\": \"art\", \"follower_count\": \"6M\"}\n{\"category\": \"art\"}\nnot json\n").expect("write");
    let sluice = |args: &[&std::ffi::OsStr]| Command::new(env!("CARGO_BIN_EXE_sluice-under-test")).args(args).env("RUST_LOG", "warn").output().expect("run");
    let out = sluice(&["sql".as_ref(), "check".as_ref(), stmt.as_os_str(), "--input".as_ref(), input.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("reads:  index BIGINT, category VARCHAR, follower_count VARCHAR"), "{stdout}");
    assert!(stdout.contains("writes: ind int64, category string, followers int64"), "{stdout}");
    assert!(stdout.contains("| 1   | ART      | 6000000   |"), "{stdout}");
    assert!(stdout.contains("line 2: refused (rejected): no index") && stdout.contains("line 3: refused (rejected): record is not a JSON object"), "{stdout}");
    assert!(stdout.contains("3 records read: 1 rows out, 2 refused"), "{stdout}");

    // A windowed statement: its window and keys, and what each window of the sample lands.
    std::fs::write(&stmt, "SELECT country, count(*) AS posts FROM input GROUP BY TUMBLE(\"timestamp\", INTERVAL '1' MINUTE), country").expect("write");
    let posts = "{\"country\": \"Peru\", \"timestamp\": \"2020-08-28 03:52:47\"}\n{\"country\": \"Peru\", \"timestamp\": \"2020-08-28 03:52:59\"}\n{\"country\": \"Chad\"}\n";
    std::fs::write(&input, posts).expect("write");
    let out = sluice(&["sql".as_ref(), "check".as_ref(), stmt.as_os_str(), "--input".as_ref(), input.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("window: tumbling 60000 ms of `timestamp`; keys: country"), "{stdout}");
    assert!(stdout.contains("writes: window_start timestamp, window_end timestamp, revision int64, country string, posts int64"), "{stdout}");
    assert!(stdout.contains(r#"[2020-08-28T03:52:00Z, +60000 ms) {"country":"Peru","posts":2}"#), "{stdout}");
    assert!(stdout.contains("line 3: refused: no event time"), "{stdout}");

    std::fs::write(&stmt, "SELECT\n  upper(category) AS c,\n  nope(category) AS d\nFROM input").expect("write");
    let out = sluice(&["sql".as_ref(), "check".as_ref(), stmt.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken statement fails the check");
    assert!(stderr.contains("nope"), "{stderr}");
}
