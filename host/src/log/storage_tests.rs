//! The log on a disk that fills up: appends refused with a full-disk error,
//! the database reopened once space is back, nothing acknowledged lost; and
//! the low-water mark refusing new records before the disk is full.

use super::*;
use crate::store::tmpfs::Tmpfs;
use sluice_guest::BatchBuf;
use std::time::{Duration, Instant};

fn config(min_free_bytes: u64) -> EmbeddedLogConfig {
    EmbeddedLogConfig { topics: vec!["t".into()], partitions: 1, min_free_bytes, ..Default::default() }
}

/// `n` records of about 1 KiB, numbered from `first`.
fn records(first: usize, n: usize) -> BatchBuf {
    let mut b = BatchBuf::default();
    for i in first..first + n {
        b.push(format!("{{\"id\":{i},\"pad\":\"{}\"}}", "x".repeat(1000)).as_bytes(), b"", 0);
    }
    b
}

fn ids(log: &EmbeddedLog) -> Vec<u64> {
    let all = log.read("t", 0, 0, usize::MAX).expect("read");
    all.batch.as_ref().iter().map(|r| serde_json::from_slice::<serde_json::Value>(r.value).expect("json")["id"].as_u64().expect("id")).collect()
}

#[test]
fn a_full_disk_refuses_appends_and_the_log_heals_when_space_comes_back() {
    let fs = match Tmpfs::mount(16) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs here ({why}); run as root to fill a disk for real");
            return;
        }
    };
    let log = EmbeddedLog::open(&fs.path().join("log.redb"), &config(0)).expect("open");
    // Append 256 KiB at a time until the disk is full.
    let mut acked = 0;
    let refused = loop {
        match log.append_blocking("t", vec![(0, records(acked, 256))]) {
            Ok(_) => acked += 256,
            Err(e) => break e,
        }
        assert!(acked < 100_000, "a 16 MiB disk never filled");
    };
    let AppendError::NoSpace(message) = &refused else { panic!("a full disk is told apart: {refused:?}") };
    assert!(message.contains("disk holding the log is full") && message.contains("send them again"), "{message}");
    assert!(acked > 0);
    let state = log.storage();
    assert!(!state.writable, "{state:?}");
    assert!(state.problem.as_deref().is_some_and(|p| p.contains("disk is full")), "{state:?}");
    // Still full: refused again, after a reopen that cannot help.
    std::thread::sleep(db::REOPEN_EVERY);
    assert!(matches!(log.append_blocking("t", vec![(0, records(acked, 256))]), Err(AppendError::NoSpace(_))));

    fs.resize(64).expect("grow the tmpfs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let resumed = loop {
        match log.append_blocking("t", vec![(0, records(acked, 10))]) {
            Ok(bases) => break bases,
            Err(e) => assert!(Instant::now() < deadline, "the log did not heal: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(resumed, vec![acked as u64], "offsets continue where the acknowledged records end");
    assert_eq!(ids(&log), (0..acked as u64 + 10).collect::<Vec<_>>(), "every acknowledged record once, in order");
    let state = log.check_storage();
    assert!(state.writable && state.problem.is_none() && state.reopens >= 1, "{state:?}");
    // Positions and intents are written again too.
    log.commit("g", "t", 0, 5).expect("commit a position after the reopen");
    assert_eq!(log.committed("g", "t", 0).expect("read"), Some(5));
}

#[test]
fn the_low_water_mark_refuses_new_records_before_the_disk_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &config(u64::MAX)).expect("open");
    let refused = rt.block_on(log.append("t", vec![(0, records(0, 1))])).expect_err("below the mark");
    let AppendError::NoSpace(message) = &refused else { panic!("{refused:?}") };
    assert!(message.contains("[log] min_free_bytes"), "the refusal names the setting: {message}");
    let state = log.storage();
    assert!(!state.writable && state.problem.as_deref().is_some_and(|p| p.contains("[log] min_free_bytes")), "{state:?}");
    // The pipelines' own appends move records already taken in: not held back.
    assert_eq!(log.append_blocking("t", vec![(0, records(0, 1))]).expect("append"), vec![0]);
    drop(log);

    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &config(0)).expect("reopen with the check off");
    assert_eq!(rt.block_on(log.append("t", vec![(0, records(1, 1))])).expect("append"), vec![1]);
    assert!(log.storage().writable);
}
