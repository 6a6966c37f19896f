#!/usr/bin/env bash
# The network's figures (issue 10, item 8), on 127.0.0.1 with real processes:
#   1. latency added per tier (p50/p99): one vanbench source at an origin relay, viewers reading
#      at the origin and at tier 1, 2 and 3 of a chain pulled with `dataplane --pull`, the four
#      places interleaved over several rounds (the order rotates each round);
#   2. a 3-tier tree under the PNC, viewers arriving through /resolve: with no fault (the tree's
#      own latency and the viewers' normal longest gap between records), then kill -9 of the
#      tier-2 relay above them with one parent per proxy and with redundant_parents = 2 (each
#      viewer's longest gap between records, `max_gap_ms`);
#   3. from the PNC's Activate of a tier-3 relay (its `pnc::decision` line) to the relay's first
#      byte to a viewer (its admin /metrics polled every 10 ms), measured in step 2's runs;
#   4. 100 relays (`--cores 1`, a small pool) under one PNC and a flash crowd through /resolve:
#      the PNC's CPU seconds (/proc/PID/stat) and events per second (its admin /metrics).
# Everything runs on ephemeral ports and is stopped by PID on exit or Ctrl-C. Logs, each run's
# JSON and the PNC's decision log are kept in target/bench-network/TIMESTAMP/.
#
#   scripts/bench-network.sh [--parts 1,2,3,4] [--rounds 3] [--viewers 50] [--window 8]
#       [--bitrate 2M] [--proxies 100] [--crowd 2000] [--crowd-rate 400] [--json FILE]
#
# Part 3 needs part 2 (its figures come from part 2's runs).
set -euo pipefail
cd "$(dirname "$0")/.."

parts=1,2,3,4 rounds=3 viewers=50 window=8 bitrate=2M proxies=100 crowd=2000 crowd_rate=400
json_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --parts) parts="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --viewers) viewers="$2"; shift 2 ;;
    --window) window="$2"; shift 2 ;;
    --bitrate) bitrate="$2"; shift 2 ;;
    --proxies) proxies="$2"; shift 2 ;;
    --crowd) crowd="$2"; shift 2 ;;
    --crowd-rate) crowd_rate="$2"; shift 2 ;;
    --json) json_out="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench-network: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
want() { [[ ",$parts," == *",$1,"* ]]; }

echo "bench-network: building release binaries (cargo build --release -p dataplane -p control -p vanbench)" >&2
cargo build --release -p dataplane -p control -p vanbench --bins 2>&1 | grep -E '^\s*(Compiling|Finished)' >&2 || true
bin="${CARGO_TARGET_DIR:-target}/release"
for b in dataplane pnc vanbench; do
  [ -x "$bin/$b" ] || { echo "bench-network: $bin/$b missing (build failed?)" >&2; exit 1; }
done

out="target/bench-network/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
echo "bench-network: logs and JSON in $out" >&2
{ date -u; uptime; nproc; free -m; } >"$out/machine.txt"

