//! `/health`, `/ready` and `/status`: what orchestrators and people poll.

use super::Launcher;
use crate::pipeline::PipelineState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// A pipeline that failed to read, land or commit this recently is `degraded`.
const DEGRADED_FOR_SECS: u64 = 30;

/// The key of `/status` that describes the embedded log rather than a
/// pipeline: pipeline names cannot contain `@`.
pub const LOG_STATUS_KEY: &str = "@log";

/// Liveness (`/health`, always 200 while serving) and readiness (`/ready`, 503
/// while degraded) share this body: per pipeline, its state and recent
/// failures; and whether the embedded log takes writes (not while its disk is
/// full or below the low-water mark: ingest would refuse every record).
fn health(launcher: &Launcher) -> serde_json::Value {
    let log = launcher.log.storage();
    let mut degraded = !log.writable;
    let mut pipelines = serde_json::Map::new();
    for (name, stats) in launcher.supervisor.stats() {
        let snap = stats.snapshot();
        let recent = stats.seconds_since_error().is_some_and(|s| s < DEGRADED_FOR_SECS);
        degraded |= recent || snap.state == PipelineState::Failed;
        pipelines.insert(
            name,
            serde_json::json!({
                "state": snap.state,
                "failing": recent,
                "last_error": if recent { snap.last_error } else { None },
            }),
        );
    }
    serde_json::json!({ "status": if degraded { "degraded" } else { "ok" }, "pipelines": pipelines, "log": log })
}

/// The routes, over the launcher's pipelines.
pub fn routes(launcher: Arc<Launcher>) -> Router {
    Router::new()
        .route("/health", {
            let launcher = launcher.clone();
            get(move || {
                let h = health(&launcher);
                async move { Json(h) }
            })
        })
        .route("/ready", {
            let launcher = launcher.clone();
            get(move || {
                let h = health(&launcher);
                let status = if h["status"] == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                async move { (status, Json(h)) }
            })
        })
        .route(
            "/status",
            get(move || {
                let mut status = serde_json::to_value(launcher.status()).unwrap_or_default();
                if let Some(map) = status.as_object_mut() {
                    map.insert(LOG_STATUS_KEY.to_owned(), serde_json::json!(launcher.log.storage()));
                }
                async move { Json(status) }
            }),
        )
}
