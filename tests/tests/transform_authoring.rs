//! A transform from zero to live, as a user makes one: `sluice transform new`,
//! `build`, `test` (a passing and a deliberately failing sample) and `deploy`
//! against a running sluice, in a fresh folder; then records cleaned by the new
//! version land.

use serde_json::{Value, json};
use sluice_tests::{Server, free_port, json_lines, produce, wait_until};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const TOKEN: &str = "an-authoring-test-token";

/// Run sluice as a user would: the component builds in the crate's own target
/// dir (so no CARGO_TARGET_DIR from the test's own cargo run leaks in).
fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-under-test")).args(args).env_remove("CARGO_TARGET_DIR").env("RUST_LOG", "warn").output().expect("running sluice")
}

fn ok(out: &Output, what: &str) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

fn admin(base: &str, method: reqwest::Method, path: &str, body: &str) -> Value {
    let resp = reqwest::blocking::Client::new().request(method, format!("{base}{path}")).bearer_auth(TOKEN).body(body.to_owned()).send().expect("reachable");
    let status = resp.status();
    let v: Value = resp.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// The `category` of each landed row, by `ind`.
fn landed(table: &Path) -> Vec<(i64, Value)> {
    let mut rows: Vec<(i64, Value)> = json_lines(table).into_iter().map(|r| (r["ind"].as_i64().expect("ind"), r["category"].clone())).collect();
    rows.sort_by_key(|r| r.0);
    rows
}

#[test]
fn new_build_test_deploy_then_the_new_version_cleans_what_lands() {
    let work = tempfile::tempdir().expect("temp dir");
    let krate = work.path().join("tag-pins");
    let dir = krate.to_str().expect("utf-8 path");

    // new → build → test
    let out = ok(&sluice(&["transform", "new", "tag-pins", "--dir", dir]), "new");
    assert!(out.contains("sluice transform build"), "{out}");
    let out = ok(&sluice(&["transform", "build", dir]), "build");
    assert!(out.contains("built tag-pins@0.1.0 (transform world"), "{out}");
    let out = ok(&sluice(&["transform", "test", dir]), "test");
    assert!(out.contains("3 samples: 3 passed, 0 failed"), "{out}");

    // A sample that expects the category kept as it came: the test says so and fails.
    let samples_path = krate.join("samples.json");
    let good_samples = std::fs::read_to_string(&samples_path).expect("samples");
    let mut samples: Vec<Value> = serde_json::from_str(&good_samples).expect("JSON");
    samples.push(json!({"input": {"ind": 9, "category": "Art"}, "output": [{"ind": 9, "category": "Art"}]}));
    std::fs::write(&samples_path, serde_json::to_vec_pretty(&samples).expect("JSON")).expect("write");
    let failing = sluice(&["transform", "test", dir]);
    let out = String::from_utf8_lossy(&failing.stdout);
    assert!(!failing.status.success(), "a failing sample must fail the command:\n{out}");
    assert!(out.contains("FAIL  sample 4") && out.contains("4 samples: 3 passed, 1 failed"), "{out}");
    assert!(out.contains(r#"-     "category": "Art""#) && out.contains(r#"+     "category": "art""#), "no diff of the category:\n{out}");
    std::fs::write(&samples_path, good_samples).expect("restore");

    // A running sluice with one topic and no pipeline yet.
    let data = work.path().join("data");
    let config = work.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!("data_dir = \"{}\"\n[server]\nadmin_token = \"{TOKEN}\"\n[log]\ntopics = [\"t.events\"]\npartitions = 1\n", data.display()),
    )
    .expect("config");
    let mut server = Server::start(env!("CARGO_BIN_EXE_sluice-under-test"), &config, free_port(), &[]).expect("sluice starts");
    let base = server.base_url.clone();
    let remote = ["--url", base.as_str(), "--token", TOKEN];

    // Deploy 0.1.0 (upload only), then a pipeline that runs it.
    let out = ok(&sluice(&[&["transform", "deploy", dir][..], &remote].concat()), "deploy 0.1.0");
    assert!(out.contains("uploaded tag-pins@0.1.0") && out.contains("passed 3 golden sample(s)"), "{out}");
    let pipeline = "name = \"tagged\"\ntopics = [\"t.events\"]\ntransforms = [\"tag-pins\"]\ntable = { name = \"tagged\", formats = [\"jsonl\"] }\nroll = { max_age_ms = 200 }\n";
    admin(&base, reqwest::Method::POST, "/api/v1/pipelines", pipeline);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let art = |from: i64, to: i64| (from..to).map(|i| json!({"ind": i, "category": "Art"})).collect::<Vec<_>>();
    rt.block_on(produce(&base, "t.events", art(0, 20)));
    let table = data.join("landing/tables/tagged");
    wait_until("0.1.0's rows to land", Duration::from_secs(60), || landed(&table).len() == 20);

    // 0.2.0: a changed rule, built and put live with a shadow run first.
    let lib = krate.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).expect("lib.rs");
    let changed = source.replace("version: \"0.1.0\"", "version: \"0.2.0\"").replace(
        "let category = input.category.text().map(|c| c.trim().to_lowercase());",
        "let category = input.category.text().map(|c| c.trim().to_lowercase()).map(|c| if c == \"art\" { \"fine-art\".to_owned() } else { c });",
    );
    assert_ne!(changed, source, "the template changed: update this test's edit");
    std::fs::write(&lib, changed).expect("write lib.rs");
    let out = ok(&sluice(&["transform", "build", dir]), "build 0.2.0");
    assert!(out.contains("built tag-pins@0.2.0"), "{out}");
    ok(&sluice(&["transform", "test", dir]), "test 0.2.0");
    let deploy = [&["transform", "deploy", dir, "--pipeline", "tagged", "--stage", "0", "--shadow", "2"][..], &remote].concat();
    let out = ok(&sluice(&deploy), "deploy 0.2.0");
    assert!(out.contains("shadow:") && out.contains("live: tagged stage 0 runs tag-pins@0.2.0") && out.contains("sluice transform rollback tagged 0"), "{out}");

    // What lands from now on is cleaned by 0.2.0; what landed before stays as 0.1.0 made it.
    rt.block_on(produce(&base, "t.events", art(20, 40)));
    wait_until("0.2.0's rows to land", Duration::from_secs(60), || landed(&table).len() == 40);
    let rows = landed(&table);
    assert!(rows[..20].iter().all(|(_, c)| c == "art"), "{rows:?}");
    assert!(rows[20..].iter().all(|(_, c)| c == "fine-art"), "{rows:?}");
    assert!(server.terminate().expect("stops"), "sluice did not stop cleanly");
}
