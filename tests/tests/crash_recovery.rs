//! Kill the real process mid-run — by crash plans at the most delicate points
//! of a roll and by SIGKILL at a random moment — restart it, and check that
//! every acknowledged record landed exactly once, raw and cleaned.

use serde_json::json;
use sluice_tests::{Server, column, free_port, json_lines, parquet_batches};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");

struct Poster {
    client: reqwest::blocking::Client,
    next: u64,
    acked: BTreeSet<String>,
    /// Sent but not acknowledged (the process died): may or may not have been stored.
    uncertain: BTreeSet<String>,
}

impl Poster {
    /// Post one batch of 20 pins with fresh unique ids; true if acknowledged.
    fn post(&mut self, base: &str) -> bool {
        let ids: Vec<String> = (self.next..self.next + 20).map(|n| format!("id-{n:08}")).collect();
        let records: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"value": {"index": self.next + i as u64, "unique_id": id, "title": "t", "follower_count": "1k", "category": "art"}}))
            .collect();
        self.next += 20;
        let sent = self
            .client
            .post(format!("{base}/topics/t.pin"))
            .header("content-type", "application/vnd.kafka.json.v2+json")
            .body(json!({ "records": records }).to_string())
            .send();
        let ok = sent.is_ok_and(|r| r.status().is_success());
        if ok {
            self.acked.extend(ids)
        } else {
            self.uncertain.extend(ids)
        }
        ok
    }
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("sluice.toml");
    let text = sluice_tests::pin_config(&dir.join("data"), "", "batch = { max_records = 64 }\nroll = { max_records = 200, max_age_ms = 150 }");
    std::fs::write(&config, text).expect("write config");
    config
}

/// Post until the server dies by its crash plan (or give up after `max` batches).
fn post_until_crash(p: &mut Poster, server: &mut Server, max: usize) {
    for _ in 0..max {
        if !p.post(&server.base_url) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(server.wait_exit(Duration::from_secs(30)), "the crash plan never fired");
}

#[test]
fn crashes_at_every_stage_of_a_roll_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path());
    let port = free_port();
    let mut p = Poster {
        client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build()?,
        next: 0,
        acked: BTreeSet::new(),
        uncertain: BTreeSet::new(),
    };

    // Some objects of a roll visible, the commit not done.
    let mut s = Server::start(SLUICE, &config, port, &[("SLUICE_CRASH_AT", "segment.object_finished:5")])?;
    post_until_crash(&mut p, &mut s, 2000);
    // Every object of a roll visible, the commit not done.
    let mut s = Server::start(SLUICE, &config, port, &[("SLUICE_CRASH_AT", "roll.before_commit:4")])?;
    post_until_crash(&mut p, &mut s, 2000);
    // The intent recorded, no object finished.
    let mut s = Server::start(SLUICE, &config, port, &[("SLUICE_CRASH_AT", "roll.after_intent:3")])?;
    post_until_crash(&mut p, &mut s, 2000);
    // SIGKILL while records flow.
    let mut s = Server::start(SLUICE, &config, port, &[])?;
    for _ in 0..150 {
        assert!(p.post(&s.base_url));
    }
    s.kill9();
    // A clean run to the end.
    let mut s = Server::start(SLUICE, &config, port, &[])?;
    for _ in 0..50 {
        assert!(p.post(&s.base_url));
    }
    s.wait_caught_up(Duration::from_secs(60))?;
    assert!(s.terminate()?, "SIGTERM should stop sluice cleanly");

    let landing = dir.path().join("data/landing");
    let raw: Vec<String> = json_lines(&landing.join("topics/t.pin")).iter().map(|v| v["unique_id"].as_str().expect("id").to_owned()).collect();
    let table: Vec<String> = column(&parquet_batches(&landing.join("tables/pin")), "unique_id").iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    assert!(json_lines(&landing.join("dead-letters")).is_empty());
    for (what, ids) in [("raw", &raw), ("table", &table)] {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for id in ids.iter() {
            *counts.entry(id).or_default() += 1;
        }
        let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dupes.is_empty(), "{what}: landed twice: {dupes:?}");
        let missing: Vec<_> = p.acked.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
        assert!(missing.is_empty(), "{what}: acknowledged but lost: {} e.g. {:?}", missing.len(), missing.first());
        let strangers: Vec<_> = counts.keys().filter(|id| !p.acked.contains(**id) && !p.uncertain.contains(**id)).collect();
        assert!(strangers.is_empty(), "{what}: never sent: {strangers:?}");
    }
    let raw_set: BTreeSet<&String> = raw.iter().collect();
    let table_set: BTreeSet<&String> = table.iter().collect();
    assert_eq!(raw_set, table_set, "raw and cleaned hold the same records");
    assert!(p.acked.len() >= 200 * 20, "the test posted too little to mean anything: {}", p.acked.len());
    Ok(())
}
