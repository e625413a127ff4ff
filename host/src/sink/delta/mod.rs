//! Delta Lake tables through delta-rs: a table's Parquet files are written by
//! the segment like any other table object, then each roll adds its files in
//! one Delta commit carrying a `txn` action (application id per pipeline and
//! input partition, version = the roll's end position). A roll replayed after a
//! crash finds its version committed and adds nothing twice.
//!
//! - [`commit`]: opening (creating, checking the schema of) a table and committing rolls;
//! - [`read`]: a table's current snapshot (schema, files, partition values) for readers;
//! - [`maintain`]: compaction and vacuum.
//!
//! The table lives where Parquet tables do (`tables/<name>/`), on the landing's
//! own store seen through `object_store` ([`crate::store::Native`]): a local
//! directory, or S3 with `If-None-Match` puts for the log.

pub mod commit;
pub mod maintain;
pub mod read;

use crate::store::Native;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::{DataType, StructField, StructType};
use deltalake_core::logstore::{LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories};
use deltalake_core::{DeltaTable, DeltaTableBuilder};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Once;

pub use commit::{DeltaSink, RollCommit};

/// The partition column a table partitioned by a timestamp gets (its UTC date),
/// as the `dt=YYYY-MM-DD` folders of Parquet tables.
pub const DATE_PARTITION: &str = "dt";
/// A null partition value's folder name (Hive's and Spark's).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// `[pipeline.table.delta]`: how a Delta table is kept.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaOptions {
    /// When the pipeline's output schema differs from the table's: `refuse`
    /// (the pipeline does not start, and says which columns differ) or
    /// `evolve` (columns the table lacks are added to it, nullable, in one
    /// commit). A column whose type changed is refused either way.
    pub schema_change: SchemaChange,
    /// A checkpoint of the log (one Parquet file readers start from) every
    /// this many commits. Each roll of each input partition is a commit.
    pub checkpoint_interval: u32,
    /// `vacuum` deletes files no longer in the table once they have been out
    /// of it this long (readers of older versions need them until then).
    pub vacuum_retention_hours: u64,
    /// `compact` rewrites a closed date partition's files when it has more
    /// than one smaller than this, into files of about this size.
    pub target_file_mib: u64,
}

impl Default for DeltaOptions {
    fn default() -> Self {
        DeltaOptions { schema_change: SchemaChange::Refuse, checkpoint_interval: 10, vacuum_retention_hours: 168, target_file_mib: 128 }
    }
}

impl DeltaOptions {
    pub fn validate(&self) -> Result<(), String> {
        if self.checkpoint_interval == 0 {
            return Err("table.delta.checkpoint_interval must be at least 1".into());
        }
        if self.target_file_mib == 0 || self.target_file_mib > 4096 {
            return Err(format!("table.delta.target_file_mib must be between 1 and 4096, got {}", self.target_file_mib));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SchemaChange {
    #[default]
    Refuse,
    Evolve,
}

pub(crate) use crate::sync::{block_on, off_runtime};

/// delta-rs' error as an I/O error naming the table.
pub(crate) fn fail(table: &str, doing: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("Delta table `{table}`: {doing}: {e}"))
}

/// delta-rs' plain log store (commits are puts that fail when the entry
/// exists) for `s3://` tables: the landing's S3 store sends those puts with
/// `If-None-Match: *` ([`crate::store::s3`]), which S3 and the S3-compatible
/// stores that support conditional writes honour, so no lock table is needed.
struct ConditionalPutLogStore;

impl LogStoreFactory for ConditionalPutLogStore {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &url::Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<std::sync::Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

/// The table `tables/<name>/` of a landing store, not yet loaded.
pub(crate) fn table_at(native: &Native, name: &str) -> io::Result<DeltaTable> {
    static S3_LOGS: Once = Once::new();
    S3_LOGS.call_once(|| {
        let s3 = url::Url::parse("s3://").expect("a scheme is a URL");
        logstore_factories().entry(s3).or_insert_with(|| std::sync::Arc::new(ConditionalPutLogStore));
    });
    let url = native.url_of(&crate::sink::layout::table_folder(name))?;
    DeltaTableBuilder::from_url(url)
        .and_then(|b| b.with_storage_backend(native.store.clone(), native.url.clone()).build())
        .map_err(|e| fail(name, "opening", e))
}

/// For a table in a local directory: whether its folder is missing (delta-rs
/// refuses to look for a log there). Object stores have no folders to miss.
pub(crate) fn folder_missing(table: &DeltaTable) -> bool {
    table.table_url().to_file_path().is_ok_and(|p| !p.exists())
}

/// The table's schema in Delta terms: the Parquet files' columns, plus the
/// date partition column when the table is partitioned.
pub fn delta_schema(file_schema: &arrow_schema::Schema, partitioned: bool) -> Result<StructType, String> {
    let mut fields = Vec::with_capacity(file_schema.fields().len() + 1);
    for f in file_schema.fields() {
        // sluice's own field metadata (dictionary hints) is no business of the table's readers;
        // a UTC timestamp is a Delta `timestamp` however its zone is spelled.
        let mut plain = f.as_ref().clone().with_metadata(Default::default());
        if let arrow_schema::DataType::Timestamp(unit, Some(_)) = f.data_type() {
            plain = plain.with_data_type(arrow_schema::DataType::Timestamp(*unit, Some("UTC".into())));
        }
        let field: StructField = (&plain).try_into_kernel().map_err(|e| format!("column `{}` ({}) has no Delta type: {e}", f.name(), f.data_type()))?;
        fields.push(field);
    }
    if partitioned {
        if file_schema.field_with_name(DATE_PARTITION).is_ok() {
            return Err(format!("the table has a column `{DATE_PARTITION}`, which is the name of its date partition column; rename it"));
        }
        fields.push(StructField::new(DATE_PARTITION, DataType::DATE, true));
    }
    StructType::try_new(fields).map_err(|e| e.to_string())
}

/// `dt=2020-08-28` → the Delta partition value `2020-08-28` (`None` for the null partition).
pub fn partition_value(hive: &str) -> Option<String> {
    let value = hive.strip_prefix(DATE_PARTITION)?.strip_prefix('=')?;
    (value != NULL_PARTITION).then(|| value.to_owned())
}

#[cfg(test)]
mod tests;
