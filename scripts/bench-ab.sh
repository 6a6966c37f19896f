#!/usr/bin/env bash
# Relay variants measured side by side: every variant once per round, rounds repeated, so that a
# machine that gets busier or quieter during the run shifts all variants alike. Each round starts
# one variant later (round 2 runs B C A), so that no variant always runs first or last: on this
# machine a run right after another can be slower or faster by as much as the effect measured.
#
#   scripts/bench-ab.sh [--rounds 3] [--duration 10s] [--load "-n 1000 --bitrate 4M"] [--out DIR] \
#       -- "NAME:RELAY FLAGS" "NAME:RELAY FLAGS" ...
#
#   scripts/bench-ab.sh -- "nocoalesce:--coalesce-ms 0" "default:" "budget50k:--send-budget 50000 --coalesce-ms 100"
#   scripts/bench-ab.sh -- "before@/tmp/dataplane-old:" "after:"    # two builds of the relay
#
# A variant is NAME:FLAGS, or NAME@BINARY:FLAGS to run another dataplane binary than this
# checkout's target/release/dataplane (e.g. a copy built before a change), or NAME@naive: to run
# the naive relay (scripts/naive_relay.py, no flags, no /metrics) in the same rounds:
#
#   scripts/bench-ab.sh --rounds 5 --duration 8s --load "-n 10000 --bitrate 1M --client crowd" -- "relay:" "naive@naive:"
#
# Each cell: a fresh `dataplane --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 FLAGS`, then
# `vanbench fanout --relay … --stream ab LOAD --duration D --relay-pid PID`; halfway through the
# window the relay's /metrics is read for its bytes and sends. Prints one line per cell, then
# per variant the median of the rounds. JSON and metrics stay in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 duration=10s load="-n 1000 --bitrate 4M" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --load) load="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set /{/^set /d;p}' "$0"; exit 0 ;;
    *) echo "bench-ab.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "bench-ab.sh: give at least one variant after -- (try --help)" >&2; exit 2; }
out="${out:-target/bench-ab/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
cargo build --release -q -p dataplane -p vanbench --bins
ulimit -n "$(ulimit -Hn)"
seconds="${duration%s}"

relay_pid=""
stop_relay() {
  [ -n "$relay_pid" ] || return 0
  kill -TERM "$relay_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$relay_pid" 2>/dev/null || true
  wait "$relay_pid" 2>/dev/null || true
  relay_pid=""
}
trap stop_relay EXIT

{ echo "start: $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')"; echo "load: $load, window $duration, $rounds rounds"; } >"$out/machine.txt"
variants=("$@")
for round in $(seq 1 "$rounds"); do
  for k in $(seq 0 $(( ${#variants[@]} - 1 ))); do
    variant="${variants[$(( (round - 1 + k) % ${#variants[@]} ))]}"
    name="${variant%%:*}" flags="${variant#*:}" binary=target/release/dataplane
    if [[ "$name" == *@* ]]; then binary="${name#*@}" name="${name%%@*}"; fi
    cell="$out/$name-$round"
    if [ "$binary" = naive ]; then
      python3 scripts/naive_relay.py --listen 127.0.0.1:0 >"$cell.relay.out" 2>"$cell.relay.err" &
    else
      # shellcheck disable=SC2086
      "$binary" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 $flags \
        >"$cell.relay.out" 2>"$cell.relay.err" &
    fi
    relay_pid=$!
    line=""
    for _ in $(seq 1 100); do
      line="$(grep -m1 '^listening ' "$cell.relay.out" 2>/dev/null || true)"
      [ -n "$line" ] && break
      sleep 0.1
    done
    [ -n "$line" ] || { echo "bench-ab.sh: $name: dataplane did not start: $(tail -n 2 "$cell.relay.err")" >&2; exit 1; }
    data="$(sed -n 's/.*data=\([^ ]*\).*/\1/p' <<<"$line")"
    admin="$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<<"$line")"
    # shellcheck disable=SC2086
    target/release/vanbench fanout --relay "http://$data" --stream ab $load --duration "$duration" \
      --relay-pid "$relay_pid" --json "$cell.json" 2>"$cell.log" >/dev/null &
    bench_pid=$!
    sleep "$(python3 -c "print(float('${seconds}') / 2 + 2)")"
    [ -z "$admin" ] || curl -s "http://$admin/metrics" >"$cell.metrics" || true
    wait "$bench_pid" || echo "bench-ab.sh: $name round $round: vanbench failed: $(tail -n 2 "$cell.log")" >&2
    stop_relay
  done
done
echo "end: $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" >>"$out/machine.txt"
cat "$out/machine.txt"
python3 - "$out" "$rounds" "$@" <<'EOF'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
variants = [v.split(":", 1)[0].split("@", 1)[0] for v in sys.argv[3:]]
def cell(name, r):
    try:
        j = json.load(open(f"{out}/{name}-{r}.json"))
    except (OSError, ValueError):
        return None
    try:
        m = open(f"{out}/{name}-{r}.metrics").read()
    except OSError:
        m = ""
    total = lambda fam: sum(int(x) for x in re.findall(rf'^van_dataplane_{fam}_total{{core="\d+"}} (\d+)', m, re.M))
    sends = total("sends_plain") + total("sends_zc")
    lat = j["latency_us"]
    return {"p50": lat["p50"] / 1e3, "p99": lat["p99"] / 1e3, "p999": lat["p999"] / 1e3,
            "cpu": j.get("relay_cpu_s_per_gb") or 0.0, "vb": j.get("self_cpu_s_per_gb") or 0.0,
            "ratio": j.get("delivered_ratio") or 0.0, "lost": j["lost"], "conn": j["connected"],
            "n": j["viewers"], "kb": total("bytes_out") / sends / 1e3 if sends else 0.0,
            "all": (j.get("all_connected_ms") or 0.0) / 1e3}
fmt = "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>9} {:>11} {:>8}"
print(fmt.format("variant", "p50 ms", "p99 ms", "p99.9 ms", "relay/GB", "bench/GB", "ratio", "lost", "KB/send", "conn", "all at s"))
for name in variants:
    cells = [c for c in (cell(name, r) for r in range(1, rounds + 1)) if c]
    for c in cells:
        print(fmt.format(name, f"{c['p50']:.2f}", f"{c['p99']:.2f}", f"{c['p999']:.2f}", f"{c['cpu']:.3f}",
                         f"{c['vb']:.3f}", f"{c['ratio']:.4f}", c["lost"], f"{c['kb']:.1f}", f"{c['conn']}/{c['n']}",
                         f"{c['all']:.2f}"))
    if len(cells) > 1:
        med = lambda k: statistics.median(c[k] for c in cells)
        print(fmt.format(name + " (median)", f"{med('p50'):.2f}", f"{med('p99'):.2f}", f"{med('p999'):.2f}",
                         f"{med('cpu'):.3f}", f"{med('vb'):.3f}", f"{med('ratio'):.4f}", "", f"{med('kb'):.1f}", "",
                         f"{med('all'):.2f}"))
EOF
