//! sluice on a real Kafka-protocol broker (tansu, started by the test on
//! 127.0.0.1): the ingest API produces into Kafka, pipelines consume as group
//! members and land; every record lands exactly once through crashes, group
//! handovers and a broker outage.

use serde_json::{Value, json};
use sluice::emulate::data::Generator;
use sluice::emulate::post::{Api, PostPlan, post};
use sluice::ingest::KafkaProducer;
use sluice::position::PartitionId;
use sluice::source::Source;
use sluice::source::kafka::{KafkaConfig, KafkaSource};
use sluice::store::ObjectStore;
use sluice::store::local::LocalStore;
use sluice_guest::BatchBuf;
use sluice_tests::{
    KafkaBroker, Server, cleaning_pipelines, column, fetch_some, free_port, json_lines, multiset, one_at_a_time, parquet_batches, raw_by_position, wait_raw,
    wait_until,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const KINDS: [&str; 3] = ["pin", "geo", "user"];

/// A config reading `<user>.pin|geo|user` from the broker, landing raw and
/// cleaned data in `landing`; `extra` goes into each pipeline section.
fn config(dir: &Path, data: &str, landing: &Path, broker: &KafkaBroker, user: &str, kinds: &[&str], extra: &str) -> PathBuf {
    let mut text = format!(
        "data_dir = \"{}\"\n\n[landing]\ndir = \"{}\"\n\n[kafka]\nbrokers = \"{}\"\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 1000\nproduce_timeout_ms = 5000\n[kafka.properties]\n\"socket.timeout.ms\" = \"3000\"\n",
        dir.join(data).display(),
        landing.display(),
        broker.address()
    );
    text.push_str(&cleaning_pipelines(kinds, |kind| format!("{user}.{kind}"), extra));
    let path = dir.join(format!("{data}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn topics(broker: &KafkaBroker, user: &str, kinds: &[&str]) {
    for kind in kinds {
        broker.create_topic(&format!("{user}.{kind}"), 3).expect("create topic");
    }
}

#[test]
fn a_hundred_thousand_records_through_kafka_land_exactly_once() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    const ROWS: u64 = 33_334; // three records per row: 100,002 in all
    const SEED: u64 = 11;
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    topics(&broker, "k", &KINDS);
    let landing = dir.path().join("landing");
    let cfg = config(dir.path(), "a", &landing, &broker, "k", &KINDS, "roll = { max_records = 20000, max_age_ms = 1000 }");
    let mut server = Server::start(SLUICE, &cfg, free_port(), &[])?;

    let rt = tokio::runtime::Runtime::new()?;
    let plan = PostPlan { batch: 500, seed: SEED, ..PostPlan::new(&server.base_url, Api::Rest, "k", ROWS) };
    let summary = rt.block_on(post(&plan))?;
    assert_eq!(summary.failed_requests, 0, "every request was acknowledged by Kafka");

    let want: Vec<(String, usize)> = KINDS.iter().map(|k| (format!("k.{k}"), ROWS as usize)).collect();
    wait_raw(&landing, &want, Duration::from_secs(300));
    assert!(server.terminate()?, "SIGTERM stops sluice cleanly");

    let posted_ids = multiset((0..ROWS).map(|n| Generator::new(SEED).pick(n)));
    for kind in KINDS {
        let raw = raw_by_position(&landing.join(format!("topics/k.{kind}")));
        assert_eq!(raw.len(), ROWS as usize, "{kind}: every produced record landed raw once");
        let ids: Vec<i64> = column(&parquet_batches(&landing.join(format!("tables/{kind}"))), "ind").iter().map(|v| v.as_i64().expect("ind")).collect();
        let dead = json_lines(&landing.join(format!("dead-letters/{kind}")));
        assert_eq!(ids.len() + dead.len(), raw.len(), "{kind}: cleaned + dead letters = raw");
        assert!(dead.is_empty(), "{kind}: the emulator's rows are all cleanable: {:?}", dead.first());
        assert_eq!(multiset(ids), posted_ids, "{kind}: every record cleaned exactly once");
    }
    Ok(())
}

/// Posts pins with fresh unique ids; remembers which were acknowledged.
struct Poster {
    client: reqwest::blocking::Client,
    topic: String,
    next: u64,
    acked: BTreeSet<String>,
    /// Not acknowledged (refused or cut off): may or may not have reached Kafka.
    uncertain: BTreeSet<String>,
}

impl Poster {
    fn new(topic: &str) -> Self {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        Poster { client, topic: topic.into(), next: 0, acked: BTreeSet::new(), uncertain: BTreeSet::new() }
    }

    /// Post 50 pins; returns the HTTP status (0 when the request failed).
    fn post(&mut self, base: &str) -> u16 {
        let ids: Vec<String> = (self.next..self.next + 50).map(|n| format!("id-{n:08}")).collect();
        let records: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"key": id, "value": {"index": self.next + i as u64, "unique_id": id, "title": "t", "follower_count": "1k", "category": "art"}}))
            .collect();
        self.next += 50;
        let status = self
            .client
            .post(format!("{base}/topics/{}", self.topic))
            .header("content-type", "application/vnd.kafka.json.v2+json")
            .body(json!({ "records": records }).to_string())
            .send()
            .map_or(0, |r| r.status().as_u16());
        if status == 200 {
            self.acked.extend(ids);
        } else {
            self.uncertain.extend(ids);
        }
        status
    }
}

