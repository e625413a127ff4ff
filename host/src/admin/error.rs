//! Admin API errors, turned into HTTP responses in one place.

use crate::pipeline::control::ControlError;
use crate::pipeline::manager::ManageError;
use crate::runtime::registry::RegistryError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token: send `Authorization: Bearer <token>` (server.admin_token or SLUICE_ADMIN_TOKEN)")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "admin API failure");
        }
        let mut resp = (status, Json(json!({ "error": { "code": code, "message": self.to_string() } }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let msg = e.to_string();
        match e {
            RegistryError::UnknownName(_) | RegistryError::UnknownVersion { .. } => ApiError::NotFound(msg),
            RegistryError::VersionConflict { .. } | RegistryError::KindMismatch { .. } | RegistryError::StateIncompatible { .. } => ApiError::Conflict(msg),
            RegistryError::TooLarge { .. } => ApiError::TooLarge(msg),
            RegistryError::Storage(_) => ApiError::Internal(msg),
            RegistryError::Invalid(_) | RegistryError::NameMismatch { .. } | RegistryError::GoldenSample { .. } | RegistryError::BadName(_) => {
                ApiError::Invalid(msg)
            }
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let msg = e.to_string();
        match e {
            ControlError::NoStage { .. } => ApiError::NotFound(msg),
            ControlError::WrongTransform { .. } => ApiError::Invalid(msg),
            ControlError::NothingToRollBack { .. }
            | ControlError::AlreadyActive(_)
            | ControlError::StateIncompatible { .. }
            | ControlError::JoinChanged { .. } => ApiError::Conflict(msg),
            ControlError::Registry(r) => r.into(),
            ControlError::Storage(_) => ApiError::Internal(msg),
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::NotFound(m) => ApiError::NotFound(m),
            ManageError::Conflict(m) => ApiError::Conflict(m),
            ManageError::Invalid(m) => ApiError::Invalid(m),
            ManageError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Internal(format!("storage: {e}"))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(format!("{e:#}"))
    }
}
