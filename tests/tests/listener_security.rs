//! The listener's guards against the real binary: a token from the
//! environment that is empty or short refuses the start, naming the variable;
//! a request without a token is refused.

use sluice_tests::{Server, free_port, refused_start};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const INGEST_TOKEN: &str = "ingest-token-0123456789";

/// A config with one topic and nothing else; `server` goes into `[server]`.
fn write_config(dir: &Path, server: &str) -> PathBuf {
    let config = dir.join("sluice.toml");
    std::fs::write(&config, format!("data_dir = \"{}\"\n[server]\n{server}\n[log]\ntopics = [\"t.events\"]\n", dir.join("data").display())).expect("config");
    config
}

#[test]
fn an_empty_or_short_token_in_the_environment_refuses_the_start_and_names_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let cases = [
        ("SLUICE_ADMIN_TOKEN", "", "SLUICE_ADMIN_TOKEN is set but empty: unset it to use the generated token in"),
        ("SLUICE_ADMIN_TOKEN", "short", "SLUICE_ADMIN_TOKEN is 5 character(s) long, shorter than the 16 a token needs"),
        ("SLUICE_INGEST_TOKEN", "", "SLUICE_INGEST_TOKEN is set but empty: unset it to use open ingest routes"),
        ("SLUICE_INGEST_TOKEN", "0123456789abcde", "SLUICE_INGEST_TOKEN is 15 character(s) long"),
    ];
    for (var, value, want) in cases {
        let stderr = refused_start(SLUICE, &config, free_port(), &[(var, value)], Duration::from_secs(30)).unwrap_or_else(|e| panic!("{var}={value:?}: {e:#}"));
        assert!(stderr.contains(want), "{var}={value:?}: stderr should contain {want:?}:\n{stderr}");
    }
    assert!(!dir.path().join("data/admin.token").exists(), "nothing was started before the refusal");
}

#[test]
fn requests_without_the_token_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "public_status_page = false");
    let server = Server::start(SLUICE, &config, free_port(), &[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN), ("SLUICE_INGEST_TOKEN", INGEST_TOKEN)]).expect("starts");
    let client = reqwest::blocking::Client::new();
    let admin = |auth: Option<&str>| {
        let mut req = client.get(format!("{}/api/v1/pipelines", server.base_url));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().expect("reachable").status().as_u16()
    };
    assert_eq!(admin(None), 401, "no Authorization header");
    assert_eq!(admin(Some("Bearer ")), 401, "an empty bearer token");
    assert_eq!(admin(Some("Bearer")), 401);
    assert_eq!(admin(Some(&format!("Bearer {INGEST_TOKEN}"))), 401, "the ingest token is not the admin token");
    assert_eq!(admin(Some(&format!("Basic {ADMIN_TOKEN}"))), 401);
    assert_eq!(admin(Some(&format!("Bearer {ADMIN_TOKEN}"))), 200);
    assert_eq!(client.get(format!("{}/", server.base_url)).send().expect("reachable").status().as_u16(), 401, "the status page is not public here");

    let produce = |auth: Option<&str>| {
        let mut req = client
            .post(format!("{}/topics/t.events", server.base_url))
            .header("content-type", "application/vnd.kafka.json.v2+json")
            .body(r#"{"records": [{"value": {"n": 1}}]}"#);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().expect("reachable").status().as_u16()
    };
    assert_eq!(produce(None), 401, "ingest without a token");
    assert_eq!(produce(Some("Bearer ")), 401);
    assert_eq!(produce(Some(&format!("Bearer {INGEST_TOKEN}"))), 200);
}
