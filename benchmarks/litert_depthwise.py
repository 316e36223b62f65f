"""LiteRT and the 7x7 depthwise activation: plain vs the exact split rewrites (issue 15).

Full-size vanillanet_5 at 224 (random non-degenerate weights), converted through the shared
pipeline (each artifact verified against the fused net):
  LiteRT fp32: plain and each split rewrite (model/rewrites.py: dw_blocks, dw_bands, dw_rows, dw_dilated);
  LiteRT int8: plain, dw_bands and dw_dilated (all-integer: the pieces are summed by int8 ADDs);
  references: ONNX Runtime fp32 and OpenVINO int8 (plain).
All timed interleaved in one process, every runtime called directly (no runner code) at the
same thread count (--threads, default 2): ai_edge_litert Interpreter(num_threads=T) with its
default resolver (XNNPACK, what apps run; builtin kernels also shown for plain), ONNX Runtime
intra_op_num_threads=T, OpenVINO INFERENCE_NUM_THREADS=T with one stream.

Goals checked (printed PASS/FAIL):
  LiteRT fp32 (best rewrite) within 1.5x of ONNX Runtime fp32;
  LiteRT int8 (best that converted) within 2x of OpenVINO int8;
  best rewrite >= 2x faster than plain LiteRT fp32 (XNNPACK);
  each rewritten fp32 .tflite reproduces the plain one's outputs to relative error < 1e-5.

    .venv/bin/python benchmarks/litert_depthwise.py [--threads 2] [--rounds 7] [--out DIR [--reuse]]
Conversions of full-size models take 10-40 s each; the whole run takes several minutes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

SPLITS = ("dw_blocks", "dw_bands", "dw_rows", "dw_dilated")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rewritten(prep, names):
    from vanillanet_edge.model.rewrites import apply_rewrites

    if not names:
        return prep
    meta = {**prep.model_meta, "rewrites": list(names)}
    return dataclasses.replace(prep, name=prep.name + "-" + "+".join(names), model_meta=meta,
                               export_model=apply_rewrites(prep.export_model, names))


def litert_call(path: Path, threads: int, x_nchw: np.ndarray, builtin: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if builtin else OpResolverType.AUTO
    it = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    if np.dtype(inp["dtype"]).kind != "f":
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(inp["dtype"])
    it.set_tensor(inp["index"], x)

    def outputs(batch: np.ndarray) -> np.ndarray:
        it.set_tensor(inp["index"], np.ascontiguousarray(batch.transpose(0, 2, 3, 1).astype(np.float32)))
        it.invoke()
        return it.get_tensor(out["index"]).copy()
    return it.invoke, outputs


def ort_call(path: Path, threads: int, x: np.ndarray):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda: s.run(None, {name: x})


def ov_call(path: Path, threads: int, x: np.ndarray):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1})
    req = compiled.create_infer_request()
    return lambda: req.infer({0: x})


def time_interleaved(calls: dict, rounds: int, seconds: float) -> dict:
    per = {k: [] for k in calls}
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.6, help="timed seconds per artifact per round")
    ap.add_argument("--variant", default="vanillanet_5")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", type=Path, default=None, help="keep artifacts and results.json here")
    ap.add_argument("--reuse", action="store_true",
                    help="time the verified artifacts already in --out (from an earlier run) instead of converting")
    args = ap.parse_args()
    t_start = time.time()

    from vanillanet_edge.calibration.dataset import CalibrationSet
    from vanillanet_edge.converters.convert import ConvertOutcome, convert_one
    try:                                    # moved there by the architecture refactor
        from vanillanet_edge.converters.baselines import prepare_vanillanet_random
    except ImportError:
        from vanillanet_edge.model.baselines import prepare_vanillanet_random

    out = args.out or Path(tempfile.mkdtemp(prefix="litert-dw-"))
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare_vanillanet_random(args.variant, args.size)
    cal = CalibrationSet(prep.inputs, "minmax", 0, "random normal inputs (latency only)", "-", len(prep.inputs))
    print(f"{prep.description}; {args.size}x{args.size}; threads {args.threads}; CPU: {cpu_name()}", flush=True)

    jobs = [("tflite", "fp32", ())] + [("tflite", "fp32", (s,)) for s in SPLITS] + [
        ("tflite", "int8", ()), ("tflite", "int8", ("dw_bands",)), ("tflite", "int8", ("dw_dilated",)),
        ("onnx", "fp32", ()), ("openvino", "int8", ())]
    made, failed = {}, {}
    for target, precision, names in jobs:
        label = f"{'litert' if target == 'tflite' else target} {precision} {'+'.join(names) or 'plain'}"
        t0 = time.time()
        variant = rewritten(prep, list(names))
        done = out / f"{variant.name}-{target}-{precision}"
        if args.reuse and (done / "manifest.json").is_file():
            o = ConvertOutcome(target, precision, True, done, json.loads((done / "manifest.json").read_text()))
        else:
            o = convert_one(variant, target, precision, out, calibration=cal if precision == "int8" else None)
        if o.ok:
            made[label] = o
            ops = o.manifest["conversion"].get("op_counts")
            print(f"  converted {label} in {time.time() - t0:.0f} s (rel err vs fused "
                  f"{o.manifest['verification']['rel_err']:.2g})" + (f"; ops {ops}" if ops else ""), flush=True)
        else:
            failed[label] = o.error
            print(f"  FAILED {label} after {time.time() - t0:.0f} s: {o.error.splitlines()[0]}", flush=True)

    x = prep.inputs[:1]
    calls, outputs = {}, {}
    for label, o in made.items():
        path = o.folder / o.manifest["artifact"]["file"]
        if label.startswith("litert"):
            calls[label], outputs[label] = litert_call(path, args.threads, x)
            if label == "litert fp32 plain":
                calls["litert fp32 plain (builtin kernels)"], _ = litert_call(path, args.threads, x, builtin=True)
            if label == "litert int8 plain":
                calls["litert int8 plain (builtin kernels)"], _ = litert_call(path, args.threads, x, builtin=True)
        elif label.startswith("onnx"):
            calls[label] = ort_call(path, args.threads, x)
        else:
            calls[label] = ov_call(path, args.threads, x)

    # the rewritten fp32 artifacts against the plain fp32 one, on the same 8 inputs
    agree = {}
    if "litert fp32 plain" in outputs:
        ref = np.concatenate([outputs["litert fp32 plain"](prep.inputs[i:i + 1]) for i in range(8)])
        for s in SPLITS:
            key = f"litert fp32 {s}"
            if key in outputs:
                y = np.concatenate([outputs[key](prep.inputs[i:i + 1]) for i in range(8)])
                agree[s] = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))

    print(f"timing {len(calls)} artifacts interleaved: {args.rounds} rounds x {args.seconds} s each ...", flush=True)
    times = time_interleaved(calls, args.rounds, args.seconds)
    ms = {k: v["median_ms"] for k, v in times.items()}

    print(f"\nCPU: {cpu_name()}  ({os.cpu_count()} logical CPUs); threads {args.threads} everywhere")
    print(f"{'artifact':<42} {'median ms':>10} {'min':>8} {'max':>8} {'vs litert fp32 plain':>21}")
    base = ms.get("litert fp32 plain")
    for k, v in sorted(times.items(), key=lambda kv: kv[1]["median_ms"]):
        ratio = f"{base / v['median_ms']:.2f}x faster" if base else "-"
        print(f"{k:<42} {v['median_ms']:>10.2f} {v['min_ms']:>8.2f} {v['max_ms']:>8.2f} {ratio:>21}")
    for label, err in failed.items():
        print(f"{label:<42} not converted: {err.splitlines()[0][:140]}")
    for s, err in agree.items():
        print(f"litert fp32 {s} vs plain fp32 .tflite outputs: relative error {err:.2e}")

    fp32_rw = {s: ms[f"litert fp32 {s}"] for s in SPLITS if f"litert fp32 {s}" in ms}
    best_rw = min(fp32_rw, key=fp32_rw.get) if fp32_rw else None
    int8 = {k: v for k, v in ms.items() if k.startswith("litert int8") and "builtin" not in k}
    best_int8 = min(int8, key=int8.get) if int8 else None
    checks = []

    def check(name, ok, detail):
        checks.append({"goal": name, "passed": bool(ok), "detail": detail})
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")

    print("\ngoals:")
    ort_ms, ov_ms = ms.get("onnx fp32 plain"), ms.get("openvino int8 plain")
    if best_rw and ort_ms:
        r = ms[f"litert fp32 {best_rw}"] / ort_ms
        check("LiteRT fp32 within 1.5x of ONNX Runtime fp32", r <= 1.5,
              f"litert fp32 {best_rw} {ms[f'litert fp32 {best_rw}']:.1f} ms / ORT {ort_ms:.1f} ms = {r:.2f}x")
    if best_int8 and ov_ms:
        r = ms[best_int8] / ov_ms
        check("LiteRT int8 within 2x of OpenVINO int8", r <= 2.0,
              f"{best_int8} {ms[best_int8]:.1f} ms / OpenVINO int8 {ov_ms:.1f} ms = {r:.2f}x")
    if best_rw and base:
        r = base / ms[f"litert fp32 {best_rw}"]
        check("best rewrite >= 2x faster than plain LiteRT fp32", r >= 2.0,
              f"plain {base:.1f} ms / {best_rw} {ms[f'litert fp32 {best_rw}']:.1f} ms = {r:.2f}x")
    for s, err in agree.items():
        check(f"{s} fp32 .tflite reproduces the plain one (rel err < 1e-5)", err < 1e-5, f"{err:.2e}")
    print(f"\n(total {time.time() - t_start:.0f} s; artifacts in {out})")
    (out / "results.json").write_text(json.dumps({
        "cpu": cpu_name(), "threads": args.threads, "times": times, "failed": failed,
        "rewrite_vs_plain_rel_err": agree, "checks": checks}, indent=2))


if __name__ == "__main__":
    main()
