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
