// The guest target's standard library, installed through rustup when missing.
// Shared by host/build.rs (which compiles the built-in components) and
// `sluice transform build` (which compiles a user's): std only, no crate paths.

/// The compilation target of components.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Whether `rustc`'s sysroot holds the guest target's standard library.
pub fn has_guest_target(rustc: &str) -> bool {
    let Ok(out) = std::process::Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::path::Path::new(&sysroot).join("lib/rustlib").join(GUEST_TARGET).join("lib").is_dir()
}

/// Make sure `rustc` can compile for the guest target, adding it through
/// rustup when it is missing. rustup (1.29 at least) installs a toolchain
/// file's `targets` only when it installs the toolchain itself, so on a machine
/// that already has stable the target may be missing. `announce` is told
/// before the install starts. The error says what to do by hand.
pub fn ensure_guest_target(rustc: &str, announce: impl FnOnce(&str)) -> Result<(), String> {
    if has_guest_target(rustc) {
        return Ok(());
    }
    // Under rustup, cargo runs with RUSTUP_TOOLCHAIN naming the active toolchain
    // (the one a rust-toolchain.toml chose): install the target into that one.
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    announce(&format!("the {GUEST_TARGET} target is missing; installing it with rustup (once, about 20 MB)"));
    let mut cmd = std::process::Command::new("rustup");
    cmd.args(["target", "add", GUEST_TARGET]);
    if let Some(toolchain) = &toolchain {
        cmd.args(["--toolchain", toolchain]);
    }
    match cmd.status() {
        Ok(status) if status.success() && has_guest_target(rustc) => Ok(()),
        Ok(status) => Err(format!(
            "`rustup target add {GUEST_TARGET}` failed ({status}); components are compiled for that target. \
             Run it by hand (it needs the network to reach the Rust distribution server), then build again."
        )),
        Err(e) => Err(format!(
            "the {GUEST_TARGET} target is not installed for {rustc}, and rustup could not be run to install it ({e}). \
             Components are compiled for {GUEST_TARGET}: install Rust through rustup (https://rustup.rs) \
             or add that target's standard library to this toolchain, then build again."
        )),
    }
}
