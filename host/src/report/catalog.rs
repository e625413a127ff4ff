//! The landed tables as SQL tables: every folder under `tables/` of the landing
//! store is registered under its name (`pin`, `geo`, `user`, …).
//!
//! A Delta table (a folder with a `_delta_log/`) is read through its current
//! snapshot: the files its log holds, with their partition values (the date
//! partition column `dt`), scanned in place wherever the landing is.
//!
//! A local landing directory is scanned in place by DataFusion (projection and
//! row-group pruning, files read in parallel). Any other store (S3) is read
//! through the same [`ObjectStore`] the sink writes with, so the credentials,
//! endpoint and retries configured for landing apply: its Parquet objects are
//! fetched and decoded into memory tables.

use super::delta_table::DeltaSnapshotTable;
use crate::sink::layout;
use crate::store::ObjectStore;
use anyhow::Context;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the landed tables are read from.
#[derive(Clone)]
pub enum Landing {
    /// A local landing directory (the layout of the bucket, on disk).
    Dir(PathBuf),
    /// Any object store, e.g. S3; objects are fetched through it.
    Store(Arc<dyn ObjectStore>),
}

impl Landing {
    pub fn location(&self) -> String {
        match self {
            Landing::Dir(d) => d.display().to_string(),
            Landing::Store(s) => s.location(),
        }
    }
}

/// A SQL session with every landed table registered. Returns the table names.
pub async fn session(landing: &Landing) -> anyhow::Result<(SessionContext, Vec<String>)> {
    // The information schema makes `SHOW TABLES` and `SHOW COLUMNS FROM pin` work in `sluice query`.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    let mut names = Vec::new();
    match landing {
        Landing::Dir(root) => {
            let tables = root.join("tables");
            let entries = match std::fs::read_dir(&tables) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ctx, names)),
                Err(e) => return Err(e).with_context(|| format!("listing {}", tables.display())),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !entry.file_type()?.is_dir() || name.starts_with('.') {
                    continue;
                }
                if entry.path().join("_delta_log").is_dir() {
                    let local = crate::store::local::LocalStore::new(root)?;
                    register_delta(&ctx, &local.native().context("the landing directory as a file URL")?, &name).await?;
                    names.push(name);
                    continue;
                }
                if !has_parquet(&entry.path()) {
                    continue;
                }
                let dir = format!("{}/", entry.path().display());
                ctx.register_parquet(&name, &dir, ParquetReadOptions::default()).await.with_context(|| format!("reading table `{name}` at {dir}"))?;
                names.push(name);
            }
        }
        Landing::Store(store) => {
            let delta = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || delta_tables(store.as_ref())).await.context("listing tables in the store")??
            };
            if !delta.is_empty() {
                let native = store.native().with_context(|| format!("{} holds Delta tables but cannot be read as an object store", store.location()))?;
                for name in &delta {
                    register_delta(&ctx, &native, name).await?;
                    names.push(name.clone());
                }
            }
            let store = store.clone();
            let skip = delta.clone();
            let tables = tokio::task::spawn_blocking(move || read_tables(store.as_ref(), &skip)).await.context("reading tables from the store")??;
            for (name, (schema, batches)) in tables {
                let table = MemTable::try_new(schema, vec![batches]).with_context(|| format!("table `{name}`: its objects disagree on the schema"))?;
                ctx.register_table(&name, Arc::new(table))?;
                names.push(name);
            }
        }
    }
    names.sort();
    Ok((ctx, names))
}

/// Register the Delta table `tables/<name>/` through its current snapshot.
async fn register_delta(ctx: &SessionContext, native: &crate::store::Native, name: &str) -> anyhow::Result<()> {
    let snapshot = crate::sink::delta::read::snapshot(native, name)
        .await
        .with_context(|| format!("reading the Delta table `{name}`"))?
        .with_context(|| format!("tables/{name}/ has a _delta_log/ but no Delta table in it"))?;
    let url = DeltaSnapshotTable::store_url(native)?;
    ctx.register_object_store(url.as_ref(), native.store.clone());
    let table = DeltaSnapshotTable::new(native, snapshot)?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Tables in the store that are Delta tables (have a log).
fn delta_tables(store: &dyn ObjectStore) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = store
        .list(layout::TABLES)
        .with_context(|| format!("listing {} in {}", layout::TABLES, store.location()))?
        .iter()
        .filter(|k| k.contains("/_delta_log/"))
        .filter_map(|k| layout::table_of(k).map(str::to_owned))
        .collect();
    out.dedup();
    Ok(out)
}

/// Whether a table folder holds any Parquet file (tables landed as JSON lines only are skipped).
fn has_parquet(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        (!name.starts_with('.') && name.ends_with(".parquet")) || (p.is_dir() && has_parquet(&p))
    })
}

type Tables = BTreeMap<String, (datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>)>;

/// Every Parquet object under `tables/<name>/`, decoded, by table name (but `skip`'s).
fn read_tables(store: &dyn ObjectStore, skip: &[String]) -> anyhow::Result<Tables> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut out = Tables::new();
    for key in store.list(layout::TABLES).with_context(|| format!("listing {} in {}", layout::TABLES, store.location()))? {
        let Some(name) = layout::table_of(&key) else { continue };
        if !key.ends_with(".parquet") || skip.iter().any(|s| s == name) {
            continue;
        }
        let bytes = bytes::Bytes::from(store.get(&key).with_context(|| format!("reading {key}"))?);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).with_context(|| format!("{key} is not readable Parquet"))?.build()?;
        let schema = datafusion::arrow::record_batch::RecordBatchReader::schema(&reader);
        let entry = out.entry(name.to_owned()).or_insert_with(|| (schema.clone(), Vec::new()));
        for batch in reader {
            let batch = batch.with_context(|| format!("decoding {key}"))?;
            // Objects written before a column was added: widen to the first schema seen.
            let batch = if batch.schema() == entry.0 {
                batch
            } else {
                crate::sink::parquet::align(&batch, &entry.0).map_err(anyhow::Error::msg).with_context(|| format!("{key}: schema differs from the table's"))?
            };
            entry.1.push(batch);
        }
    }
    Ok(out)
}
