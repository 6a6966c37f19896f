#!/usr/bin/env bash
# Legitimate viewers beside hostile peers (issue 8's targets): one relay, a 1 Mbit/s stream with
# 100 checked viewers (`vanbench fanout`), and beside them either
#   --idle-sources N  N sources from loopback that send their PUT head and then nothing
#                     (each on its own stream), or
#   --non-readers N   N viewers of the same stream that send their GET and never read.
# Rounds alternate the hostile peers and none, on fresh relays, so that the two are compared on
# the same machine state. Per round: the legitimate viewers' p50/p99/lost, the relay's CPU, and
# the growth of the host's TCP memory (/proc/net/sockstat) while the peers are held. Everything
# started is stopped by PID.
#
#   scripts/bench-beside.sh (--idle-sources N | --non-readers N) [--rounds 3] [--viewers 100]
#                           [--duration 10s] [--relay BIN] [-- extra dataplane flags]
# --relay runs another dataplane binary than this checkout's (e.g. one built before a change).
set -euo pipefail
cd "$(dirname "$0")/.."

kind="" count=0 rounds=3 viewers=100 duration=10s relay_bin=target/release/dataplane extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --idle-sources) kind=idle; count="$2"; shift 2 ;;
    --non-readers) kind=nonreaders; count="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --viewers) viewers="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --relay) relay_bin="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench-beside: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ -n "$kind" ] || { echo "bench-beside: say --idle-sources N or --non-readers N" >&2; exit 2; }
cargo build --release -q -p dataplane -p vanbench --bins
out="target/bench-beside/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
echo "start: $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" | tee "$out/machine.txt"

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap stop_all EXIT
trap 'exit 130' INT TERM

# The host's TCP memory in pages (sockstat's "mem").
tcp_pages() { awk '/^TCP:/ { print $NF }' /proc/net/sockstat; }

# Holds $3 hostile connections of kind $2 to relay $1 until killed; writes how many to $4 once
# all are open. A file of its own, so that the PID started is python's and stop_all ends it.
cat >"$out/hold_peers.py" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
kind, n, ready = sys.argv[2], int(sys.argv[3]), sys.argv[4]
held = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    if kind == "idle":
        head = f"PUT /live/idle{i} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    else:
        # A small receive buffer is what a stalled player has; the relay must not let it grow.
        head = "GET /live/legit HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(head.encode())
    held.append(s)
open(ready, "w").write(str(len(held)))
time.sleep(3600)
PY

run() {
  local tag="$1" n="$2" limit=$(($2 + 10)) line data mem0 mem1
  "$relay_bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --max-streams "$limit" --max-streams-per-source "$limit" --source-timeout 120 "${extra[@]}" \
    >"$out/$tag.out" 2>"$out/$tag.err" &
  pids+=($!)
  local relay=$!
  line="$(listening_line "$out/$tag.out" "$relay" "relay ($tag)")" || { stop_all; return 0; }
  data="$(field data "$line")"
  mem0="$(tcp_pages)"
  target/release/vanbench fanout --relay "http://$data" --stream legit -n "$viewers" --bitrate 1M \
    --warmup 3s --duration "$duration" --relay-pid "$relay" --json "$out/$tag.json" 2>"$out/$tag.log" &
  local bench=$!
  pids+=("$bench")
  if [ "$n" -gt 0 ]; then
    # The peers arrive once the stream is live (non-readers need it to exist) and are all held
    # before the measured window starts.
    sleep 1
    python3 "$out/hold_peers.py" "$data" "$kind" "$n" "$out/$tag.held" &
    pids+=($!)
    for _ in $(seq 1 600); do [ -s "$out/$tag.held" ] && break; sleep 0.1; done
  fi
  sleep 3
  mem1="$(tcp_pages)"
  wait "$bench" || true
  local streams
  streams="$(curl -s "http://$(field admin "$line")/status" | jq '.streams | length' 2>/dev/null || echo '?')"
  stop_all
  jq -r --arg tag "$tag" --arg streams "$streams" --arg tcp "$(( (mem1 - mem0) * 4096 / 1048576 ))" \
    '"\($tag)\tstreams \($streams)\tviewers \(.connected)/\(.viewers)\tlost \(.lost)\tp50 \(.latency_us.p50 / 1000) ms\tp99 \(.latency_us.p99 / 1000) ms\trelay CPU-s/GB \(.relay_cpu_s_per_gb * 1000 | round / 1000)\tTCP mem +\($tcp) MiB"' \
    "$out/$tag.json"
}

for ((r = 1; r <= rounds; r++)); do
  run "r$r-$kind$count" "$count"
  run "r$r-${kind}0" 0
done
echo "end: $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" | tee -a "$out/machine.txt"
