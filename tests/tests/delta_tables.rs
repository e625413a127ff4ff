//! Delta tables read by an independent reader: the Python `deltalake` package
//! (delta-rs' binding) and pyarrow from the log's file list
//! (tests/clients/delta_reader.py), after crashes at every point of a roll and
//! a SIGKILL; on a local directory and on a real S3-compatible server.

use serde_json::{Value, json};
use sluice_tests::{S3Server, Server, free_port, run_client};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const TOKEN: &str = "delta-tables-test";

/// Run a job through the admin API and wait for it to end; the finished run.
fn run_job(base: &str, job: &str, body: Option<Value>) -> Value {
    let http = reqwest::blocking::Client::new();
    let mut req = http.post(format!("{base}/api/v1/jobs/{job}/run")).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let started: Value = req.send().and_then(|r| r.json()).expect("job started");
    let poll = started["poll"].as_str().unwrap_or_else(|| panic!("no poll url: {started}")).to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = http.get(format!("{base}{poll}")).bearer_auth(TOKEN).send().and_then(|r| r.json()).expect("job run");
        if matches!(v["run"]["state"].as_str(), Some("succeeded" | "failed")) || std::time::Instant::now() > deadline {
            return v["run"].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One topic `t.geo` of three partitions cleaned into the Delta table `geo`, partitioned by date.
fn config(dir: &Path, landing: &str, roll: &str) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    let text = format!(
        "data_dir = \"{}\"\n[server]\nadmin_token = \"{TOKEN}\"\n{landing}\n[jobs]\nschedule = {{}}\n[log]\ntopics = [\"t.geo\"]\npartitions = 3\n\n[[pipeline]]\nname = \"geo\"\ntopics = [\"t.geo\"]\ntransforms = [\"clean-geo\"]\nland_raw = true\ntable = {{ name = \"geo\", format = \"delta\", partition_by = \"timestamp\", delta = {{ checkpoint_interval = 5, vacuum_retention_hours = 0 }} }}\nbatch = {{ max_records = 64 }}\n{roll}\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Geo records with unique `ind`s over three days; every 7th has no timestamp (the null partition).
struct Poster {
    client: reqwest::blocking::Client,
    next: i64,
    acked: BTreeSet<i64>,
    uncertain: BTreeSet<i64>,
}

impl Poster {
    fn new() -> Self {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
        Poster { client, next: 0, acked: BTreeSet::new(), uncertain: BTreeSet::new() }
    }

    fn post(&mut self, base: &str) -> bool {
        let inds: Vec<i64> = (self.next..self.next + 20).collect();
        self.next += 20;
        let records: Vec<Value> = inds.iter().map(|&i| json!({ "value": geo(i) })).collect();
        let ok = self
            .client
            .post(format!("{base}/topics/t.geo"))
            .header("content-type", "application/vnd.kafka.json.v2+json")
            .body(json!({ "records": records }).to_string())
            .send()
            .is_ok_and(|r| r.status().is_success());
        if ok {
            self.acked.extend(inds)
        } else {
            self.uncertain.extend(inds)
        }
        ok
    }
}

fn geo(ind: i64) -> Value {
    let day = 26 + ind % 3;
    let timestamp = if ind % 7 == 0 { Value::Null } else { json!(format!("2020-08-{day} {:02}:{:02}:00", ind % 24, ind % 60)) };
    json!({"ind": ind, "timestamp": timestamp, "latitude": 10.5, "longitude": -3.25, "country": "Chad"})
}

/// The date partition a geo record belongs in.
fn date_of(ind: i64) -> Option<String> {
    (ind % 7 != 0).then(|| format!("2020-08-{}", 26 + ind % 3))
}

fn read(uri: &str, env: &[(&str, &str)]) -> Value {
    let apps: Vec<String> = (0..3).map(|p| format!("geo/t.geo/{p}")).collect();
    let mut args = vec![uri];
    for a in &apps {
        args.extend(["--app-id", a.as_str()]);
    }
    run_client("deltalake", "delta_reader.py", &args, env)
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().expect("a list").iter().map(|n| n.as_i64().expect("an int")).collect()
}

/// What both readers saw must be every acknowledged record once, in its date
/// partition, with the table's schema; the txn versions the input positions.
fn check(found: &Value, p: &Poster, raw_per_partition: &BTreeMap<u32, u64>) {
    let rows = ints(&found["values"]);
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(*r).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "rows twice in the Delta table: {dupes:?}");
    let missing: Vec<_> = p.acked.iter().filter(|i| !counts.contains_key(i)).collect();
    assert!(missing.is_empty(), "acknowledged but not in the Delta table: {} e.g. {:?}", missing.len(), missing.first());
    assert!(counts.keys().all(|i| p.acked.contains(i) || p.uncertain.contains(i)), "rows never sent");
    assert_eq!(found["rows"].as_u64(), Some(rows.len() as u64));

    // Partition column and values, as delta-rs reads them.
    assert_eq!(found["partition_columns"], json!(["dt"]));
    let dates = found["partition_values"]["dt"].as_array().expect("dt values");
    for (ind, dt) in rows.iter().zip(dates) {
        assert_eq!(dt.as_str().map(str::to_owned), date_of(*ind), "row {ind} in the wrong partition");
    }
    let names: Vec<&str> = found["schema"].as_array().expect("schema").iter().map(|f| f[0].as_str().expect("name")).collect();
    assert_eq!(names, ["ind", "country", "coordinates", "timestamp", "dt"]);
    let types: BTreeMap<&str, &str> =
        found["schema"].as_array().expect("schema").iter().map(|f| (f[0].as_str().expect("n"), f[1].as_str().expect("t"))).collect();
    assert!(types["timestamp"].contains("timestamp") && types["dt"].contains("date") && types["ind"].contains("long"), "{types:?}");

    // pyarrow alone, file by file from the log's list: the same rows, partition values matching the folders.
    let mut by_files = Vec::new();
    for f in found["files"].as_array().expect("files") {
        let values = ints(&f["values"]);
        let dt = f["partition"]["dt"].as_str().map(str::to_owned);
        // A file the log references is the file the log describes: never rewritten after its commit.
        assert_eq!(f["size_in_log"], f["size_stored"], "file {} changed after it was committed", f["path"]);
        assert!(values.iter().all(|i| date_of(*i) == dt), "file {} holds rows of other dates", f["path"]);
        let folder = f["path"].as_str().expect("path").split('/').next().expect("folder").to_owned();
        assert_eq!(folder, format!("dt={}", dt.as_deref().unwrap_or("__HIVE_DEFAULT_PARTITION__")));
        by_files.extend(values);
    }
    by_files.sort_unstable();
    let mut sorted = rows.clone();
    sorted.sort_unstable();
    assert_eq!(by_files, sorted, "pyarrow over the file list reads what deltalake reads");

    // Each input partition's txn version is where its input was committed: every record of it landed raw.
    for (p, raw) in raw_per_partition {
        assert_eq!(found["txn"][format!("geo/t.geo/{p}")].as_u64(), Some(*raw), "txn version of partition {p}");
    }
}

/// Records landed raw per input partition (their count is the partition's end position: offsets start at 0).
fn raw_per_partition(landing: &Path) -> BTreeMap<u32, u64> {
    (0..3)
        .map(|p| {
            let dir = landing.join(format!("topics/t.geo/partition={p}"));
            (p, sluice_tests::json_lines(&dir).len() as u64)
        })
        .collect()
}

#[test]
fn a_delta_table_read_by_deltalake_and_pyarrow_holds_every_record_once_after_crashes_and_kill9() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config(dir.path(), "", "roll = { max_records = 200, max_age_ms = 150 }");
    let port = free_port();
    let mut p = Poster::new();
    let until_crash = |p: &mut Poster, s: &mut Server| {
        for _ in 0..2000 {
            if !p.post(&s.base_url) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(s.wait_exit(Duration::from_secs(30)), "the crash plan never fired");
    };
    // Files of a roll finished, not in the log; in the log, the input not committed;
    // both, the input not committed; the intent recorded, nothing written.
    for plan in ["segment.object_finished:5", "delta.committed:3", "roll.before_commit:4", "roll.after_intent:3"] {
        let mut s = Server::start(SLUICE, &config, port, &[("SLUICE_CRASH_AT", plan)])?;
        until_crash(&mut p, &mut s);
    }
    let mut s = Server::start(SLUICE, &config, port, &[])?;
    for _ in 0..100 {
        assert!(p.post(&s.base_url));
    }
    s.kill9();
    let mut s = Server::start(SLUICE, &config, port, &[])?;
    for _ in 0..30 {
        assert!(p.post(&s.base_url));
    }
    s.wait_caught_up(Duration::from_secs(60))?;
    let metrics = reqwest::blocking::get(format!("{}/metrics", s.base_url))?.text()?;
    assert!(p.acked.len() >= 150 * 20, "posted too little to mean anything: {}", p.acked.len());

    let landing = dir.path().join("data/landing");
    let table = landing.join("tables/geo");
    let uri = table.display().to_string();
    let raw = raw_per_partition(&landing);
    let found = read(&uri, &[]);
    check(&found, &p, &raw);
    // Many small commits: the log has checkpoints (every 5 commits).
    let log: Vec<String> = std::fs::read_dir(table.join("_delta_log"))?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(log.iter().any(|n| n.ends_with(".checkpoint.parquet")), "no checkpoint in {log:?}");
    assert!(metrics.contains("sluice_delta_commits_total{outcome=\"committed\",pipeline=\"geo\",table=\"geo\"}"), "{metrics}");
    // Lineage in the commit info: which pipeline, input and transform made each commit.
    let commit = std::fs::read_to_string(table.join("_delta_log/00000000000000000001.json"))?;
    let info: Value = commit.lines().map(|l| serde_json::from_str::<Value>(l).expect("json")).find(|a| a.get("commitInfo").is_some()).expect("commitInfo");
    assert_eq!(info["commitInfo"]["sluice.pipeline"], "geo", "{info}");
    assert!(info["commitInfo"].as_object().expect("object").keys().any(|k| k.starts_with("sluice.transform")), "{info}");

    // A backfill of the whole input: every segment's files replaced in one commit, no row twice or lost.
    let before = found["version"].as_u64().expect("version");
    let run = run_job(&s.base_url, "backfill", Some(json!({"pipeline": "geo"})));
    assert_eq!(run["state"], "succeeded", "{run}");
    let backfilled = read(&uri, &[]);
    check(&backfilled, &p, &raw);
    assert_eq!(backfilled["version"].as_u64(), Some(before + 1), "one commit for the whole backfill");
    let files = backfilled["files"].as_array().expect("files");
    assert!(files.iter().all(|f| f["path"].as_str().is_some_and(|p| p.contains(".backfill-"))), "{files:?}");

    // Compaction: the three closed dates' small files into one each (the null date too), same rows.
    let small = files.len();
    let run = run_job(&s.base_url, "compact", None);
    assert_eq!(run["state"], "succeeded", "{run}");
    let compacted = read(&uri, &[]);
    check(&compacted, &p, &raw);
    assert_eq!(compacted["files"].as_array().expect("files").len(), 4, "one file per partition after compaction (from {small})");
    let on_disk =
        |t: &Path| sluice_tests::files(t).into_iter().filter(|f| f.extension().is_some_and(|e| e == "parquet") && !f.starts_with(t.join("_delta_log"))).count();
    assert!(on_disk(&table) > 4, "the small files stay until vacuumed");
    // Vacuum (retention 0 here): the small files go; the table reads the same.
    let run = run_job(&s.base_url, "vacuum", None);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(on_disk(&table), 4, "{run}");
    check(&read(&uri, &[]), &p, &raw);
    assert!(s.terminate()?, "SIGTERM should stop sluice cleanly");
    Ok(())
}

#[test]
fn a_delta_table_on_s3_commits_with_conditional_puts_and_reads_back() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let s3 = S3Server::start(&dir.path().join("s3"), free_port())?;
    rt.block_on(s3.client().create_bucket().bucket("lake").send())?;
    let landing = format!(
        "[landing.s3]\nbucket = \"lake\"\nprefix = \"pinterest\"\nendpoint_url = \"{}\"\nforce_path_style = true\npart_size_mib = 5\nmax_attempts = 3\n",
        s3.endpoint()
    );
    let config = config(dir.path(), &landing, "roll = { max_records = 300, max_age_ms = 200 }");
    let port = free_port();
    let env = s3.env();
    let mut p = Poster::new();
    // A crash with the log committed and the input not: the replay must find its txn on S3.
    let mut s = Server::start(SLUICE, &config, port, &[env.as_slice(), &[("SLUICE_CRASH_AT", "delta.committed:2")]].concat())?;
    for _ in 0..500 {
        if !p.post(&s.base_url) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(s.wait_exit(Duration::from_secs(30)), "the crash plan never fired");
    let mut s = Server::start(SLUICE, &config, port, &env)?;
    for _ in 0..40 {
        assert!(p.post(&s.base_url));
    }
    s.wait_caught_up(Duration::from_secs(60))?;
    let log = rt.block_on(s3.objects("lake", "pinterest/tables/geo/_delta_log/"));
    assert!(log.keys().any(|k| k.ends_with("00000000000000000001.json")), "{:?}", log.keys());

    // The server refuses a second writer of a log entry (If-None-Match: *): what keeps two commits from one version.
    let taken = log.keys().find(|k| k.ends_with("00000000000000000001.json")).expect("entry 1").clone();
    let refused = rt.block_on(s3.client().put_object().bucket("lake").key(&taken).if_none_match("*").body(b"{}".to_vec().into()).send());
    assert!(refused.is_err(), "s3s-fs took an overwrite of {taken} despite If-None-Match");

    let read_env = [
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_ACCESS_KEY_ID", sluice_tests::S3_ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", sluice_tests::S3_SECRET_KEY.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let read_env: Vec<(&str, &str)> = read_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let found = read("s3://lake/pinterest/tables/geo", &read_env);
    // Raw records per partition, from the bucket.
    let mut raw: BTreeMap<u32, u64> = (0..3).map(|p| (p, 0)).collect();
    for (key, body) in rt.block_on(s3.objects("lake", "pinterest/topics/t.geo/")) {
        let p: u32 = key.split("partition=").nth(1).and_then(|r| r.split('/').next()).and_then(|n| n.parse().ok()).expect("partition");
        *raw.entry(p).or_default() += String::from_utf8_lossy(&body).lines().count() as u64;
    }
    check(&found, &p, &raw);
    assert!(s.terminate()?);
    Ok(())
}
