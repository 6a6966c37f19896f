#!/usr/bin/env bash
# The simulator against real processes at small scale (issue 11, item 3). One trace shape, run
# twice: on 127.0.0.1 by a real PNC, an origin relay and relays pinned to tiers, with vanbench
# viewers arriving through /resolve; and by `vanbench simulate` on a trace of the same logins and
# logoffs, over the same overlay and coordinator settings. Printed side by side: activations,
# deactivations, refused viewers, peak active relays, the most viewers at one relay, the tree's
# depth. Everything started is stopped on exit or Ctrl-C.
#
#   scripts/validate-sim.sh [--tiers 2,4,8] [--capacity 8] [--viewers 60] [--rate 6]
#       [--watch 15] [--bitrate 512k] [--rounds 1] [--out DIR]
#
# Viewers arrive `--rate` per second, all watch until `--watch` s after the last one arrived,
# then leave together (an event's end). The coordinator: ΔT 2 s, sp 10 s, heartbeats every
# 500 ms (the same in both runs). The real activation delay (Activate to serving) is about
# 100–300 ms here (BENCHMARKS.md, the network, part 3): the simulation uses 200 ms.
set -euo pipefail
cd "$(dirname "$0")/.."

tiers=2,4,8 capacity=8 viewers=60 rate=6 watch=15 bitrate=512k rounds=1 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tiers) tiers="$2"; shift 2 ;;
    --capacity) capacity="$2"; shift 2 ;;
    --viewers) viewers="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --watch) watch="$2"; shift 2 ;;
    --bitrate) bitrate="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "validate-sim: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
delta_t_ms=2000 sp_ms=10000 heartbeat_ms=500

echo "validate-sim: building release binaries" >&2
cargo build --release -q -p dataplane -p control -p vanbench --bins
out="${out:-target/validate-sim/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
bin=target/release

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap stop_all EXIT
trap 'exit 130' INT TERM

IFS=, read -r -a tier_sizes <<<"$tiers"
# The trace both runs follow: login i at i/rate s; everyone leaves `watch` s after the last login.
python3 - "$viewers" "$rate" "$watch" >"$out/trace.csv" <<'EOF'
import sys
n, rate, watch = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print("t_ms,event,stream,region")
for i in range(n):
    print(f"{round(i * 1000 / rate)},login,demo,default")
end = round(((n - 1) / rate + watch) * 1000)
for i in range(n):
    print(f"{end},logoff,demo,default")
EOF

