//! The batch layer: SQL over the landed tables (DataFusion), the nine reports
//! of SPEC section 6 with their HTML summary, and backfills that re-run landed
//! raw data through a chosen transform version.

pub mod backfill;
pub mod catalog;
pub mod definitions;
pub mod delta_table;
pub mod html;
pub mod job;
pub mod output;
pub mod run;

pub use catalog::Landing;
pub use definitions::ReportResult;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// Run one SQL statement over the landed tables.
pub async fn query(landing: &Landing, sql: &str) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let (ctx, tables) = catalog::session(landing).await?;
    let df = ctx.sql(sql).await.map_err(|e| {
        anyhow::anyhow!("{e}\n(tables under {}: {})", landing.location(), if tables.is_empty() { "none".to_owned() } else { tables.join(", ") })
    })?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    Ok((schema, df.collect().await?))
}

#[cfg(test)]
mod tests;
