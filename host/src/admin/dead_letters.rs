//! `/api/v1/dead-letters/{pipeline}`: list, fetch, replay, purge.

use super::{AdminState, ApiError, blocking, parse_json, read_body};
use crate::pipeline::dead_letters::{self, id_of};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only dead letters of this kind (`rejected`, `timeout`, `trap`, `memory_limit`, `schema`, …).
    kind: Option<String>,
    /// At most this many (default 100, at most 10000).
    limit: Option<usize>,
    /// Skip this many first.
    skip: Option<usize>,
}

pub async fn list(State(s): State<Arc<AdminState>>, Path(pipeline): Path<String>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    s.pipeline(&pipeline)?;
    let store = s.store.clone();
    let p = pipeline.clone();
    let all = blocking(move || dead_letters::list(store.as_ref(), &p).map_err(ApiError::from)).await?;
    let matching: Vec<Value> =
        all.into_iter().filter(|(_, d)| q.kind.as_ref().is_none_or(|k| *k == d.kind)).map(|(_, d)| json!({ "id": id_of(&d), "letter": d })).collect();
    let total = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(q.skip.unwrap_or(0)).take(q.limit.unwrap_or(100).min(10_000)).collect();
    Ok(Json(json!({ "pipeline": pipeline, "total": total, "dead_letters": page })))
}

pub async fn get_one(State(s): State<Arc<AdminState>>, Path((pipeline, id)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    s.pipeline(&pipeline)?;
    let store = s.store.clone();
    let p = pipeline.clone();
    let all = blocking(move || dead_letters::list(store.as_ref(), &p).map_err(ApiError::from)).await?;
    let (_, d) = all
        .into_iter()
        .find(|(_, d)| id_of(d) == id)
        .ok_or_else(|| ApiError::NotFound(format!("pipeline `{pipeline}` has no dead letter `{id}` (ids are <topic>+<partition>+<offset>)")))?;
    Ok(Json(json!({ "id": id, "letter": d })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Selection {
    /// Dead-letter ids; omitted means all of the pipeline's dead letters.
    #[serde(default)]
    ids: Option<BTreeSet<String>>,
}

async fn selection(body: axum::body::Body) -> Result<Selection, ApiError> {
    let bytes = read_body(body, 4 << 20).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Selection::default());
    }
    parse_json(&bytes, "the body must be {\"ids\": [\"<topic>+<partition>+<offset>\", …]} or empty for all")
}

pub async fn replay(State(s): State<Arc<AdminState>>, Path(pipeline): Path<String>, body: axum::body::Body) -> Result<Json<Value>, ApiError> {
    let p = s.pipeline(&pipeline)?;
    let sel = selection(body).await?;
    let (store, spec, control) = (s.store.clone(), p.spec.clone(), p.control.clone());
    let outcome = blocking(move || dead_letters::replay(store.as_ref(), &spec, &control, sel.ids.as_ref()).map_err(ApiError::from)).await?;
    tracing::info!(pipeline = %pipeline, replayed = outcome.replayed, failed_again = outcome.failed_again, "dead letters replayed");
    Ok(Json(json!({ "pipeline": pipeline, "outcome": outcome })))
}

pub async fn purge(State(s): State<Arc<AdminState>>, Path(pipeline): Path<String>, body: axum::body::Body) -> Result<Json<Value>, ApiError> {
    s.pipeline(&pipeline)?;
    let sel = selection(body).await?;
    let store = s.store.clone();
    let p = pipeline.clone();
    let removed = blocking(move || dead_letters::purge(store.as_ref(), &p, sel.ids.as_ref()).map_err(ApiError::from)).await?;
    Ok(Json(json!({ "pipeline": pipeline, "purged": removed })))
}
