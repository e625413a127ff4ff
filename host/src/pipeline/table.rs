//! The landing stages of a batch: the raw records as they came, then the
//! table's rows (a row the table cannot hold becomes a `schema` dead letter)
//! and every dead letter of the batch; at a roll, a Delta table's commit.

use super::land::{DeadLetters, TableBatch, land_rows};
use super::stage::{Flow, Roll, Stage, TableRows};
use crate::position::PartitionId;
use crate::runtime::StageRows;
use crate::sink::TableSpec;
use crate::sink::delta::{DeltaSink, RollCommit};
use std::borrow::Cow;

/// The raw landing: every fetched record as it came.
pub struct RawStage;

impl Stage for RawStage {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        let l = &mut flow.landing;
        l.segment.write_raw(l.store, &flow.fetched.batch.as_ref())?;
        l.events.raw_written(flow.fetched.offsets.len() as u64);
        Ok(())
    }
}

/// The table and the dead letters. A part that lands no table (a router)
/// still lands its dead letters here.
pub struct TableStage {
    table: Option<TableSpec>,
    /// The table's Delta log, when the table is a Delta table: each roll's
    /// files are added in one commit before the input position is.
    delta: Option<DeltaSink>,
}

impl TableStage {
    pub fn new(table: Option<TableSpec>, delta: Option<DeltaSink>) -> Self {
        TableStage { table, delta }
    }
}

impl Stage for TableStage {
    fn name(&self) -> &'static str {
        "table"
    }

    fn process(&mut self, flow: &mut Flow<'_>) -> anyhow::Result<()> {
        if let (Some(intent), Some(delta)) = (flow.replay, &mut self.delta)
            && flow.landing.segment.input_records == 0
            && flow.landing.segment.start == intent.start
            && delta.has(&delta_app_id(flow.pipeline(), flow.partition), intent.end)?
        {
            // The log references this roll's files: rewriting them could change their bytes under readers.
            tracing::warn!(partition = %flow.partition, start = intent.start, end = intent.end, "the Delta log has this roll: its table files are not written again");
            flow.landing.segment.drop_table_files();
        }
        let writer = flow.writer.clone();
        if writer.is_none() && (self.table.is_some() || flow.refused.is_empty() && flow.late.is_empty()) {
            // Nothing ran that wrote rows (no transforms, no windows): the records are not the table's.
            return Ok(());
        }
        let refused_by_transforms = flow.refused.len();
        let dead: Vec<_> = flow.refused.drain(..).chain(flow.late.drain(..)).collect();
        let from = flow.from();
        let (rows, origins, l) = flow.table_rows();
        let rows: Cow<'_, StageRows> = match rows {
            // Without a table only the dead letters land: no rows to render.
            _ if self.table.is_none() => Cow::Owned(StageRows::default()),
            TableRows::Made(r) => Cow::Borrowed(r),
            TableRows::Windows(b) | TableRows::Fetched(b) => Cow::Owned(StageRows::Json(b.clone())),
        };
        let batch = TableBatch { rows: &rows, origins: &origins, writer: writer.as_ref().map(|(stage, t)| (*stage, t.as_ref())) };
        let landed = land_rows(l.segment, l.store, self.table.as_ref(), DeadLetters::Segment(l.events.pipeline), &from, batch, dead)?;
        // The input records the table accounts for: its rows and the records refused on the way.
        let table_records = (rows.len() + refused_by_transforms).saturating_sub(landed.dead_letters.len()) as u64;
        l.events.batch_landed(&landed, self.table.is_some().then_some(table_records));
        flow.misfits = landed.misfits;
        Ok(())
    }

    /// The files are durable; the log takes them with the position they reach, once.
    fn land(&mut self, roll: &Roll<'_>) -> anyhow::Result<()> {
        let Some(delta) = &mut self.delta else { return Ok(()) };
        let app_id = delta_app_id(roll.events.pipeline, roll.partition);
        let committed =
            delta.commit(RollCommit { app_id, version: roll.intent.end, files: &roll.summary.table_files, lineage: roll.lineage, replay: roll.replaying })?;
        roll.events.delta_committed(delta.name(), committed);
        Ok(())
    }
}

/// Whose position a Delta commit's `txn` action records: one input partition of one pipeline.
fn delta_app_id(pipeline: &str, p: &PartitionId) -> String {
    format!("{pipeline}/{}/{}", p.topic, p.partition)
}
