use super::commit::Committed;
use super::*;
use crate::sink::TableFile;
use crate::sink::parquet::ParquetObject;
use crate::sink::schema::{ColumnSpec, ColumnType, from_columns};
use crate::store::ObjectStore;
use crate::store::local::LocalStore;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use std::sync::Arc;

fn columns(extra: bool) -> arrow_schema::SchemaRef {
    let col = |name: &str, kind| ColumnSpec { name: name.into(), kind, nullable: true, dictionary: true };
    let mut c = vec![col("ind", ColumnType::Int64), col("title", ColumnType::String), col("timestamp", ColumnType::Timestamp)];
    if extra {
        c.push(col("category", ColumnType::String));
    }
    from_columns(&c)
}

/// Rows `from..to`, all on 2020-08-28 (or the null date when `no_time`).
fn batch(schema: &arrow_schema::SchemaRef, from: i64, to: i64, no_time: bool) -> RecordBatch {
    let day = 1_598_572_800_000_000i64; // 2020-08-28T00:00:00Z in µs
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(from..to)),
        Arc::new(StringArray::from_iter_values((from..to).map(|i| format!("title {i}")))),
        Arc::new(TimestampMicrosecondArray::from_iter((from..to).map(|i| (!no_time).then_some(day + i))).with_timezone("+00:00")),
    ];
    if schema.fields().len() == 4 {
        cols.push(Arc::new(StringArray::from_iter_values((from..to).map(|_| "art"))));
    }
    RecordBatch::try_new(schema.clone(), cols).expect("batch")
}

fn write_file(store: &dyn ObjectStore, key: &str, hive: Option<&str>, batch: &RecordBatch) -> TableFile {
    let mut object = ParquetObject::new(store.create(key).expect("create"), batch.schema()).expect("writer");
    object.write(batch).expect("write");
    let w = object.close(&[]).expect("close");
    let bytes = w.written();
    w.finish(&[]).expect("finish");
    TableFile { key: key.to_owned(), hive: hive.map(str::to_owned), bytes, rows: batch.num_rows() as u64 }
}

fn open(store: &LocalStore, schema: &arrow_schema::SchemaRef, options: &DeltaOptions) -> std::io::Result<DeltaSink> {
    DeltaSink::open(&store.native().expect("native"), store, "pins", "pin", schema, true, options)
}

fn rows_in(store: &LocalStore) -> (read::Snapshot, u64) {
    let snap = block_on(read::snapshot(&store.native().expect("native"), "pin")).expect("snapshot").expect("a Delta table");
    let rows = snap.files.iter().map(|f| f.rows.expect("numRecords")).sum();
    (snap, rows)
}

#[test]
fn a_replayed_roll_adds_nothing_and_the_txn_version_is_the_end_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("store");
    let schema = columns(false);
    let mut sink = open(&store, &schema, &DeltaOptions::default()).expect("open");
    let first = [
        write_file(&store, "tables/pin/dt=2020-08-28/t.pin+0+0000000000.parquet", Some("dt=2020-08-28"), &batch(&schema, 0, 10, false)),
        write_file(
            &store,
            "tables/pin/dt=__HIVE_DEFAULT_PARTITION__/t.pin+0+0000000000.parquet",
            Some("dt=__HIVE_DEFAULT_PARTITION__"),
            &batch(&schema, 10, 12, true),
        ),
    ];
    let roll = |files: &'static [TableFile], replay| RollCommit { app_id: "pins/t.pin/0".into(), version: 12, files, lineage: &[], replay };
    let first: &'static [TableFile] = Box::leak(Box::new(first));
    assert!(matches!(sink.commit(roll(first, false)).expect("commit"), Committed::Version(1)));
    // The same roll again, from a fresh process (nothing known in memory): the log has it.
    let mut again = open(&store, &schema, &DeltaOptions::default()).expect("reopen");
    assert_eq!(again.commit(roll(first, true)).expect("replay"), Committed::Already);
    let (snap, rows) = rows_in(&store);
    assert_eq!((snap.files.len(), rows), (2, 12));
    let mut dates: Vec<_> = snap.files.iter().map(|f| f.date.clone()).collect();
    dates.sort();
    assert_eq!(dates, vec![None, Some("2020-08-28".to_owned())]);
    assert_eq!(snap.partition_columns.iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), vec![DATE_PARTITION]);
    // The next roll commits; its version is its end position.
    let next = [write_file(&store, "tables/pin/dt=2020-08-28/t.pin+0+0000000012.parquet", Some("dt=2020-08-28"), &batch(&schema, 12, 20, false))];
    let next: &'static [TableFile] = Box::leak(Box::new(next));
    assert!(matches!(
        again.commit(RollCommit { app_id: "pins/t.pin/0".into(), version: 20, files: next, lineage: &[], replay: false }).expect("next"),
        Committed::Version(2)
    ));
    let table = {
        let mut t = table_at(&store.native().expect("native"), "pin").expect("table");
        block_on(t.load()).expect("load");
        t
    };
    let version = block_on(async { table.snapshot().expect("snapshot").transaction_version(table.log_store().as_ref(), "pins/t.pin/0").await }).expect("txn");
    assert_eq!(version, Some(20));
}

