//! Between the aggregate stage and the segment: which rows land, which records
//! become dead letters.

use super::{AggregateStage, WindowOutput};
use crate::pipeline::chain::ChainOutput;
use crate::pipeline::land::Provenance;
use crate::position::PartitionId;
use crate::sink::DeadLetter;
use sluice_guest::BatchRef;

/// Fold the chain's output of one fetched batch (`records`, as JSON) into the partition's windows.
/// Records the windows refuse (late, no event time, refused by the aggregate)
/// are added to `dead`; the rows of the windows that closed are returned.
pub fn fold(
    a: &mut AggregateStage,
    p: &PartitionId,
    chain_out: &ChainOutput,
    records: BatchRef<'_>,
    from: &dyn Provenance,
    dead: &mut Vec<DeadLetter>,
) -> anyhow::Result<WindowOutput> {
    // `records`: the chain's output as JSON (an aggregate reads records; a 0.2.0 last stage writes columns).
    let mut out = a.process(p, &records)?;
    let stage = chain_out.stage_runs.len() as u32;
    for f in &out.failures {
        let origin = chain_out.origins[f.index as usize];
        let mut d = from.letter(origin, stage, a.compiled(), f.kind, &f.reason);
        d.set_value(records.get(f.index as usize).value);
        dead.push(d);
    }
    // Rows point at chain-output records; the segment wants input records.
    for o in &mut out.origins {
        *o = chain_out.origins[*o as usize];
    }
    let m = crate::telemetry::metrics();
    let d = a.compiled().descriptor();
    for (name, value) in &out.counters {
        m.transform_guest_counter.with_label_values(&[&d.name, name]).inc_by(*value);
    }
    Ok(out)
}
