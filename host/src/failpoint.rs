//! Crash injection for recovery tests: `SLUICE_CRASH_AT=<point>:<n>` aborts the
//! process (no unwinding, no flushing, like `kill -9`) the n-th time `<point>`
//! is reached. Unset, a check costs one load of a cached value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static PLAN: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn plan() -> &'static Option<(String, u64)> {
    PLAN.get_or_init(|| {
        let v = std::env::var("SLUICE_CRASH_AT").ok()?;
        let (point, n) = v.rsplit_once(':')?;
        Some((point.to_owned(), n.parse().ok()?))
    })
}

/// Abort here if the crash plan names this point and its count is reached.
pub fn hit(point: &str) {
    if let Some((p, n)) = plan()
        && p == point
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("SLUICE_CRASH_AT: aborting at {point} (hit {n})");
        std::process::abort();
    }
}
