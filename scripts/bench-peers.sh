#!/usr/bin/env bash
# The pin pipeline next to Polars and DuckDB on the same records, back to back
# (../shared/peers in the development setup; SLUICE_PEERS_DIR elsewhere).
# Usage: scripts/bench-peers.sh [records] [rounds]   (default 1000000, 2)
#
# Each round: the pipeline bench (embedded log -> clean-pin 0.2.0 in Wasm ->
# raw JSON lines + Parquet, committed) writes its generated pins as JSON lines,
# the same pipeline runs again without the raw landing (Parquet only, as the
# peers write), then once more with the SQL stage clean-pin-sql instead of the
# Wasm component, then Polars and DuckDB clean that file into Parquet, each a whole process
# under /usr/bin/time -v (wall time, CPU, peak RSS). The pipeline's own figure
# is the run phase (the input already in the log, the process a restart).
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-1000000}"
rounds="${2:-2}"
peers="${SLUICE_PEERS_DIR:-../shared/peers}"
venv="${SLUICE_PEERS_VENV:-$HOME/.cache/sluice/peers-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import polars, duckdb, pyarrow" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q polars duckdb pyarrow
fi
cargo build --release --benches -p sluice >/dev/null 2>&1 || cargo build --release --benches -p sluice
bench=$(ls -t target/release/deps/pipeline-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
peak() { awk -F: '/Maximum resident/ { printf "%d MiB", $2 / 1024 }' "$1"; }
wall() { awk '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$1"; }
cpu() { awk -F: '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$1"; }
for round in $(seq 1 "$rounds"); do
  echo "== round $round: $records pins"
  "$bench" --records "$records" --raw --input-jsonl "$work/pins.jsonl"
  "$bench" --records "$records"
  BENCH_TRANSFORM=clean-pin-sql "$bench" --records "$records"
  for peer in polars duckdb; do
    rm -rf "$work/$peer.parquet"
    /usr/bin/time -v "$venv/bin/python" "$peers/${peer}_clean.py" "$work/pins.jsonl" "$work/$peer.parquet" >"$work/$peer.out" 2>"$work/$peer.time"
    w=$(wall "$work/$peer.time")
    printf '%s: %.2f s wall, %s CPU-s, %s records/s, peak RSS %s (%s)\n' "$peer" "$w" "$(cpu "$work/$peer.time")" \
      "$(awk -v n="$records" -v w="$w" 'BEGIN { printf "%.0f", n / w }')" "$(peak "$work/$peer.time")" "$(cat "$work/$peer.out")"
  done
done
