//! Shadow (canary) runs: a candidate version processes a copy of the live
//! batches of one stage. Its output is compared with the active version's and
//! thrown away; nothing it does is landed. The report says how often the two
//! agree, and shows examples where they do not, before anyone promotes it.

use super::chain::Captured;
use crate::runtime::registry::VersionInfo;
use crate::runtime::{ProcessedBatch, TransformInstance};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Differences kept per shadow run, for people to look at.
const MAX_EXAMPLES: usize = 20;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ShadowReport {
    pub stage: usize,
    pub candidate: Option<VersionInfo>,
    pub active: Option<VersionInfo>,
    pub started_at_ms: i64,
    pub batches: u64,
    pub records: u64,
    /// Same output records (compared as JSON values, in order).
    pub same: u64,
    /// Both produced output, but not the same.
    pub different: u64,
    /// The candidate refused (or trapped on) what the active version accepted.
    pub only_candidate_refused: u64,
    /// The active version refused what the candidate accepted.
    pub only_active_refused: u64,
    pub both_refused: u64,
    pub examples: Vec<ShadowExample>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShadowExample {
    pub input: String,
    pub active: Outcome,
    pub candidate: Outcome,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Output(Vec<Value>),
    Refused(String),
}

impl ShadowReport {
    pub fn agreement(&self) -> f64 {
        if self.records == 0 { 1.0 } else { (self.same + self.both_refused) as f64 / self.records as f64 }
    }
}

/// Outputs and refusals of one side, by input index.
fn by_input(output: &sluice_guest::BatchBuf, origins: &[u32], failed: &[(u32, String)]) -> (BTreeMap<u32, Vec<Value>>, BTreeMap<u32, String>) {
    let mut outs: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    for (r, &o) in output.as_ref().iter().zip(origins) {
        let v = serde_json::from_slice(r.value).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(r.value).into_owned()));
        outs.entry(o).or_default().push(v);
    }
    (outs, failed.iter().cloned().collect())
}

/// Run the candidate on what the active stage saw, and add the comparison to `report`.
pub fn compare(candidate: &mut TransformInstance, seen: &Captured, report: &mut ShadowReport) {
    let theirs: ProcessedBatch = candidate.process(&seen.input.as_ref());
    let (a_out, a_failed) = by_input(&seen.output, &seen.origins, &seen.failed);
    let c_failed: Vec<(u32, String)> = theirs.failures.iter().map(|f| (f.index, f.reason.clone())).collect();
    let (c_out, c_failed) = by_input(&theirs.output.to_json(), &theirs.origins, &c_failed);
    report.batches += 1;
    for i in 0..seen.input.len() as u32 {
        report.records += 1;
        let side = |outs: &BTreeMap<u32, Vec<Value>>, failed: &BTreeMap<u32, String>| match failed.get(&i) {
            Some(reason) => Outcome::Refused(reason.clone()),
            None => Outcome::Output(outs.get(&i).cloned().unwrap_or_default()),
        };
        let (a, c) = (side(&a_out, &a_failed), side(&c_out, &c_failed));
        let agree = match (&a, &c) {
            (Outcome::Output(x), Outcome::Output(y)) if x == y => {
                report.same += 1;
                true
            }
            (Outcome::Output(_), Outcome::Output(_)) => {
                report.different += 1;
                false
            }
            (Outcome::Output(_), Outcome::Refused(_)) => {
                report.only_candidate_refused += 1;
                false
            }
            (Outcome::Refused(_), Outcome::Output(_)) => {
                report.only_active_refused += 1;
                false
            }
            (Outcome::Refused(_), Outcome::Refused(_)) => {
                report.both_refused += 1;
                true
            }
        };
        if !agree && report.examples.len() < MAX_EXAMPLES {
            let input = String::from_utf8_lossy(seen.input.as_ref().get(i as usize).value).chars().take(2000).collect();
            report.examples.push(ShadowExample { input, active: a, candidate: c });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::chain::Chain;
    use crate::runtime::testing::{CLEAN_PIN_MARKED_WASM, REJECT_ALL_WASM};
    use crate::runtime::{Runtime, SandboxLimits};
    use sluice_guest::BatchBuf;

    fn captured(rt: &Runtime, input: &BatchBuf) -> Captured {
        let mut active = Chain::new(vec![rt.load_builtin("clean-pin").expect("builtin")]);
        active.run_capturing(input, Some(0)).1.expect("stage 0 captured")
    }

    fn input() -> BatchBuf {
        let mut b = BatchBuf::default();
        b.push(br#"{"index": 1, "unique_id": "a"}"#, b"", 0);
        b.push(br#"{"index": 2}"#, b"", 0);
        b.push(b"[3]", b"", 0);
        b
    }

    #[test]
    fn the_comparison_sorts_every_record_into_one_bucket() {
        let rt = Runtime::new(SandboxLimits::default(), None).expect("runtime");
        let seen = captured(&rt, &input());
        let mut report = ShadowReport::default();
        compare(&mut rt.load(CLEAN_PIN_MARKED_WASM).expect("marked").instance(), &seen, &mut report);
        // The marked build differs only where there is a unique_id to mark.
        assert_eq!((report.records, report.same, report.different, report.both_refused), (3, 1, 1, 1));
        assert_eq!(report.examples.len(), 1);
        assert!(matches!(&report.examples[0].candidate, Outcome::Output(v) if v[0]["unique_id"] == "v2:a"));
        assert!((report.agreement() - 2.0 / 3.0).abs() < 1e-9);

        let mut report = ShadowReport::default();
        compare(&mut rt.load(REJECT_ALL_WASM).expect("reject-all").instance(), &seen, &mut report);
        assert_eq!((report.only_candidate_refused, report.both_refused, report.same), (2, 1, 0));
    }
}
