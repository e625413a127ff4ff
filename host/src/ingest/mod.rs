//! HTTP ingest in the shapes existing clients already speak: the Confluent
//! Kafka REST Proxy v2 (`POST /topics/{topic}`) and the API-Gateway proxy of
//! Kinesis (`PUT /streams/{stream}/record|records`). A 2xx reply means the
//! records are durable; on any error nothing of the request was stored.

mod destination;
mod error;
mod kafka_producer;
mod kinesis;
mod kinesis_producer;
mod rest_proxy;

pub use destination::Destination;
pub use error::{IngestError, WireShape};
pub use kafka_producer::KafkaProducer;
pub use kinesis_producer::{KinesisProducer, MAX_RECORDS_PER_PUT, Stored};

use axum::Router;
use axum::routing::{post, put};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

/// `[ingest]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Where accepted records go: `embedded` (the embedded log), `kafka`, or
    /// `kinesis` (the Kinesis shapes only: `PUT /streams/...` forwards to
    /// Kinesis, and the REST Proxy routes answer that they are off).
    /// Default: `kafka` when `[kafka]` is configured, else `embedded`.
    pub destination: Option<DestinationKind>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { max_body_bytes: 16 << 20, destination: None }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    Embedded,
    Kafka,
    Kinesis,
}

pub struct IngestState {
    pub destination: Destination,
    pub config: IngestConfig,
    /// Spreads keyless records over partitions, one partition per request.
    next_partition: AtomicU32,
}

impl IngestState {
    pub fn new(destination: Destination, config: IngestConfig) -> Arc<Self> {
        Arc::new(IngestState { destination, config, next_partition: AtomicU32::new(0) })
    }
}

/// The ingest routes.
pub fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/topics/{topic}", post(rest_proxy::produce))
        .route("/streams/{stream}/record", put(kinesis::put_record))
        .route("/streams/{stream}/records", put(kinesis::put_records))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

/// Count requests by route template (never the topic a client typed) and status.
async fn count_requests(path: Option<axum::extract::MatchedPath>, req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = path.map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    crate::telemetry::metrics().ingest_requests.with_label_values(&[&route, resp.status().as_str()]).inc();
    resp
}

/// Records and value bytes about to be stored.
fn totals(parts: &[(u32, sluice_guest::BatchBuf)]) -> (u64, u64) {
    (parts.iter().map(|(_, b)| b.len() as u64).sum(), parts.iter().map(|(_, b)| b.values.len() as u64).sum())
}

/// Count what a successful request stored.
fn count_stored(topic: &str, (records, bytes): (u64, u64)) {
    let m = crate::telemetry::metrics();
    m.ingest_records.with_label_values(&[topic]).inc_by(records);
    m.ingest_bytes.with_label_values(&[topic]).inc_by(bytes);
}

/// Read a request body, refusing it past the configured size.
async fn read_body(body: axum::body::Body, limit: usize, shape: WireShape) -> Result<bytes::Bytes, IngestError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) if b.is_empty() => Err(IngestError::bad_body(shape, "the request body is empty")),
        Ok(b) => Ok(b),
        Err(e) => {
            let too_big = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_big {
                Err(IngestError::TooLarge { shape, limit })
            } else {
                Err(IngestError::bad_body(shape, format!("could not read the request body: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests;
