//! The window engine with the real `count-posts` and `follower-percentiles`
//! components, checked against sums computed here without them.

use super::WindowOutput;
use super::config::{AggregateConfig, LatePolicy};
use super::window::{WindowError, WindowRules, WindowState, Windows};
use crate::pipeline::watermark::MARKER_KEY;
use crate::runtime::{AggregateInstance, Runtime, SandboxLimits};
use serde_json::{Value, json};
use sluice_guest::BatchBuf;
use std::collections::{BTreeMap, BTreeSet};

const MIN: i64 = 60_000;

fn runtime() -> Runtime {
    Runtime::new(SandboxLimits::default(), None).expect("runtime")
}

fn instance(rt: &Runtime, name: &str) -> AggregateInstance {
    rt.load_builtin(name).expect("builtin").aggregate_instance().expect("an aggregate")
}

fn config(window_ms: u64, slide_ms: Option<u64>, lateness: u64, late: LatePolicy) -> AggregateConfig {
    AggregateConfig {
        name: "count-posts".into(),
        time_field: "timestamp".into(),
        group_by: vec!["country".into(), "category".into()],
        window_ms,
        slide_ms,
        allowed_lateness_ms: lateness,
        late,
        update_for_ms: None,
        max_state_bytes: 64 << 20,
        partitions: None,
    }
}

/// Posts with event times mostly rising, jittered up to `jitter` ms backwards.
fn posts(n: i64, jitter: i64) -> Vec<Value> {
    let mut seed = 42u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as i64
    };
    let countries = ["Albania", "France", "Peru"];
    let categories = ["art", "travel", "diy-and-crafts", "quotes"];
    (0..n)
        .map(|i| {
            let t = 1_600_000_000_000 + i * 1_000 - next() % (jitter + 1);
            // Resent rows (same ind) are normal: the emulator does it.
            let ind = if i % 10 == 9 { i - 1 } else { i };
            json!({"ind": ind, "country": countries[(next() % 3) as usize], "category": categories[(next() % 4) as usize], "timestamp": t})
        })
        .collect()
}

