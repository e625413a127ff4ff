//! Keeping a Delta table readable fast: `compact` rewrites the small files a
//! streaming pipeline leaves (one per roll and input partition) into larger
//! ones, in one commit that removes the small files and adds the large ones
//! with the same rows; `vacuum` deletes files that left the table longer ago
//! than the retention period.

use super::read::{SnapshotFile, of_table};
use super::{NULL_PARTITION, block_on, fail, table_at};
use crate::sink::layout;
use crate::sink::parquet::{ParquetObject, align};
use crate::store::{Native, ObjectStore};
use arrow_array::RecordBatch;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add};
use deltalake_core::protocol::DeltaOperation;
use std::collections::{BTreeMap, HashMap};
use std::io;

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// Partitions (date values; `-` for an unpartitioned table) rewritten.
    pub partitions: Vec<String>,
    pub files_removed: usize,
    pub files_added: usize,
    pub rows: u64,
    /// The table version of the commit, if there was one.
    pub version: Option<u64>,
}

/// Rewrite the small files of every closed partition (dates before `today`,
/// the null partition, an unpartitioned table's files) into files of about
/// `target_bytes`, in one commit. Rows stay the same, in the same order per file.
pub fn compact(native: &Native, store: &dyn ObjectStore, name: &str, target_bytes: u64, today: &str, progress: &dyn Fn(f64)) -> io::Result<Compacted> {
    let mut table = table_at(native, name)?;
    block_on(table.load()).map_err(|e| fail(name, "reading its log", e))?;
    let snapshot = of_table(&table, name)?;
    let partitioned = !snapshot.partition_columns.is_empty();
    let views: HashMap<String, deltalake_core::kernel::Remove> = {
        let state = table.snapshot().map_err(|e| fail(name, "reading its snapshot", e))?;
        state.log_data().iter().map(|f| (format!("{}{}", layout::table_folder(name), f.path()), f.remove_action(false))).collect()
    };
    // Small files by partition; a partition still being written today is left alone.
    let mut groups: BTreeMap<Option<String>, Vec<&SnapshotFile>> = BTreeMap::new();
    for f in &snapshot.files {
        let open = partitioned && f.date.as_deref().is_some_and(|d| d >= today);
        if !open && f.bytes < target_bytes {
            groups.entry(f.date.clone()).or_default().push(f);
        }
    }
    groups.retain(|_, files| files.len() > 1);
    let mut done = Compacted::default();
    if groups.is_empty() {
        return Ok(done);
    }
    let total: usize = groups.values().map(Vec::len).sum();
    let mut read = 0;
    let mut actions = Vec::new();
    for (date, mut files) in groups {
        files.sort_by(|a, b| a.key.cmp(&b.key));
        let folder = match (&date, partitioned) {
            (Some(d), true) => format!("{}{}={d}/", layout::table_folder(name), super::DATE_PARTITION),
            (None, true) => format!("{}{}={NULL_PARTITION}/", layout::table_folder(name), super::DATE_PARTITION),
            (_, false) => layout::table_folder(name),
        };
        let mut writer: Option<(String, ParquetObject, u64)> = None;
        let mut index = 0;
        let mut rows_in = 0;
        let mut rows_out = 0;
        for f in &files {
            let batches = read_file(store, &f.key, &snapshot.file_schema)?;
            for batch in batches {
                rows_in += batch.num_rows() as u64;
                if writer.is_none() {
                    let key = format!("{folder}compacted-v{:020}-{index:04}.parquet", snapshot.version);
                    index += 1;
                    let object = ParquetObject::new(store.create(&key)?, snapshot.file_schema.clone()).map_err(io::Error::other)?;
                    writer = Some((key, object, 0));
                }
                let (_, object, rows) = writer.as_mut().expect("opened above");
                object.write(&batch).map_err(io::Error::other)?;
                *rows += batch.num_rows() as u64;
                if object.bytes() >= target_bytes {
                    let (key, object, rows) = writer.take().expect("open");
                    rows_out += rows;
                    actions.push(finish(name, key, object, rows, &date, partitioned)?);
                    done.files_added += 1;
                }
            }
            actions.push(Action::Remove(views.get(&f.key).cloned().ok_or_else(|| fail(name, "compacting", format!("{} left the table meanwhile", f.key)))?));
            done.files_removed += 1;
            read += 1;
            progress(0.9 * read as f64 / total as f64);
        }
        if let Some((key, object, rows)) = writer.take() {
            rows_out += rows;
            actions.push(finish(name, key, object, rows, &date, partitioned)?);
            done.files_added += 1;
        }
        if rows_in != rows_out {
            return Err(fail(name, "compacting", format!("read {rows_in} rows but wrote {rows_out}; nothing committed")));
        }
        done.rows += rows_out;
        done.partitions.push(date.unwrap_or_else(|| if partitioned { NULL_PARTITION.to_owned() } else { "-".to_owned() }));
    }
    let info = HashMap::from([("sluice.job".to_owned(), serde_json::Value::from("compact"))]);
    // In turn with the pipelines' commits to the table in this process.
    let table_lock = super::commit::commit_lock(&table);
    let _turn = crate::sync::lock(&table_lock);
    let committed = block_on(async {
        let state = table.snapshot()?;
        CommitBuilder::from(CommitProperties::default().with_metadata(info))
            .with_actions(actions)
            .build(Some(state), table.log_store(), DeltaOperation::Optimize { predicate: None, target_size: target_bytes as i64 })
            .await
    })
    .map_err(|e| fail(name, "committing the compaction", e))?;
    done.version = Some(committed.version());
    progress(1.0);
    Ok(done)
}