pids=()
# Stops the processes started since index $1, newest first: TERM, then KILL after 5 s.
stop_from() {
  local from="$1" i pid
  for ((i = ${#pids[@]} - 1; i >= from; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for ((i = ${#pids[@]} - 1; i >= from; i--)); do
    pid="${pids[i]}"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=("${pids[@]:0:from}")
}
trap 'stop_from 0' EXIT
trap 'exit 130' INT TERM

# Waits for a process's `listening …` line; prints it.
listening_line() {
  local file="$1" err="$2" pid="$3" what="$4" line=""
  for _ in $(seq 1 300); do
    line="$(grep -m1 '^listening ' "$file" 2>/dev/null || true)"
    [ -n "$line" ] && { echo "$line"; return 0; }
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "bench-network: $what exited at start-up:" >&2
      cat "$err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "bench-network: $what printed no listening line within 30 s" >&2
  exit 1
}
field() { sed -n "s/.*$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
metric() { curl -s "http://$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }

token="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
echo "$token" >"$out/token"

# A relay: `relay NAME ARGS…` starts it and sets data_NAME, admin_NAME and pid_NAME.
relay() {
  local name="$1"; shift
  NO_COLOR=1 "$bin/dataplane" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --van-token-file "$out/token" "$@" >"$out/$name.out" 2>"$out/$name.err" &
  pids+=($!)
  eval "pid_$name=$!"
}
# Waits for the relays named in "$@" and reads their addresses.
relays_ready() {
  local name l p
  for name in "$@"; do
    p="pid_$name"
    l="$(listening_line "$out/$name.out" "$out/$name.err" "${!p}" "relay $name")"
    eval "data_$name=$(field data "$l") admin_$name=$(field admin "$l")"
  done
}

# A PNC: `pnc TAG REDUNDANT HEARTBEAT_TIMEOUT_MS` with the [[proxies]] tables on stdin (not
# from a pipe: it sets variables and records its PID).
pnc() {
  local tag="$1" redundant="$2" timeout_ms="$3"
  {
    cat <<EOF
token_file = "$out/token"
[listen]
control = "127.0.0.1:0"
admin = "127.0.0.1:0"
public = "127.0.0.1:0"
dns = "127.0.0.1:0"
[coordinator]
delta_t_ms = 2000
heartbeat_interval_ms = 500
heartbeat_timeout_ms = $timeout_ms
redundant_parents = $redundant
EOF
    cat
  } >"$out/$tag-pnc.toml"
  NO_COLOR=1 "$bin/pnc" --config "$out/$tag-pnc.toml" >"$out/$tag-pnc.out" 2>"$out/$tag-pnc.err" &
  pids+=($!)
  pnc_pid=$!
  local l
  l="$(listening_line "$out/$tag-pnc.out" "$out/$tag-pnc.err" "$pnc_pid" pnc)"
  control="$(field control "$l")" admin="$(field admin "$l")" public="$(field public "$l")"
}
proxy_table() { printf '[[proxies]]\nid = %d\n%slogical_connections = %d\n' "$1" "${3:+tier = $3
}" "$2"; }
# A relay under the PNC: `pnc_relay TAG ID CAPACITY [more dataplane args]`.
pnc_relay() {
  local tag="$1" id="$2" cap="$3"; shift 3
  relay "${tag}_p$id" --cores 1 --pnc "$control" --pnc-token-file "$out/token" --proxy-id "$id" \
    --name "P$id" --capacity-connections "$cap" "$@"
}

# `viewers FILE URL N DURATION_S [more vanbench args]`: one vanbench viewers run, JSON to FILE.
viewers() {
  local file="$1" url="$2" n="$3" dur="$4"; shift 4
  "$bin/vanbench" viewers --url "$url" -n "$n" --bitrate "$bitrate" --duration "${dur}s" \
    --json "$file" "$@" >/dev/null 2>"${file%.json}.err"
}

results="$out/results.json"
echo '{}' >"$results"
# `put KEY JSON`: adds a figure to the results.
put() { jq --argjson v "$2" ".$1 = \$v" "$results" >"$results.tmp" && mv "$results.tmp" "$results"; }

# ---- 1. Latency added per tier: a pulled chain -----------------------------------------------
part_latency() {
  local mark=${#pids[@]}
  echo "bench-network: [1] chain origin → T1 → T2 → T3 (--pull), $viewers viewers per place, $rounds rounds of ${window} s" >&2
  # --max-connections 100: the viewers are half of each relay's capacity.
  relay o --cores 1 --max-connections 100
  relays_ready o
  relay t1 --cores 1 --max-connections 100 --pull "demo=$data_o"
  relays_ready t1
  relay t2 --cores 1 --max-connections 100 --pull "demo=$data_t1"
  relays_ready t2
  relay t3 --cores 1 --max-connections 100 --pull "demo=$data_t2"
  relays_ready t3
  "$bin/vanbench" source --url "http://$data_o/live/demo" --bitrate "$bitrate" 2>"$out/chain-source.err" &
  pids+=($!)
  sleep 3
  local places=(o t1 t2 t3) r k place d
  for ((r = 1; r <= rounds; r++)); do
    for k in 0 1 2 3; do
      place="${places[$(((k + r - 1) % 4))]}"
      d="data_$place"
      viewers "$out/chain-r$r-$place.json" "http://${!d}/live/demo" "$viewers" "$window"
      echo "bench-network: [1] round $r $place: $(jq -c '{p50: .latency_us.p50, p99: .latency_us.p99, lost, duplicated, connected}' "$out/chain-r$r-$place.json")" >&2
    done
  done
  stop_from "$mark"
  # Per round and place, then medians over rounds; added = place − the place above it, per round.
  put chain "$(
    for f in "$out"/chain-r*.json; do
      b="$(basename "$f" .json)"
      jq -c --arg r "${b#chain-r}" '{round: ($r | split("-")[0] | tonumber), place: ($r | split("-")[1]),
        p50: .latency_us.p50, p99: .latency_us.p99, lost, duplicated, connected}' "$f"
    done | jq -s '
      def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
      . as $all
      | ["o","t1","t2","t3"] as $places
      | {runs: $all,
         places: [$places[] as $p | {place: $p,
            p50_us: [$all[] | select(.place == $p) | .p50] | median,
            p99_us: [$all[] | select(.place == $p) | .p99] | median,
            p99_us_range: ([$all[] | select(.place == $p) | .p99] | [min, max])}],
         added: [range(1; 4) as $i | {tier: $i,
            p50_us: [$all[] | select(.place == $places[$i]) as $x
                      | ($all[] | select(.place == $places[$i - 1] and .round == $x.round) | $x.p50 - .p50)] | median,
            p99_us: [$all[] | select(.place == $places[$i]) as $x
                      | ($all[] | select(.place == $places[$i - 1] and .round == $x.round) | $x.p99 - .p99)] | median,
            p99_us_range: [$all[] | select(.place == $places[$i]) as $x
                      | ($all[] | select(.place == $places[$i - 1] and .round == $x.round) | $x.p99 - .p99)] | [min, max]}],
         three_tiers: {
            p50_us: [$all[] | select(.place == "t3") as $x | ($all[] | select(.place == "o" and .round == $x.round) | $x.p50 - .p50)] | median,
            p99_us: [$all[] | select(.place == "t3") as $x | ($all[] | select(.place == "o" and .round == $x.round) | $x.p99 - .p99)] | median,
            p99_us_range: [$all[] | select(.place == "t3") as $x | ($all[] | select(.place == "o" and .round == $x.round) | $x.p99 - .p99)] | [min, max]}}'
  )"
}

# Polls the admin ports given as NAME=ADDR every 10 ms; prints `NAME first_bytes_out_epoch_s`
# for each relay once it has sent its first byte to a viewer.
first_bytes_poller() {
  exec python3 - "$@" <<'EOF'
import sys, time, http.client
targets = dict(a.split("=", 1) for a in sys.argv[1:])
conns = {}
while targets:
    for name, addr in list(targets.items()):
        try:
            c = conns.get(name) or http.client.HTTPConnection(addr, timeout=1)
            c.request("GET", "/metrics")
            body = c.getresponse().read().decode()
            conns[name] = c
        except Exception:
            conns.pop(name, None)
            continue
        sent = sum(float(l.split()[-1]) for l in body.splitlines()
                   if l.startswith("van_dataplane_bytes_out_total"))
        if sent > 0:
            print(name, f"{time.time():.6f}", flush=True)
            del targets[name]
    time.sleep(0.01)
EOF
}

# ---- 2 and 3. A 3-tier tree under the PNC; a tier-2 relay killed --------------------------------
# `tree_run TAG REDUNDANT KILL` (KILL: yes or no).
tree_run() {
  local tag="$1" redundant="$2" kill="$3" mark=${#pids[@]} cap=10 n=30 t j
  echo "bench-network: [2] $tag: PNC, origin P1, relays P11-P13, P21-P23, P31-P33 (capacity $cap), redundant_parents $redundant, $n viewers via /resolve, kill -9 of the tier-2 parent: $kill" >&2
  {
    proxy_table 1 1000
    for t in 1 2 3; do for j in 1 2 3; do proxy_table $((t * 10 + j)) "$cap" "$t"; done; done
  } >"$out/$tag-proxies.toml"
  pnc "$tag" "$redundant" 3000 <"$out/$tag-proxies.toml"
  local names=("${tag}_p1")
  pnc_relay "$tag" 1 1000 --pool-blocks 512
  for t in 1 2 3; do for j in 1 2 3; do
    pnc_relay "$tag" $((t * 10 + j)) $((cap * 4)) --pool-blocks 512
    names+=("${tag}_p$((t * 10 + j))")
  done; done
  relays_ready "${names[@]}"
  local p1="data_${tag}_p1"
  "$bin/vanbench" source --url "http://${!p1}/live/demo" --bitrate "$bitrate" 2>"$out/$tag-source.err" &
  pids+=($!)
  sleep 2
  local polled=() a
  for j in 1 2 3; do a="admin_${tag}_p3$j"; polled+=("P3$j=${!a}"); done
  first_bytes_poller "${polled[@]}" >"$out/$tag-first-bytes.txt" &
  pids+=($!)
  # The viewers arrive 10 per second, watch 12 s once all are in; the kill comes 5 s into that.
  viewers "$out/$tag-tree.json" "http://$public/resolve/demo" "$n" 12 --client crowd --connect-rate 10/s &
  local vpid=$!
  pids+=("$vpid")
  if [ "$kill" = "no" ]; then
    # Viewers read directly at the origin meanwhile: the tree's tier-3 latency against it.
    sleep $((n / 10 + 1))
    viewers "$out/$tag-origin.json" "http://${!p1}/live/demo" 10 10
  else
    sleep $((n / 10 + 5))
    curl -s "http://$admin/api/topology" >"$out/$tag-topology-before.json"
    # The tier-2 relay that most tier-3 relays with viewers pull from.
    local victim
    victim="$(jq -r '[.streams[0].regions[].tiers[] | select(.tier == 3) | .active[] | select(.viewers > 0)
      | .parents[]] | group_by(.) | max_by(length) | .[0]' "$out/$tag-topology-before.json")"
    [ -n "$victim" ] && [ "$victim" != "null" ] || { echo "bench-network: [2] $tag: no tier-3 relay with viewers" >&2; exit 1; }
    local vp="pid_${tag}_p$victim"
    echo "bench-network: [2] $tag: kill -9 P$victim (pid ${!vp}) at $(date -u +%T.%N)" >&2
    date +%s.%N >"$out/$tag-kill-at.txt"
    echo "$victim" >>"$out/$tag-kill-at.txt"
    kill -KILL "${!vp}"
    sleep 5
    curl -s "http://$admin/api/topology" >"$out/$tag-topology-after.json"
  fi
  wait "$vpid" || true
  curl -s "http://$admin/metrics" >"$out/$tag-pnc-metrics.txt"
  stop_from "$mark"
  put "tree_$tag" "$(jq -c --arg kill "$kill" --argjson red "$redundant" '{redundant_parents: $red, kill: $kill,
      viewers, connected, failed, lost, duplicated, seq_gaps, latency_us, max_gap_ms}' "$out/$tag-tree.json")"
  if [ -f "$out/$tag-origin.json" ]; then
    put "origin_$tag" "$(jq -c '{viewers, lost, latency_us}' "$out/$tag-origin.json")"
  fi
  # 3: Activate (the PNC's decision line) → the relay's pull from its parent live (its log; a
  # standby pulls at its first viewer) → its first byte to a viewer (the poller).
  put "activate_to_serving_$tag" "$(
    while read -r name first; do
      act="$(grep 'pnc::decision' "$out/$tag-pnc.err" | grep "activated in .* tier 3" | grep "proxy=$name " | head -1 | cut -d' ' -f1)"
      [ -n "$act" ] || continue
      live="$(grep -m1 'pulled stream live' "$out/${tag}_p${name#P}.err" | cut -d' ' -f1)"
      python3 -c 'import sys, datetime
t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
a = t(sys.argv[1])
live = "%.1f" % ((t(sys.argv[4]) - a) * 1e3) if sys.argv[4] else "null"
print("{\"proxy\": \"%s\", \"activate_to_pull_live_ms\": %s, \"activate_to_first_byte_ms\": %.1f}"
      % (sys.argv[3], live, (float(sys.argv[2]) - a) * 1e3))' "$act" "$first" "$name" "$live"
    done <"$out/$tag-first-bytes.txt" | jq -s -c .
  )"
}

# ---- 4. 100 relays and a flash crowd -------------------------------------------------------------
part_crowd() {
  local mark=${#pids[@]} tag=crowd i id tier t1 t2 t3 cap
  # Tiers: about a tenth in tier 1, three tenths in tier 2, the rest in tier 3; the crowd fills
  # tier 3 to about two thirds.
  t1=$(((proxies - 1) / 10)) t2=$((3 * (proxies - 1) / 10)) t3=$((proxies - 1 - t1 - t2))
  cap=$(((crowd * 3 / 2 + t3 - 1) / t3))
  echo "bench-network: [4] PNC and $proxies relays (origin, tiers of $t1/$t2/$t3, capacity $cap), a crowd of $crowd at $crowd_rate/s via /resolve" >&2
  {
    proxy_table 1 100000
    for ((i = 1; i < proxies; i++)); do
      if ((i <= t1)); then tier=1; elif ((i <= t1 + t2)); then tier=2; else tier=3; fi
      proxy_table $((100 + i)) "$cap" "$tier"
    done
  } >"$out/$tag-proxies.toml"
  pnc "$tag" 1 3000 <"$out/$tag-proxies.toml"
  local names=("${tag}_p1")
  pnc_relay "$tag" 1 100000 --pool-blocks 256
  for ((i = 1; i < proxies; i++)); do
    pnc_relay "$tag" $((100 + i)) $((cap * 2)) --pool-blocks 64
    names+=("${tag}_p$((100 + i))")
  done
  relays_ready "${names[@]}"
  local p1="data_${tag}_p1"
  "$bin/vanbench" source --url "http://${!p1}/live/demo" --bitrate 256k 2>"$out/$tag-source.err" &
  pids+=($!)
  sleep 5 # every relay registered and heartbeating
  local cpu0 ev0 rs0 t0 cpu1 ev1 rs1 t_1 idle_cpu
  cpu0="$(cpu_s "$pnc_pid")" ev0="$(metric "$admin" pnc_events_total)" t0="$(date +%s.%N)"
  sleep 10
  idle_cpu="$(echo "$(cpu_s "$pnc_pid") - $cpu0" | bc -l)"
  local idle_ev
  idle_ev=$(($(metric "$admin" pnc_events_total) - ev0))
  cpu0="$(cpu_s "$pnc_pid")" ev0="$(metric "$admin" pnc_events_total)" rs0="$(metric "$admin" pnc_http_resolves_total)" t0="$(date +%s.%N)"
  "$bin/vanbench" viewers --client crowd --url "http://$public/resolve/demo" -n "$crowd" --connect-rate "$crowd_rate/s" \
    --bitrate 256k --duration 15s --connect-timeout 20s --json "$out/$tag-viewers.json" >/dev/null 2>"$out/$tag-viewers.err" || true
  cpu1="$(cpu_s "$pnc_pid")" ev1="$(metric "$admin" pnc_events_total)" rs1="$(metric "$admin" pnc_http_resolves_total)" t_1="$(date +%s.%N)"
  curl -s "http://$admin/metrics" >"$out/$tag-pnc-metrics.txt"
  curl -s "http://$admin/api/topology" >"$out/$tag-topology.json"
  local rss_relays=0 p n pid
  for n in "${names[@]}"; do p="pid_$n"; pid="${!p}"
    rss_relays=$((rss_relays + $(awk '/VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  local rss_pnc active
  rss_pnc="$(awk '/VmRSS/ { print $2 }' "/proc/$pnc_pid/status")"
  active="$(jq '[.streams[0].regions[].tiers[].active[]] | length' "$out/$tag-topology.json" 2>/dev/null || echo null)"
  stop_from "$mark"
  put crowd "$(jq -n -c --argjson proxies "$proxies" --argjson crowd "$crowd" --argjson rate "$crowd_rate" \
    --argjson idle_cpu "$idle_cpu"  --argjson idle_ev "$idle_ev" \
    --argjson cpu "$(echo "$cpu1 - $cpu0" | bc -l)" --argjson secs "$(echo "$t_1 - $t0" | bc -l)" \
    --argjson ev "$((ev1 - ev0))" --argjson rs "$((rs1 - rs0))" --argjson rss_relays "$rss_relays" \
    --argjson rss_pnc "$rss_pnc" --argjson active "$active" --slurpfile v "$out/$tag-viewers.json" '
    {proxies: $proxies, crowd: $crowd, connect_rate: $rate, active_proxies: $active,
     idle_10s: {pnc_cpu_s: $idle_cpu, events_per_s: ($idle_ev / 10)},
     run_s: $secs, pnc_cpu_s: $cpu, pnc_cpu_share: ($cpu / $secs),
     events_per_s: ($ev / $secs), resolves_per_s: ($rs / $secs),
     events_but_resolves_per_s: (($ev - $rs) / $secs),
     pnc_rss_kib: $rss_pnc, relays_rss_kib_total: $rss_relays,
     viewers: ($v[0] | {connected, failed, lost, duplicated, failures, latency_us, connect_ms})}')"
}

want 1 && part_latency
if want 2 || want 3; then
  tree_run nokill 1 no
  tree_run kill1 1 yes
  tree_run kill2 2 yes
fi
want 4 && part_crowd

echo >&2
echo "bench-network: results ($out/results.json)" >&2
jq -r '
  (if .chain then
    "latency per place (median of rounds, µs):  place p50 p99 [p99 min–max]",
    (.chain.places[] | "  \(.place)\t\(.p50_us)\t\(.p99_us)\t\(.p99_us_range)"),
    "added per tier (median of per-round differences, µs): tier p50 p99 [p99 min–max]",
    (.chain.added[] | "  tier \(.tier)\t\(.p50_us)\t\(.p99_us)\t\(.p99_us_range)"),
    "  all 3\t\(.chain.three_tiers.p50_us)\t\(.chain.three_tiers.p99_us)\t\(.chain.three_tiers.p99_us_range)" else empty end),
  (to_entries[] | select(.key | startswith("tree_")) | .value as $t |
    "\(.key): redundant \($t.redundant_parents), kill \($t.kill): \($t.connected)/\($t.viewers) viewers, lost \($t.lost), dup \($t.duplicated), latency p50/p99 \($t.latency_us.p50)/\($t.latency_us.p99) µs, longest gap ms p50/p99/max \($t.max_gap_ms.p50)/\($t.max_gap_ms.p99)/\($t.max_gap_ms.max)"),
  (to_entries[] | select(.key | startswith("origin_")) | "\(.key): latency p50/p99 \(.value.latency_us.p50)/\(.value.latency_us.p99) µs"),
  (to_entries[] | select(.key | startswith("activate_to_serving_")) | "\(.key): \(.value | map("\(.proxy) pull live +\(.activate_to_pull_live_ms) ms, first byte +\(.activate_to_first_byte_ms) ms") | join(", "))"),
  (if .crowd then .crowd as $c |
    "crowd: \($c.proxies) proxies (\($c.active_proxies) active), \($c.viewers.connected)/\($c.crowd) viewers (failed \($c.viewers.failed), lost \($c.viewers.lost)); PNC \($c.pnc_cpu_s * 100 | round / 100) CPU s over \($c.run_s * 10 | round / 10) s (\($c.pnc_cpu_share * 1000 | round / 10) %), \($c.events_per_s | floor) events/s (\($c.resolves_per_s | floor) resolves/s); idle: \($c.idle_10s.pnc_cpu_s) CPU s per 10 s, \($c.idle_10s.events_per_s) events/s; RSS PNC \($c.pnc_rss_kib) KiB, relays \($c.relays_rss_kib_total) KiB"
   else empty end)' "$results"
if [ -n "$json_out" ]; then cp "$results" "$json_out"; fi