/// `records` as the router moves them from one source partition: keyed by
/// group key, the event time as timestamp, each followed by its source's
/// marker (the watermark as one input partition moves it). Returns the batch,
/// the input index of each of its entries, and the records the router refuses.
fn routed(rules: &WindowRules, records: &[Value], first: u32) -> (BatchBuf, Vec<u32>, Vec<(u32, &'static str)>) {
    let (mut b, mut index, mut refused) = (BatchBuf::default(), Vec::new(), Vec::new());
    for (i, r) in records.iter().enumerate() {
        let value = r.to_string();
        match rules.time_and_key(value.as_bytes()) {
            Ok((t, key)) => {
                b.push(value.as_bytes(), &key, t);
                let marker = json!({"source": "s/t/0", "max_event_ms": t, "state": "active"}).to_string();
                b.push(marker.as_bytes(), MARKER_KEY, t);
                index.extend([first + i as u32; 2]);
            }
            Err(_) => refused.push((first + i as u32, "no_event_time")),
        }
    }
    (b, index, refused)
}

struct Run {
    rows: Vec<Value>,
    failures: Vec<(u32, &'static str)>,
    state: WindowState,
}

/// Feed `records` in batches of `batch_size`, carrying `state` (a fresh one if `None`).
fn run(rt: &Runtime, name: &str, c: &AggregateConfig, records: &[Value], batch_size: usize, state: Option<WindowState>) -> Result<Run, WindowError> {
    run_compiled(&rt.load_builtin(name).expect("builtin"), c, records, batch_size, state)
}

/// [`run`] with any aggregate: a component or a windowed SQL statement.
fn run_compiled(
    compiled: &std::sync::Arc<crate::runtime::CompiledTransform>,
    c: &AggregateConfig,
    records: &[Value],
    batch_size: usize,
    state: Option<WindowState>,
) -> Result<Run, WindowError> {
    let rules = WindowRules::new(c);
    let name = compiled.descriptor().name.as_str();
    let mut agg = compiled.aggregate_instance().expect("an aggregate");
    let mut state = state.unwrap_or_else(|| WindowState::new(&compiled.descriptor().state_format.clone().expect("format")));
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (n, chunk) in records.chunks(batch_size).enumerate() {
        let (batch, index, refused) = routed(&rules, chunk, (n * batch_size) as u32);
        let out: WindowOutput = Windows { rules: &rules, state: &mut state, agg: &mut agg, name }.process(&batch.as_ref())?;
        rows.extend(out.rows.as_ref().iter().map(|r| serde_json::from_slice::<Value>(r.value).expect("row is JSON")));
        failures.extend(out.failures.iter().map(|f| (index[f.index as usize], f.kind)));
        failures.extend(refused);
        failures.sort_unstable();
    }
    Ok(Run { rows, failures, state })
}

fn iso(ms: i64) -> String {
    let mut s = String::new();
    sluice_guest::time::format_rfc3339_ms(ms, &mut s);
    s
}

/// Distinct posts per (window, country, category), computed directly: every
/// window that contains a record's time, for windows ending at or before `closed`.
fn expected_counts(records: &[Value], size: i64, slide: i64, closed: i64) -> BTreeSet<(String, String, String, i64)> {
    let mut ids: BTreeMap<(i64, String, String), BTreeSet<i64>> = BTreeMap::new();
    for r in records {
        let t = r["timestamp"].as_i64().expect("ms");
        let first_end = t.div_euclid(slide) * slide + slide;
        for end in (first_end..first_end + size).step_by(slide as usize) {
            if end <= closed {
                let key = (end, r["country"].as_str().expect("c").to_owned(), r["category"].as_str().expect("k").to_owned());
                ids.entry(key).or_default().insert(r["ind"].as_i64().expect("ind"));
            }
        }
    }
    ids.into_iter().map(|((end, c, k), s)| (iso(end - size), c, k, s.len() as i64)).collect()
}

fn got_counts(rows: &[Value]) -> BTreeSet<(String, String, String, i64)> {
    rows.iter()
        .map(|r| {
            assert_eq!(r["revision"], 0, "{r}");
            (
                r["window_start"].as_str().expect("start").to_owned(),
                r["country"].as_str().expect("c").to_owned(),
                r["category"].as_str().expect("k").to_owned(),
                r["post_count"].as_i64().expect("n"),
            )
        })
        .collect()
}

fn closed_until(records: &[Value], lateness: i64, slide: i64) -> i64 {
    let max = records.iter().map(|r| r["timestamp"].as_i64().expect("ms")).max().expect("records");
    (max - lateness).div_euclid(slide) * slide
}

#[test]
fn tumbling_windows_equal_a_direct_count_and_each_is_emitted_once() {
    let rt = runtime();
    let records = posts(2_000, 0);
    let c = config(5 * MIN as u64, None, 0, LatePolicy::DeadLetter);
    let r = run(&rt, "count-posts", &c, &records, 256, None).expect("run");
    assert!(r.failures.is_empty());
    let want = expected_counts(&records, 5 * MIN, 5 * MIN, closed_until(&records, 0, 5 * MIN));
    assert_eq!(got_counts(&r.rows), want);
    assert_eq!(r.rows.len(), want.len(), "a (window, key) row was emitted twice");
    assert!(want.len() > 20, "the test data spans several windows");
}

#[test]
fn sliding_windows_out_of_order_input_and_any_batch_size_give_the_same_rows() {
    let rt = runtime();
    let (size, slide, lateness) = (4 * MIN, MIN, 30_000);
    let records = posts(1_500, 20_000);
    let c = config(size as u64, Some(slide as u64), lateness as u64, LatePolicy::DeadLetter);
    let whole = run(&rt, "count-posts", &c, &records, 4096, None).expect("run");
    assert!(whole.failures.is_empty(), "jitter is within the allowed lateness: {:?}", &whole.failures[..whole.failures.len().min(3)]);
    assert_eq!(got_counts(&whole.rows), expected_counts(&records, size, slide, closed_until(&records, lateness, slide)));
    for batch_size in [1, 7, 333] {
        let other = run(&rt, "count-posts", &c, &records, batch_size, None).expect("run");
        assert_eq!(other.rows, whole.rows, "batch size {batch_size}");
        assert_eq!(other.state, whole.state);
    }
}

#[test]
fn state_carried_through_a_checkpoint_continues_the_same_windows() {
    let rt = runtime();
    let records = posts(1_200, 5_000);
    let c = config(3 * MIN as u64, None, 10_000, LatePolicy::DeadLetter);
    let whole = run(&rt, "count-posts", &c, &records, 100, None).expect("run");
    let first = run(&rt, "count-posts", &c, &records[..517], 100, None).expect("run");
    let saved: WindowState = serde_json::from_slice(&serde_json::to_vec(&first.state).expect("json")).expect("parse");
    let rest = run(&rt, "count-posts", &c, &records[517..], 100, Some(saved)).expect("run");
    let mut both = first.rows;
    both.extend(rest.rows);
    assert_eq!(both, whole.rows);
}

#[test]
fn late_records_go_to_dead_letters_or_update_their_window_as_configured() {
    let rt = runtime();
    let base = 1_600_000_000_000i64 - 1_600_000_000_000i64 % (5 * MIN);
    let rec = |ind: i64, t: i64| json!({"ind": ind, "country": "Peru", "category": "art", "timestamp": t});
    // Window [base, base+5m) gets 2 posts; a record 6 minutes later closes it
    // (lateness 30 s); then one more for the first window arrives.
    let records =
        vec![rec(1, base + 1_000), rec(2, base + 2_000), rec(3, base + 6 * MIN), rec(4, base + 3_000), rec(5, base + 5 * MIN + 10), json!({"ind": 6})];

    let dl = run(&rt, "count-posts", &config(5 * MIN as u64, None, 30_000, LatePolicy::DeadLetter), &records, 10, None).expect("run");
    assert_eq!(dl.failures, vec![(3, "late"), (5, "no_event_time")]);
    assert_eq!(dl.rows.len(), 1);
    assert_eq!(dl.rows[0]["post_count"], 2);

    let up = run(&rt, "count-posts", &config(5 * MIN as u64, None, 30_000, LatePolicy::Update), &records, 10, None).expect("run");
    assert_eq!(up.failures, vec![(5, "no_event_time")]);
    let revisions: Vec<(i64, i64)> = up.rows.iter().map(|r| (r["revision"].as_i64().expect("rev"), r["post_count"].as_i64().expect("n"))).collect();
    assert_eq!(revisions, vec![(0, 2), (1, 3)]);
    // Record 5 is in the still-open second window, not late.
    assert!(up.rows.iter().all(|r| r["window_start"] == iso(base)));
}

#[test]
fn follower_percentiles_per_age_group_match_a_direct_computation() {
    let rt = runtime();
    let mut c = config(10 * MIN as u64, None, 0, LatePolicy::DeadLetter);
    c.name = "follower-percentiles".into();
    c.group_by = Vec::new();
    let records: Vec<Value> = (0..600i64)
        .map(|i| json!({"ind": i, "age": 18 + (i * 7) % 45, "follower_count": (i * 7919) % 10_000, "timestamp": 1_600_000_000_000i64 + i * 2_000}))
        .collect();
    let r = run(&rt, "follower-percentiles", &c, &records, 128, None).expect("run");
    let closed = closed_until(&records, 0, 10 * MIN);
    let mut groups: BTreeMap<(i64, &str), Vec<i64>> = BTreeMap::new();
    for rec in &records {
        let t = rec["timestamp"].as_i64().expect("t");
        let start = t.div_euclid(10 * MIN) * 10 * MIN;
        if start + 10 * MIN > closed {
            continue;
        }
        let group = match rec["age"].as_i64().expect("age") {
            18..=24 => "18-24",
            25..=35 => "25-35",
            36..=50 => "36-50",
            _ => "50+",
        };
        groups.entry((start, group)).or_default().push(rec["follower_count"].as_i64().expect("n"));
    }
    let want: Vec<Value> = groups
        .into_iter()
        .map(|((start, group), mut v)| {
            v.sort_unstable();
            let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).max(1) - 1];
            json!({"window_start": iso(start), "window_end": iso(start + 10 * MIN), "revision": 0, "age_group": group,
                   "post_count": v.len(), "follower_count_p50": at(0.5), "follower_count_p90": at(0.9), "follower_count_p99": at(0.99)})
        })
        .collect();
    assert_eq!(r.rows, want);
}

