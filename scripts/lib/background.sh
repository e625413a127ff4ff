# Run a local server in the background for trying sluice by hand, tracked by a
# PID file and logging to .test-servers/<name>.log. Sourced by the server
# scripts; paths are relative to the repository root they cd into.

# bg_start NAME COMMAND...: start COMMAND unless NAME already runs (then say
# so and return 1). The PID file holds the command's own PID.
bg_start() {
  local name=$1; shift
  local pidfile=".test-servers/$name.pid"
  mkdir -p .test-servers
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$pidfile"))"; return 1
  fi
  "$@" >".test-servers/$name.log" 2>&1 &
  echo $! >"$pidfile"
}

# bg_stop NAME: stop what bg_start started, by its PID.
bg_stop() {
  local pidfile=".test-servers/$1.pid"
  if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; echo stopped; else echo "not running"; fi
}
