//! The functions windowed statements name: `TUMBLE` and `HOP` (placeholders
//! the planner accepts in GROUP BY; the host assigns records to windows) and
//! `percentile_disc` (computed by the windows' accumulators).

use arrow_schema::DataType;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, ScalarUDF, Volatility, create_udf};
use std::sync::Arc;

/// Names of the window functions (lowercase, as the planner normalizes them).
pub(super) const TUMBLE: &str = "tumble";
pub(super) const HOP: &str = "hop";

/// `TUMBLE(time, size)` and `HOP(time, slide, size)`: they name the window in
/// GROUP BY and are never evaluated (the host assigns records to windows).
pub fn placeholders() -> Vec<ScalarUDF> {
    let refuse: datafusion::logical_expr::ScalarFunctionImplementation =
        Arc::new(|_| Err(datafusion::common::DataFusionError::Plan("TUMBLE and HOP name the window in GROUP BY; they have no value of their own".into())));
    let ts = DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("+00:00".into()));
    let interval = DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano);
    vec![
        create_udf(TUMBLE, vec![ts.clone(), interval.clone()], ts.clone(), Volatility::Immutable, refuse.clone()),
        create_udf(HOP, vec![ts.clone(), interval.clone(), interval], ts, Volatility::Immutable, refuse),
    ]
}

/// `percentile_disc(x, p)`: the nearest-rank percentile (the value at rank
/// ceil(p·n) of the ascending values; `p = 0.5` is the lower median the
/// reports use). Exact: every value is kept in the window state, which the
/// pipeline's `max_state_bytes` bounds. Computed by the windows only.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PercentileDisc {
    signature: datafusion::logical_expr::Signature,
}

impl datafusion::logical_expr::AggregateUDFImpl for PercentileDisc {
    fn name(&self) -> &str {
        "percentile_disc"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Null))
    }

    fn accumulator(
        &self,
        _: datafusion::logical_expr::function::AccumulatorArgs,
    ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::Accumulator>> {
        Err(datafusion::common::DataFusionError::Plan("percentile_disc runs in windowed statements only".into()))
    }
}

/// The aggregates sluice adds (for windows).
pub fn aggregate_functions() -> Vec<datafusion::logical_expr::AggregateUDF> {
    let signature = datafusion::logical_expr::Signature::any(2, Volatility::Immutable);
    vec![datafusion::logical_expr::AggregateUDF::from(PercentileDisc { signature })]
}

/// Whether an expression uses TUMBLE or HOP.
pub(super) fn names_a_window(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::ScalarFunction(f) if matches!(f.func.name(), TUMBLE | HOP)))).unwrap_or(false)
}
