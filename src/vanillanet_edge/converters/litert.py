"""LiteRT (.tflite): litert-torch, NHWC input, float32 I/O (int8: int8 I/O), verified in the LiteRT interpreter.

Route: fused model -> exact export-form rewrites (this module) -> NHWC wrapper
(`litert_torch.to_channel_last_io`, whose input permute the converter's layout pass cancels
against the first conv, so the graph starts with CONV_2D on the NHWC input) ->
`litert_torch.convert` -> `model.tflite`.

Precisions (one function each in `_PRECISION_PATHS`):
  fp32: plain conversion.
  fp16: litert-torch's supported float16 route, `quant_recipes.full_fp16_recipe()`: the
        converter hands the flatbuffer to ai-edge-quantizer (FLOAT_CASTING, weight-only),
        which stores weights as float16 and inserts DEQUANTIZE ops feeding float32 compute;
        input and output stay float32.
  int8: PT2E static quantization (torchao `prepare_pt2e` / `convert_pt2e` with litert-torch's
        `PT2EQuantizer`): int8 weights, symmetric per output channel; int8 activations,
        per-tensor affine, ranges from the calibration images (NHWC, through the same
        NhwcInput module that is converted); int8 input and output tensors (the manifest
        notes give their scale / zero point). Methods = the activation observer:
          minmax: MinMaxObserver (running min / max over all calibration images);
          mse:    HistogramObserver (2048-bin histogram, then the range minimizing the L2
                  quantization error - torchao's `_non_linear_param_search`).
        torchao has no percentile observer, so "percentile" is not offered here.
        It needs `relu_before_maxpool` below: the LiteRT converter fuses a ReLU that follows
        a MaxPool into the pool, and PT2E's same-scale constraint on MaxPool then fails
        ("'tfl.max_pool_2d' op quantization parameters violate the same scale constraint");
        ReLU first is mathematically identical.
        Layers kept in float (calibration.excluded_layers, torch module names): their nodes
        are pre-marked as annotated so no PT2E annotator quantizes them. Two library
        behaviours make that alone insufficient (both seen with litert-torch 0.10.0):
          - PT2EQuantizer.set_module_name / set_module_type never match torch.export graphs:
            their filters read nn_module_stack keys as "L__self___<a_b_c>" and the types as
            classes, while torch.export gives "L__self__<a.b.c>" and type names as strings;
          - the converter's default (non-strict) STATIC QDQ mode re-quantizes any float op
            that sits between a DEQUANTIZE and a QUANTIZE, choosing its own int8 weights, so
            a kept conv came out int8 anyway.
        So with excluded layers the conversion runs in the converter's strict QDQ mode
        (ConvertToTFLConfig.strict_qdq_mode, which litert-torch does not expose: it is set
        by `_strict_qdq_mode` below for that one call), where exactly the Q/DQ pairs of the
        PT2E graph become int8 and everything else stays float. Strict mode leaves a float
        input + QUANTIZE and a DEQUANTIZE + float output at the edges; `integer_io` removes
        them, as TFLite's modify_model_interface does, so the I/O is int8 in both modes.
        Every kept layer is checked to be float in the written flatbuffer.

Exact rewrites (checked with torch.equal against the request's model before converting):
  relu_before_maxpool: Block = conv -> pool -> Activation(ReLU -> depthwise) becomes
        conv -> ReLU -> pool -> depthwise. relu(maxpool(x)) == maxpool(relu(x)) bit for bit
        (ReLU is monotone and max only selects). Also lets the converter fuse the ReLU into
        the CONV_2D before it.
  layout_friendly_adaptive_pools: model/adapool.py's FixedAdaptiveMaxPool2d picks windows
        with index_select, which LiteRT lowers to GATHER_ND wrapped in TRANSPOSEs (14 of them
        in vanillanet_13_x1_5_ada_pool). Adaptive windows fall into a few runs of equal length
        and constant stride, so the same maxima are plain strided MaxPool2d ops on slices.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ConversionError
from .base import Converter, ConvertRequest, ExportResult, package_versions, quiet_output
from .litert_export import (  # noqa: F401
    INPUT_KEY,
    OUTPUT_KEY,
    DepthwiseOnly,
    NhwcInput,
    StridedAdaptiveMaxPool2d,
    export_form,
    layout_friendly_adaptive_pools,
    relu_before_maxpool,
    window_runs,
)
from .litert_flatbuffer import (  # noqa: F401
    _check_io,
    _quantization_note,
    float_output,
    inspect_tflite,
    int8_summary,
    integer_io,
    uint8_input,
)
from .litert_metadata import add_classifier_metadata, check_metadata_writer
from .litert_quantize import _PRECISION_PATHS, INT8_OBSERVERS, _strict_qdq_mode, int8_quantizer  # noqa: F401

ARTIFACT = "model.tflite"


class LiteRtConverter(Converter):
    target = "tflite"
    extra = "tflite"
    runtime = "litert"
    modules = ("litert_torch", "ai_edge_litert")
    precisions = ("fp32", "fp16", "int8")
    int8_methods = tuple(INT8_OBSERVERS)
    int8_methods_note = "torchao has no percentile observer"
    excludes_layers = True
    default_pixels = "raw"       # apps feed camera pixels; TFLite metadata readers need it (below)
    description = ("LiteRT flatbuffer (.tflite) via litert-torch, NHWC float32 I/O (int8: PT2E static, "
                   "int8 I/O), run with the LiteRT interpreter")

    def library_versions(self) -> dict[str, str]:
        return package_versions("litert-torch", "litert-converter", "ai-edge-litert", "ai-edge-quantizer")

    def check_app_request(self, pixels: str, options: dict) -> None:
        if pixels == "raw" and options.get("metadata", True):
            check_metadata_writer()

    def verify_settings(self, request: ConvertRequest) -> dict:
        # ai_edge_litert runs on 1 thread unless told otherwise; verification is 32 images.
        return {"threads": max(1, min(4, os.cpu_count() or 1))}

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        import litert_torch

        if request.precision not in _PRECISION_PATHS:
            raise ConversionError(f"tflite has no {request.precision} path",
                                  hint=f"tflite supports: {', '.join(self.precisions)}")
        if request.precision == "int8":
            self.check_int8_request(request.calibration)
        model, rewrites = export_form(request.model, request.sample_inputs[:1])
        x = torch.from_numpy(np.ascontiguousarray(request.sample_inputs[:1])).repeat(request.batch, 1, 1, 1)
        x_nhwc = x.permute(0, 2, 3, 1).contiguous()
        with _quiet():
            plan = _PRECISION_PATHS[request.precision](NhwcInput(model).eval(), x_nhwc, request)

        path = folder / ARTIFACT
        with _quiet(), (_strict_qdq_mode() if plan.strict_qdq else contextlib.nullcontext()):
            edge = litert_torch.convert(plan.module, sample_kwargs={INPUT_KEY: x_nhwc}, **plan.convert_kwargs)
            edge.export(str(path))
        if plan.strict_qdq:
            integer_io(path)
        # raw pixels into an int8 model: a uint8 input, the values an app's camera buffer holds,
        # and float32 logits out (MediaPipe's classifier takes no int8 output)
        app_int8 = request.precision == "int8" and request.pixels == "raw"
        u8 = uint8_input(path) if app_int8 else None
        f32 = float_output(path) if app_int8 else None
        metadata = self._metadata(request, path)

        info = inspect_tflite(path)
        _check_io(info, request, io_dtype=plan.io_dtype, input_dtype="uint8" if u8 else None,
                  output_dtype="float32" if f32 else None)
        if info["input_transposes"]:
            raise ConversionError(
                f"the converted graph transposes its input ({info['input_transposes']} TRANSPOSE "
                f"op(s) read it): NHWC input did not reach the first conv directly",
                hint="report this with the litert-torch version; the layout pass did not cancel the permute")
        notes = plan.notes
        int8 = None
        if request.precision == "int8":
            int8 = int8_summary(info, request)
            inp, out = info["inputs"][0], info["outputs"][0]
            notes["input_quantization"] = u8 or _quantization_note(inp, "real = scale * (q - zero_point); "
                                                                   "feed q = round(x / scale) + zero_point, "
                                                                   "clipped to [-128, 127]")
            notes["output_quantization"] = f32 or _quantization_note(out, "logits = scale * (q - zero_point)")
        notes.update({
            "converter": f"litert_torch.convert (litert-torch {_version('litert-torch')})",
            "rewrites": rewrites,
            "signature": {"key": info["signature_key"], "input": INPUT_KEY, "output": OUTPUT_KEY},
            "op_counts": info["op_counts"],
            "transpose_ops": info["op_counts"].get("TRANSPOSE", 0),
            "input_transposes": info["input_transposes"],
            "input_readers": info["input_readers"],
            "constant_dtypes": info["constant_dtypes"],
            "metadata": metadata,
        })
        inp, out = info["inputs"][0], info["outputs"][0]
        return ExportResult(ARTIFACT, "NHWC", inp["name"], out["name"], io_dtype="float32" if f32 else plan.io_dtype,
                            notes=notes, int8=int8, input_dtype="uint8" if u8 else None)


    @staticmethod
    def _metadata(request: ConvertRequest, path: Path) -> dict:
        """TFLite metadata for raw-pixel artifacts (on unless options say metadata: false)."""
        if request.pixels != "raw":
            return {"written": False, "why": "normalized input: TFLite metadata readers (MediaPipe) "
                                             "refuse per-channel mean/std; convert with --input raw"}
        if not request.options.get("metadata", True):
            return {"written": False, "why": "metadata: false in the options (--no-metadata)"}
        check_metadata_writer()
        with quiet_output():
            written = add_classifier_metadata(path, request.app_info, request.class_names)
        return {"written": True, **written}


@contextlib.contextmanager
def _quiet():
    """Silence litert-torch's progress lines and ai-edge-quantizer's prints and progress bar.

    Errors still propagate as exceptions; only chatter written through Python's sys.stdout and
    sys.stderr is dropped (the C++ converter's own log lines are not affected).
    """
    key = "LITERT_TORCH_SHOW_PROGRESS"
    old = os.environ.get(key)
    os.environ[key] = "n"
    try:
        with quiet_output():
            yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _version(dist: str) -> str:
    return package_versions(dist)[dist]
