#!/usr/bin/env bash
# The main job, locally: a VAN on 127.0.0.1. A PNC, an origin relay and nine relays in three
# tiers (P11-P13, P21-P23, P31-P33) register with it; a generated stream is published at the
# origin; a flash crowd of viewers arrives through the PNC's /resolve (each one checks every
# byte it gets), watches, and leaves. The tree is printed whenever it changes: it grows as the
# viewers arrive and shrinks back when they leave. Everything started is stopped on exit or
# Ctrl-C.
#
#   scripts/demo.sh [--viewers N] [--capacity C] [--rate PER_S] [--watch SECONDS] [--bitrate 2M]
#
# Defaults: 9 viewers arriving 1 per second, capacity 3 per relay and stream (the seed's figure 2:
# P31, P32, P33 fill in turn under P21, whose DISTRIBUTE then starts P22 as a standby), 15 s of
# watching once all are in, 2 Mbit/s. More viewers than the last tier holds are refused (503).
set -euo pipefail
cd "$(dirname "$0")/.."

viewers=9 capacity=3 rate=1 watch=15 bitrate=2M
while [ $# -gt 0 ]; do
  case "$1" in
    --viewers) viewers="$2"; shift 2 ;;
    --capacity) capacity="$2"; shift 2 ;;
    --watch) watch="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --bitrate) bitrate="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

echo "demo: building release binaries (cargo build --release -p dataplane -p control -p vanbench)" >&2
cargo build --release -p dataplane -p control -p vanbench --bins

tmp="$(mktemp -d /tmp/van-network.XXXXXX)"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
# The last started first: the tree printer and the source before the relays and the PNC.
cleanup() {
  stop_all
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for a process's `listening …` line on its stdout file and prints it; on failure shows
# the process's stderr and ends the demo.
started() {
  local out="$1" err="$2" pid="$3" what="$4"
  listening_line "$out" "$pid" "demo: $what" || { cat "$err" >&2; exit 1; }
}

token="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
echo "$token" >"$tmp/token"
{
  cat <<EOF
token_file = "$tmp/token"
[listen]
control = "127.0.0.1:0"
admin = "127.0.0.1:0"
public = "127.0.0.1:0"
dns = "127.0.0.1:0"
[coordinator]
delta_t_ms = 2000
heartbeat_interval_ms = 500
heartbeat_timeout_ms = 3000
[[proxies]]
id = 1
logical_connections = 100
EOF
  for t in 1 2 3; do
    for j in 1 2 3; do
      printf '[[proxies]]\nid = %d\ntier = %d\nlogical_connections = %d\n' "$((t * 10 + j))" "$t" "$capacity"
    done
  done
} >"$tmp/pnc.toml"

target/release/pnc --config "$tmp/pnc.toml" >"$tmp/pnc.out" 2>"$tmp/pnc.err" &
pids+=($!)
line="$(started "$tmp/pnc.out" "$tmp/pnc.err" "${pids[-1]}" pnc)"
control="$(field control "$line")" admin="$(field admin "$line")" public="$(field public "$line")"
echo "demo: pnc control=$control admin=http://$admin/api/topology public=http://$public/resolve/demo" >&2

start_relay() {
  local id="$1" capacity_connections="$2" stream_capacity="$3"
  target/release/dataplane --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --cores 1 \
    --pool-blocks 512 --van-token-file "$tmp/token" \
    --pnc "$control" --pnc-token-file "$tmp/token" --proxy-id "$id" --name "P$id" \
    --capacity-connections "$capacity_connections" --stream-capacity-connections "$stream_capacity" \
    --delta-t-ms 2000 \
    >"$tmp/p$id.out" 2>"$tmp/p$id.err" &
  pids+=($!)
  local l
  l="$(started "$tmp/p$id.out" "$tmp/p$id.err" "${pids[-1]}" "relay P$id")"
  eval "data_$id=$(field data "$l")"
}
start_relay 1 1000 1000
# Each relay decides from the stream's logical capacity, as the PNC's logical_connections says,
# and predicts over the PNC's ΔT.
for t in 1 2 3; do for j in 1 2 3; do start_relay "$((t * 10 + j))" $((capacity * 4)) "$capacity"; done; done
echo "demo: origin P1 at http://$data_1, nine relays registered; publishing demo at $bitrate bit/s" >&2

target/release/vanbench source --url "http://$data_1/live/demo" --bitrate "$bitrate" \
  2>"$tmp/source.err" &
pids+=($!)

# The tree, printed whenever it changes, until the end.
target/release/vanbench tree --admin "$admin" --every 500ms &
pids+=($!)
sleep 2

echo "demo: $viewers viewers arrive through http://$public/resolve/demo, $rate per second, and watch for $watch s" >&2
target/release/vanbench viewers --client crowd --url "http://$public/resolve/demo" -n "$viewers" \
  --connect-rate "$rate/s" \
  --bitrate "$bitrate" --duration "${watch}s" --progress 5s --json "$tmp/summary.json" || true
echo "demo: the viewers left; the tree shrinks back (10 s)" >&2
sleep 10
echo "demo: viewers' summary: $(head -c 800 "$tmp/summary.json" 2>/dev/null || echo unavailable)" >&2
