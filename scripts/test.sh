#!/usr/bin/env bash
# The project's test command (README, .ci/run). Installs what the tests need,
# idempotently, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# rust-toolchain.toml makes rustup install the wasm32-wasip2 target on first use;
# asking again is a no-op when it is there and a fix when an older rustup skipped it.
rustup target add wasm32-wasip2 >/dev/null

cargo test --workspace --locked
