#!/usr/bin/env bash
# The whole fan-out comparison of BENCHMARKS.md, in one run on this machine: the VAN relay
# (`dataplane`), Debian's icecast2 and the issue's naive relay (scripts/naive_relay.py: asyncio,
# one thread, one write() per viewer per read, unbounded buffers) with the same load, and
# iperf3 -P 8 on loopback as the ceiling.
#
#   scripts/bench-compare.sh [--duration 10s] [--only relay|icecast|naive]
#                            [--scenarios "n10 n100 …"] [--out DIR] [--no-variants] [--no-crowd]
#                            [--nice N]
#
# Scenarios (each on fresh processes, one PUT source, plain GET viewers, 1 KiB records):
#   n10, n100, n1000  N viewers at 4 Mbit/s
#   n10000            10,000 viewers at 1 Mbit/s joining at once
#   unl100            an unlimited source, 100 viewers
#   stall100          100 viewers at 4 Mbit/s, one of them stops reading (compare p99 with n100)
# Icecast paced rows: n100, n1000 and n10000 again for Icecast with viewers joining at 200/s
#   (Icecast listens with a backlog of 5; the others up to somaxconn), tagged icecast-paced.
# Crowd rows: n1000 and n10000 again for the relay and the naive relay with
#   `vanbench --client crowd` (an outside load generator's behaviour: one tokio task and 64 KiB
#   buffer per viewer, all connecting at once, greedy reads), tagged relay-crowd / naive-crowd;
#   with the variants, n10000 once more with `--client-huge-pages` (the client's buffers on
#   transparent huge pages, whose faults stall it while it connects), tagged -crowd-thp.
#   --no-crowd skips them.
# Relay variants (--no-variants skips them):
#   relay-zc-on, -zc-off   --zerocopy on / off for n1000 and unl100 (plain send vs send_zc)
#   relay-nocoalesce       --coalesce-ms 0 for n100 and n1000 (a send on every publish)
#   relay-budget50k        --send-budget 50000 --coalesce-ms 100 for n100 and n1000 (the defaults
#                          before 2026-12-07: leaning to latency over CPU)
#   relay-reuseport        --placement reuseport for n1000 (the kernel's hash places viewers)
# Targets: relay, icecast, naive, all three by default; --only runs one.
# Results: one vanbench JSON per run in DIR (default target/bench-compare/TIMESTAMP), then a table.
# --nice N runs every measured process (relays, vanbench, iperf3) at that priority, e.g. -5 on a
# machine busy with other work, so all targets wait less for a CPU alike.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10s only="" out="" variants=1 crowd=1 prio=()
# Extra vanbench flags of the run under way (the crowd rows set --client crowd).
client=()
scenarios="n10 n100 n1000 n10000 unl100 stall100"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-variants) variants=0; shift ;;
    --no-crowd) crowd=0; shift ;;
    --nice) prio=(nice -n "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set /{/^set /d;p}' "$0"; exit 0 ;;
    *) echo "bench-compare.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$only" in
  ""|relay|icecast|naive) ;;
  *) echo "bench-compare.sh: --only takes relay, icecast or naive, not $only" >&2; exit 2 ;;
esac
# Whether target $1 runs.
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }
out="${out:-target/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

cargo build --release -q -p dataplane -p vanbench --bins
vanbench=target/release/vanbench
# Figures on a shared machine are only comparable within one run: record how busy it was.
{ echo "start: $(date -u +%FT%TZ) $(nproc) CPUs, $(uptime | sed 's/.*load/load/'), priority: ${prio[*]:-default}"; uname -r; } >"$out/machine.txt"
ulimit -n "$(ulimit -Hn)"

# The load of each scenario, as vanbench fanout flags.
load() {
  case "$1" in
    n10) echo "-n 10 --bitrate 4M" ;;
    n100) echo "-n 100 --bitrate 4M" ;;
    n1000) echo "-n 1000 --bitrate 4M" ;;
    n10000) echo "-n 10000 --bitrate 1M" ;;
    unl100) echo "-n 100 --unlimited" ;;
    stall100) echo "-n 100 --bitrate 4M --stall 1" ;;
    *) echo "bench-compare.sh: unknown scenario $1" >&2; exit 2 ;;
  esac
}

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap stop_all EXIT

