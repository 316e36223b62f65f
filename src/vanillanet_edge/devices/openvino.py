"""OpenVINO runner: any device `available_devices` lists; reports the precision really used."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Runner, Session, to_layout


def type_name(t) -> str:
    """OpenVINO element type -> 'f32', 'bf16', 'f16'..."""
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


class _OvSession(Session):
    def __init__(self, compiled, manifest: dict, settings: dict):
        self._request = compiled.create_infer_request()
        self._layout = manifest["input"]["layout"]
        self.batch = manifest["input"]["shape"][0]
        self.settings = settings

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: to_layout(x_nchw, self._layout)})
        return np.asarray(result[0] if 0 in result else next(iter(result.values())))


class OpenVinoRunner(Runner):
    name = "openvino"
    extra = "openvino"
    modules = ("openvino",)
    artifact_suffixes = (".xml",)

    def load(self, artifact: Path, manifest: dict, device: str = "CPU", threads: int | None = None,
             precision_hint: str | None = None, performance_hint: str = "LATENCY", **_) -> Session:
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": performance_hint}
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        compiled = core.compile_model(core.read_model(str(artifact)), device, config)
        settings = {"device": device, "performance_hint": performance_hint,
                    "inference_precision": type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
                    "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
                    "openvino": ov.__version__}
        return _OvSession(compiled, manifest, settings)
