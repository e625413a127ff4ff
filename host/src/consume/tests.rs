//! The consumer API through its router (no socket), over an embedded log:
//! the REST Proxy v2 flow, group sharing, restarts, and every kind of bad request.

use super::*;
use crate::log::{EmbeddedLog, EmbeddedLogConfig};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_guest::BatchBuf;
use std::path::Path;
use tower::ServiceExt;

const V2: &str = "application/vnd.kafka.v2+json";
const JSON: &str = "application/vnd.kafka.json.v2+json";
const BINARY: &str = "application/vnd.kafka.binary.v2+json";

struct Fixture {
    dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    app: axum::Router,
}

fn open(dir: &Path, idle_ms: u64) -> (Arc<EmbeddedLog>, axum::Router) {
    let cfg = EmbeddedLogConfig { topics: vec!["pin".into(), "pin-clean".into()], partitions: 3, ..Default::default() };
    let log = EmbeddedLog::open(&dir.join("log.redb"), &cfg).expect("log");
    let idle = Duration::from_millis(idle_ms);
    let groups = Arc::new(EmbeddedGroups::open(log.clone(), idle).expect("groups"));
    let config = ConsumeConfig { instance_timeout_ms: idle_ms, request_timeout_ms: 100, ..Default::default() };
    (log.clone(), router(ConsumeState::new(groups, KinesisReads::Embedded(log), config)))
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, app) = open(dir.path(), 60_000);
    Fixture { dir, log, app }
}

