"""OpenVINO IR: openvino's convert_model and save_model (model.xml + model.bin).

INT8: NNCF post-training quantization (`nncf.quantize`) of the converted model: FakeQuantize
on the activations entering each conv, int8 per-channel weights stored as int8 constants, and
bias correction over the calibration images (fast_bias_correction=False: clearly more accurate
in our trials). The CPU plugin turns FakeQuantize + conv into u8/i8 oneDNN kernels; `int8` in the
result counts the IR and the precision each conv really runs at in the compiled model.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..devices.openvino import type_name
from ..errors import ConversionError
from .base import Converter, ConvertRequest, ExportResult, app_contract, package_versions, quiet_output

_CONV_TYPES = ("Convolution", "GroupConvolution")
# how each method sets NNCF's activation range estimators (weights: always per-channel min/max)
_METHODS = {
    "minmax": "RangeEstimatorParametersSet.MINMAX for every activation quantizer: global min and "
              "max over all calibration images",
    "mean_minmax": "NNCF's default: per-image min/max averaged over the images (MEAN_MINMAX) for "
                   "per-tensor quantizers, global MINMAX for the per-channel ones (depthwise inputs)",
    "percentile": "QUANTILE statistic (outlier probability 1 - p/100 per side) over all calibration "
                  "images pooled in one batch (batchwise_statistics=False)",
}
PERCENTILE_BATCH_BYTES = 256 * 2**20   # pooled-percentile batches stay under this (activations)


class OpenVinoConverter(Converter):
    target = "openvino"
    extra = "openvino"
    runtime = "openvino"
    modules = ("openvino",)
    precisions = ("fp32", "fp16", "int8")
    int8_methods = tuple(_METHODS)
    excludes_layers = True
    layout_options = ("NHWC",)
    description = ("OpenVINO IR (xml + bin), NCHW float32 I/O (NHWC with input_layout=NHWC); "
                   "fp16 = fp16-compressed weights; int8 = NNCF post-training quantization")

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
        int8 = None
        core = ov.Core()
        notes = {}
        if request.precision == "int8":
            model, int8, notes["int8"] = _quantize(request, model, core)
        layout = request.options.get("input_layout", "NCHW")
        if layout not in ("NCHW", *self.layout_options):
            raise ValueError(f"input_layout must be NCHW or NHWC, got {layout!r}")
        input_dtype = None
        if request.pixels == "raw":
            # what a camera frame is: u8 RGB NHWC; the IR converts to f32 NCHW itself, and the
            # normalization is inside the model (folded into the stem, or prepended)
            layout, input_dtype = "NHWC", "uint8"
            model = _nhwc_input(model, u8=True)
            notes["input_layout"] = ("u8 NHWC RGB input (PrePostProcessor: convert to f32, NHWC -> NCHW "
                                     "inside the IR); normalization inside the model")
        elif layout == "NHWC":
            model = _nhwc_input(model)
            notes["input_layout"] = "NHWC input; the transpose to the model's NCHW is part of the graph"
        notes["rt_info"] = _add_rt_info(model, request, layout, input_dtype or "float32")
        _name_from_content(model)
        # save_model compresses weights to fp16 unless told not to: do it only when asked
        # (int8 weights are stored as int8 whatever this says; the rest stays f32).
        ov.save_model(model, folder / "model.xml", compress_to_fp16=request.precision == "fp16")
        notes.update({
            "devices_here": core.available_devices,
            "default_inference_precision": {d: type_name(core.get_property(d, "INFERENCE_PRECISION_HINT"))
                                            for d in core.available_devices if d == "CPU"},
            "precision_note": ("the CPU plugin computes in the default inference precision above "
                               "unless INFERENCE_PRECISION_HINT is set; verification used f32"),
        })
        if request.precision == "fp16":
            notes["fp16"] = "weights stored as fp16 and decompressed at load; compute per inference precision"
        if request.precision == "int8":
            notes["precision_note"] += ("; int8 convs run u8/i8 kernels either way, the float "
                                        "parts (kept-float layers, pools) follow the hint")
        return ExportResult("model.xml", layout, "input", "logits", notes=notes, int8=int8,
                            input_dtype=input_dtype)


def _nhwc_input(model, u8: bool = False):
    """Take NHWC input (camera frames as they come): OpenVINO's own PrePostProcessor inserts
    the layout conversion into the graph, where the plugin can fuse it into the first conv.
    `u8`: the input is u8 RGB pixels too, converted to f32 inside the IR."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    tensor = ppp.input().tensor().set_layout(ov.Layout("NHWC"))
    if u8:
        tensor.set_element_type(ov.Type.u8).set_color_format(ColorFormat.RGB)
        ppp.input().preprocess().convert_element_type(ov.Type.f32)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    return ppp.build()