/// Every acknowledged pin is in raw and table exactly once; nothing lands twice,
/// and nothing that was never sent lands at all.
fn check_exactly_once(landing: &Path, topic: &str, p: &Poster) {
    let acked = &p.acked;
    let raw: Vec<String> = json_lines(&landing.join("topics").join(topic)).iter().map(|v| v["unique_id"].as_str().expect("id").to_owned()).collect();
    let table: Vec<String> = column(&parquet_batches(&landing.join("tables/pin")), "unique_id").iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    for (what, ids) in [("raw", raw), ("table", table)] {
        let counts = multiset(ids);
        let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dupes.is_empty(), "{what}: landed twice: {} e.g. {:?}", dupes.len(), dupes.first());
        let missing: Vec<_> = acked.iter().filter(|id| !counts.contains_key(*id)).collect();
        assert!(missing.is_empty(), "{what}: acknowledged but lost: {} e.g. {:?}", missing.len(), missing.first());
        let strangers: Vec<_> = counts.keys().filter(|id| !acked.contains(*id) && !p.uncertain.contains(*id)).collect();
        assert!(strangers.is_empty(), "{what}: never sent: {strangers:?}");
    }
}

fn wait_ids(landing: &Path, topic: &str, n: usize) {
    wait_raw(landing, &[(topic.to_owned(), n)], Duration::from_secs(180));
}

#[test]
fn kill_9_and_crash_plans_mid_run_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    topics(&broker, "c", &["pin"]);
    let landing = dir.path().join("landing");
    let cfg = config(dir.path(), "c", &landing, &broker, "c", &["pin"], "batch = { max_records = 64 }\nroll = { max_records = 300, max_age_ms = 200 }");
    let port = free_port();
    let mut p = Poster::new("c.pin");

    // Objects of a roll visible, its intent in the Kafka commit metadata, the commit not done.
    let mut s = Server::start(SLUICE, &cfg, port, &[("SLUICE_CRASH_AT", "roll.before_commit:3")])?;
    while s.alive() && p.next < 40_000 {
        p.post(&s.base_url);
    }
    assert!(s.wait_exit(Duration::from_secs(30)), "the crash plan never fired");
    // SIGKILL while the pipeline is behind.
    let mut s = Server::start(SLUICE, &cfg, port, &[])?;
    for _ in 0..100 {
        assert_eq!(p.post(&s.base_url), 200);
    }
    s.kill9();
    // A clean run to the end.
    let mut s = Server::start(SLUICE, &cfg, port, &[])?;
    for _ in 0..40 {
        assert_eq!(p.post(&s.base_url), 200);
    }
    wait_ids(&landing, "c.pin", p.acked.len());
    assert!(s.terminate()?, "SIGTERM stops sluice cleanly");
    check_exactly_once(&landing, "c.pin", &p);
    assert!(p.acked.len() >= 140 * 50, "posted too little to mean anything: {}", p.acked.len());
    Ok(())
}

