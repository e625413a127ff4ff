//! The ingest API through its router (no socket): replies and every kind of bad input.

use super::*;
use crate::log::{EmbeddedLog, EmbeddedLogConfig};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    app: Router,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EmbeddedLogConfig { topics: vec!["u.pin".into(), "streaming-u-pin".into()], partitions: 3, ..Default::default() };
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &cfg).expect("log");
    let app = router(IngestState::new(Destination::Embedded(log.clone()), IngestConfig { max_body_bytes: 4096, ..Default::default() }));
    Fixture { _dir: dir, log, app }
}

async fn call(app: &Router, method: Method, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = app.clone().oneshot(req.body(body.into()).expect("request")).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())))
}

const KAFKA_JSON: Option<&str> = Some("application/vnd.kafka.json.v2+json");

fn stored(log: &EmbeddedLog, topic: &str) -> usize {
    (0..3).map(|p| log.read(topic, p, 0, 10_000).expect("read").offsets.len()).sum()
}

#[tokio::test]
async fn rest_proxy_produce_replies_with_offsets_once_stored() {
    let f = fixture();
    let body = json!({"records": [{"value": {"index": 1}}, {"key": "k", "value": {"index": 2}}, {"value": {"index": 3}, "partition": 2}]});
    let (status, reply) = call(&f.app, Method::POST, "/topics/u.pin", KAFKA_JSON, body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let offsets = reply["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 3);
    assert_eq!(offsets[2]["partition"], 2);
    assert!(offsets.iter().all(|o| o["error_code"].is_null() && o["error"].is_null()));
    assert!(reply["key_schema_id"].is_null() && reply["value_schema_id"].is_null());
    assert_eq!(stored(&f.log, "u.pin"), 3);
    // The keyed record went where Kafka's partitioner puts "\"k\"" (the JSON-serialised key).
    let keyed = &offsets[1];
    let p = keyed["partition"].as_u64().expect("partition") as u32;
    let read = f.log.read("u.pin", p, keyed["offset"].as_u64().expect("offset"), 1).expect("read");
    assert_eq!(read.batch.as_ref().get(0).value, br#"{"index":2}"#);
    assert_eq!(read.batch.as_ref().get(0).key, br#""k""#);
}

/// One bad request: what it is, path, content type, body, and the status, REST
/// Proxy error code and message fragment it must be answered with.
type BadInputCase<'a> = (&'a str, &'a str, Option<&'a str>, String, StatusCode, u64, &'a str);

#[tokio::test]
async fn rest_proxy_bad_input_table() {
    let f = fixture();
    let ok_body = json!({"records": [{"value": {"index": 1}}]}).to_string();
    let big = json!({"records": [{"value": {"x": "y".repeat(5000)}}]}).to_string();
    let cases: Vec<BadInputCase> = vec![
        ("wrong content type", "/topics/u.pin", Some("application/json"), ok_body.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, 415, "unsupported content type"),
        ("no content type", "/topics/u.pin", None, ok_body.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, 415, "application/vnd.kafka.json.v2+json"),
        ("unknown topic", "/topics/nope", KAFKA_JSON, ok_body.clone(), StatusCode::NOT_FOUND, 40401, "topic `nope` not found"),
        ("malformed JSON", "/topics/u.pin", KAFKA_JSON, "{\"records\": [".into(), StatusCode::BAD_REQUEST, 400, "malformed JSON"),
        ("empty body", "/topics/u.pin", KAFKA_JSON, String::new(), StatusCode::UNPROCESSABLE_ENTITY, 42201, "empty"),
        ("no records", "/topics/u.pin", KAFKA_JSON, "{\"value\": 1}".into(), StatusCode::UNPROCESSABLE_ENTITY, 42201, "missing field `records`"),
        ("records not a list", "/topics/u.pin", KAFKA_JSON, "{\"records\": 5}".into(), StatusCode::UNPROCESSABLE_ENTITY, 42201, "invalid type"),
        ("empty records", "/topics/u.pin", KAFKA_JSON, "{\"records\": []}".into(), StatusCode::UNPROCESSABLE_ENTITY, 42201, "`records` is empty"),
        (
            "unknown record field",
            "/topics/u.pin",
            KAFKA_JSON,
            "{\"records\": [{\"valeu\": 1}]}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "unknown field `valeu`",
        ),
        ("bad partition", "/topics/u.pin", KAFKA_JSON, "{\"records\": [{\"value\": 1, \"partition\": 7}]}".into(), StatusCode::NOT_FOUND, 40402, "partition 7"),
        ("oversized body", "/topics/u.pin", KAFKA_JSON, big, StatusCode::PAYLOAD_TOO_LARGE, 413, "larger than 4096 bytes"),
    ];
    for (name, uri, ct, body, status, code, message) in cases {
        let (got, reply) = call(&f.app, Method::POST, uri, ct, body).await;
        assert_eq!(got, status, "{name}: {reply}");
        assert_eq!(reply["error_code"], code, "{name}: {reply}");
        let msg = reply["message"].as_str().unwrap_or_default();
        assert!(msg.contains(message), "{name}: {msg:?} should mention {message:?}");
    }
    // Nothing of any refused request was stored.
    assert_eq!(stored(&f.log, "u.pin"), 0);
}

#[tokio::test]
async fn kinesis_put_record_and_records() {
    let f = fixture();
    let one = json!({"StreamName": "streaming-u-pin", "Data": {"index": 1}, "PartitionKey": "p1"});
    let (status, reply) = call(&f.app, Method::PUT, "/streams/streaming-u-pin/record", Some("application/json"), one.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(reply["ShardId"].as_str().expect("shard").starts_with("shardId-"));
    assert!(reply["SequenceNumber"].as_str().expect("seq").chars().all(|c| c.is_ascii_digit()));

    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(br#"{"index":2}"#);
    let many = json!({"StreamName": "streaming-u-pin", "Records": [
        {"Data": encoded, "PartitionKey": "a"}, {"Data": {"index": 3}, "PartitionKey": "b"}, {"Data": "plain text", "PartitionKey": "c"}]});
    let (status, reply) = call(&f.app, Method::PUT, "/streams/streaming-u-pin/records", None, many.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["FailedRecordCount"], 0);
    assert_eq!(reply["Records"].as_array().expect("records").len(), 3);
    let mut values: Vec<String> = (0..3)
        .flat_map(|p| {
            let r = f.log.read("streaming-u-pin", p, 0, 100).expect("read");
            r.batch.as_ref().iter().map(|x| String::from_utf8_lossy(x.value).into_owned()).collect::<Vec<_>>()
        })
        .collect();
    values.sort();
    // Base64 Data arrives as the JSON it encodes; JSON Data as is; other strings stay strings.
    assert_eq!(values, vec!["\"plain text\"", r#"{"index":1}"#, r#"{"index":2}"#, r#"{"index":3}"#]);
}

#[tokio::test]
async fn kinesis_bad_input_table() {
    let f = fixture();
    let too_many: Vec<Value> = (0..501).map(|i| json!({"Data": {"i": i}, "PartitionKey": "k"})).collect();
    let cases: Vec<(&str, &str, String, StatusCode, &str, &str)> = vec![
        (
            "unknown stream",
            "/streams/nope/record",
            json!({"Data": {}, "PartitionKey": "k"}).to_string(),
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            "stream `nope` not found",
        ),
        ("malformed JSON", "/streams/streaming-u-pin/record", "{".into(), StatusCode::BAD_REQUEST, "SerializationException", "malformed JSON"),
        (
            "no partition key",
            "/streams/streaming-u-pin/record",
            json!({"Data": {}}).to_string(),
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "PartitionKey is required",
        ),
        (
            "no data",
            "/streams/streaming-u-pin/record",
            json!({"PartitionKey": "k"}).to_string(),
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "Data is required",
        ),
        (
            "stream name mismatch",
            "/streams/streaming-u-pin/record",
            json!({"StreamName": "other", "Data": 1, "PartitionKey": "k"}).to_string(),
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "does not match",
        ),
        ("empty body", "/streams/streaming-u-pin/records", String::new(), StatusCode::BAD_REQUEST, "ValidationException", "empty"),
        (
            "501 records, over the body limit",
            "/streams/streaming-u-pin/records",
            json!({"Records": too_many}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "ValidationException",
            "larger than",
        ),
        ("no records", "/streams/streaming-u-pin/records", json!({"Records": []}).to_string(), StatusCode::BAD_REQUEST, "ValidationException", "1 to 500"),
    ];
    for (name, uri, body, status, kind, message) in cases {
        let (got, reply) = call(&f.app, Method::PUT, uri, None, body).await;
        assert_eq!(got, status, "{name}: {reply}");
        assert_eq!(reply["__type"], kind, "{name}: {reply}");
        assert!(reply["message"].as_str().unwrap_or_default().contains(message), "{name}: {reply}");
    }
    assert_eq!(stored(&f.log, "streaming-u-pin"), 0);
}

#[tokio::test]
async fn with_kinesis_as_destination_the_rest_proxy_routes_say_they_are_off_and_bad_records_never_reach_kinesis() {
    // Nothing listens on this port: a record that reached the producer would fail with 503, not 4xx.
    let config = crate::source::kinesis::KinesisConfig::for_endpoint(Some("http://127.0.0.1:9".into()));
    let producer = crate::ingest::KinesisProducer::new(&config).await;
    let app = router(IngestState::new(Destination::Kinesis(Arc::new(producer)), IngestConfig { max_body_bytes: 4096, ..Default::default() }));
    let (status, reply) = call(&app, Method::POST, "/topics/u.pin", KAFKA_JSON, json!({"records": [{"value": 1}]}).to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(reply["error_code"], 40403);
    assert!(reply["message"].as_str().unwrap().contains("/streams/u.pin/records"), "{reply}");
    let (status, reply) = call(&app, Method::PUT, "/streams/s/records", Some("application/json"), json!({"Records": [{"Data": {"a": 1}}]}).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("PartitionKey"), "{reply}");
}
