"""Is a bench median reproducible within the spread bench reports? Bench the same artifacts twice.

Usage: python benchmarks/repeatability.py ARTIFACT_OR_DIR... [--runs 60 --rounds 3]

For each artifact, two independent `bench` calls (fresh processes, interleaved rounds) are
compared: one call's median should fall inside the other call's round-median range (min to
max of its per-round medians, which is what bench reports as its spread).
"""
from __future__ import annotations

import argparse

from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings, bench


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    refs = resolve(args.artifacts)
    settings = BenchSettings(warmup=5, runs=args.runs, rounds=args.rounds)
    first, second = bench(refs, settings), bench(refs, settings)
    print(f"{'artifact':<34}{'median 1':>10}{'spread 1':>20}{'median 2':>10}{'spread 2':>20}  within")
    ok_all = True
    for a, b in zip(first, second):
        if not (a["ok"] and b["ok"]):
            print(f"{a['name']:<34} {a.get('status')} / {b.get('status')}")
            continue
        lo1, hi1 = min(a["round_medians_ms"]), max(a["round_medians_ms"])
        lo2, hi2 = min(b["round_medians_ms"]), max(b["round_medians_ms"])
        m1, m2 = a["latency"]["median_ms"], b["latency"]["median_ms"]
        within = lo1 <= m2 <= hi1 or lo2 <= m1 <= hi2     # one call's median inside the other's spread
        ok_all &= within
        print(f"{a['name']:<34}{m1:>10.3f}{f'[{lo1:.3f}, {hi1:.3f}]':>20}{m2:>10.3f}"
              f"{f'[{lo2:.3f}, {hi2:.3f}]':>20}  {'yes' if within else 'NO'}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
