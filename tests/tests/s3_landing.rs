//! The pipeline landing into a real S3-compatible server (s3s-fs): layout,
//! contents, Parquet read back from the bucket, lineage metadata; crashes and
//! an outage of the store lose and duplicate nothing.

use serde_json::json;
use sluice_tests::{S3Server, Server, free_port};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

fn config(dir: &Path, s3: &S3Server) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    let text = sluice_tests::pin_config(&dir.join("data"), "", "batch = { max_records = 512 }\nroll = { max_records = 20000, max_age_ms = 3000 }")
        .replace("[log]", &format!("[landing.s3]\nbucket = \"lake\"\nprefix = \"pinterest/\"\nendpoint_url = \"{}\"\nforce_path_style = true\npart_size_mib = 5\nmax_attempts = 3\n\n[log]", s3.endpoint()));
    std::fs::write(&path, text).expect("config");
    path
}

/// A running s3s-fs with the bucket `lake`, and a sluice config landing in it.
async fn setup() -> (tempfile::TempDir, S3Server, std::path::PathBuf, Vec<(&'static str, &'static str)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(&dir.path().join("s3"), free_port()).expect("s3s-fs");
    s3.client().create_bucket().bucket("lake").send().await.expect("bucket");
    let cfg = config(dir.path(), &s3);
    let env = s3.env();
    (dir, s3, cfg, env)
}

fn post(server: &Server, from: u64, n: u64) -> bool {
    // Long descriptions, all in partition 0: one raw object big enough for a multipart upload.
    let records: Vec<_> = (from..from + n)
        .map(|i| json!({"partition": 0, "value": {"index": i, "unique_id": format!("id-{i:07}"), "description": "x".repeat(400), "follower_count": "3k", "category": "art"}}))
        .collect();
    reqwest::blocking::Client::new()
        .post(format!("{}/topics/t.pin", server.base_url))
        .header("content-type", "application/vnd.kafka.json.v2+json")
        .body(json!({ "records": records }).to_string())
        .send()
        .is_ok_and(|r| r.status().is_success())
}

async fn objects(s3: &S3Server, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    s3.objects("lake", prefix).await
}

