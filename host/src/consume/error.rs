//! Consumer API errors, answered as the Confluent REST Proxy answers them:
//! `{"error_code": N, "message": "..."}` with the HTTP status in N's first digits.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Media type of every request and response body that is not records (errors included).
pub const V2: &str = "application/vnd.kafka.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("Consumer instance `{instance}` of group `{group}` not found (instances expire after {idle_s} s without a request)")]
    NoInstance { group: String, instance: String, idle_s: u64 },
    #[error("Consumer instance with the specified name already exists: `{0}`")]
    InstanceExists(String),
    #[error("topic `{0}` not found")]
    UnknownTopic(String),
    #[error("partition {partition} of topic `{topic}` not found (it has {partitions})")]
    UnknownPartition { topic: String, partition: u32, partitions: u32 },
    #[error(
        "The requested embedded data format does not match the deserializer for this consumer instance: it was created with format `{created}`, the request accepts `{asked}`"
    )]
    FormatMismatch { created: &'static str, asked: String },
    #[error("Invalid consumer configuration: {0}")]
    InvalidConfig(String),
    #[error("Illegal state: {0}")]
    IllegalState(String),
    #[error("{0}")]
    BadBody(String),
    #[error("record {topic}/{partition}@{offset} is not JSON ({why}); read this topic with a consumer of format `binary`")]
    NotJson { topic: String, partition: u32, offset: u64, why: String },
    #[error("the consumer API is off: {0}")]
    Off(String),
    #[error("Kafka error: {0}")]
    Kafka(String),
    #[error("the log could not be read: {0}")]
    Storage(String),
}

impl ConsumeError {
    pub fn bad_body(msg: impl Into<String>) -> Self {
        ConsumeError::BadBody(msg.into())
    }

    /// HTTP status and REST Proxy error code.
    pub fn codes(&self) -> (StatusCode, u32) {
        match self {
            ConsumeError::NoInstance { .. } => (StatusCode::NOT_FOUND, 40403),
            ConsumeError::UnknownTopic(_) => (StatusCode::NOT_FOUND, 40401),
            ConsumeError::UnknownPartition { .. } => (StatusCode::NOT_FOUND, 40402),
            ConsumeError::Off(_) => (StatusCode::NOT_FOUND, 404),
            ConsumeError::FormatMismatch { .. } => (StatusCode::NOT_ACCEPTABLE, 40601),
            ConsumeError::InstanceExists(_) => (StatusCode::CONFLICT, 40902),
            ConsumeError::IllegalState(_) => (StatusCode::CONFLICT, 40903),
            ConsumeError::InvalidConfig(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42204),
            ConsumeError::BadBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, 422),
            ConsumeError::NotJson { .. } | ConsumeError::Kafka(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50002),
            ConsumeError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, 500),
        }
    }
}

impl From<anyhow::Error> for ConsumeError {
    fn from(e: anyhow::Error) -> Self {
        ConsumeError::Storage(format!("{e:#}"))
    }
}

impl IntoResponse for ConsumeError {
    fn into_response(self) -> Response {
        let (status, code) = self.codes();
        let body = json!({ "error_code": code, "message": self.to_string() });
        (status, [(header::CONTENT_TYPE, V2)], body.to_string()).into_response()
    }
}