/// `n` records `{"i": k}` per partition, keyed `"k<k>"`, from `from` on.
async fn produce(log: &EmbeddedLog, topic: &str, from: u64, n: u64) {
    for p in 0..3 {
        let mut b = BatchBuf::default();
        for k in from..from + n {
            b.push(format!(r#"{{"i":{k},"p":{p}}}"#).as_bytes(), format!("\"k{k}\"").as_bytes(), 1_700_000_000_000);
        }
        log.append(topic, vec![(p, b)]).await.expect("append");
    }
}

async fn call(app: &axum::Router, method: Method, uri: &str, accept: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri).header("host", "sluice.test:8082");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", V2);
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).expect("request")).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn create(app: &axum::Router, group: &str, name: &str, format: &str, reset: &str, auto_commit: &str) -> Value {
    let body = json!({"name": name, "format": format, "auto.offset.reset": reset, "auto.commit.enable": auto_commit});
    let (s, v) = call(app, Method::POST, &format!("/consumers/{group}"), None, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn subscribe(app: &axum::Router, base: &str, topics: Value) {
    let (s, v) = call(app, Method::POST, &format!("{base}/subscription"), None, Some(json!({ "topics": topics }))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
}

/// Read until a read returns nothing; every record read.
async fn drain(app: &axum::Router, base: &str, accept: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let (s, v) = call(app, Method::GET, &format!("{base}/records?timeout=50"), Some(accept), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let got = v.as_array().expect("records").clone();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_flow_reads_everything_commits_and_resumes_after_a_restart() {
    let f = fixture();
    produce(&f.log, "pin", 0, 10).await;
    let created = create(&f.app, "readers", "one", "json", "earliest", "false").await;
    assert_eq!(created["instance_id"], "one");
    assert_eq!(created["base_uri"], "http://sluice.test:8082/consumers/readers/instances/one");
    let base = "/consumers/readers/instances/one";
    subscribe(&f.app, base, json!(["pin"])).await;
    let (_, sub) = call(&f.app, Method::GET, &format!("{base}/subscription"), None, None).await;
    assert_eq!(sub, json!({"topics": ["pin"]}));

    let got = drain(&f.app, base, JSON).await;
    assert_eq!(got.len(), 30);
    let first = got.iter().find(|r| r["partition"] == 1 && r["offset"] == 0).expect("1@0");
    assert_eq!(first["topic"], "pin");
    assert_eq!(first["key"], "k0");
    assert_eq!(first["value"], json!({"i": 0, "p": 1}));

    // Commit the last record of each partition read; the group resumes after it.
    let offsets: Vec<Value> = (0..3).map(|p| json!({"topic": "pin", "partition": p, "offset": 9})).collect();
    let (s, v) = call(&f.app, Method::POST, &format!("{base}/offsets"), None, Some(json!({ "offsets": offsets }))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let ask = json!({"partitions": [{"topic": "pin", "partition": 0}, {"topic": "pin", "partition": 2}]});
    let (s, committed) = call(&f.app, Method::GET, &format!("{base}/offsets"), None, Some(ask)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        committed,
        json!({"offsets": [
        {"topic": "pin", "partition": 0, "offset": 10, "metadata": ""},
        {"topic": "pin", "partition": 2, "offset": 10, "metadata": ""}]})
    );

    // Restart: the instance and the group's offsets are still there.
    let Fixture { dir, log, app } = f;
    drop(app);
    log.close();
    drop(log);
    let (log, app) = open(dir.path(), 60_000);
    produce(&log, "pin", 10, 2).await;
    let (_, sub) = call(&app, Method::GET, &format!("{base}/subscription"), None, None).await;
    assert_eq!(sub, json!({"topics": ["pin"]}), "the instance outlived the restart");
    let got = drain(&app, base, JSON).await;
    let mut seen: Vec<(u64, u64)> = got.iter().map(|r| (r["partition"].as_u64().unwrap(), r["offset"].as_u64().unwrap())).collect();
    seen.sort();
    assert_eq!(seen, vec![(0, 10), (0, 11), (1, 10), (1, 11), (2, 10), (2, 11)], "resumed after the committed offsets");

    let (s, _) = call(&app, Method::DELETE, base, None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(&app, Method::GET, &format!("{base}/records"), Some(JSON), None).await;
    assert_eq!((s, v["error_code"].as_u64()), (StatusCode::NOT_FOUND, Some(40403)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_a_group_split_the_partitions_and_a_third_group_reads_all() {
    let f = fixture();
    produce(&f.log, "pin", 0, 5).await;
    for name in ["a", "b"] {
        create(&f.app, "shared", name, "binary", "earliest", "true").await;
        subscribe(&f.app, &format!("/consumers/shared/instances/{name}"), json!(["pin"])).await;
    }
    let (_, a) = call(&f.app, Method::GET, "/consumers/shared/instances/a/assignments", None, None).await;
    let (_, b) = call(&f.app, Method::GET, "/consumers/shared/instances/b/assignments", None, None).await;
    let parts = |v: &Value| v["partitions"].as_array().unwrap().iter().map(|p| p["partition"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!((parts(&a), parts(&b)), (vec![0, 2], vec![1]));
    let from_a = drain(&f.app, "/consumers/shared/instances/a", BINARY).await;
    let from_b = drain(&f.app, "/consumers/shared/instances/b", BINARY).await;
    assert_eq!((from_a.len(), from_b.len()), (10, 5));
    // Binary: base64 of the bytes as stored.
    use base64::Engine;
    let value = base64::engine::general_purpose::STANDARD.decode(from_b[0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(value, br#"{"i":0,"p":1}"#);

    // b leaves; with auto commit what it read is committed, and a takes its partition from there.
    let (s, _) = call(&f.app, Method::DELETE, "/consumers/shared/instances/b", None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    produce(&f.log, "pin", 5, 1).await;
    let more = drain(&f.app, "/consumers/shared/instances/a", BINARY).await;
    assert_eq!(more.len(), 3, "one new record per partition, nothing of partition 1 twice: {more:?}");

    create(&f.app, "other", "x", "json", "earliest", "false").await;
    subscribe(&f.app, "/consumers/other/instances/x", json!(["pin"])).await;
    assert_eq!(drain(&f.app, "/consumers/other/instances/x", JSON).await.len(), 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_assignments_and_latest_start_where_kafka_would() {
    let f = fixture();
    produce(&f.log, "pin", 0, 4).await;
    create(&f.app, "g", "late", "json", "latest", "false").await;
    let base = "/consumers/g/instances/late";
    let (s, v) = call(&f.app, Method::POST, &format!("{base}/assignments"), None, Some(json!({"partitions": [{"topic": "pin", "partition": 2}]}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(drain(&f.app, base, JSON).await.is_empty(), "latest starts after what is there");
    let (s, _) =
        call(&f.app, Method::POST, &format!("{base}/positions/beginning"), None, Some(json!({"partitions": [{"topic": "pin", "partition": 2}]}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(drain(&f.app, base, JSON).await.len(), 4);
    let (s, _) =
        call(&f.app, Method::POST, &format!("{base}/positions"), None, Some(json!({"offsets": [{"topic": "pin", "partition": 2, "offset": 3}]}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let got = drain(&f.app, base, JSON).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["offset"], 3);
    let (s, _) = call(&f.app, Method::POST, &format!("{base}/positions/end"), None, Some(json!({"partitions": [{"topic": "pin", "partition": 2}]}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(drain(&f.app, base, JSON).await.is_empty());
    // Seeking a partition it does not hold is refused.
    let (s, v) =
        call(&f.app, Method::POST, &format!("{base}/positions"), None, Some(json!({"offsets": [{"topic": "pin", "partition": 0, "offset": 0}]}))).await;
    assert_eq!((s, v["error_code"].as_u64()), (StatusCode::CONFLICT, Some(40903)), "{v}");
}

/// A request, and the status and REST Proxy error code it must get.
type BadCase = (Method, String, Option<&'static str>, Option<Value>, StatusCode, u64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_rest_proxy_error_codes() {
    let f = fixture();
    produce(&f.log, "pin", 0, 1).await;
    create(&f.app, "g", "i", "json", "earliest", "false").await;
    let base = "/consumers/g/instances/i";
    let cases: Vec<BadCase> = vec![
        (Method::POST, "/consumers/g".into(), None, Some(json!({"name": "i", "format": "json"})), StatusCode::CONFLICT, 40902),
        (Method::POST, "/consumers/g".into(), None, Some(json!({"name": "j", "format": "avro"})), StatusCode::UNPROCESSABLE_ENTITY, 42204),
        (Method::POST, "/consumers/g".into(), None, Some(json!({"name": "j", "format": "xml"})), StatusCode::UNPROCESSABLE_ENTITY, 42204),
        (Method::POST, "/consumers/g".into(), None, Some(json!({"name": "j", "auto.offset.reset": "soon"})), StatusCode::UNPROCESSABLE_ENTITY, 42204),
        (Method::POST, "/consumers/g".into(), None, Some(json!({"name": "j", "colour": "red"})), StatusCode::UNPROCESSABLE_ENTITY, 422),
        (Method::POST, "/consumers/g".into(), None, Some(json!({"name": "a/b"})), StatusCode::UNPROCESSABLE_ENTITY, 422),
        (Method::GET, format!("{base}/records"), Some(JSON), None, StatusCode::CONFLICT, 40903),
        (Method::POST, format!("{base}/subscription"), None, Some(json!({"topics": ["nope"]})), StatusCode::NOT_FOUND, 40401),
        (Method::POST, format!("{base}/subscription"), None, Some(json!({"topics": ["pin"], "topic_pattern": "p.*"})), StatusCode::UNPROCESSABLE_ENTITY, 422),
        (Method::POST, format!("{base}/subscription"), None, Some(json!({"topic_pattern": "(unclosed"})), StatusCode::UNPROCESSABLE_ENTITY, 422),
        (Method::POST, format!("{base}/assignments"), None, Some(json!({"partitions": [{"topic": "pin", "partition": 7}]})), StatusCode::NOT_FOUND, 40402),
        (
            Method::POST,
            format!("{base}/offsets"),
            None,
            Some(json!({"offsets": [{"topic": "nope", "partition": 0, "offset": 1}]})),
            StatusCode::NOT_FOUND,
            40401,
        ),
        (Method::GET, "/consumers/g/instances/ghost/subscription".into(), None, None, StatusCode::NOT_FOUND, 40403),
        (Method::DELETE, "/consumers/nobody/instances/ghost".into(), None, None, StatusCode::NOT_FOUND, 40403),
    ];
    for (method, uri, accept, body, status, code) in cases {
        let (s, v) = call(&f.app, method.clone(), &uri, accept, body.clone()).await;
        assert_eq!((s, v["error_code"].as_u64()), (status, Some(code)), "{method} {uri} {body:?}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The wrong embedded format for the instance: 406 / 40601.
    subscribe(&f.app, base, json!(["pin"])).await;
    let (s, v) = call(&f.app, Method::GET, &format!("{base}/records"), Some(BINARY), None).await;
    assert_eq!((s, v["error_code"].as_u64()), (StatusCode::NOT_ACCEPTABLE, Some(40601)), "{v}");
    // A value that is not JSON, read by a JSON consumer: an error naming the record and the fix.
    let mut b = BatchBuf::default();
    b.push(b"not json", b"", 0);
    f.log.append("pin-clean", vec![(0, b)]).await.expect("append");
    create(&f.app, "g", "strict", "json", "earliest", "false").await;
    subscribe(&f.app, "/consumers/g/instances/strict", json!(["pin-clean"])).await;
    let (s, v) = call(&f.app, Method::GET, "/consumers/g/instances/strict/records", Some(JSON), None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(v["message"].as_str().unwrap().contains("pin-clean/0@0") && v["message"].as_str().unwrap().contains("binary"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_subscription_and_idle_instances_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EmbeddedLogConfig { topics: vec!["pin".into(), "pin-clean".into()], partitions: 3, ..Default::default() };
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &cfg).expect("log");
    let groups = Arc::new(EmbeddedGroups::open(log.clone(), Duration::from_millis(1000)).expect("groups"));
    let config = ConsumeConfig { instance_timeout_ms: 1000, request_timeout_ms: 100, ..Default::default() };
    let app = router(ConsumeState::new(groups.clone(), KinesisReads::Embedded(log.clone()), config));
    produce(&log, "pin-clean", 0, 1).await;
    create(&app, "g", "p", "json", "earliest", "true").await;
    let (s, _) = call(&app, Method::POST, "/consumers/g/instances/p/subscription", None, Some(json!({"topic_pattern": "pin-.*"}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, sub) = call(&app, Method::GET, "/consumers/g/instances/p/subscription", None, None).await;
    assert_eq!(sub, json!({"topics": ["pin-clean"]}));
    assert_eq!(drain(&app, "/consumers/g/instances/p", JSON).await.len(), 3);
    assert!(groups.expire().is_empty(), "just used");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(groups.expire(), vec![("g".to_owned(), "p".to_owned())]);
    let (s, v) = call(&app, Method::GET, "/consumers/g/instances/p/records", Some(JSON), None).await;
    assert_eq!((s, v["error_code"].as_u64()), (StatusCode::NOT_FOUND, Some(40403)), "{v}");
    assert!(v["message"].as_str().unwrap().contains("expire"), "{v}");
    assert!(log.members().expect("members").is_empty(), "an expired instance is forgotten across restarts too");
    assert_eq!(log.committed("http:g", "pin-clean", 0).expect("committed"), Some(1), "auto commit committed what it read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_consumer_route_is_served() {
    let f = fixture();
    for (method, path, ..) in super::openapi::ROUTES {
        let uri = path.replace("{group}", "g").replace("{instance}", "i").replace("{stream}", "pin");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let req = Request::builder().method(method.clone()).uri(&uri).body(Body::empty()).expect("request");
        let resp = f.app.clone().oneshot(req).await.expect("infallible");
        // Served: the handler answered (an error about the empty request is fine), not the router's 404/405.
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(!bytes.is_empty() || status.is_success(), "{method} {uri}: {status} with no body: not routed");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_reads_walk_a_shard_with_iterators() {
    let f = fixture();
    produce(&f.log, "pin", 0, 3).await;
    let (s, v) = call(&f.app, Method::GET, "/streams/pin/sharditerator?shard-id=shardId-000000000001", None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let it = v["ShardIterator"].as_str().expect("iterator").to_owned();
    let get = |it: String, limit: &str| {
        let req = Request::builder().uri(format!("/streams/pin/records?limit={limit}")).header("shard-iterator", it).body(Body::empty()).expect("request");
        let app = f.app.clone();
        async move {
            let resp = app.oneshot(req).await.expect("infallible");
            let status = resp.status();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).expect("json"))
        }
    };
    let (s, page) = get(it, "2").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let records = page["Records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["SequenceNumber"], "00000000000000000000");
    assert_eq!(records[0]["PartitionKey"], "\"k0\"");
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.decode(records[1]["Data"].as_str().expect("data")).expect("base64");
    assert_eq!(data, br#"{"i":1,"p":1}"#);
    assert!(page["MillisBehindLatest"].as_i64().expect("behind") > 0, "one record still unread");
    let (_, rest) = get(page["NextShardIterator"].as_str().expect("next").to_owned(), "10").await;
    assert_eq!(rest["Records"].as_array().expect("records").len(), 1);
    assert_eq!(rest["MillisBehindLatest"], 0);
    let (_, empty) = get(rest["NextShardIterator"].as_str().expect("next").to_owned(), "10").await;
    assert!(empty["Records"].as_array().expect("records").is_empty(), "caught up: no records, still an iterator");
    assert!(empty["NextShardIterator"].is_string());

    // After a sequence number; and the errors Kinesis gives.
    let (_, v) = call(
        &f.app,
        Method::GET,
        "/streams/pin/sharditerator?shard-id=shardId-000000000001&ShardIteratorType=AFTER_SEQUENCE_NUMBER&StartingSequenceNumber=00000000000000000001",
        None,
        None,
    )
    .await;
    let (_, after) = get(v["ShardIterator"].as_str().expect("iterator").to_owned(), "10").await;
    assert_eq!(after["Records"][0]["SequenceNumber"], "00000000000000000002");
    for (uri, kind) in [
        ("/streams/pin/sharditerator?shard-id=shardId-000000000009", "ResourceNotFoundException"),
        ("/streams/nope/sharditerator?shard-id=shardId-000000000000", "ResourceNotFoundException"),
        ("/streams/pin/sharditerator", "InvalidArgumentException"),
        ("/streams/pin/sharditerator?shard-id=shardId-000000000000&ShardIteratorType=AT_SEQUENCE_NUMBER", "InvalidArgumentException"),
    ] {
        let (s, v) = call(&f.app, Method::GET, uri, None, None).await;
        assert_eq!((s, v["__type"].as_str()), (StatusCode::BAD_REQUEST, Some(kind)), "{uri}: {v}");
    }
    let (s, v) = get("garbage".into(), "10").await;
    assert_eq!((s, v["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidArgumentException")), "{v}");
}
