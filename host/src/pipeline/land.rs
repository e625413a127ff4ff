//! Landing one processed batch into its segment: the rows into the table, the
//! rows the table cannot hold and the records the transforms refused into dead
//! letters. The pipeline worker, backfill and dead-letter replay all land
//! through here, so a batch lands the same way whoever runs it.

use super::chain::{Chain, ChainFailure};
use crate::position::{Fetched, PartitionId};
use crate::runtime::{CompiledTransform, StageRows};
use crate::sink::{DeadLetter, Segment, TableSpec};
use crate::store::ObjectStore;
use std::io;

/// The dead-letter kind of a row the table cannot hold (beside the transforms'
/// [`crate::runtime::FailureKind`]s and the aggregate's).
pub const SCHEMA_MISFIT: &str = "schema";

/// Where a batch's input records came from, so that one refused at some stage
/// becomes a dead letter that says where to find it again.
pub trait Provenance {
    /// A dead letter for input record `index` of the batch, refused at `stage`
    /// (its index in the chain) by `transform` with `kind` and `reason`. The
    /// record's value is set by the caller.
    fn letter(&self, index: u32, stage: u32, transform: &CompiledTransform, kind: &str, reason: &str) -> DeadLetter;
}

/// Records read from a source partition: a dead letter keeps the record's
/// position, key and timestamp.
pub struct FromSource<'a> {
    pub pipeline: &'a str,
    pub partition: &'a PartitionId,
    pub fetched: &'a Fetched,
}

impl Provenance for FromSource<'_> {
    fn letter(&self, index: u32, stage: u32, transform: &CompiledTransform, kind: &str, reason: &str) -> DeadLetter {
        let offset = self.fetched.offsets[index as usize];
        DeadLetter::refused(self.pipeline, self.partition, offset, stage, transform, kind, reason).with_record(&self.fetched.batch.as_ref().get(index as usize))
    }
}

impl FromSource<'_> {
    /// A dead letter for input record `index`, which the host's own step `what` refused at `stage`.
    pub fn host_letter(&self, index: u32, stage: u32, what: &str, kind: &str, reason: &str) -> DeadLetter {
        let offset = self.fetched.offsets[index as usize];
        let record = self.fetched.batch.as_ref().get(index as usize);
        let mut d = DeadLetter::by_host(self.pipeline, self.partition, offset, stage, what, kind, reason).with_record(&record);
        d.set_value(record.value);
        d
    }
}

/// What the transforms made of one batch, ready to land.
pub struct Processed<'a> {
    /// The chain that ran (it names the transform of a failing stage).
    pub chain: &'a Chain,
    /// Input records that did not make it through the chain.
    pub failures: &'a [ChainFailure],
    /// The rows for the table (JSON records or typed columns), and the input index each came from.
    pub rows: &'a StageRows,
    pub origins: &'a [u32],
    /// The stage that wrote `rows` and its transform: a row the table refuses
    /// is blamed on it. `None` only where nothing lands in a table (a router).
    pub writer: Option<(u32, &'a CompiledTransform)>,
    /// Dead letters of the batch found after the chain (the aggregate's late
    /// records), landed after the chain's own.
    pub more_dead: Vec<DeadLetter>,
}

/// Where the dead letters go.
pub enum DeadLetters<'a> {
    /// Into the segment, under `dead-letters/<dir>/`.
    Segment(&'a str),
    /// Back to the caller (a replay keeps them in the object they came from).
    Return,
}

/// What landing a batch did.
#[derive(Debug, Default)]
pub struct Landed {
    /// Rows the table took.
    pub rows: u64,
    /// Indexes of the rows the table refused (they are among the dead letters), ascending.
    pub misfits: Vec<u32>,
    /// Every dead letter of the batch: written into the segment, or handed
    /// back with [`DeadLetters::Return`].
    pub dead_letters: Vec<DeadLetter>,
}

/// Land a processed batch into `seg`: table rows first (a row the table
/// cannot hold becomes a `schema` dead letter), then the dead letters.
pub fn land_batch(
    seg: &mut Segment,
    store: &dyn ObjectStore,
    table: Option<&TableSpec>,
    dead_letters: DeadLetters<'_>,
    from: &dyn Provenance,
    batch: Processed<'_>,
) -> io::Result<Landed> {
    let mut dead = refused_letters(batch.chain, batch.failures, from);
    dead.extend(batch.more_dead);
    land_rows(seg, store, table, dead_letters, from, TableBatch { rows: batch.rows, origins: batch.origins, writer: batch.writer }, dead)
}

/// The records the chain refused, as dead letters.
pub fn refused_letters(chain: &Chain, failures: &[ChainFailure], from: &dyn Provenance) -> Vec<DeadLetter> {
    failures
        .iter()
        .map(|f| {
            let transform = &chain.stages()[f.stage as usize].transform;
            let mut d = from.letter(f.input_index, f.stage, transform, f.kind.as_str(), &f.reason);
            d.set_value(&f.value);
            d
        })
        .collect()
}

/// The rows a table gets from one batch.
pub struct TableBatch<'a> {
    pub rows: &'a StageRows,
    /// The input record each row came from.
    pub origins: &'a [u32],
    /// The stage that wrote the rows and its transform (see [`Processed::writer`]).
    pub writer: Option<(u32, &'a CompiledTransform)>,
}

/// Land table rows into `seg` (a row the table cannot hold becomes a `schema`
/// dead letter after `dead`), then every dead letter.
pub fn land_rows(
    seg: &mut Segment,
    store: &dyn ObjectStore,
    table: Option<&TableSpec>,
    dead_letters: DeadLetters<'_>,
    from: &dyn Provenance,
    batch: TableBatch<'_>,
    mut dead: Vec<DeadLetter>,
) -> io::Result<Landed> {
    let mut rows = 0;
    let mut refused = Vec::new();
    if let Some(table) = table {
        let Some((stage, writer)) = batch.writer else {
            return Err(io::Error::other("table rows with no stage that wrote them (a pipeline part without transforms or aggregate has no table)"));
        };
        let misfits = seg.write_table(store, table, batch.rows)?;
        rows = (batch.rows.len() - misfits.len()) as u64;
        if !misfits.is_empty() {
            let records = batch.rows.to_json();
            for (i, reason) in misfits {
                refused.push(i);
                let mut d = from.letter(batch.origins[i as usize], stage, writer, SCHEMA_MISFIT, &reason);
                d.set_value(records.as_ref().as_ref().get(i as usize).value);
                dead.push(d);
            }
        }
    }
    if let DeadLetters::Segment(dir) = dead_letters {
        seg.write_dead_letters(store, dir, &dead)?;
    }
    refused.sort_unstable();
    Ok(Landed { rows, misfits: refused, dead_letters: dead })
}
