# Sourced by .ci/k8s.sh and .ci/crd-server.sh: stopping the servers a
# previous start left running, by the pid files it wrote.

# Whether a pid runs (a zombie, left unreaped by a container's init, does not).
gwcore_pid_alive() {
  [ -r "/proc/$1/stat" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}

# Stops the process of each pid file given (SIGTERM, then SIGKILL after
# 10 s) and removes the file; missing files are skipped.
gwcore_stop_pidfiles() {
  local f pid i
  for f in "$@"; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if gwcore_pid_alive "$pid"; then
      kill "$pid" 2>/dev/null || true
      for i in $(seq 100); do gwcore_pid_alive "$pid" || break; sleep 0.1; done
      gwcore_pid_alive "$pid" && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$f"
  done
  return 0
}
