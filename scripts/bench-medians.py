#!/usr/bin/env python3
"""Medians over several `scripts/bench-compare.sh` runs (issue 12, item 13): each cell of the
comparison as the median of the runs with its spread (min–max).

    scripts/bench-medians.py DIR1 DIR2 DIR3 ...

Each DIR is a bench-compare output directory (one vanbench JSON per scenario and target). The
runs are interleaved in the sense that each one runs every target once, in turn, on the same
machine state; a cell missing from a run (a target that did not start) is left out of it."""
import json
import os
import statistics
import sys

ORDER = {"n10": 0, "n100": 1, "stall100": 2, "n1000": 3, "n10000": 4, "unl100": 5}
cells = {}
for d in sys.argv[1:]:
    for name in os.listdir(d):
        if not name.endswith(".json") or name.startswith("iperf3"):
            continue
        try:
            s = json.load(open(os.path.join(d, name)))
        except (OSError, ValueError):
            continue
        target, _, scenario = name[:-5].rpartition("-")
        cells.setdefault((scenario, target), []).append(s)


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


print(f"medians of {len(sys.argv) - 1} runs [min–max]")
hdr = ("scenario", "target", "runs", "connected", "all connected ms", "lost (max)", "p50 ms",
       "p99 ms", "delivered ratio", "relay CPU-s/GB", "relay RSS MiB at the end")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for (scenario, target), runs in sorted(cells.items(), key=lambda kv: (ORDER.get(kv[0][0], 9), kv[0])):
    row = (
        scenario,
        target,
        str(len(runs)),
        f"{min(r['connected'] for r in runs)}/{runs[0]['viewers']}",
        spread([r.get("all_connected_ms") for r in runs], "{:.0f}"),
        str(max(r["lost"] for r in runs)),
        spread([r["latency_us"]["p50"] / 1e3 for r in runs], "{:.2f}"),
        spread([r["latency_us"]["p99"] / 1e3 for r in runs], "{:.2f}"),
        spread([r["delivered_ratio"] for r in runs], "{:.3f}"),
        spread([r["relay_cpu_s_per_gb"] for r in runs], "{:.3f}"),
        # VmRSS as the measured window ends: for stall100, while the stalled viewer still
        # holds its connection without reading.
        spread([r["relay_rss_kib"] / 1024 if r.get("relay_rss_kib") is not None else None
                for r in runs], "{:.1f}"),
    )
    print("| " + " | ".join(row) + " |")
