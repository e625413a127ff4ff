//! `sluice transform new NAME`: a transform crate that builds on a fresh machine.
//!
//! How the crate reaches the SDK: this binary carries the SDK's sources and the
//! WIT contract (`include_str!`) and writes them next to the crate, under
//! `sdk/sluice-guest/` and `wit/`, as a path dependency. So the crate needs only
//! the Rust package registry (for serde and wit-bindgen), builds offline once
//! those are cached, and always speaks the contract of the sluice that made it,
//! which is the one it is deployed to. A git dependency would need network
//! access to a repository, and a registry release would drift from the binary.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The kind of component to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A record transform: each record in, zero or more records out, or refused.
    Transform,
    /// A windowed aggregate: state per group key, rows per closed window.
    Aggregate,
    /// A transform that emits an action record only when its condition holds.
    Detector,
}

/// The SDK as this binary was built with it: `(path under sdk/sluice-guest, content)`.
const SDK_FILES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../../guest-transforms/sdk/src/lib.rs")),
    ("src/aggregate.rs", include_str!("../../../../guest-transforms/sdk/src/aggregate.rs")),
    ("src/batch.rs", include_str!("../../../../guest-transforms/sdk/src/batch.rs")),
    ("src/json.rs", include_str!("../../../../guest-transforms/sdk/src/json.rs")),
    ("src/text.rs", include_str!("../../../../guest-transforms/sdk/src/text.rs")),
    ("src/time.rs", include_str!("../../../../guest-transforms/sdk/src/time.rs")),
    ("src/wasm.rs", include_str!("../../../../guest-transforms/sdk/src/wasm.rs")),
    ("src/wasm_aggregate.rs", include_str!("../../../../guest-transforms/sdk/src/wasm_aggregate.rs")),
    ("src/wasm_columns.rs", include_str!("../../../../guest-transforms/sdk/src/wasm_columns.rs")),
    ("src/columns/mod.rs", include_str!("../../../../guest-transforms/sdk/src/columns/mod.rs")),
    ("src/columns/decode.rs", include_str!("../../../../guest-transforms/sdk/src/columns/decode.rs")),
    ("src/columns/read.rs", include_str!("../../../../guest-transforms/sdk/src/columns/read.rs")),
    ("src/columns/write.rs", include_str!("../../../../guest-transforms/sdk/src/columns/write.rs")),
    ("src/detect.rs", include_str!("../../../../guest-transforms/sdk/src/detect.rs")),
];

/// The WIT contract, both versions; the SDK's bindings read them from `../../wit`.
const WIT: &str = include_str!("../../../../wit/transform.wit");
const WIT_0_2: &str = include_str!("../../../../wit/v0.2/transform.wit");

const SDK_MANIFEST: &str = r#"[package]
name = "sluice-guest"
version = "{{sluice_version}}"
edition = "2024"
description = "The sluice transform SDK, as sluice {{sluice_version}} carries it (written by `sluice transform new`)."
publish = false

[features]
default = ["transform"]
transform = []
aggregate = []
columns = []

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[target.'cfg(target_arch = "wasm32")'.dependencies]
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc", "std"] }
"#;

const MANIFEST: &str = include_str!("../../../templates/transform/Cargo.toml.tmpl");
const CARGO_CONFIG: &str = include_str!("../../../templates/transform/cargo-config.toml");
const GITIGNORE: &str = include_str!("../../../templates/transform/gitignore");

fn source_of(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Transform => (include_str!("../../../templates/transform/transform.rs"), include_str!("../../../templates/transform/transform-samples.json")),
        Kind::Detector => (include_str!("../../../templates/transform/detector.rs"), include_str!("../../../templates/transform/detector-samples.json")),
        // Golden samples are record-in, records-out checks: an aggregate has none.
        Kind::Aggregate => (include_str!("../../../templates/transform/aggregate.rs"), "[]\n"),
    }
}

