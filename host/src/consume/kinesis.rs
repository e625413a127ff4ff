//! The API-Gateway shapes of Kinesis reads: `GET /streams/{s}/sharditerator?shard-id=…`
//! (GetShardIterator) and `GET /streams/{s}/records` with a `Shard-Iterator`
//! header (GetRecords), answered over the embedded log, or forwarded to
//! Kinesis when ingest writes there.

use super::ConsumeState;
use crate::log::EmbeddedLog;
use crate::source::kinesis::{CallError, Kinesis, StartAt, shard_id, shard_number};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// Kinesis answers at most this many records per GetRecords.
const MAX_LIMIT: usize = 10_000;
/// Kinesis: a GetRecords answer carries at most 10 MiB.
const MAX_ANSWER_BYTES: usize = 10 << 20;

#[derive(Clone)]
pub enum KinesisReads {
    Embedded(Arc<EmbeddedLog>),
    Kinesis(Kinesis),
}

/// An error in Kinesis' shape: 400 with an exception name, unless the server failed.
struct KinesisError(StatusCode, &'static str, String);

impl IntoResponse for KinesisError {
    fn into_response(self) -> Response {
        let body = json!({ "__type": self.1, "message": self.2 });
        (self.0, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body.to_string()).into_response()
    }
}

fn invalid(msg: impl Into<String>) -> KinesisError {
    KinesisError(StatusCode::BAD_REQUEST, "InvalidArgumentException", msg.into())
}

fn not_found(msg: impl Into<String>) -> KinesisError {
    KinesisError(StatusCode::BAD_REQUEST, "ResourceNotFoundException", msg.into())
}

fn failed(e: impl std::fmt::Display) -> KinesisError {
    KinesisError(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", e.to_string())
}

fn from_call(e: CallError) -> KinesisError {
    match e {
        CallError::Throttled(m) => KinesisError(StatusCode::BAD_REQUEST, "ProvisionedThroughputExceededException", m),
        CallError::IteratorExpired => KinesisError(StatusCode::BAD_REQUEST, "ExpiredIteratorException", "the shard iterator expired: get a new one".into()),
        CallError::Other(m) if m.contains("ResourceNotFound") => not_found(m),
        // The client's mistakes, as Kinesis named them: answered as Kinesis answers them.
        CallError::Other(m) if m.contains("InvalidArgument") => invalid(m),
        CallError::Other(m) if m.contains("Validation") => KinesisError(StatusCode::BAD_REQUEST, "ValidationException", m),
        CallError::Other(m) => failed(m),
    }
}

fn reply<T: Serialize>(body: T) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], axum::Json(body)).into_response()
}

#[derive(Deserialize)]
pub struct IteratorParams {
    #[serde(rename = "shard-id", alias = "ShardId")]
    shard_id: Option<String>,
    #[serde(rename = "ShardIteratorType", alias = "shard-iterator-type")]
    kind: Option<String>,
    #[serde(rename = "StartingSequenceNumber", alias = "starting-sequence-number")]
    sequence: Option<String>,
}

/// An embedded-log iterator: where to read, opaque to the client as Kinesis' are.
#[derive(Debug, PartialEq)]
struct Position {
    stream: String,
    partition: u32,
    offset: u64,
}

impl Position {
    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{}|{}", self.stream, self.partition, self.offset))
    }

    fn decode(text: &str) -> Option<Position> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let mut parts = raw.rsplitn(3, '|');
        let offset = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        Some(Position { stream: parts.next()?.to_owned(), partition, offset })
    }
}

fn start_at(kind: Option<&str>, sequence: Option<&str>) -> Result<StartAt, KinesisError> {
    let need = |s: Option<&str>| s.map(str::to_owned).ok_or_else(|| invalid("StartingSequenceNumber is required for this ShardIteratorType"));
    Ok(match kind.unwrap_or("TRIM_HORIZON") {
        "TRIM_HORIZON" => StartAt::TrimHorizon,
        "LATEST" => StartAt::Latest,
        "AT_SEQUENCE_NUMBER" => StartAt::At(need(sequence)?),
        "AFTER_SEQUENCE_NUMBER" => StartAt::After(need(sequence)?),
        other => return Err(invalid(format!("ShardIteratorType `{other}` is not one of TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER"))),
    })
}

