"""Matmul peak per runtime and precision on this machine, with the kernels that really ran.

Usage: python benchmarks/peaks.py [--precisions fp32 bf16 int8] [--runtimes openvino onnxruntime]
                                  [--threads N] [--seconds 1.5] [--json FILE]

Each (runtime, precision) times a single MatMul graph built in memory with the runtime's own
API, on a conv-as-GEMM shape (56x56 pixels, 512 -> 1024 channels) and a 2048^3 square; the peak
is the best of the two. See vanillanet_edge.devices.peak for what is measured and why.
"""
from __future__ import annotations

import argparse
import json

from vanillanet_edge.devices.peak import PRECISIONS, RUNTIMES, measure_peaks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    ap.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the runtime's)")
    ap.add_argument("--seconds", type=float, default=1.5, help="timing per shape and probe (default 1.5)")
    ap.add_argument("--json", metavar="FILE", help="also write the full result as JSON")
    args = ap.parse_args()

    result = measure_peaks(args.precisions, args.runtimes, threads=args.threads,
                           seconds_per_probe=args.seconds)
    m = result["machine"]
    print(f"{m['cpu_model']}, {m['cpus_usable']} usable CPUs ({m['physical_cores']} physical cores), "
          f"ISA: {' '.join(m['isa'])}")
    shapes = [s["label"] for s in result["settings"]["shapes"]]
    print(f"{'runtime':<12}{'prec':<6}{'peak GMAC/s':>12}  " + "".join(f"{s:>25}" for s in shapes)
          + f"  {'threads':>7}  kernel (runtime precision)")
    for rt in args.runtimes:
        for prec in args.precisions:
            entry = result["peaks"].get(rt, {}).get(prec)
            if entry:
                per = {r["shape"]: r for r in entry["shapes"]}
                rates = [f"{per[s]['gmacs_per_s']:.1f}" if s in per else "-" for s in shapes]
                cells = "".join(f"{r:>25}" for r in rates)
                print(f"{rt:<12}{prec:<6}{entry['gmacs_per_s']:>12.1f}  {cells}  {str(entry['threads']):>7}  "
                      f"{entry['exec_type']} ({entry['runtime_precision']})")
            else:
                reason = result["unavailable"].get(rt, {}).get(prec, {}).get("reason", "not measured")
                print(f"{rt:<12}{prec:<6}{'-':>12}  unavailable: {reason}")
    print("cells: GMAC/s = M*N*K / fastest wall-clock call (the whole inference call); peak = best cell")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
