use super::*;
use crate::log::EmbeddedLogConfig;
use crate::pipeline::aggregate::window::WindowState;
use crate::pipeline::watermark::SourceClock;

fn hop(log: &Arc<EmbeddedLog>, partitions: u32) -> Repartition {
    let config: AggregateConfig =
        toml::from_str("name = \"count-posts\"\ntime_field = \"timestamp\"\ngroup_by = [\"country\"]\nwindow_ms = 60000\n").expect("config");
    Repartition::new(&Hops::Embedded(log.clone()), "posts", topic_name("posts"), partitions, Keying::group(&config), &WatermarkConfig::default()).expect("hop")
}

fn keyed(rows: &[(&str, i64)]) -> Moving {
    let mut m = Moving::default();
    for (country, t) in rows {
        let key = format!("{{\"country\":\"{country}\"}}");
        let p = kafka_partition(key.as_bytes(), 4);
        m.parts.entry(p).or_default().push(b"{}", key.as_bytes(), *t);
        m.max_event_ms = Some(m.max_event_ms.map_or(*t, |x| x.max(*t)));
    }
    m
}

#[test]
fn a_roll_moves_its_records_and_a_marker_to_every_partition_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(&dir.path().join("log.redb"), &EmbeddedLogConfig::default()).expect("log");
    let mut r = hop(&log, 4);
    assert_eq!(log.topic("posts-repartition").map(|t| t.partitions), Some(4), "created with its own partition count");
    assert_eq!(r.write("posts/pin/0", 10, keyed(&[("Peru", 5), ("Chad", 9)]), None).expect("write"), 2);
    assert_eq!(r.write("posts/pin/0", 10, keyed(&[("Peru", 5), ("Chad", 9)]), None).expect("replay"), 0, "a replayed roll moves nothing twice");
    let mut records = 0;
    for p in 0..4 {
        let f = log.read("posts-repartition", p, 0, 100).expect("read");
        let batch = f.batch.as_ref();
        let last = batch.get(batch.len() - 1);
        assert_eq!(last.key, MARKER_KEY, "partition {p} ends with the roll's marker");
        let m = Marker::parse(last.value).expect("marker");
        assert_eq!((m.source.as_str(), m.max_event_ms, m.state), ("posts/pin/0", Some(9), SourceState::Active));
        records += batch.len() - 1;
    }
    assert_eq!(records, 2);
    // More partitions later is allowed; fewer is refused with the reason.
    assert!(log.ensure_topic("posts-repartition", 6).is_ok());
    let err = log.ensure_topic("posts-repartition", 2).expect_err("fewer partitions");
    assert!(format!("{err:#}").contains("never removed"), "{err:#}");
}

#[test]
fn the_watermark_is_the_least_source_not_idle_and_waits_for_silent_ones() {
    let mut s = WindowState::new("f");
    let clock = |max: Option<i64>, idle: bool| SourceClock { max_event_ms: max, idle };
    s.sources.insert("a".into(), clock(Some(100), false));
    s.sources.insert("b".into(), clock(None, false));
    assert_eq!(s.watermark_ms(), None, "b has sent nothing yet: it holds the watermark");
    s.sources.insert("b".into(), clock(Some(40), false));
    assert_eq!(s.watermark_ms(), Some(40));
    s.sources.insert("b".into(), clock(Some(40), true));
    assert_eq!(s.watermark_ms(), Some(100), "an idle source does not hold it back");
    s.sources.insert("a".into(), clock(Some(100), true));
    assert_eq!(s.watermark_ms(), Some(100), "all idle: everything sent has arrived");
}
