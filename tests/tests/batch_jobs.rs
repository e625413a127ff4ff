//! The batch layer through the admin API of a running appliance: the report
//! job and its HTML summary, and a backfill through another transform version
//! that rewrites exactly the affected table objects.

use serde_json::{Value, json};
use sluice::app::RunningApp;
use sluice::config::Config;
use sluice::emulate::post::{Api, PostPlan, post};
use sluice::runtime::testing::CLEAN_PIN_MARKED_WASM;
use sluice_tests::{column, files};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.expect("admin reachable");
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    /// Start a job run and wait for it to end; returns the finished run.
    async fn run_job(&self, name: &str, params: Option<Value>) -> Value {
        let (s, v) = self.call(reqwest::Method::POST, &format!("/api/v1/jobs/{name}/run"), params).await;
        assert_eq!(s, 202, "{v}");
        let poll = v["poll"].as_str().expect("poll url").to_owned();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, v) = self.call(reqwest::Method::GET, &poll, None).await;
            if matches!(v["run"]["state"].as_str(), Some("succeeded" | "failed")) || Instant::now() > deadline {
                return v["run"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every landed object: path relative to the landing dir → content.
fn snapshot(landing: &Path) -> BTreeMap<String, Vec<u8>> {
    files(landing).into_iter().map(|f| (f.strip_prefix(landing).expect("under landing").display().to_string(), std::fs::read(&f).expect("read"))).collect()
}

fn unique_ids(parquet: &[u8]) -> Vec<String> {
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(parquet))
        .expect("footer")
        .build()
        .expect("reader");
    let batches: Vec<_> = r.map(|b| b.expect("batch")).collect();
    column(&batches, "unique_id").into_iter().map(|v| v.as_str().expect("unique_id").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_a_backfill_run_as_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::demo(dir.path().join("data"), "demo");
    // Small segments, so a partition holds several and a range can pick some.
    for p in &mut config.pipelines {
        p.batch.max_records = 40;
        p.roll.max_records = 40;
    }
    config.jobs.schedule.clear();
    let landing = config.landing_dir();
    let app = RunningApp::start(&config).await.expect("start");
    let c = Client { http: reqwest::Client::new(), base: format!("http://{}", app.addr), token: app.admin_token.to_string() };
    let plan = PostPlan { seed: 3, concurrency: 2, ..PostPlan::new(&c.base, Api::Rest, "demo", 600) };
    assert_eq!(post(&plan).await.expect("posted").failed_requests, 0);
    assert!(app.wait_caught_up(Duration::from_secs(60)).await, "landed");

    // The reports, through the API; the summary is served beside the status page.
    let run = c.run_job("reports", None).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["progress"], 1.0);
    assert!(run["log"].as_array().expect("log").iter().any(|l| l.as_str().is_some_and(|l| l.contains("report 9/9"))), "{run}");
    let page = reqwest::get(format!("{}/reports", c.base)).await.expect("page").text().await.expect("text");
    assert_eq!(page.matches("<svg").count(), 9, "one chart per report");
    assert!(files(&landing.join("reports/popular_category_by_country")).iter().any(|f| f.extension().is_some_and(|e| e == "csv")));

    // A new version of clean-pin, uploaded but not activated: the pipeline keeps the built-in.
    let resp =
        c.http.put(format!("{}/api/v1/transforms/clean-pin", c.base)).bearer_auth(&c.token).body(CLEAN_PIN_MARKED_WASM.to_vec()).send().await.expect("upload");
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap_or_default());

    // Backfill partition 0 from its first segment up to (not into) its third.
    let raw0: Vec<String> = snapshot(&landing).into_keys().filter(|k| k.starts_with("topics/demo.pin/partition=0/")).collect();
    assert!(raw0.len() >= 3, "partition 0 has several segments: {raw0:?}");
    let start_of = |k: &str| -> u64 { k.rsplit('+').next().and_then(|s| s.strip_suffix(".json")).and_then(|s| s.parse().ok()).expect("start") };
    let to_offset = start_of(&raw0[2]);
    let affected: Vec<String> = raw0[..2].iter().map(|k| format!("tables/pin/demo.pin+0+{:010}.parquet", start_of(k))).collect();
    let before = snapshot(&landing);
    let params = json!({ "pipeline": "pin", "transforms": ["clean-pin@0.2.0-marked"], "from_offset": 0, "to_offset": to_offset, "partitions": [0] });
    let run = c.run_job("backfill", Some(params.clone())).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(run["summary"].as_str().expect("summary").starts_with("2 segments"), "{run}");
    let after = snapshot(&landing);

    // Same objects, by name; only the affected table objects differ; they hold the new version's rows.
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "nothing added or removed");
    let changed: Vec<&String> = after.iter().filter(|(k, v)| before[*k] != **v).map(|(k, _)| k).collect();
    assert_eq!(changed, affected.iter().collect::<Vec<_>>());
    for key in &affected {
        let (old, new) = (unique_ids(&before[key]), unique_ids(&after[key]));
        assert!(!old.is_empty() && old.iter().all(|id| !id.starts_with("v2:")));
        assert_eq!(new, old.iter().map(|id| format!("v2:{id}")).collect::<Vec<_>>(), "{key}: the same rows, cleaned by the new version");
    }

    // The same backfill again writes the same bytes.
    let again = c.run_job("backfill", Some(params)).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(snapshot(&landing), after, "a backfill is deterministic");

    // Mistakes are failed runs that say what is wrong.
    let bad = c.run_job("backfill", Some(json!({ "pipeline": "pin", "transforms": ["clean-pin@9.9"] }))).await;
    assert_eq!(bad["state"], "failed");
    assert!(bad["error"].as_str().expect("error").contains("9.9"), "{bad}");
    let bad = c.run_job("backfill", None).await;
    assert!(bad["error"].as_str().expect("error").contains("needs a JSON body"), "{bad}");
    app.shutdown().await.expect("shutdown");
}