#[test]
fn state_past_the_budget_is_an_error_not_growth() {
    let rt = runtime();
    let mut c = config(60 * MIN as u64, None, 0, LatePolicy::DeadLetter);
    c.max_state_bytes = 2_000;
    match run(&rt, "count-posts", &c, &posts(500, 0), 50, None) {
        Err(WindowError::OverBudget { held, budget }) => assert!(held > budget && budget == 2_000),
        other => panic!("expected the budget error, got {:?}", other.map(|r| r.rows.len())),
    }
}

/// Windows over records of three source partitions interleaved in one
/// repartition partition: a window closes only when every source that is not
/// idle has passed it; a quiet source stops holding it back once it says so;
/// `closing` from sources that are all idle closes the rest.
#[test]
fn windows_close_on_the_least_source_an_idle_one_is_skipped_and_closing_ends_them() {
    let rt = runtime();
    let c = config(MIN as u64, None, 0, LatePolicy::DeadLetter);
    let rules = WindowRules::new(&c);
    let mut agg = instance(&rt, "count-posts");
    let mut state = WindowState::new(&rt.load_builtin("count-posts").expect("builtin").descriptor().state_format.clone().expect("format"));
    let base = 1_600_000_000_000i64 - 1_600_000_000_000i64 % MIN;
    let mut b = BatchBuf::default();
    let marker = |b: &mut BatchBuf, source: &str, max: Option<i64>, state: &str| {
        b.push(json!({"source": source, "max_event_ms": max, "state": state}).to_string().as_bytes(), MARKER_KEY, 0);
    };
    let post = |b: &mut BatchBuf, ind: i64, t: i64| {
        let v = json!({"ind": ind, "country": "Peru", "category": "art", "timestamp": t}).to_string();
        b.push(v.as_bytes(), br#"{"country":"Peru","category":"art"}"#, t);
    };
    for s in ["a", "b", "c"] {
        marker(&mut b, s, None, "active");
    }
    post(&mut b, 1, base + 1_000);
    marker(&mut b, "a", Some(base + 2 * MIN), "active");
    marker(&mut b, "b", Some(base + 2 * MIN), "active");
    let mut run = |b: &BatchBuf| Windows { rules: &rules, state: &mut state, agg: &mut agg, name: "count-posts" }.process(&b.as_ref()).expect("process");
    assert_eq!(run(&b).rows.len(), 0, "c has not reported: the first window stays open");
    let mut b = BatchBuf::default();
    post(&mut b, 2, base + 2_000); // c's record, still in the first window
    marker(&mut b, "c", Some(base + 2_000), "active");
    assert_eq!(run(&b).rows.len(), 0, "c is still inside the first window");
    let mut b = BatchBuf::default();
    marker(&mut b, "c", None, "idle");
    let out = run(&b);
    assert_eq!(out.rows.len(), 1, "c went quiet: a and b close the first window");
    let row: Value = serde_json::from_slice(out.rows.as_ref().get(0).value).expect("row");
    assert_eq!(row["post_count"], 2, "both posts, one of them from c");
    let mut b = BatchBuf::default();
    post(&mut b, 3, base + 2 * MIN + 5);
    marker(&mut b, "a", Some(base + 2 * MIN + 5), "closing");
    marker(&mut b, "b", None, "idle");
    assert_eq!(run(&b).rows.len(), 0, "closing needs every source idle");
    let mut b = BatchBuf::default();
    marker(&mut b, "b", None, "closing");
    let out = run(&b);
    assert_eq!(out.rows.len(), 1, "every source quiet and closing: the open window is emitted");
    let mut b = BatchBuf::default();
    post(&mut b, 4, base + 2 * MIN + 9);
    let out = run(&b);
    assert_eq!(out.failures.iter().map(|f| f.kind).collect::<Vec<_>>(), vec!["late"], "its window was closed for quiet");
}

/// The windows as a stage: a partition revoked mid-stream is forgotten (its
/// state and gauges dropped), then given back and reopened from the snapshot
/// its last roll landed: the rows that follow are exactly an uninterrupted run's.
#[test]
fn a_revoked_partition_is_forgotten_then_restored_from_its_snapshot_with_exact_counts() {
    use crate::pipeline::events::PipelineEvents;
    use crate::pipeline::snapshot::Snapshots;
    use crate::pipeline::stage::{Roll, Stage};
    use crate::pipeline::stats::PipelineStats;
    use crate::position::{Intent, PartitionId};
    use std::sync::Arc;
    let rt = runtime();
    let records = posts(1_200, 5_000);
    let c = config(3 * MIN as u64, None, 10_000, LatePolicy::DeadLetter);
    let whole = run(&rt, "count-posts", &c, &records, 100, None).expect("run");
    let dir = tempfile::tempdir().expect("tempdir");
    let compiled = rt.load_builtin("count-posts").expect("builtin");
    let mut stage = super::AggregateStage::new("posts", &c, compiled, Snapshots::under(dir.path(), "aggregates", "posts"), false).expect("stage");
    let p = PartitionId { topic: Arc::from("posts-repartition"), partition: 0 };
    let rules = WindowRules::new(&c);
    let fold = |stage: &mut super::AggregateStage, part: &[Value]| -> Vec<Value> {
        let mut rows = Vec::new();
        for chunk in part.chunks(100) {
            let (batch, _, _) = routed(&rules, chunk, 0);
            let out = stage.fold(&p, &batch.as_ref()).expect("fold");
            rows.extend(out.rows.as_ref().iter().map(|r| serde_json::from_slice::<Value>(r.value).expect("row is JSON")));
        }
        rows
    };
    stage.open(&p, 0).expect("open");
    let mut rows = fold(&mut stage, &records[..600]);
    // A roll ending at position 600 lands the snapshot; then the partition goes to another owner.
    let (stats, intent) = (PipelineStats::default(), Intent::new(0, 600, Vec::new()));
    let summary = Default::default();
    let roll =
        Roll { partition: &p, intent: &intent, replaying: false, summary: &summary, lineage: &[], events: PipelineEvents { pipeline: "posts", stats: &stats } };
    stage.land(&roll).expect("snapshot");
    let held = stage.status(&p).expect("open state").state_bytes;
    stage.forget(&p);
    assert!(stage.status(&p).is_none(), "the revoked partition's windows are dropped");
    let labels = ["posts", "posts-repartition", "0"];
    assert!(crate::telemetry::metrics().aggregate_state_bytes.get_metric_with_label_values(&labels).is_ok_and(|g| g.get() == 0), "its gauge reads nothing");
    // Given back: reopened at the committed position from the snapshot.
    stage.open(&p, 600).expect("reopen");
    assert_eq!(stage.status(&p).expect("restored").state_bytes, held, "the same state as before the revocation");
    rows.extend(fold(&mut stage, &records[600..]));
    assert_eq!(rows, whole.rows, "the windows are exactly an uninterrupted run's");
}

/// Emitted rows as text, in order, for comparing runs that may emit a window's groups in another order.
fn sorted(rows: &[Value]) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    rows.sort();
    rows
}

