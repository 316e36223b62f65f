"""ONNX: torch's exporter, checked with onnx.checker, verified in ONNX Runtime.

INT8: onnxruntime.quantization's static quantizer on the fp32 export, in QDQ form (the format
ORT's CPU kernels are written for since 1.11): per-output-channel symmetric int8 weights,
per-tensor asymmetric uint8 activations, float32 input and output. At load, ORT fuses each
DequantizeLinear -> Conv -> QuantizeLinear group into an integer QLinearConv; `int8` in the
result counts both the QDQ graph and the QLinearConvs ORT's optimizer really builds.
"""
from __future__ import annotations

import ast
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ConversionError
from .base import Converter, ConvertRequest, ExportResult, app_contract, package_versions, quiet_output

OPSET = 18   # what torch's dynamo exporter writes today; ORT 1.18+ and OpenVINO read it

# Entropy (KL) calibration: with ORT's defaults (num_bins = num_quantized_bins = 128) the search
# has a single candidate, the full range, so Entropy gives MinMax's ranges. quantize_static only
# forwards the Calib* keys (CalibTensorRangeSymmetric, CalibMovingAverage..., CalibPercentile) to
# the calibrator, not num_bins, so for entropy we run ORT's own calibrator with more bins
# (create_calibrator(extra_options={"num_bins", "num_quantized_bins"})) and hand its ranges to
# quantize_static through its calibration cache. 512 bins: 193 candidate thresholds per tensor;
# ORT's KL search is pure Python, ~3 s for the digits net on 2 cores (1024 bins ~8 s, 2048 ~22 s).
ENTROPY_BINS = 512
ENTROPY_QUANTIZED_BINS = 128
# Ops the dynamo exporter emits inside one torch module that belong to a quantizable layer:
# the activation layer is Relu + depthwise Conv; a conv layer is its Conv.
_LAYER_OPS = ("Conv", "Relu")
_ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


# What torch.onnx's exporter needs (the MNN converter goes through the same export).
EXPORT_MODULES = ("onnx", "onnxscript")


class OnnxConverter(Converter):
    target = "onnx"
    extra = "onnx"
    runtime = "onnxruntime"
    modules = ("onnx", "onnxruntime", EXPORT_MODULES[1])
    precisions = ("fp32", "fp16", "int8")
    int8_methods = tuple(_ORT_METHODS)
    excludes_layers = True
    description = "ONNX (opset 18), NCHW float32 I/O, run with ONNX Runtime (int8: QDQ, u8 activations, s8 weights)"

    def library_versions(self) -> dict[str, str]:
        return package_versions(*self.modules)

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        import onnx

        path = folder / "model.onnx"
        notes = {"opset": OPSET}
        if request.precision == "int8":
            with tempfile.TemporaryDirectory(prefix="vne-onnx-int8-") as tmp:
                fp32_path = Path(tmp) / "fp32.onnx"
                _export_fp32(request, fp32_path)
                int8 = _quantize(request, fp32_path, path, Path(tmp), notes)
            model = onnx.load(str(path))
            notes["metadata_props"] = _add_metadata(model, request)
            onnx.checker.check_model(model, full_check=True)
            onnx.save(model, str(path))
            return ExportResult("model.onnx", "NCHW", "input", "logits", notes=notes, int8=int8)
        _export_fp32(request, path)
        model = onnx.load(str(path))
        if request.precision == "fp16":
            model = _to_fp16(model)
            notes["fp16"] = "weights and compute in float16, float32 input and output (cast at the edges)"
        notes["metadata_props"] = _add_metadata(model, request)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(path))
        return ExportResult("model.onnx", "NCHW", "input", "logits", notes=notes)


def _add_metadata(model, request: ConvertRequest) -> list[str]:
    """The app contract as the model's metadata_props (string values; lists and numbers as
    JSON), which ONNX Runtime exposes as session.get_modelmeta().custom_metadata_map; and the
    description as the model's doc_string. Returns the keys written."""
    import json

    import onnx

    dims = model.graph.output[0].type.tensor_type.shape.dim
    contract = app_contract(request, "NCHW", "float32", int(dims[-1].dim_value))
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in contract.items()}
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in keep}, **props})
    if request.app_info.get("description"):
        model.doc_string = request.app_info["description"]
    return sorted(props)


