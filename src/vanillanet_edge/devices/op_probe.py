"""Per-op probe for runtimes without a per-layer profiler (LiteRT's Python API has none).

Each distinct layer of a .tflite artifact (same op, shapes, dtypes and options) is cut out of
the flatbuffer itself into a one-op model: the operator with its own weights, quantization
parameters and fused activation, its non-constant inputs as the model's inputs. No torch and
no converter is involved, so the op is exactly the one the artifact runs (no layout wrapper,
no TRANSPOSE), and this module needs only numpy, flatbuffers and the LiteRT interpreter (it
may run on a device). Every one-op model is loaded through the LiteRT runner with the same
settings as the artifact (threads, kernels), its inputs set once, and the interpreter's
`invoke()` timed alone; all one-op models are timed in interleaved rounds.

Per distinct layer: time per call, calls per inference, MACs (CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED; other ops have none), GMAC/s, its ratio to the median GMAC/s of the MAC layers
and to a matmul peak of the same precision (devices/peak.py; given, or measured by the caller),
and `flag` = "slow" where GMAC/s < `slow_fraction` (1/5) of the median: the kernels to rewrite.

One-op times leave out what the whole graph saves (XNNPACK fuses some ops, tensors stay in
cache between layers) or adds (scheduling), so the sum of rows is an estimate; the record
also gives the whole artifact's measured time with the same settings.
"""
from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .base import example_input, resolve_threads

PROBE_SCHEMA = 1
SLOW_FRACTION = 0.2
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _load_model(path: Path):
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        raise ValueError("the flatbuffer keeps its weights outside the table (buffer offsets): not supported")
    return model


def _is_const(model, tensor) -> bool:
    if not tensor.buffer:
        return False
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _shape(tensor) -> list[int]:
    return [int(d) for d in (tensor.shape if tensor.shape is not None else [])]


def _options(op) -> dict:
    opts = op.builtinOptions
    if opts is None:
        return {}
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in sorted(vars(opts).items())
            if isinstance(v, (int, float, bool, str, bytes))}


def _macs(op_name: str, model, op) -> int:
    g = model.subgraphs[0]
    ins = [g.tensors[i] if i >= 0 else None for i in op.inputs]
    out = g.tensors[op.outputs[0]]
    out_elems = int(np.prod(_shape(out))) if _shape(out) else 0
    if op_name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) > 1 and ins[1] is not None:
        w = _shape(ins[1])                       # CONV_2D [O, kh, kw, I/groups]; DEPTHWISE [1, kh, kw, C*m]
        return out_elems * w[1] * w[2] * (w[3] if op_name == "CONV_2D" else 1)
    if op_name == "FULLY_CONNECTED" and len(ins) > 1 and ins[1] is not None:
        return out_elems * _shape(ins[1])[-1]
    return 0


def _label(op_name: str, model, op, dtypes) -> str:
    g = model.subgraphs[0]
    ins = [g.tensors[i] for i in op.inputs if i >= 0]
    x = "x".join(str(d) for d in _shape(ins[0])[1:]) if ins else "?"
    y = "x".join(str(d) for d in _shape(g.tensors[op.outputs[0]])[1:])
    opts = _options(op)
    extra = ""
    if op_name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) > 1:
        w = _shape(ins[1])
        extra = f" {w[1]}x{w[2]}" + (f"/s{opts.get('strideH')}" if opts.get("strideH", 1) > 1 else "")
    elif op_name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        extra = f" {opts.get('filterHeight')}x{opts.get('filterWidth')}/s{opts.get('strideH')}"
    return f"{op_name}{extra} {x} -> {y} {dtypes[0]}"


def distinct_layers(path: str | Path) -> list[dict]:
    """The artifact's distinct layers in first-use order: op, label, key, op indices, MACs."""
    schema = _schema()
    model = _load_model(path)
    codes = _names(schema.BuiltinOperator)
    types = _names(schema.TensorType)
    g = model.subgraphs[0]
    kinds: dict[tuple, dict] = {}
    for k, op in enumerate(g.operators):
        oc = model.operatorCodes[op.opcodeIndex]
        name = codes.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), str(oc.builtinCode))
        if oc.customCode:
            name = f"CUSTOM:{oc.customCode.decode() if isinstance(oc.customCode, bytes) else oc.customCode}"
        tensors = [g.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0]
        dtypes = [types.get(t.type, str(t.type)).lower() for t in tensors]
        key = (name, tuple(tuple(_shape(t)) for t in tensors), tuple(dtypes),
               tuple(_is_const(model, g.tensors[i]) if i >= 0 else None for i in op.inputs),
               tuple(sorted(_options(op).items())))
        if key not in kinds:
            kinds[key] = {"op_type": name, "name": _label(name, model, op, dtypes), "ops": [],
                          "macs": _macs(name, model, op), "dtype": dtypes[0] if dtypes else None}
        kinds[key]["ops"].append(k)
    return list(kinds.values())


