//! The data dir on a small tmpfs, filled by a posting client until the disk is
//! full (or below the low-water mark), then grown: the real process refuses
//! records with 507 meanwhile (and says so on /ready, /status and /metrics),
//! takes them again by itself once there is space — no restart — and every
//! acknowledged record lands raw and in the table exactly once.

use serde_json::{Value, json};
use sluice_tests::{Server, Tmpfs, column, free_port, json_lines, parquet_batches, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
/// The disk at first, and after it is grown.
const SMALL_MIB: u64 = 48;
const LARGE_MIB: u64 = 256;

struct Poster {
    client: reqwest::blocking::Client,
    base: String,
    next: u64,
    acked: BTreeSet<String>,
    /// Sent but not acknowledged: may or may not have been stored.
    uncertain: BTreeSet<String>,
    /// The last refusal: status and body.
    refusal: Option<(u16, Value)>,
}

impl Poster {
    /// Post 100 pins of about 2 KiB with fresh ids; true if acknowledged.
    fn post(&mut self) -> bool {
        let ids: Vec<String> = (self.next..self.next + 100).map(|n| format!("id-{n:08}")).collect();
        let pad = "d".repeat(2000);
        let records: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"value": {"index": self.next + i as u64, "unique_id": id, "title": "t", "description": pad, "follower_count": "1k", "category": "art"}}))
            .collect();
        self.next += 100;
        let sent = self
            .client
            .post(format!("{}/topics/t.pin", self.base))
            .header("content-type", "application/vnd.kafka.json.v2+json")
            .body(json!({ "records": records }).to_string())
            .send();
        match sent {
            Ok(r) if r.status().is_success() => {
                self.acked.extend(ids);
                true
            }
            Ok(r) => {
                let status = r.status().as_u16();
                self.refusal = Some((status, r.json().unwrap_or_default()));
                self.uncertain.extend(ids);
                false
            }
            Err(_) => {
                self.uncertain.extend(ids);
                false
            }
        }
    }
}

fn get(url: &str) -> (u16, Value) {
    let r = reqwest::blocking::get(url).expect("sluice answers");
    (r.status().as_u16(), r.json().unwrap_or_default())
}

/// A tmpfs of `mib` MiB, or `None` (the test skips, saying why) where mounting is not permitted.
fn small_disk(mib: u64) -> Option<Tmpfs> {
    Tmpfs::mount(mib).map_err(|why| eprintln!("skipped: this test fills a small tmpfs, and mounting one is not permitted here ({why}); run it as root")).ok()
}

/// Start sluice with its data dir on `fs` and `[log] min_free_bytes = min_free`.
fn start_on(fs: &Tmpfs, min_free: u64) -> anyhow::Result<(Server, Poster)> {
    let config = fs.path().join("sluice.toml");
    let text = sluice_tests::pin_config(&fs.path().join("data"), "", "batch = { max_records = 100 }\nroll = { max_records = 500, max_age_ms = 200 }");
    let text = text.replacen("partitions = 3\n", &format!("partitions = 3\nmin_free_bytes = {min_free}\n"), 1);
    assert!(text.contains("min_free_bytes"), "{text}");
    std::fs::write(&config, text)?;
    let server = Server::start(SLUICE, &config, free_port(), &[])?;
    let poster = Poster {
        client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build()?,
        base: server.base_url.clone(),
        next: 0,
        acked: BTreeSet::new(),
        uncertain: BTreeSet::new(),
        refusal: None,
    };
    Ok((server, poster))
}

/// Post until ingest refuses; the refusal must be a 507.
fn post_until_refused(p: &mut Poster, disk_mib: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    while p.post() {
        assert!(Instant::now() < deadline, "the {disk_mib} MiB disk never filled ({} records acknowledged)", p.acked.len());
    }
    let (status, body) = p.refusal.clone().expect("a refusal");
    assert_eq!(status, 507, "a full disk is 507 Insufficient Storage: {body}");
    body
}

/// Every acknowledged record landed raw and in the table exactly once, and nothing that was never sent.
fn assert_landed_exactly_once(fs: &Tmpfs, p: &Poster) {
    let landing = fs.path().join("data/landing");
    let raw: Vec<String> = json_lines(&landing.join("topics/t.pin")).iter().map(|v| v["unique_id"].as_str().expect("id").to_owned()).collect();
    let table: Vec<String> = column(&parquet_batches(&landing.join("tables/pin")), "unique_id").iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    assert!(json_lines(&landing.join("dead-letters")).is_empty());
    for (what, ids) in [("raw", &raw), ("table", &table)] {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for id in ids.iter() {
            *counts.entry(id).or_default() += 1;
        }
        let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dupes.is_empty(), "{what}: landed twice: {} e.g. {:?}", dupes.len(), dupes.first());
        let missing: Vec<_> = p.acked.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
        assert!(missing.is_empty(), "{what}: acknowledged but lost: {} e.g. {:?}", missing.len(), missing.first());
        let strangers: Vec<_> = counts.keys().filter(|id| !p.acked.contains(**id) && !p.uncertain.contains(**id)).collect();
        assert!(strangers.is_empty(), "{what}: never sent: {strangers:?}");
    }
}

