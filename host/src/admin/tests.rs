//! The admin API through its router, without a socket: auth on every route,
//! clear 404/409/422 answers, never a 500 for bad input.

use super::*;
use crate::pipeline::config::{PipelineConfig, TableConfig, TableFormat};
use crate::pipeline::control::AutoRollbackConfig;
use crate::pipeline::manager::FixedPipelines;
use crate::pipeline::{PipelineControl, PipelineStats};
use crate::runtime::testing::{CLEAN_PIN_MARKED_WASM, HOSTILE_WASM, REJECT_ALL_WASM};
use crate::runtime::{Runtime, SandboxLimits};
use crate::sink::SegmentSpec;
use crate::sink::{TableSpec, schema};
use crate::store::local::LocalStore;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    state: Arc<AdminState>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(SandboxLimits::default(), None).expect("runtime");
    let registry = Arc::new(Registry::open(runtime, dir.path().join("transforms")).expect("registry"));
    let config = PipelineConfig {
        name: "pin".into(),
        source: None,
        topics: vec!["t.pin".into()],
        transforms: vec!["clean-pin".into()],
        land_raw: true,
        table: Some(TableConfig { name: "pin".into(), formats: vec![TableFormat::Parquet], schema: None, columns: None, partition_by: None, delta: None }),
        batch: Default::default(),
        roll: Default::default(),
        workers: None,
        auto_rollback: AutoRollbackConfig::default(),
        aggregate: None,
        join: None,
        watermark: Default::default(),
        actions: Vec::new(),
        output: None,
    };
    let control = PipelineControl::load("pin", &config.transforms, registry.clone(), config.auto_rollback.clone(), &dir.path().join("state")).expect("control");
    let spec = SegmentSpec {
        pipeline: "pin".into(),
        land_raw: true,
        table: Some(TableSpec { name: "pin".into(), schema: schema::builtin("pin-clean"), parquet: true, jsonl: false, partition_by: None, delta: None }),
    };
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().join("landing")).expect("store"));
    let handle = PipelineHandle { config, control, stats: Arc::new(PipelineStats::default()), spec };
    let pipelines: Arc<dyn PipelineManager> = Arc::new(FixedPipelines([("pin".to_string(), handle)].into()));
    let mut jobs = crate::jobs::JobRunner::new();
    let log = crate::log::EmbeddedLog::open(&dir.path().join("log.redb"), &Default::default()).expect("log");
    jobs.register("retention", Arc::new(crate::jobs::RetentionJob(log)));
    let state = Arc::new(AdminState { registry, pipelines, store, jobs: Arc::new(jobs), log: None });
    let app = router(state.clone(), Arc::from(TOKEN)).merge(status_page(state.clone()));
    Fixture { _dir: dir, app, state }
}

/// Everything is taken by value before the future starts, so callers may pass temporaries.
fn call<B: Into<Body>>(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: B,
) -> impl std::future::Future<Output = (StatusCode, Value)> + use<B> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(body.into()).expect("request");
    let app = app.clone();
    async move {
        let resp = app.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())))
    }
}

fn message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or_default().to_owned()
}

fn concrete(path: &str) -> String {
    if path.starts_with("/api/v1/jobs") {
        return path.replace("{name}", "retention").replace("{id}", "1");
    }
    path.replace("{name}", "pin").replace("{pipeline}", "pin").replace("{stage}", "0").replace("{id}", "t.pin+0+0")
}

