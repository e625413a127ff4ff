//! Where commands look when they are not told: the data directory of `sluice
//! serve`'s default config, else the most recent `sluice demo` run. A new user
//! runs `sluice demo` and then `sluice report`, `sluice query` or `sluice
//! pipeline list` with no flags; those must find what the demo made.

use std::path::{Path, PathBuf};

/// The data directory a config without `data_dir` uses.
pub const SERVE_DATA_DIR: &str = "sluice-data";
/// Where `sluice demo` makes a folder per run (`run-<unix seconds>`).
pub const DEMO_ROOT: &str = "sluice-demo";

/// A data directory found by default, and what it is (for the message that says
/// which one a command reads).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub dir: PathBuf,
    pub what: &'static str,
}

/// The default data directory under `cwd`: `sluice-data` when it exists, else the
/// newest `sluice-demo/run-*`.
pub fn default_data_dir(cwd: &Path) -> Option<Found> {
    let serve = cwd.join(SERVE_DATA_DIR);
    if serve.is_dir() {
        return Some(Found { dir: PathBuf::from(SERVE_DATA_DIR), what: "the default data directory" });
    }
    latest_demo_run(cwd).map(|dir| Found { dir, what: "the most recent `sluice demo` run" })
}

/// [`default_data_dir`] of the current directory.
pub fn default_data_dir_here() -> anyhow::Result<Option<Found>> {
    let cwd = std::env::current_dir().map_err(|e| anyhow::anyhow!("reading the current directory: {e}"))?;
    Ok(default_data_dir(&cwd))
}

/// `sluice-demo/run-<n>` with the largest `n`, relative to `cwd`.
pub fn latest_demo_run(cwd: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(cwd.join(DEMO_ROOT)).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: u64 = name.strip_prefix("run-")?.parse().ok()?;
            Some((n, name))
        })
        .max()
        .map(|(_, name)| Path::new(DEMO_ROOT).join(name))
}

/// A new folder for a demo run.
pub fn new_demo_run() -> PathBuf {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Path::new(DEMO_ROOT).join(format!("run-{stamp}"))
}

/// How to invoke this binary in a printed hint: `sluice`, or `cargo run
/// --release --` when it runs from a cargo target directory (as the README's
/// first command does), so a pasted hint works either way.
pub fn invocation() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let in_target = exe.components().any(|c| c.as_os_str() == "target");
    match exe.parent().and_then(Path::file_name).and_then(|p| p.to_str()) {
        Some("release") if in_target => "cargo run --release --".into(),
        Some("debug") if in_target => "cargo run --".into(),
        _ => "sluice".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_serve_data_dir_then_the_newest_demo_run() {
        let cwd = tempfile::tempdir().expect("temp dir");
        assert_eq!(default_data_dir(cwd.path()), None);
        for run in ["run-99", "run-1000", "run-200", "notes"] {
            std::fs::create_dir_all(cwd.path().join(DEMO_ROOT).join(run)).expect("mkdir");
        }
        std::fs::write(cwd.path().join(DEMO_ROOT).join("run-5000"), b"a file, not a run").expect("write");
        let found = default_data_dir(cwd.path()).expect("a demo run");
        assert_eq!(found.dir, Path::new(DEMO_ROOT).join("run-1000"));
        std::fs::create_dir(cwd.path().join(SERVE_DATA_DIR)).expect("mkdir");
        assert_eq!(default_data_dir(cwd.path()).expect("serve dir").dir, PathBuf::from(SERVE_DATA_DIR));
    }
}