/// `count-posts` written as SQL: the window, keys and time come from the statement.
const COUNT_POSTS_SQL: &str = "CREATE TABLE input (ind BIGINT);\n\
    SELECT country, category, count(DISTINCT ind) AS post_count FROM input\n\
    GROUP BY TUMBLE(\"timestamp\", INTERVAL '5' MINUTE), country, category";

fn sql(rt: &Runtime, text: &str) -> std::sync::Arc<crate::runtime::CompiledTransform> {
    rt.load_named(text.as_bytes(), Some("windows-sql")).expect("the statement compiles")
}

/// The config a windowed statement makes of a `[pipeline.aggregate]` that leaves the window out.
fn config_of(compiled: &crate::runtime::CompiledTransform, lateness: u64) -> AggregateConfig {
    let s = compiled.sql_windows().expect("a windowed statement");
    let bare = AggregateConfig { time_field: String::new(), group_by: Vec::new(), window_ms: 0, ..config(1, None, lateness, LatePolicy::DeadLetter) };
    assert!(bare.from_statement());
    bare.with_statement(&s.window.time_field, s.window.size_ms, s.window.slide_ms, &s.group_by).expect("filled in")
}

#[test]
fn sql_windows_emit_the_rows_count_posts_emits_tumbling_and_hopping() {
    let rt = runtime();
    let records = posts(3_000, 20_000);
    let hop = COUNT_POSTS_SQL.replace("TUMBLE(\"timestamp\", INTERVAL '5' MINUTE)", "HOP(\"timestamp\", INTERVAL '1' MINUTE, INTERVAL '4' MINUTE)");
    for (text, size, slide) in [(COUNT_POSTS_SQL.to_owned(), 5 * MIN, 5 * MIN), (hop, 4 * MIN, MIN)] {
        let statement = sql(&rt, &text);
        let c = config_of(&statement, 30_000);
        assert_eq!(
            (c.window_ms, c.slide(), c.time_field.as_str(), c.group_by.clone()),
            (size as u64, slide as u64, "timestamp", vec!["country".to_string(), "category".to_string()])
        );
        let by_sql = run_compiled(&statement, &c, &records, 333, None).expect("run");
        let by_component = run(&rt, "count-posts", &c, &records, 333, None).expect("run");
        assert_eq!(sorted(&by_sql.rows), sorted(&by_component.rows), "window {size}/{slide}");
        assert_eq!(by_sql.failures, by_component.failures);
        assert_eq!(got_counts(&by_sql.rows), expected_counts(&records, size, slide, closed_until(&records, 30_000, slide)));
        // Any batch size, and a checkpoint in the middle, give the same rows.
        let first = run_compiled(&statement, &c, &records[..1234], 7, None).expect("run");
        let saved: WindowState = serde_json::from_slice(&serde_json::to_vec(&first.state).expect("json")).expect("parse");
        let rest = run_compiled(&statement, &c, &records[1234..], 1000, Some(saved)).expect("run");
        assert_eq!(sorted(&[first.rows, rest.rows].concat()), sorted(&by_sql.rows));
    }
}

