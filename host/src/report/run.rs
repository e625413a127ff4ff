//! One report run: every report executed over the landed tables, each result
//! written as Parquet and CSV under `reports/<name>/run=<run id>/`, and an HTML
//! summary with a chart per report under `reports/summary/run=<run id>/`.

use super::catalog::{self, Landing};
use super::definitions::{self, ReportResult};
use super::output::{self, Format};
use crate::sink::layout;
use crate::store::ObjectStore;
use anyhow::Context;
use datafusion::arrow::datatypes::SchemaRef;
use std::sync::Arc;

/// The tables every report reads.
pub const INPUT_TABLES: [&str; 3] = ["pin", "geo", "user"];

/// A run's id, also its folder name: `run=<UTC time>`.
pub fn run_id_now() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// Execute every report. `progress(done, total, name)` is called after each.
pub async fn execute(landing: &Landing, progress: &(dyn Fn(usize, usize, &str) + Sync)) -> anyhow::Result<Vec<ReportResult>> {
    let (ctx, tables) = catalog::session(landing).await?;
    let missing: Vec<&str> = INPUT_TABLES.iter().copied().filter(|t| !tables.iter().any(|n| n == t)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "no table {} under {}/tables (found: {}); the reports need the cleaned pin, geo and user tables landed as Parquet",
            missing.join(", "),
            landing.location(),
            if tables.is_empty() { "none".to_owned() } else { tables.join(", ") }
        );
    }
    let defs = definitions::all();
    let mut out = Vec::with_capacity(defs.len());
    for (i, def) in defs.iter().enumerate() {
        let df = ctx.sql(&def.sql).await.with_context(|| format!("planning report {}", def.name))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.with_context(|| format!("running report {}", def.name))?;
        out.push(ReportResult { name: def.name, title: def.title, schema, batches });
        progress(i + 1, defs.len(), def.name);
    }
    Ok(out)
}

/// Write each result (Parquet and CSV) and the HTML summary. Returns the keys written.
/// Blocking: call from a thread outside the async workers.
pub fn write(store: &dyn ObjectStore, run_id: &str, results: &[ReportResult]) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut put = |key: String, bytes: &[u8]| -> anyhow::Result<()> {
        let mut w = store.create(&key).with_context(|| format!("creating {key}"))?;
        std::io::Write::write_all(&mut w, bytes)?;
        w.finish(&[("sluice.report.run".to_owned(), run_id.to_owned())]).with_context(|| format!("writing {key}"))?;
        keys.push(key);
        Ok(())
    };
    for r in results {
        for (format, ext) in [(Format::Parquet, "parquet"), (Format::Csv, "csv")] {
            put(layout::report_object(r.name, run_id, ext), &output::to_bytes(format, &r.schema, &r.batches)?)?;
        }
    }
    put(summary_key(run_id), super::html::summary(run_id, &store.location(), results).as_bytes())?;
    Ok(keys)
}

pub fn summary_key(run_id: &str) -> String {
    layout::report_summary(run_id)
}

/// The latest HTML summary in the store, if any run has written one.
pub fn latest_summary(store: &dyn ObjectStore) -> std::io::Result<Option<Vec<u8>>> {
    // Run ids are UTC times in a sortable form, and list() is sorted.
    match store.list(layout::REPORT_SUMMARIES)?.into_iter().rfind(|k| k.ends_with("/index.html")) {
        Some(key) => store.get(&key).map(Some),
        None => Ok(None),
    }
}
