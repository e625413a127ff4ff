//! The whole embedded pipeline through its real HTTP endpoint: 10,000 emulated
//! records of each kind plus bad ones; every record accounted for exactly once.

use serde_json::{Value, json};
use sluice::app::RunningApp;
use sluice::config::Config;
use sluice::emulate::data::Generator;
use sluice::emulate::post::{Api, PostPlan, post};
use sluice_tests::{column, json_lines, multiset, parquet_batches, raw_by_position};
use std::path::Path;
use std::time::Duration;

const ROWS: u64 = 10_000;
const SEED: u64 = 7;

/// Records no cleaning transform can accept: each must become a dead letter.
fn bad_records(kind: &str) -> Vec<Value> {
    let id = if kind == "pin" { "index" } else { "ind" };
    vec![json!([1, 2, 3]), json!("a string"), json!(null), json!(42), json!({"no": "id"}), json!({ id: "12" }), json!({ id: 1.5 })]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_of_each_kind_land_exactly_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config::demo(dir.path().join("data"), "e2e");
    let app = RunningApp::start(&config).await?;
    let base = format!("http://{}", app.addr);

    let plan = PostPlan { batch: 250, seed: SEED, ..PostPlan::new(&base, Api::Rest, "e2e", ROWS) };
    let summary = post(&plan).await?;
    assert_eq!(summary.failed_requests, 0);

    for kind in ["pin", "geo", "user"] {
        sluice_tests::produce(&base, &format!("e2e.{kind}"), bad_records(kind)).await;
    }

    assert!(app.wait_caught_up(Duration::from_secs(120)).await, "pipelines did not catch up: {:?}", app.snapshot());
    app.shutdown().await?;

    let landing = config.landing_dir();
    let g = Generator::new(SEED);
    let posted_ids = multiset((0..ROWS).map(|n| g.pick(n)));
    for kind in ["pin", "geo", "user"] {
        let bad = bad_records(kind).len();
        let raw = raw_by_position(&landing.join(format!("topics/e2e.{kind}")));
        assert_eq!(raw.len(), ROWS as usize + bad, "{kind}: raw records");

        let tables = parquet_batches(&landing.join(format!("tables/{kind}")));
        let table_ids: Vec<i64> = column(&tables, "ind").iter().map(|v| v.as_i64().expect("ind is never null")).collect();
        assert_eq!(multiset(table_ids.iter().copied()), posted_ids, "{kind}: every good record cleaned exactly once");

        let dead = json_lines(&landing.join(format!("dead-letters/{kind}")));
        assert_eq!(dead.len(), bad, "{kind}: dead letters {dead:?}");
        for d in &dead {
            let pos = (d["partition"].as_u64().expect("partition"), d["offset"].as_u64().expect("offset"));
            let original = raw.get(&pos).unwrap_or_else(|| panic!("{kind}: dead letter at {pos:?} has no raw record"));
            assert_eq!(d["value"].as_str().map(|s| serde_json::from_str::<Value>(s).expect("json")), Some(original.clone()));
            assert_eq!(d["transform"], format!("clean-{kind}"));
            assert_eq!(d["kind"], "rejected");
            assert!(!d["reason"].as_str().unwrap_or_default().is_empty());
        }
        assert_eq!(table_ids.len() + dead.len(), raw.len(), "{kind}: cleaned + dead letters = raw");
        check_schema(kind, &landing);
    }
    Ok(())
}

fn check_schema(kind: &str, landing: &Path) {
    use arrow_schema::{DataType, TimeUnit};
    let batches = parquet_batches(&landing.join(format!("tables/{kind}")));
    let schema = batches[0].schema();
    let got: Vec<(String, DataType)> = schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    let s = DataType::Utf8;
    let want: Vec<(&str, DataType)> = match kind {
        "pin" => vec![
            ("ind", DataType::Int64),
            ("unique_id", s.clone()),
            ("title", s.clone()),
            ("description", s.clone()),
            ("follower_count", DataType::Int64),
            ("poster_name", s.clone()),
            ("tag_list", s.clone()),
            ("is_image_or_video", s.clone()),
            ("image_src", s.clone()),
            ("save_location", s.clone()),
            ("category", s),
        ],
        "geo" => vec![
            ("ind", DataType::Int64),
            ("country", s),
            ("coordinates", DataType::List(std::sync::Arc::new(arrow_schema::Field::new("item", DataType::Float64, true)))),
            ("timestamp", ts),
        ],
        _ => vec![("ind", DataType::Int64), ("user_name", s), ("age", DataType::Int64), ("date_joined", ts)],
    };
    let want: Vec<(String, DataType)> = want.into_iter().map(|(n, t)| (n.to_owned(), t)).collect();
    assert_eq!(got, want, "{kind}: Parquet columns and types, in order");
    if kind == "pin" {
        let counts = column(&batches, "follower_count");
        assert!(counts.iter().any(|c| c.as_i64().is_some_and(|n| n >= 1000)), "suffixed counts became integers");
        let locations = column(&batches, "save_location");
        assert!(locations.iter().all(|l| l.as_str().is_none_or(|l| l.starts_with("/data/"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_rolls_the_largest_segment_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing would roll by age or size during this test: only the budget can land data.
    let config = Config::parse(&sluice_tests::pin_config(
        &dir.path().join("data"),
        "listen = \"127.0.0.1:0\"",
        // Small reads, so the budget is crossed many times however fast the worker
        // catches up (one read of everything would roll only three segments).
        "workers = 1\nbatch = { max_records = 250 }\nroll = { max_age_ms = 600000, max_bytes = 1073741824, memory_budget_bytes = 300000 }",
    ))
    .expect("config");
    let app = RunningApp::start(&config).await.expect("start");
    for n in (0..6000).step_by(500) {
        let values = (n..n + 500).map(|i| json!({"index": i, "unique_id": format!("u{i}"), "description": "d".repeat(200)}));
        sluice_tests::produce(&format!("http://{}", app.addr), "t.pin", values).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.snapshot()["pin"].records_in < 6000 {
        assert!(std::time::Instant::now() < deadline, "{:?}", app.snapshot());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Landed before any age or size limit could have rolled them: the budget did
    // (the worker rolls after the reads of a round, so give that round a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.snapshot()["pin"].segments <= 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let segments = app.snapshot()["pin"].segments;
    assert!(segments > 3, "the budget rolled segments early ({segments})");
    // Shutdown lands the rest (under the budget, so still open).
    app.shutdown().await.expect("shutdown");
    let ids = column(&parquet_batches(&config.landing_dir().join("tables/pin")), "unique_id");
    let distinct: std::collections::BTreeSet<String> = ids.iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    assert_eq!((ids.len(), distinct.len()), (6000, 6000));
}
