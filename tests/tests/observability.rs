//! Metrics seen through a real Prometheus, the alert rules and scrape config
//! checked by promtool, the dashboard checked against a scrape, and the
//! deployment files parsed.

use serde_json::{Value, json};
use sluice_tests::{Server, free_port};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn tool(name: &str) -> String {
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success());
    assert!(found, "`{name}` is not installed: scripts/test.sh installs it (Debian package `prometheus`)");
    name.to_owned()
}

fn start_sluice(dir: &Path) -> Server {
    let port = free_port();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[log]\ntopics = [\"o.pin\", \"o.pin-clean\", \"o.geo\"]\n[[pipeline]]\nname = \"pin\"\ntopics = [\"o.pin\"]\ntransforms = [\"clean-pin\"]\nland_raw = true\ntable = {{ name = \"pin\", format = \"delta\" }}\noutput = {{ topic = \"o.pin-clean\" }}\nroll = {{ max_age_ms = 200 }}\n\
             [[pipeline.action]]\nname = \"vehicles\"\ndetector = \"match\"\nwhen = {{ field = \"category\", any_of = [\"vehicles\"] }}\n\
             webhook = {{ url = \"http://127.0.0.1:9/never-called\" }}\n\
             [[pipeline]]\nname = \"posts\"\ntopics = [\"o.pin-clean\", \"o.geo\"]\ntable = {{ name = \"posts\" }}\nroll = {{ max_age_ms = 200 }}\n\
             [pipeline.join]\ninputs = [{{ topic = \"o.pin-clean\", key = \"ind\" }}, {{ topic = \"o.geo\", key = \"ind\" }}]\n\
             [pipeline.aggregate]\nname = \"count-posts\"\ntime_field = \"timestamp\"\ngroup_by = [\"country\", \"category\"]\nwindow_ms = 60000\n\
             [pipeline.watermark]\nidle_timeout_ms = 300\nclose_idle_after_ms = 600\n",
            dir.join("data").display()
        ),
    )
    .expect("config");
    Server::start(SLUICE, &config, port, &[]).expect("sluice starts")
}

fn post(server: &Server, values: Vec<Value>) {
    let records: Vec<Value> = values.into_iter().map(|v| json!({ "value": v })).collect();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/topics/o.pin", server.base_url))
        .header("content-type", "application/vnd.kafka.json.v2+json")
        .body(json!({ "records": records }).to_string())
        .send()
        .expect("ingest");
    assert!(resp.status().is_success());
}