fn unique_ids_in_raw(objects: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    objects
        .values()
        .flat_map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line")["unique_id"].as_str().expect("id").to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn unique_ids_in_parquet(objects: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut out = Vec::new();
    for bytes in objects.values() {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.clone()))
            .expect("parquet")
            .build()
            .expect("reader");
        let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
        out.extend(sluice_tests::column(&batches, "unique_id").into_iter().map(|v| v.as_str().expect("id").to_owned()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_lands_in_the_bucket_with_the_confluent_layout_and_lineage() {
    let (_dir, s3, cfg, env) = setup().await;
    let server = tokio::task::spawn_blocking(move || {
        let mut server = Server::start(SLUICE, &cfg, free_port(), &env).expect("sluice");
        for n in (0..15_000).step_by(1000) {
            assert!(post(&server, n, 1000));
        }
        server.wait_caught_up(Duration::from_secs(120)).expect("caught up");
        assert!(server.terminate().expect("terminate"), "clean shutdown");
    });
    server.await.expect("sluice run");

    let raw = objects(&s3, "pinterest/topics/t.pin/").await;
    assert!(!raw.is_empty());
    for key in raw.keys() {
        let name = key.rsplit('/').next().expect("name");
        assert!(key.starts_with("pinterest/topics/t.pin/partition="), "{key}");
        let parts: Vec<&str> = name.trim_end_matches(".json").split('+').collect();
        assert_eq!((parts[0], parts.len(), parts[2].len()), ("t.pin", 3, 10), "Confluent name: {key}");
    }
    // Some raw objects were big enough to go up in parts.
    assert!(raw.values().any(|b| b.len() > 5 << 20), "sizes: {:?}", raw.values().map(Vec::len).collect::<Vec<_>>());
    let mut ids = unique_ids_in_raw(&raw);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 15_000);
    let tables = objects(&s3, "pinterest/tables/pin/").await;
    let mut table_ids = unique_ids_in_parquet(&tables);
    assert_eq!(table_ids.len(), 15_000);
    table_ids.sort();
    table_ids.dedup();
    assert_eq!(table_ids.len(), 15_000, "each row once");

    let bytes = tables.values().next().expect("a table object").clone();
    let schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).expect("parquet").schema().clone();
    let columns: Vec<(String, String)> = schema.fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect();
    let want = [
        "ind",
        "unique_id",
        "title",
        "description",
        "follower_count",
        "poster_name",
        "tag_list",
        "is_image_or_video",
        "image_src",
        "save_location",
        "category",
    ];
    assert_eq!(columns.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), want);
    assert_eq!((columns[0].1.as_str(), columns[4].1.as_str(), columns[1].1.as_str()), ("Int64", "Int64", "Utf8"));
    let first_table = tables.keys().next().expect("a table object").clone();
    let head = s3.client().head_object().bucket("lake").key(&first_table).send().await.expect("head");
    let meta = head.metadata().expect("metadata");
    assert_eq!(meta.get("sluice-pipeline").map(String::as_str), Some("pin"), "{meta:?}");
    assert!(meta.get("sluice-transforms-0").is_some_and(|v| v.contains("clean-pin@0.2.0 sha256:")), "{meta:?}");
    let big_raw = raw.iter().find(|(_, b)| b.len() > 5 << 20).map(|(k, _)| k.clone()).expect("a multipart object");
    let head = s3.client().head_object().bucket("lake").key(&big_raw).send().await.expect("head");
    assert_eq!(head.metadata().and_then(|m| m.get("sluice-pipeline")).map(String::as_str), Some("pin"), "multipart objects carry lineage too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_store_stalls_the_pipeline_and_loses_nothing() {
    let (_dir, mut s3, cfg, env) = setup().await;
    let s3 = tokio::task::spawn_blocking(move || {
        let mut server = Server::start(SLUICE, &cfg, free_port(), &env).expect("sluice");
        assert!(post(&server, 0, 2000));
        server.wait_caught_up(Duration::from_secs(60)).expect("caught up");
        s3.stop();
        // Ingest goes on into the embedded log; landing stalls and says so.
        for n in (2000..6000).step_by(500) {
            assert!(post(&server, n, 500));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status: serde_json::Value = reqwest::blocking::get(format!("{}/status", server.base_url)).expect("status").json().expect("json");
            if status["pin"]["errors"].as_u64() > Some(0) {
                assert!(status["pin"]["last_error"].as_str().is_some_and(|e| e.contains("S3")), "{status}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the outage was not reported: {status}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let ready = reqwest::blocking::get(format!("{}/ready", server.base_url)).expect("ready");
        assert_eq!(ready.status(), 503, "not ready while landing fails");
        let health: serde_json::Value = reqwest::blocking::get(format!("{}/health", server.base_url)).expect("health").json().expect("json");
        assert_eq!(health["status"], "degraded", "{health}");
        assert_eq!(health["pipelines"]["pin"]["failing"], true, "{health}");
        let metrics = reqwest::blocking::get(format!("{}/metrics", server.base_url)).expect("metrics").text().expect("text");
        assert!(metrics.lines().any(|l| l.starts_with("sluice_sink_upload_retries_total") && !l.ends_with(" 0")), "retries are counted");
        // Down for 30 s in all, as a store outage might be.
        std::thread::sleep(Duration::from_secs(25));
        s3.resume().expect("s3s-fs back");
        server.wait_caught_up(Duration::from_secs(120)).expect("caught up after the outage");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while reqwest::blocking::get(format!("{}/ready", server.base_url)).expect("ready").status() != 200 {
            assert!(std::time::Instant::now() < deadline, "never ready again");
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(server.terminate().expect("terminate"));
        s3
    })
    .await
    .expect("run");
    let mut ids = unique_ids_in_parquet(&objects(&s3, "pinterest/tables/pin/").await);
    assert_eq!(ids.len(), 6000, "every row landed once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6000);
    let raw = unique_ids_in_raw(&objects(&s3, "pinterest/topics/t.pin/").await);
    assert_eq!(raw.len(), 6000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_during_multipart_uploads_leave_every_row_once_and_no_half_objects() {
    let (_dir, s3, cfg, env) = setup().await;
    let port = free_port();
    let (acked, uncertain) = tokio::task::spawn_blocking(move || {
        let (mut acked, mut uncertain) = (Vec::new(), Vec::new());
        let mut next = 0u64;
        let mut send = |server: &Server, acked: &mut Vec<u64>, uncertain: &mut Vec<u64>| {
            let ok = post(server, next, 500);
            if ok {
                acked.push(next)
            } else {
                uncertain.push(next)
            }
            next += 500;
            ok
        };
        // Crash right after the first object of a roll (the big raw one, a multipart upload) is complete.
        let mut crash: Vec<(&str, &str)> = env.clone();
        crash.push(("SLUICE_CRASH_AT", "segment.object_finished:1"));
        let mut server = Server::start(SLUICE, &cfg, port, &crash).expect("sluice");
        for _ in 0..60 {
            if !send(&server, &mut acked, &mut uncertain) {
                break;
            }
        }
        assert!(server.wait_exit(Duration::from_secs(60)), "the crash plan never fired");
        // SIGKILL while parts are being uploaded.
        let mut server = Server::start(SLUICE, &cfg, port, &env).expect("sluice");
        for _ in 0..30 {
            assert!(send(&server, &mut acked, &mut uncertain));
        }
        std::thread::sleep(Duration::from_millis(2500));
        server.kill9();
        // Finish cleanly.
        let mut server = Server::start(SLUICE, &cfg, port, &env).expect("sluice");
        for _ in 0..4 {
            assert!(send(&server, &mut acked, &mut uncertain));
        }
        server.wait_caught_up(Duration::from_secs(120)).expect("caught up");
        assert!(server.terminate().expect("terminate"));
        (acked, uncertain)
    })
    .await
    .expect("run");

    let expand = |starts: &[u64]| -> std::collections::BTreeSet<String> { starts.iter().flat_map(|s| (*s..s + 500).map(|i| format!("id-{i:07}"))).collect() };
    let (acked, uncertain) = (expand(&acked), expand(&uncertain));
    for (what, prefix, parquet) in [("raw", "pinterest/topics/t.pin/", false), ("table", "pinterest/tables/pin/", true)] {
        // Every visible object is complete: it parses to the end.
        let objs = objects(&s3, prefix).await;
        let ids = if parquet { unique_ids_in_parquet(&objs) } else { unique_ids_in_raw(&objs) };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &ids {
            *counts.entry(id).or_default() += 1;
        }
        assert!(counts.values().all(|n| *n == 1), "{what}: a row landed twice");
        let missing = acked.iter().filter(|id| !counts.contains_key(id.as_str())).count();
        assert_eq!(missing, 0, "{what}: acknowledged rows lost");
        assert!(counts.keys().all(|id| acked.contains(*id) || uncertain.contains(*id)), "{what}: rows never sent");
    }
}
