# Shared by the benchmark scripts (sourced, not run): a work folder and
# the processes a script starts, both cleaned up when it exits, and a wait
# for a port to open.
#
#   . "$ROOT/benches/lib.sh"; work_dir gwcore-load    # sets WORK, PIDS
#   some-server & PIDS+=($!)                          # stopped on exit
#   wait_port 18080 [TRIES]                           # 0.1 s apart, default 100
#
# KEEP=1 keeps the work folder (its path is printed on exit).

work_dir() { # work_dir PREFIX: a fresh /tmp/PREFIX.XXXXXX as WORK
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap cleanup EXIT
}

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

wait_port() { # wait_port PORT [TRIES]
  for _ in $(seq 1 "${2:-100}"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}