real_round() {
  local r="$1" dir="$out/real-$r"
  mkdir -p "$dir"
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$dir/token"
  {
    printf 'token_file = "%s"\n[listen]\ncontrol = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\npublic = "127.0.0.1:0"\ndns = "127.0.0.1:0"\n' "$PWD/$dir/token"
    printf '[coordinator]\ndelta_t_ms = %d\nsp_ms = %d\nheartbeat_interval_ms = %d\nheartbeat_timeout_ms = 3000\n' \
      "$delta_t_ms" "$sp_ms" "$heartbeat_ms"
    printf '[[proxies]]\nid = 1\nlogical_connections = 1000\n'
    local t id
    for t in "${!tier_sizes[@]}"; do
      for ((j = 1; j <= tier_sizes[t]; j++)); do
        id=$(((t + 1) * 100 + j))
        printf '[[proxies]]\nid = %d\ntier = %d\nlogical_connections = %d\n' "$id" $((t + 1)) "$capacity"
      done
    done
  } >"$dir/pnc.toml"
  $bin/pnc --config "$dir/pnc.toml" >"$dir/pnc.out" 2>"$dir/pnc.err" &
  pids+=($!)
  local line control admin public
  line="$(listening_line "$dir/pnc.out" "${pids[-1]}" pnc)" || exit 1
  control="$(field control "$line")" admin="$(field admin "$line")" public="$(field public "$line")"
  local id cap
  for id in 1 $(sed -n 's/^id = //p' "$dir/pnc.toml" | tail -n +2); do
    cap=$capacity
    [ "$id" = 1 ] && cap=1000
    $bin/dataplane --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --cores 1 --pool-blocks 128 \
      --van-token-file "$dir/token" --pnc "$control" --pnc-token-file "$dir/token" \
      --proxy-id "$id" --name "P$id" --capacity-connections "$cap" --stream-capacity-connections "$cap" \
      --delta-t-ms "$delta_t_ms" >"$dir/p$id.out" 2>"$dir/p$id.err" &
    pids+=($!)
    line="$(listening_line "$dir/p$id.out" "${pids[-1]}" "relay P$id")" || exit 1
    [ "$id" = 1 ] && origin="$(field data "$line")"
  done
  $bin/vanbench source --url "http://$origin/live/demo" --bitrate "$bitrate" 2>"$dir/source.err" &
  pids+=($!)
  sleep 3 # every relay registered and heartbeating
  # The tree every 200 ms, for the peaks.
  (while true; do curl -s "http://$admin/api/topology" || true; echo; sleep 0.2; done) >"$dir/topology.jsonl" &
  pids+=($!)
  $bin/vanbench viewers --client crowd --url "http://$public/resolve/demo" -n "$viewers" \
    --connect-rate "$rate/s" --bitrate "$bitrate" --duration "${watch}s" --connect-timeout 15s \
    --json "$dir/viewers.json" >/dev/null 2>"$dir/viewers.err" || true
  sleep $((delta_t_ms / 1000 * 3)) # the tree unwinds
  curl -s "http://$admin/metrics" >"$dir/pnc-metrics.txt"
  stop_all
  metric() { sed -n "s/^pnc_$1_total \\([0-9]*\\)$/\\1/p" "$dir/pnc-metrics.txt"; }
  jq -s -c --argjson act "$(metric activations)" --argjson deact "$(metric deactivations)" \
    --slurpfile v "$dir/viewers.json" '
    [.[] | select(type == "object") | .streams[]? | select(.stream == "demo")
      | [.regions[].tiers[] | {tier, active: [.active[] | select(.proxy != 1)]}]] as $samples
    | {activations: $act, deactivations: $deact,
       refused: ($v[0].failed // 0), connected: ($v[0].connected // 0),
       peak_active_relays: ([$samples[] | [.[].active[]] | length] | max // 0),
       peak_viewers_per_proxy: ([$samples[] | .[].active[].viewers] | max // 0),
       depth: ([$samples[] | .[] | select((.active | length) > 0) | .tier] | max // 0)}' \
    "$dir/topology.jsonl" >"$dir/summary.json"
  echo "validate-sim: real round $r: $(cat "$dir/summary.json")" >&2
}

for ((r = 1; r <= rounds; r++)); do real_round "$r"; done

$bin/vanbench simulate --trace "$out/trace.csv" --regions 1 --tiers "$tiers" --capacity "$capacity" \
  --bitrate "$bitrate" --activation-ms 200 --control-ms 1 --delta-t-ms "$delta_t_ms" --sp-ms "$sp_ms" \
  --heartbeat-ms "$heartbeat_ms" --quiet --json "$out/sim.json" 2>"$out/sim.err"
jq -c '{activations, deactivations, refused: (.rejected + .gave_up), connected: (.logins - .rejected - .gave_up),
  peak_active_relays: .peak_active_proxies, peak_viewers_per_proxy, depth: .max_tier}' "$out/sim.json" >"$out/sim-summary.json"

echo
echo "validate-sim: $viewers viewers at $rate/s, watching ${watch}s; tiers $tiers of capacity $capacity ($out)"
jq -r -n --slurpfile sim "$out/sim-summary.json" '
  ($sim[0]) as $s
  | [inputs] as $real
  | ["figure", "simulated", "real (each round)", "real median", "sim / real"],
    (["activations", "deactivations", "refused", "connected", "peak_active_relays",
      "peak_viewers_per_proxy", "depth"][] as $k
     | ([$real[][$k]] | sort) as $v
     | ($v[(($v | length) - 1) / 2 | floor]) as $med
     | [$k, $s[$k], ($v | map(tostring) | join(" ")), $med,
        (if $med == 0 then (if $s[$k] == 0 then "=" else "-" end) else ($s[$k] / $med * 100 | round / 100 | tostring) end)])
  | @tsv' "$out"/real-*/summary.json | column -t -s $'\t'