/// A Prometheus server, stopped (by PID) when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        let rules = deploy().join("prometheus/alerts.yml").canonicalize().expect("alerts.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules.display()
            ),
        )
        .expect("prometheus config");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, url: format!("http://127.0.0.1:{port}") }
    }

    fn query(&self, q: &str) -> Option<f64> {
        let v: Value = reqwest::blocking::Client::new().get(format!("{}/api/v1/query", self.url)).query(&[("query", q)]).send().ok()?.json().ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Wait until the query answers `want`.
    fn wait_for(&self, q: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.query(q);
            if got == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "{q}: Prometheus says {got:?}, expected {want}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[test]
fn prometheus_sees_counters_that_match_the_records_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sluice = start_sluice(dir.path());
    let good: Vec<Value> = (0..1500).map(|i| json!({"index": i, "unique_id": format!("u{i}"), "follower_count": "5"})).collect();
    for chunk in good.chunks(100) {
        post(&sluice, chunk.to_vec());
    }
    post(&sluice, vec![json!([1]), json!({"no": "id"}), json!("text")]);
    sluice.wait_caught_up(Duration::from_secs(60)).expect("caught up");

    let target = sluice.base_url.trim_start_matches("http://").to_owned();
    let prom = Prometheus::start(dir.path(), &target);
    prom.wait_for("sum(sluice_ingest_records_total)", 1503.0);
    prom.wait_for(r#"sum(sluice_ingest_requests_total{route="/topics/{topic}",status="200"})"#, 16.0);
    prom.wait_for(r#"sum(sluice_source_records_total{pipeline="pin"})"#, 1503.0);
    prom.wait_for(r#"sum(sluice_sink_records_total{pipeline="pin",kind="raw"})"#, 1503.0);
    prom.wait_for(r#"sum(sluice_sink_records_total{pipeline="pin",kind="table"})"#, 1500.0);
    prom.wait_for(r#"sum(sluice_transform_records_in_total{transform="clean-pin"})"#, 1503.0);
    prom.wait_for(r#"sum(sluice_transform_failures_total{kind="rejected"})"#, 3.0);
    prom.wait_for(r#"sum(sluice_dead_letters_total{pipeline="pin"})"#, 3.0);
    prom.wait_for(r#"sum(sluice_source_lag_records{pipeline="pin"})"#, 0.0);
    prom.wait_for("sluice_pipeline_up", 1.0);
    // The alert rules loaded, and none fires on a healthy pipeline.
    let rules: Value = reqwest::blocking::get(format!("{}/api/v1/rules", prom.url)).expect("rules").json().expect("json");
    let loaded: usize = rules["data"]["groups"].as_array().expect("groups").iter().map(|g| g["rules"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(loaded, 15, "{rules}");
    let alerts: Value = reqwest::blocking::get(format!("{}/api/v1/alerts", prom.url)).expect("alerts").json().expect("json");
    assert!(alerts["data"]["alerts"].as_array().is_some_and(|a| a.iter().all(|x| x["state"] != "firing")), "{alerts}");
}

#[test]
fn alert_rules_and_scrape_config_pass_promtool() {
    for args in [["check", "rules", "prometheus/alerts.yml"], ["check", "config", "prometheus/prometheus.yml"]] {
        let out = Command::new(tool("promtool")).args(args).current_dir(deploy()).output().expect("promtool runs");
        assert!(out.status.success(), "promtool {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}

/// Metric names an expression refers to (histogram series folded to their metric).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("sluice_").map(|p| p + i).or_else(|| expr[i..].find("process_").map(|p| p + i)) {
        let end = bytes[pos..].iter().position(|b| !(b.is_ascii_alphanumeric() || *b == b'_')).map_or(bytes.len(), |e| pos + e);
        let name = &expr[pos..end];
        let name = name.strip_suffix("_bucket").unwrap_or(name);
        out.insert(name.to_owned());
        i = end;
    }
    out
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sluice = start_sluice(dir.path());
    // One clean record, one a guest counts (an unparseable follower count), one refused.
    post(&sluice, vec![json!({"index": 1}), json!({"index": 2, "follower_count": "lots"}), json!([3])]);
    // A geo record for the first pin: joined, counted in a window, and the watermark moves.
    let geo = json!({"records": [{"value": {"ind": 1, "country": "Peru", "timestamp": "2020-08-28T03:52:47"}}]});
    let http = reqwest::blocking::Client::new();
    let sent = http.post(format!("{}/topics/o.geo", sluice.base_url)).header("content-type", "application/vnd.kafka.json.v2+json").body(geo.to_string()).send();
    assert!(sent.expect("ingest").status().is_success());
    sluice.wait_caught_up(Duration::from_secs(60)).expect("caught up");
    // A reader of the output topic over HTTP, so the consumer metrics have series too.
    let created = http
        .post(format!("{}/consumers/obs", sluice.base_url))
        .json(&json!({"name": "r", "format": "json", "auto.offset.reset": "earliest"}))
        .send()
        .expect("create");
    assert!(created.status().is_success());
    let base = format!("{}/consumers/obs/instances/r", sluice.base_url);
    assert!(http.post(format!("{base}/subscription")).json(&json!({"topics": ["o.pin-clean"]})).send().expect("subscribe").status().is_success());
    let read: Vec<Value> =
        http.get(format!("{base}/records?timeout=2000")).header("accept", "application/vnd.kafka.json.v2+json").send().expect("read").json().expect("records");
    assert!(!read.is_empty(), "the clean record is in the output topic");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut scrape = String::new();
    while std::time::Instant::now() < deadline {
        scrape = reqwest::blocking::get(format!("{}/metrics", sluice.base_url)).expect("scrape").text().expect("text");
        if scrape.contains("sluice_aggregate_watermark_seconds{")
            && scrape.contains("sluice_join_matched_total{pipeline=\"posts\"} 1")
            && scrape.contains("sluice_delta_commits_total{")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let keyed: Vec<&str> = scrape.lines().filter(|l| l.contains("posts") && !l.starts_with('#')).collect();
    assert!(scrape.contains("sluice_aggregate_watermark_seconds{"), "the join matched and the window's watermark moved: {keyed:#?}");
    let exported: BTreeSet<String> = scrape.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).map(str::to_owned).collect();

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy().join("grafana/dashboards/sluice.json")).expect("dashboard")).expect("dashboard is JSON");
    let mut used = BTreeSet::new();
    let mut panels_with_queries = 0;
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            panels_with_queries += 1;
            used.extend(metric_names(t["expr"].as_str().expect("expr")));
        }
    }
    assert!(panels_with_queries >= 20);
    let rules: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).expect("alerts")).expect("yaml");
    for g in rules["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            used.extend(metric_names(r["expr"].as_str().expect("expr")));
        }
    }
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}\nexported: {exported:?}");
    // Every sluice metric follows the naming rule.
    for m in exported.iter().filter(|m| m.starts_with("sluice_")) {
        let kind = scrape.lines().find_map(|l| l.strip_prefix(&format!("# TYPE {m} "))).expect("type line");
        assert_eq!(kind == "counter", m.ends_with("_total"), "{m} is a {kind}: counters and only counters end in _total");
    }
}

#[test]
fn compose_file_and_manifests_are_well_formed() {
    let d = deploy();
    let compose: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(d.join("docker-compose.yml")).expect("compose")).expect("compose is YAML");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for want in ["sluice", "kafka", "minio", "kinesis", "prometheus", "grafana"] {
        assert!(names.contains(want), "compose lacks {want}");
    }
    let volumes: BTreeSet<&str> = compose["volumes"].as_mapping().map(|m| m.keys().filter_map(|k| k.as_str()).collect()).unwrap_or_default();
    for (name, s) in services {
        let name = name.as_str().expect("service name");
        assert!(s["image"].is_string() ^ s["build"].is_mapping(), "{name}: needs exactly one of image or build");
        for dep in s["depends_on"].as_sequence().into_iter().flatten() {
            assert!(names.contains(dep.as_str().expect("name")), "{name} depends on unknown {dep:?}");
        }
        for p in s["ports"].as_sequence().into_iter().flatten() {
            let p = p.as_str().expect("port mapping string");
            let (host, container) = p.split_once(':').expect("host:container");
            assert!(host.parse::<u16>().is_ok() && container.parse::<u16>().is_ok(), "{name}: bad port mapping {p}");
        }
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let source = v.as_str().expect("volume string").split(':').next().expect("source");
            if source.starts_with("./") {
                assert!(d.join(source).exists(), "{name}: mounts {source}, which is not in deploy/");
            } else {
                assert!(volumes.contains(source), "{name}: named volume {source} is not declared");
            }
        }
        if let Some(b) = s["build"].as_mapping() {
            let context = d.join(b[&serde_yaml::Value::from("context")].as_str().expect("context"));
            assert!(context.join(b[&serde_yaml::Value::from("dockerfile")].as_str().expect("dockerfile")).exists());
        }
    }
    // The config sluice runs with in compose is valid.
    sluice::config::Config::parse(&std::fs::read_to_string(d.join("compose/sluice.toml")).expect("compose config")).expect("valid compose config");

    let mut kinds = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&std::fs::read_to_string(d.join("k8s/sluice.yaml")).expect("k8s")) {
        let v = serde_yaml::Value::deserialize(doc).expect("k8s manifest is YAML");
        kinds.insert(v["kind"].as_str().expect("kind").to_owned());
        if v["kind"] == "ConfigMap" {
            sluice::config::Config::parse(v["data"]["sluice.toml"].as_str().expect("config")).expect("the ConfigMap's config is valid");
        }
        if v["kind"] == "Deployment" {
            let c = &v["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
        }
    }
    assert_eq!(kinds, ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service"].iter().map(|s| s.to_string()).collect());
    let unit = std::fs::read_to_string(d.join("systemd/sluice.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/sluice serve --config /etc/sluice/sluice.toml") && unit.contains("KillSignal=SIGTERM"));
}

use serde::Deserialize;
