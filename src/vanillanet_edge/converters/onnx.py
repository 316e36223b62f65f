"""ONNX: torch's exporter, checked with onnx.checker, verified in ONNX Runtime."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .base import Converter, ConvertRequest, ExportResult, package_versions

OPSET = 18   # what torch's dynamo exporter writes today; ORT 1.18+ and OpenVINO read it


class OnnxConverter(Converter):
    target = "onnx"
    extra = "onnx"
    runtime = "onnxruntime"
    modules = ("onnx", "onnxruntime", "onnxscript")
    precisions = ("fp32", "fp16")
    description = "ONNX (opset 18), NCHW float32 I/O, run with ONNX Runtime"

    def library_versions(self) -> dict[str, str]:
        return package_versions("onnx", "onnxruntime", "onnxscript")

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        import onnx

        path = folder / "model.onnx"
        x = torch.from_numpy(request.sample_inputs[:1]).repeat(request.batch, 1, 1, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(request.model.eval(), (x,), dynamo=True, opset_version=OPSET,
                                        input_names=["input"], output_names=["logits"],
                                        external_data=False, verbose=False)
            program.save(str(path))
        model = onnx.load(str(path))
        notes = {"opset": OPSET}
        if request.precision == "fp16":
            model = _to_fp16(model)
            notes["fp16"] = "weights and compute in float16, float32 input and output (cast at the edges)"
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(path))
        return ExportResult("model.onnx", "NCHW", "input", "logits", notes=notes)


def _to_fp16(model):
    """Float16 weights and compute with float32 I/O, using onnxruntime's maintained helper."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    model = convert_float_to_float16(model, keep_io_types=True)
    _toposort(model.graph)   # the helper appends its input Casts after their consumers
    return model


def _toposort(graph) -> None:
    """Reorder nodes so each comes after the producers of its inputs (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise ValueError("the ONNX graph has a cycle or an input nobody produces")
        for n in runnable:
            ordered.append(n)
            ready.update(n.output)
        pending = [n for n in pending if n not in runnable]
    del graph.node[:]
    graph.node.extend(ordered)
