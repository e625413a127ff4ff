#!/usr/bin/env bash
# A local S3-compatible server (s3s-fs) for trying S3 landing by hand; the tests
# start their own. Usage:
#   scripts/s3-server.sh start [PORT] [ROOT]   # installs s3s-fs if missing, listens on 127.0.0.1
#   scripts/s3-server.sh stop
# Credentials: AWS_ACCESS_KEY_ID=sluice AWS_SECRET_ACCESS_KEY=sluice-secret
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile=.test-servers/s3s-fs.pid
case "${1:-}" in
  start)
    port="${2:-9000}"
    root="${3:-.test-servers/s3}"
    command -v s3s-fs >/dev/null || cargo install s3s-fs --version 0.14.1 --features binary --locked
    mkdir -p "$root" .test-servers
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "s3s-fs already running (pid $(cat "$pidfile"))"; exit 0
    fi
    s3s-fs --host 127.0.0.1 --port "$port" --access-key sluice --secret-key sluice-secret "$root" >.test-servers/s3s-fs.log 2>&1 &
    echo $! >"$pidfile"
    echo "s3s-fs on http://127.0.0.1:$port (pid $!), data in $root; create a bucket with: mkdir $root/<bucket>"
    ;;
  stop)
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; echo stopped; else echo "not running"; fi
    ;;
  *) echo "usage: $0 start [PORT] [ROOT] | stop" >&2; exit 2 ;;
esac
