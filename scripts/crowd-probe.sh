#!/usr/bin/env bash
# Where a crowd's seconds go (issue 9): one relay (the VAN relay or the naive relay), `vanbench
# fanout --client crowd` at 10,000 × 1 Mbit/s, and every 0.25 s: connections established on the
# relay's port (handshakes done, accepted or not), the clients' unread bytes (Recv-Q), the
# relay's unsent and unacknowledged bytes (Send-Q), the host's TCP memory, both processes' CPU
# ticks and the client's RSS; for the VAN relay also its sends and bytes per send (/metrics).
#
#   scripts/crowd-probe.sh OUTDIR [relay|naive] [-- RELAY FLAGS]
#   env: N (10000), RATE (1M), DUR (8s), CLIENT_FLAGS (e.g. --client-huge-pages), NOSAMPLE=1
#        (the summary alone: the sampling costs the machine a little CPU)
#
# Output: OUTDIR/q.log (one line per sample), OUTDIR/metrics.log, OUTDIR/bench.json, and a
# summary line on stdout. Sampling needs `ss` (iproute2) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; target=${2:-relay}; shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
cargo build --release -q -p dataplane -p vanbench --bins
ulimit -n "$(ulimit -Hn)"
case "$target" in
  relay) target/release/dataplane --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" >"$out/relay.out" 2>"$out/relay.err" & ;;
  naive) python3 scripts/naive_relay.py --listen 127.0.0.1:0 >"$out/relay.out" 2>"$out/relay.err" & ;;
  *) echo "crowd-probe: relay or naive, not $target" >&2; exit 2 ;;
esac
relay=$!
trap 'kill $relay 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "^listening" "$out/relay.out" && break; sleep 0.1; done
line=$(grep "^listening" "$out/relay.out")
data=$(sed 's/.*data=\([^ ]*\).*/\1/' <<<"$line")
admin=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<<"$line")
port=${data##*:}
# shellcheck disable=SC2086
target/release/vanbench fanout --relay "http://$data" --stream s -n "${N:-10000}" --bitrate "${RATE:-1M}" \
  --client crowd ${CLIENT_FLAGS:-} --duration "${DUR:-8s}" --relay-pid $relay --json "$out/bench.json" \
  2>"$out/bench.log" &
bench=$!
t0=$(date +%s.%N)
: >"$out/q.log"; : >"$out/metrics.log"
while [ -z "${NOSAMPLE:-}" ] && kill -0 $bench 2>/dev/null; do
  t=$(date +%s.%N)
  rc=$(awk '{print $14+$15}' /proc/$relay/stat 2>/dev/null || echo 0)
  bc=$(awk '{print $14+$15}' /proc/$bench/stat 2>/dev/null || echo 0)
  rss=$(awk '/VmRSS/ {print $2}' /proc/$bench/status 2>/dev/null || echo 0)
  if [ -n "$admin" ]; then
    curl -s -m 1 "http://$admin/metrics" | awk -v t="$t" '/^van_dataplane_sends_plain_total/ {s+=$NF}
      /^van_dataplane_bytes_out_total/ {b+=$NF} END {print t, s, b}' >>"$out/metrics.log" || true
  fi
  mem=$(awk '/^TCP:/ {print $NF}' /proc/net/sockstat)
  ss -tnH state established "( sport = :$port or dport = :$port )" 2>/dev/null | awk -v p=":$port" \
    -v t="$t" -v t0="$t0" -v rc="$rc" -v bc="$bc" -v mem="$mem" -v rss="$rss" '
    { if (substr($3, length($3) - length(p) + 1) == p) { n++; sq += $2 } else { cq += $1 } }
    END { printf "%.2f est=%d client_rq=%.0fMB relay_sq=%.0fMB tcp_mem=%dMB relay_ticks=%d client_ticks=%d client_rss=%dMB\n",
          t - t0, n, cq / 1e6, sq / 1e6, mem * 4096 / 1e6, rc, bc, rss / 1024 }' >>"$out/q.log"
  sleep 0.25
done
wait $bench || true
kill $relay; wait $relay 2>/dev/null || true
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
s = json.load(open(out + "/bench.json"))
print(out, "all connected", round(s["all_connected_ms"]), "ms; p50/p99",
      s["latency_us"]["p50"] / 1e3, "/", s["latency_us"]["p99"] / 1e3, "ms; lost", s["lost"],
      "; relay CPU-s/GB", round(s["relay_cpu_s_per_gb"], 3))
rows = [l.split() for l in open(out + "/metrics.log") if len(l.split()) == 3]
for a, b in list(zip(rows, rows[4:]))[::4]:  # about a second apart
    dt, ds = float(b[0]) - float(a[0]), float(b[1]) - float(a[1])
    if ds > 0:
        print(f"  t={float(b[0]) - float(rows[0][0]):5.1f}s sends/s {ds / dt:8.0f}  bytes/send {(float(b[2]) - float(a[2])) / ds:7.0f}")
PY
