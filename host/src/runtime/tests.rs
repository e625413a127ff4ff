//! Sandbox contract tests: the built-ins behave exactly like their native code,
//! and hostile guests cannot crash, hang or escape the host.

use super::testing::{CLEAN_PIN_V1_WASM, HOSTILE_COLUMNS_WASM, HOSTILE_WASM};
use super::*;
use sluice_guest::BatchBuf;
use std::time::{Duration, Instant};

fn runtime(deadline_ms: u64) -> Runtime {
    Runtime::new(SandboxLimits { memory_mib: 32, deadline_ms, max_isolation_failures: 4, ..Default::default() }, None).expect("runtime")
}

fn batch(values: &[&[u8]]) -> BatchBuf {
    let mut b = BatchBuf::default();
    for (i, v) in values.iter().enumerate() {
        b.push(v, format!("k{i}").as_bytes(), i as i64);
    }
    b
}

fn outputs(p: &ProcessedBatch) -> Vec<String> {
    p.output.to_json().as_ref().as_ref().iter().map(|r| String::from_utf8_lossy(r.value).into_owned()).collect()
}

#[test]
fn builtins_describe_themselves() {
    let rt = runtime(2000);
    for name in builtin_names() {
        let t = rt.load_builtin(name).expect("builtin loads");
        assert_eq!(t.descriptor().name, name);
        assert_eq!(t.content_hash().len(), 64);
    }
    let err = rt.load_builtin("clean-nothing").unwrap_err();
    assert!(err.to_string().contains("no built-in transform named `clean-nothing`"), "{err}");
}

#[test]
fn wasm_clean_pin_matches_native_byte_for_byte() {
    let rt = runtime(2000);
    let t = rt.load_builtin("clean-pin").expect("builtin");
    let mut inst = t.instance();
    let input = batch(&[
        br#"{"index": 1, "title": "No Title Data Available", "follower_count": "6M", "save_location": "Local save in /data/x"}"#,
        b"[1]",
        br#"{"index": 2, "follower_count": "1.5k", "title": 7}"#,
        br#"{"unique_id": "x"}"#,
    ]);
    let wasm = inst.process(&input.as_ref());
    let native = sluice_guest::run_batch::<clean_pin::CleanPin>(&input.as_ref());
    // The built-in speaks 0.2.0: its columns, rendered, are the 0.1.0 native records byte for byte.
    assert!(matches!(wasm.output, StageRows::Columns(_)));
    assert_eq!(*wasm.output.to_json(), native.output);
    assert_eq!(wasm.origins, native.origins);
    let reasons: Vec<_> = wasm.failures.iter().map(|f| (f.index, f.kind, f.reason.as_str())).collect();
    assert_eq!(reasons, vec![(1, FailureKind::Rejected, "record is not a JSON object"), (3, FailureKind::Rejected, "no row id: field `index` is missing")]);
    let mut counters = wasm.counters.clone();
    counters.sort();
    assert_eq!(counters, vec![("field_wrong_type".to_string(), 1)]);
}

#[test]
fn an_infinite_loop_times_out_alone_and_the_runtime_goes_on() {
    let rt = runtime(200);
    let t = rt.load(HOSTILE_WASM).expect("hostile loads");
    let mut inst = t.instance();
    let started = Instant::now();
    let p = inst.process(&batch(&[b"a", b"loop", b"b"]).as_ref());
    let took = started.elapsed();
    assert_eq!(outputs(&p), vec!["a", "b"]);
    assert_eq!(p.origins, vec![0, 2]);
    assert_eq!(p.failures.len(), 1);
    assert_eq!((p.failures[0].index, p.failures[0].kind), (1, FailureKind::Timeout));
    assert!(p.failures[0].reason.contains("200 ms deadline"), "{}", p.failures[0].reason);
    // Two deadlines at most (the whole batch, then the culprit alone), plus slack for a busy machine.
    assert!(took < Duration::from_millis(400) + Duration::from_secs(3), "took {took:?}");
    // The same worker keeps serving.
    let next = inst.process(&batch(&[b"c"]).as_ref());
    assert_eq!(outputs(&next), vec!["c"]);
    assert!(inst.stats().timeouts >= 2);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let rt = runtime(5000);
    let mut inst = rt.load(HOSTILE_WASM).expect("loads").instance();
    let p = inst.process(&batch(&[b"alloc", b"ok"]).as_ref());
    assert_eq!(outputs(&p), vec!["ok"]);
    assert_eq!(p.failures[0].kind, FailureKind::MemoryLimit);
    assert_eq!(p.failures[0].reason, "memory limit: tried to grow past 32 MiB");
    assert!(inst.stats().memory_limit_hits >= 1);
}

