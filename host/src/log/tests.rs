use super::*;
use crate::position::Intent;
use sluice_guest::BatchBuf;
use std::time::Duration;

fn config(topics: &[&str], partitions: u32) -> EmbeddedLogConfig {
    EmbeddedLogConfig { topics: topics.iter().map(|s| s.to_string()).collect(), partitions, ..Default::default() }
}

fn records(prefix: &str, n: usize) -> BatchBuf {
    let mut b = BatchBuf::default();
    for i in 0..n {
        b.push(format!("{{\"{prefix}\":{i}}}").as_bytes(), format!("k{i}").as_bytes(), i as i64);
    }
    b
}

fn values(f: &crate::position::Fetched) -> Vec<String> {
    f.batch.as_ref().iter().map(|r| String::from_utf8_lossy(r.value).into_owned()).collect()
}

#[test]
fn appends_get_consecutive_offsets_and_read_back_from_any_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &config(&["t"], 2)).expect("open");
    assert_eq!(log.append_blocking("t", vec![(0, records("a", 3)), (1, records("b", 2))]).expect("append"), vec![0, 0]);
    assert_eq!(log.append_blocking("t", vec![(0, records("c", 4))]).expect("append"), vec![3]);
    assert_eq!(log.end_offset("t", 0), Some(7));
    let all = log.read("t", 0, 0, 100).expect("read");
    assert_eq!(all.offsets, (0..7).collect::<Vec<u64>>());
    assert_eq!(values(&all)[3], "{\"c\":0}");
    assert_eq!(all.next_offset, 7);
    // From the middle of a stored batch, limited.
    let mid = log.read("t", 0, 2, 3).expect("read");
    assert_eq!(mid.offsets, vec![2, 3, 4]);
    assert_eq!(values(&mid), vec!["{\"a\":2}", "{\"c\":0}", "{\"c\":1}"]);
    assert_eq!(mid.batch.as_ref().get(1).key, b"k0");
    let past = log.read("t", 0, 7, 10).expect("read");
    assert!(past.offsets.is_empty() && past.next_offset == 7);
}

#[test]
fn a_large_append_is_stored_in_chunks_and_reads_across_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &config(&["t"], 1)).expect("open");
    // About 3 MiB in one append: several stored values of at most CHUNK_BYTES.
    let mut big = BatchBuf::default();
    for i in 0..6_000 {
        big.push(format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(500)).as_bytes(), format!("k{i}").as_bytes(), i);
    }
    assert_eq!(log.append_blocking("t", vec![(0, big)]).expect("append"), vec![0]);
    assert_eq!(log.end_offset("t", 0), Some(6_000));
    // Reads of odd sizes from odd offsets cross chunk boundaries and see every record once, in order.
    let mut next = 0;
    while next < 6_000 {
        let got = log.read("t", 0, next, 777).expect("read");
        assert_eq!(got.offsets, (next..(next + 777).min(6_000)).collect::<Vec<u64>>());
        for (j, offset) in got.offsets.iter().enumerate() {
            let r = got.batch.as_ref().get(j);
            assert!(r.value.starts_with(format!("{{\"i\":{offset},").as_bytes()), "record at {offset}");
            assert_eq!((r.key, r.timestamp), (format!("k{offset}").as_bytes(), *offset as i64));
        }
        next = got.next_offset;
    }
    let stored = log.stored_values();
    assert!(stored >= 12, "6,000 records of 500 bytes should be split into chunks, got {stored} stored values");
}

#[test]
fn records_positions_and_intents_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    {
        let log = EmbeddedLog::open(&path, &config(&["t"], 1)).expect("open");
        log.append_blocking("t", vec![(0, records("a", 5))]).expect("append");
        log.commit("g", "t", 0, 2).expect("commit");
        let intent = Intent::new(2, 5, vec![(2, vec!["abc".into()])]);
        log.record_intent("g", "t", 0, &intent).expect("intent");
        log.close();
    }
    let log = EmbeddedLog::open(&path, &config(&["t"], 1)).expect("reopen");
    assert_eq!(log.end_offset("t", 0), Some(5));
    let cp = log.checkpoint("g", "t", 0).expect("checkpoint");
    assert_eq!(cp.next_offset, 2);
    assert_eq!(cp.intent.expect("intent kept").end, 5);
    log.commit("g", "t", 0, 5).expect("commit");
    let cp = log.checkpoint("g", "t", 0).expect("checkpoint");
    assert_eq!((cp.next_offset, cp.intent), (5, None));
    assert_eq!(log.append_blocking("t", vec![(0, records("b", 1))]).expect("append"), vec![5]);
}

