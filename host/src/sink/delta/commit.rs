//! Opening a Delta table for a pipeline (creating it, checking its schema) and
//! committing each roll's files in one commit with its `txn` action.

use super::{DATE_PARTITION, DeltaOptions, SchemaChange, block_on, delta_schema, fail, partition_value, table_at};
use crate::sink::layout::TableFile;
use crate::store::{Native, ObjectStore};
use crate::sync::lock;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, StructField, StructType, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::config::TablePropertiesExt;
use deltalake_core::{DeltaTable, TableProperty};
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

/// One roll of one input partition, ready to commit.
pub struct RollCommit<'a> {
    /// `<pipeline>/<topic>/<partition>`: whose position the `txn` version is.
    pub app_id: String,
    /// The roll's end position (the next input position to read).
    pub version: u64,
    /// The table files the roll wrote, durable already.
    pub files: &'a [TableFile],
    /// Which transform versions made them, for the commit info.
    pub lineage: &'a [(String, String)],
    /// The roll is a replay of one whose outcome is unknown: look in the log first.
    pub replay: bool,
}

/// What committing a roll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// A new table version holds the roll's files.
    Version(u64),
    /// The log already had this roll (a replay): nothing added.
    Already,
    /// The roll wrote no table file.
    Nothing,
}

/// A pipeline worker's handle on its Delta table.
pub struct DeltaSink {
    name: String,
    pipeline: String,
    table: DeltaTable,
    partitioned: bool,
    /// `txn` versions this sink committed or read, by app id: a roll that is no
    /// replay of an app id seen here cannot be in the log already.
    known: HashMap<String, i64>,
    /// Held while committing: the process's workers commit to a table one at a
    /// time (see [`commit_lock`]).
    lock: Arc<Mutex<()>>,
}

/// One lock per table location in this process. Workers of a pipeline commit
/// to one table; in turn, each reads the log up to date and writes the next
/// version without a conflict to resolve. Across processes the store decides:
/// a log entry is written only if absent (a local file created exclusively,
/// S3's `If-None-Match: *`). (s3s-fs, the tests' S3 server, checks that
/// condition and writes in two steps, so two writers racing in one process
/// could both win there; with this lock they never race.)
pub(crate) fn commit_lock(table: &DeltaTable) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = lock(LOCKS.get_or_init(Default::default));
    locks.entry(table.table_url().to_string()).or_default().clone()
}

impl DeltaSink {
    /// Open `tables/<name>/` as a Delta table, creating it with `file_schema`
    /// (plus the date partition column when `partitioned`) if there is none.
    /// An existing table's schema must match, or evolve per `options`.
    pub fn open(
        native: &Native,
        store: &dyn ObjectStore,
        pipeline: &str,
        name: &str,
        file_schema: &arrow_schema::Schema,
        partitioned: bool,
        options: &DeltaOptions,
    ) -> io::Result<Self> {
        let wanted = delta_schema(file_schema, partitioned).map_err(|e| fail(name, "its schema", e))?;
        let mut table = table_at(native, name)?;
        if let Ok(dir) = table.table_url().to_file_path() {
            std::fs::create_dir_all(&dir).map_err(|e| fail(name, &format!("creating {}", dir.display()), e))?;
        }
        // The process's workers open (create, evolve) a table in turn, as they commit.
        let table_lock = commit_lock(&table);
        let turn = lock(&table_lock);
        // Asked first: loading a table that is not there has delta-rs log an error.
        let exists = block_on(async {
            if !table.verify_deltatable_existence().await? {
                return Ok(false);
            }
            table.load().await.map(|()| true)
        })
        .map_err(|e| fail(name, "reading its log", e))?;
        if !exists {
            super::off_runtime(|| refuse_plain_files(store, name))?;
            block_on(create(&mut table, name, &wanted, partitioned, options))?;
        }
        let mut sink = DeltaSink { name: name.to_owned(), pipeline: pipeline.to_owned(), table, partitioned, known: HashMap::new(), lock: table_lock.clone() };
        sink.reconcile(&wanted, options)?;
        drop(turn);
        Ok(sink)
    }

