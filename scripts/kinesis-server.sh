#!/usr/bin/env bash
# A Kinesis-compatible server (kinesalite 3.3.3, in memory) on 127.0.0.1 for the
# Kinesis tests and for trying the Kinesis source by hand. The tests start and
# stop their own server.
#   scripts/kinesis-server.sh install          # idempotent; prints the launcher's path
#   scripts/kinesis-server.sh start [PORT]     # default port 4567
#   scripts/kinesis-server.sh stop
# kinesalite listens on every interface by default; the launcher binds it to
# 127.0.0.1 only. Credentials and region are not checked: any will do.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/background.sh
tools="${SLUICE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
dir="$tools/kinesalite"
launcher="$dir/serve.js"

install() {
  if [ -f "$launcher" ] && [ -f "$dir/node_modules/kinesalite/package.json" ] \
     && grep -q '"version": "3.3.3"' "$dir/node_modules/kinesalite/package.json"; then
    echo "$launcher"; return
  fi
  command -v node >/dev/null && command -v npm >/dev/null || {
    echo "kinesalite needs Node.js and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
  echo "installing kinesalite 3.3.3 (npm) into $dir…" >&2
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" kinesalite@3.3.3 >&2
  cat >"$launcher.partial" <<'JS'
// Starts kinesalite on 127.0.0.1 only: node serve.js PORT
// Streams become ACTIVE at once, so tests need not wait for them.
const kinesalite = require('kinesalite')
const port = Number(process.argv[2] || 4567)
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 })
server.listen(port, '127.0.0.1', () => console.log(`kinesalite on 127.0.0.1:${server.address().port}`))
process.on('SIGTERM', () => process.exit(0))
JS
  mv "$launcher.partial" "$launcher"
  echo "$launcher"
}

case "${1:-}" in
  install) install ;;
  start)
    port="${2:-4567}"
    install >/dev/null
    bg_start kinesalite env NODE_PATH="$dir/node_modules" node "$launcher" "$port" || exit 0
    echo "kinesalite on http://127.0.0.1:$port (pid $!), in memory; log in .test-servers/kinesalite.log"
    ;;
  stop)
    bg_stop kinesalite
    ;;
  *) echo "usage: $0 install | start [PORT] | stop" >&2; exit 2 ;;
esac
