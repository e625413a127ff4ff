//! Reading over HTTP: a REST Proxy v2 client written from Confluent's
//! documentation (tests/clients/rest_consumer.py, Python `requests`) against
//! the real process, over the embedded log and over Kafka (tansu); and a
//! pipeline's output topic read back over HTTP after a SIGKILL mid-stream.
//!
//! scripts/test.sh installs `requests` in a venv and points
//! SLUICE_CLIENT_PYTHON at it; otherwise `python3` must have it.

use serde_json::{Value, json};
use sluice_tests::{KafkaBroker, Server, column, free_port, one_at_a_time, parquet_batches};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

/// Run one phase of the documented client; what it printed.
fn client(base: &str, args: &[&str]) -> Value {
    let args: Vec<&str> = std::iter::once(base).chain(args.iter().copied()).collect();
    sluice_tests::run_client("requests", "rest_consumer.py", &args, &[])
}

fn numbers(v: &Value) -> Vec<u64> {
    v.as_array().expect("a list").iter().map(|n| n.as_u64().expect("a number")).collect()
}

/// The documented flow, then a restart, then two instances of one group.
/// `exactly_once_pair`: the embedded log splits partitions before anyone
/// reads; on Kafka a rebalance may hand a partition over after it was read
/// (uncommitted), so there the pair must read everything at least once.
fn documented_flow(config: &Path, topic: &str, exactly_once_pair: bool) -> anyhow::Result<()> {
    let port = free_port();
    let mut server = Server::start(SLUICE, config, port, &[])?;
    let base = server.base_url.clone();
    client(&base, &["produce", topic, "0", "300"]);
    let first = client(&base, &["read", "docs", "c1", topic, "300"]);
    assert_eq!(first["created"], true);
    assert_eq!(numbers(&first["values"]), (0..300).collect::<Vec<_>>(), "read everything once: {first}");
    assert_eq!(first["keys_match"], true);
    let committed = first["committed"].as_object().expect("committed");
    assert_eq!(committed.len(), 3, "a committed offset per partition: {first}");

    // Restart sluice; the same instance (on Kafka: a new member of the same group) resumes after the commits.
    assert!(server.terminate()?, "SIGTERM stops sluice cleanly");
    let mut server = Server::start(SLUICE, config, port, &[])?;
    client(&base, &["produce", topic, "300", "30"]);
    let second = client(&base, &["read", "docs", "c1", topic, "30"]);
    assert_eq!(numbers(&second["values"]), (300..330).collect::<Vec<_>>(), "resumed after the committed offsets: {second}");

    let pair = client(&base, &["pair", "halves", topic, "330"]);
    let left = numbers(&pair["assignments"]["left"]);
    let right = numbers(&pair["assignments"]["right"]);
    assert!(!left.is_empty() && !right.is_empty(), "both instances hold partitions: {pair}");
    let mut all: Vec<u64> = left.iter().chain(&right).copied().collect();
    all.sort();
    assert_eq!(all, vec![0, 1, 2], "the instances split the partitions: {pair}");
    let values = numbers(&pair["values"]);
    if exactly_once_pair {
        assert_eq!(values, (0..330).collect::<Vec<_>>(), "{pair}");
        let read_left: BTreeSet<u64> = numbers(&pair["read_from"]["left"]).into_iter().collect();
        assert!(read_left.iter().all(|p| left.contains(p)), "left read only its partitions: {pair}");
    } else {
        let distinct: BTreeSet<u64> = values.into_iter().collect();
        assert_eq!(distinct, (0..330).collect(), "{pair}");
    }
    assert!(server.terminate()?);
    Ok(())
}

#[test]
fn the_documented_rest_consumer_flow_over_the_embedded_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, format!("data_dir = \"{}\"\n[log]\ntopics = [\"events\"]\npartitions = 3\n", dir.path().join("data").display()))?;
    documented_flow(&config, "events", true)
}

#[test]
fn the_documented_rest_consumer_flow_over_kafka() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    broker.create_topic("events", 3)?;
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[kafka]\nbrokers = \"{}\"\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n",
            dir.path().join("data").display(),
            broker.address()
        ),
    )?;
    documented_flow(&config, "events", false)
}

