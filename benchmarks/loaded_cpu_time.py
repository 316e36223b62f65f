"""Does `bench --threads 1`'s CPU time hold when the machine is loaded? (issue 24, item 2)

Usage: python benchmarks/loaded_cpu_time.py ARTIFACT_OR_DIR... [--runs 30 --rounds 3 --busy 2]

Benches the artifacts at 1 thread three times: quiet, with `--busy` processes spinning on the
CPU (by default two: both cores of the 2-core VM), and quiet again. Prints, per artifact, the
wall and CPU-time medians of each pass and the CPU-time change under load, and whether each
record carried a load warning. The busy processes are plain Python loops (no runtime), started
before the loaded pass and killed after it. Exit status 0 when every loaded CPU-time median is
within 10% of the mean of the two quiet ones.

Make one artifact to try it on (random weights, latency only; nothing is downloaded):
  vanillanet-edge baseline vanillanet_9 resnet50 --target onnx --out /tmp/cpu-art
  python benchmarks/loaded_cpu_time.py /tmp/cpu-art
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform

from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings, bench
from vanillanet_edge.devices.machine import describe_machine


def _spin() -> None:
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2147483648


def _pass(refs, settings, label):
    records = bench(refs, settings)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{label}: load average (1 min) after the pass {load:.2f}")
    return records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2, help="spinning processes during the loaded pass")
    args = ap.parse_args()
    refs = resolve(args.artifacts)
    settings = BenchSettings(threads=1, warmup=3, runs=args.runs, rounds=args.rounds)
    m = describe_machine()
    print(f"CPU: {m.get('cpu_model') or platform.processor()}, {os.cpu_count()} logical CPUs; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    quiet1 = _pass(refs, settings, "quiet")
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    try:
        loaded = _pass(refs, settings, f"loaded ({args.busy} spinning processes)")
    finally:
        for p in spinners:
            p.kill()
            p.join()
    quiet2 = _pass(refs, settings, "quiet again")
    held = True
    for q1, ld, q2 in zip(quiet1, loaded, quiet2):
        if not all(r["ok"] and r.get("cpu_ms") for r in (q1, ld, q2)):
            print(f"{q1['name']}: not measured ({ld.get('error') or ld.get('reason')})")
            held = False
            continue
        cpu_quiet = (q1["cpu_ms"]["median_ms"] + q2["cpu_ms"]["median_ms"]) / 2
        change = ld["cpu_ms"]["median_ms"] / cpu_quiet - 1
        held &= abs(change) <= 0.10
        print(f"{q1['name']}: wall ms quiet {q1['latency']['median_ms']:.2f} / loaded "
              f"{ld['latency']['median_ms']:.2f} / quiet {q2['latency']['median_ms']:.2f};  CPU ms "
              f"{q1['cpu_ms']['median_ms']:.2f} / {ld['cpu_ms']['median_ms']:.2f} / {q2['cpu_ms']['median_ms']:.2f}"
              f"  (loaded CPU vs quiet {100 * change:+.1f}%); load warning when loaded: "
              f"{'yes' if ld.get('load_warning') else 'no'}")
    print("CPU-time medians under load within 10% of quiet: " + ("yes" if held else "NO"))
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())
