//! Writing a transform from zero to live: `sluice transform new`, `build`,
//! `test` and `deploy` over a transform crate outside the sluice repository.
//!
//! The crate carries the SDK sources and the WIT contract of the sluice that
//! made it (see [`scaffold`]), so it builds on any machine with the Rust
//! package registry and speaks exactly this sluice's contract.

pub mod build;
pub mod deploy;
pub mod guest_target;
pub mod lines;
pub mod scaffold;
pub mod test;

use anyhow::Context;
use std::path::{Path, PathBuf};

use guest_target::GUEST_TARGET;

/// A transform crate on disk.
pub struct TransformCrate {
    pub dir: PathBuf,
    /// The package name (`my-transform`).
    pub package: String,
}

impl TransformCrate {
    /// The crate in `dir`, read from its `Cargo.toml`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("no transform crate at {}: reading {} (make one with `sluice transform new NAME`)", dir.display(), manifest.display()))?;
        let doc: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let package = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("{} has no [package] name", manifest.display()))?
            .to_owned();
        Ok(TransformCrate { dir: dir.to_path_buf(), package })
    }

    /// Where cargo puts the component: `CARGO_TARGET_DIR` (or `<crate>/target`),
    /// then `wasm32-wasip2/release/<package with underscores>.wasm`.
    pub fn component_path(&self) -> PathBuf {
        self.component_path_with(std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
    }

    /// [`Self::component_path`] for a given `CARGO_TARGET_DIR`: cargo, run in
    /// the crate, takes a relative one as relative to the crate.
    fn component_path_with(&self, target_dir: Option<PathBuf>) -> PathBuf {
        let target = match target_dir {
            Some(t) if t.is_relative() => self.dir.join(t),
            Some(t) => t,
            None => self.dir.join("target"),
        };
        target.join(GUEST_TARGET).join("release").join(format!("{}.wasm", self.package.replace('-', "_")))
    }

    /// The built component's bytes, or an error saying to build it.
    pub fn component(&self) -> anyhow::Result<Vec<u8>> {
        let path = self.component_path();
        std::fs::read(&path).with_context(|| format!("no component at {}: build it first with `sluice transform build {}`", path.display(), self.dir.display()))
    }

    /// The crate's golden samples (`samples.json`), none when the file is absent.
    pub fn samples(&self) -> anyhow::Result<Vec<crate::runtime::registry::GoldenSample>> {
        let path = self.dir.join("samples.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!("{}: samples must be a list of {{\"input\": …, \"output\": [...]}} or {{\"input\": …, \"rejected\": true}}", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_is_where_cargo_puts_it() {
        let krate = TransformCrate { dir: PathBuf::from("rules"), package: "my-rules".into() };
        let wasm = Path::new("wasm32-wasip2/release/my_rules.wasm");
        assert_eq!(krate.component_path_with(None), Path::new("rules/target").join(wasm));
        assert_eq!(krate.component_path_with(Some("out".into())), Path::new("rules/out").join(wasm));
        assert_eq!(krate.component_path_with(Some("/tmp/t".into())), Path::new("/tmp/t").join(wasm));
    }
}
