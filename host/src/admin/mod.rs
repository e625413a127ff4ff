//! The admin API (`/api/v1/…`): transforms, pipelines, dead letters; its
//! OpenAPI document; and the status page at `/`. Every `/api/v1` route but the
//! OpenAPI document needs the admin bearer token.

mod auth;
mod dead_letters;
mod error;
mod jobs;
pub mod openapi;
mod page;
mod pipelines;
mod transforms;

pub use auth::{require_token, token_matches};
pub use error::ApiError;

use crate::pipeline::manager::{PipelineHandle, PipelineManager};
use crate::runtime::registry::Registry;
use crate::store::ObjectStore;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;

pub struct AdminState {
    pub registry: Arc<Registry>,
    pub pipelines: Arc<dyn PipelineManager>,
    pub store: Arc<dyn ObjectStore>,
    pub jobs: Arc<crate::jobs::JobRunner>,
    /// The embedded log, whose disk the status page shows (none where only the API is tested).
    pub log: Option<Arc<crate::log::EmbeddedLog>>,
}

impl AdminState {
    fn pipeline(&self, name: &str) -> Result<PipelineHandle, ApiError> {
        self.pipelines.get(name).ok_or_else(|| {
            let known: Vec<String> = self.pipelines.list().into_iter().map(|(n, _)| n).collect();
            ApiError::NotFound(format!("no pipeline named `{name}` (pipelines: {})", known.join(", ")))
        })
    }
}

/// The `/api/v1` routes, behind the token.
pub fn router(state: Arc<AdminState>, token: Arc<str>) -> Router {
    let protected = Router::new()
        .route("/api/v1/transforms", get(transforms::list))
        .route("/api/v1/transforms/{name}", get(transforms::get_one).put(transforms::upload))
        .route("/api/v1/transforms/{name}/samples", get(transforms::get_samples).put(transforms::put_samples))
        .route("/api/v1/pipelines", get(pipelines::list).post(pipelines::create))
        .route("/api/v1/pipelines/{name}", get(pipelines::get_one).put(pipelines::replace).delete(pipelines::delete))
        .route("/api/v1/pipelines/{name}/pause", post(pipelines::pause))
        .route("/api/v1/pipelines/{name}/resume", post(pipelines::resume))
        .route("/api/v1/pipelines/{name}/stages/{stage}/activate", post(pipelines::activate))
        .route("/api/v1/pipelines/{name}/stages/{stage}/rollback", post(pipelines::rollback))
        .route("/api/v1/pipelines/{name}/stages/{stage}/shadow", post(pipelines::shadow_start).get(pipelines::shadow_get).delete(pipelines::shadow_stop))
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/jobs/{name}/run", post(jobs::run))
        .route("/api/v1/jobs/runs/{id}", get(jobs::get_run))
        .route("/api/v1/dead-letters/{pipeline}", get(dead_letters::list).delete(dead_letters::purge))
        .route("/api/v1/dead-letters/{pipeline}/replay", post(dead_letters::replay))
        .route("/api/v1/dead-letters/{pipeline}/{id}", get(dead_letters::get_one))
        .layer(axum::middleware::from_fn_with_state(token, auth::require_token))
        .with_state(state);
    Router::new().route("/api/v1/openapi.json", get(openapi::document)).merge(protected).fallback(not_found)
}

/// The status page, for people.
pub fn status_page(state: Arc<AdminState>) -> Router {
    Router::new().route("/", get(page::render)).route("/reports", get(page::reports)).with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}; see /api/v1/openapi.json", uri.path()))
}

/// Read a JSON body, answering malformed ones with a 422 that says why.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Invalid(format!("{what}: {e}")))
}

/// Read a body of at most `limit` bytes.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            ApiError::TooLarge(format!("request body larger than {limit} bytes"))
        } else {
            ApiError::Invalid(format!("could not read the request body: {e}"))
        }
    })
}

/// Run blocking work (compiling components, file I/O) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
}

#[cfg(test)]
mod tests;
