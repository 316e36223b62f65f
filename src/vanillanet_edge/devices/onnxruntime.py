"""ONNX Runtime runner (CPU; CUDA where a GPU and onnxruntime-gpu are present)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Runner, Session, to_layout


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
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # Spinning threads keep burning CPU after a run and disturb anything timed next to them.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        available = ort.get_available_providers()
        providers = [provider] if provider else [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                                 if p in available]
        sess = ort.InferenceSession(str(artifact), opts, providers=providers)
        settings = {"providers": sess.get_providers(), "threads": threads or "default",
                    "spinning": spinning, "onnxruntime": ort.__version__}
        return _OrtSession(sess, manifest, settings)
