//! `/api/v1/transforms`: upload, list, golden samples.

use super::{AdminState, ApiError, blocking, parse_json, read_body};
use crate::runtime::registry::{GoldenSample, MAX_COMPONENT_BYTES};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn list(State(s): State<Arc<AdminState>>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for name in s.registry.names() {
        out.push(json!({ "name": name, "versions": s.registry.versions(&name)? }));
    }
    Ok(Json(json!({ "transforms": out })))
}

pub async fn get_one(State(s): State<Arc<AdminState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let versions = s.registry.versions(&name)?;
    Ok(Json(json!({ "name": name, "versions": versions, "golden_samples": s.registry.samples(&name).len() })))
}

/// `PUT /api/v1/transforms/{name}` with the component's bytes, or a SQL stage's text.
pub async fn upload(State(s): State<Arc<AdminState>>, Path(name): Path<String>, body: axum::body::Body) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = read_body(body, MAX_COMPONENT_BYTES).await?;
    if bytes.is_empty() {
        return Err(ApiError::Invalid("the request body is empty: send the component's .wasm bytes, or a SQL stage's text (`SELECT … FROM input`)".into()));
    }
    let registry = s.registry.clone();
    let before = registry.versions(&name).map(|v| v.len()).unwrap_or(0);
    let n = name.clone();
    let v = blocking(move || registry.upload(&n, &bytes).map_err(ApiError::from)).await?;
    let created = s.registry.versions(&name).map(|v| v.len()).unwrap_or(0) > before;
    tracing::info!(transform = %name, version = %v.version, hash = %v.content_hash, created, "transform uploaded");
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(json!(v))))
}

pub async fn get_samples(State(s): State<Arc<AdminState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    s.registry.versions(&name)?;
    Ok(Json(json!({ "name": name, "samples": s.registry.samples(&name) })))
}

/// `PUT /api/v1/transforms/{name}/samples` with `[{"input": …, "output": [...]}, …]`.
pub async fn put_samples(State(s): State<Arc<AdminState>>, Path(name): Path<String>, body: axum::body::Body) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, 16 << 20).await?;
    let samples: Vec<GoldenSample> = parse_json(&bytes, "samples must be a list of {\"input\": …, \"output\": [...]} or {\"input\": …, \"rejected\": true}")?;
    let registry = s.registry.clone();
    let n = name.clone();
    let count = samples.len();
    blocking(move || registry.set_samples(&n, samples).map_err(ApiError::from)).await?;
    Ok(Json(json!({ "name": name, "samples": count })))
}