#[test]
fn sql_windows_compute_sums_extremes_averages_and_computed_groups() {
    let rt = runtime();
    let statement = sql(
        &rt,
        "CREATE TABLE input (ind BIGINT);\n\
         SELECT country, CASE WHEN ind % 2 = 0 THEN 'even' ELSE 'odd' END AS parity, count(*) AS n, sum(ind) AS total, \
         min(ind) AS lowest, max(category) AS last_category, avg(ind) AS mean\n\
         FROM input WHERE category <> 'quotes'\n\
         GROUP BY TUMBLE(\"timestamp\", INTERVAL '10' MINUTE), country, CASE WHEN ind % 2 = 0 THEN 'even' ELSE 'odd' END",
    );
    assert_eq!(
        statement.sql_windows().expect("windows").describe_output(),
        "country string, parity string, n int64, total int64, lowest int64, last_category string, mean float64"
    );
    let records = posts(2_000, 0);
    let c = config_of(&statement, 0);
    let r = run_compiled(&statement, &c, &records, 250, None).expect("run");
    assert!(r.failures.is_empty());
    let closed = closed_until(&records, 0, 10 * MIN);
    // (window start, country, parity) → (n, total, lowest, last category, mean)
    type Rows = BTreeMap<(String, String, String), (i64, i64, i64, String, f64)>;
    let mut want: Rows = BTreeMap::new();
    let mut sums: BTreeMap<(String, String, String), Vec<i64>> = BTreeMap::new();
    for rec in records.iter().filter(|r| r["category"] != "quotes") {
        let t = rec["timestamp"].as_i64().expect("ms");
        let start = t.div_euclid(10 * MIN) * 10 * MIN;
        if start + 10 * MIN > closed {
            continue;
        }
        let ind = rec["ind"].as_i64().expect("ind");
        let key = (iso(start), rec["country"].as_str().expect("c").to_owned(), if ind % 2 == 0 { "even" } else { "odd" }.to_owned());
        sums.entry(key.clone()).or_default().push(ind);
        let cat = rec["category"].as_str().expect("k").to_owned();
        let e = want.entry(key).or_insert((0, 0, i64::MAX, String::new(), 0.0));
        e.3 = e.3.clone().max(cat);
    }
    for (key, inds) in &sums {
        let e = want.get_mut(key).expect("key");
        let mean = inds.iter().sum::<i64>() as f64 / inds.len() as f64;
        (e.0, e.1, e.2, e.4) = (inds.len() as i64, inds.iter().sum(), *inds.iter().min().expect("one"), (mean * 1e9).round() / 1e9);
    }
    let got: Rows = r
        .rows
        .iter()
        .map(|row| {
            let key = (
                row["window_start"].as_str().expect("start").to_owned(),
                row["country"].as_str().expect("c").to_owned(),
                row["parity"].as_str().expect("p").to_owned(),
            );
            let v = (
                row["n"].as_i64().expect("n"),
                row["total"].as_i64().expect("total"),
                row["lowest"].as_i64().expect("lowest"),
                row["last_category"].as_str().expect("cat").to_owned(),
                (row["mean"].as_f64().expect("mean") * 1e9).round() / 1e9,
            );
            (key, v)
        })
        .collect();
    assert_eq!(got, want);
    assert!(got.len() > 10);
}