/// Post pins with fresh ids; the ids acknowledged, and those whose fate the kill left open.
fn post_pins(client: &reqwest::blocking::Client, base: &str, from: u64, n: u64, acked: &mut BTreeSet<String>, uncertain: &mut BTreeSet<String>) -> bool {
    let ids: Vec<String> = (from..from + n).map(|i| format!("pin-{i:07}")).collect();
    let records: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"value": {"index": from + i as u64, "unique_id": id, "title": "t", "follower_count": "2k", "category": "art"}}))
        .collect();
    let sent = client
        .post(format!("{base}/topics/o.pin"))
        .header("content-type", "application/vnd.kafka.json.v2+json")
        .body(json!({ "records": records }).to_string())
        .send();
    let ok = sent.is_ok_and(|r| r.status().is_success());
    if ok {
        acked.extend(ids)
    } else {
        uncertain.extend(ids)
    }
    ok
}

/// Every record of the output topic, read over HTTP by a fresh consumer: `(partition, offset, value)`.
fn read_topic(client: &reqwest::blocking::Client, base: &str, topic: &str, expect: usize) -> Vec<(u64, u64, Value)> {
    let group = format!("check-{}", free_port());
    let r =
        client.post(format!("{base}/consumers/{group}")).json(&json!({"name": "r", "format": "json", "auto.offset.reset": "earliest"})).send().expect("create");
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    let uri = format!("{base}/consumers/{group}/instances/r");
    let r = client.post(format!("{uri}/subscription")).json(&json!({"topics": [topic]})).send().expect("subscribe");
    assert_eq!(r.status().as_u16(), 204);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<Value> = client
            .get(format!("{uri}/records?timeout=200"))
            .header("accept", "application/vnd.kafka.json.v2+json")
            .send()
            .expect("read")
            .json()
            .expect("records");
        let empty = got.is_empty();
        out.extend(got.into_iter().map(|r| (r["partition"].as_u64().expect("partition"), r["offset"].as_u64().expect("offset"), r["value"].clone())));
        if (empty && out.len() >= expect) || Instant::now() > deadline {
            return out;
        }
    }
}

/// Post pins through a crash between writing the output and committing the
/// input, then a SIGKILL while records flow, then a clean run; check that the
/// output topic, read back over HTTP, holds exactly the table's rows, once each.
/// `contiguous`: each output partition's offsets must run 0, 1, 2, ... (the
/// embedded log; Kafka's idempotent producer may leave offsets unused).
fn output_topic_through_crashes(dir: &Path, config: &Path, contiguous: bool) -> anyhow::Result<()> {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build()?;
    let (mut acked, mut uncertain) = (BTreeSet::new(), BTreeSet::new());
    let port = free_port();
    let mut next = 0;
    let mut server = Server::start(SLUICE, config, port, &[("SLUICE_CRASH_AT", "roll.before_commit:6")])?;
    while server.alive() && next < 200_000 {
        post_pins(&http, &server.base_url, next, 20, &mut acked, &mut uncertain);
        next += 20;
    }
    assert!(server.wait_exit(Duration::from_secs(30)), "the crash plan never fired");
    let mut server = Server::start(SLUICE, config, port, &[])?;
    for _ in 0..100 {
        assert!(post_pins(&http, &server.base_url, next, 20, &mut acked, &mut uncertain));
        next += 20;
    }
    server.kill9();
    let mut server = Server::start(SLUICE, config, port, &[])?;
    for _ in 0..20 {
        assert!(post_pins(&http, &server.base_url, next, 20, &mut acked, &mut uncertain));
        next += 20;
    }
    let table_dir = dir.join("landing/tables/pin");
    let wanted: BTreeSet<String> = acked.clone();
    sluice_tests::wait_until("every acknowledged pin in the table", Duration::from_secs(120), || {
        let ids: BTreeSet<String> = column(&parquet_batches(&table_dir), "unique_id").iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        wanted.is_subset(&ids)
    });
    // Let the last roll commit, so nothing of it is written again after the read.
    assert!(server.terminate()?);
    let server = Server::start(SLUICE, config, port, &[])?;

    let table: Vec<String> = column(&parquet_batches(&table_dir), "unique_id").iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    let topic = read_topic(&http, &server.base_url, "o.pin-clean", table.len());
    drop(server);

    if contiguous {
        let mut by_partition: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (p, o, _) in &topic {
            by_partition.entry(*p).or_default().push(*o);
        }
        for (p, offsets) in &by_partition {
            assert_eq!(*offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "partition {p} of the output topic has a gap or a repeat");
        }
    }
    let ids: Vec<String> = topic.iter().map(|(_, _, v)| v["unique_id"].as_str().expect("id").to_owned()).collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a record is in the output topic twice");
    let table_set: BTreeSet<&String> = table.iter().collect();
    assert_eq!(table_set.len(), table.len(), "a record is in the table twice");
    assert_eq!(distinct, table_set, "the output topic holds exactly the table's rows");
    assert!(acked.iter().all(|id| distinct.contains(id)), "an acknowledged record never reached the output topic");
    assert!(distinct.iter().all(|id| acked.contains(*id) || uncertain.contains(*id)));
    assert!(topic.iter().all(|(_, _, v)| v["follower_count"] == 2000), "the topic holds cleaned records");
    assert!(acked.len() >= 2000, "too little posted to mean anything: {}", acked.len());
    Ok(())
}