# Runs scenario $s against a relay started by the command given after the first two arguments,
# which prints `listening data=IP:PORT …` once ready; results in $out/$target-$s.json.
served_run() {
  local target="$1" s="$2"; shift 2
  "${prio[@]}" "$@" >"$out/$target-$s.out" 2>"$out/$target-$s.err" &
  local pid=$! line=""
  pids+=("$pid")
  for _ in $(seq 1 100); do
    line="$(grep -m1 '^listening ' "$out/$target-$s.out" 2>/dev/null || true)"
    [ -n "$line" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$line" ]; then
    echo "$target $s: $1 did not start: $(tail -n 3 "$out/$target-$s.err")" >&2
    stop_pid "$pid"
    return 0
  fi
  local data
  data="$(sed -n 's/.*data=\([^ ]*\).*/\1/p' <<<"$line")"
  echo "== $target $s ($(load "$s"))" >&2
  # shellcheck disable=SC2046
  "${prio[@]}" $vanbench fanout --relay "http://$data" --stream "$s" $(load "$s") --duration "$duration" \
    "${client[@]}" --relay-pid "$pid" --json "$out/$target-$s.json" 2>"$out/$target-$s.log" ||
    echo "$target $s: vanbench failed: $(tail -n 2 "$out/$target-$s.log")" >&2
  stop_pid "$pid"
  sleep 1
}

# The VAN relay with extra flags; its results are tagged relay$tag.
relay_run() {
  local s="$1" tag="$2"; shift 2
  served_run "relay$tag" "$s" target/release/dataplane --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@"
}

# The issue's naive relay (scripts/naive_relay.py), driven like the relay (chunked PUT).
naive_run() {
  served_run "naive${2:-}" "$1" python3 scripts/naive_relay.py --listen 127.0.0.1:0
}

# Icecast; its results are tagged icecast$tag and the extra vanbench flags follow the tag.
# Icecast's own source listens with a backlog of 5 (the naive relay and the VAN relay: up to
# somaxconn), so viewers joining all at once measure its accept queue as much as its fan-out:
# the -paced rows join at 200/s to measure the fan-out itself.
icecast_run() {
  local s="$1" tag="${2:-}" vars
  shift; [ $# -gt 0 ] && shift
  vars="$("${prio[@]}" scripts/icecast.sh start --port 18000 --password hackme)" || { echo "icecast did not start" >&2; return 0; }
  local ICECAST_PID ICECAST_URL ICECAST_DIR
  eval "$vars"
  pids+=("$ICECAST_PID")
  echo "== icecast$tag $s ($(load "$s") $*)" >&2
  # Like ffmpeg's icecast:// output: PUT, Expect: 100-continue, close-delimited body.
  # shellcheck disable=SC2046
  "${prio[@]}" $vanbench fanout --relay "$ICECAST_URL" --stream "$s" $(load "$s") --duration "$duration" \
    --method put --framing close --password hackme "$@" \
    --relay-pid "$ICECAST_PID" --json "$out/icecast$tag-$s.json" 2>"$out/icecast$tag-$s.log" ||
    echo "icecast$tag $s: vanbench failed: $(tail -n 2 "$out/icecast$tag-$s.log")" >&2
  scripts/icecast.sh stop "$ICECAST_PID" "$ICECAST_DIR"
  sleep 1
}

# The ceiling: loopback TCP with 8 parallel streams, measured before and after the scenarios
# (the table takes the higher: on a busy machine one 5 s sample can land in a bad moment).
ceiling() {
  command -v iperf3 >/dev/null || return 0
  echo "== iperf3 -P 8 ($1)" >&2
  "${prio[@]}" iperf3 -s -1 -p 15201 >/dev/null 2>&1 &
  local ipid=$!
  pids+=("$ipid")
  sleep 0.5
  "${prio[@]}" iperf3 -c 127.0.0.1 -p 15201 -P 8 -t 5 -J >"$out/iperf3-$1.json" 2>/dev/null || true
  stop_pid "$ipid"
}
ceiling before

for s in $scenarios; do
  if want relay; then relay_run "$s" ""; fi
  if want icecast; then icecast_run "$s"; fi
  if want naive; then naive_run "$s"; fi
  case "$s" in
    n100|n1000|n10000) if want icecast; then icecast_run "$s" -paced --connect-rate 200/s; fi ;;
  esac
done
if [ "$crowd" = 1 ]; then
  client=(--client crowd)
  for s in n1000 n10000; do
    case " $scenarios " in *" $s "*) ;; *) continue ;; esac
    if want relay; then relay_run "$s" "-crowd"; fi
    if want naive; then naive_run "$s" "-crowd"; fi
  done
  if [ "$variants" = 1 ]; then
    case " $scenarios " in
      *" n10000 "*)
        client=(--client crowd --client-huge-pages)
        if want relay; then relay_run n10000 "-crowd-thp"; fi
        if want naive; then naive_run n10000 "-crowd-thp"; fi ;;
    esac
  fi
  client=()
