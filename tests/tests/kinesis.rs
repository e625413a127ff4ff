//! sluice on a real Kinesis-compatible server (kinesalite, started by the test
//! on 127.0.0.1): the ingest API's Kinesis shapes forward into Kinesis,
//! pipelines read the shards under leases and land; every record lands exactly
//! once through a shard split, kill -9 and throttling.

use base64::Engine;
use serde_json::{Value, json};
use sluice::emulate::data::Generator;
use sluice::emulate::post::{Api, PostPlan, post};
use sluice::position::PartitionId;
use sluice::source::Source;
use sluice::source::kinesis::{Kinesis, KinesisConfig, KinesisSource, LeaseDoc};
use sluice::store::ObjectStore;
use sluice::store::local::LocalStore;
use sluice_tests::{
    KINESIS_ENV, KinesisServer, Server, ThrottlingProxy, cleaning_pipelines, column, fetch_some, files, free_port, json_lines, multiset, one_at_a_time,
    parquet_batches, raw_by_position, raw_count, wait_raw, wait_until,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const KINDS: [&str; 3] = ["pin", "geo", "user"];

/// A config reading `streaming-<user>-<kind>` from `endpoint`, with the ingest
/// API's Kinesis shapes forwarding there; `extra` goes into each pipeline section.
fn config(dir: &Path, data: &str, landing: &Path, endpoint: &str, user: &str, kinds: &[&str], extra: &str) -> PathBuf {
    let mut text = format!(
        "data_dir = \"{}\"\n\n[landing]\ndir = \"{}\"\n\n[ingest]\ndestination = \"kinesis\"\n\n[kinesis]\nendpoint_url = \"{endpoint}\"\nidle_poll_ms = 200\nlist_shards_every_ms = 1000\nlease_duration_ms = 3000\nmax_backoff_ms = 1000\n",
        dir.join(data).display(),
        landing.display(),
    );
    text.push_str(&cleaning_pipelines(kinds, |kind| format!("streaming-{user}-{kind}"), extra));
    let path = dir.join(format!("{data}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// A kinesalite of the test's own with streams `streaming-<user>-<kind>`, and a client of it.
struct Fixture {
    dir: tempfile::TempDir,
    kinesalite: KinesisServer,
    rt: tokio::runtime::Runtime,
    kinesis: Kinesis,
}

impl Fixture {
    fn new(user: &str, kinds: &[&str], shards: i32) -> anyhow::Result<Fixture> {
        let dir = tempfile::tempdir()?;
        let kinesalite = KinesisServer::start()?;
        let rt = tokio::runtime::Runtime::new()?;
        let kinesis = rt.block_on(KinesisServer::client(&kinesalite.endpoint()));
        for kind in kinds {
            rt.block_on(kinesis.ensure_stream(&format!("streaming-{user}-{kind}"), shards))?;
        }
        Ok(Fixture { dir, kinesalite, rt, kinesis })
    }

    fn landing(&self) -> PathBuf {
        self.dir.path().join("landing")
    }

    /// A config reading from kinesalite directly (see [`config`]).
    fn config(&self, name: &str, user: &str, kinds: &[&str], extra: &str) -> PathBuf {
        config(self.dir.path(), name, &self.landing(), &self.kinesalite.endpoint(), user, kinds, extra)
    }
}

fn wait_stream(landing: &Path, stream: &str, want: usize, timeout: Duration) {
    wait_raw(landing, &[(stream.to_owned(), want)], timeout);
}

/// Raw objects of a stream per partition (shard number), in offset order.
fn raw_objects(landing: &Path, stream: &str) -> BTreeMap<u32, Vec<PathBuf>> {
    let mut out: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
    for f in files(&landing.join("topics").join(stream)) {
        let part = f.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("partition=")).expect("partition folder");
        out.entry(part.parse().expect("partition number")).or_default().push(f);
    }
    for objects in out.values_mut() {
        objects.sort();
    }
    out
}

fn lease_docs(landing: &Path, pipeline: &str, stream: &str) -> Vec<LeaseDoc> {
    files(&landing.join(format!("_sluice/kinesis/sluice-{pipeline}/{stream}")))
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .map(|f| serde_json::from_slice(&std::fs::read(f).expect("read lease")).expect("lease document"))
        .collect()
}

#[test]
fn ten_thousand_records_per_stream_through_the_kinesis_ingest_shape_land_exactly_once() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    const ROWS: u64 = 10_000;
    const SEED: u64 = 21;
    let f = Fixture::new("k", &KINDS, 2)?;
    let (rt, landing) = (&f.rt, f.landing());
    let cfg = f.config("a", "k", &KINDS, "roll = { max_records = 5000, max_age_ms = 1000 }");
    let mut server = Server::start(SLUICE, &cfg, free_port(), &KINESIS_ENV)?;

    let plan = PostPlan { batch: 250, seed: SEED, ..PostPlan::new(&server.base_url, Api::Kinesis, "k", ROWS) };
    let summary = rt.block_on(post(&plan))?;
    assert_eq!(summary.failed_requests, 0, "every request was stored in Kinesis");
    for kind in KINDS {
        wait_stream(&landing, &format!("streaming-k-{kind}"), ROWS as usize, Duration::from_secs(300));
    }
    assert!(server.terminate()?, "SIGTERM stops sluice cleanly");

    let posted_ids = multiset((0..ROWS).map(|n| Generator::new(SEED).pick(n)));
    for kind in KINDS {
        let stream = format!("streaming-k-{kind}");
        let raw = raw_by_position(&landing.join(format!("topics/{stream}")));
        assert_eq!(raw.len(), ROWS as usize, "{kind}: every record landed raw once");
        let shards: Vec<u32> = raw_objects(&landing, &stream).keys().copied().collect();
        assert_eq!(shards, [0, 1], "{kind}: both shards were read");
        let ids: Vec<i64> = column(&parquet_batches(&landing.join(format!("tables/{kind}"))), "ind").iter().map(|v| v.as_i64().expect("ind")).collect();
        assert!(json_lines(&landing.join(format!("dead-letters/{kind}"))).is_empty(), "{kind}: the emulator's rows are all cleanable");
        assert_eq!(multiset(ids), posted_ids, "{kind}: every record cleaned exactly once");
        let docs = lease_docs(&landing, kind, &stream);
        assert_eq!(docs.len(), 2);
        assert!(docs.iter().all(|d| d.owner.is_none()), "{kind}: leases released at shutdown: {docs:?}");
        assert_eq!(docs.iter().map(|d| d.next_offset).sum::<u64>(), ROWS, "{kind}: checkpoints cover every record");
    }
    Ok(())
}

/// Puts pins straight into Kinesis with partition keys `key-<k>` and, per key,
/// a sequence number in the title; remembers every id put.
struct KeyedPins {
    stream: String,
    keys: u64,
    next: u64,
    ids: Vec<String>,
}

impl KeyedPins {
    fn put(&mut self, rt: &tokio::runtime::Runtime, kinesis: &Kinesis, n: u64) {
        for chunk_start in (0..n).step_by(250) {
            let records: Vec<(Vec<u8>, String)> = (chunk_start..(chunk_start + 250).min(n))
                .map(|_| {
                    let i = self.next;
                    self.next += 1;
                    let (key, seq) = (i % self.keys, i / self.keys);
                    let id = format!("id-{i:08}");
                    self.ids.push(id.clone());
                    let pin = json!({"index": i, "unique_id": id, "title": format!("{seq}"), "follower_count": "1k", "category": format!("key-{key}")});
                    (pin.to_string().into_bytes(), format!("key-{key}"))
                })
                .collect();
            let refs: Vec<(&[u8], &str)> = records.iter().map(|(d, k)| (d.as_slice(), k.as_str())).collect();
            rt.block_on(put_all(kinesis, &self.stream, &refs));
        }
    }
}

/// PutRecords until every record is stored.
async fn put_all(kinesis: &Kinesis, stream: &str, records: &[(&[u8], &str)]) {
    for attempt in 0.. {
        let outcomes = kinesis.put_records(stream, records).await.expect("PutRecords");
        if outcomes.iter().all(|o| matches!(o, sluice::source::kinesis::PutOutcome::Stored { .. })) {
            return;
        }
        assert!(attempt < 20, "kinesalite kept refusing records");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every id put is in raw and table exactly once.
fn check_exactly_once(landing: &Path, stream: &str, ids: &[String]) {
    let raw: Vec<String> = json_lines(&landing.join("topics").join(stream)).iter().map(|v| v["unique_id"].as_str().expect("id").to_owned()).collect();
    let table: Vec<String> = column(&parquet_batches(&landing.join("tables/pin")), "unique_id").iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    let want = multiset(ids.iter().cloned());
    for (what, got) in [("raw", raw), ("table", table)] {
        let got = multiset(got);
        let dupes: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dupes.is_empty(), "{what}: landed twice: {} e.g. {:?}", dupes.len(), dupes.first());
        let missing: Vec<_> = want.keys().filter(|id| !got.contains_key(*id)).collect();
        assert!(missing.is_empty(), "{what}: put but lost: {} e.g. {:?}", missing.len(), missing.first());
        assert_eq!(got.len(), want.len(), "{what}: nothing landed that was never put");
    }
}

#[test]
fn a_shard_split_mid_run_lands_every_record_and_keeps_each_keys_order() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let f = Fixture::new("s", &["pin"], 2)?;
    let (rt, kinesis, landing) = (&f.rt, &f.kinesis, f.landing());
    let stream = "streaming-s-pin".to_owned();
    let cfg = f.config("s", "s", &["pin"], "roll = { max_records = 400, max_age_ms = 300 }");
    let mut server = Server::start(SLUICE, &cfg, free_port(), &KINESIS_ENV)?;
    let mut pins = KeyedPins { stream: stream.clone(), keys: 40, next: 0, ids: Vec::new() };

    pins.put(rt, kinesis, 3_000);
    wait_stream(&landing, &stream, 500, Duration::from_secs(120));
    // Split shard 0 while the pipeline is reading it, then keep putting.
    let shards = rt.block_on(kinesis.list_shards(&stream))?;
    let parent = shards.iter().find(|s| s.id.ends_with("000000000000")).expect("shard 0").clone();
    rt.block_on(kinesis.split_shard(&stream, &parent))?;
    pins.put(rt, kinesis, 3_000);
    wait_stream(&landing, &stream, 6_000, Duration::from_secs(180));
    assert!(server.terminate()?, "SIGTERM stops sluice cleanly");
    check_exactly_once(&landing, &stream, &pins.ids);

    let shards = rt.block_on(kinesis.list_shards(&stream))?;
    let children: Vec<u32> = shards
        .iter()
        .filter(|s| s.parent.as_deref() == Some(parent.id.as_str()))
        .map(|s| sluice::source::kinesis::shard_number(&s.id).expect("number"))
        .collect();
    assert_eq!(children.len(), 2, "the split made two children: {shards:?}");
    let objects = raw_objects(&landing, &stream);
    // Per partition key, in the order the records landed: the parent's objects
    // (offset order), then each child's. The sequence in the title must rise.
    let mut last_seq: BTreeMap<String, i64> = BTreeMap::new();
    let mut landed_from_children = 0;
    let parent_objects = &objects[&0];
    let parent_last_landed = parent_objects.iter().map(|f| f.metadata().and_then(|m| m.modified()).expect("mtime")).max().expect("parent objects");
    for shard in std::iter::once(0).chain(children.iter().copied()) {
        for object in objects.get(&shard).map_or(&[][..], Vec::as_slice) {
            if shard != 0 {
                let landed = object.metadata()?.modified()?;
                assert!(landed >= parent_last_landed, "a child's object {} landed before the parent's last one", object.display());
            }
            for line in std::fs::read_to_string(object)?.lines() {
                let v: Value = serde_json::from_str(line)?;
                let (key, seq) = (v["category"].as_str().expect("key").to_owned(), v["title"].as_str().expect("seq").parse::<i64>()?);
                let prev = last_seq.insert(key.clone(), seq);
                assert!(prev.is_none_or(|p| p < seq), "key {key}: record {seq} landed after {prev:?}");
                landed_from_children += usize::from(shard != 0);
            }
        }
    }
    assert!(landed_from_children > 0, "records put after the split were read from the children");
    let docs = lease_docs(&landing, "pin", &stream);
    let parent_doc = docs.iter().find(|d| d.shard == parent.id).expect("the parent's lease");
    assert!(parent_doc.finished, "the parent is checkpointed as read to its end: {parent_doc:?}");
    Ok(())
}

#[test]
fn kill_9_and_crash_plans_resume_from_the_checkpoints_losing_and_duplicating_nothing() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let f = Fixture::new("c", &["pin"], 2)?;
    let (rt, kinesis, landing) = (&f.rt, &f.kinesis, f.landing());
    let stream = "streaming-c-pin".to_owned();
    let cfg = f.config("c", "c", &["pin"], "batch = { max_records = 64 }\nroll = { max_records = 300, max_age_ms = 200 }");
    let port = free_port();
    let mut pins = KeyedPins { stream: stream.clone(), keys: 16, next: 0, ids: Vec::new() };
    pins.put(rt, kinesis, 12_000);

    // Objects of a roll visible, its intent in the lease document, the checkpoint not moved.
    let mut s = Server::start(SLUICE, &cfg, port, &[KINESIS_ENV.as_slice(), &[("SLUICE_CRASH_AT", "roll.before_commit:4")]].concat())?;
    assert!(s.wait_exit(Duration::from_secs(60)), "the crash plan never fired");
    // SIGKILL while behind: its leases stay held until they expire.
    let mut s = Server::start(SLUICE, &cfg, port, &KINESIS_ENV)?;
    wait_stream(&landing, &stream, 3_000, Duration::from_secs(120));
    s.kill9();
    assert!(raw_count(&landing, &stream) < 12_000, "killed while still behind");
    pins.put(rt, kinesis, 3_000);
    // A clean run to the end: it takes the leases over once they expire.
    let mut s = Server::start(SLUICE, &cfg, port, &KINESIS_ENV)?;
    wait_stream(&landing, &stream, 15_000, Duration::from_secs(180));
    assert!(s.terminate()?, "SIGTERM stops sluice cleanly");
    check_exactly_once(&landing, &stream, &pins.ids);
    Ok(())
}

#[test]
fn throttling_and_failed_reads_are_answered_with_backoff_losing_and_duplicating_nothing() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let f = Fixture::new("t", &["pin"], 2)?;
    // Two of every three GetRecords calls and every other PutRecords call are
    // throttled; now and then one fails inside Kinesis instead.
    let proxy = ThrottlingProxy::start(f.kinesalite.endpoint(), |op, n| match op {
        "GetRecords" if n % 11 == 5 => Some((500, "InternalFailure")),
        "GetRecords" if n % 3 != 0 => Some((400, "ProvisionedThroughputExceededException")),
        "PutRecords" if n % 2 == 0 => Some((400, "ProvisionedThroughputExceededException")),
        _ => None,
    })?;
    let landing = f.landing();
    let cfg = config(f.dir.path(), "t", &landing, &proxy.endpoint(), "t", &["pin"], "roll = { max_records = 1000, max_age_ms = 300 }");
    let mut server = Server::start(SLUICE, &cfg, free_port(), &KINESIS_ENV)?;

    const ROWS: u64 = 3_000;
    let plan = PostPlan { seed: 5, concurrency: 2, ..PostPlan::new(&server.base_url, Api::Kinesis, "t", ROWS) };
    // The emulator posts only pins here: the plan's geo and user streams do not exist.
    let client = reqwest::blocking::Client::new();
    let g = Generator::new(plan.seed);
    for first in (0..ROWS).step_by(100) {
        let records: Vec<Value> =
            (first..first + 100).map(|n| g.row(g.pick(n)).pin).map(|p| json!({"Data": p, "PartitionKey": p["index"].to_string()})).collect();
        let resp = client.put(format!("{}/streams/streaming-t-pin/records", server.base_url)).json(&json!({"Records": records})).send()?;
        assert_eq!(resp.status(), 200, "throttled puts are retried inside sluice, not refused: {}", resp.text()?);
    }
    wait_stream(&landing, "streaming-t-pin", ROWS as usize, Duration::from_secs(180));
    let status: Value = client.get(format!("{}/status", server.base_url)).send()?.json()?;
    let last_error = status["pin"]["last_error"].as_str().unwrap_or_default();
    assert!(!last_error.contains("ProvisionedThroughput"), "throttling is not an error: {status}");
    assert!(last_error.contains("InternalFailure"), "a failed read shows in the pipeline's status: {status}");
    assert_eq!(status["pin"]["records_in"], ROWS, "no record was read twice: a failed read abandons nothing: {status}");
    let metrics = client.get(format!("{}/metrics", server.base_url)).send()?.text()?;
    let throttled = |op: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with("sluice_source_throttled_total") && l.contains(&format!("operation=\"{op}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(throttled("GetRecords") > 0.0 && throttled("PutRecords") > 0.0, "throttling is counted: {metrics}");
    assert!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst) > 10);
    // A roll's raw objects become visible before its table object is finished:
    // SIGTERM lets the last roll finish (SIGKILL would leave it to a restart).
    assert!(server.terminate()?, "SIGTERM stops sluice cleanly");
    let raw = raw_by_position(&landing.join("topics/streaming-t-pin"));
    assert_eq!(raw.len(), ROWS as usize, "every record landed raw exactly once");
    let posted = multiset((0..ROWS).map(|n| g.pick(n)));
    let ids: Vec<i64> = column(&parquet_batches(&landing.join("tables/pin")), "ind").iter().map(|v| v.as_i64().expect("ind")).collect();
    assert_eq!(multiset(ids), posted);
    Ok(())
}

