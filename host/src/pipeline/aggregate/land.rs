//! Between the aggregate stage and the segment: which rows land, which records
//! become dead letters.

use super::{AggregateStage, WindowOutput};
use crate::pipeline::chain::ChainOutput;
use crate::pipeline::land::Provenance;
use crate::position::PartitionId;
use crate::sink::DeadLetter;

/// Fold the chain's output of one fetched batch into the partition's windows.
/// Records the windows refuse (late, no event time, refused by the aggregate)
/// are added to `dead`; the rows of the windows that closed are returned.
pub fn fold(
    a: &mut AggregateStage,
    p: &PartitionId,
    chain_out: &ChainOutput,
    from: &dyn Provenance,
    dead: &mut Vec<DeadLetter>,
) -> anyhow::Result<WindowOutput> {
    // An aggregate reads records: a 0.2.0 last stage's columns are rendered as JSON.
    let records = chain_out.output.to_json();
    let mut out = a.process(p, &records.as_ref().as_ref())?;
    let stage = chain_out.stage_runs.len() as u32;
    for f in &out.failures {
        let origin = chain_out.origins[f.index as usize];
        let mut d = from.letter(origin, stage, a.compiled(), f.kind, &f.reason);
        d.set_value(records.as_ref().as_ref().get(f.index as usize).value);
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
