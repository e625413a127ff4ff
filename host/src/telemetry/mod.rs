//! Logs (tracing) and metrics (Prometheus).

pub mod metrics;

pub use metrics::metrics;

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the global log subscriber. `RUST_LOG` overrides the default level (`info`).
/// Log to stderr at `default_level` (`RUST_LOG` overrides it).
pub fn init_logging(json: bool, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    // A second init (tests, embedding) is harmless: keep the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.compact().try_init() };
}

/// An error with the whole chain of its causes, `outer: inner: innermost`.
/// The AWS SDK's own Display is terse ("service error"); its causes say what happened.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
