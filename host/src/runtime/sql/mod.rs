//! SQL stages: a `SELECT … FROM input` over each batch's columns, planned once
//! per version with DataFusion and run natively — no sandbox boundary, no JSON
//! between the decoder and the table. A statement is versioned, sampled,
//! shadowed and hot-swapped like a component (its text is the "component"),
//! and must be deterministic, since a replay must land the same rows.

mod config;
mod eval;
mod input;
mod program;
mod udf;

pub use config::SqlStageConfig;
pub use program::{Header, REJECT_COLUMN, SqlError, SqlProgram, is_sql, parse_header};
pub use udf::parse_count;

/// The functions sluice adds to SQL, by name (for docs and `sluice sql functions`).
pub fn function_names() -> Vec<String> {
    udf::all().iter().map(|f| f.name().to_owned()).collect()
}

#[cfg(test)]
mod tests;
