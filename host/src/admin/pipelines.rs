//! `/api/v1/pipelines`: status, pause and resume, version activation and rollback.

use super::{AdminState, ApiError, parse_json, read_body};
use crate::pipeline::PipelineConfig;
use crate::pipeline::manager::PipelineHandle;
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

fn describe(name: &str, p: &PipelineHandle) -> Value {
    json!({
        "name": name,
        "topics": p.config.topics,
        "paused": p.control.is_paused(),
        "stages": p.control.status(),
        "stats": p.stats.snapshot(),
        "recent_swaps": p.control.swaps(),
        "table": p.config.table.as_ref().map(|t| &t.name),
        "land_raw": p.config.land_raw,
    })
}

pub async fn list(State(s): State<Arc<AdminState>>) -> Json<Value> {
    Json(json!({ "pipelines": s.pipelines.list().iter().map(|(n, p)| describe(n, p)).collect::<Vec<_>>() }))
}

pub async fn get_one(State(s): State<Arc<AdminState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(describe(&name, &s.pipeline(&name)?)))
}

/// A pipeline definition: the body of a `[[pipeline]]` section in TOML, or the same as JSON.
fn parse_pipeline(body: &[u8]) -> Result<PipelineConfig, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::Invalid("the pipeline definition is not UTF-8".into()))?;
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| ApiError::Invalid(format!("pipeline definition (JSON): {e}")))
    } else {
        toml::from_str(text).map_err(|e| ApiError::Invalid(format!("pipeline definition (TOML): {e}")))
    }
}

/// `POST /api/v1/pipelines` with a pipeline definition.
pub async fn create(State(s): State<Arc<AdminState>>, body: axum::body::Body) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let config = parse_pipeline(&read_body(body, 1 << 20).await?)?;
    let manager = s.pipelines.clone();
    let name = config.name.clone();
    let handle = tokio::task::spawn_blocking(move || manager.create(config)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((axum::http::StatusCode::CREATED, Json(describe(&name, &handle))))
}

/// `PUT /api/v1/pipelines/{name}` with the new definition.
pub async fn replace(State(s): State<Arc<AdminState>>, Path(name): Path<String>, body: axum::body::Body) -> Result<Json<Value>, ApiError> {
    s.pipeline(&name)?;
    let config = parse_pipeline(&read_body(body, 1 << 20).await?)?;
    if config.name != name {
        return Err(ApiError::Invalid(format!("the definition is named `{}` but was sent to `{name}`", config.name)));
    }
    let manager = s.pipelines.clone();
    let handle = tokio::task::spawn_blocking(move || manager.replace(config)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(describe(&name, &handle)))
}

/// `DELETE /api/v1/pipelines/{name}`.
pub async fn delete(State(s): State<Arc<AdminState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    s.pipeline(&name)?;
    let manager = s.pipelines.clone();
    let n = name.clone();
    tokio::task::spawn_blocking(move || manager.delete(&n)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({ "deleted": name, "note": "landed data and committed positions are kept; a pipeline created again under this name resumes from them" })))
}

pub async fn pause(State(s): State<Arc<AdminState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let changed = s.pipeline(&name)?.control.set_paused(true)?;
    Ok(Json(json!({ "name": name, "paused": true, "changed": changed })))
}

pub async fn resume(State(s): State<Arc<AdminState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let changed = s.pipeline(&name)?.control.set_paused(false)?;
    Ok(Json(json!({ "name": name, "paused": false, "changed": changed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    /// A version string (`0.2.0`) or a content hash (`sha256:…`, at least 8 hex digits).
    version: String,
    /// Optional check: the transform the stage must be running.
    #[serde(default)]
    transform: Option<String>,
}

pub async fn activate(State(s): State<Arc<AdminState>>, Path((name, stage)): Path<(String, String)>, body: axum::body::Body) -> Result<Json<Value>, ApiError> {
    let p = s.pipeline(&name)?;
    let stage = parse_stage(&stage)?;
    let req: Activate = parse_json(&read_body(body, 64 << 10).await?, "the body must be {\"version\": \"<version or sha256:hash>\"}")?;
    let control = p.control.clone();
    let event = tokio::task::spawn_blocking(move || control.activate(stage, req.transform.as_deref(), &req.version))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({ "swap": event, "stages": p.control.status() })))
}

pub async fn rollback(State(s): State<Arc<AdminState>>, Path((name, stage)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let p = s.pipeline(&name)?;
    let stage = parse_stage(&stage)?;
    let event = p.control.rollback(stage, "rolled back", None)?;
    Ok(Json(json!({ "swap": event, "stages": p.control.status() })))
}

fn parse_stage(s: &str) -> Result<usize, ApiError> {
    s.parse().map_err(|_| ApiError::Invalid(format!("stage must be a number (0 for the first transform), got `{s}`")))
}

/// `POST …/stages/{stage}/shadow` with `{"version": …}`: start a shadow run.
pub async fn shadow_start(
    State(s): State<Arc<AdminState>>,
    Path((name, stage)): Path<(String, String)>,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let p = s.pipeline(&name)?;
    let stage = parse_stage(&stage)?;
    let req: Activate = parse_json(&read_body(body, 64 << 10).await?, "the body must be {\"version\": \"<version or sha256:hash>\"}")?;
    let control = p.control.clone();
    let report = tokio::task::spawn_blocking(move || control.start_shadow(stage, &req.version)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({ "shadow": report, "note": "the candidate sees a copy of every batch of this stage; nothing it produces is landed" })))
}

fn shadow_of(p: &PipelineHandle, name: &str, stage: usize, report: Option<crate::pipeline::shadow::ShadowReport>) -> Result<Json<Value>, ApiError> {
    match report.filter(|r| r.stage == stage) {
        Some(r) => Ok(Json(json!({ "shadow": r, "agreement": r.agreement(), "paused": p.control.is_paused() }))),
        None => Err(ApiError::NotFound(format!("no shadow run on stage {stage} of pipeline `{name}`; start one with POST …/stages/{stage}/shadow"))),
    }
}

/// `GET …/stages/{stage}/shadow`: the comparison so far.
pub async fn shadow_get(State(s): State<Arc<AdminState>>, Path((name, stage)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let p = s.pipeline(&name)?;
    let stage = parse_stage(&stage)?;
    shadow_of(&p, &name, stage, p.control.shadow_report())
}

/// `DELETE …/stages/{stage}/shadow`: stop, returning the final comparison.
pub async fn shadow_stop(State(s): State<Arc<AdminState>>, Path((name, stage)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let p = s.pipeline(&name)?;
    let stage = parse_stage(&stage)?;
    if p.control.shadow_report().is_none_or(|r| r.stage != stage) {
        return shadow_of(&p, &name, stage, None);
    }
    shadow_of(&p, &name, stage, p.control.stop_shadow())
}