def _add_rt_info(model, request: ConvertRequest, layout: str, dtype: str) -> list[str]:
    """The app contract in the IR's rt_info under model_info, as OpenVINO's Model API reads it:
    labels space-separated (spaces inside a name become _), model_type, and for normalized
    inputs mean_values / scale_values in 0-255 units; every entry also as JSON. Returns the keys."""
    import json

    contract = app_contract(request, layout, dtype, int(model.outputs[0].get_partial_shape()[-1].get_length()))
    info = {"model_type": "Classification",
            "labels": " ".join("_".join(str(n).split()) for n in contract["labels"]),
            **{f"vne_{k}": v if isinstance(v, str) else json.dumps(v) for k, v in contract.items()}}
    if request.pixels != "raw":
        info["mean_values"] = " ".join(f"{255 * m:g}" for m in contract["mean"])
        info["scale_values"] = " ".join(f"{255 * s:g}" for s in contract["std"])
    for key, value in info.items():
        model.set_rt_info(value, ["model_info", key])
    return sorted(info)


# ----------------------------------------------------------------------------------- INT8

def _module_of(op) -> str | None:
    """'__module.stages.1.conv/aten::_convolution/Convolution' -> 'stages.1.conv' (the torch
    frontend names every op after the module path it was traced in)."""
    head = op.get_friendly_name().split("/", 1)[0]
    return head[len("__module."):] if head.startswith("__module.") else None


def map_layers_to_ops(model) -> dict[str, list[str]]:
    """Torch module name (calibration/layers.py) -> friendly names of its conv ops in the IR
    (stages.i.act -> its GroupConvolution, stages.i.conv -> its Convolution)."""
    out: dict[str, list[str]] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in _CONV_TYPES:
            layer = _module_of(op)
            if layer:
                out.setdefault(layer, []).append(op.get_friendly_name())
    return out


def _ignored(request: ConvertRequest, model) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    from ..calibration.layers import select_layers

    layer_ops = map_layers_to_ops(model)   # from the conv ops' friendly names (module paths)
    return layer_ops, select_layers(request.model, request.calibration.excluded_layers,
                                    layer_ops, "OpenVINO convolution")