#[test]
fn two_processes_share_a_group_and_one_takes_over_when_the_other_stops() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    topics(&broker, "g", &["pin"]);
    let landing = dir.path().join("landing");
    let extra = "workers = 1\nroll = { max_records = 500, max_age_ms = 300 }";
    let (cfg_a, cfg_b) = (config(dir.path(), "a", &landing, &broker, "g", &["pin"], extra), config(dir.path(), "b", &landing, &broker, "g", &["pin"], extra));
    let a = Server::start(SLUICE, &cfg_a, free_port(), &[])?;
    let mut b = Server::start(SLUICE, &cfg_b, free_port(), &[])?;
    let mut p = Poster::new("g.pin");

    wait_until("both members own partitions", Duration::from_secs(60), || {
        p.post(&a.base_url);
        let (na, nb) = (a.owned_partitions("pin"), b.owned_partitions("pin"));
        na > 0 && nb > 0 && na + nb == 3
    });
    for _ in 0..60 {
        assert_eq!(p.post(&a.base_url), 200);
    }
    assert!(b.terminate()?, "SIGTERM stops the second member cleanly");
    wait_until("the first member owns every partition", Duration::from_secs(60), || a.owned_partitions("pin") == 3);
    for _ in 0..60 {
        assert_eq!(p.post(&a.base_url), 200);
    }
    wait_ids(&landing, "g.pin", p.acked.len());
    drop(a);
    check_exactly_once(&landing, "g.pin", &p);
    Ok(())
}

fn ready(server: &Server) -> u16 {
    reqwest::blocking::get(format!("{}/ready", server.base_url)).map_or(0, |r| r.status().as_u16())
}

#[test]
fn a_broker_outage_is_reported_refused_at_ingest_and_loses_nothing() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    topics(&broker, "o", &["pin"]);
    let landing = dir.path().join("landing");
    let cfg = config(dir.path(), "o", &landing, &broker, "o", &["pin"], "roll = { max_records = 500, max_age_ms = 300 }");
    let mut s = Server::start(SLUICE, &cfg, free_port(), &[])?;
    let mut p = Poster::new("o.pin");
    for _ in 0..40 {
        assert_eq!(p.post(&s.base_url), 200);
    }
    wait_ids(&landing, "o.pin", p.acked.len());
    assert_eq!(ready(&s), 200, "healthy before the outage");

    broker.freeze(true);
    let refused_at = Instant::now();
    let status = p.post(&s.base_url);
    assert_eq!(status, 503, "ingest refuses what Kafka cannot take");
    assert!(refused_at.elapsed() < Duration::from_secs(30), "refused within the produce timeout");
    wait_until("/ready reports the outage", Duration::from_secs(60), || ready(&s) == 503);
    let health: Value = reqwest::blocking::get(format!("{}/health", s.base_url))?.json()?;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["pipelines"]["pin"]["last_error"].as_str().is_some_and(|e| e.contains("kafka") || e.contains("Kafka")), "{health}");

    broker.freeze(false);
    wait_until("ingest works again", Duration::from_secs(90), || p.post(&s.base_url) == 200);
    for _ in 0..20 {
        assert_eq!(p.post(&s.base_url), 200);
    }
    wait_ids(&landing, "o.pin", p.acked.len());
    // SIGTERM, not a kill: the raw objects of the last roll can be visible before
    // its table objects, and only a clean stop (or a restart) finishes the roll.
    assert!(s.terminate()?, "SIGTERM stops sluice cleanly");
    assert!(!p.uncertain.is_empty(), "the outage refused something");
    check_exactly_once(&landing, "o.pin", &p);
    Ok(())
}

