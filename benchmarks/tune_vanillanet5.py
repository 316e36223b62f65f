"""Tuned against plain: full-size vanillanet_5 at batch 1 on this machine.

Usage:
    python benchmarks/tune_vanillanet5.py --out runs/tune5 [--targets openvino,onnx] [--batches 1]

1. `tune vanillanet_5` (random non-degenerate weights: latency only), calibrated on the
   built-in digits images: every target/precision/rewrite/setting candidate, verified.
2. The anchor (plain OpenVINO + NNCF INT8 export, default settings) and tune's recommendation
   benchmarked again, interleaved in one call (--rounds rounds, fresh processes), with the
   runtimes' matmul peaks (devices/peak.py) measured in the same run: speed-up per round and
   achieved GMAC/s against the peak of the precision the winner computes in.
3. The same configuration (target, precision, rewrites, pinned runtime settings) applied to
   the digits-trained tiny net: its val top-1 against the fused FP32 net's.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--targets", default="openvino,onnx")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per candidate in tune")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the final anchor-vs-tuned bench")
    ap.add_argument("--final-runs", type=int, default=100)
    args = ap.parse_args()

    from vanillanet_edge import api
    from vanillanet_edge.devices.artifacts import resolve
    from vanillanet_edge.devices.latency import BenchSettings, bench_jobs
    from vanillanet_edge.devices.peak import measure_peaks, peak_for

    digits = args.out / "digits"
    if not (digits / "train").exists():
        api.make_digits(digits)
    opts = api.TuneOptions(targets=tuple(args.targets.split(",")), precisions=("fp32", "int8"),
                           batches=tuple(int(b) for b in args.batches.split(",")),
                           calib_data=str(digits / "train"), runs=args.runs, rounds=3)
    result = api.tune("vanillanet_5", args.out / "tune", options=opts)
    rec, anchor = result["recommendation"], result["anchor"]
    print(f"\ntune: {len(result['candidates'])} candidates; recommended {rec['label']}; anchor {anchor['label']}")

    # 2. anchor vs tuned, interleaved, with the peaks of this run
    [a_ref, t_ref] = resolve([anchor["artifact"], rec["artifact"]])
    jobs = [(a_ref, BenchSettings(warmup=10, runs=args.final_runs, rounds=args.rounds, options={})),
            (t_ref, BenchSettings(warmup=10, runs=args.final_runs, rounds=args.rounds, options=dict(rec["settings"])))]
    a_rec, t_rec = bench_jobs(jobs)
    peaks = measure_peaks(precisions=("fp32", "bf16", "int8"), runtimes=("openvino", "onnxruntime"))
    a_img = a_rec["latency"]["median_ms"] / anchor["batch"]
    t_img = t_rec["latency"]["median_ms"] / rec["batch"]
    ratios = [a / (t / rec["batch"] * anchor["batch"]) for a, t in zip(a_rec["round_medians_ms"], t_rec["round_medians_ms"])]
    peak = peak_for(peaks, rec["runtime"], rec["compute"])
    a_peak = peak_for(peaks, anchor["runtime"], anchor["compute"])
    print(f"\nanchor (plain OpenVINO+NNCF int8, defaults): {a_img:.2f} ms/image, rounds "
          + ", ".join(f"{m:.2f}" for m in a_rec["round_medians_ms"])
          + f"; {a_rec['gmacs_per_s']:.1f} GMAC/s = {100 * a_rec['gmacs_per_s'] / a_peak:.0f}% of the "
          f"{anchor['runtime']} {anchor['compute']} peak {a_peak:.1f}")
    print(f"tuned ({rec['label']}): {t_img:.2f} ms/image, rounds "
          + ", ".join(f"{m:.2f}" for m in t_rec["round_medians_ms"])
          + f"; {t_rec['gmacs_per_s']:.1f} GMAC/s = {100 * t_rec['gmacs_per_s'] / peak:.0f}% of the "
          f"{rec['runtime']} {rec['compute']} peak {peak:.1f}")
    print(f"speed-up tuned vs anchor: {a_img / t_img:.2f}x (per-round {min(ratios):.2f}-{max(ratios):.2f}, "
          f"median {statistics.median(ratios):.2f})")

    # 3. the same configuration on the digits-trained tiny net
    tiny = args.out / "tiny.pth"
    if not tiny.exists():
        api.train_model(digits, tiny)
    same = api.TuneOptions(targets=(rec["target"],), precisions=(rec["precision"],),
                           rewrites=(tuple(rec["rewrites"]),), batches=(rec["batch"],),
                           calib_data=str(digits / "train"), eval_data=str(digits / "val"),
                           runs=10, rounds=1, peaks=False)
    tiny_result = api.tune(str(tiny), args.out / "tiny", options=same)
    row = next(r for r in tiny_result["candidates"] if r["settings"] == rec["settings"])
    from vanillanet_edge.converters.convert import load_eval_set, prepare
    fp32 = load_eval_set(prepare(str(tiny)), digits / "val", None).fp32_top1
    print(f"\ntiny digits net, same configuration: val top-1 {100 * row['top1']:.2f}% vs fused fp32 "
          f"{100 * fp32:.2f}% ({100 * (fp32 - row['top1']):+.2f} points lost)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
