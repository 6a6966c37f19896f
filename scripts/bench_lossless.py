#!/usr/bin/env python3
"""Lossless fan-out throughput: the highest stream rate at which EVERY viewer receives EVERY record.

An unlimited source measures how fast bytes leave a relay, not what viewers get: a relay that
skips its viewers forward (as the VAN relay does to viewers that fall out of its window) can
send at line rate while each viewer loses most of the stream. This search instead paces the
source at a fixed rate and accepts a rate only if, over the whole run, no record was lost,
duplicated, reordered or corrupt for any viewer, no viewer was dropped, and the source itself
kept its rate (a relay that pushes back on its source passes only at the rate it can carry).
The answer is a rate per viewer; × viewers it is the lossless aggregate.

    scripts/bench_lossless.py [--viewers 100] [--duration 5s] [--targets relay,naive]
                              [--start 20M] [--steps 5] [--out DIR]

Search: from --start per viewer, double until a rate fails, then bisect --steps times between the
last pass and the first fail. Each trial runs on a fresh relay process. Prints a table and
writes every trial's vanbench JSON to DIR (default target/bench-lossless/TIMESTAMP).
"""
import argparse, json, os, re, signal, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VANBENCH = os.path.join(ROOT, "target/release/vanbench")
RELAYS = {
    "relay": [os.path.join(ROOT, "target/release/dataplane"), "--listen", "127.0.0.1:0",
              "--admin-listen", "127.0.0.1:0"],
    "naive": [sys.executable, os.path.join(ROOT, "scripts/naive_relay.py"), "--listen", "127.0.0.1:0"],
}


def bits(s):
    m = re.fullmatch(r"([0-9.]+)([kKmMgG]?)", s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad rate {s}")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()])


def start_relay(cmd, log):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith("listening "):
            return p, re.search(r"data=(\S+)", line).group(1)
        if p.poll() is not None:
            break
    stop(p)
    raise RuntimeError(f"{cmd[0]} did not start")


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def trial(target, rate, args, out):
    tag = f"{target}-{rate}"
    with open(os.path.join(out, tag + ".relay.log"), "w") as log:
        p, data = start_relay(RELAYS[target], log)
        try:
            js = os.path.join(out, tag + ".json")
            with open(os.path.join(out, tag + ".log"), "w") as vlog:
                subprocess.run([VANBENCH, "fanout", "--relay", f"http://{data}", "--stream", "ll",
                                "-n", str(args.viewers), "--bitrate", str(rate), "--duration",
                                args.duration, "--relay-pid", str(p.pid), "--json", js],
                               stdout=subprocess.DEVNULL, stderr=vlog, timeout=120)
            s = json.load(open(js))
        finally:
            stop(p)
    time.sleep(0.5)
    src = (s.get("source") or {}).get("rate_bps") or 0.0
    why = []
    if s["connected"] != args.viewers:
        why.append(f"connected {s['connected']}/{args.viewers}")
    for k in ("lost", "duplicated", "out_of_order", "corrupt", "ended", "failed"):
        if s.get(k):
            why.append(f"{k} {s[k]}")
    if src < 0.97 * rate:
        why.append(f"source kept {src / rate:.0%} of its rate")
    if (s.get("delivered_ratio") or 0) < 0.97:
        why.append(f"delivered ratio {s.get('delivered_ratio') or 0:.3f}")
    return not why, s, "; ".join(why)


def search(target, args, out):
    rows, lo, hi, rate = [], None, None, args.start
    while hi is None and rate < 100e9 / args.viewers:
        ok, s, why = trial(target, rate, args, out)
        rows.append((rate, ok, s, why))
        print(f"  {target} {rate / 1e6:9.1f} Mbit/s/viewer: {'pass' if ok else 'FAIL ' + why}", flush=True)
        if ok:
            lo, rate = rate, rate * 2
        else:
            hi = rate
    for _ in range(args.steps if hi is not None else 0):
        mid = ((lo or 0) + hi) // 2
        ok, s, why = trial(target, mid, args, out)
        rows.append((mid, ok, s, why))
        print(f"  {target} {mid / 1e6:9.1f} Mbit/s/viewer: {'pass' if ok else 'FAIL ' + why}", flush=True)
        if ok:
            lo = mid
        else:
            hi = mid
    best = max((r for r in rows if r[1]), key=lambda r: r[0], default=None)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, default=100)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--targets", default="relay,naive")
    ap.add_argument("--start", type=bits, default=bits("20M"))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    out = args.out or os.path.join(ROOT, "target/bench-lossless", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    os.makedirs(out, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dataplane", "-p", "vanbench", "--bins"],
                   cwd=ROOT, check=True)
    results = {}
    for t in args.targets.split(","):
        print(f"== {t}: {args.viewers} viewers, {args.duration} per trial", flush=True)
        results[t] = search(t, args, out)
    print(f"results in {out}")
    print("| target | lossless Mbit/s per viewer | aggregate Gbit/s | relay CPU-s/GB | p99 ms |")
    print("|---|---|---|---|---|")
    for t, best in results.items():
        if best is None:
            print(f"| {t} | none passed | - | - | - |")
            continue
        rate, _, s, _ = best
        cpu = s.get("relay_cpu_s_per_gb")
        print(f"| {t} | {rate / 1e6:.1f} | {rate * args.viewers / 1e9:.2f} | "
              f"{'-' if cpu is None else f'{cpu:.3f}'} | {s['latency_us']['p99'] / 1e3:.1f} |")


if __name__ == "__main__":
    main()