def _per_image_bytes(model, batch: int) -> int:
    total = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Constant", "Parameter", "Result"):
            continue
        for out in op.outputs():
            shape = out.get_partial_shape()
            if shape.is_static:
                total += int(np.prod(shape.to_shape())) * 4
    return max(1, total // max(1, batch))


def _chunks(inputs: np.ndarray, size: int) -> list[np.ndarray]:
    """`size` images per item; a last partial item is completed with images from the start."""
    n = len(inputs)
    count = -(-n // size)
    idx = np.arange(count * size) % n
    return [np.ascontiguousarray(inputs[idx[i * size:(i + 1) * size]]) for i in range(count)]


def _quantize(request: ConvertRequest, model, core):
    try:
        import nncf
    except ImportError:   # same extra as openvino, but installable apart
        from ..errors import BackendMissingError
        raise BackendMissingError("openvino int8", "openvino", "nncf") from None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import (
        AggregatorType,
        RangeEstimatorParameters,
        RangeEstimatorParametersSet,
        StatisticsCollectorParameters,
        StatisticsType,
    )

    OpenVinoConverter.check_int8_request(request.calibration)
    cal = request.calibration
    layer_ops, keep_float = _ignored(request, model)
    shape = list(model.inputs[0].get_partial_shape().to_shape())
    n = len(cal.inputs)
    note: dict = {"method": cal.method, "range_estimator": _METHODS[cal.method], "samples": n}

    if cal.method == "percentile":
        # NNCF reduces a QUANTILE per dataset item; one item holding every image makes it the
        # percentile of all calibration values pooled (like ORT's and our Core ML rule), instead
        # of a per-image quantile averaged over images, which clipped the rarely-firing channels
        # of the per-channel (depthwise) quantizers here: 5 points of top-1 lost on digits.
        q = 1.0 - float(cal.percentile) / 100.0
        chunk = int(min(n, max(1, PERCENTILE_BATCH_BYTES // _per_image_bytes(model, shape[0]))))
        side = dict(statistics_type=StatisticsType.QUANTILE, quantile_outlier_prob=q)
        estimator = RangeEstimatorParameters(
            # several batches only when the images do not fit one: then the most extreme batch
            min=StatisticsCollectorParameters(aggregator_type=AggregatorType.MIN, **side),
            max=StatisticsCollectorParameters(aggregator_type=AggregatorType.MAX, **side))
        advanced = AdvancedQuantizationParameters(activations_range_estimator_params=estimator,
                                                  batchwise_statistics=False)
        items = _chunks(cal.inputs, chunk)
        note.update({"percentile": float(cal.percentile), "quantile_outlier_prob": round(q, 12),
                     "calibration_batch": chunk,
                     "percentile_rule": "two-sided on signed values: rmin = P(100-p), rmax = P(p) of "
                                        "all values of the batch (per channel for per-channel quantizers)"})
    else:
        chunk = 1   # one image per item: NNCF's per-sample statistics are per image
        items = _chunks(cal.inputs, 1)
        advanced = (AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
            if cal.method == "minmax" else None)
        note["calibration_batch"] = 1
    preset = nncf.QuantizationPreset.PERFORMANCE
    note.update({"preset": "performance (symmetric int8 weights and activations; unsigned u8 where the "
                           "input is non-negative)",
                 "fast_bias_correction": False, "subset_size": len(items),
                 "ignored_scope": [o for ops in keep_float.values() for o in ops],
                 "layer_to_ops": layer_ops})

    if chunk != shape[0]:
        model.reshape([chunk, *shape[1:]])   # statistics at the calibration batch, then back
    kwargs = {"advanced_parameters": advanced} if advanced is not None else {}
    if keep_float:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=note["ignored_scope"], validate=True)
    with _quiet():
        quantized = nncf.quantize(model, nncf.Dataset(items), preset=preset, subset_size=len(items),
                                  fast_bias_correction=False, **kwargs)
    if chunk != shape[0]:
        quantized.reshape(shape)

    counts = count_int8(quantized, core)
    leaked = [layer for layer, ops in keep_float.items()
              if any(counts["runtime_precision"].get(o) not in (None, "f32", "bf16", "f16") for o in ops)]
    if leaked:
        raise ConversionError(f"layers asked to stay float were quantized: {', '.join(leaked)}")
    counts["kept_float"] = keep_float
    return quantized, counts, note


def _trace_back(output, skip: tuple[str, ...]):
    node = output.get_node()
    while node.get_type_name() in skip:
        node = node.input_value(0).get_node()
    return node


def count_int8(model, core) -> dict:
    """Convs in the IR fed by FakeQuantize with int8 weights, and convs the CPU plugin compiles
    to u8/i8 kernels (its runtime model's `runtimePrecision`), at INFERENCE_PRECISION_HINT=f32
    like verification."""
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() in _CONV_TYPES]
    types = [op.get_type_name() for op in model.get_ordered_ops()]

    def int8_weight(conv) -> bool:
        node = conv.input_value(1).get_node()
        for _ in range(6):   # Constant(i8) -> Convert -> [Subtract] -> Multiply [-> Reshape]
            if node.get_type_name() == "FakeQuantize":
                return True
            if node.get_type_name() == "Constant":
                return type_name(node.get_output_element_type(0)) in ("i8", "u8")
            if node.get_input_size() == 0:
                return False
            node = node.input_value(0).get_node()
        return False

    ir_int8 = [c for c in convs
               if _trace_back(c.input_value(0), ("MaxPool", "Reshape", "Transpose", "Squeeze",
                                                 "Unsqueeze")).get_type_name() == "FakeQuantize"
               and int8_weight(c)]
    int8_weights = sum(op.get_type_name() == "Convert"
                       and op.input_value(0).get_node().get_type_name() == "Constant"
                       and type_name(op.input_value(0).get_element_type()) in ("i8", "u8")
                       for op in model.get_ordered_ops())

    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = {c.get_friendly_name() for c in convs}
    precision: dict[str, str] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" not in info or info["layerType"].astype(str) != "Convolution":
            continue
        runtime = info["runtimePrecision"].astype(str)
        for original in info["originalLayersNames"].astype(str).split(","):
            if original in names:
                precision[original] = runtime
    runtime_int8 = [c for c in convs if precision.get(c.get_friendly_name()) in ("u8", "i8")]
    total = len(convs)
    return {"conv_total": total, "conv_int8": len(runtime_int8),
            "conv_int8_ir": len(ir_int8),
            "quantize_nodes": types.count("FakeQuantize"),
            "dequantize_nodes": int(int8_weights),
            "fraction_conv_int8": round(len(runtime_int8) / total, 4) if total else 0.0,
            "runtime_precision": {c.get_friendly_name(): precision.get(c.get_friendly_name(), "?")
                                  for c in convs},
            "how": ("conv_int8 = Convolution/GroupConvolution ops whose runtimePrecision is u8/i8 in "
                    "the CPU plugin's compiled runtime model (INFERENCE_PRECISION_HINT=f32); "
                    "conv_int8_ir = convs fed by a FakeQuantize with int8 weights in the IR; "
                    "quantize_nodes = FakeQuantize ops (activations); dequantize_nodes = int8 "
                    "weight constants decompressed by Convert (+Multiply) at load")}


def _quiet():
    """NNCF logs INFO lines and draws progress bars on stdout."""
    return quiet_output("nncf", logging.WARNING, stderr=False)


def _name_from_content(model) -> None:
    """Replace OpenVINO's process-global generated names with ones from the graph itself.

    Nodes that got no name from the source (constants, results, the model: "Constant_3327",
    "Model6") are named from a counter of every node created so far in the process, so the same
    conversion wrote a different model.xml after other work in the same process. Artifacts are
    keyed by their hashes (device cache, pipeline skips): name such nodes by their place in the
    graph instead. Names from the source ("/stages.0/conv/Conv") are kept.
    """
    import re

    model.set_friendly_name("vanillanet-edge")
    for i, op in enumerate(model.get_ordered_ops()):
        if re.fullmatch(rf"{re.escape(op.get_type_name())}_\d+", op.get_friendly_name()):
            op.set_friendly_name(f"{op.get_type_name()}_{i}")
