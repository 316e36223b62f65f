"""OpenVINO IR: openvino's convert_model and save_model (model.xml + model.bin)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..devices.openvino import type_name
from .base import Converter, ConvertRequest, ExportResult, package_versions


class OpenVinoConverter(Converter):
    target = "openvino"
    extra = "openvino"
    runtime = "openvino"
    modules = ("openvino",)
    precisions = ("fp32", "fp16")
    description = "OpenVINO IR (xml + bin), NCHW float32 I/O; fp16 = fp16-compressed weights"

    def library_versions(self) -> dict[str, str]:
        return package_versions("openvino", "nncf")

    def verify_settings(self, request: ConvertRequest) -> dict:
        # AMX CPUs run "FP32" models in bf16 by default: verify what the artifact holds, at f32.
        return {"precision_hint": "f32"}

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        import openvino as ov

        x = torch.from_numpy(request.sample_inputs[:1]).repeat(request.batch, 1, 1, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # convert_model traces with torch.jit
            model = ov.convert_model(request.model.eval(), example_input=x, input=[list(x.shape)])
        model.inputs[0].get_tensor().set_names({"input"})
        model.outputs[0].get_tensor().set_names({"logits"})
        # save_model compresses weights to fp16 unless told not to: do it only when asked.
        ov.save_model(model, folder / "model.xml", compress_to_fp16=request.precision == "fp16")
        core = ov.Core()
        notes = {
            "devices_here": core.available_devices,
            "default_inference_precision": {d: type_name(core.get_property(d, "INFERENCE_PRECISION_HINT"))
                                            for d in core.available_devices if d == "CPU"},
            "precision_note": ("the CPU plugin computes in the default inference precision above "
                               "unless INFERENCE_PRECISION_HINT is set; verification used f32"),
        }
        if request.precision == "fp16":
            notes["fp16"] = "weights stored as fp16 and decompressed at load; compute per inference precision"
        return ExportResult("model.xml", "NCHW", "input", "logits", notes=notes)
