//! A new user's first commands, in a fresh folder: `sluice demo`, then `sluice
//! report` and `sluice query` with no flags find what the demo landed, and each
//! step says what to do next.

use std::path::Path;
use std::process::{Command, Output};

fn sluice(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-under-test")).args(args).current_dir(cwd).env("RUST_LOG", "warn").output().expect("running sluice")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn demo_then_report_and_query_with_no_flags() {
    let cwd = tempfile::tempdir().expect("temp dir");

    let demo = sluice(cwd.path(), &["demo", "--rows", "300"]);
    let (out, err) = (text(&demo.stdout), text(&demo.stderr));
    assert!(demo.status.success(), "demo failed:\n{out}\n{err}");
    assert!(out.contains("posted 900 events; 900 landed raw; 900 cleaned or dead-lettered"), "{out}");
    let next = out.split("\nnext:\n").nth(1).unwrap_or_else(|| panic!("the demo names no next steps:\n{out}"));
    for step in [" query ", " report", "demo --keep-serving", "serve --config"] {
        assert!(next.contains(step), "next steps lack `{step}`:\n{next}");
    }
    // The run is found by default, so the printed commands need no --landing.
    assert!(!next.contains("--landing"), "{next}");

    let report = sluice(cwd.path(), &["report", "--quiet"]);
    let err = text(&report.stderr);
    assert!(report.status.success(), "report failed:\n{err}");
    assert!(err.contains("reading sluice-demo/run-"), "report does not say which landing it read:\n{err}");
    let summary = err
        .lines()
        .find_map(|l| l.strip_prefix("HTML summary with charts: file://"))
        .unwrap_or_else(|| panic!("report does not say where the HTML summary is:\n{err}"));
    let html = std::fs::read_to_string(summary).unwrap_or_else(|e| panic!("reading the summary at {summary}: {e}"));
    assert!(html.contains("<html") || html.contains("<!DOCTYPE"), "not an HTML page: {summary}");

    let query = sluice(cwd.path(), &["query", "--format", "csv", "SELECT count(*) AS n FROM pin"]);
    assert!(query.status.success(), "query failed:\n{}", text(&query.stderr));
    let rows: u64 = text(&query.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("a count");
    assert!(rows > 0 && rows <= 300, "pin rows: {rows}");
}

#[test]
fn report_in_an_empty_folder_says_what_to_run_first() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let report = sluice(cwd.path(), &["report"]);
    let err = text(&report.stderr);
    assert!(!report.status.success());
    assert!(err.contains("Run `sluice demo` first") && err.contains("--landing DIR"), "{err}");
}