#[test]
fn the_emulator_puts_straight_into_kinesis() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let f = Fixture::new("e", &KINDS, 1)?;
    let landing = f.landing();
    let cfg = f.config("e", "e", &KINDS, "roll = { max_age_ms = 300 }");
    let mut server = Server::start(SLUICE, &cfg, free_port(), &KINESIS_ENV)?;
    let out = std::process::Command::new(SLUICE)
        .args(["emulate", "--kinesis", &f.kinesalite.endpoint(), "--user-id", "e", "--rows", "500", "--seed", "9"])
        .envs(KINESIS_ENV)
        .output()?;
    assert!(out.status.success(), "emulate --kinesis: {}", String::from_utf8_lossy(&out.stderr));
    for kind in KINDS {
        wait_stream(&landing, &format!("streaming-e-{kind}"), 500, Duration::from_secs(120));
    }
    // The raw objects are visible before the last roll's table object: let it finish.
    assert!(server.terminate()?, "SIGTERM stops sluice cleanly");
    let posted = multiset((0..500).map(|n| Generator::new(9).pick(n)));
    let ids: Vec<i64> = column(&parquet_batches(&landing.join("tables/user")), "ind").iter().map(|v| v.as_i64().expect("ind")).collect();
    assert_eq!(multiset(ids), posted, "every row's user event cleaned once");
    Ok(())
}

