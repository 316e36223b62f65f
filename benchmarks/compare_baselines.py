"""The paper's claim on this machine: full-size VanillaNet-5/-9 against ResNet-50, batch 1, 224x224.

    python benchmarks/compare_baselines.py --out runs/compare            # convert, bench, report
    python benchmarks/compare_baselines.py --out runs/compare --no-int8 --rounds 3 --runs 30

1. Converts vanillanet_5, vanillanet_9 (deploy form) and resnet50 (timm definition), all with
   random non-degenerate weights (latency only; nothing is downloaded), to ONNX and OpenVINO at
   fp32, and int8 where the converter offers it (calibrated on real images: scikit-learn's digits
   unless --calib-data is given). Every artifact is verified in its runtime like any checkpoint's,
   and its size is checked against its parameter count (nothing pruned).
2. Benchmarks every artifact with `bench` (each round a fresh process per artifact, rounds
   interleaved across artifacts); OpenVINO fp32 a second time with INFERENCE_PRECISION_HINT=f32,
   because on AMX/AVX512-BF16 CPUs its default "fp32" computes in bf16.
3. Adds PyTorch eager (deploy-form VanillaNet, ResNet-50 as timm defines it, BN not folded: the
   authors' setting), in fresh processes, rounds interleaved across the three models.
4. Writes the records under OUT/run/ and builds OUT/report/ (report.md, .html, .json), then prints
   median latency per model/runtime/precision and the VanillaNet/ResNet-50 ratio per runtime.
Conversions are kept: a rerun with the same OUT only benchmarks (pass --reconvert to redo them).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("vanillanet_5", "vanillanet_9", "resnet50")
TARGETS = ("onnx", "openvino")
INPUT_SIZE = 224


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------ eager worker

def _build_eager(name: str, state_path: Path):
    import torch

    from vanillanet_edge.model.baselines import BASELINES, _timm
    from vanillanet_edge.model.variants import create_model

    if name in BASELINES:
        model = _timm().create_model(BASELINES[name].timm_name, pretrained=False)
    else:
        model = create_model(name, deploy=True)
    model.load_state_dict(torch.load(state_path, weights_only=True))
    return model.eval()


def eager_worker(job: dict) -> dict:
    """One round of PyTorch eager timing in this (fresh) process; prints a JSON line."""
    import resource

    import numpy as np
    import torch

    t0 = time.perf_counter()
    model = _build_eager(job["name"], Path(job["state"]))
    load_ms = 1000 * (time.perf_counter() - t0)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, job["size"], job["size"])).astype(np.float32))
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x)
        first_ms = 1000 * (time.perf_counter() - t0)
        for _ in range(job["warmup"]):
            model(x)
        times = []
        for _ in range(job["runs"]):
            t0 = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - t0))
    return {"load_ms": load_ms, "first_inference_ms": first_ms, "times_ms": times,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "session_settings": {"engine": "torch eager (inference_mode)", "threads": torch.get_num_threads(),
                                 "torch": torch.__version__,
                                 "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset")}}


def bench_eager(preps: dict, state_dir: Path, warmup: int, runs: int, rounds: int) -> list[dict]:
    """Rounds interleaved across models, each round a fresh process; records shaped like bench's."""
    import torch

    from vanillanet_edge.devices.latency import RESULT_SCHEMA, median_interval, summarize_times
    from vanillanet_edge.devices.machine import describe_machine

    state_dir.mkdir(parents=True, exist_ok=True)
    states = {}
    for name, prep in preps.items():
        states[name] = state_dir / f"{name}.pt"
        if not states[name].exists():
            torch.save(prep.fused.state_dict(), states[name])
    per_round = max(1, -(-runs // rounds))
    raw: dict[str, list[dict]] = {n: [] for n in preps}
    errors: dict[str, str] = {}
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    for r in range(rounds):
        for name in preps:
            if name in errors:
                continue
            job = {"name": name, "state": str(states[name]), "size": INPUT_SIZE, "warmup": warmup, "runs": per_round}
            proc = subprocess.run([sys.executable, __file__, "--eager-worker", json.dumps(job)],
                                  capture_output=True, text=True, env=env, timeout=1800)
            if proc.returncode != 0:
                errors[name] = "\n".join(proc.stderr.strip().splitlines()[-5:])
                continue
            raw[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            log(f"  torch eager round {r + 1}/{rounds} {name}: median {statistics.median(raw[name][-1]['times_ms']):.1f} ms")
    records = []
    for name, prep in preps.items():
        rounds_ = raw[name]
        rec = {"schema_version": RESULT_SCHEMA, "kind": "latency", "artifact": str(states[name]),
               "name": f"{prep.name}-torch-fp32", "target": "torch", "precision": "fp32", "runtime": "torch",
               "model": prep.model_meta, "input": {"name": "input", "shape": [1, 3, INPUT_SIZE, INPUT_SIZE],
                                                   "layout": "NCHW", "dtype": "float32"},
               "artifact_size_bytes": states[name].stat().st_size,
               "settings": {"warmup": warmup, "runs": runs, "rounds": rounds, "how": "benchmarks/compare_baselines.py eager worker"},
               "machine": describe_machine(), "ok": bool(rounds_) and name not in errors}
        if name in errors:
            rec["error"] = errors[name]
        if rounds_:
            times = [t for x in rounds_ for t in x["times_ms"]]
            summary = summarize_times(times, 1)
            macs = prep.model_meta["macs"]
            rec.update({"latency": summary, "round_medians_ms": [statistics.median(x["times_ms"]) for x in rounds_],
                        "median_interval_ms": median_interval([x["times_ms"] for x in rounds_]),
                        "load_ms": statistics.median(x["load_ms"] for x in rounds_),
                        "first_inference_ms": statistics.median(x["first_inference_ms"] for x in rounds_),
                        "peak_rss_mib": max(x["peak_rss_mib"] for x in rounds_),
                        "gmacs_per_s": macs / (summary["median_ms"] / 1000) / 1e9,
                        "session_settings": rounds_[-1]["session_settings"]})
        records.append(rec)
    return records


# ------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/compare"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per artifact over all rounds")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--no-eager", action="store_true")
    ap.add_argument("--no-f32-hint", action="store_true", help="skip the OpenVINO fp32 run at f32 compute")
    ap.add_argument("--calib-data", type=Path, default=None, help="images for INT8 (default: digits)")
    ap.add_argument("--calib-samples", type=int, default=32)
    ap.add_argument("--reconvert", action="store_true")
    ap.add_argument("--eager-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.eager_worker:
        print(json.dumps(eager_worker(json.loads(args.eager_worker))))
        return 0
    if args.rounds < 3:
        ap.error("--rounds must be at least 3")

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from vanillanet_edge.api import make_digits
    from vanillanet_edge.calibration.dataset import load_calibration
    from vanillanet_edge.images import Preprocessing, load_folder
    from vanillanet_edge.converters.convert import artifact_name, convert_one
    from vanillanet_edge.converters.registry import get_converter
    from vanillanet_edge.devices.artifacts import resolve
    from vanillanet_edge.devices.latency import BenchSettings, bench
    from vanillanet_edge.fileio import write_json
    from vanillanet_edge.converters.baselines import prepare_any
    from vanillanet_edge.pipeline.report import build_report, summary_text

    out = args.out
    arts, run = out / "artifacts", out / "run"
    arts.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    models = [m for m in args.models.split(",") if m]
    targets = [t for t in args.targets.split(",") if t]
    started = time.time()

    calib_dir = args.calib_data
    if calib_dir is None:
        calib_dir = out / "digits"
        if not (calib_dir / "train").exists():
            make_digits(calib_dir)
        calib_dir = calib_dir / "train"
    pre = Preprocessing.imagenet(INPUT_SIZE)
    verify_inputs = load_folder(calib_dir.parent / "val" if (calib_dir.parent / "val").is_dir() else calib_dir,
                                pre, limit=32, seed=1).inputs

    # 1. convert -----------------------------------------------------------------------------
    preps = {}
    for name in models:
        t0 = time.time()
        prep = prepare_any(name, INPUT_SIZE, inputs=verify_inputs, seed=0)
        prep.inputs_source = f"real images (scikit-learn digits) from {calib_dir.parent}"
        preps[name] = prep
        log(f"{prep.description} built in {time.time() - t0:.0f} s")
        calibration = None
        for target in targets:
            conv = get_converter(target)
            precs = ["fp32"] + (["int8"] if "int8" in conv.precisions and not args.no_int8 else [])
            for precision in precs:
                folder = arts / artifact_name(prep, target, precision)
                if folder.exists() and not args.reconvert:
                    log(f"  {target} {precision}: kept {folder}")
                    continue
                if folder.exists():
                    import shutil
                    shutil.rmtree(folder)
                if precision == "int8" and calibration is None:
                    calibration = load_calibration(calib_dir, prep.preprocessing, args.calib_samples, 0, "minmax")
                t0 = time.time()
                o = convert_one(prep, target, precision, arts, 1, None, calibration if precision == "int8" else None)
                if not o.ok:
                    log(f"  {target} {precision}: FAILED at {o.stage} ({time.time() - t0:.0f} s): {o.error}")
                    continue
                size = o.manifest["artifact"]["size_bytes"]
                bpp = size / prep.model_meta["params"]
                want = {"fp32": 4.0, "int8": 1.0}[precision]
                flag = "" if bpp >= 0.9 * want else "  WARNING: smaller than its parameters: pruned?"
                v = o.manifest["verification"]
                log(f"  {target} {precision}: ok in {time.time() - t0:.0f} s, {size / 1e6:.1f} MB = {bpp:.2f} "
                    f"bytes/param, rel err {v['rel_err']:.2g}, top-1 agreement {100 * v['top1_agree']:.0f}%{flag}")

    # 2. bench the artifacts (interleaved rounds) ----------------------------------------------
    refs = [r for r in resolve([arts]) if any(r.name.startswith(preps[m].name + "-") for m in models)
            and r.manifest.get("target") in targets]
    settings = BenchSettings(warmup=args.warmup, runs=args.runs, rounds=args.rounds)
    log(f"bench: {len(refs)} artifacts x {args.rounds} rounds, {args.runs} timed runs each")
    records = bench(refs, settings, progress=lambda r, i, ref: log(f"  round {r + 1} {ref.name}"))
    write_json(run / "latency.json", records)
    ov_fp32 = [r for r in refs if r.runtime == "openvino" and r.manifest["precision"] == "fp32"]
    if ov_fp32 and not args.no_f32_hint:
        log(f"bench: OpenVINO fp32 at INFERENCE_PRECISION_HINT=f32, {len(ov_fp32)} artifacts")
        hinted = BenchSettings(warmup=args.warmup, runs=args.runs, rounds=args.rounds,
                               options={"precision_hint": "f32"})
        write_json(run / "latency_openvino_f32.json",
                   bench(ov_fp32, hinted, progress=lambda r, i, ref: log(f"  round {r + 1} {ref.name} [f32]")))

    # 3. PyTorch eager -------------------------------------------------------------------------
    if not args.no_eager:
        log("bench: PyTorch eager")
        write_json(run / "latency_torch_eager.json",
                   bench_eager(preps, out / "eager_weights", args.warmup, args.runs, args.rounds))

    # 4. report ----------------------------------------------------------------------------------
    report = build_report(run, out / "report")
    print()
    print(summary_text(report))
    print(f"\nreport: {out / 'report' / 'report.html'} (and .md, .json); total {(time.time() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
