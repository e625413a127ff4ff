//! Talking to sluice as a client: producing over HTTP, fetching from a source.

use serde_json::Value;
use sluice::position::PartitionId;
use sluice::source::Source;
use std::time::{Duration, Instant};

/// Produce `values` to `topic` through the REST Proxy endpoint at `base`
/// (`http://host:port`); panics unless the records were stored.
pub async fn produce(base: &str, topic: &str, values: impl IntoIterator<Item = Value>) {
    let records: Vec<Value> = values.into_iter().map(|v| serde_json::json!({ "value": v })).collect();
    let resp = reqwest::Client::new()
        .post(format!("{base}/topics/{topic}"))
        .header("content-type", "application/vnd.kafka.json.v2+json")
        .body(serde_json::json!({ "records": records }).to_string())
        .send()
        .await
        .expect("ingest reachable");
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
}

/// Fetch from `offset` of `p` until the source hands out something (readers
/// pace their calls, group members join first), as `(offset, value)` pairs.
pub fn fetch_some(source: &mut dyn Source, p: &PartitionId, offset: u64, max: usize, timeout: Duration) -> Vec<(u64, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    loop {
        let fetched = source.fetch(p, offset, max).expect("fetch");
        if !fetched.offsets.is_empty() {
            let batch = fetched.batch.as_ref();
            return fetched.offsets.iter().enumerate().map(|(i, o)| (*o, batch.get(i).value.to_vec())).collect();
        }
        assert!(Instant::now() < deadline, "nothing to read from {p} at {offset}");
        source.wait(Duration::from_millis(100));
    }
}

/// The Python that runs the clients under tests/clients/: scripts/test.sh
/// installs their packages (`requests`, `deltalake`, `pyarrow`) in a venv and
/// points SLUICE_CLIENT_PYTHON at it; otherwise `python3` must have `module`.
pub fn client_python(module: &str) -> String {
    if let Ok(p) = std::env::var("SLUICE_CLIENT_PYTHON") {
        return p;
    }
    let has = std::process::Command::new("python3").args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success());
    assert!(has, "this client needs Python's `{module}`: run scripts/test.sh (it installs it), or set SLUICE_CLIENT_PYTHON");
    "python3".into()
}

/// Run `tests/clients/<script>` with `args` (and `env`) under [`client_python`];
/// what it printed, as JSON.
pub fn run_client(module: &str, script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients").join(script);
    let out = std::process::Command::new(client_python(module))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .arg(path)
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // What it printed can be long (every row read): the start says enough.
    let start: String = stdout.chars().take(2000).collect();
    assert!(out.status.success(), "{script} {args:?} failed:\n{start}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script} {args:?} printed no JSON ({e}): {start}"))
}
