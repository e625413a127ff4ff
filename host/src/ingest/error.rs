//! Ingest errors, answered in the error shape of the API the client spoke.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which API a request came through: errors answer in that API's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireShape {
    /// `{"error_code": N, "message": "..."}`
    RestProxy,
    /// `{"__type": "...Exception", "message": "..."}`
    Kinesis,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unsupported content type {got:?}: send {expected}")]
    ContentType { got: String, expected: &'static str },
    #[error("malformed JSON: {0}")]
    MalformedJson(String, WireShape),
    #[error("{0}")]
    BadBody(String, WireShape),
    #[error("request body larger than {limit} bytes")]
    TooLarge { shape: WireShape, limit: usize },
    #[error("{kind} `{name}` not found")]
    UnknownTopic { name: String, kind: &'static str, shape: WireShape },
    #[error("partition {partition} of topic `{topic}` not found (it has {partitions})")]
    UnknownPartition { topic: String, partition: u32, partitions: u32 },
    /// This route is off because records go to a destination it cannot write to.
    #[error("{0}")]
    RouteOff(String),
    #[error("the log cannot take records right now: {reason}")]
    Unavailable { reason: String, shape: WireShape },
    /// The disk holding the log is full or below the low-water mark: the
    /// records were not stored; sending them again later succeeds.
    #[error("the log cannot take records right now: {reason}")]
    InsufficientStorage { reason: String, shape: WireShape },
}

impl IngestError {
    pub fn bad_body(shape: WireShape, msg: impl Into<String>) -> Self {
        IngestError::BadBody(msg.into(), shape)
    }

    fn shape(&self) -> WireShape {
        match self {
            IngestError::ContentType { .. } | IngestError::UnknownPartition { .. } | IngestError::RouteOff(_) => WireShape::RestProxy,
            IngestError::MalformedJson(_, s) | IngestError::BadBody(_, s) => *s,
            IngestError::TooLarge { shape, .. }
            | IngestError::UnknownTopic { shape, .. }
            | IngestError::Unavailable { shape, .. }
            | IngestError::InsufficientStorage { shape, .. } => *shape,
        }
    }

    /// HTTP status and REST Proxy error code.
    fn codes(&self) -> (StatusCode, u32) {
        match self {
            IngestError::ContentType { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, 415),
            IngestError::MalformedJson(..) => (StatusCode::BAD_REQUEST, 400),
            IngestError::BadBody(..) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            IngestError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, 413),
            IngestError::UnknownTopic { .. } => (StatusCode::NOT_FOUND, 40401),
            IngestError::UnknownPartition { .. } => (StatusCode::NOT_FOUND, 40402),
            IngestError::RouteOff(_) => (StatusCode::NOT_FOUND, 40403),
            IngestError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, 50301),
            IngestError::InsufficientStorage { .. } => (StatusCode::INSUFFICIENT_STORAGE, 50701),
        }
    }

    /// Kinesis answers client errors with 400 and an exception name.
    fn kinesis_type(&self) -> (StatusCode, &'static str) {
        match self {
            IngestError::UnknownTopic { .. } => (StatusCode::BAD_REQUEST, "ResourceNotFoundException"),
            // Kinesis has no 507: its clients retry a 503.
            IngestError::Unavailable { .. } | IngestError::InsufficientStorage { .. } => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            IngestError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "ValidationException"),
            IngestError::MalformedJson(..) => (StatusCode::BAD_REQUEST, "SerializationException"),
            _ => (StatusCode::BAD_REQUEST, "ValidationException"),
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self.shape() {
            WireShape::RestProxy => {
                let (status, code) = self.codes();
                let body = json!({ "error_code": code, "message": message });
                (status, [(header::CONTENT_TYPE, "application/vnd.kafka.v2+json")], body.to_string()).into_response()
            }
            WireShape::Kinesis => {
                let (status, kind) = self.kinesis_type();
                let body = json!({ "__type": kind, "message": message });
                (status, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body.to_string()).into_response()
            }
        }
    }
}