#[tokio::test]
async fn every_admin_route_requires_the_token() {
    let f = fixture();
    for (method, path, ..) in openapi::ROUTES {
        let m: Method = method.to_uppercase().parse().expect("method");
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let (status, body) = call(&f.app, m.clone(), &concrete(path), token, Body::empty()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // The OpenAPI document and the status page are open.
    assert_eq!(call(&f.app, Method::GET, "/api/v1/openapi.json", None, Body::empty()).await.0, StatusCode::OK);
    let (status, page) = call(&f.app, Method::GET, "/", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().is_some_and(|p| p.contains("<b>pin</b>") && p.contains("clean-pin@0.2.0")), "{page}");
}

#[tokio::test]
async fn no_request_matches_an_empty_expected_token() {
    // The start refuses empty tokens; the middleware does not rely on it.
    let f = fixture();
    let open_by_mistake = router(f.state.clone(), Arc::from(""));
    for token in [None, Some("")] {
        let (status, body) = call(&open_by_mistake, Method::GET, "/api/v1/pipelines", token, Body::empty()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
    }
}

#[tokio::test]
async fn every_documented_route_is_served_and_no_bad_input_gets_a_500() {
    let f = fixture();
    let doc = openapi::build();
    // The admin routes, and the consumer routes (served beside them; tested in consume::tests).
    let operations = doc["paths"].as_object().expect("paths").values().map(|p| p.as_object().expect("ops").len()).sum::<usize>();
    assert_eq!(operations, openapi::ROUTES.len() + crate::consume::openapi::ROUTES.len());
    for (method, path, ..) in openapi::ROUTES {
        let m: Method = method.to_uppercase().parse().expect("method");
        for body in ["", "{", "[1,2]", "\u{0}\u{1}garbage"] {
            let (status, resp) = call(&f.app, m.clone(), &concrete(path), Some(TOKEN), body.to_owned()).await;
            assert!(!status.is_server_error(), "{method} {path} body {body:?}: {status} {resp}");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
            assert!(!message(&resp).starts_with("no route for"), "{method} {path} is documented but not routed");
        }
    }
    let (status, resp) = call(&f.app, Method::GET, "/api/v1/nothing", Some(TOKEN), Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&resp).contains("openapi.json"));
}

#[tokio::test]
async fn uploads_are_validated_before_they_are_accepted() {
    let f = fixture();
    let put = |name: &str, bytes: Vec<u8>| call(&f.app, Method::PUT, &format!("/api/v1/transforms/{name}"), Some(TOKEN), bytes);

    let (s, r) = put("hostile", b"not wasm at all".to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&r).contains("not a valid WebAssembly component"), "{r}");
    let (s, r) = put("hostile", Vec::new()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&r).contains("body is empty"), "{r}");
    let (s, r) = put("hostile", b"\0asm\x0d\0\x01\0".to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&r).contains("implements none of the worlds sluice runs"), "{r}");
    let (s, r) = put("clean-geo", HOSTILE_WASM.to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&r).contains("describes itself as `hostile` but was uploaded as `clean-geo`"), "{r}");
    let (s, r) = put("Bad%20Name", HOSTILE_WASM.to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");

    let (s, r) = put("hostile", HOSTILE_WASM.to_vec()).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["version"], "0.1.0");
    let (s, _) = put("hostile", HOSTILE_WASM.to_vec()).await;
    assert_eq!(s, StatusCode::OK, "the same bytes again change nothing");
    // Same version string, different bytes (an extra custom section): a conflict.
    let mut other = HOSTILE_WASM.to_vec();
    other.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
    let (s, r) = put("hostile", other).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(message(&r).contains("version 0.1.0 of `hostile` already exists"), "{r}");

    let (s, r) = call(&f.app, Method::GET, "/api/v1/transforms/hostile", Some(TOKEN), Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["versions"].as_array().map(Vec::len), Some(1));
    let (s, r) = call(&f.app, Method::GET, "/api/v1/transforms/nope", Some(TOKEN), Body::empty()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(message(&r), "no transform named `nope`");
}