    /// Bring an existing table's schema and properties in line with the pipeline's, or refuse.
    fn reconcile(&mut self, wanted: &StructType, options: &DeltaOptions) -> io::Result<()> {
        let state = self.table.snapshot().map_err(|e| fail(&self.name, "reading its snapshot", e))?;
        let partitions = state.metadata().partition_columns().to_vec();
        let expected_partitions: Vec<String> = if self.partitioned { vec![DATE_PARTITION.to_owned()] } else { Vec::new() };
        if partitions != expected_partitions {
            return Err(fail(
                &self.name,
                "partitioning",
                format!(
                    "the table is partitioned by {partitions:?}, the pipeline would partition it by {expected_partitions:?}; land into a new table name or change table.partition_by back"
                ),
            ));
        }
        let have = state.schema();
        let diff = SchemaDiff::between(have.as_ref(), wanted);
        if !diff.changed.is_empty() {
            return Err(fail(
                &self.name,
                "schema",
                format!("columns changed type: {}; a Delta table's column cannot change type here: land into a new table name", diff.changed.join(", ")),
            ));
        }
        if !diff.added.is_empty() {
            let names: Vec<&str> = diff.added.iter().map(|f| f.name().as_str()).collect();
            if options.schema_change == SchemaChange::Refuse {
                return Err(fail(
                    &self.name,
                    "schema",
                    format!(
                        "the pipeline's output has columns the table lacks: {}; set table.delta.schema_change = \"evolve\" to add them to the table, or land into a new table name",
                        names.join(", ")
                    ),
                ));
            }
            tracing::info!(table = %self.name, columns = ?names, "adding columns to the Delta table (schema_change = evolve)");
            let added: Vec<StructField> = diff.added.iter().map(|f| StructField::new(f.name(), f.data_type().clone(), true)).collect();
            let table = self.table.clone();
            self.table = block_on(table.add_columns().with_fields(added).into_future()).map_err(|e| fail(&self.name, "adding columns", e))?;
        }
        let interval = self.table.snapshot().map_err(|e| fail(&self.name, "reading its snapshot", e))?.table_config().checkpoint_interval().get();
        if interval != u64::from(options.checkpoint_interval) {
            let table = self.table.clone();
            let properties = HashMap::from([(TableProperty::CheckpointInterval.as_ref().to_owned(), options.checkpoint_interval.to_string())]);
            self.table = block_on(table.set_tbl_properties().with_properties(properties).into_future())
                .map_err(|e| fail(&self.name, "setting delta.checkpointInterval", e))?;
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Add a roll's files in one commit with its `txn` action, unless the log has it already.
    pub fn commit(&mut self, roll: RollCommit<'_>) -> io::Result<Committed> {
        let version =
            i64::try_from(roll.version).map_err(|_| fail(&self.name, "committing", format!("position {} does not fit a Delta txn version", roll.version)))?;
        let table_lock = self.lock.clone();
        let _turn = lock(&table_lock);
        // Up to date with what other workers committed: the commit below then has no conflict to check.
        block_on(self.table.update_incremental(None)).map_err(|e| fail(&self.name, "reading its log", e))?;
        if roll.replay || !self.known.contains_key(&roll.app_id) {
            let seen = block_on(async { self.table.snapshot()?.transaction_version(self.table.log_store().as_ref(), &roll.app_id).await })
                .map_err(|e| fail(&self.name, "reading its log", e))?;
            if let Some(v) = seen {
                self.known.insert(roll.app_id.clone(), v);
                if v >= version {
                    return Ok(Committed::Already);
                }
            }
        }
        if roll.files.is_empty() {
            return Ok(Committed::Nothing);
        }
        let actions = self.adds(roll.files)?;
        let mut info = self.info(roll.lineage);
        info.insert("sluice.input".to_owned(), roll.app_id.clone().into());
        info.insert("sluice.position".to_owned(), version.into());
        let txn = Transaction::new(&roll.app_id, version);
        let partition_by = self.partitioned.then(|| vec![DATE_PARTITION.to_owned()]);
        let committed = self.write(actions, Some(txn), info, DeltaOperation::Write { mode: SaveMode::Append, partition_by, predicate: None })?;
        crate::failpoint::hit("delta.committed");
        self.known.insert(roll.app_id, version);
        Ok(Committed::Version(committed))
    }

    /// Whether the log has the roll of `app_id` ending at `version` (reads the log).
    pub fn has(&mut self, app_id: &str, version: u64) -> io::Result<bool> {
        let version =
            i64::try_from(version).map_err(|_| fail(&self.name, "reading its log", format!("position {version} does not fit a Delta txn version")))?;
        let seen = block_on(async {
            self.table.update_incremental(None).await?;
            self.table.snapshot()?.transaction_version(self.table.log_store().as_ref(), app_id).await
        })
        .map_err(|e| fail(&self.name, "reading its log", e))?;
        if let Some(v) = seen {
            self.known.insert(app_id.to_owned(), v);
        }
        Ok(seen.is_some_and(|v| v >= version))
    }

    /// In one commit, take `remove` (keys of files in the table) out and put
    /// `add` in: a backfill's rewrite of some segments, which readers see all
    /// at once or not at all. `what` says what it was, in the commit info.
    pub fn replace(&mut self, remove: &[String], add: &[TableFile], lineage: &[(String, String)], what: &str) -> io::Result<Committed> {
        let table_lock = self.lock.clone();
        let _turn = lock(&table_lock);
        block_on(self.table.update_incremental(None)).map_err(|e| fail(&self.name, "reading its log", e))?;
        if remove.is_empty() && add.is_empty() {
            return Ok(Committed::Nothing);
        }
        let prefix = crate::sink::layout::table_folder(&self.name);
        let mut removes: HashMap<&str, Action> = HashMap::new();
        {
            let state = self.table.snapshot().map_err(|e| fail(&self.name, "reading its snapshot", e))?;
            let wanted: HashSet<&str> = remove.iter().map(|k| k.strip_prefix(&prefix).unwrap_or(k)).collect();
            for f in state.log_data().iter() {
                if let Some(k) = wanted.get(f.path().as_ref()) {
                    removes.insert(k, Action::Remove(f.remove_action(true)));
                }
            }
        }
        if let Some(gone) = remove.iter().find(|k| !removes.contains_key(k.strip_prefix(&prefix).unwrap_or(k))) {
            return Err(fail(&self.name, "replacing files", format!("{gone} is no longer in the table (compacted or rewritten meanwhile); run it again")));
        }
        let mut actions: Vec<Action> = removes.into_values().collect();
        actions.extend(self.adds(add)?);
        let mut info = self.info(lineage);
        info.insert("sluice.operation".to_owned(), what.into());
        let committed = self.write(actions, None, info, DeltaOperation::Update { predicate: Some(what.to_owned()) })?;
        Ok(Committed::Version(committed))
    }

    /// Keys of the table files the pipeline wrote for the segment of `p`
    /// starting at `start` that the table holds now (any partition; earlier
    /// backfills' files of it too; not replayed dead letters' output).
    pub fn files_of_segment(&self, p: &crate::position::PartitionId, start: u64) -> io::Result<Vec<String>> {
        let prefix = crate::sink::layout::table_folder(&self.name);
        let stem = format!("{}+{}+{start:010}.", p.topic, p.partition);
        let state = self.table.snapshot().map_err(|e| fail(&self.name, "reading its snapshot", e))?;
        Ok(state
            .log_data()
            .iter()
            .filter_map(|f| {
                let path = f.path();
                let name = path.rsplit('/').next()?;
                let tag = name.strip_prefix(&stem)?;
                (!tag.starts_with("replay-")).then(|| format!("{prefix}{path}"))
            })
            .collect())
    }

    /// `add` actions for files the pipeline wrote, with their partition values.
    fn adds(&self, files: &[TableFile]) -> io::Result<Vec<Action>> {
        let prefix = crate::sink::layout::table_folder(&self.name);
        let now = chrono::Utc::now().timestamp_millis();
        files
            .iter()
            .map(|f| {
                let path = f.key.strip_prefix(&prefix).ok_or_else(|| fail(&self.name, "committing", format!("{} is not a file of the table", f.key)))?;
                let partition_values = match (&f.hive, self.partitioned) {
                    (Some(hive), true) => HashMap::from([(DATE_PARTITION.to_owned(), partition_value(hive))]),
                    (None, false) => HashMap::new(),
                    _ => return Err(fail(&self.name, "committing", format!("{} does not match the table's partitioning", f.key))),
                };
                Ok(Action::Add(Add {
                    path: path.to_owned(),
                    partition_values,
                    size: f.bytes as i64,
                    modification_time: now,
                    data_change: true,
                    stats: Some(format!("{{\"numRecords\":{}}}", f.rows)),
                    ..Default::default()
                }))
            })
            .collect()
    }

    /// The commit info: the pipeline and the lineage of what is committed.
    fn info(&self, lineage: &[(String, String)]) -> HashMap<String, serde_json::Value> {
        let mut info = HashMap::from([("sluice.pipeline".to_owned(), serde_json::Value::from(self.pipeline.clone()))]);
        for (k, v) in lineage {
            info.insert(k.clone(), v.clone().into());
        }
        info
    }

    /// Commit `actions` on top of the current snapshot (the caller holds the table's lock).
    fn write(
        &mut self,
        actions: Vec<Action>,
        txn: Option<Transaction>,
        info: HashMap<String, serde_json::Value>,
        operation: DeltaOperation,
    ) -> io::Result<u64> {
        let mut properties = CommitProperties::default().with_metadata(info);
        if let Some(txn) = txn {
            properties = properties.with_application_transaction(txn);
        }
        let done = block_on(async {
            let state = self.table.snapshot()?;
            CommitBuilder::from(properties).with_actions(actions).build(Some(state), self.table.log_store(), operation).await
        })
        .map_err(|e| fail(&self.name, "committing", e))?;
        let version = done.version();
        self.table.state = Some(done.snapshot());
        Ok(version)
    }
}

/// A folder of files with no Delta log (a Parquet table landed before) would
/// be a Delta table that does not show them: say so rather than hide them.
fn refuse_plain_files(store: &dyn ObjectStore, name: &str) -> io::Result<()> {
    let folder = crate::sink::layout::table_folder(name);
    let plain: Vec<String> = store.list(&folder)?.into_iter().filter(|k| !k[folder.len()..].starts_with("_delta_log/")).collect();
    match plain.first() {
        None => Ok(()),
        Some(first) => Err(fail(
            name,
            "creating it",
            format!(
                "{folder} in {} already holds {} files and no Delta log (e.g. {first}), a table landed as plain Parquet: a Delta table there would not show them. Give the Delta table a new name (table.name), or move the folder away",
                store.location(),
                plain.len()
            ),
        )),
    }
}

async fn create(table: &mut DeltaTable, name: &str, schema: &StructType, partitioned: bool, options: &DeltaOptions) -> io::Result<()> {
    let created = table
        .clone()
        .create()
        .with_table_name(name)
        .with_columns(schema.fields().cloned())
        .with_partition_columns(if partitioned { vec![DATE_PARTITION.to_owned()] } else { Vec::new() })
        .with_configuration_property(TableProperty::CheckpointInterval, Some(options.checkpoint_interval.to_string()))
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(t) => {
            *table = t;
            Ok(())
        }
        // Another worker of the pipeline created it first.
        Err(_) if table.load().await.is_ok() => Ok(()),
        Err(e) => Err(fail(name, "creating it", e)),
    }
}

/// How a pipeline's columns differ from a table's.
struct SchemaDiff {
    /// Columns the pipeline writes that the table lacks.
    added: Vec<StructField>,
    /// `name: table type → pipeline type`.
    changed: Vec<String>,
}

impl SchemaDiff {
    fn between(have: &StructType, wanted: &StructType) -> Self {
        let mut added = Vec::new();
        let mut changed = Vec::new();
        let names: HashSet<&String> = have.fields().map(|f| f.name()).collect();
        for f in wanted.fields() {
            match have.field(f.name()) {
                None if !names.contains(f.name()) => added.push(f.clone()),
                Some(h) if h.data_type() != f.data_type() => changed.push(format!("{}: {} → {}", f.name(), h.data_type(), f.data_type())),
                _ => {}
            }
        }
        SchemaDiff { added, changed }
    }
}
