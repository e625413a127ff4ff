//! SQL stages: a `SELECT … FROM input` over each batch's columns, planned once
//! per version with DataFusion and run natively — no sandbox boundary, no JSON
//! between the decoder and the table. A statement is versioned, sampled,
//! shadowed and hot-swapped like a component (its text is the "component"),
//! and must be deterministic, since a replay must land the same rows.

mod accumulate;
mod error;
mod eval;
mod fold;
mod input;
mod join;
mod program;
mod udf;
mod window;
mod window_functions;

pub use error::SqlError;
pub use join::{JoinSide, JoinSpec};
pub use program::{Header, SqlProgram, is_sql};
pub use window::{SqlAggregate, WindowSpec};

/// A statement, compiled into the kind of stage it makes.
pub enum Compiled {
    /// Row by row: a transform.
    Rows(Box<SqlProgram>),
    /// Grouped by a window: an aggregate over the pipeline's windows.
    Windows(Box<SqlAggregate>),
}

/// Plan `text` and compile it into a transform or a windowed aggregate.
pub fn compile(text: &str) -> Result<Compiled, SqlError> {
    let planned = program::plan(text)?;
    if program::groups(&planned.plan) {
        return SqlAggregate::compile(planned).map(|a| Compiled::Windows(Box::new(a)));
    }
    let program::Planned { header, ctx, fields, plan } = planned;
    SqlProgram::from_plan(header, &ctx, fields, &plan).map(|p| Compiled::Rows(Box::new(p)))
}

/// The functions sluice adds to SQL, by name (for docs and `sluice sql functions`).
pub fn function_names() -> Vec<String> {
    udf::all().iter().map(|f| f.name().to_owned()).collect()
}

#[cfg(test)]
mod tests;
