# Shared by the scripts that start relays and coordinators (source it; bash only):
# every process they start is recorded in `pids` and stopped by PID, the last started first.

pids=()

# Stops process $1: TERM, up to 5 s, then KILL.
stop_pid() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops everything in `pids`, the last started first, and forgets them.
stop_all() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
  pids=()
}

# Waits up to 15 s for the `listening …` line a process (PID $2, named $3) prints to file $1,
# and prints it; fails if the process exits first or prints none.
listening_line() {
  local file="$1" pid="$2" what="$3" line=""
  for _ in $(seq 1 150); do
    line="$(grep -m1 '^listening ' "$file" 2>/dev/null || true)"
    [ -n "$line" ] && { echo "$line"; return 0; }
    kill -0 "$pid" 2>/dev/null || { echo "$what exited at start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "$what printed no listening line within 15 s" >&2
  return 1
}

# The value of `KEY=VALUE` in a listening line: field KEY LINE.
field() { sed -n "s/.*$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
