//! The seed's streaming reports from the real topics: emulator traffic (with
//! resent rows) posted to the pin, geo and user topics, cleaned by the demo's
//! three pipelines into output topics, joined by `ind` (pin ⋈ geo ⋈ user) and
//! counted per country and category in windows by `count-posts`, in one
//! pipeline. The join emits one row per row id present on all three topics;
//! the windowed counts add up to report 1's counts over the same landed tables.

use serde_json::Value;
use sluice::app::RunningApp;
use sluice::config::Config;
use sluice::config::sql_stages::SqlStageConfig;
use sluice::emulate::post::{Api, PostPlan, post};
use sluice::pipeline::PipelineConfig;
use sluice::pipeline::output::OutputConfig;
use sluice::report::Landing;
use sluice_tests::{Server, column, free_port, json_lines, parquet_batches};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The docs' example (docs/aggregation.md, "The seed's streaming reports"), with short quiet times.
const POSTS: &str = r#"
name = "posts"
topics = ["demo.pin-clean", "demo.geo-clean", "demo.user-clean"]
table = { name = "posts_by_country", formats = ["jsonl"] }
roll = { max_records = 300, max_age_ms = 300 }

[join]
inputs = [
  { topic = "demo.pin-clean", key = "ind", name = "pin" },
  { topic = "demo.geo-clean", key = "ind", name = "geo" },
  { topic = "demo.user-clean", key = "ind", name = "user" },
]
within_ms = 60000

[aggregate]
name = "count-posts"
time_field = "timestamp"
group_by = ["country", "category"]
window_ms = 31536000000           # 365 days
allowed_lateness_ms = 630720000000  # the emulator's rows are years apart: nothing is late

[watermark]
idle_timeout_ms = 1000
close_idle_after_ms = 3000
"#;

/// Report 1's streaming count written as SQL: the window, its time field and
/// keys come from the statement, the join from `[pipeline.join]`.
const REPORT_1_SQL: &str = "-- output: post-count\nCREATE TABLE input (ind BIGINT);\n\
    SELECT country, category, count(DISTINCT ind) AS post_count FROM input\n\
    GROUP BY TUMBLE(\"timestamp\", INTERVAL '365' DAY), country, category";

fn config(data: &Path) -> Config {
    config_counting_with(data, POSTS, None)
}

/// The demo's pipelines and the posts pipeline; with `sql`, the posts are counted by that statement.
fn config_counting_with(data: &Path, posts: &str, sql: Option<&str>) -> Config {
    let mut config = Config::demo(data.to_path_buf(), "demo");
    config.jobs.schedule.clear();
    for p in &mut config.pipelines {
        let topic = format!("demo.{}-clean", p.name);
        config.log.topics.push(topic.clone());
        p.output = Some(OutputConfig { topic, to: None });
        p.roll.max_records = 300;
        p.roll.max_age_ms = 300;
    }
    config.pipelines.push(toml::from_str::<PipelineConfig>(posts).expect("the posts pipeline"));
    if let Some(sql) = sql {
        config.sql_stages.push(SqlStageConfig { name: "report-1-sql".into(), sql: Some(sql.into()), sql_file: None });
    }
    config.validate().expect("valid config");
    config
}

/// Distinct `ind` of a landed cleaned table.
fn ids(landing: &Path, table: &str) -> BTreeSet<i64> {
    column(&parquet_batches(&landing.join("tables").join(table)), "ind").iter().filter_map(Value::as_i64).collect()
}