#[test]
fn the_emulator_produces_straight_into_kafka() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    topics(&broker, "e", &KINDS);
    let kafka: sluice::source::kafka::KafkaConfig = toml::from_str(&format!("brokers = \"{}\"", broker.address()))?;
    let plan = PostPlan { seed: 3, concurrency: 2, kafka: Some(kafka), ..PostPlan::new(String::new(), Api::Rest, "e", 2_000) };
    let summary = tokio::runtime::Runtime::new()?.block_on(post(&plan))?;
    assert_eq!(summary.failed_requests, 0);

    let landing = dir.path().join("landing");
    let cfg = config(dir.path(), "e", &landing, &broker, "e", &KINDS, "roll = { max_age_ms = 300 }");
    let mut server = Server::start(SLUICE, &cfg, free_port(), &[])?;
    let want: Vec<(String, usize)> = KINDS.iter().map(|k| (format!("e.{k}"), 2_000)).collect();
    wait_raw(&landing, &want, Duration::from_secs(120));
    assert!(server.terminate()?);
    for kind in KINDS {
        assert_eq!(raw_by_position(&landing.join(format!("topics/e.{kind}"))).len(), 2_000, "{kind}");
    }
    Ok(())
}

/// Joining a group and rebalancing take a few heartbeats and session checks.
const GROUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Produce `value(partition, i)` for i in `0..n` into each of the topic's first `partitions` partitions.
fn produce_per_partition(config: &KafkaConfig, topic: &str, partitions: u32, n: u64, value: impl Fn(u32, u64) -> Vec<u8>) -> anyhow::Result<()> {
    let batches: Vec<(u32, BatchBuf)> = (0..partitions)
        .map(|partition| {
            let mut b = BatchBuf::default();
            for i in 0..n {
                b.push(&value(partition, i), b"", 0);
            }
            (partition, b)
        })
        .collect();
    tokio::runtime::Runtime::new()?.block_on(KafkaProducer::new(config)?.append(topic, &batches))?;
    Ok(())
}

/// Poll `source` (through `wait`, which looks at nothing) until `done` holds.
fn poll_until(source: &mut KafkaSource, what: &str, mut done: impl FnMut(&mut KafkaSource) -> bool) {
    let deadline = Instant::now() + GROUP_TIMEOUT;
    while !done(source) {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        source.wait(Duration::from_millis(100));
    }
}

#[test]
fn a_partition_that_went_to_another_member_and_came_back_is_reported_so_the_stale_position_is_dropped() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    broker.create_topic("r.pin", 2)?;
    let config: KafkaConfig = serde_json::from_value(json!({"brokers": broker.address(), "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}))?;
    produce_per_partition(&config, "r.pin", 2, 10, |partition, i| json!({"partition": partition, "i": i}).to_string().into_bytes())?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().join("landing"))?);
    let topics = ["r.pin".to_owned()];

    // Member a joins alone, gets both partitions and reads two records of each.
    let mut a = KafkaSource::new(&config, "sluice-r", "a", &topics, store.clone())?;
    poll_until(&mut a, "a owns both partitions", |s| s.partitions().expect("partitions").len() == 2);
    assert!(a.assignment_changed());
    assert!(a.revoked().is_empty());
    let read_by_a: BTreeMap<PartitionId, Vec<(u64, Vec<u8>)>> =
        a.partitions()?.into_iter().map(|p| (p.clone(), fetch_some(&mut a, &p, 0, 2, GROUP_TIMEOUT))).collect();

    // Member b joins and gets one of them; a keeps polling (as its pipeline
    // would while reading the other) but does not look at its assignment.
    let mut b = KafkaSource::new(&config, "sluice-r", "b", &topics, store.clone())?;
    let deadline = Instant::now() + GROUP_TIMEOUT;
    while b.partitions()?.len() != 1 {
        assert!(Instant::now() < deadline, "b never got a partition");
        a.wait(Duration::from_millis(50));
        b.wait(Duration::from_millis(50));
    }
    let p = b.partitions()?[0].clone();
    assert!(b.checkpoint(&p)?.next_offset == 0, "nothing of {p} committed yet");
    let read_by_b = fetch_some(&mut b, &p, 0, 5, GROUP_TIMEOUT);
    assert_eq!(read_by_b[..2], read_by_a[&p][..], "the same records at the same offsets");
    b.commit(&p, 3)?;
    // b leaves the group; the partition comes back to a.
    drop(b);
    poll_until(&mut a, "a owns both partitions again", |s| s.partitions().expect("partitions").len() == 2);

    // Until its pipeline has heard, a's stale position gets nothing and moves nothing.
    assert!(a.fetch(&p, 2, 10)?.offsets.is_empty(), "nothing is read at the stale position");
    let refused = a.commit(&p, 2).expect_err("a commit from the stale position is refused");
    assert!(format!("{refused:#}").contains("another member"), "{refused:#}");
    assert!(a.assignment_changed());
    assert_eq!(a.revoked(), vec![p.clone()], "the partition that went to b is reported though a owns it again");
    assert!(a.revoked().is_empty(), "reported once");
    assert_eq!(a.checkpoint(&p)?.next_offset, 3, "the committed offset is b's");
    let next = fetch_some(&mut a, &p, 3, 10, GROUP_TIMEOUT);
    assert_eq!(next[0], read_by_b[3], "a goes on with the record after b's commit");
    Ok(())
}

