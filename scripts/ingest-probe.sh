#!/usr/bin/env bash
# How long a source's bytes wait before the relay reads and publishes them, under a crowd:
# N crowd viewers (plain, all connecting at once) of a RATE stream, plus one VAN viewer whose
# frames carry the relay's read time, so `ingest_us` = relay's stamp − record's send time.
# usage: scripts/ingest-probe.sh OUTDIR [-- RELAY FLAGS]
#   env N (viewers), RATE, DUR (s), BIN (relay), PROBE_AFTER (s the probe joins after the
#   source starts: 0 includes the crowd's connect storm)
# Writes OUTDIR/crowd.json (vanbench fanout) and OUTDIR/probe.json (vanbench viewers).
set -euo pipefail
out=${1:?usage: ingest-probe.sh OUTDIR [-- RELAY FLAGS]}
shift
[ "${1:-}" = "--" ] && shift
cd "$(dirname "$0")/.."
cargo build --release -q -p dataplane -p vanbench --bins
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
bin=${BIN:-target/release/dataplane}
dur=${DUR:-8}
token=probe-$$-$RANDOM
echo "$token" >"$out/tokens"
"$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --van-token-file "$out/tokens" "$@" \
  >"$out/relay.out" 2>"$out/relay.err" &
relay=$!
trap 'kill $relay 2>/dev/null; wait $relay 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "^listening" "$out/relay.out" && break; sleep 0.1; done
data=$(sed -n 's/^listening data=\([^ ]*\).*/\1/p' "$out/relay.out")
[ -n "$data" ] || { echo "relay did not start: $(cat "$out/relay.err")" >&2; exit 1; }
target/release/vanbench fanout --relay "http://$data" --stream s -n "${N:-10000}" \
  --bitrate "${RATE:-1M}" --client crowd --duration "${dur}s" --relay-pid $relay \
  --json "$out/crowd.json" >"$out/crowd.txt" 2>"$out/crowd.log" &
crowd=$!
# The probe joins once the source publishes, and stops before the crowd does.
for _ in $(seq 100); do
  # A live stream never ends: curl times out either way, but says what status it got.
  code=$(curl -s -o /dev/null -m 0.3 -w '%{http_code}' "http://$data/live/s" || true)
  [ "$code" = 200 ] && break
  sleep 0.1
done
sleep "${PROBE_AFTER:-0}"
target/release/vanbench viewers --van-url "http://$data/van/s" --token "$token" -n 1 \
  --duration "$((dur - 1 - ${PROBE_AFTER:-0}))s" --json "$out/probe.json" >"$out/probe.txt" 2>"$out/probe.log" || true
wait $crowd
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
c = json.load(open(f"{d}/crowd.json")); p = json.load(open(f"{d}/probe.json"))
i = p["ingest_us"] or {}
print(f"crowd: {c['connected']}/{c['viewers']} connected in {c['all_connected_ms']:.0f} ms, "
      f"p50 {c['latency_us']['p50']/1e3:.1f} ms, p99 {c['latency_us']['p99']/1e3:.1f} ms, lost {c['lost']}, "
      f"relay CPU-s/GB {c['relay_cpu_s_per_gb']:.3f}")
print(f"ingest (probe, {p['records']} records): p50 {i.get('p50',0)/1e3:.2f} ms, p99 {i.get('p99',0)/1e3:.2f} ms, "
      f"p99.9 {i.get('p999',0)/1e3:.2f} ms, max {i.get('max',0)/1e3:.2f} ms")
PY