#[test]
fn unknown_topics_and_partitions_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &config(&["t"], 2)).expect("open");
    assert!(matches!(log.append_blocking("nope", vec![(0, records("a", 1))]), Err(AppendError::UnknownTopic(_))));
    let err = log.append_blocking("t", vec![(2, records("a", 1))]).unwrap_err();
    assert_eq!(err.to_string(), "partition 2 of topic `t` does not exist (it has 2)");
    log.close();
    assert!(matches!(log.append_blocking("t", vec![(0, records("a", 1))]), Err(AppendError::Closed)));
}

#[test]
fn partitions_can_grow_but_not_shrink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    EmbeddedLog::open(&path, &config(&["t"], 2)).expect("open").close();
    let err = EmbeddedLog::open(&path, &config(&["t"], 1)).err().expect("refused");
    assert!(err.to_string().contains("partitions can be added, never removed"), "{err}");
    assert_eq!(EmbeddedLog::open(&path, &config(&["t"], 4)).expect("grows").topic("t").map(|t| t.partitions), Some(4));
}

#[test]
fn concurrent_appends_are_all_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &config(&["t"], 1)).expect("open");
    std::thread::scope(|s| {
        for w in 0..8 {
            let log = &log;
            s.spawn(move || {
                for i in 0..25 {
                    log.append_blocking("t", vec![(0, records(&format!("w{w}i{i}"), 4))]).expect("append");
                }
            });
        }
    });
    let all = log.read("t", 0, 0, 10_000).expect("read");
    assert_eq!(all.offsets.len(), 8 * 25 * 4);
    let distinct: std::collections::HashSet<String> = values(&all).into_iter().collect();
    assert_eq!(distinct.len(), 8 * 25 * 4);
}

#[test]
fn readers_wake_up_when_records_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &config(&["t"], 1)).expect("open");
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            log.append_blocking("t", vec![(0, records("a", 1))]).expect("append");
        })
    };
    let started = std::time::Instant::now();
    let mut seen = 0;
    log.wait_for_any(&mut seen, Duration::from_secs(20));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(log.read("t", 0, 0, 10).expect("read").offsets, vec![0]);
    writer.join().expect("writer");
}

#[test]
fn retention_keeps_what_a_group_has_not_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EmbeddedLogConfig { retention_hours: 0.0, ..config(&["t"], 1) };
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &cfg).expect("open");
    log.append_blocking("t", vec![(0, records("a", 2))]).expect("append");
    log.append_blocking("t", vec![(0, records("b", 2))]).expect("append");
    log.commit("g", "t", 0, 2).expect("commit");
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(log.enforce_retention().expect("retention"), 1);
    let rest = log.read("t", 0, 0, 10).expect("read");
    assert_eq!(rest.offsets, vec![2, 3], "reading from a deleted offset resumes at the first kept one");
}

#[test]
fn readers_groups_do_not_hold_back_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EmbeddedLogConfig { retention_hours: 0.0, ..config(&["t"], 1) };
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &cfg).expect("open");
    log.append_blocking("t", vec![(0, records("a", 2))]).expect("append");
    log.append_blocking("t", vec![(0, records("b", 2))]).expect("append");
    log.commit("pipeline", "t", 0, 4).expect("commit");
    // An HTTP consumer group that read nothing: the records go anyway, as on Kafka.
    log.commit_positions(&format!("{}slow", super::READER_GROUP_PREFIX), &[("t", 0, 0)]).expect("commit");
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(log.enforce_retention().expect("retention"), 2);
    assert_eq!(log.start_offset("t", 0).expect("start"), 4, "nothing kept: the start is the end");
}

#[test]
fn a_marked_append_with_nothing_in_it_is_stored_now_and_only_the_mark_says_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &config(&["t"], 1)).expect("open");
    // No records (a roll that moved nothing): stored now, with its mark.
    assert!(matches!(log.append_once("t", Vec::new(), "w", 5).expect("empty"), Appended::Now(b) if b.is_empty()));
    assert_eq!(log.mark("t", "w").expect("mark"), Some(5));
    assert!(matches!(log.append_once("t", Vec::new(), "w", 5).expect("replayed"), Appended::Before), "the same position again: before");
    let mut b = BatchBuf::default();
    b.push(b"x", b"", 0);
    assert!(matches!(log.append_once("t", vec![(0, b)], "w", 9).expect("next"), Appended::Now(b) if b == vec![0]));
}