#[test]
fn partitions_read_past_a_small_prefetch_limit_come_whole_and_in_order_and_a_step_back_rereads_the_same_records() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    broker.create_topic("q.pin", 2)?;
    // librdkafka holds at most 100 records of a partition until they are asked for.
    let config: KafkaConfig = serde_json::from_value(json!({
        "brokers": broker.address(), "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
        "read_ahead_records": 100, "read_ahead_mib": 1,
    }))?;
    const PER_PARTITION: u64 = 3_000;
    let value = |partition: u32, i: u64| json!({"partition": partition, "i": i, "pad": "x".repeat(150)}).to_string().into_bytes();
    produce_per_partition(&config, "q.pin", 2, PER_PARTITION, value)?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().join("landing"))?);
    let mut source = KafkaSource::new(&config, "sluice-q", "q", &["q.pin".to_owned()], store)?;
    poll_until(&mut source, "the member owns both partitions", |s| s.partitions().expect("partitions").len() == 2);

    // One partition after the other, as a pipeline busy with one would: the
    // second waits in librdkafka meanwhile, and loses nothing by it.
    for p in source.partitions()? {
        let mut next = source.checkpoint(&p)?.next_offset;
        assert_eq!(next, 0);
        while next < PER_PARTITION {
            for (offset, bytes) in fetch_some(&mut source, &p, next, 250, GROUP_TIMEOUT) {
                assert_eq!(offset, next, "{p}: offsets come in order without gaps");
                assert_eq!(bytes, value(p.partition, offset), "{p}: the record produced at {offset}");
                next += 1;
            }
        }
        // A failed roll is read again from its start: the same records.
        let again = fetch_some(&mut source, &p, 1_000, 10, GROUP_TIMEOUT);
        let expected: Vec<(u64, Vec<u8>)> = (1_000..1_010).map(|o| (o, value(p.partition, o))).collect();
        assert_eq!(again, expected, "{p}: a step back rereads the same records");
    }
    Ok(())
}

