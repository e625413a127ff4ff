//! A Delta table's snapshot as a DataFusion table: exactly the files the log
//! holds now, each with its partition values, scanned in place (projection,
//! row-group pruning, files in parallel) through the landing's object store.

use crate::sink::delta::read::Snapshot;
use crate::store::Native;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

#[derive(Debug)]
pub struct DeltaSnapshotTable {
    store_url: ObjectStoreUrl,
    snapshot: Snapshot,
    /// Each file's object-store path and partition values, in the snapshot's order.
    files: Vec<PartitionedFile>,
}

impl DeltaSnapshotTable {
    /// The snapshot of a table in the landing `native`; `ctx` must have
    /// `native.store` registered under [`DeltaSnapshotTable::store_url`].
    pub fn new(native: &Native, snapshot: Snapshot) -> Result<Self> {
        let store_url = Self::store_url(native)?;
        // Keys are paths under the landing root, which sits at this path in the store.
        let root = native.url.path().trim_start_matches('/');
        let files = snapshot
            .files
            .iter()
            .map(|f| {
                let location = format!("{root}{}", f.key);
                let mut file = PartitionedFile::new(location, f.bytes);
                file.object_meta.location = object_store::path::Path::parse(file.object_meta.location.as_ref())
                    .unwrap_or_else(|_| object_store::path::Path::from(format!("{root}{}", f.key)));
                file.partition_values = snapshot.partition_columns.iter().map(|_| date_value(f.date.as_deref())).collect::<Result<_>>()?;
                Ok(file)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DeltaSnapshotTable { store_url, snapshot, files })
    }

    /// Where the session finds the landing's store: `file://`, `s3://bucket`.
    pub fn store_url(native: &Native) -> Result<ObjectStoreUrl> {
        let u = &native.url;
        ObjectStoreUrl::parse(format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()))
    }
}

/// A date partition value (`2020-08-28`) as DataFusion's Date32, null for the null partition.
fn date_value(date: Option<&str>) -> Result<ScalarValue> {
    match date {
        None => Ok(ScalarValue::Date32(None)),
        Some(d) => {
            let day = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|e| DataFusionError::Execution(format!("partition value `{d}`: {e}")))?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date");
            Ok(ScalarValue::Date32(Some((day - epoch).num_days() as i32)))
        }
    }
}

#[async_trait::async_trait]
impl TableProvider for DeltaSnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.snapshot.table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(&self, state: &dyn Session, projection: Option<&Vec<usize>>, _filters: &[Expr], limit: Option<usize>) -> Result<Arc<dyn ExecutionPlan>> {
        let table_schema = TableSchema::builder(self.snapshot.file_schema.clone()).with_table_partition_cols(self.snapshot.partition_columns.clone()).build();
        let source = Arc::new(ParquetSource::new(table_schema));
        // Files spread over the session's partitions, largest first, so each reader gets a fair share.
        let n = state.config().target_partitions().max(1).min(self.files.len().max(1));
        let mut files = self.files.clone();
        files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
        let mut sizes = vec![0u64; n];
        for f in files {
            let i = (0..n).min_by_key(|i| sizes[*i]).expect("at least one group");
            sizes[i] += f.object_meta.size;
            groups[i].push(f);
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups.into_iter().filter(|g| !g.is_empty()).map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
