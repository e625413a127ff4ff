//! Pipelines created, replaced and deleted through the admin API while the
//! appliance runs, and kept across a restart.

use serde_json::{Value, json};
use sluice::app::RunningApp;
use sluice::config::Config;
use sluice_tests::files;
use std::path::Path;
use std::time::Duration;

fn config(dir: &Path) -> Config {
    Config::parse(&format!(
        "data_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"a-test-token-long-enough\"\n[log]\ntopics = [\"t.pin\", \"t.geo\"]\n\n[[pipeline]]\nname = \"pin\"\ntopics = [\"t.pin\"]\nland_raw = true\n",
        dir.join("data").display()
    ))
    .expect("valid config")
}

async fn admin(app: &RunningApp, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("http://{}{path}", app.addr))
        .bearer_auth("a-test-token-long-enough")
        .body(body.to_owned())
        .send()
        .await
        .expect("reachable");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

async fn post_geo(app: &RunningApp, from: i64, n: i64) {
    let values = (from..from + n).map(|i| json!({"ind": i, "country": "Chad", "latitude": 1.0, "longitude": 2.0, "timestamp": "2020-01-01 00:00:00"}));
    sluice_tests::produce(&format!("http://{}", app.addr), "t.geo", values).await;
}

const GEO: &str = "name = \"geo\"\ntopics = [\"t.geo\"]\ntransforms = [\"clean-geo\"]\nland_raw = true\nroll = { max_age_ms = 200 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_come_and_go_through_the_api_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = RunningApp::start(&config(dir.path())).await.expect("start");
    use reqwest::Method;

    // A transform whose output kind ("any") has no built-in schema.
    let uploaded = reqwest::Client::new()
        .put(format!("http://{}/api/v1/transforms/hostile", app.addr))
        .bearer_auth("a-test-token-long-enough")
        .body(sluice::runtime::testing::HOSTILE_WASM.to_vec())
        .send()
        .await
        .expect("reachable");
    assert_eq!(uploaded.status().as_u16(), 201);
    let bad = [
        ("name = \"x\"\ntopics = [\"t.nope\"]\nland_raw = true\n", 422, "reads topic `t.nope`, which is not in log.topics"),
        ("name = \"x\"\ntopics = [\"t.geo\"]\ntransforms = [\"clean-nothing\"]\nland_raw = true\n", 422, "no transform named `clean-nothing`"),
        ("name = \"x\"\ntopics = [\"t.pin\"]\nland_raw = true\n", 422, "both land topic `t.pin` raw"),
        ("name = \"x\"\ntopcs = []\n", 422, "unknown field `topcs`"),
        ("{\"name\": 5}", 422, "pipeline definition (JSON)"),
        ("name = \"pin\"\ntopics = [\"t.geo\"]\nland_raw = true\n", 409, "already exists"),
        // Found wrong only when the pipeline is built: still the definition's fault, answered 422.
        (
            "name = \"x\"\ntopics = [\"t.geo\"]\ntransforms = [\"hostile\"]\ntable = { name = \"x\" }\n",
            422,
            "table `x` needs a schema for Parquet, Delta or partitioning; the output kind \"any\" has no built-in one, so give table.columns",
        ),
        (
            "name = \"x\"\ntopics = [\"t.geo\"]\ntransforms = [\"clean-geo\"]\ntable = { name = \"x\", schema = \"no-such-kind\" }\n",
            422,
            "the output kind \"no-such-kind\" has no built-in one",
        ),
        (
            "name = \"x\"\ntopics = [\"t.geo\"]\ntransforms = [\"clean-geo\"]\ntable = { name = \"x\", partition_by = \"nope\" }\n",
            422,
            "table.partition_by `nope` is not a column of the table",
        ),
        ("name = \"x\"\ntopics = [\"t.geo\"]\ntransforms = [\"count-posts\"]\ntable = { name = \"x\" }\n", 422, "`count-posts` is an aggregate component"),
        (
            "name = \"x\"\ntopics = [\"t.geo\"]\ntransforms = [\"clean-geo\"]\ntable = { name = \"x\" }\n[[action]]\nname = \"a\"\ndetector = \"nope\"\nwebhook = { url = \"http://127.0.0.1:9/\" }\n",
            422,
            "action `a`: detector `nope`",
        ),
        (
            "name = \"x\"\ntopics = [\"t.geo\"]\ntransforms = [\"clean-geo\"]\ntable = { name = \"x\" }\n[[action]]\nname = \"a\"\ndetector = \"match\"\nwhen = { field = \"country\", any_of = [\"Chad\"] }\nwebhook = { url = \"http://127.0.0.1:9/\", headers = { \"bad header\" = \"v\" } }\n",
            422,
            "action `a`: webhook header name `bad header`",
        ),
    ];
    for (body, status, msg) in bad {
        let (s, r) = admin(&app, Method::POST, "/api/v1/pipelines", body).await;
        assert_eq!(s, status, "{body}: {r}");
        assert!(r["error"]["message"].as_str().unwrap_or_default().contains(msg), "{body}: {r}");
    }

    let (s, r) = admin(&app, Method::POST, "/api/v1/pipelines", GEO).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["stages"][0]["active"]["name"], "clean-geo");
    post_geo(&app, 0, 300).await;
    assert!(app.wait_caught_up(Duration::from_secs(60)).await);
    let landing = dir.path().join("data/landing");
    let raw_lines =
        |landing: &Path| -> usize { files(&landing.join("topics/t.geo")).iter().map(|f| std::fs::read_to_string(f).expect("read").lines().count()).sum() };
    assert_eq!(raw_lines(&landing), 300, "the new pipeline landed what was posted");

    // Replace it: now with a table. It resumes from its committed positions.
    let (s, r) = admin(&app, Method::PUT, "/api/v1/pipelines/geo", &format!("{GEO}table = {{ name = \"geo\" }}\n")).await;
    assert_eq!(s, 200, "{r}");
    post_geo(&app, 300, 300).await;
    assert!(app.wait_caught_up(Duration::from_secs(60)).await);
    assert!(!files(&landing.join("tables/geo")).is_empty(), "the replaced pipeline writes its table");
    assert_eq!(raw_lines(&landing), 600, "nothing was read twice across the replacement");

    let (s, r) = admin(&app, Method::PUT, "/api/v1/pipelines/geo", "name = \"other\"\ntopics = [\"t.geo\"]\nland_raw = true\n").await;
    assert_eq!(s, 422, "{r}");
    // A replacement that cannot be built is refused; the running definition stays, and runs.
    let (s, r) = admin(&app, Method::PUT, "/api/v1/pipelines/geo", &format!("{GEO}table = {{ name = \"geo\", partition_by = \"nope\" }}\n")).await;
    assert_eq!(s, 422, "{r}");
    assert!(r["error"]["message"].as_str().unwrap_or_default().contains("table.partition_by `nope`"), "{r}");
    let (s, r) = admin(&app, Method::GET, "/api/v1/pipelines/geo", "").await;
    assert_eq!((s, &r["table"]), (200, &json!("geo")), "{r}");
    post_geo(&app, 600, 100).await;
    assert!(app.wait_caught_up(Duration::from_secs(60)).await);
    assert_eq!(raw_lines(&landing), 700, "the previous definition runs again");
    let (s, r) = admin(&app, Method::DELETE, "/api/v1/pipelines/pin", "").await;
    assert_eq!(s, 409, "{r}");
    assert!(r["error"]["message"].as_str().unwrap_or_default().contains("defined in the config file"));

    // Restart: the API-created pipeline is back, with its table.
    app.shutdown().await.expect("shutdown");
    let app = RunningApp::start(&config(dir.path())).await.expect("restart");
    let (s, r) = admin(&app, Method::GET, "/api/v1/pipelines/geo", "").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["table"], "geo");

    let (s, r) = admin(&app, Method::DELETE, "/api/v1/pipelines/geo", "").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(admin(&app, Method::GET, "/api/v1/pipelines/geo", "").await.0, 404);
    app.shutdown().await.expect("shutdown");
    let app = RunningApp::start(&config(dir.path())).await.expect("restart");
    assert_eq!(admin(&app, Method::GET, "/api/v1/pipelines/geo", "").await.0, 404, "a deleted pipeline stays deleted");
    app.shutdown().await.expect("shutdown");
}
