#!/usr/bin/env bash
# The latency-to-CPU trade (issue 9, item 3): the relay at several send-coalescing settings and
# the naive relay (scripts/naive_relay.py) as the peer, at 1000 × 4 Mbit/s and 10,000 × 1 Mbit/s
# joining at once, with the harsh client (`vanbench fanout --client crowd`). Each round runs
# every setting once, in turn, on fresh processes (interleaved); then `vanbench curve` draws
# CPU-s/GB against p99.
#
# A setting is C or C:B: `--coalesce-ms C` (0: a send on every publish) with `--send-budget B`
# (default 25000, the relay's). A core spaces each viewer's small sends by min(viewers / B, C),
# so C alone moves nothing once viewers / B is the smaller: at 500 viewers a core (n1000) every
# C from 20 ms up is the default's 20 ms. The points around the default move the budget with C.
#
#   scripts/bench-curve.sh [--rounds 1] [--duration 8s]
#                          [--settings "0 5 50:50000 100:50000 200 400:12500"]
#                          [--scenarios "n1000 n10000"] [--svg FILE]
#
# Results: one vanbench JSON per run in target/bench-curve/TIMESTAMP/ (the last round's runs
# are drawn), the chart, and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=1 duration=8s settings="0 5 50:50000 100:50000 200 400:12500" scenarios="n1000 n10000" svg=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --settings) settings="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --svg) svg="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set /{/^set /d;p}' "$0"; exit 0 ;;
    *) echo "bench-curve: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p dataplane -p vanbench --bins
out="target/bench-curve/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
svg="${svg:-$out/curve.svg}"
ulimit -n "$(ulimit -Hn)"
{ echo "start: $(date -u +%FT%TZ) $(nproc) CPUs, $(uptime | sed 's/.*load/load/')"; uname -r; } >"$out/machine.txt"

load() {
  case "$1" in
    n1000) echo "-n 1000 --bitrate 4M" ;;
    n10000) echo "-n 10000 --bitrate 1M" ;;
    *) echo "bench-curve: unknown scenario $1" >&2; exit 2 ;;
  esac
}

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap stop_all EXIT
trap 'exit 130' INT TERM

# One run: scenario $1, result file stem $2, then the relay's command.
run() {
  local s="$1" name="$2" line data
  shift 2
  "$@" >"$out/$name.out" 2>"$out/$name.err" &
  pids+=($!)
  local pid=$!
  line="$(listening_line "$out/$name.out" "$pid" "$name")" || { stop_all; return 0; }
  data="$(field data "$line")"
  # shellcheck disable=SC2046
  target/release/vanbench fanout --relay "http://$data" --stream "$s" $(load "$s") --client crowd \
    --duration "$duration" --relay-pid "$pid" --json "$out/$name.json" 2>"$out/$name.log" ||
    echo "bench-curve: $name: vanbench failed: $(tail -n 2 "$out/$name.log")" >&2
  stop_all
  sleep 1
}

for ((r = 1; r <= rounds; r++)); do
  for s in $scenarios; do
    for setting in $settings; do
      c="${setting%%:*}" b=25000 label="${setting%%:*}ms"
      if [ "$setting" != "$c" ]; then b="${setting#*:}" label="${c}ms-$((b / 1000))k"; fi
      echo "== round $r $s relay --coalesce-ms $c --send-budget $b" >&2
      run "$s" "r$r-${s}__relay__${label}" target/release/dataplane --listen 127.0.0.1:0 \
        --admin-listen 127.0.0.1:0 --coalesce-ms "$c" --send-budget "$b"
    done
    echo "== round $r $s naive relay" >&2
    run "$s" "r$r-${s}__naive__one-write-per-read" python3 scripts/naive_relay.py --listen 127.0.0.1:0
  done
done
echo "end: $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" >>"$out/machine.txt"
# The chart draws the last round; the table lists every round.
last=()
for f in "$out"/r"$rounds"-*.json; do
  ln -sf "$(basename "$f")" "$out/${f##*/r$rounds-}"
  last+=("$out/${f##*/r$rounds-}")
done
target/release/vanbench curve --svg "$svg" --title "relay CPU against viewers' p99 ($(date -u +%F))" "${last[@]}"
for f in "$out"/r*-*.json; do
  jq -r --arg f "$(basename "$f" .json)" \
    '"\($f)\tlost \(.lost)\tconnected \(.connected)/\(.viewers)\tp50 \(.latency_us.p50 / 1000) ms\tp99 \(.latency_us.p99 / 1000) ms\tCPU-s/GB \(.relay_cpu_s_per_gb * 1000 | round / 1000)"' "$f"
done
echo "chart: $svg" >&2