/// A valid transform name: what the registry accepts, and a cargo package name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    anyhow::ensure!(ok, "`{name}` is not a transform name: use lowercase letters, digits and `-`, starting with a letter (e.g. clean-orders)");
    Ok(())
}

/// `clean-orders` → `CleanOrders`.
fn type_name(name: &str) -> String {
    name.split('-').filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect()
}

fn fill(template: &str, name: &str, kind: Kind) -> String {
    let features = if kind == Kind::Aggregate { r#", default-features = false, features = ["aggregate"]"# } else { "" };
    template
        .replace("{{name}}", name)
        .replace("{{type_name}}", &type_name(name))
        .replace("{{sdk_features}}", features)
        .replace("{{sluice_version}}", env!("CARGO_PKG_VERSION"))
}

/// Write the crate `name` of `kind` into `dir` (which must not exist or be empty). Returns the files written.
pub fn write_crate(dir: &Path, name: &str, kind: Kind) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists() && std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some() {
        anyhow::bail!("{} exists and is not empty: choose another --dir, or remove it", dir.display());
    }
    let (lib, samples) = source_of(kind);
    let mut files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), fill(MANIFEST, name, kind)),
        ("src/lib.rs".into(), fill(lib, name, kind)),
        ("samples.json".into(), fill(samples, name, kind)),
        (".cargo/config.toml".into(), CARGO_CONFIG.to_owned()),
        (".gitignore".into(), GITIGNORE.to_owned()),
        ("wit/transform.wit".into(), WIT.to_owned()),
        ("wit/v0.2/transform.wit".into(), WIT_0_2.to_owned()),
        ("sdk/sluice-guest/Cargo.toml".into(), fill(SDK_MANIFEST, name, kind)),
    ];
    files.extend(SDK_FILES.iter().map(|(path, text)| (Path::new("sdk/sluice-guest").join(path), (*text).to_owned())));
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(rel);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_every_file_of_the_sdk() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-transforms/sdk/src");
        let mut on_disk: Vec<String> = Vec::new();
        for e in std::fs::read_dir(&sdk).expect("sdk sources") {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            match std::fs::read_dir(sdk.join(&name)) {
                Ok(dir) => on_disk.extend(dir.map(|f| format!("src/{name}/{}", f.expect("entry").file_name().to_string_lossy()))),
                Err(_) => on_disk.push(format!("src/{name}")),
            }
        }
        on_disk.sort();
        let mut carried: Vec<String> = SDK_FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        carried.sort();
        assert_eq!(carried, on_disk, "SDK_FILES must list every file of guest-transforms/sdk/src");
    }

    #[test]
    fn names_are_checked_and_templates_filled() {
        assert!(check_name("clean-orders").is_ok());
        for bad in ["", "Clean", "1x", "a_b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("clean-orders-2"), "CleanOrders2");
        let dir = tempfile::tempdir().expect("temp dir");
        for kind in [Kind::Transform, Kind::Aggregate, Kind::Detector] {
            let at = dir.path().join(format!("{kind:?}"));
            let files = write_crate(&at, "my-thing", kind).expect("written");
            assert!(files.contains(&PathBuf::from("sdk/sluice-guest/src/lib.rs")));
            for f in files {
                let text = std::fs::read_to_string(at.join(&f)).expect("read");
                for placeholder in ["{{name}}", "{{type_name}}", "{{sdk_features}}", "{{sluice_version}}"] {
                    assert!(!text.contains(placeholder), "{} keeps {placeholder}", f.display());
                }
            }
            let lib = std::fs::read_to_string(at.join("src/lib.rs")).expect("lib");
            assert!(lib.contains("MyThing") && lib.contains("\"my-thing\""));
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(at.join("samples.json")).expect("samples")).expect("samples are JSON");
        }
        assert!(write_crate(&dir.path().join("Transform"), "my-thing", Kind::Transform).is_err(), "a non-empty folder is refused");
    }
}
