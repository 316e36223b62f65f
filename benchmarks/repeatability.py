"""Is a bench median reproducible within the interval bench reports? Bench the same artifacts
several times over.

Usage: python benchmarks/repeatability.py ARTIFACT_OR_DIR... [--runs 60 --rounds 3 --calls 3]

`bench` reports two spreads with each median: the spread of single inferences (p10 to p90)
and a 95% interval for where another call's median should fall (devices/latency.median_interval).
This script makes `--calls` independent bench calls (fresh processes, interleaved rounds) one
after the other and checks, for every ordered pair of calls, that one call's median lies
inside the other's spreads. A 95% interval is expected to miss about 1 check in 20; the run
spread (of single inferences, not of the median) is shown for comparison. The exit status is
0 when the interval's coverage is at least 90%.
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
    held = checked = in_run = 0
    for i, ref in enumerate(refs):
        records = [c[i] for c in calls]
        if not all(r["ok"] for r in records):
            print(f"{ref.name}: " + " / ".join(r.get("status", "?") for r in records))
            continue
        print(ref.name)
        for n, r in enumerate(records, 1):
            iv, lat = r["median_interval_ms"], r["latency"]
            print(f"  call {n}: median {lat['median_ms']:8.3f} ms   95% interval "
                  f"[{iv['low_ms']:.3f}, {iv['high_ms']:.3f}]   p10-p90 [{lat['p10_ms']:.3f}, {lat['p90_ms']:.3f}]"
                  "   rounds " + ", ".join(f"{m:.3f}" for m in r["round_medians_ms"]))
        for a, b in itertools.permutations(records, 2):
            iv, m = a["median_interval_ms"], b["latency"]["median_ms"]
            ok = iv["low_ms"] <= m <= iv["high_ms"]
            in_run += a["latency"]["p10_ms"] <= m <= a["latency"]["p90_ms"]
            held += ok
            checked += 1
            if not ok:
                print(f"  outside the 95% interval: median {m:.3f} vs [{iv['low_ms']:.3f}, {iv['high_ms']:.3f}]")
    print(f"each call's median inside another call's p10-p90 run spread: {in_run}/{checked}")
    print(f"each call's median inside another call's 95% interval: {held}/{checked} "
          f"({100 * held / max(1, checked):.0f}% coverage; 95% expected)")
    return 0 if held >= 0.9 * checked else 1


if __name__ == "__main__":
    raise SystemExit(main())
