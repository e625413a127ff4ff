//! Between the join and the chain: joined rows in, dead letters out.

use super::{JoinOutput, JoinStage};
use crate::pipeline::chain::ChainOutput;
use crate::position::{Fetched, PartitionId};
use crate::sink::DeadLetter;

/// Join a fetched batch of partition `p` of the join topic. Records that
/// expired without their partners, and records that are not join input, are
/// added to `dead` (kinds `unjoined`, `malformed`).
pub fn join(j: &mut JoinStage, p: &PartitionId, fetched: &Fetched, pipeline: &str, dead: &mut Vec<DeadLetter>) -> anyhow::Result<JoinOutput> {
    let out = j.process(p, &fetched.batch.as_ref(), &fetched.offsets)?;
    for u in &out.unjoined {
        let mut d = DeadLetter::by_host(pipeline, p, u.arrived.offset, 0, "join", "unjoined", &u.reason);
        d.timestamp = u.arrived.timestamp;
        d.set_value(u.arrived.value.as_bytes());
        dead.push(d);
    }
    for (i, reason) in &out.malformed {
        let record = fetched.batch.as_ref().get(*i as usize);
        let mut d = DeadLetter::by_host(pipeline, p, fetched.offsets[*i as usize], 0, "join", "malformed", reason).with_record(&record);
        d.set_value(record.value);
        dead.push(d);
    }
    Ok(out)
}

/// The chain ran over joined rows: point its origins and failures at the
/// input records (`origins[i]`: the input record that completed joined row `i`).
pub fn to_input(out: &mut ChainOutput, origins: &[u32]) {
    for o in &mut out.origins {
        *o = origins[*o as usize];
    }
    for f in &mut out.failures {
        f.input_index = origins[f.input_index as usize];
    }
}