/// An aggregate over a 3-partition Kafka topic in two processes: the routers
/// of both move keyed records into one Kafka repartition topic, whose
/// partitions the windows workers of both share as a consumer group, with the
/// window state in the shared landing store. One process is killed (SIGKILL)
/// mid-stream; the other takes its partitions over, restores their windows and
/// finishes: every window of the input lands once, equal to a count made here.
#[test]
fn two_processes_share_the_repartition_topic_and_one_finishes_when_the_other_is_killed() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    broker.create_topic("w.post", 3)?;
    let landing = dir.path().join("landing");
    let keyed = "[[pipeline]]\nname = \"posts\"\ntopics = [\"w.post\"]\ntable = { name = \"posts_by_country\", formats = [\"jsonl\"] }\nworkers = 1\n\
                 roll = { max_records = 200, max_age_ms = 300 }\n\
                 [pipeline.aggregate]\nname = \"count-posts\"\ntime_field = \"timestamp\"\ngroup_by = [\"country\", \"category\"]\nwindow_ms = 60000\n\
                 allowed_lateness_ms = 5000\npartitions = 4\n[pipeline.watermark]\nidle_timeout_ms = 1000\nclose_idle_after_ms = 3000\n";
    let config = |name: &str| -> PathBuf {
        let path = config(dir.path(), name, &landing, &broker, "w", &[], "");
        let text = std::fs::read_to_string(&path).expect("config") + keyed;
        std::fs::write(&path, text).expect("config");
        path
    };
    let (cfg_a, cfg_b) = (config("a"), config("b"));
    let records = sluice_tests::posts(3_000);
    let want = sluice_tests::every_window(&records);
    let produce = |server: &Server, chunk: &[Value]| {
        let body = json!({ "records": chunk.iter().map(|v| json!({ "value": v })).collect::<Vec<_>>() });
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/topics/w.post", server.base_url))
            .header("content-type", "application/vnd.kafka.json.v2+json")
            .body(body.to_string())
            .send()
            .expect("ingest reachable");
        assert_eq!(resp.status(), 200);
    };
    let mut a = Server::start(SLUICE, &cfg_a, free_port(), &[])?;
    let b = Server::start(SLUICE, &cfg_b, free_port(), &[])?;
    let mut chunks = records.chunks(100);
    let repartition_owned = |s: &Server| -> usize {
        let status: Value = reqwest::blocking::get(format!("{}/status", s.base_url)).and_then(|r| r.json()).unwrap_or_default();
        status["posts"]["partitions"]
            .as_array()
            .map_or(0, |ps| ps.iter().filter(|p| p["topic"].as_str().is_some_and(|t| t.ends_with("posts-repartition"))).count())
    };
    wait_until("both processes fold windows of the shared repartition topic", Duration::from_secs(60), || {
        if let Some(c) = chunks.next() {
            produce(&a, c);
        }
        repartition_owned(&a) > 0 && repartition_owned(&b) > 0
    });
    for c in chunks.by_ref().take(8) {
        produce(&a, c);
    }
    a.kill9();
    for c in chunks {
        produce(&b, c);
    }
    // Across processes idle partitions keep holding the watermark: one record an hour later
    // in each partition (requests go round robin) closes every window of the input.
    for i in 0..3 {
        let mut ts = String::new();
        sluice_guest::time::format_rfc3339_ms(sluice_tests::START_MS + 3 * 3_600_000 + i, &mut ts);
        produce(&b, &[json!({"ind": -1 - i, "country": "Peru", "category": "art", "timestamp": ts})]);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while sluice_tests::landed_windows(&landing, "posts_by_country").len() < want.len() && Instant::now() < deadline {
        // (the flush records' own window stays open)
        std::thread::sleep(Duration::from_millis(200));
    }
    let status: Value = reqwest::blocking::get(format!("{}/status", b.base_url)).and_then(|r| r.json()).unwrap_or_default();
    let mut b = b;
    assert!(b.terminate()?, "SIGTERM stops the survivor cleanly");
    let dead: BTreeMap<String, usize> = multiset(
        json_lines(&landing.join("dead-letters"))
            .iter()
            .map(|d| format!("{} {}", d["kind"], d["reason"].as_str().unwrap_or_default().chars().take(120).collect::<String>())),
    )
    .into_iter()
    .take(5)
    .collect();
    assert!(dead.is_empty(), "dead letters: {dead:#?}\nstatus: {status}");
    let mut got = sluice_tests::landed_windows(&landing, "posts_by_country");
    got.retain(|(start, _, _), _| *start < sluice_tests::START_MS + 3 * 3_600_000);
    sluice_tests::assert_same_windows(&got, &want, &format!("two processes, one killed; status {status}"));
    let snapshots = sluice_tests::files(&landing.join("_sluice/state/aggregates/posts"));
    assert!(!snapshots.is_empty(), "the window state is kept in the landing store, where the survivor found it");
    Ok(())
}