#[test]
fn a_full_disk_refuses_ingest_and_heals_without_a_restart_losing_nothing() -> anyhow::Result<()> {
    let Some(fs) = small_disk(SMALL_MIB) else { return Ok(()) };
    // min_free_bytes = 0: no low-water mark, so the disk fills for real and the log's database sees ENOSPC.
    let (server, mut p) = start_on(&fs, 0)?;
    let base = server.base_url.clone();

    // Fill the disk: post until ingest refuses.
    let body = post_until_refused(&mut p, SMALL_MIB);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("full") || m.contains("space")), "the message says the disk is full: {body}");
    let filled_with = p.acked.len();
    assert!(filled_with >= 2_000, "too few records to fill the disk: {filled_with}");

    // While it stays full: refused, and every status surface says so.
    let (ready, health) = get(&format!("{base}/ready"));
    assert_eq!(ready, 503, "/ready is false while the log cannot write: {health}");
    assert_eq!(health["log"]["writable"], false, "{health}");
    let (_, status) = get(&format!("{base}/status"));
    assert_eq!(status["@log"]["writable"], false, "{status}");
    assert!(status["@log"]["problem"].as_str().is_some_and(|m| !m.is_empty()), "{status}");
    let page = reqwest::blocking::get(format!("{base}/"))?.text()?;
    assert!(page.contains("Embedded log") && page.contains("<td class=bad>no</td>"), "the status page says the log takes no records");
    let metrics = reqwest::blocking::get(format!("{base}/metrics"))?.text()?;
    assert!(metrics.lines().any(|l| l == "sluice_log_writable 0"), "sluice_log_writable is 0 while full");
    // The log's file may still have pages free inside, but the disk does not
    // take records (nor land them) until enough space is back.
    for _ in 0..5 {
        assert!(!p.post(), "nothing is taken while the disk is full");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, body) = p.refusal.clone().expect("a refusal");
    assert_eq!(status, 507, "{body}");

    // Space comes back: ingest resumes by itself, the same process.
    fs.resize(LARGE_MIB).map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.post() {
        assert!(Instant::now() < deadline, "ingest did not resume after the disk grew: {:?}", p.refusal);
        std::thread::sleep(Duration::from_millis(250));
    }
    for _ in 0..30 {
        assert!(p.post(), "ingest keeps taking records: {:?}", p.refusal);
    }
    let status = server.wait_caught_up(Duration::from_secs(120))?;
    assert_eq!(status["@log"]["writable"], true, "{status}");
    assert!(status["@log"]["reopens"].as_u64() >= Some(1), "the log was reopened, not restarted: {status}");
    // Ready again once the pipeline's last landing failure is older than the 30 s that mark it failing.
    wait_until("/ready answers 200 again", Duration::from_secs(60), || get(&format!("{base}/ready")).0 == 200);
    let mut server = server;
    assert!(server.terminate()?, "SIGTERM stops sluice cleanly");
    assert_landed_exactly_once(&fs, &p);
    assert!(p.acked.len() > filled_with, "records were taken after the disk grew");
    Ok(())
}

#[test]
fn the_low_water_mark_refuses_ingest_before_the_disk_is_full() -> anyhow::Result<()> {
    let Some(fs) = small_disk(SMALL_MIB) else { return Ok(()) };
    // 20 MiB of the 48 kept free: ingest stops with room left for the landing and the log's own writes.
    let (server, mut p) = start_on(&fs, 20 << 20)?;
    let base = server.base_url.clone();
    let body = post_until_refused(&mut p, SMALL_MIB);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("[log] min_free_bytes = 20 MiB")), "the refusal names the setting: {body}");
    let (ready, health) = get(&format!("{base}/ready"));
    assert_eq!(ready, 503, "{health}");
    // Below the mark the pipeline still lands what was taken: the disk never filled.
    let status = server.wait_caught_up(Duration::from_secs(120))?;
    assert_eq!(status["@log"]["reopens"], 0, "the log never hit a full disk: {status}");
    assert_eq!(status["pin"]["errors"], 0, "nor did the landing: {status}");

    fs.resize(LARGE_MIB).map_err(anyhow::Error::msg)?;
    wait_until("ingest takes records again", Duration::from_secs(30), || p.post());
    for _ in 0..10 {
        assert!(p.post(), "ingest keeps taking records: {:?}", p.refusal);
    }
    server.wait_caught_up(Duration::from_secs(120))?;
    assert_eq!(get(&format!("{base}/ready")).0, 200, "ready again");
    let mut server = server;
    assert!(server.terminate()?, "SIGTERM stops sluice cleanly");
    assert_landed_exactly_once(&fs, &p);
    Ok(())
}
