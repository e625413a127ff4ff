//! The OpenAPI 3 document of the admin API, built from one table of routes
//! (a test checks every documented route is served).

use axum::Json;
use serde_json::{Map, Value, json};

/// `(method, path, summary, request body, success status)` of every admin route.
pub const ROUTES: &[(&str, &str, &str, Option<&str>, u16)] = &[
    ("get", "/api/v1/transforms", "List every transform and its versions", None, 200),
    ("get", "/api/v1/transforms/{name}", "Versions of one transform", None, 200),
    (
        "put",
        "/api/v1/transforms/{name}",
        "Upload a component (.wasm bytes) or a SQL stage (its statement as text); validated before it is accepted",
        Some("application/wasm"),
        201,
    ),
    ("get", "/api/v1/transforms/{name}/samples", "Golden samples stored for a transform", None, 200),
    ("put", "/api/v1/transforms/{name}/samples", "Replace the golden samples; every stored version must pass them", Some("application/json"), 200),
    ("get", "/api/v1/pipelines", "List pipelines with status, positions, lag and active versions", None, 200),
    (
        "post",
        "/api/v1/pipelines",
        "Create and start a pipeline from a [[pipeline]] document (TOML or JSON); kept across restarts",
        Some("application/toml"),
        201,
    ),
    ("get", "/api/v1/pipelines/{name}", "One pipeline's status", None, 200),
    ("put", "/api/v1/pipelines/{name}", "Replace a pipeline created through the API; it resumes from its committed positions", Some("application/toml"), 200),
    ("delete", "/api/v1/pipelines/{name}", "Stop and remove a pipeline created through the API (landed data and positions stay)", None, 200),
    ("post", "/api/v1/pipelines/{name}/pause", "Pause: land what is in flight, then read nothing", None, 200),
    ("post", "/api/v1/pipelines/{name}/resume", "Resume a paused pipeline", None, 200),
    ("post", "/api/v1/pipelines/{name}/stages/{stage}/activate", "Activate a version on a stage, between batches", Some("application/json"), 200),
    ("post", "/api/v1/pipelines/{name}/stages/{stage}/rollback", "Return a stage to its previous version", None, 200),
    (
        "post",
        "/api/v1/pipelines/{name}/stages/{stage}/shadow",
        "Start a shadow run: a candidate version sees a copy of the stage's batches, nothing it makes is landed",
        Some("application/json"),
        200,
    ),
    ("get", "/api/v1/pipelines/{name}/stages/{stage}/shadow", "How the shadow candidate's output and refusals differ from the active version's", None, 200),
    ("delete", "/api/v1/pipelines/{name}/stages/{stage}/shadow", "Stop the shadow run; returns its final report", None, 200),
    ("get", "/api/v1/jobs", "Jobs and their recent runs", None, 200),
    (
        "post",
        "/api/v1/jobs/{name}/run",
        "Run a job now (reports, backfill, retention); an optional JSON body holds the run's parameters, e.g. for backfill {\"pipeline\": \"pin\", \"transforms\": [\"clean-pin@0.2.0\"], \"from_offset\": 0, \"to_offset\": 5000, \"partitions\": [0]}; answers with the run to poll",
        Some("application/json"),
        202,
    ),
    ("get", "/api/v1/jobs/runs/{id}", "One run: state, progress, log, summary or error", None, 200),
    ("get", "/api/v1/dead-letters/{pipeline}", "List dead letters (query: kind, limit, skip)", None, 200),
    ("delete", "/api/v1/dead-letters/{pipeline}", "Purge dead letters (body: {\"ids\": [...]}, or empty for all)", Some("application/json"), 200),
    ("post", "/api/v1/dead-letters/{pipeline}/replay", "Replay dead letters through the active versions", Some("application/json"), 200),
    ("get", "/api/v1/dead-letters/{pipeline}/{id}", "One dead letter by id (<topic>+<partition>+<offset>)", None, 200),
];

pub fn build() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, body, status) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "security": [{ "bearer": [] }],
            "responses": {
                status.to_string(): { "description": "success", "content": { "application/json": { "schema": { "type": "object" } } } },
                "401": { "$ref": "#/components/responses/Error" },
                "404": { "$ref": "#/components/responses/Error" },
                "409": { "$ref": "#/components/responses/Error" },
                "422": { "$ref": "#/components/responses/Error" },
            }
        });
        if let Some(ct) = body {
            let schema = match *ct {
                "application/wasm" => json!({ "type": "string", "format": "binary" }),
                "application/toml" => json!({ "type": "string" }),
                _ => json!({ "type": "object" }),
            };
            op["requestBody"] = json!({ "required": *ct == "application/wasm", "content": { *ct: { "schema": schema } } });
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    // Reading over HTTP is served beside the admin API, under the ingest token rules.
    paths.extend(crate::consume::openapi::paths());
    json!({
        "openapi": "3.0.3",
        "info": { "title": "sluice admin API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "ingest": { "type": "http", "scheme": "bearer", "description": "server.ingest_token, when set; else the routes are open" }
            },
            "schemas": crate::consume::openapi::schemas(),
            "responses": { "Error": {
                "description": "An error with a message saying what went wrong and what to do",
                "content": { "application/json": { "schema": {
                    "type": "object",
                    "properties": { "error": { "type": "object", "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } }
                } } }
            } }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
