#!/usr/bin/env bash
# The project's test command (README, .ci/run). Installs what the tests need,
# idempotently, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
took() { local s=$((SECONDS - started)); printf '%d min %02d s' $((s / 60)) $((s % 60)); }

# No `rustup target add` here: host/build.rs installs the wasm32-wasip2 target
# when it is missing, for the README's first command and for this script alike,
# so CI goes through the same path as a new user.

# Debian packages: a real Prometheus (and promtool) for the observability tests,
# the headers librdkafka is built against (TLS and SASL/SCRAM need OpenSSL),
# and Node.js for kinesalite.
missing=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
# Node.js runs kinesalite, the Kinesis-compatible server of the Kinesis tests.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian packages for the tests: ${missing[*]}…"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A Kafka-protocol broker (tansu) for the Kafka tests; the tests start and stop it.
bash scripts/kafka-broker.sh install >/dev/null

# A Kinesis-compatible server (kinesalite, npm, about 5 s once) for the Kinesis tests; they start and stop it.
bash scripts/kinesis-server.sh install >/dev/null

# A real S3-compatible server for the S3 landing tests (about 2.5 minutes, once).
if ! command -v s3s-fs >/dev/null; then
  echo "installing s3s-fs (an S3-compatible server) for the S3 tests…"
  cargo install s3s-fs --version 0.14.1 --features binary --locked
fi

# Apache Airflow in a venv of its own (about a minute, once), so the Airflow DAG in
# deploy/airflow is loaded by Airflow's own parser (tests/tests/airflow_dag.rs).
airflow_venv="${SLUICE_AIRFLOW_VENV:-$HOME/.cache/sluice/airflow-venv}"
if [ ! -x "$airflow_venv/bin/airflow" ]; then
  echo "installing Apache Airflow (PyPI) into $airflow_venv for the DAG check…"
  # A failed install is not a failed test run: the DAG test then falls back to a
  # syntax check and says so.
  if ! { python3 -m venv "$airflow_venv" && "$airflow_venv/bin/pip" install -q "apache-airflow==2.11.2" "apache-airflow-providers-http==6.3.0"; }; then
    echo "warning: installing Airflow failed; the DAG gets a syntax check only" >&2
    rm -rf "$airflow_venv"
  fi
fi
[ -x "$airflow_venv/bin/airflow" ] && export SLUICE_AIRFLOW_PYTHON="$airflow_venv/bin/python"

# Python clients in a venv of their own (PyPI, about 20 s once): `requests` for the
# REST Proxy client written from Confluent's documentation (tests/tests/consume_http.rs);
# `deltalake` and `pyarrow`, the independent readers of the Delta tables
# (tests/tests/delta_tables.rs).
client_venv="${SLUICE_CLIENT_VENV:-$HOME/.cache/sluice/client-venv}"
if ! "$client_venv/bin/python" -c "import requests, deltalake, pyarrow" 2>/dev/null; then
  echo "installing Python requests, deltalake and pyarrow (PyPI) into $client_venv for the client tests…"
  python3 -m venv "$client_venv"
  "$client_venv/bin/pip" install -q "requests==2.32.5" "deltalake==1.6.6" "pyarrow==26.0.1"
fi
export SLUICE_CLIENT_PYTHON="$client_venv/bin/python"

# The code stays tidy by itself: formatting, lints, and imports that run one way
# (docs/architecture.md). Each failure names what to fix.
cargo fmt --all --check || { echo "cargo fmt --check failed: run \`cargo fmt --all\`" >&2; exit 1; }
python3 scripts/module-deps.py --check >/dev/null || { python3 scripts/module-deps.py; echo "an import runs against the layering (above)" >&2; exit 1; }
cargo clippy --workspace --all-targets --locked -- -D warnings || { echo "clippy found warnings (above); CI treats them as errors" >&2; exit 1; }
echo "checks passed after $(took)"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# The benches are not run here, but they must keep compiling (dev profile: quick).
cargo build --workspace --benches --locked || exit 1
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# cargo prints one summary per test binary, the last often a doc-test run with
# nothing in it; end with the totals so the outcome reads at a glance.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
echo "the test run took $(took)"
exit "$status"