def single_op_model(path: str | Path, op_index: int) -> bytes:
    """A flatbuffer holding only operator `op_index` of `path`, with its constants; its
    non-constant inputs become the model's inputs, its outputs the model's outputs."""
    import flatbuffers

    schema = _schema()
    src = _load_model(path)
    g = src.subgraphs[0]
    op = g.operators[op_index]
    new = schema.ModelT()
    new.version = src.version
    new.description = f"op probe: operator {op_index}".encode()
    new.operatorCodes = [copy.copy(src.operatorCodes[op.opcodeIndex])]
    new.buffers = [schema.BufferT()]
    tensors, remap, inputs = [], {-1: -1}, []
    for i in list(op.inputs) + list(op.outputs):
        if i < 0 or i in remap:
            continue
        t = copy.copy(g.tensors[i])
        if _is_const(src, t):
            new.buffers.append(copy.copy(src.buffers[t.buffer]))
            t.buffer = len(new.buffers) - 1
        else:
            t.buffer = 0
            if i in op.inputs:
                inputs.append(len(tensors))
        remap[i] = len(tensors)
        tensors.append(t)
    one = copy.copy(op)
    one.opcodeIndex = 0
    one.inputs = [remap[int(i)] for i in op.inputs]
    one.outputs = [remap[int(i)] for i in op.outputs]
    one.intermediates = None
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, [one]
    sub.inputs, sub.outputs = inputs, [remap[int(i)] for i in op.outputs]
    sub.name = b"probe"
    new.subgraphs = [sub]
    builder = flatbuffers.Builder(1024)
    builder.Finish(new.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _feed(interpreter, rng) -> None:
    for d in interpreter.get_input_details():
        dtype = np.dtype(d["dtype"])
        shape = tuple(int(s) for s in d["shape"])
        if dtype.kind == "f":
            x = rng.standard_normal(shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            x = rng.integers(max(info.min, -100), min(info.max, 100), size=shape).astype(dtype)
        interpreter.set_tensor(d["index"], x)


def _invoke_timer(session):
    # The runner's session quantizes and copies its NCHW input on every run; for one op that
    # would be most of the time, so the interpreter the runner built (same threads, kernels,
    # resolver) is invoked directly, its inputs set once.
    interpreter = getattr(session, "_it", None)
    if interpreter is None:
        raise RuntimeError("the LiteRT session does not expose its interpreter")
    _feed(interpreter, np.random.default_rng(0))
    return interpreter.invoke


def _time_interleaved(calls: dict, rounds: int, seconds: float, min_calls: int) -> dict[str, float]:
    """Median over rounds of each call's mean time (ms) in a round; rounds interleave the calls."""
    per = {k: [] for k in calls}
    for call in calls.values():
        call()                                    # warm-up (first invoke allocates, packs weights)
    for _ in range(rounds):
        for k, call in calls.items():
            n, t0 = 0, time.perf_counter()
            while n < min_calls or time.perf_counter() - t0 < seconds:
                call()
                n += 1
            per[k].append(1000 * (time.perf_counter() - t0) / n)
    return {k: statistics.median(v) for k, v in per.items()}


def probe_ops(artifact: str | Path, manifest: dict, threads: int | None = None, kernels: str = "auto",
              peak_gmacs: float | None = None, peak_note: str | None = None, rounds: int = 3,
              seconds: float = 0.1, min_calls: int = 3, slow_fraction: float = SLOW_FRACTION,
              work_dir: str | Path | None = None) -> dict:
    """Time every distinct layer of a .tflite artifact as a one-op model (module docstring).

    Returns a "layer_profile"-shaped record (profile_cli prints it like the profilers' ones):
    rows, slowest in total first, each with name (a label: op, kernel, input -> output shape,
    dtype), op_type, calls (per inference), ms_each, time_ms (ms_each x calls), share, macs
    (per call), gmacs_per_s, vs_median, fraction_of_peak and flag ("slow" or ""); plus
    total_ms, wall_ms_per_inference (the whole artifact, same settings), median_gmacs_per_s,
    peak_gmacs_per_s and session_settings.
    """
    from .registry import get_runner

    artifact = Path(artifact)
    path = artifact / manifest.get("artifact", {}).get("file", "model.tflite") if artifact.is_dir() else artifact
    runner = get_runner("litert")
    runner.require()
    threads = resolve_threads(threads)
    layers = distinct_layers(path)
    with tempfile.TemporaryDirectory(prefix="op-probe-", dir=work_dir) as tmp:
        sessions, calls, failed = {}, {}, {}
        for i, layer in enumerate(layers):
            one = Path(tmp) / f"op{i}.tflite"
            one.write_bytes(single_op_model(path, layer["ops"][0]))
            try:
                sessions[i] = runner.load(one, {"input": {"layout": "NHWC"}, "output": {}}, threads=threads,
                                          kernels=kernels)
                calls[i] = _invoke_timer(sessions[i])
            except Exception as exc:              # an op the runtime cannot run alone: say so, go on
                failed[i] = f"{type(exc).__name__}: {exc}"
        whole = runner.load(artifact, manifest, threads=threads, kernels=kernels)
        settings = dict(whole.settings)
        calls["whole"] = lambda run=whole.run, x=example_input(manifest): run(x)
        ms = _time_interleaved(calls, rounds, seconds, min_calls)
        kernels_by_op = {i: s.settings.get("kernels") for i, s in sessions.items()}
        del sessions, calls, whole

    rows = []
    for i, layer in enumerate(layers):
        each = ms.get(i)
        n = len(layer["ops"])
        row = {"name": layer["name"], "op_type": layer["op_type"], "calls": n, "order": layer["ops"][0],
               "exec_type": kernels_by_op.get(i), "precision": layer["dtype"], "macs": layer["macs"],
               "ms_each": each, "time_ms": each * n if each is not None else 0.0,
               "gmacs_per_s": (layer["macs"] / each / 1e6) if each and layer["macs"] else None,
               "error": failed.get(i)}
        rows.append(row)
    rated = [r["gmacs_per_s"] for r in rows if r["gmacs_per_s"]]
    median = statistics.median(rated) if rated else None
    for r in rows:
        g = r["gmacs_per_s"]
        r["vs_median"] = g / median if g and median else None
        r["fraction_of_peak"] = g / peak_gmacs if g and peak_gmacs else None
        r["flag"] = "slow" if r["vs_median"] is not None and r["vs_median"] < slow_fraction else ""
    total = sum(r["time_ms"] for r in rows)
    for r in rows:
        r["share"] = r["time_ms"] / total if total > 0 else 0.0
    rows.sort(key=lambda r: r["time_ms"], reverse=True)
    return {
        "schema_version": PROBE_SCHEMA, "kind": "layer_profile", "status": "ok",
        "artifact": str(artifact), "name": artifact.name if artifact.is_dir() else artifact.stem,
        "runtime": "litert", "target": manifest.get("target"), "precision": manifest.get("precision"),
        "runs": rounds, "warmup": 1, "threads": threads, "options": {"kernels": kernels},
        "session_settings": settings,
        "rows": rows, "total_ms": total, "wall_ms_per_inference": ms["whole"],
        "median_gmacs_per_s": median, "peak_gmacs_per_s": peak_gmacs, "peak_note": peak_note,
        "slow_fraction": slow_fraction,
        "profiler": ("op probe: each distinct layer cut out of the .tflite into a one-op model, "
                     "its invoke() timed in the same runtime and settings (interleaved rounds); "
                     "rows are per-call time x calls per inference"),
    }


def matmul_peak(precision: str, threads: int | None = None, seconds: float = 0.5) -> tuple[float | None, str]:
    """The best matmul peak measured here for `precision` (fp16 artifacts compute in fp32) over
    the runtimes with a peak probe (devices/peak.py); (None, why) when none could be measured."""
    from .peak import best_peak, measure_peaks

    prec = "int8" if precision == "int8" else "fp32"
    try:
        result = measure_peaks(precisions=(prec,), threads=threads, seconds_per_probe=seconds)
    except Exception as exc:                      # no probing runtime installed, or it failed
        return None, f"no {prec} matmul peak: {type(exc).__name__}: {exc}"
    best = best_peak(result, prec)
    if best is None:
        return None, f"no {prec} matmul peak was measured here"
    return best[0], f"best {prec} matmul peak measured here ({best[1]}, {resolve_threads(threads)} threads)"