pub async fn shard_iterator(State(s): State<Arc<ConsumeState>>, Path(stream): Path<String>, Query(q): Query<IteratorParams>) -> Response {
    let result = async {
        let shard = q.shard_id.ok_or_else(|| invalid("the shard-id query parameter is required (e.g. shardId-000000000000)"))?;
        let at = start_at(q.kind.as_deref(), q.sequence.as_deref())?;
        let iterator = match &s.kinesis {
            KinesisReads::Kinesis(k) => {
                k.shard_iterator(&stream, &shard, &at).await.map_err(from_call)?.ok_or_else(|| not_found("no iterator for that shard"))?
            }
            KinesisReads::Embedded(log) => {
                let info = log.topic(&stream).ok_or_else(|| not_found(format!("stream `{stream}` not found")))?;
                let partition = shard_number(&shard).filter(|p| *p < info.partitions).ok_or_else(|| {
                    not_found(format!(
                        "shard `{shard}` of stream `{stream}` not found (it has {}: {} to {})",
                        info.partitions,
                        shard_id(0),
                        shard_id(info.partitions - 1)
                    ))
                })?;
                let seq = |s: &str| s.parse::<u64>().map_err(|_| invalid(format!("StartingSequenceNumber `{s}` is not a sequence number of this stream")));
                let offset = match at {
                    StartAt::TrimHorizon => log.start_offset(&stream, partition).map_err(failed)?,
                    StartAt::Latest => log.end_offset(&stream, partition).unwrap_or(0),
                    StartAt::At(s) => seq(&s)?,
                    StartAt::After(s) => seq(&s)? + 1,
                    StartAt::Timestamp(_) => return Err(invalid("AT_TIMESTAMP is not supported over the embedded log")),
                };
                Position { stream: stream.clone(), partition, offset }.encode()
            }
        };
        Ok::<_, KinesisError>(json!({ "ShardIterator": iterator }))
    }
    .await;
    match result {
        Ok(b) => reply(b),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct RecordsParams {
    #[serde(alias = "Limit")]
    limit: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    sequence_number: String,
    approximate_arrival_timestamp: f64,
    data: String,
    partition_key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Records {
    records: Vec<Record>,
    next_shard_iterator: Option<String>,
    millis_behind_latest: i64,
}

pub async fn get_records(State(s): State<Arc<ConsumeState>>, Path(stream): Path<String>, Query(q): Query<RecordsParams>, headers: HeaderMap) -> Response {
    let result = async {
        let iterator = headers
            .get("shard-iterator")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| invalid("the Shard-Iterator header is required: get one from GET /streams/{stream}/sharditerator?shard-id=…"))?
            .to_owned();
        let limit = q.limit.unwrap_or(MAX_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(invalid(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        match &s.kinesis {
            KinesisReads::Kinesis(k) => {
                let batch = k.get_records(&iterator, limit as i32).await.map_err(from_call)?;
                let records = batch
                    .records
                    .into_iter()
                    .map(|r| Record {
                        sequence_number: r.sequence_number,
                        approximate_arrival_timestamp: r.arrived_ms as f64 / 1000.0,
                        data: b64.encode(&r.data),
                        partition_key: r.partition_key,
                    })
                    .collect();
                Ok(Records { records, next_shard_iterator: batch.next_iterator, millis_behind_latest: batch.millis_behind_latest.unwrap_or(0) })
            }
            KinesisReads::Embedded(log) => {
                let at =
                    Position::decode(&iterator).filter(|p| p.stream == stream).ok_or_else(|| invalid("the Shard-Iterator is not one this stream gave out"))?;
                let log = log.clone();
                tokio::task::spawn_blocking(move || read_embedded(&log, at, limit)).await.map_err(failed)?
            }
        }
    }
    .await;
    match result {
        Ok(b) => reply(b),
        Err(e) => e.into_response(),
    }
}

fn read_embedded(log: &EmbeddedLog, at: Position, limit: usize) -> Result<Records, KinesisError> {
    let fetched = log.read(&at.stream, at.partition, at.offset, limit).map_err(failed)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut records = Vec::with_capacity(fetched.offsets.len());
    let mut bytes = 0;
    let mut next = fetched.next_offset.max(at.offset);
    let mut last_ts = None;
    for (r, offset) in fetched.batch.as_ref().iter().zip(&fetched.offsets) {
        if bytes + r.value.len() > MAX_ANSWER_BYTES && !records.is_empty() {
            next = *offset;
            break;
        }
        bytes += r.value.len();
        records.push(Record {
            sequence_number: format!("{offset:020}"),
            approximate_arrival_timestamp: r.timestamp as f64 / 1000.0,
            data: b64.encode(r.value),
            partition_key: String::from_utf8_lossy(r.key).into_owned(),
        });
        last_ts = Some(r.timestamp);
        next = offset + 1;
    }
    let end = log.end_offset(&at.stream, at.partition).unwrap_or(next);
    let behind = match last_ts {
        Some(ts) if next < end => (crate::clock::now_ms() - ts).max(0),
        _ => 0,
    };
    let next_shard_iterator = Some(Position { stream: at.stream, partition: at.partition, offset: next }.encode());
    Ok(Records { records, next_shard_iterator, millis_behind_latest: behind })
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn iterators_round_trip_and_refuse_garbage() {
        let p = Position { stream: "pin|odd".into(), partition: 3, offset: 42 };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode("not an iterator"), None);
        assert_eq!(Position::decode(""), None);
    }
}