#[tokio::test]
async fn golden_samples_refuse_components_that_trap_or_disagree() {
    let f = fixture();
    let samples = |name: &str, body: Value| call(&f.app, Method::PUT, &format!("/api/v1/transforms/{name}/samples"), Some(TOKEN), body.to_string());
    // Samples for a name with no version yet; the first upload must pass them.
    let (s, r) = samples("hostile", json!([{"input": "panic", "output": ["panic"]}])).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = call(&f.app, Method::PUT, "/api/v1/transforms/hostile", Some(TOKEN), HOSTILE_WASM.to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(message(&r).starts_with("golden sample 0 failed: trap"), "{r}");
    assert!(message(&r).contains("hostile guest panicked on purpose"), "{r}");

    let pin = json!({"index": 1, "unique_id": "u", "title": "T", "follower_count": "2k", "category": "art"});
    let cleaned = json!({"ind": 1, "unique_id": "u", "title": "T", "description": null, "follower_count": 2000, "poster_name": null,
        "tag_list": null, "is_image_or_video": null, "image_src": null, "save_location": null, "category": "art"});
    let (s, r) = samples("clean-pin", json!([{"input": pin, "output": [cleaned]}, {"input": [1], "rejected": true}])).await;
    assert_eq!(s, StatusCode::OK, "the built-in passes its samples: {r}");
    let (s, r) = call(&f.app, Method::PUT, "/api/v1/transforms/clean-pin", Some(TOKEN), REJECT_ALL_WASM.to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(message(&r), "golden sample 0 failed: rejected: this build refuses everything");
    let (s, r) = call(&f.app, Method::PUT, "/api/v1/transforms/clean-pin", Some(TOKEN), CLEAN_PIN_MARKED_WASM.to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "the marked build changes unique_id: {r}");
    assert!(message(&r).contains("expected"), "{r}");

    let (s, r) = samples("clean-pin", json!({"input": 1})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&r).starts_with("samples must be a list"), "{r}");
}

#[tokio::test]
async fn activation_and_rollback_explain_every_refusal() {
    let f = fixture();
    let post = |uri: &str, body: &str| call(&f.app, Method::POST, uri, Some(TOKEN), body.to_owned());
    let (s, r) = call(&f.app, Method::PUT, "/api/v1/transforms/clean-pin", Some(TOKEN), CLEAN_PIN_MARKED_WASM.to_vec()).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");

    let cases = [
        ("/api/v1/pipelines/nope/stages/0/activate", r#"{"version":"0.2.0-marked"}"#, StatusCode::NOT_FOUND, "no pipeline named `nope` (pipelines: pin)"),
        (
            "/api/v1/pipelines/pin/stages/3/activate",
            r#"{"version":"0.2.0-marked"}"#,
            StatusCode::NOT_FOUND,
            "pipeline `pin` has 1 stage(s); there is no stage 3",
        ),
        ("/api/v1/pipelines/pin/stages/x/activate", r#"{"version":"0.2.0-marked"}"#, StatusCode::UNPROCESSABLE_ENTITY, "stage must be a number"),
        ("/api/v1/pipelines/pin/stages/0/activate", r#"{"versoin":"1"}"#, StatusCode::UNPROCESSABLE_ENTITY, "unknown field `versoin`"),
        ("/api/v1/pipelines/pin/stages/0/activate", r#"{"version":"9.9.9"}"#, StatusCode::NOT_FOUND, "transform `clean-pin` has no version 9.9.9"),
        ("/api/v1/pipelines/pin/stages/0/activate", r#"{"version":"0.2.0"}"#, StatusCode::CONFLICT, "is already active"),
        (
            "/api/v1/pipelines/pin/stages/0/activate",
            r#"{"version":"0.2.0-marked","transform":"clean-geo"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "stage 0 runs `clean-pin`",
        ),
        ("/api/v1/pipelines/pin/stages/0/rollback", "", StatusCode::CONFLICT, "no earlier version to roll back to"),
    ];
    for (uri, body, status, msg) in cases {
        let (s, r) = post(uri, body).await;
        assert_eq!(s, status, "{uri} {body}: {r}");
        assert!(message(&r).contains(msg), "{uri} {body}: {r}");
    }
    let (s, r) = post("/api/v1/pipelines/pin/stages/0/activate", r#"{"version":"0.2.0-marked"}"#).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["stages"][0]["active"]["version"], "0.2.0-marked");
    assert_eq!(f.state.pipelines.get("pin").expect("pin").control.generation(), 2);
    let (s, r) = post("/api/v1/pipelines/pin/stages/0/rollback", "").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["stages"][0]["active"]["version"], "0.2.0");
    assert_eq!(r["swap"]["reason"], "rolled back");

    let (s, r) = call(&f.app, Method::GET, "/api/v1/pipelines/pin/stages/0/shadow", Some(TOKEN), Body::empty()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(message(&r).starts_with("no shadow run on stage 0 of pipeline `pin`"), "{r}");
    let (s, r) = post("/api/v1/pipelines/pin/stages/0/shadow", r#"{"version":"0.2.0"}"#).await;
    assert_eq!(s, StatusCode::CONFLICT, "shadowing the active version compares nothing: {r}");
    let (s, r) = post("/api/v1/pipelines/pin/stages/0/shadow", r#"{"version":"0.2.0-marked"}"#).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["shadow"]["candidate"]["version"], "0.2.0-marked");
    let (s, r) = call(&f.app, Method::DELETE, "/api/v1/pipelines/pin/stages/0/shadow", Some(TOKEN), Body::empty()).await;
    assert_eq!((s, r["shadow"]["records"].as_u64()), (StatusCode::OK, Some(0)), "{r}");
    assert_eq!(call(&f.app, Method::DELETE, "/api/v1/pipelines/pin/stages/0/shadow", Some(TOKEN), Body::empty()).await.0, StatusCode::NOT_FOUND);

    let (s, r) = post("/api/v1/pipelines/pin/pause", "").await;
    assert_eq!((s, r["changed"].as_bool()), (StatusCode::OK, Some(true)));
    let (_, r) = post("/api/v1/pipelines/pin/pause", "").await;
    assert_eq!(r["changed"], false);
    let (_, r) = call(&f.app, Method::GET, "/api/v1/pipelines/pin", Some(TOKEN), Body::empty()).await;
    assert_eq!(r["paused"], true);
    assert_eq!(r["recent_swaps"].as_array().map(Vec::len), Some(2));
    let (_, r) = post("/api/v1/pipelines/pin/resume", "").await;
    assert_eq!(r["paused"], false);
}

#[tokio::test]
async fn dead_letter_routes_answer_clearly() {
    let f = fixture();
    let (s, r) = call(&f.app, Method::GET, "/api/v1/dead-letters/pin", Some(TOKEN), Body::empty()).await;
    assert_eq!((s, r["total"].as_u64()), (StatusCode::OK, Some(0)));
    let (s, r) = call(&f.app, Method::GET, "/api/v1/dead-letters/nope", Some(TOKEN), Body::empty()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    let (s, r) = call(&f.app, Method::GET, "/api/v1/dead-letters/pin/t.pin+0+7", Some(TOKEN), Body::empty()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(message(&r).contains("has no dead letter `t.pin+0+7`"), "{r}");
    let (s, r) = call(&f.app, Method::POST, "/api/v1/dead-letters/pin/replay", Some(TOKEN), r#"{"ids": 5}"#).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let (s, r) = call(&f.app, Method::GET, "/api/v1/dead-letters/pin?limit=abc", Some(TOKEN), Body::empty()).await;
    assert!(s.is_client_error(), "{s} {r}");
    let (s, r) = call(&f.app, Method::DELETE, "/api/v1/dead-letters/pin", Some(TOKEN), Body::empty()).await;
    assert_eq!((s, r["purged"].as_u64()), (StatusCode::OK, Some(0)));
}

#[tokio::test]
async fn jobs_run_on_request_and_report_their_state() {
    let f = fixture();
    let (s, r) = call(&f.app, Method::POST, "/api/v1/jobs/nope/run", Some(TOKEN), Body::empty()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(message(&r), "no job named `nope` (jobs: retention)");
    let (s, r) = call(&f.app, Method::POST, "/api/v1/jobs/retention/run", Some(TOKEN), Body::empty()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let poll = r["poll"].as_str().expect("poll url").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, r) = call(&f.app, Method::GET, &poll, Some(TOKEN), Body::empty()).await;
        assert_eq!(s, StatusCode::OK);
        if r["run"]["state"] == "succeeded" {
            assert_eq!(r["run"]["summary"], "removed 0 stored batches");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (_, r) = call(&f.app, Method::GET, "/api/v1/jobs", Some(TOKEN), Body::empty()).await;
    assert_eq!(r["jobs"][0]["name"], "retention");
    assert_eq!(r["runs"].as_array().map(Vec::len), Some(1));
    let (s, _) = call(&f.app, Method::GET, "/api/v1/jobs/runs/x", Some(TOKEN), Body::empty()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}
