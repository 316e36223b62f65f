"""MNN on this CPU: full-size vanillanet_5 (224, batch 1) MNN fp32 and int8 against ONNX Runtime fp32.

Random non-degenerate weights (latency only; nothing downloaded), converted through the shared
pipeline (each artifact verified against the fused net in its runtime). INT8 is calibrated with
MNN's quantizer (--method, default entropy = KL) on real images: scikit-learn's digits written
as PNGs and preprocessed at 224 like any calibration folder. Also checks that the MNN fp32
artifact reproduces the fused model's outputs to relative error < 1e-5 on 8 inputs.

Timing: the runners themselves (devices/mnn.py, devices/onnxruntime.py) at the same thread
count (--threads, default 2), interleaved rounds in one process, median of the per-round means.

    .venv/bin/python benchmarks/mnn_vs_ort.py [--threads 2] [--rounds 7] [--seconds 0.6] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                "unknown CPU")


def time_interleaved(calls: dict, rounds: int, seconds: float) -> dict:
    per: dict[str, list[float]] = {k: [] for k in calls}
    for call in calls.values():
        call()
        call()
    for _ in range(rounds):
        for k, call in calls.items():
            n, t0 = 0, time.perf_counter()
            while n < 3 or time.perf_counter() - t0 < seconds:
                call()
                n += 1
            per[k].append(1000 * (time.perf_counter() - t0) / n)
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v)} for k, v in per.items()}


def _unverified_int8(prep, cal, out: Path):
    """The MNN int8 artifact without the verification gate, with its relative error measured."""
    from vanillanet_edge.converters.base import ConvertRequest
    from vanillanet_edge.converters.convert import ConvertOutcome
    from vanillanet_edge.converters.mnn import MnnConverter
    from vanillanet_edge.devices.registry import get_runner

    folder = out / "vanillanet_5-random-mnn-int8-unverified"
    folder.mkdir(exist_ok=True)
    request = ConvertRequest(prep.export_model, "int8", prep.input_size, 1, prep.preprocessing, prep.inputs,
                             calibration=cal)
    result = MnnConverter().export(request, folder)
    manifest = {"precision": "int8", "runtime": "mnn", "artifact": {"file": result.artifact, "size_bytes":
                (folder / result.artifact).stat().st_size},
                "input": {"shape": list(request.input_shape_nchw), "layout": "NCHW"}, "int8": result.int8}
    y = get_runner("mnn").load(folder / result.artifact, manifest).run_all(prep.inputs)
    rel = float(np.linalg.norm(y - prep.reference) / np.linalg.norm(prep.reference))
    agree = float((y.argmax(1) == prep.reference.argmax(1)).mean())
    manifest["verification"] = {"rel_err": rel, "top1_agree": agree}
    return ConvertOutcome("mnn", "int8", True, folder, manifest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.6)
    ap.add_argument("--samples", type=int, default=32, help="calibration images")
    ap.add_argument("--method", default="entropy", choices=("entropy", "mse"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t_start = time.time()

    import torch

    from vanillanet_edge.api import make_digits
    from vanillanet_edge.calibration.dataset import load_calibration
    from vanillanet_edge.converters.baselines import prepare_vanillanet_random
    from vanillanet_edge.converters.convert import convert_one
    from vanillanet_edge.devices.registry import get_runner

    out = args.out or Path(tempfile.mkdtemp(prefix="mnn-vs-ort-"))
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare_vanillanet_random("vanillanet_5", 224)
    print(f"{prep.description}; 224x224; threads {args.threads}; CPU: {cpu_name()}", flush=True)
    digits = out / "digits"
    if not digits.is_dir():
        make_digits(digits)
    cal = load_calibration(digits / "train", prep.preprocessing, args.samples, 0, args.method)

    made = {}
    for target, precision in (("mnn", "fp32"), ("mnn", "int8"), ("onnx", "fp32")):
        t0 = time.time()
        o = convert_one(prep, target, precision, out, calibration=cal if precision == "int8" else None)
        label = f"{'onnxruntime' if target == 'onnx' else target} {precision}"
        if not o.ok and precision == "int8" and o.stage == "verify":
            # Random weights make INT8 fragile (DEVELOPERS.md); for latency, time the artifact
            # anyway, written by the same converter, and say how far it is from the fused net.
            print(f"  mnn int8 not verified: {o.error.splitlines()[0]}", flush=True)
            o = _unverified_int8(prep, cal, out)
            label += " (unverified)"
        if not o.ok:
            print(f"  FAILED {label}: {o.error.splitlines()[0]}", flush=True)
            continue
        v = o.manifest["verification"]
        extra = f"; int8 convs {o.manifest['int8']['conv_int8']}/{o.manifest['int8']['conv_total']}" \
            if precision == "int8" else ""
        print(f"  converted {label} in {time.time() - t0:.0f} s, {o.manifest['artifact']['size_bytes'] / 1e6:.1f} MB "
              f"(rel err vs fused {v['rel_err']:.2g}, top-1 agreement {100 * v['top1_agree']:.0f}%){extra}",
              flush=True)
        made[label] = o

    x = prep.inputs[:8]
    if "mnn fp32" in made:
        o = made["mnn fp32"]
        y = get_runner("mnn").load(o.folder, o.manifest, threads=args.threads).run_all(x)
        with torch.no_grad():
            ref = prep.fused(torch.from_numpy(x)).numpy()
        rel = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
        print(f"MNN fp32 vs the fused model on 8 inputs: relative error {rel:.2g} "
              f"({'PASS' if rel < 1e-5 else 'FAIL'} < 1e-5)", flush=True)

    calls = {}
    for label, o in made.items():
        session = get_runner(o.manifest["runtime"]).load(o.folder / o.manifest["artifact"]["file"], o.manifest,
                                                         threads=args.threads)
        calls[label] = (lambda s=session: s.run(x[:1]))
    print(f"timing {len(calls)} artifacts interleaved: {args.rounds} rounds x {args.seconds} s ...", flush=True)
    times = time_interleaved(calls, args.rounds, args.seconds)
    base = times.get("onnxruntime fp32", {}).get("median_ms")
    print(f"\nCPU: {cpu_name()} ({os.cpu_count()} logical CPUs); {args.threads} threads everywhere")
    print(f"{'artifact':<20} {'median ms':>10} {'min':>8} {'max':>8} {'vs ORT fp32':>12}")
    for k, v in sorted(times.items(), key=lambda kv: kv[1]["median_ms"]):
        ratio = f"{v['median_ms'] / base:.2f}x" if base else "-"
        print(f"{k:<20} {v['median_ms']:>10.2f} {v['min_ms']:>8.2f} {v['max_ms']:>8.2f} {ratio:>12}")
    print(f"(total {time.time() - t_start:.0f} s; artifacts in {out})")


if __name__ == "__main__":
    main()