fi
if [ "$variants" = 1 ] && want relay; then
  for s in n1000 unl100; do
    relay_run "$s" "-zc-off" --zerocopy off
    relay_run "$s" "-zc-on" --zerocopy on
  done
  # Send coalescing (--send-budget, --coalesce-ms) against none, and a budget leaning to latency.
  for s in n100 n1000; do
    relay_run "$s" "-nocoalesce" --coalesce-ms 0
    relay_run "$s" "-budget50k" --send-budget 50000 --coalesce-ms 100
  done
  relay_run n1000 "-reuseport" --placement reuseport
fi

ceiling after
echo "end: $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" >>"$out/machine.txt"
cat "$out/machine.txt"
python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
rows = []
ceiling = None
samples = []
for name in ("iperf3.json", "iperf3-before.json", "iperf3-after.json"):
    try:
        j = json.load(open(os.path.join(out, name)))
        samples.append((name[:-5], j["end"]["sum_received"]["bits_per_second"]))
    except Exception:
        pass
if samples:
    ceiling = max(v for _, v in samples)
def f(x, fmt):
    return "-" if x is None else fmt.format(x)
print(f"results in {out}")
for name, v in samples:
    print(f"{name} -P 8 loopback: {v/1e9:.2f} Gbit/s")
hdr = ("scenario", "target", "conn/n", "connect p50/p99 ms", "all-200 ms", "dropped", "Gbit/s", "ratio", "lost",
       "corrupt", "p50 ms", "p99 ms", "relay CPU-s/GB", "relay KiB/viewer", "vanbench CPU-s",
       "of iperf3")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
order = {"n10": 0, "n100": 1, "stall100": 2, "n1000": 3, "n10000": 4, "unl100": 5}
runs = []
for name in os.listdir(out):
    if not name.endswith(".json") or name.startswith("iperf3"):
        continue
    try:
        s = json.load(open(os.path.join(out, name)))
    except Exception:
        continue
    target, _, scenario = name[:-5].rpartition("-")
    runs.append(((order.get(scenario, 9), scenario, target), s))
for (_, scenario, target), s in sorted(runs, key=lambda r: r[0]):
    lat = s["latency_us"]
    c = s["connect_ms"]
    row = (scenario, target, f"{s['connected']}/{s['viewers']}", f"{c['p50']:.1f} / {c['p99']:.1f}",
           f(s["all_connected_ms"], "{:.0f}"),
           str(s.get("ended", "-")), f(s["delivered_bps"] / 1e9, "{:.3f}"),
           f(s["delivered_ratio"], "{:.3f}"), str(s["lost"]), str(s["corrupt"]),
           f(lat["p50"] / 1e3, "{:.2f}"), f(lat["p99"] / 1e3, "{:.2f}"),
           f(s["relay_cpu_s_per_gb"], "{:.3f}"), f(s.get("relay_kib_per_viewer"), "{:.1f}"),
           f(s["self_cpu_s"], "{:.2f}"),
           f(s["delivered_bps"] / ceiling if ceiling else None, "{:.0%}"))
    print("| " + " | ".join(row) + " |")
EOF
