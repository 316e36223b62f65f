"""ONNX Runtime runner (CPU; CUDA where a GPU and onnxruntime-gpu are present)."""
from __future__ import annotations

import bisect
import json
import tempfile
from pathlib import Path

import numpy as np

from .base import Runner, Session, example_input, resolve_threads, to_layout

# ONNX Runtime's type names in its profiler's input_type_shape -> our short precision names.
_ORT_TYPES = {"float": "f32", "float16": "f16", "bfloat16": "bf16", "double": "f64", "uint8": "u8",
              "int8": "i8", "int16": "i16", "uint16": "u16", "int32": "i32", "int64": "i64", "bool": "bool"}
_KERNEL_SUFFIX = "_kernel_time"


class _OrtSession(Session):
    def __init__(self, sess, manifest: dict, settings: dict):
        self._sess = sess
        self._input = sess.get_inputs()[0].name
        self._layout = manifest["input"]["layout"]
        self.batch = manifest["input"]["shape"][0]
        self.settings = settings

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input: to_layout(x_nchw, self._layout)})[0]


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    extra = "onnx"
    modules = ("onnxruntime",)
    artifact_suffixes = (".onnx",)

    def load(self, artifact: Path, manifest: dict, threads: int | None = None,
             provider: str | None = None, spinning: bool = False, **_) -> Session:
        return self._session(artifact, manifest, threads, provider, spinning)

    def _session(self, artifact: Path, manifest: dict, threads: int | None, provider: str | None,
                 spinning: bool, profile_prefix: str | None = None) -> _OrtSession:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        threads = resolve_threads(threads)
        opts.intra_op_num_threads = threads
        # Spinning threads keep burning CPU after a run and disturb anything timed next to them.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        available = ort.get_available_providers()
        providers = [provider] if provider else [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                                 if p in available]
        sess = ort.InferenceSession(str(artifact), opts, providers=providers)
        settings = {"providers": sess.get_providers(), "threads": threads,
                    "spinning": spinning, "onnxruntime": ort.__version__}
        return _OrtSession(sess, manifest, settings)

    def tuning_options(self, machine: dict, precision: str) -> list[dict]:
        # Intra-op threads: the default is one per physical core (machine.default_threads);
        # one thread per logical core (ORT's own default) can win on SMT machines, one thread
        # where the rest of an app needs the other cores.
        cores = machine.get("default_threads") or machine.get("physical_cores") or 1
        logical = machine.get("logical_cores") or cores
        return [{}] + ([{"threads": logical}] if logical != cores else []) + ([{"threads": 1}] if cores > 1 else [])

    def profile_layers(self, artifact: Path, manifest: dict, runs: int, warmup: int = 5,
                       threads: int | None = None, provider: str | None = None,
                       spinning: bool = False, **_) -> list[dict]:
        """ONNX Runtime's own profiler (SessionOptions.enable_profiling, a Chrome trace).

        Warm-up: the warm-up runs go through the SAME profiled session, and are then cut out
        of its trace. A separate warm-up session would not do: what makes first runs slow
        (arena growth, pre-packed weights, thread-pool start) belongs to the session that runs,
        so the profiled session would still be cold. Nor can profiling start after warm-up:
        enable_profiling is fixed when the session is created and Python has no
        start_profiling. Mapping a Python clock reading onto the trace through
        get_profiling_start_time_ns would assume ORT's clock is Python's. Instead the trace
        itself marks every inference with a "model_run" span; node events inside the last
        `runs` spans are the measured ones, with no clock assumption at all.
        """
        with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
            session = self._session(artifact, manifest, threads, provider, spinning,
                                    profile_prefix=str(Path(tmp) / "ort"))
            x = example_input(manifest)
            for _ in range(warmup + runs):
                session.run(x)
            trace = session._sess.end_profiling()       # stops profiling; returns the file's path
            events = json.loads(Path(trace).read_text())
        return aggregate_ort_trace(events, runs)


def aggregate_ort_trace(events: list[dict], runs: int) -> list[dict]:
    """Per-node rows from an ONNX Runtime profile, over the last `runs` inferences it recorded."""
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") == "Session" and e.get("name") == "model_run")
    spans = spans[-runs:] if runs > 0 else []
    starts = [s for s, _ in spans]
    rows: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(_KERNEL_SUFFIX):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i < 0 or e["ts"] > spans[i][1]:
            continue                                   # a warm-up run (or outside any run)
        args = e.get("args", {})
        name = e["name"][:-len(_KERNEL_SUFFIX)]
        row = rows.get(name)
        if row is None:
            inputs = args.get("input_type_shape") or [{}]
            dtype = next(iter(inputs[0]), None) if inputs and isinstance(inputs[0], dict) else None
            row = rows[name] = {"name": name, "op_type": args.get("op_name", "?"),
                                "exec_type": args.get("provider", "?"),
                                "precision": _ORT_TYPES.get(dtype, dtype), "calls": 0, "_us": 0.0}
        row["calls"] += 1
        row["_us"] += float(e.get("dur", 0))
    out = []
    for row in rows.values():
        row["time_ms"] = row.pop("_us") / 1000.0 / max(len(spans), 1)
        out.append(row)
    return out
