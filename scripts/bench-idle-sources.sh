#!/usr/bin/env bash
# Legitimate viewers' latency beside idle sources (issue 8, defect 1's target): one relay, N
# sources from loopback that send their PUT head and then nothing, and beside them a 1 Mbit/s
# stream with 100 viewers (`vanbench fanout`). Rounds alternate N idle sources and none, on fresh
# relays, so that the two are compared on the same machine state. Everything started is
# stopped by PID.
#
#   scripts/bench-idle-sources.sh [--idle 5000] [--rounds 3] [--viewers 100] [--duration 10s]
set -euo pipefail
cd "$(dirname "$0")/.."

idle=5000 rounds=3 viewers=100 duration=10s
while [ $# -gt 0 ]; do
  case "$1" in
    --idle) idle="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --viewers) viewers="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "bench-idle-sources: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p dataplane -p vanbench --bins
out="target/bench-idle-sources/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap stop_all EXIT
trap 'exit 130' INT TERM

run() {
  local tag="$1" n="$2" limit=$(($2 + 10)) line data
  target/release/dataplane --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --max-streams "$limit" --max-streams-per-source "$limit" --source-timeout 120 \
    >"$out/$tag.out" 2>"$out/$tag.err" &
  pids+=($!)
  local relay=$!
  line="$(listening_line "$out/$tag.out" "$relay" "relay ($tag)")" || { stop_all; return 0; }
  data="$(field data "$line")"
  if [ "$n" -gt 0 ]; then
    # Idle sources: each sends its PUT head and holds the connection without a byte of body.
    python3 - "$data" "$n" "$out/$tag.idle" <<'EOF' &
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
n, ready = int(sys.argv[2]), sys.argv[3]
held = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(f"PUT /live/idle{i} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    held.append(s)
open(ready, "w").write(str(len(held)))
time.sleep(3600)
EOF
    pids+=($!)
    for _ in $(seq 1 600); do [ -s "$out/$tag.idle" ] && break; sleep 0.1; done
    sleep 1
  fi
  target/release/vanbench fanout --relay "http://$data" --stream legit -n "$viewers" --bitrate 1M \
    --duration "$duration" --relay-pid "$relay" --json "$out/$tag.json" 2>"$out/$tag.log" || true
  local streams
  streams="$(curl -s "http://$(field admin "$line")/status" | jq '.streams | length' 2>/dev/null || echo '?')"
  stop_all
  jq -r --arg tag "$tag" --arg streams "$streams" \
    '"\($tag)\tstreams \($streams)\tviewers \(.connected)/\(.viewers)\tlost \(.lost)\tp50 \(.latency_us.p50 / 1000) ms\tp99 \(.latency_us.p99 / 1000) ms\trelay CPU-s/GB \(.relay_cpu_s_per_gb * 1000 | round / 1000)"' \
    "$out/$tag.json"
}

for ((r = 1; r <= rounds; r++)); do
  run "r$r-idle$idle" "$idle"
  run "r$r-idle0" 0
done