#[test]
fn a_panic_becomes_a_rejection_with_the_guest_message() {
    let rt = runtime(2000);
    let mut inst = rt.load(HOSTILE_WASM).expect("loads").instance();
    let p = inst.process(&batch(&[b"panic"]).as_ref());
    assert!(p.output.is_empty());
    assert_eq!(p.failures[0].kind, FailureKind::Trap);
    assert!(p.failures[0].reason.contains("hostile guest panicked on purpose"), "{}", p.failures[0].reason);
    let p = inst.process(&batch(&[b"x", b"reject"]).as_ref());
    assert_eq!(outputs(&p), vec!["x"]);
    assert_eq!(p.failures[0].reason, "rejected on request");
}

#[test]
fn the_sandbox_grants_no_files_sockets_environment_or_clock() {
    let rt = runtime(2000);
    let mut inst = rt.load(HOSTILE_WASM).expect("loads").instance();
    for (what, import) in [("open", "wasi:filesystem"), ("socket", "wasi:sockets"), ("env", "wasi:cli/environment"), ("clock", "wasi:clocks")] {
        let p = inst.process(&batch(&[what.as_bytes()]).as_ref());
        assert!(p.output.is_empty(), "{what} produced output: {:?}", outputs(&p));
        assert_eq!(p.failures.len(), 1, "{what}");
        let reason = &p.failures[0].reason;
        assert_eq!(p.failures[0].kind, FailureKind::Trap);
        assert!(reason.starts_with("trap: denied capability: unknown import: `") && reason.contains(import), "{what}: {reason}");
    }
    let p = inst.process(&batch(&[b"still fine"]).as_ref());
    assert_eq!(outputs(&p), vec!["still fine"]);
}

#[test]
fn a_hopeless_batch_is_abandoned_after_a_few_failures_without_losing_records() {
    let rt = runtime(50);
    let mut inst = rt.load(HOSTILE_WASM).expect("loads").instance();
    let values: Vec<&[u8]> = vec![b"loop"; 20];
    let p = inst.process(&batch(&values).as_ref());
    assert!(p.output.is_empty());
    // Every record is accounted for: tried and failed, or not attempted.
    let mut indices: Vec<u32> = p.failures.iter().map(|f| f.index).collect();
    indices.sort();
    assert_eq!(indices, (0..20).collect::<Vec<u32>>());
    assert!(p.failures.iter().any(|f| f.reason.starts_with("not attempted: 4 records")));
}

#[test]
fn components_that_are_not_transforms_are_refused() {
    let rt = runtime(2000);
    let err = rt.load(b"definitely not wasm").unwrap_err();
    assert!(matches!(err, LoadError::Invalid(_)), "{err}");
    // A valid but empty component: compiles, implements nothing.
    let empty_component = b"\0asm\x0d\0\x01\0";
    let err = rt.load(empty_component).unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld(_)), "{err}");
    assert!(err.to_string().contains("implements none of the worlds sluice runs"), "{err}");
}