def _export_fp32(request: ConvertRequest, path: Path) -> None:
    x = torch.from_numpy(request.sample_inputs[:1]).repeat(request.batch, 1, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(request.model.eval(), (x,), dynamo=True, opset_version=OPSET,
                                    input_names=["input"], output_names=["logits"],
                                    external_data=False, verbose=False)
        program.save(str(path))


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


# ----------------------------------------------------------------------------------- INT8

class _Batches:
    """onnxruntime CalibrationDataReader over the calibration images, `batch` at a time (the
    export's static batch); a last partial batch is completed with images from the start."""

    def __init__(self, inputs: np.ndarray, batch: int, input_name: str):
        n = len(inputs)
        count = -(-n // batch)
        idx = np.arange(count * batch) % n
        self._items = [np.ascontiguousarray(inputs[idx[i * batch:(i + 1) * batch]]) for i in range(count)]
        self._name = input_name
        self._pos = 0

    def get_next(self):
        if self._pos >= len(self._items):
            return None
        self._pos += 1
        return {self._name: self._items[self._pos - 1]}

    def __len__(self) -> int:
        return len(self._items)

    def rewind(self) -> None:
        self._pos = 0


def _scopes(node) -> list[str]:
    """Torch module path of an exported node, outermost first, from the dynamo exporter's
    metadata: pkg.torch.onnx.name_scopes ("['', 'stages.1', 'stages.1.act', 'conv2d_5']",
    the last entry the op itself) or else namespace (": ...VanillaNet/stages.1: ...Block/...")."""
    meta = {p.key: p.value for p in node.metadata_props}
    if "pkg.torch.onnx.name_scopes" in meta:
        try:
            scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
            return [s for s in scopes[:-1] if s]
        except (ValueError, SyntaxError):
            pass
    if "namespace" in meta:
        parts = [p.split(":")[0].strip() for p in meta["namespace"].split("/")]
        return [p for p in parts[:-1] if p]
    return []


def map_layers_to_nodes(model) -> dict[str, list[str]]:
    """Torch module name (calibration/layers.py) -> the ONNX nodes computing that layer.

    A layer is the innermost torch module a Conv was exported from; its nodes are every Conv
    and Relu exported from that same module (stages.i.act -> its Relu and depthwise Conv;
    stages.i.conv -> its Conv). Without export metadata a Conv falls back to its weight's
    initializer name, which the exporter keeps as the parameter name ("stages.1.conv.weight").
    """
    initializers = {i.name for i in model.graph.initializer}
    owner: dict[int, str] = {}
    for i, node in enumerate(model.graph.node):
        scopes = _scopes(node)
        if scopes:
            owner[i] = scopes[-1]
        elif node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in initializers \
                and node.input[1].endswith(".weight"):
            owner[i] = node.input[1][: -len(".weight")]
    layers = {owner[i] for i, n in enumerate(model.graph.node) if n.op_type == "Conv" and i in owner}
    out: dict[str, list[str]] = {}
    for i, node in enumerate(model.graph.node):
        if owner.get(i) in layers and node.op_type in _LAYER_OPS:
            if not node.name:
                raise ConversionError(f"an ONNX {node.op_type} node of {owner[i]} has no name; "
                                      "nodes_to_exclude needs names")
            out.setdefault(owner[i], []).append(node.name)
    return out


def _exclusions(request: ConvertRequest, model) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    from ..calibration.layers import select_layers

    layer_nodes = map_layers_to_nodes(model)   # from the exporter's pkg.torch.onnx.name_scopes
    return layer_nodes, select_layers(request.model, request.calibration.excluded_layers,
                                      layer_nodes, "ONNX")


def _quantize(request: ConvertRequest, fp32_path: Path, out: Path, tmp: Path, notes: dict) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    OnnxConverter.check_int8_request(request.calibration)
    cal = request.calibration
    fp32 = onnx.load(str(fp32_path))
    layer_nodes, keep_float = _exclusions(request, fp32)
    exclude = [name for nodes in keep_float.values() for name in nodes]

    # Shape inference only (+ the marker quantize_static looks for): ORT's optimizer pass would
    # rename nodes, and ORT optimizes the quantized model at load anyway.
    pre_path = tmp / "pre.onnx"
    with _quiet():
        quant_pre_process(str(fp32_path), str(pre_path), skip_optimization=True)

    method = getattr(CalibrationMethod, _ORT_METHODS[cal.method])
    reader = _Batches(cal.inputs, request.batch, fp32.graph.input[0].name)
    extra: dict = {}
    calibration_note: dict = {"ort_method": f"CalibrationMethod.{method.name}", "samples": int(len(cal.inputs)),
                              "reader_batch": request.batch}
    cache = None
    if cal.method == "percentile":
        extra["CalibPercentile"] = float(cal.percentile)
        calibration_note["percentile"] = float(cal.percentile)
        calibration_note["percentile_rule"] = ("ORT PercentileCalibrater default (symmetric): rmax = the "
                                               "p-th percentile of |x| over all calibration values, "
                                               "range [-rmax, rmax] clipped to the observed [min, max]")
    with _quiet():
        if cal.method == "entropy":
            cache = tmp / "entropy_ranges.json"
            _entropy_ranges(pre_path, reader, tmp, cache)
            reader.rewind()
            calibration_note.update({"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS,
                                     "ranges": "ORT EntropyCalibrater (KL) via create_calibrator, handed to "
                                               "quantize_static as its calibration cache"})
        # Activations QUInt8, weights QInt8 (U8S8), reduce_range=False: ORT's guidance for x86-64.
        # MLAS's x86 integer GEMM/conv kernels are u8 x s8 (VNNI vpdpbusd, AVX2 vpmaddubsw), and
        # on x86 ORT rewrites int8 activation Q/DQ pairs to uint8 at load anyway (its
        # QDQS8ToU8Transformer), so S8 buys nothing there; most quantized tensors here follow
        # a ReLU and are non-negative, which asymmetric u8 covers with all 256 levels. On the
        # digits net S8S8 gave the same ranges/accuracy and no speed gain. reduce_range (7-bit
        # weights) is for pre-VNNI CPUs whose vpmaddubsw can saturate; this CPU has VNNI.
        quantize_static(
            str(pre_path), str(out), None if cache else reader,
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude, calibrate_method=method, extra_options=extra,
            calibration_cache_path=str(cache) if cache else None)

    quantized = onnx.load(str(out))
    counts = count_int8(quantized)
    runtime = _ort_fused_convs(out, tmp)
    counts["runtime_qlinearconv"] = runtime
    float_convs = set(counts.pop("float_convs"))
    convs = {n.name for n in quantized.graph.node if n.op_type == "Conv"}
    leaked = [layer for layer, nodes in keep_float.items()
              if any(n in convs and n not in float_convs for n in nodes)]
    if leaked:
        raise ConversionError(f"layers asked to stay float were quantized: {', '.join(leaked)}")
    counts["kept_float"] = keep_float
    counts["float_conv_nodes"] = sorted(float_convs)
    counts["how"] = ("QDQ graph: a Conv is int8 when both its input and its weight come from "
                     "DequantizeLinear; runtime_qlinearconv = QLinearConv nodes in ONNX Runtime's "
                     "CPU graph after its level-2 (extended) optimizations fuse DQ->Conv->Q")
    notes["int8"] = {
        "format": "QDQ (QuantizeLinear/DequantizeLinear), float32 input and output",
        "weights": "QInt8 symmetric, per output channel",
        "activations": "QUInt8 asymmetric, per tensor (U8S8: ORT's choice for x86-64)",
        "reduce_range": False,
        "calibration": calibration_note,
        "nodes_to_exclude": exclude,
        "layer_to_nodes": layer_nodes,
    }
    return counts


def _entropy_ranges(model_path: Path, reader, tmp: Path, cache: Path) -> None:
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    calibrator = create_calibrator(
        str(model_path), sorted(set(QDQRegistry) | set(QLinearOpsRegistry)),
        augmented_model_path=str(tmp / "augmented.onnx"), calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS})
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)
    del calibrator


def count_int8(model) -> dict:
    """Convs whose input and weight both come from DequantizeLinear, and the Q/DQ nodes."""
    producer = {o: n for n in model.graph.node for o in n.output}

    def from_dq(name: str) -> bool:
        p = producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    int8 = [n for n in convs if len(n.input) > 1 and from_dq(n.input[0]) and from_dq(n.input[1])]
    ops = [n.op_type for n in model.graph.node]
    return {"conv_total": len(convs), "conv_int8": len(int8),
            "quantize_nodes": ops.count("QuantizeLinear"),
            "dequantize_nodes": ops.count("DequantizeLinear"),
            "fraction_conv_int8": round(len(int8) / len(convs), 4) if convs else 0.0,
            "float_convs": [n.name for n in convs if n not in int8]}


def _ort_fused_convs(path: Path, tmp: Path) -> int:
    """QLinearConv nodes in the graph ONNX Runtime's CPU provider really runs."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp / "ort_optimized.onnx")
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sum(n.op_type == "QLinearConv" for n in onnx.load(opts.optimized_model_filepath).graph.node)


def _quiet():
    """onnxruntime.quantization prints progress and logs advice on the root logger."""
    return quiet_output("", logging.ERROR, stderr=False)