/// Delete the files removed from the table more than `retention_hours` ago.
/// Returns the deleted files' paths.
pub fn vacuum(native: &Native, name: &str, retention_hours: u64) -> io::Result<Vec<String>> {
    let mut table = table_at(native, name)?;
    block_on(table.load()).map_err(|e| fail(name, "reading its log", e))?;
    // Vacuum commits its start and end to the log: in turn with the pipelines' commits.
    let table_lock = super::commit::commit_lock(&table);
    let _turn = crate::sync::lock(&table_lock);
    let (_, metrics) = block_on(
        table
            .vacuum()
            .with_retention_period(chrono::Duration::hours(retention_hours as i64))
            // The retention is the operator's (table.delta.vacuum_retention_hours), not the table property's.
            .with_enforce_retention_duration(false)
            .into_future(),
    )
    .map_err(|e| fail(name, "vacuuming", e))?;
    Ok(metrics.files_deleted)
}

/// A file's rows, with the columns of the table's file schema (by name).
fn read_file(store: &dyn ObjectStore, key: &str, schema: &arrow_schema::SchemaRef) -> io::Result<Vec<RecordBatch>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bytes = bytes::Bytes::from(store.get(key)?);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| io::Error::other(format!("{key}: {e}")))?;
    reader
        .map(|batch| {
            let batch = batch.map_err(|e| io::Error::other(format!("{key}: {e}")))?;
            align(&batch, schema).map_err(|e| io::Error::other(format!("{key}: {e}")))
        })
        .collect()
}

fn finish(name: &str, key: String, object: ParquetObject, rows: u64, date: &Option<String>, partitioned: bool) -> io::Result<Action> {
    let w = object.close(&[("sluice.compacted".to_owned(), "true".to_owned())]).map_err(io::Error::other)?;
    let bytes = w.written();
    w.finish(&[])?;
    let path = key.strip_prefix(&layout::table_folder(name)).expect("written under the table").to_owned();
    let partition_values = if partitioned { HashMap::from([(super::DATE_PARTITION.to_owned(), date.clone())]) } else { HashMap::new() };
    Ok(Action::Add(Add {
        path,
        partition_values,
        size: bytes as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: false,
        stats: Some(format!("{{\"numRecords\":{rows}}}")),
        ..Default::default()
    }))
}
