//! The Delta tables' upkeep as named jobs: `compact` (small files of closed
//! date partitions rewritten into large ones, one commit per table) and
//! `vacuum` (files out of a table longer than its retention deleted). Each
//! runs over every Delta table of the pipelines, or the one named in the
//! body: `{"table": "geo"}`.

use super::{Job, JobContext};
use crate::pipeline::config::TableFormat;
use crate::pipeline::manager::PipelineManager;
use crate::sink::delta::{DeltaOptions, maintain};
use crate::store::ObjectStore;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upkeep {
    Compact,
    Vacuum,
}

pub struct DeltaTablesJob {
    pub upkeep: Upkeep,
    pub store: Arc<dyn ObjectStore>,
    pub pipelines: Arc<dyn PipelineManager>,
}

impl DeltaTablesJob {
    /// `(table, options)` of every Delta table a pipeline lands, by name.
    fn tables(&self) -> Vec<(String, DeltaOptions)> {
        let mut out: Vec<(String, DeltaOptions)> = Vec::new();
        for (_, handle) in self.pipelines.list() {
            if let Some(t) = &handle.config.table
                && t.formats.contains(&TableFormat::Delta)
                && !out.iter().any(|(n, _)| n == &t.name)
            {
                out.push((t.name.clone(), t.delta.clone().unwrap_or_default()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Job for DeltaTablesJob {
    fn description(&self) -> &str {
        match self.upkeep {
            Upkeep::Compact => {
                "Rewrite the small files of each Delta table's closed date partitions (before today, UTC) into files of table.delta.target_file_mib, \
                 in one commit per table; rows stay the same. Body (optional): {\"table\": \"geo\"}"
            }
            Upkeep::Vacuum => {
                "Delete files that left a Delta table (compacted away) longer ago than table.delta.vacuum_retention_hours. Body (optional): {\"table\": \"geo\"}"
            }
        }
    }

    fn run(&self, ctx: &JobContext) -> anyhow::Result<String> {
        let native = self.store.native().ok_or_else(|| anyhow::anyhow!("{} cannot hold Delta tables (a local directory or S3 can)", self.store.location()))?;
        let mut tables = self.tables();
        if let Some(only) = ctx.params().get("table").and_then(|t| t.as_str()) {
            let known: Vec<String> = tables.iter().map(|(n, _)| n.clone()).collect();
            tables.retain(|(n, _)| n == only);
            anyhow::ensure!(
                !tables.is_empty(),
                "no Delta table named `{only}` (Delta tables: {})",
                if known.is_empty() { "none; set table.format = \"delta\" on a pipeline".to_owned() } else { known.join(", ") }
            );
        }
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let mut summary = Vec::new();
        for (i, (name, options)) in tables.iter().enumerate() {
            let share = |f: f64| ctx.progress((i as f64 + f) / tables.len() as f64);
            match self.upkeep {
                Upkeep::Compact => {
                    ctx.log(format!("compacting `{name}`: closed partitions before {today}, files under {} MiB", options.target_file_mib));
                    let done = maintain::compact(&native, self.store.as_ref(), name, options.target_file_mib << 20, &today, &share)?;
                    let line = match done.version {
                        Some(v) => format!(
                            "`{name}`: {} files into {} in {} partitions ({} rows), version {v}",
                            done.files_removed,
                            done.files_added,
                            done.partitions.len(),
                            done.rows
                        ),
                        None => format!("`{name}`: nothing to compact"),
                    };
                    ctx.log(line.clone());
                    summary.push(line);
                }
                Upkeep::Vacuum => {
                    ctx.log(format!("vacuuming `{name}`: files out of the table for over {} hours", options.vacuum_retention_hours));
                    let deleted = maintain::vacuum(&native, name, options.vacuum_retention_hours)?;
                    for f in deleted.iter().take(50) {
                        ctx.log(format!("deleted {f}"));
                    }
                    summary.push(format!("`{name}`: {} files deleted", deleted.len()));
                }
            }
            share(1.0);
        }
        if summary.is_empty() {
            return Ok("no Delta tables (set table.format = \"delta\" on a pipeline)".into());
        }
        Ok(summary.join("; "))
    }
}