fn raw_ids_in_bucket(rt: &tokio::runtime::Runtime, s3: &sluice_tests::S3Server, stream: &str) -> Vec<String> {
    rt.block_on(s3.objects("lake", &format!("topics/{stream}/")))
        .values()
        .flat_map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("json")["unique_id"].as_str().expect("id").to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn two_processes_share_the_shards_through_leases_in_s3_and_one_takes_over_when_the_other_stops() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let f = Fixture::new("m", &["pin"], 4)?;
    let (rt, kinesis, dir) = (&f.rt, &f.kinesis, &f.dir);
    let s3 = sluice_tests::S3Server::start(&dir.path().join("s3"), free_port())?;
    rt.block_on(s3.client().create_bucket().bucket("lake").send())?;
    let stream = "streaming-m-pin".to_owned();
    // Both processes land in the bucket, where their leases and checkpoints live too.
    let landing_s3 = format!("[landing.s3]\nbucket = \"lake\"\nendpoint_url = \"{}\"\nforce_path_style = true\n", s3.endpoint());
    let configs: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|name| {
            let path = f.config(name, "m", &["pin"], "workers = 1\nroll = { max_records = 500, max_age_ms = 300 }");
            let text = std::fs::read_to_string(&path).expect("config");
            let text = text.replacen(&format!("[landing]\ndir = \"{}\"\n", f.landing().display()), &landing_s3, 1);
            std::fs::write(&path, text).expect("config");
            path
        })
        .collect();
    let env = s3.env();
    let a = Server::start(SLUICE, &configs[0], free_port(), &env)?;
    let mut b = Server::start(SLUICE, &configs[1], free_port(), &env)?;
    let mut pins = KeyedPins { stream: stream.clone(), keys: 64, next: 0, ids: Vec::new() };

    wait_until("both processes hold leases", Duration::from_secs(60), || {
        let (na, nb) = (a.owned_partitions("pin"), b.owned_partitions("pin"));
        na > 0 && nb > 0 && na + nb == 4
    });
    pins.put(rt, kinesis, 2_000);
    assert!(b.terminate()?, "SIGTERM stops the second process cleanly (and releases its leases)");
    wait_until("the first process holds every lease", Duration::from_secs(60), || a.owned_partitions("pin") == 4);
    pins.put(rt, kinesis, 2_000);
    wait_until("every record landed", Duration::from_secs(180), || raw_ids_in_bucket(rt, &s3, &stream).len() >= pins.ids.len());
    drop(a);

    let landed = multiset(raw_ids_in_bucket(rt, &s3, &stream));
    assert_eq!(landed.len(), pins.ids.len(), "every record put landed");
    assert!(landed.values().all(|n| *n == 1), "nothing landed twice");
    let leases = rt.block_on(s3.objects("lake", &format!("_sluice/kinesis/sluice-pin/{stream}/")));
    assert_eq!(leases.len(), 4, "one lease document per shard: {:?}", leases.keys());
    let total: u64 = leases.values().map(|b| serde_json::from_slice::<LeaseDoc>(b).expect("lease").next_offset).sum();
    assert_eq!(total, pins.ids.len() as u64, "the checkpoints in the bucket cover every record");
    Ok(())
}

