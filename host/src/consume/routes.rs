//! The REST Proxy v2 consumer routes: parse, run the backend call off the
//! async threads, answer in the REST Proxy's media types.

use super::error::ConsumeError;
use super::wire::{self, Committed, CreateConsumer, CreatedConsumer, Offsets, Partitions, Subscription, V2};
use super::{ConsumeState, kinesis};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

pub fn router(state: Arc<ConsumeState>) -> Router {
    Router::new()
        .route("/consumers/{group}", post(create))
        .route("/consumers/{group}/instances/{instance}", axum::routing::delete(delete))
        .route("/consumers/{group}/instances/{instance}/subscription", post(subscribe).get(subscription).delete(unsubscribe))
        .route("/consumers/{group}/instances/{instance}/assignments", post(assign).get(assignments))
        .route("/consumers/{group}/instances/{instance}/records", get(records))
        .route("/consumers/{group}/instances/{instance}/offsets", post(commit).get(committed))
        .route("/consumers/{group}/instances/{instance}/positions", post(seek))
        .route("/consumers/{group}/instances/{instance}/positions/beginning", post(seek_beginning))
        .route("/consumers/{group}/instances/{instance}/positions/end", post(seek_end))
        .route("/streams/{stream}/sharditerator", get(kinesis::shard_iterator))
        .route("/streams/{stream}/records", get(kinesis::get_records))
        .with_state(state)
}

type Instance = Path<(String, String)>;

/// Run a blocking backend call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ConsumeError> + Send + 'static) -> Result<T, ConsumeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ConsumeError::Storage(format!("the consumer call failed: {e}")))?
}

fn json<T: Serialize>(body: &T) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, V2)], serde_json::to_string(body).unwrap_or_default()).into_response()
}

fn done(r: Result<(), ConsumeError>) -> Response {
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

fn answer<T: Serialize>(r: Result<T, ConsumeError>) -> Response {
    match r {
        Ok(b) => json(&b),
        Err(e) => e.into_response(),
    }
}

/// Names of groups and instances appear in URLs and in the log's keys: the log's rule for names.
fn check_name(what: &str, name: &str) -> Result<(), ConsumeError> {
    if !crate::log::valid_name(name) {
        return Err(ConsumeError::bad_body(format!("{what} `{name}` must be 1-249 of a-z A-Z 0-9 . _ -")));
    }
    Ok(())
}

async fn create(State(s): State<Arc<ConsumeState>>, Path(group): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        check_name("group", &group)?;
        let req: CreateConsumer = wire::optional_body(&body, "consumer definition")?.unwrap_or_default();
        let settings = req.settings()?;
        let instance = match req.name.clone() {
            Some(n) => n,
            None => format!("rest-consumer-{}", hex::encode(rand::random::<[u8; 8]>())),
        };
        check_name("name", &instance)?;
        let (groups, g, i) = (s.groups.clone(), group.clone(), instance.clone());
        blocking(move || groups.create(&g, &i, settings)).await?;
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        Ok(CreatedConsumer { base_uri: format!("http://{host}/consumers/{group}/instances/{instance}"), instance_id: instance })
    }
    .await;
    answer(result)
}

async fn delete(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance) -> Response {
    let groups = s.groups.clone();
    done(blocking(move || groups.delete(&g, &i)).await)
}

async fn subscribe(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance, body: Bytes) -> Response {
    let result = async {
        let to = wire::body(&body, "subscription")?;
        let groups = s.groups.clone();
        blocking(move || groups.subscribe(&g, &i, to)).await
    }
    .await;
    done(result)
}

async fn subscription(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance) -> Response {
    let groups = s.groups.clone();
    answer(blocking(move || groups.subscription(&g, &i)).await.map(|topics| Subscription { topics }))
}

async fn unsubscribe(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance) -> Response {
    let groups = s.groups.clone();
    done(blocking(move || groups.unsubscribe(&g, &i)).await)
}

async fn assign(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance, body: Bytes) -> Response {
    let result = async {
        let parts: Partitions = wire::body(&body, "assignment")?;
        let groups = s.groups.clone();
        blocking(move || groups.assign(&g, &i, parts.partitions)).await
    }
    .await;
    done(result)
}

async fn assignments(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance) -> Response {
    let groups = s.groups.clone();
    answer(blocking(move || groups.assignments(&g, &i)).await.map(|partitions| Partitions { partitions }))
}

#[derive(Deserialize)]
struct ReadParams {
    timeout: Option<u64>,
    max_bytes: Option<usize>,
}

async fn records(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance, Query(q): Query<ReadParams>, headers: HeaderMap) -> Response {
    let result = async {
        let groups = s.groups.clone();
        let (g2, i2) = (g.clone(), i.clone());
        let settings = blocking(move || groups.settings(&g2, &i2)).await?;
        settings.format.check_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))?;
        let timeout = Duration::from_millis(q.timeout.unwrap_or(s.config.request_timeout_ms).min(60_000));
        let max_bytes = q.max_bytes.unwrap_or(usize::MAX).min(s.config.max_response_bytes);
        let groups = s.groups.clone();
        let read = blocking(move || groups.read(&g, &i, timeout, max_bytes)).await?;
        let m = crate::telemetry::metrics();
        for r in &read {
            m.consume_records.with_label_values(&[&r.topic]).inc();
        }
        Ok::<_, ConsumeError>((settings.format, wire::render(&read, settings.format)?))
    }
    .await;
    match result {
        Ok((format, body)) => (StatusCode::OK, [(header::CONTENT_TYPE, format.media_type())], body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn commit(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance, body: Bytes) -> Response {
    let result = async {
        let offsets: Option<Offsets> = wire::optional_body(&body, "offsets")?;
        let groups = s.groups.clone();
        blocking(move || groups.commit(&g, &i, offsets.map(|o| o.offsets))).await
    }
    .await;
    done(result)
}

async fn committed(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance, body: Bytes) -> Response {
    let result = async {
        let parts: Partitions = wire::body(&body, "partitions")?;
        let groups = s.groups.clone();
        blocking(move || groups.committed(&g, &i, parts.partitions)).await.map(|offsets| Committed { offsets })
    }
    .await;
    answer(result)
}

async fn seek(State(s): State<Arc<ConsumeState>>, Path((g, i)): Instance, body: Bytes) -> Response {
    let result = async {
        let offsets: Offsets = wire::body(&body, "offsets")?;
        let groups = s.groups.clone();
        blocking(move || groups.seek(&g, &i, offsets.offsets)).await
    }
    .await;
    done(result)
}

async fn seek_to(s: Arc<ConsumeState>, (g, i): (String, String), body: Bytes, end: bool) -> Response {
    let result = async {
        let parts: Partitions = wire::body(&body, "partitions")?;
        let groups = s.groups.clone();
        blocking(move || groups.seek_to(&g, &i, parts.partitions, end)).await
    }
    .await;
    done(result)
}

async fn seek_beginning(State(s): State<Arc<ConsumeState>>, Path(gi): Instance, body: Bytes) -> Response {
    seek_to(s, gi, body, false).await
}

async fn seek_end(State(s): State<Arc<ConsumeState>>, Path(gi): Instance, body: Bytes) -> Response {
    seek_to(s, gi, body, true).await
}