/// `(country, category) → posts` summed over every landed window.
fn windowed(landing: &Path) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for r in json_lines(&landing.join("tables/posts_by_country")) {
        let (Some(country), Some(category)) = (r["country"].as_str(), r["category"].as_str()) else { continue };
        *out.entry((country.to_owned(), category.to_owned())).or_default() += r["post_count"].as_i64().expect("post_count");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_geo_user_joined_from_emulator_traffic_then_counted_matches_report_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    joined_and_counted_matches_report_1(config(&dir.path().join("data"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_geo_user_joined_then_counted_by_a_sql_window_matches_report_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let component =
        "name = \"count-posts\"\ntime_field = \"timestamp\"\ngroup_by = [\"country\", \"category\"]\nwindow_ms = 31536000000           # 365 days\n";
    assert!(POSTS.contains(component));
    let posts = POSTS.replace(component, "name = \"report-1-sql\"\n");
    joined_and_counted_matches_report_1(config_counting_with(&dir.path().join("data"), &posts, Some(REPORT_1_SQL))).await;
}

/// The join and the window in one statement: its FROM names the topics and
/// keys (the join workers run it), its GROUP BY the window and keys.
const REPORT_1_JOIN_SQL: &str = "-- output: post-count\nCREATE TABLE input (ind BIGINT);\n\
    SELECT country, category, count(DISTINCT ind) AS post_count\n\
    FROM \"demo.pin-clean\" AS pin JOIN \"demo.geo-clean\" AS geo USING (ind) JOIN \"demo.user-clean\" AS \"user\" USING (ind)\n\
    GROUP BY TUMBLE(geo.\"timestamp\", INTERVAL '365' DAY), geo.country, pin.category";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_geo_user_joined_and_counted_by_one_sql_statement_matches_report_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let component =
        "name = \"count-posts\"\ntime_field = \"timestamp\"\ngroup_by = [\"country\", \"category\"]\nwindow_ms = 31536000000           # 365 days\n";
    let inputs = "inputs = [\n  { topic = \"demo.pin-clean\", key = \"ind\", name = \"pin\" },\n  { topic = \"demo.geo-clean\", key = \"ind\", name = \"geo\" },\n  { topic = \"demo.user-clean\", key = \"ind\", name = \"user\" },\n]\n";
    assert!(POSTS.contains(component) && POSTS.contains(inputs));
    // [join] keeps only its tuning (within_ms); the statement names the sides.
    let posts = POSTS.replace(component, "name = \"report-1-sql\"\n").replace(inputs, "");
    joined_and_counted_matches_report_1(config_counting_with(&dir.path().join("data"), &posts, Some(REPORT_1_JOIN_SQL))).await;
}

async fn joined_and_counted_matches_report_1(config: Config) {
    let landing = config.landing_dir();
    let app = RunningApp::start(&config).await.expect("start");
    let base = format!("http://{}", app.addr);
    let plan = PostPlan { seed: 11, concurrency: 2, ..PostPlan::new(&base, Api::Rest, "demo", 1_500) };
    let posted = post(&plan).await.expect("posted");
    assert_eq!(posted.failed_requests, 0);
    // The same seed again: the first 500 rows resent whole, as a retrying producer does.
    let resent = post(&PostPlan { rows: 500, ..plan.clone() }).await.expect("resent");
    assert_eq!(resent.failed_requests, 0);
    assert!(app.wait_caught_up(Duration::from_secs(90)).await, "every pipeline caught up");

    let on_all: BTreeSet<i64> = {
        let (pins, geos, users) = (ids(&landing, "pin"), ids(&landing, "geo"), ids(&landing, "user"));
        assert!(!pins.is_subset(&geos) || pins.len() > 100, "the emulator sent rows");
        pins.intersection(&geos).copied().filter(|i| users.contains(i)).collect()
    };
    assert!(on_all.len() > 500, "{} row ids on all three topics", on_all.len());

    // The windows close once the inputs have been quiet for 3 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut joined = 0;
    while Instant::now() < deadline {
        joined = app.snapshot().get("posts").map_or(0, |s| s.joined_rows);
        if joined as usize >= on_all.len() && windowed(&landing).values().sum::<i64>() > 0 && app.wait_caught_up(Duration::from_secs(1)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = app.snapshot().remove("posts").expect("posts status");
    assert_eq!(status.joined_rows as usize, on_all.len(), "one joined row per row id on all three topics (resends ignored); was {joined}");
    let metrics = reqwest::get(format!("{base}/metrics")).await.expect("metrics").text().await.expect("text");
    let duplicates: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_join_duplicates_total{pipeline=\"posts\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .expect("the join's duplicates metric");
    assert!(duplicates >= 1_500.0, "the resent rows' records were ignored by the join: {duplicates}");
    let windows = windowed(&landing);

    // Report 1 over the same landed tables: the top category per country and its count.
    let report = sluice::report::definitions::all().into_iter().find(|d| d.name == "popular_category_by_country").expect("report 1");
    let (_, batches) = sluice::report::query(&Landing::Dir(landing.clone()), &report.sql).await.expect("report 1 runs");
    let (countries, categories, counts) = (column(&batches, "country"), column(&batches, "category"), column(&batches, "category_count"));
    assert!(countries.len() > 10, "report 1 has a row per country");
    for ((country, category), count) in countries.iter().zip(&categories).zip(&counts) {
        let (country, category) = (country.as_str().expect("country"), category.as_str().expect("category"));
        let streamed = windows.get(&(country.to_owned(), category.to_owned())).copied().unwrap_or(0);
        assert_eq!(Some(streamed), count.as_i64(), "{country} / {category}: windowed count vs report 1");
        let top = windows.iter().filter(|((c, _), _)| c == country).map(|((_, k), n)| (*n, std::cmp::Reverse(k.clone()))).max().expect("a window");
        assert_eq!((top.0, top.1.0.as_str()), (streamed, category), "{country}: the same top category");
    }
    let dead = json_lines(&landing.join("dead-letters/posts"));
    assert!(dead.iter().all(|d| d["kind"] != "late"), "nothing was late: {:?}", dead.first());
    app.shutdown().await.expect("clean shutdown");
}

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

/// The same pipelines as a config file for the real binary.
fn config_file(dir: &Path) -> std::path::PathBuf {
    config_file_with(dir, "roll = { max_records = 300, max_age_ms = 300 }", POSTS)
}

/// The pipelines as a config file: the cleaning pipelines roll as `upstream_roll`
/// says (into their output topics), then `posts` joins and counts.
fn config_file_with(dir: &Path, upstream_roll: &str, posts: &str) -> std::path::PathBuf {
    let mut text = format!(
        "data_dir = \"{}\"\n[log]\ntopics = [\"demo.pin\", \"demo.geo\", \"demo.user\", \"demo.pin-clean\", \"demo.geo-clean\", \"demo.user-clean\"]\n",
        dir.join("data").display()
    );
    for kind in ["pin", "geo", "user"] {
        text += &format!(
            "[[pipeline]]\nname = \"{kind}\"\ntopics = [\"demo.{kind}\"]\ntransforms = [\"clean-{kind}\"]\ntable = {{ name = \"{kind}\" }}\n\
             output = {{ topic = \"demo.{kind}-clean\" }}\n{upstream_roll}\n"
        );
    }
    text += "[[pipeline]]";
    text += &posts.replace("[join]", "[pipeline.join]").replace("[aggregate]", "[pipeline.aggregate]").replace("[watermark]", "[pipeline.watermark]");
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Every record of an internal topic, read over the REST Proxy consumer API: `(key, value)`.
fn read_topic(base: &str, topic: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let http = reqwest::blocking::Client::new();
    let created =
        http.post(format!("{base}/consumers/check")).json(&serde_json::json!({"name": "r", "format": "binary", "auto.offset.reset": "earliest"})).send();
    assert!(created.expect("create").status().is_success());
    let at = format!("{base}/consumers/check/instances/r");
    assert!(http.post(format!("{at}/subscription")).json(&serde_json::json!({"topics": [topic]})).send().expect("subscribe").status().is_success());
    let mut out = Vec::new();
    let mut empty = 0;
    while empty < 3 {
        let got: Vec<Value> = http
            .get(format!("{at}/records?timeout=500"))
            .header("accept", "application/vnd.kafka.binary.v2+json")
            .send()
            .expect("read")
            .json()
            .expect("records");
        empty = if got.is_empty() { empty + 1 } else { 0 };
        for r in got {
            let decode = |v: &Value| v.as_str().map(|s| b64.decode(s).expect("base64")).unwrap_or_default();
            out.push((decode(&r["key"]), decode(&r["value"])));
        }
    }
    out
}

/// How often each `ind` was joined, from what the join moved on (markers left out).
fn joined_ids(moved: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<i64, usize> {
    let mut joined: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, value) in moved.iter().filter(|(key, _)| key.as_slice() != b"!sluice.watermark") {
        let row: Value = serde_json::from_slice(value).expect("a joined row");
        *joined.entry(row["ind"].as_i64().expect("ind")).or_default() += 1;
    }
    joined
}

/// The join and its hop into the windows, killed with SIGKILL while emulator
/// traffic flows: every row id on all three cleaned topics is joined exactly
/// once (read back from the repartition topic), and the windows count each once.
#[test]
fn the_join_through_kill_9_moves_each_joined_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut server = Server::start(SLUICE, &config, free_port(), &[]).expect("start");
    for round in 0..4u64 {
        let plan = PostPlan { seed: 30 + round % 3, concurrency: 2, ..PostPlan::new(&server.base_url, Api::Rest, "demo", 400) };
        assert_eq!(rt.block_on(post(&plan)).expect("posted").failed_requests, 0);
        std::thread::sleep(Duration::from_millis(50 + round * 120));
        server.kill9();
        server = Server::start(SLUICE, &config, free_port(), &[]).expect("restart");
    }
    server.wait_caught_up(Duration::from_secs(90)).expect("caught up");
    let landing = dir.path().join("data/landing");
    let on_all: BTreeSet<i64> = {
        let (pins, geos, users) = (ids(&landing, "pin"), ids(&landing, "geo"), ids(&landing, "user"));
        pins.intersection(&geos).copied().filter(|i| users.contains(i)).collect()
    };
    assert!(on_all.len() > 500, "{} row ids on all three topics", on_all.len());
    // Wait for the windows to close (3 s of quiet), then read what the join moved on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while windowed(&landing).values().sum::<i64>() < on_all.len() as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let moved = read_topic(&server.base_url, "posts-repartition");
    assert!(server.terminate().expect("terminate"), "clean exit");
    let joined = joined_ids(&moved);
    let twice: Vec<_> = joined.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "rows joined more than once: {twice:?}");
    assert_eq!(joined.keys().copied().collect::<BTreeSet<i64>>(), on_all, "every row id on all three topics joined, no other");
    assert_eq!(windowed(&landing).values().sum::<i64>(), on_all.len() as i64, "each joined row counted once in the windows");
}

/// The cleaning pipelines write their output topics once per roll, so the
/// join sees an input quiet until its upstream rolls: here the geo pipeline
/// rolls every 15 s, the pin and user pipelines every 300 ms. With
/// `close_idle_after_ms = 10000`, the pin and user inputs quiet for 10 s after
/// the posting stops must not close the join while the geo pipeline still
/// holds the geo records of the waiting keys. Killed with SIGKILL once: every
/// row id on all three cleaned topics is joined and counted exactly once,
/// none expired.
#[test]
fn a_join_waits_for_an_upstream_pipeline_that_holds_records_through_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let posts = POSTS
        .replace("roll = { max_records = 300, max_age_ms = 300 }", "roll = { max_records = 5000, max_age_ms = 1000 }")
        .replace("idle_timeout_ms = 1000\nclose_idle_after_ms = 3000", "close_idle_after_ms = 10000")
        .replace("within_ms = 60000", "");
    let config = config_file_with(dir.path(), "roll = { max_records = 300, max_age_ms = 300 }", &posts);
    let text = std::fs::read_to_string(&config).expect("config").replacen(
        "output = { topic = \"demo.geo-clean\" }\nroll = { max_records = 300, max_age_ms = 300 }",
        "output = { topic = \"demo.geo-clean\" }\nroll = { max_age_ms = 15000 }",
        1,
    );
    assert!(text.contains("max_age_ms = 15000"), "the geo pipeline rolls every 15 s");
    std::fs::write(&config, text).expect("config");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut server = Server::start(SLUICE, &config, free_port(), &[]).expect("start");
    for round in 0..2u64 {
        let plan = PostPlan { seed: 50 + round, concurrency: 1, rate: 150, ..PostPlan::new(&server.base_url, Api::Rest, "demo", 450) };
        assert_eq!(rt.block_on(post(&plan)).expect("posted").failed_requests, 0);
        if round == 0 {
            server.kill9();
            server = Server::start(SLUICE, &config, free_port(), &[]).expect("restart");
        }
    }
    server.wait_caught_up(Duration::from_secs(120)).expect("caught up");
    let landing = dir.path().join("data/landing");
    let on_all: BTreeSet<i64> = {
        let (pins, geos, users) = (ids(&landing, "pin"), ids(&landing, "geo"), ids(&landing, "user"));
        pins.intersection(&geos).copied().filter(|i| users.contains(i)).collect()
    };
    assert!(on_all.len() > 300, "{} row ids on all three topics", on_all.len());
    // The windows close once every input has been quiet for 10 s after the geo pipeline's last roll.
    let deadline = Instant::now() + Duration::from_secs(90);
    while windowed(&landing).values().sum::<i64>() < on_all.len() as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let moved = read_topic(&server.base_url, "posts-repartition");
    assert!(server.terminate().expect("terminate"), "clean exit");
    let joined = joined_ids(&moved);
    let expired: Vec<Value> = json_lines(&landing.join("dead-letters/posts"))
        .into_iter()
        .filter(|d| {
            d["kind"] == "unjoined"
                && d["value"]
                    .as_str()
                    .and_then(|v| serde_json::from_str::<Value>(v).ok())
                    .is_some_and(|v| v["ind"].as_i64().is_some_and(|i| on_all.contains(&i)))
        })
        .collect();
    assert!(expired.is_empty(), "{} records of joinable ids expired, e.g. {}", expired.len(), expired[0]["reason"]);
    let twice: Vec<_> = joined.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "rows joined more than once: {twice:?}");
    assert_eq!(joined.keys().copied().collect::<BTreeSet<i64>>(), on_all, "every row id on all three topics joined, no other");
    assert_eq!(windowed(&landing).values().sum::<i64>(), on_all.len() as i64, "each joined row counted once in the windows");
}
