"""Is a bench median reproducible within the interval bench reports? Bench the same artifacts
several times over.

Usage: python benchmarks/repeatability.py ARTIFACT_OR_DIR... [--runs 60 --rounds 3 --calls 3]

`bench` reports, with each median, a 95% interval for where another call's median should
fall (devices/latency.median_interval). This script makes `--calls` independent bench calls
(fresh processes, interleaved rounds) one after the other and checks, for every pair of
calls, that each call's median lies inside the other's interval. It prints every call and
the fraction of pair checks that held; the exit status is 0 when all held.
"""
from __future__ import annotations

import argparse
import itertools

from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings, bench


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    refs = resolve(args.artifacts)
    settings = BenchSettings(warmup=5, runs=args.runs, rounds=args.rounds)
    calls = [bench(refs, settings) for _ in range(args.calls)]
    held = checked = 0
    for i, ref in enumerate(refs):
        records = [c[i] for c in calls]
        if not all(r["ok"] for r in records):
            print(f"{ref.name}: " + " / ".join(r.get("status", "?") for r in records))
            continue
        print(ref.name)
        for n, r in enumerate(records, 1):
            iv = r["median_interval_ms"]
            print(f"  call {n}: median {r['latency']['median_ms']:8.3f} ms   95% interval "
                  f"[{iv['low_ms']:.3f}, {iv['high_ms']:.3f}]   rounds "
                  + ", ".join(f"{m:.3f}" for m in r["round_medians_ms"]))
        for a, b in itertools.permutations(records, 2):
            iv = a["median_interval_ms"]
            ok = iv["low_ms"] <= b["latency"]["median_ms"] <= iv["high_ms"]
            held += ok
            checked += 1
            if not ok:
                print(f"  NOT within: median {b['latency']['median_ms']:.3f} outside "
                      f"[{iv['low_ms']:.3f}, {iv['high_ms']:.3f}]")
    print(f"{held}/{checked} checks held (each call's median inside every other call's interval)")
    return 0 if held == checked else 1


if __name__ == "__main__":
    raise SystemExit(main())
