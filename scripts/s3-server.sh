#!/usr/bin/env bash
# A local S3-compatible server (s3s-fs) for trying S3 landing by hand; the tests
# start their own. Usage:
#   scripts/s3-server.sh start [PORT] [ROOT]   # installs s3s-fs if missing, listens on 127.0.0.1
#   scripts/s3-server.sh stop
# Credentials: AWS_ACCESS_KEY_ID=sluice AWS_SECRET_ACCESS_KEY=sluice-secret
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/background.sh
case "${1:-}" in
  start)
    port="${2:-9000}"
    root="${3:-.test-servers/s3}"
    command -v s3s-fs >/dev/null || cargo install s3s-fs --version 0.14.1 --features binary --locked
    mkdir -p "$root"
    bg_start s3s-fs s3s-fs --host 127.0.0.1 --port "$port" --access-key sluice --secret-key sluice-secret "$root" || exit 0
    echo "s3s-fs on http://127.0.0.1:$port (pid $!), data in $root; create a bucket with: mkdir $root/<bucket>"
    ;;
  stop)
    bg_stop s3s-fs
    ;;
  *) echo "usage: $0 start [PORT] [ROOT] | stop" >&2; exit 2 ;;
esac
