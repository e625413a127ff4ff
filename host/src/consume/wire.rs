//! The REST Proxy v2 consumer API's bodies and media types, as Confluent documents them.

use super::error::ConsumeError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use super::error::V2;
pub const JSON_RECORDS: &str = "application/vnd.kafka.json.v2+json";
pub const BINARY_RECORDS: &str = "application/vnd.kafka.binary.v2+json";

/// How a consumer instance renders keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Keys and values are JSON documents, embedded as they are.
    Json,
    /// Keys and values are bytes, base64-encoded.
    Binary,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Binary => "binary",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => JSON_RECORDS,
            Format::Binary => BINARY_RECORDS,
        }
    }

    /// Check the `Accept` header of a records request against this format.
    /// No header, or one that accepts anything, takes the instance's format.
    pub fn check_accept(self, accept: Option<&str>) -> Result<(), ConsumeError> {
        let Some(accept) = accept else { return Ok(()) };
        let wanted: Vec<&str> = accept.split(',').map(|m| m.split(';').next().unwrap_or("").trim()).collect();
        let fits = wanted.iter().any(|m| {
            m.eq_ignore_ascii_case(self.media_type()) || *m == "*/*" || m.eq_ignore_ascii_case("application/*") || m.eq_ignore_ascii_case("application/json")
        });
        if fits { Ok(()) } else { Err(ConsumeError::FormatMismatch { created: self.name(), asked: accept.to_owned() }) }
    }
}

/// Where a new instance starts reading a partition its group never committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reset {
    Earliest,
    Latest,
    /// Fail the read: the client must seek first.
    None,
}

/// `POST /consumers/{group}`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateConsumer {
    pub name: Option<String>,
    pub format: Option<String>,
    #[serde(rename = "auto.offset.reset")]
    pub auto_offset_reset: Option<String>,
    /// Confluent documents it as a string ("true"/"false"); a JSON boolean is accepted too.
    #[serde(rename = "auto.commit.enable")]
    pub auto_commit_enable: Option<serde_json::Value>,
    #[serde(rename = "fetch.min.bytes")]
    pub fetch_min_bytes: Option<serde_json::Value>,
    #[serde(rename = "consumer.request.timeout.ms")]
    pub request_timeout_ms: Option<serde_json::Value>,
}

/// A consumer instance's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSettings {
    pub format: Format,
    pub reset: Reset,
    pub auto_commit: bool,
}

impl CreateConsumer {
    pub fn settings(&self) -> Result<InstanceSettings, ConsumeError> {
        let format = match self.format.as_deref().unwrap_or("binary") {
            "json" => Format::Json,
            "binary" => Format::Binary,
            "avro" | "jsonschema" | "protobuf" => {
                return Err(ConsumeError::InvalidConfig(format!(
                    "format `{}` needs a schema registry, which sluice does not have; use `json` or `binary`",
                    self.format.as_deref().unwrap_or_default()
                )));
            }
            other => return Err(ConsumeError::InvalidConfig(format!("format `{other}` is not one of json, binary"))),
        };
        let reset = match self.auto_offset_reset.as_deref().unwrap_or("latest") {
            "earliest" | "smallest" => Reset::Earliest,
            "latest" | "largest" => Reset::Latest,
            "none" => Reset::None,
            other => return Err(ConsumeError::InvalidConfig(format!("auto.offset.reset `{other}` is not one of earliest, latest, none"))),
        };
        let auto_commit = match &self.auto_commit_enable {
            None => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => return Err(ConsumeError::InvalidConfig(format!("auto.commit.enable must be \"true\" or \"false\", got {other}"))),
        };
        Ok(InstanceSettings { format, reset, auto_commit })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedConsumer {
    pub instance_id: String,
    pub base_uri: String,
}

/// `POST …/subscription`: topics, or a pattern.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub topics: Option<Vec<String>>,
    pub topic_pattern: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Subscription {
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// `POST …/assignments`, `POST …/positions/beginning|end`, `GET …/offsets`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Partitions {
    pub partitions: Vec<TopicPartition>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// `POST …/offsets` (commit), `POST …/positions` (seek).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offsets {
    pub offsets: Vec<PartitionOffset>,
}

#[derive(Debug, Serialize)]
pub struct Committed {
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Serialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

/// One record as read from a partition, before it is rendered.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// One record of a `GET …/records` answer.
#[derive(Debug, Serialize)]
pub struct RenderedRecord<'a> {
    pub topic: &'a str,
    pub key: Option<Box<RawValue>>,
    pub value: Option<Box<RawValue>>,
    pub partition: u32,
    pub offset: u64,
}

/// Render records in a consumer's format. JSON keys that are not JSON (a
/// Kinesis partition key, a Kafka key from another client) become JSON strings;
/// a JSON value that is not JSON is an error naming the record.
pub fn render(records: &[ReadRecord], format: Format) -> Result<String, ConsumeError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let (key, value) = match format {
            Format::Binary => ((!r.key.is_empty()).then(|| quoted(&b64.encode(&r.key))), Some(quoted(&b64.encode(&r.value)))),
            Format::Json => {
                let key = (!r.key.is_empty()).then(|| json_or_string(&r.key));
                let text = std::str::from_utf8(&r.value).map_err(|e| not_json(r, e.to_string()))?;
                let value = RawValue::from_string(text.to_owned()).map_err(|e| not_json(r, e.to_string()))?;
                (key, Some(value))
            }
        };
        out.push(RenderedRecord { topic: &r.topic, key, value, partition: r.partition, offset: r.offset });
    }
    serde_json::to_string(&out).map_err(|e| ConsumeError::Storage(e.to_string()))
}

fn not_json(r: &ReadRecord, why: String) -> ConsumeError {
    ConsumeError::NotJson { topic: r.topic.clone(), partition: r.partition, offset: r.offset, why }
}

fn quoted(s: &str) -> Box<RawValue> {
    RawValue::from_string(serde_json::to_string(s).expect("a string serializes")).expect("a JSON string")
}

fn json_or_string(bytes: &[u8]) -> Box<RawValue> {
    std::str::from_utf8(bytes).ok().and_then(|t| RawValue::from_string(t.to_owned()).ok()).unwrap_or_else(|| quoted(&String::from_utf8_lossy(bytes)))
}

/// A body that may be empty (then `None`), else JSON of `T`.
pub fn optional_body<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<Option<T>, ConsumeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes).map(Some).map_err(|e| ConsumeError::bad_body(format!("{what}: {e}")))
}

pub fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ConsumeError> {
    optional_body(bytes, what)?.ok_or_else(|| ConsumeError::bad_body(format!("{what}: the request body is empty")))
}
