#!/usr/bin/env bash
# One relay alone, locally: a relay with a generated stream flowing and viewers attached, printing
# live figures every 2 s until Ctrl-C (or for --seconds N), then a summary.
#
#   scripts/relay-demo.sh [--seconds N] [--viewers N] [--bitrate 4M]
#
# It builds the release binaries, starts `dataplane` on free loopback ports, a vanbench source
# (4 Mbit/s of checkable records) and N=50 vanbench viewers that verify every byte and measure
# latency, and stops everything by PID when done.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="" viewers=50 bitrate=4M
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --viewers) viewers="$2"; shift 2 ;;
    --bitrate) bitrate="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "relay-demo.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

echo "demo: building release binaries (cargo build --release -p dataplane -p vanbench)" >&2
cargo build --release -q -p dataplane -p vanbench --bins

tmp="$(mktemp -d /tmp/van-demo.XXXXXX)"
relay_pid="" source_pid=""
cleanup() {
  for pid in $source_pid $relay_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $source_pid $relay_pid; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

target/release/dataplane --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  >"$tmp/relay.out" 2>"$tmp/relay.err" &
relay_pid=$!
line=""
for _ in $(seq 1 100); do
  line="$(grep -m1 '^listening ' "$tmp/relay.out" 2>/dev/null || true)"
  [ -n "$line" ] && break
  if ! kill -0 "$relay_pid" 2>/dev/null; then
    echo "demo: the relay exited at start-up:" >&2
    cat "$tmp/relay.err" >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$line" ] || { echo "demo: the relay did not print its listening line within 10 s" >&2; exit 1; }
data="$(sed -n 's/.*data=\([^ ]*\).*/\1/p' <<<"$line")"
admin="$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<<"$line")"
echo "demo: relay pid $relay_pid, data http://$data, admin http://$admin (/metrics, /status)" >&2

target/release/vanbench source --url "http://$data/live/demo" --bitrate "$bitrate" \
  2>"$tmp/source.err" &
source_pid=$!
sleep 0.5
if ! kill -0 "$source_pid" 2>/dev/null; then
  echo "demo: the source could not publish:" >&2
  cat "$tmp/source.err" >&2
  exit 1
fi
echo "demo: source at $bitrate bit/s (pid $source_pid), $viewers viewers; Ctrl-C to stop" >&2

duration=()
[ -n "$seconds" ] && duration=(--duration "${seconds}s")
# Ctrl-C reaches the viewers too: they stop, print the summary, and the trap stops the rest.
target/release/vanbench viewers --url "http://$data/live/demo" -n "$viewers" \
  --bitrate "$bitrate" --relay-pid "$relay_pid" --progress 2s "${duration[@]}" \
  --json "$tmp/summary.json" || true
echo "demo: relay status: $(curl -fsS "http://$admin/status" 2>/dev/null | head -c 600 || echo unavailable)" >&2