/// Kinesis readers pace their calls; kinesalite answers well within this.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_shard_lease_lost_and_taken_back_between_two_looks_is_reported_so_the_stale_position_is_dropped() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let f = Fixture::new("r", &["pin"], 2)?;
    let stream = "streaming-r-pin".to_owned();
    let mut pins = KeyedPins { stream: stream.clone(), keys: 16, next: 0, ids: Vec::new() };
    pins.put(&f.rt, &f.kinesis, 64);
    let config: KinesisConfig = serde_json::from_value(json!({"endpoint_url": f.kinesalite.endpoint(), "lease_duration_ms": 3000, "idle_poll_ms": 100}))?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(f.landing())?);
    let streams = [stream.clone()];

    // Worker a starts alone, takes both shards and reads two records of each.
    let mut a =
        KinesisSource::with_client(f.rt.block_on(KinesisServer::client(&f.kinesalite.endpoint())), &config, "pin", "a".into(), &streams, store.clone())?;
    assert_eq!(a.partitions()?.len(), 2, "a lone worker takes every shard ({:?})", a.problem());
    assert!(a.assignment_changed());
    let read_by_a: BTreeMap<PartitionId, Vec<(u64, Vec<u8>)>> =
        a.partitions()?.into_iter().map(|p| (p.clone(), fetch_some(&mut a, &p, 0, 2, READ_TIMEOUT))).collect();
    // Worker b steals one shard (a holds more than its share), lands three records and stops.
    let mut b =
        KinesisSource::with_client(f.rt.block_on(KinesisServer::client(&f.kinesalite.endpoint())), &config, "pin", "b".into(), &streams, store.clone())?;
    let stolen = b.partitions()?;
    assert_eq!(stolen.len(), 1, "b steals one of a's two shards ({:?})", b.problem());
    let p = stolen[0].clone();
    let read_by_b = fetch_some(&mut b, &p, 0, 5, READ_TIMEOUT);
    assert_eq!(read_by_b[..2], read_by_a[&p][..], "both number the shard's records alike");
    b.commit(&p, 3)?;
    drop(b);

    // a looks again only now: the lease went away and is free again, so one
    // round of a finds it lost and takes it straight back.
    wait_until("a notices the lease change", Duration::from_secs(20), || a.assignment_changed());
    assert!(a.partitions()?.contains(&p), "a holds the shard again");
    // Until the pipeline has heard, its stale position gets nothing and moves nothing.
    assert!(a.fetch(&p, 2, 10)?.offsets.is_empty(), "nothing is read at the stale position");
    let refused = a.commit(&p, 2).expect_err("a commit from the stale position is refused");
    assert!(format!("{refused:#}").contains("lost"), "{refused:#}");
    assert_eq!(a.revoked(), vec![p.clone()], "the loss is reported though the shard is held again");
    assert!(a.revoked().is_empty(), "reported once");
    let checkpoint = a.checkpoint(&p)?;
    assert_eq!(checkpoint.next_offset, 3, "the checkpoint is where b left it");
    let next = fetch_some(&mut a, &p, 3, 10, READ_TIMEOUT);
    assert_eq!(next[0], read_by_b[3], "a goes on with the record after b's last, numbered as b numbered it");
    Ok(())
}

