#!/usr/bin/env bash
# `sluice report` over 1M pins next to DuckDB on the same files (host/benches/reports.rs).
# Usage: scripts/bench-reports.sh [rows]   (default 1000000; the data set is kept under target/bench-reports/)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLUICE_BENCH_VENV:-$HOME/.cache/sluice/bench-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q duckdb
fi
SLUICE_BENCH_ROWS="${1:-1000000}" SLUICE_BENCH_PYTHON="$venv/bin/python" cargo bench -p sluice --bench reports