#[test]
fn windowed_statements_that_cannot_close_or_fold_are_refused_with_the_reason() {
    let rt = runtime();
    for (text, want) in [
        ("SELECT country, count(*) AS n FROM input GROUP BY country", "GROUP BY needs a window"),
        ("SELECT country, count(*) AS n FROM input GROUP BY TUMBLE(t, INTERVAL '1' MONTH), country", "not a fixed interval"),
        ("SELECT country, count(*) AS n FROM input GROUP BY HOP(t, INTERVAL '7' MINUTE, INTERVAL '10' MINUTE), country", "multiple of its slide"),
        ("SELECT country, count(*) AS n FROM input GROUP BY TUMBLE(t, INTERVAL '1' MINUTE), TUMBLE(t, INTERVAL '2' MINUTE), country", "two windows"),
        ("SELECT country, count(*) * 2 AS n FROM input GROUP BY TUMBLE(t, INTERVAL '1' MINUTE), country", "as they are"),
        ("SELECT country, count(*) AS n FROM input GROUP BY TUMBLE(t, INTERVAL '1' MINUTE), country HAVING count(*) > 1", "HAVING"),
        ("SELECT country AS c, count(*) AS n FROM input GROUP BY TUMBLE(t, INTERVAL '1' MINUTE), country", "select it as `country`"),
        (
            "CREATE TABLE input (x BIGINT); SELECT country, median(x) AS m FROM input GROUP BY TUMBLE(t, INTERVAL '1' MINUTE), country",
            "`median` is not an aggregate windows compute",
        ),
        (
            "SELECT country, sum(country) AS s FROM input GROUP BY TUMBLE(t, INTERVAL '1' MINUTE), country",
            "No function matches the given name and argument types 'sum(Utf8)'",
        ),
        ("SELECT TUMBLE(t, INTERVAL '1' MINUTE) AS w FROM input", "GROUP BY"),
    ] {
        let err = rt.load_named(text.as_bytes(), Some("w")).expect_err(text).to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
}

/// Report 6's streaming form written as SQL: the lower median (and p90, p99) of
/// followers per age group, as `follower-percentiles` computes them.
const FOLLOWER_PERCENTILES_SQL: &str = "CREATE TABLE input (ind BIGINT, age JSON, follower_count JSON);
SELECT
  CASE WHEN json_to_int(age) BETWEEN 18 AND 24 THEN '18-24' WHEN json_to_int(age) BETWEEN 25 AND 35 THEN '25-35'
       WHEN json_to_int(age) BETWEEN 36 AND 50 THEN '36-50' WHEN json_to_int(age) > 50 THEN '50+' END AS age_group,
  count(DISTINCT ind) AS post_count,
  percentile_disc(json_to_int(follower_count), 0.5) AS follower_count_p50,
  percentile_disc(json_to_int(follower_count), 0.9) AS follower_count_p90,
  percentile_disc(json_to_int(follower_count), 0.99) AS follower_count_p99
FROM input
WHERE json_to_int(age) >= 18 AND json_to_int(follower_count) IS NOT NULL
GROUP BY TUMBLE(\"timestamp\", INTERVAL '10' MINUTE),
  CASE WHEN json_to_int(age) BETWEEN 18 AND 24 THEN '18-24' WHEN json_to_int(age) BETWEEN 25 AND 35 THEN '25-35'
       WHEN json_to_int(age) BETWEEN 36 AND 50 THEN '36-50' WHEN json_to_int(age) > 50 THEN '50+' END";

#[test]
fn sql_percentiles_per_age_group_equal_follower_percentiles() {
    let rt = runtime();
    let statement = sql(&rt, FOLLOWER_PERCENTILES_SQL);
    let records: Vec<Value> = (0..2_500i64)
        .map(|i| {
            let age = match i % 9 {
                0 => json!(null),
                1 => json!("40"),
                _ => json!(12 + (i * 7) % 60),
            };
            let followers = if i % 11 == 0 { json!("n/a") } else { json!((i * 7919) % 100_000) };
            json!({"ind": i, "age": age, "follower_count": followers, "timestamp": 1_600_000_000_000 + i * 1_000})
        })
        .collect();
    let c = config_of(&statement, 0);
    assert!(c.group_by.is_empty(), "the age group is computed, not a key the router reads");
    let by_sql = run_compiled(&statement, &c, &records, 300, None).expect("run");
    let by_component = run(&rt, "follower-percentiles", &c, &records, 300, None).expect("run");
    assert!(by_sql.rows.len() > 10, "{:?}", by_sql.rows);
    assert_eq!(sorted(&by_sql.rows), sorted(&by_component.rows));
}