#[test]
fn a_schema_change_is_refused_unless_told_to_evolve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("store");
    open(&store, &columns(false), &DeltaOptions::default()).expect("create");
    let err = open(&store, &columns(true), &DeltaOptions::default()).err().expect("refused").to_string();
    assert!(err.contains("category") && err.contains("schema_change = \"evolve\""), "{err}");
    let evolve = DeltaOptions { schema_change: SchemaChange::Evolve, ..Default::default() };
    open(&store, &columns(true), &evolve).expect("evolved");
    let (snap, _) = rows_in(&store);
    assert!(snap.file_schema.field_with_name("category").is_ok());
    // A type change is refused either way.
    let col = |name: &str, kind| ColumnSpec { name: name.into(), kind, nullable: true, dictionary: true };
    let retyped = from_columns(&[col("ind", ColumnType::String), col("title", ColumnType::String), col("timestamp", ColumnType::Timestamp)]);
    let err = open(&store, &retyped, &evolve).err().expect("refused").to_string();
    assert!(err.contains("ind") && err.contains("changed type"), "{err}");
}

#[test]
fn a_folder_of_plain_parquet_is_not_silently_turned_into_a_delta_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("store");
    let schema = columns(false);
    write_file(&store, "tables/pin/t.pin+0+0000000000.parquet", None, &batch(&schema, 0, 3, false));
    let err = open(&store, &schema, &DeltaOptions::default()).err().expect("refused").to_string();
    assert!(err.contains("no Delta log") && err.contains("table.name"), "{err}");
}

#[test]
fn compaction_keeps_every_row_and_vacuum_deletes_what_it_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::new(dir.path()).expect("store");
    let schema = columns(false);
    let mut sink = open(&store, &schema, &DeltaOptions::default()).expect("open");
    for (i, from) in (0..50).step_by(10).enumerate() {
        let key = format!("tables/pin/dt=2020-08-28/t.pin+0+{from:010}.parquet");
        let files: &'static [TableFile] = Box::leak(Box::new([write_file(&store, &key, Some("dt=2020-08-28"), &batch(&schema, from, from + 10, false))]));
        sink.commit(RollCommit { app_id: "pins/t.pin/0".into(), version: (from + 10) as u64, files, lineage: &[], replay: i == 0 }).expect("commit");
    }
    let native = store.native().expect("native");
    // 2020-08-28 is still open on that day: nothing to do.
    assert_eq!(maintain::compact(&native, &store, "pin", 1 << 20, "2020-08-28", &|_| {}).expect("compact").files_removed, 0);
    let done = maintain::compact(&native, &store, "pin", 1 << 20, "2020-08-29", &|_| {}).expect("compact");
    assert_eq!((done.files_removed, done.files_added, done.rows), (5, 1, 50));
    let (snap, rows) = rows_in(&store);
    assert_eq!((snap.files.len(), rows), (1, 50));
    // The rows themselves, read back from the one file.
    let batches = maintain_read(&store, &snap.files[0].key, &snap.file_schema);
    let ids: Vec<i64> = batches.iter().flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().expect("ind").values().to_vec()).collect();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
    // The five small files are out of the table but still on disk until vacuumed.
    assert_eq!(store.list("tables/pin/dt=2020-08-28/").expect("list").len(), 6);
    let deleted = maintain::vacuum(&native, "pin", 0).expect("vacuum");
    assert_eq!(deleted.len(), 5, "{deleted:?}");
    assert_eq!(store.list("tables/pin/dt=2020-08-28/").expect("list").len(), 1);
    // Still one consistent table with the same rows.
    assert_eq!(rows_in(&store).1, 50);
}

fn maintain_read(store: &LocalStore, key: &str, schema: &arrow_schema::SchemaRef) -> Vec<RecordBatch> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bytes = bytes::Bytes::from(store.get(key).expect("get"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet").build().expect("reader");
    reader.map(|b| crate::sink::parquet::align(&b.expect("batch"), schema).expect("align")).collect()
}
