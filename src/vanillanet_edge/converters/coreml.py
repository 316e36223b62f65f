"""Core ML: coremltools' mlprogram (.mlpackage), float32 I/O, iOS 17 / macOS 14 and newer.

On Linux nothing can `predict` a Core ML model; verification runs the saved package with our
numpy MIL interpreter (devices/coreml_mil.py). On macOS the runner uses Core ML itself.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .base import Converter, ConvertRequest, ExportResult, package_versions


class CoreMlConverter(Converter):
    target = "coreml"
    extra = "coreml"
    runtime = "coreml"
    modules = ("coremltools",)
    precisions = ("fp32", "fp16")
    description = "Core ML mlprogram (.mlpackage), NCHW float32 I/O; verified by a numpy MIL interpreter off macOS"

    def library_versions(self) -> dict[str, str]:
        return package_versions("coremltools")

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        import coremltools as ct

        x = torch.from_numpy(request.sample_inputs[:1]).repeat(request.batch, 1, 1, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # jit deprecation, "untested torch version"
            traced = torch.jit.trace(request.model.eval(), x)
            precision = ct.precision.FLOAT16 if request.precision == "fp16" else ct.precision.FLOAT32
            mlmodel = ct.convert(
                traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                # float32 I/O even at fp16: the fp16 route would otherwise make I/O float16 too
                inputs=[ct.TensorType(name="input", shape=tuple(x.shape), dtype=np.float32)],
                outputs=[ct.TensorType(name="logits", dtype=np.float32)],
                compute_precision=precision, compute_units=ct.ComputeUnit.ALL)
        mlmodel.short_description = "VanillaNet classifier: NCHW RGB input, logits output"
        mlmodel.save(str(folder / "model.mlpackage"))
        notes = {"minimum_deployment_target": "iOS17",
                 "compute_precision": request.precision}
        return ExportResult("model.mlpackage", "NCHW", "input", "logits", notes=notes)
