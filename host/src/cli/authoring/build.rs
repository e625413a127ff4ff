//! `sluice transform build [DIR]`: compile the crate into a component and check
//! it is one this sluice runs.

use super::TransformCrate;
use super::guest_target::{GUEST_TARGET, ensure_guest_target};
use crate::runtime::{CompiledTransform, ComponentKind, Runtime, SandboxLimits};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

/// Compile the crate in `dir` for the guest target (cargo's progress on
/// stderr), then load the component as the host would.
pub fn build(dir: &Path) -> anyhow::Result<(TransformCrate, Arc<CompiledTransform>)> {
    let krate = TransformCrate::open(dir)?;
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    ensure_guest_target(&rustc, |msg| eprintln!("{msg}")).map_err(anyhow::Error::msg)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(&cargo);
    cmd.current_dir(&krate.dir).args(["build", "--release", "--target", GUEST_TARGET]);
    // When sluice itself runs under cargo (`cargo run -- transform build`), its
    // build's flags are for the host; they must not reach the component's build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER", "CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().with_context(|| format!("running {cargo} (is cargo on PATH?)"))?;
    anyhow::ensure!(status.success(), "cargo build of {} failed ({status}); its errors are above", krate.dir.display());
    let compiled = load(&krate)?;
    Ok((krate, compiled))
}

/// Load the built component under the host's default sandbox: it must compile,
/// implement one of the worlds and describe itself.
pub fn load(krate: &TransformCrate) -> anyhow::Result<Arc<CompiledTransform>> {
    let bytes = krate.component()?;
    let runtime = Runtime::new(SandboxLimits::default(), None)?;
    runtime.load(&bytes).with_context(|| format!("{} is not a component this sluice runs", krate.component_path().display()))
}

/// One line about a component: name, version, world, kinds, size and hash.
pub fn describe(t: &CompiledTransform) -> String {
    let d = t.descriptor();
    let world = match d.kind {
        ComponentKind::Transform => "transform",
        ComponentKind::Aggregate => "aggregate",
    };
    format!("{}@{} ({world} world, {} → {}), {} bytes, sha256:{}", d.name, d.version, d.input_kind, d.output_kind, t.size_bytes(), t.content_hash())
}
