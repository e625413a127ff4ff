//! Kafka REST Proxy v2: `POST /topics/{topic}` with `application/vnd.kafka.json.v2+json`.

use super::error::{IngestError, WireShape};
use super::{IngestState, read_body};
use crate::log::AppendError;
use crate::partitioner::kafka_partition;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sluice_guest::BatchBuf;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub const CONTENT_TYPE: &str = "application/vnd.kafka.json.v2+json";
const SHAPE: WireShape = WireShape::RestProxy;

#[derive(Deserialize)]
struct ProduceBody<'a> {
    #[serde(borrow)]
    records: Vec<ProduceRecord<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceRecord<'a> {
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(default)]
    partition: Option<u32>,
}

#[derive(Serialize)]
struct Offset {
    partition: u32,
    offset: u64,
    error_code: Option<u32>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ProduceReply {
    offsets: Vec<Offset>,
    key_schema_id: Option<u32>,
    value_schema_id: Option<u32>,
}

pub async fn produce(State(state): State<Arc<IngestState>>, Path(topic): Path<String>, headers: HeaderMap, body: axum::body::Body) -> Response {
    match produce_inner(&state, &topic, &headers, body).await {
        Ok(reply) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/vnd.kafka.v2+json")], axum::Json(reply)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn produce_inner(state: &IngestState, topic: &str, headers: &HeaderMap, body: axum::body::Body) -> Result<ProduceReply, IngestError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(CONTENT_TYPE) {
        return Err(IngestError::ContentType { got: content_type.to_owned(), expected: CONTENT_TYPE });
    }
    if matches!(state.destination, super::Destination::Kinesis(_)) {
        return Err(IngestError::RouteOff(format!(
            "the Kafka REST Proxy routes are off: ingest.destination is kinesis; put records with PUT /streams/{topic}/records"
        )));
    }
    let partitions = state
        .destination
        .partitions(topic)
        .await
        .map_err(|e| IngestError::Unavailable { reason: e.to_string(), shape: SHAPE })?
        .ok_or_else(|| IngestError::UnknownTopic { name: topic.to_owned(), kind: "topic", shape: SHAPE })?;
    let bytes = read_body(body, state.config.max_body_bytes, SHAPE).await?;
    let parsed: ProduceBody = serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => IngestError::MalformedJson(e.to_string(), SHAPE),
        _ => IngestError::bad_body(SHAPE, format!("the body must be {{\"records\": [{{\"value\": ...}}, ...]}}: {e}")),
    })?;
    if parsed.records.is_empty() {
        return Err(IngestError::bad_body(SHAPE, "`records` is empty: nothing to produce"));
    }
    let now = crate::clock::now_ms();
    // Keyless records of one request share a partition, as Kafka's sticky partitioner does.
    let sticky = state.next_partition.fetch_add(1, Ordering::Relaxed) % partitions;
    let mut by_partition: BTreeMap<u32, BatchBuf> = BTreeMap::new();
    let mut placed = Vec::with_capacity(parsed.records.len());
    for (i, r) in parsed.records.iter().enumerate() {
        let key = r.key.map(|k| k.get().as_bytes()).filter(|k| *k != b"null").unwrap_or(b"");
        let p = match r.partition {
            Some(p) if p >= partitions => return Err(IngestError::UnknownPartition { topic: topic.to_owned(), partition: p, partitions }),
            Some(p) => p,
            None if !key.is_empty() => kafka_partition(key, partitions),
            None => sticky,
        };
        let value = compact(r.value.map_or("null", |v| v.get()), i)?;
        let batch = by_partition.entry(p).or_default();
        placed.push((p, batch.len() as u64));
        batch.push(&value, key, now);
    }
    let parts: Vec<(u32, BatchBuf)> = by_partition.into_iter().collect();
    let totals = super::totals(&parts);
    let order: Vec<u32> = parts.iter().map(|(p, _)| *p).collect();
    let stored = state.destination.append(topic, parts).await.map_err(|e| match e {
        AppendError::UnknownTopic(name) => IngestError::UnknownTopic { name, kind: "topic", shape: SHAPE },
        AppendError::UnknownPartition { topic, partition, partitions } => IngestError::UnknownPartition { topic, partition, partitions },
        AppendError::NoSpace(reason) => IngestError::InsufficientStorage { reason, shape: SHAPE },
        other => IngestError::Unavailable { reason: other.to_string(), shape: SHAPE },
    })?;
    super::count_stored(topic, totals);
    let offsets_of: BTreeMap<u32, Vec<u64>> = order.into_iter().zip(stored).collect();
    let offsets = placed.into_iter().map(|(p, i)| Offset { partition: p, offset: offsets_of[&p][i as usize], error_code: None, error: None }).collect();
    Ok(ProduceReply { offsets, key_schema_id: None, value_schema_id: None })
}

/// Values are stored one per line downstream: a pretty-printed value is compacted.
fn compact(raw: &str, index: usize) -> Result<std::borrow::Cow<'_, [u8]>, IngestError> {
    crate::jsonl::one_line(raw.as_bytes()).map_err(|e| IngestError::bad_body(SHAPE, format!("record {index}: {e}")))
}
