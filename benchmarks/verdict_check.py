"""Check the verdict against an independent timing of the same artifacts at the same threads.

Usage: python benchmarks/verdict_check.py RUN_DIR [--runs 20] [--rounds 3]

RUN_DIR is a pipeline run folder (`make demo` writes runs/demo). For every "plain" verdict row of
report/report.json (both models, the same runtime settings), the two artifacts are timed again
WITHOUT vanillanet-edge's runners or harness: a few lines per runtime calling its Python API
directly (onnxruntime.InferenceSession, openvino.Core, ai_edge_litert's Interpreter), each
timing in a fresh process, the two models interleaved round by round, with the thread count and
kernels the report names. The script prints the CPU, each independent ratio and whether it lies
inside the 95% interval the report printed. Eager PyTorch rows are skipped (rebuilding the
model needs our own code, so that timing would not be independent).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

# One standalone timing per process: the artifact file, the runtime, threads, kernels/hint.
WORKER = r'''
import json, sys, time
import numpy as np
job = json.loads(sys.argv[1])
path, rt, threads = job["file"], job["runtime"], job["threads"]
shape = job["shape"]
if rt == "onnxruntime":
    import onnxruntime as ort
    o = ort.SessionOptions(); o.intra_op_num_threads = threads
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    call = lambda: s.run(None, {name: x})
elif rt == "openvino":
    import openvino as ov
    c = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                             **({"INFERENCE_PRECISION_HINT": job["hint"]} if job["hint"] else {})})
    r = c.create_infer_request()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    call = lambda: r.infer({0: x})
elif rt == "litert":
    from ai_edge_litert import interpreter as tfl
    res = (tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if job["kernels"] == "builtin"
           else tfl.OpResolverType.AUTO)
    it = tfl.Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=res)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    x = np.zeros(d["shape"], dtype=d["dtype"])
    def call():
        it.set_tensor(d["index"], x); it.invoke()
for _ in range(job["warmup"]):
    call()
times = []
for _ in range(job["runs"]):
    t0 = time.perf_counter(); call(); times.append(time.perf_counter() - t0)
print(json.dumps(sorted(times)[len(times) // 2] * 1000))
'''


def _job(rec: dict, runs: int, run_dir: Path) -> dict:
    folder = run_dir / "verdict" / "artifacts" / Path(rec["artifact"]).name   # records may hold relative paths
    manifest = json.loads((folder / "manifest.json").read_text())
    ss = rec["session_settings"]
    return {"file": str(folder / manifest["artifact"]["file"]), "runtime": rec["runtime"],
            "threads": ss["threads"], "kernels": ss.get("kernels"), "hint": ss.get("inference_precision"),
            "shape": manifest["input"]["shape"], "runs": runs, "warmup": 3}


def _time(job: dict) -> float:
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(job)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _setting(rec: dict) -> tuple:
    ss = rec.get("session_settings") or {}
    return rec["runtime"], rec["precision"], ss.get("threads"), ss.get("kernels"), ss.get("inference_precision")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    records = json.loads((args.run_dir / "results" / "verdict.json").read_text())
    report = json.loads((args.run_dir / "report" / "report.json").read_text())
    rows = [r for r in report["tables"][0]["rows"] if r["comparison"] == "plain" and r["ratio"] is not None
            and r["runtime"] != "torch"]
    machine = next(r["machine"] for r in records if r.get("machine"))
    print(f"CPU: {machine['cpu_model']}, {machine.get('physical_cores')} physical cores; ISA {' '.join(machine['isa'])}")
    inside = 0
    for row in rows:
        pick = {}
        for rec in records:
            if not rec.get("ok") or rec["precision"] != row["precision"] or rec["runtime"] != row["runtime"]:
                continue
            label = row["settings"]
            ss = rec["session_settings"]
            if ss.get("kernels") and f"{ss['kernels']} kernels" not in label:
                continue
            if ss.get("inference_precision") and f"{ss['inference_precision']} hint" not in label:
                continue
            family = "vn" if rec["model"].get("family") == "vanillanet" else "r50"
            pick[family] = rec
        vn, r50 = _job(pick["vn"], args.runs, args.run_dir), _job(pick["r50"], args.runs, args.run_dir)
        ratios = []
        for _ in range(args.rounds):       # interleaved: a slow spell of the VM hits both
            ratios.append(_time(vn) / _time(r50))
        ratio = statistics.median(ratios)
        ok = row["95% low"] <= ratio <= row["95% high"]
        inside += ok
        print(f"{row['runtime']:<12}{row['precision']:<6}{row['settings']:<32} report {row['ratio']:.3f} "
              f"[{row['95% low']:.3f}, {row['95% high']:.3f}]  independent {ratio:.3f} "
              f"(rounds {min(ratios):.3f}-{max(ratios):.3f})  {'inside' if ok else 'OUTSIDE'}")
    print(f"{inside} of {len(rows)} independent ratios inside the report's 95% interval")


if __name__ == "__main__":
    main()
