//! `/api/v1/jobs`: run a named job now, see its state.

use super::{AdminState, ApiError};
use crate::jobs::JobError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Unknown(..) | JobError::NoRun(_) => ApiError::NotFound(e.to_string()),
            JobError::Busy(..) => ApiError::Conflict(e.to_string()),
        }
    }
}

pub async fn list(State(s): State<Arc<AdminState>>) -> Json<Value> {
    let jobs: Vec<Value> = s.jobs.jobs().into_iter().map(|(name, description)| json!({ "name": name, "description": description })).collect();
    Json(json!({ "jobs": jobs, "runs": s.jobs.runs() }))
}

/// The body, if any, is the run's parameters (e.g. what a backfill is to do).
pub async fn run(State(s): State<Arc<AdminState>>, Path(name): Path<String>, body: axum::body::Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let params: Value = if body.iter().all(u8::is_ascii_whitespace) { Value::Null } else { super::parse_json(&body, "job parameters")? };
    let run = s.jobs.start_with(&name, params)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run": run, "poll": format!("/api/v1/jobs/runs/{}", run.id) }))))
}

pub async fn get_run(State(s): State<Arc<AdminState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::Invalid(format!("a run id is a number, got `{id}`")))?;
    Ok(Json(json!({ "run": s.jobs.run_info(id)? })))
}