#[test]
fn precompiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = SandboxLimits::default();
    let rt = Runtime::new(limits.clone(), Some(dir.path().to_path_buf())).expect("runtime");
    let first = rt.load_builtin("clean-geo").expect("compiles");
    let cached: Vec<_> = walk(dir.path());
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].to_string_lossy().ends_with(&format!("{}.cwasm", first.content_hash())));
    // A second engine loads from the cache; a corrupt artifact is recompiled, not fatal.
    let rt2 = Runtime::new(limits, Some(dir.path().to_path_buf())).expect("runtime");
    rt2.load_builtin("clean-geo").expect("from cache");
    std::fs::write(&cached[0], b"garbage").expect("corrupt it");
    let again = rt2.load_builtin("clean-geo").expect("recompiled");
    assert_eq!(again.content_hash(), first.content_hash());
    assert!(std::fs::read(&cached[0]).expect("rewritten").len() > 1000);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readable").flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn both_contracts_run_side_by_side_with_the_same_results() {
    let rt = runtime(2000);
    let v2 = rt.load_builtin("clean-pin").expect("builtin");
    let v1 = rt.load(CLEAN_PIN_V1_WASM).expect("0.1.0 build");
    assert_eq!((v2.descriptor().contract, v1.descriptor().contract), (Contract::Columns, Contract::Records));
    assert_eq!((v2.descriptor().version.as_str(), v1.descriptor().version.as_str()), ("0.2.0", "0.1.0"));
    let columns = v2.columns().expect("a 0.2.0 transform declares its columns");
    assert_eq!(columns.schema.fields().len(), 11);
    assert!(v1.columns().is_none());
    let input = batch(&[
        br#"{"index": 1, "title": "T", "follower_count": 12, "save_location": "Local save in /x", "category": "art"}"#,
        b"not json",
        br#"{"index": 2, "title": ["nested"], "description": "No description available"}"#,
    ]);
    let (a, b) = (v2.instance().process(&input.as_ref()), v1.instance().process(&input.as_ref()));
    assert!(matches!(a.output, StageRows::Columns(_)) && matches!(b.output, StageRows::Json(_)));
    assert_eq!(outputs(&a), outputs(&b));
    assert_eq!((a.origins, a.failures), (b.origins, b.failures));
    // Rendered records keep their input record's key and timestamp.
    let rendered = a.output.to_json();
    assert_eq!((rendered.as_ref().as_ref().get(1).key, rendered.as_ref().as_ref().get(1).timestamp), (&b"k2"[..], 2));
}

/// Every way a 0.2.0 guest can break the column layout: the batch is refused
/// (each record dead-lettered as malformed output), counted, and the next
/// batch runs on a fresh instance. Nothing panics in the host.
#[test]
fn broken_column_buffers_are_refused_and_counted() {
    let rt = runtime(2000);
    let t = rt.load(HOSTILE_COLUMNS_WASM).expect("hostile-columns loads");
    assert_eq!(t.descriptor().contract, Contract::Columns);
    let mut inst = t.instance();
    let cases = [
        ("bad-offsets", "offsets start at"),
        ("offset-past-end", "past the"),
        ("short-ints", "ints for"),
        ("bad-utf8", "utf-8"),
        ("wrong-type", "which this type does not use"),
        ("missing-column", "columns, but it declares 2"),
        ("bad-origin", "input row 1000000"),
        ("bad-validity", "validity bitmap"),
        ("null-in-required", "declared not nullable"),
        ("huge-rows", "origins"),
    ];
    for (n, (command, says)) in cases.iter().enumerate() {
        let before = inst.stats().traps;
        let cmd = format!(r#"{{"cmd": "{command}"}}"#);
        let p = inst.process(&batch(&[br#"{"cmd": "fine"}"#, cmd.as_bytes(), br#"{"cmd": "also fine"}"#]).as_ref());
        // The batch failed as a whole; its good records, retried alone, produce their rows.
        assert_eq!(outputs(&p), vec![r#"{"n":0,"s":"fine"}"#, r#"{"n":0,"s":"also fine"}"#], "{command}");
        assert!(p.isolated, "{command}");
        // The broken record fails alone; the others are fine on their own.
        let failed: Vec<(u32, FailureKind)> = p.failures.iter().map(|f| (f.index, f.kind)).collect();
        assert_eq!(failed, vec![(1, FailureKind::Malformed)], "{command}");
        assert!(p.failures[0].reason.to_lowercase().contains(says), "{command}: {}", p.failures[0].reason);
        assert!(inst.stats().traps > before, "{command} #{n} was not counted");
    }
    let p = inst.process(&batch(&[br#"{"cmd": "a"}"#, br#"{"cmd": "b"}"#]).as_ref());
    assert_eq!(outputs(&p), vec![r#"{"n":0,"s":"a"}"#, r#"{"n":1,"s":"b"}"#]);
    // A huge allocation meets the memory cap, as in 0.1.0.
    let p = inst.process(&batch(&[br#"{"cmd": "alloc"}"#]).as_ref());
    assert_eq!(p.failures.iter().map(|f| f.kind).collect::<Vec<_>>(), vec![FailureKind::MemoryLimit]);
    assert!(inst.stats().memory_limit_hits >= 1);
}
