//! Compiles the guest components under `guest-transforms/` for `wasm32-wasip2`
//! so the built-in transforms can be embedded in the binary: `cargo build` is
//! the only step a user runs.
//!
//! The guests are built by a nested cargo in a target directory of their own
//! (sharing the outer one would deadlock on its lock) with the `guest` profile.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `(package, artifact)`, in groups built by separate cargo runs: a test guest
/// links `clean-pin` without its `component` feature, and one cargo run would
/// unify that feature back on (and export two worlds from one component).
/// Likewise the aggregates link the SDK with only its `aggregate` world glue,
/// and the built-in cleaners with only the 0.2.0 `transform` world's.
const GUESTS: &[&[(&str, &str)]] = &[
    &[("clean-pin", "clean_pin"), ("clean-geo", "clean_geo"), ("clean-user", "clean_user"), ("hostile-columns", "hostile_columns")],
    &[("hostile", "hostile"), ("clean-pin-marked", "clean_pin_marked"), ("reject-all", "reject_all"), ("clean-pin-v1", "clean_pin_v1"), ("detect", "detect")],
    &[("count-posts", "count_posts"), ("follower-percentiles", "follower_percentiles")],
    &[("count-posts-v2", "count_posts_v2")],
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace root").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["guest-transforms", "wit", "Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=SLUICE_GUEST_TARGET_DIR");

    // Keep guest artifacts next to the outer target dir, so CI caches and `cargo clean` cover both.
    let guest_target = env::var_os("SLUICE_GUEST_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| target_dir(&out_dir).join("guests"));

    ensure_guest_target();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for group in GUESTS {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root).args(["build", "--profile", "guest", "--target", GUEST_TARGET, "--target-dir"]).arg(&guest_target);
        for (package, _) in *group {
            cmd.args(["-p", package]);
        }
        // The outer build's flags are for the host target; they must not leak into the guest build.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "MFLAGS",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().expect("could not run cargo to build the guest components");
        if !status.success() {
            panic!("building the guest components for {GUEST_TARGET} failed ({status}); cargo's output above says why.");
        }
        // Copy each group right after its build: the next group rebuilds clean_pin's artifacts.
        for (_, artifact) in *group {
            let built = guest_target.join(GUEST_TARGET).join("guest").join(format!("{artifact}.wasm"));
            let dest = out_dir.join(format!("{artifact}.wasm"));
            std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", built.display(), dest.display()));
        }
    }
}

/// Installs the guest target through rustup when it is missing; shared with `sluice transform build`.
#[path = "src/cli/authoring/guest_target.rs"]
mod guest_target;
use guest_target::GUEST_TARGET;

/// The compiler running this build must have the guest target's standard library.
/// The README's first command relies on this, and so does the test script (it does
/// not add the target itself), so CI proves what a new user gets.
fn ensure_guest_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Err(e) = guest_target::ensure_guest_target(&rustc, |msg| println!("cargo:warning={msg}")) {
        panic!("{e}");
    }
}

/// `OUT_DIR` is `<target>/<profile>/build/sluice-<hash>/out`; walk up to `<target>`.
fn target_dir(out_dir: &Path) -> PathBuf {
    out_dir.ancestors().nth(4).map(Path::to_path_buf).unwrap_or_else(|| out_dir.join("guest-target"))
}