const OUTPUT_PIPELINE: &str = "[[pipeline]]\nname = \"pin\"\ntopics = [\"o.pin\"]\ntransforms = [\"clean-pin\"]\ntable = { name = \"pin\" }\noutput = { topic = \"o.pin-clean\" }\nbatch = { max_records = 64 }\nroll = { max_records = 150, max_age_ms = 100 }\n";

#[test]
fn an_output_topic_holds_the_tables_rows_once_through_a_sigkill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sluice.toml");
    let data = dir.path().display();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}/data\"\n[landing]\ndir = \"{data}/landing\"\n[log]\ntopics = [\"o.pin\", \"o.pin-clean\"]\npartitions = 3\n\n{OUTPUT_PIPELINE}"
        ),
    )?;
    output_topic_through_crashes(dir.path(), &config, true)
}

#[test]
fn a_kafka_output_topic_holds_the_tables_rows_once_through_a_sigkill() -> anyhow::Result<()> {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir()?;
    let broker = KafkaBroker::start()?;
    broker.create_topic("o.pin", 3)?;
    broker.create_topic("o.pin-clean", 3)?;
    let config = dir.path().join("sluice.toml");
    let data = dir.path().display();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}/data\"\n[landing]\ndir = \"{data}/landing\"\n[kafka]\nbrokers = \"{}\"\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n\n{OUTPUT_PIPELINE}",
            broker.address()
        ),
    )?;
    output_topic_through_crashes(dir.path(), &config, false)
}

/// With `server.ingest_token` set, reading takes the same token as producing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_routes_take_the_ingest_token_when_one_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "data_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\ningest_token = \"0123456789abcdef-ingest\"\n[log]\ntopics = [\"events\"]\npartitions = 1\n",
        dir.path().join("data").display()
    );
    let config: sluice::config::Config = toml::from_str(&text).expect("config");
    let app = sluice::app::RunningApp::start(&config).await.expect("start");
    let base = format!("http://{}", app.addr);
    let http = reqwest::Client::new();
    let create = |token: Option<&str>| {
        let mut r = http.post(format!("{base}/consumers/g")).json(&json!({"name": "i", "format": "json"}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(create(None).await.expect("send").status().as_u16(), 401);
    assert_eq!(create(Some("wrong-token-0123456789")).await.expect("send").status().as_u16(), 401);
    assert_eq!(create(Some("0123456789abcdef-ingest")).await.expect("send").status().as_u16(), 200);
    let read = http.get(format!("{base}/streams/events/sharditerator?shard-id=shardId-000000000000")).send().await.expect("send");
    assert_eq!(read.status().as_u16(), 401, "the Kinesis read shapes too");
    app.shutdown().await.expect("shutdown");
}
