//! The API-Gateway proxy shapes of Kinesis `PutRecord` and `PutRecords`.

use super::error::{IngestError, WireShape};
use super::{Destination, IngestState, read_body};
use crate::log::AppendError;
use crate::partitioner::kinesis_shard;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sluice_guest::BatchBuf;
use std::collections::BTreeMap;
use std::sync::Arc;

const SHAPE: WireShape = WireShape::Kinesis;
/// Kinesis limits, enforced so clients see here what they would see there.
const MAX_RECORDS: usize = 500;
const MAX_RECORD_BYTES: usize = 1 << 20;
const MAX_PARTITION_KEY: usize = 256;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBody<'a> {
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    partition_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsBody<'a> {
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(borrow)]
    records: Vec<PutRecordsEntry<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsEntry<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    partition_key: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordReply {
    sequence_number: String,
    shard_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsReply {
    failed_record_count: u32,
    records: Vec<PutRecordReply>,
}

fn reply<T: Serialize>(body: T) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], axum::Json(body)).into_response()
}

pub async fn put_record(State(state): State<Arc<IngestState>>, Path(stream): Path<String>, body: axum::body::Body) -> Response {
    let result = async {
        let bytes = read_body(body, state.config.max_body_bytes, SHAPE).await?;
        let parsed: PutRecordBody = parse(&bytes)?;
        check_stream_name(&stream, parsed.stream_name.as_deref())?;
        let entry = (parsed.data, parsed.partition_key);
        let mut out = put(&state, &stream, vec![entry]).await?;
        Ok::<_, IngestError>(out.remove(0))
    }
    .await;
    match result {
        Ok(r) => reply(r),
        Err(e) => e.into_response(),
    }
}

pub async fn put_records(State(state): State<Arc<IngestState>>, Path(stream): Path<String>, body: axum::body::Body) -> Response {
    let result = async {
        let bytes = read_body(body, state.config.max_body_bytes, SHAPE).await?;
        let parsed: PutRecordsBody = parse(&bytes)?;
        check_stream_name(&stream, parsed.stream_name.as_deref())?;
        if parsed.records.is_empty() || parsed.records.len() > MAX_RECORDS {
            return Err(IngestError::bad_body(SHAPE, format!("Records must hold 1 to {MAX_RECORDS} entries, got {}", parsed.records.len())));
        }
        let entries = parsed.records.into_iter().map(|r| (r.data, r.partition_key)).collect();
        let records = put(&state, &stream, entries).await?;
        Ok::<_, IngestError>(PutRecordsReply { failed_record_count: 0, records })
    }
    .await;
    match result {
        Ok(r) => reply(r),
        Err(e) => e.into_response(),
    }
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, IngestError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => IngestError::MalformedJson(e.to_string(), SHAPE),
        _ => IngestError::bad_body(SHAPE, e.to_string()),
    })
}

fn check_stream_name(path: &str, body: Option<&str>) -> Result<(), IngestError> {
    match body {
        Some(name) if name != path => Err(IngestError::bad_body(SHAPE, format!("StreamName `{name}` does not match the stream in the path, `{path}`"))),
        _ => Ok(()),
    }
}

/// `Data` as the JSON value it carries: a JSON object/array/number as is, or a
/// base64 string whose decoded bytes are JSON. Any other string stays a JSON string.
fn data_value(raw: &RawValue) -> Vec<u8> {
    let text = raw.get();
    if text.starts_with('"')
        && let Ok(s) = serde_json::from_str::<String>(text)
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(s.trim())
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&decoded)
    {
        return v.to_string().into_bytes();
    }
    if text.contains(['\n', '\r'])
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
    {
        return v.to_string().into_bytes();
    }
    text.as_bytes().to_vec()
}

/// Each entry's Data as stored and its partition key, checked as Kinesis checks them.
fn validated(entries: Vec<(Option<&RawValue>, Option<String>)>) -> Result<Vec<(Vec<u8>, String)>, IngestError> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, (data, key))| {
            let data = data.ok_or_else(|| IngestError::bad_body(SHAPE, format!("record {i}: Data is required")))?;
            let key = key
                .filter(|k| !k.is_empty() && k.len() <= MAX_PARTITION_KEY)
                .ok_or_else(|| IngestError::bad_body(SHAPE, format!("record {i}: PartitionKey is required and must be 1 to {MAX_PARTITION_KEY} characters")))?;
            let value = data_value(data);
            if value.len() > MAX_RECORD_BYTES {
                return Err(IngestError::bad_body(SHAPE, format!("record {i}: Data is larger than 1 MiB")));
            }
            Ok((value, key))
        })
        .collect()
}

fn storage_error(stream: &str, e: AppendError) -> IngestError {
    match e {
        AppendError::UnknownTopic(_) => IngestError::UnknownTopic { name: stream.to_owned(), kind: "stream", shape: SHAPE },
        AppendError::NoSpace(reason) => IngestError::InsufficientStorage { reason, shape: SHAPE },
        other => IngestError::Unavailable { reason: other.to_string(), shape: SHAPE },
    }
}

async fn put(state: &IngestState, stream: &str, entries: Vec<(Option<&RawValue>, Option<String>)>) -> Result<Vec<PutRecordReply>, IngestError> {
    let records = validated(entries)?;
    if let Destination::Kinesis(producer) = &state.destination {
        let refs: Vec<(&[u8], &str)> = records.iter().map(|(v, k)| (v.as_slice(), k.as_str())).collect();
        let stored = producer.put(stream, &refs).await.map_err(|e| storage_error(stream, e))?;
        super::count_stored(stream, (records.len() as u64, records.iter().map(|(v, _)| v.len() as u64).sum()));
        return Ok(stored.into_iter().map(|s| PutRecordReply { sequence_number: s.sequence_number, shard_id: s.shard_id }).collect());
    }
    let shards = state
        .destination
        .partitions(stream)
        .await
        .map_err(|e| IngestError::Unavailable { reason: e.to_string(), shape: SHAPE })?
        .ok_or_else(|| IngestError::UnknownTopic { name: stream.to_owned(), kind: "stream", shape: SHAPE })?;
    let now = crate::clock::now_ms();
    let mut by_shard: BTreeMap<u32, BatchBuf> = BTreeMap::new();
    let mut placed = Vec::with_capacity(records.len());
    for (value, key) in records {
        let shard = kinesis_shard(&key, shards);
        let batch = by_shard.entry(shard).or_default();
        placed.push((shard, batch.len() as u64));
        batch.push(&value, key.as_bytes(), now);
    }
    let parts: Vec<(u32, BatchBuf)> = by_shard.into_iter().collect();
    let totals = super::totals(&parts);
    let order: Vec<u32> = parts.iter().map(|(p, _)| *p).collect();
    let stored = state.destination.append(stream, parts).await.map_err(|e| storage_error(stream, e))?;
    super::count_stored(stream, totals);
    let offsets_of: BTreeMap<u32, Vec<u64>> = order.into_iter().zip(stored).collect();
    Ok(placed
        .into_iter()
        .map(|(shard, i)| PutRecordReply { sequence_number: format!("{:020}", offsets_of[&shard][i as usize]), shard_id: format!("shardId-{shard:012}") })
        .collect())
}
