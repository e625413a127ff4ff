//! `sluice transform test [DIR]`: the golden samples through the component, in
//! the sandbox and limits the host runs it with; `--input FILE` runs it over a
//! JSON-lines file and summarises what came out.

use super::TransformCrate;
use super::lines::process_lines;
use crate::runtime::registry::{AGGREGATES_HAVE_NO_SAMPLES, SampleOutcome, run_sample};
use crate::runtime::{CompiledTransform, ComponentKind, FailureKind};
use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

/// Run the crate's golden samples; `Ok(true)` when every one passed. Prints a
/// line per sample and, for a failing one, what differs.
pub fn samples(krate: &TransformCrate, t: &Arc<CompiledTransform>) -> anyhow::Result<bool> {
    let samples = krate.samples()?;
    if t.kind() == ComponentKind::Aggregate {
        anyhow::ensure!(samples.is_empty(), "{}: {AGGREGATES_HAVE_NO_SAMPLES}; test it with `cargo test`", krate.dir.join("samples.json").display());
        println!("an aggregate has no golden samples; `cargo test` in {} runs its unit tests", krate.dir.display());
        return Ok(true);
    }
    if samples.is_empty() {
        println!(
            "no golden samples in {} (a list of {{\"input\": …, \"output\": [...]}} or {{\"input\": …, \"rejected\": true}})",
            krate.dir.join("samples.json").display()
        );
        return Ok(true);
    }
    let mut failed = 0;
    for (i, s) in samples.iter().enumerate() {
        match run_sample(t, s) {
            SampleOutcome::Passed => println!("ok    sample {} {}", i + 1, short(&s.input)),
            SampleOutcome::Failed { reason, expected, got } => {
                failed += 1;
                println!("FAIL  sample {} {}", i + 1, short(&s.input));
                match (expected, got) {
                    (Some(expected), Some(got)) => {
                        println!("      output differs (- expected, + got):");
                        for line in diff(&pretty(&expected), &pretty(&got)) {
                            println!("      {line}");
                        }
                    }
                    _ => println!("      {reason}"),
                }
            }
        }
    }
    println!("{} samples: {} passed, {failed} failed", samples.len(), samples.len() - failed);
    Ok(failed == 0)
}

/// Run the component over a JSON-lines file and summarise outputs, rejections and counters.
pub fn input_file(t: &Arc<CompiledTransform>, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(t.kind() == ComponentKind::Transform, "--input runs transforms; an aggregate needs windows, so run it in a pipeline or with `cargo test`");
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut instance = t.instance();
    let mut outputs = 0u64;
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    let records = process_lines(BufReader::new(file), &mut instance, 1024, |_, _, done| {
        outputs += done.output.len() as u64;
        for f in &done.failures {
            let why = if f.kind == FailureKind::Rejected { f.reason.clone() } else { format!("{}: {}", f.kind.as_str(), f.reason) };
            *refused.entry(why).or_default() += 1;
        }
        for (name, n) in &done.counters {
            *counters.entry(name.clone()).or_default() += n;
        }
        Ok(())
    })?;
    let refused_total: u64 = refused.values().sum();
    println!("{records} records: {outputs} output records, {refused_total} refused");
    let mut reasons: Vec<_> = refused.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (reason, n) in reasons.iter().take(10) {
        println!("  refused {n:>8}  {reason}");
    }
    for (name, n) in counters {
        println!("  counter {n:>8}  {name}");
    }
    Ok(())
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn pretty(records: &[Value]) -> Vec<String> {
    serde_json::to_string_pretty(records).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// A line diff (longest common subsequence): `  ` in both, `- ` only expected, `+ ` only got.
fn diff(expected: &[String], got: &[String]) -> Vec<String> {
    let (n, m) = (expected.len(), got.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == got[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == got[j] {
            out.push(format!("  {}", expected[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", expected[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", got[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_diff_marks_what_changed() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(super::diff(&s(&["[", "a", "b", "]"]), &s(&["[", "a", "c", "]"])), s(&["  [", "  a", "- b", "+ c", "  ]"]));
    }
}
