//! A Delta table's current snapshot as readers need it: the schema from the
//! log and the files it holds now, each with its partition values. Readers go
//! through this, never through a listing of the table's folder (which also
//! shows files a crash left uncommitted, or compaction removed).

use super::{DATE_PARTITION, fail, table_at};
use crate::store::Native;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake_core::{DeltaTable, DeltaTableError};
use std::io;
use std::sync::Arc;

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFile {
    /// Its key in the landing store (`tables/pin/dt=2020-08-28/….parquet`).
    pub key: String,
    pub bytes: u64,
    pub rows: Option<u64>,
    /// The date partition's value (`None`: the null partition, or the table is not partitioned).
    pub date: Option<String>,
    pub modified_ms: i64,
}

/// What a reader of a Delta table needs.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    /// The columns stored in the files (the log's schema without partition columns).
    pub file_schema: arrow_schema::SchemaRef,
    /// The partition columns (at most the date one), after the file columns in the table.
    pub partition_columns: Vec<arrow_schema::FieldRef>,
    pub files: Vec<SnapshotFile>,
}

impl Snapshot {
    /// The table's columns as readers see them: file columns, then partition columns.
    pub fn table_schema(&self) -> arrow_schema::SchemaRef {
        let mut fields: Vec<arrow_schema::FieldRef> = self.file_schema.fields().iter().cloned().collect();
        fields.extend(self.partition_columns.iter().cloned());
        Arc::new(arrow_schema::Schema::new(fields))
    }
}

/// The current snapshot of `tables/<name>/`; `None` when it is no Delta table.
pub async fn snapshot(native: &Native, name: &str) -> io::Result<Option<Snapshot>> {
    let mut table = table_at(native, name)?;
    if super::folder_missing(&table) || !table.verify_deltatable_existence().await.map_err(|e| fail(name, "looking for its log", e))? {
        return Ok(None);
    }
    match table.load().await {
        Ok(()) => {}
        Err(DeltaTableError::NotATable(_)) => return Ok(None),
        Err(e) => return Err(fail(name, "reading its log", e)),
    }
    Ok(Some(of_table(&table, name)?))
}

/// The snapshot a loaded table is at.
pub(crate) fn of_table(table: &DeltaTable, name: &str) -> io::Result<Snapshot> {
    let state = table.snapshot().map_err(|e| fail(name, "reading its snapshot", e))?;
    let partitions = state.metadata().partition_columns().to_vec();
    let schema = state.schema();
    let mut file_fields = Vec::new();
    let mut partition_columns = Vec::new();
    for f in schema.fields() {
        let arrow: arrow_schema::Field = f.try_into_arrow().map_err(|e| fail(name, "reading its schema", e))?;
        if partitions.contains(f.name()) {
            partition_columns.push(Arc::new(arrow));
        } else {
            file_fields.push(Arc::new(arrow));
        }
    }
    let prefix = crate::sink::layout::table_folder(name);
    let files = state
        .log_data()
        .iter()
        .map(|f| {
            let values = f.partition_values_map();
            SnapshotFile {
                key: format!("{prefix}{}", f.path()),
                bytes: f.size().max(0) as u64,
                rows: f.num_records().map(|n| n as u64),
                date: values.get(DATE_PARTITION).cloned().flatten(),
                modified_ms: f.modification_time(),
            }
        })
        .collect();
    Ok(Snapshot { version: state.version(), file_schema: Arc::new(arrow_schema::Schema::new(file_fields)), partition_columns, files })
}