/// The API-Gateway read shapes forward to Kinesis when ingest writes there:
/// what was put through `PUT /streams/{s}/records` is read back with
/// `GET /streams/{s}/sharditerator` and `GET /streams/{s}/records`.
#[test]
fn records_put_over_http_are_read_back_over_http_from_kinesis() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let f = Fixture::new("r", &["pin"], 1)?;
    let cfg = f.config("a", "r", &["pin"], "");
    let mut server = Server::start(SLUICE, &cfg, free_port(), &KINESIS_ENV)?;
    let http = reqwest::blocking::Client::new();
    let stream = "streaming-r-pin";
    let records: Vec<Value> = (0..5).map(|i| json!({"Data": {"index": i, "unique_id": format!("u{i}")}, "PartitionKey": format!("k{i}")})).collect();
    let put = http.put(format!("{}/streams/{stream}/records", server.base_url)).json(&json!({ "Records": records })).send()?;
    assert!(put.status().is_success(), "{}", put.text()?);

    let it: Value = http.get(format!("{}/streams/{stream}/sharditerator?shard-id=shardId-000000000000", server.base_url)).send()?.json()?;
    let mut iterator = it["ShardIterator"].as_str().expect("iterator").to_owned();
    let mut got = Vec::new();
    for _ in 0..20 {
        let page: Value = http.get(format!("{}/streams/{stream}/records?limit=2", server.base_url)).header("Shard-Iterator", &iterator).send()?.json()?;
        for r in page["Records"].as_array().expect("records") {
            let data = base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().expect("data"))?;
            got.push((
                serde_json::from_slice::<Value>(&data)?["unique_id"].as_str().expect("id").to_owned(),
                r["PartitionKey"].as_str().expect("key").to_owned(),
            ));
        }
        iterator = page["NextShardIterator"].as_str().expect("next iterator").to_owned();
        if got.len() >= 5 {
            break;
        }
    }
    let want: Vec<(String, String)> = (0..5).map(|i| (format!("u{i}"), format!("k{i}"))).collect();
    assert_eq!(got, want, "read back in order from the one shard");
    let bad = http.get(format!("{}/streams/{stream}/records", server.base_url)).header("Shard-Iterator", "not-an-iterator").send()?;
    assert_eq!(bad.status().as_u16(), 400);
    assert!(server.terminate()?);
    Ok(())
}
