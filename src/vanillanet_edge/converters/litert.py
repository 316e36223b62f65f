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
import copy
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConversionError
from ..model.adapool import FixedAdaptiveMaxPool2d, adaptive_windows
from ..model.layers import Activation, Block
from .base import Converter, ConvertRequest, ExportResult, package_versions, quiet_output

ARTIFACT = "model.tflite"
INPUT_KEY = "input"      # signature input name (the interpreter calls the tensor serving_default_input)
OUTPUT_KEY = "logits"    # signature output name
MAX_RUNS_PER_AXIS = 4    # beyond this an adaptive pool keeps its gather form (still exact)
# int8 calibration method -> torchao observer for activations (weights: PerChannelMinMaxObserver).
# torchao has no percentile observer, so "percentile" is not offered.
INT8_OBSERVERS = {"minmax": "MinMaxObserver", "mse": "HistogramObserver"}
ACT_EPS = 2 ** -12       # litert-torch's own get_symmetric_quantization_config uses this eps


class LiteRtConverter(Converter):
    target = "tflite"
    extra = "tflite"
    runtime = "litert"
    modules = ("litert_torch", "ai_edge_litert")
    precisions = ("fp32", "fp16", "int8")
    int8_methods = tuple(INT8_OBSERVERS)
    int8_methods_note = "torchao has no percentile observer"
    excludes_layers = True
    description = ("LiteRT flatbuffer (.tflite) via litert-torch, NHWC float32 I/O (int8: PT2E static, "
                   "int8 I/O), run with the LiteRT interpreter")

    def library_versions(self) -> dict[str, str]:
        return package_versions("litert-torch", "litert-converter", "ai-edge-litert", "ai-edge-quantizer")

    def verify_settings(self, request: ConvertRequest) -> dict:
        # ai_edge_litert runs on 1 thread unless told otherwise; verification is 32 images.
        return {"threads": max(1, min(4, os.cpu_count() or 1))}

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        import litert_torch

        if request.precision not in _PRECISION_PATHS:
            raise ConversionError(f"tflite has no {request.precision} path",
                                  hint=f"tflite supports: {', '.join(self.precisions)}")
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

        info = inspect_tflite(path)
        _check_io(info, request, io_dtype=plan.io_dtype)
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
            notes["input_quantization"] = _quantization_note(inp, "real = scale * (q - zero_point); "
                                                             "feed q = round(x / scale) + zero_point, "
                                                             "clipped to [-128, 127]")
            notes["output_quantization"] = _quantization_note(out, "logits = scale * (q - zero_point)")
        notes.update({
            "converter": f"litert_torch.convert (litert-torch {_version('litert-torch')})",
            "rewrites": rewrites,
            "signature": {"key": info["signature_key"], "input": INPUT_KEY, "output": OUTPUT_KEY},
            "op_counts": info["op_counts"],
            "transpose_ops": info["op_counts"].get("TRANSPOSE", 0),
            "input_transposes": info["input_transposes"],
            "input_readers": info["input_readers"],
            "constant_dtypes": info["constant_dtypes"],
        })
        inp, out = info["inputs"][0], info["outputs"][0]
        return ExportResult(ARTIFACT, "NHWC", inp["name"], out["name"], io_dtype=plan.io_dtype, notes=notes,
                            int8=int8)


# ---------------------------------------------------------------------------------------------
# Precision paths: (NHWC module, sample input, request) -> what to convert and how


@dataclass
class _Plan:
    module: nn.Module                       # what litert_torch.convert gets
    convert_kwargs: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    io_dtype: str = "float32"
    strict_qdq: bool = False                # convert in the converter's strict QDQ mode


def _fp32_path(module: nn.Module, x_nhwc: torch.Tensor, request: ConvertRequest) -> _Plan:
    return _Plan(module)


def _fp16_path(module: nn.Module, x_nhwc: torch.Tensor, request: ConvertRequest) -> _Plan:
    from litert_torch.generative.quantize import quant_recipes
    notes = {"fp16": "weights stored as float16 (litert-torch full_fp16_recipe -> ai-edge-quantizer "
                     "FLOAT_CASTING, weight-only); DEQUANTIZE ops feed float32 compute; float32 "
                     "input and output"}
    return _Plan(module, {"quant_config": quant_recipes.full_fp16_recipe()}, notes)


def _int8_pt2e_path(module: nn.Module, x_nhwc: torch.Tensor, request: ConvertRequest) -> _Plan:
    """PT2E static int8 of the NHWC module: export -> prepare -> calibrate (NHWC) -> convert."""
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    LiteRtConverter.check_int8_request(request.calibration)
    cal = request.calibration
    keep = _kept_layers(request)
    # layer "stages.1.act" is module "net.wrapped.stages.1.act" inside NhwcInput
    prefix = next(name for name, m in module.named_modules() if m is module.net.wrapped)
    quantizer = int8_quantizer(cal.method, [f"{prefix}.{layer}" for layer in keep])

    with torch.no_grad():
        gm = torch.export.export(module, (), {INPUT_KEY: x_nhwc}).module()
        gm = quantize_pt2e.prepare_pt2e(gm, quantizer)
        for chunk in _calibration_batches(cal.inputs, request.batch):
            gm(**{INPUT_KEY: chunk})
        gm = quantize_pt2e.convert_pt2e(gm, fold_quantize=False)
    # The graph was exported from the eval-mode module; torchao's eval for exported graphs
    # (dropout / batch-norm ops) is then a no-op, and the flag is what litert_torch.convert
    # checks before warning "converted in training mode" (GraphModule.eval() is not allowed).
    move_exported_model_to_eval(gm)
    gm.training = False

    notes = {"int8": {
        "method": f"PT2E static (torchao prepare_pt2e/convert_pt2e, litert-torch PT2EQuantizer), "
                  f"{'strict' if keep else 'default'} STATIC QDQ conversion",
        "weights": "int8 symmetric per output channel (PerChannelMinMaxObserver, [-127, 127])",
        "activations": f"int8 per-tensor affine, {INT8_OBSERVERS[cal.method]} ({cal.method})",
        "io": "int8 input and output (see input_quantization / output_quantization)",
        "calibration": {"samples": int(len(cal.inputs)), "batch": request.batch, "layout": "NHWC",
                        "observer": INT8_OBSERVERS[cal.method]},
        "kept_float": list(keep),
    }}
    return _Plan(gm, {"quant_config": QuantConfig(pt2e_quantizer=quantizer)}, notes, io_dtype="int8",
                 strict_qdq=bool(keep))


def _kept_layers(request: ConvertRequest) -> list[str]:
    from ..calibration.layers import check_layer_names

    return check_layer_names(request.model, request.calibration.excluded_layers)   # forward order


def _calibration_batches(inputs: np.ndarray, batch: int):
    """NHWC float32 tensors of exactly `batch` images (the exported graph's batch); the last
    one is filled up with the first images again (min/max unchanged, deterministic)."""
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).permute(0, 2, 3, 1).contiguous()
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        if len(chunk) < batch:
            chunk = torch.cat([chunk, x[:batch - len(chunk)]])
        yield chunk


def int8_quantizer(method: str, keep_paths=()):
    """litert-torch's PT2EQuantizer: per-channel symmetric int8 weights, per-tensor affine int8
    activations observed by `method`'s observer; nodes of modules in `keep_paths` (full module
    paths in the converted module, e.g. "net.wrapped.stem.1") are left unquantized, and the
    graph input and output are quantized whatever is kept (int8 I/O)."""
    import dataclasses

    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e import observer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec

    base = pq.get_symmetric_quantization_config(is_per_channel=True)
    act = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                           is_dynamic=False,
                           observer_or_fake_quant_ctr=getattr(observer, INT8_OBSERVERS[method]).with_args(
                               eps=ACT_EPS))
    config = dataclasses.replace(base, input_activation=act, output_activation=act)
    keep = frozenset(keep_paths)

    def kept(node) -> bool:
        return any(path in keep for path, _ in node.meta.get("nn_module_stack", {}).values())

    def annotated(node) -> QuantizationAnnotation | None:
        a = node.meta.get("quantization_annotation")
        return a if a is not None and a._annotated else None

    def quantize_output(node) -> None:
        a = annotated(node)
        if a is None:
            node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=act, _annotated=True)
        elif a.output_qspec is None:
            a.output_qspec = act

    class _Quantizer(pq.PT2EQuantizer):
        def annotate(self, model):
            if not keep:
                return super().annotate(model)
            # Pre-marked as annotated (with nothing to observe), every annotator skips them.
            for node in model.graph.nodes:
                if node.op == "call_function" and kept(node):
                    node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
            model = super().annotate(model)
            # int8 I/O even when the first / last layer is kept: quantize the output of the
            # input's layout op (the NHWC -> NCHW permute) unless its reader already quantizes
            # it, and the output of the graph's last op.
            for ph in [n for n in model.graph.nodes if n.op == "placeholder"]:
                for first in ph.users:
                    if not any(annotated(u) and first in annotated(u).input_qspec_map for u in first.users):
                        quantize_output(first)
            out = next(n for n in model.graph.nodes if n.op == "output")
            for last in _flat_nodes(out.args):
                quantize_output(last)
            return model

    return _Quantizer().set_global(config)


def _flat_nodes(args) -> list:
    out: list = []
    torch.fx.node.map_arg(args, out.append)
    return out


_PRECISION_PATHS = {"fp32": _fp32_path, "fp16": _fp16_path, "int8": _int8_pt2e_path}


# ---------------------------------------------------------------------------------------------
# Export form: exact rewrites


class NhwcInput(nn.Module):
    """NHWC input named `input`, (batch, classes) output named `logits`.

    Uses litert-torch's own channel-last wrapper: its NHWC->NCHW permute is cancelled by the
    converter's layout pass, so no TRANSPOSE reaches the flatbuffer.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        import litert_torch
        self.net = litert_torch.to_channel_last_io(model, args=[0])

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 - the signature name
        return {OUTPUT_KEY: self.net(input)}


class DepthwiseOnly(nn.Module):
    """An Activation without its leading ReLU (moved before the pool): the depthwise conv (+BN)."""

    def __init__(self, act: Activation):
        super().__init__()
        self.weight = act.weight
        self.bias = act.bias
        self.padding = act.act_num
        self.groups = act.dim
        self.bn = None if act.deploy else act.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, padding=self.padding, groups=self.groups)
        return x if self.bn is None else self.bn(x)


class StridedAdaptiveMaxPool2d(nn.Module):
    """AdaptiveMaxPool2d for one input size as strided MaxPool2d ops on slices (exact).

    Along each axis, consecutive output cells whose windows have the same length and whose
    starts step by the same amount form a run: one max pool (kernel = length, stride = step)
    over the slice they cover. Every (row run, column run) pair is one pool; the blocks are
    concatenated back in order. 75 -> 38 and 19 -> 10 give 3 runs per axis.
    """

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        self.in_hw, self.out_hw = tuple(in_hw), tuple(out_hw)
        self.row_runs = window_runs(in_hw[0], out_hw[0])
        self.col_runs = window_runs(in_hw[1], out_hw[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.in_hw:
            raise ValueError(f"this pool was built for {self.in_hw} inputs, got {tuple(x.shape[2:])}")
        rows = []
        for r_len, r_start, r_stop, r_step in self.row_runs:
            band = x[:, :, r_start:r_stop]
            blocks = [F.max_pool2d(band[:, :, :, c_start:c_stop], (r_len, c_len), stride=(r_step, c_step))
                      for c_len, c_start, c_stop, c_step in self.col_runs]
            rows.append(blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=3))
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=2)


def window_runs(n: int, m: int) -> list[tuple[int, int, int, int]]:
    """Adaptive windows of n -> m grouped into (length, start, stop, stride) pooling runs."""
    windows = adaptive_windows(n, m)
    runs, i = [], 0
    while i < m:
        start, end = windows[i]
        length, j, step = end - start, i + 1, None
        while j < m and windows[j][1] - windows[j][0] == length:
            d = windows[j][0] - windows[j - 1][0]
            if d <= 0 or (step is not None and d != step):
                break
            step, j = d, j + 1
        count = j - i
        step = step or length
        runs.append((length, start, start + (count - 1) * step + length, step))
        i = j
    return runs


_MAX_POOLS = (nn.MaxPool2d, nn.AdaptiveMaxPool2d, FixedAdaptiveMaxPool2d, StridedAdaptiveMaxPool2d)


@torch.no_grad()
def relu_before_maxpool(model: nn.Module) -> nn.Module:
    """A copy where every Block's ReLU runs before its max pool instead of after it.

    conv -> pool -> Activation(ReLU -> depthwise) becomes conv -> (ReLU -> pool) -> depthwise.
    Exact: max pooling only selects values and ReLU is monotone, so the pool sees and picks
    the same numbers. Blocks without a pool (stride 1) are left alone.
    """
    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if not isinstance(block, Block) or not isinstance(block.pool, _MAX_POOLS):
            continue
        if not isinstance(block.act, Activation):
            continue
        block.pool = nn.Sequential(nn.ReLU(), block.pool)
        block.act = DepthwiseOnly(block.act)
    return model


@torch.no_grad()
def layout_friendly_adaptive_pools(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy whose gather-based adaptive pools are strided max pools; and how many changed."""
    model = copy.deepcopy(model).eval()
    replaced = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, FixedAdaptiveMaxPool2d):
            continue
        new = StridedAdaptiveMaxPool2d(module.in_hw, module.out_hw)
        if max(len(new.row_runs), len(new.col_runs)) > MAX_RUNS_PER_AXIS:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
        replaced += 1
    return model, replaced


@torch.no_grad()
def export_form(model: nn.Module, sample: np.ndarray) -> tuple[nn.Module, list[str]]:
    """The model LiteRT converts, with the rewrites applied, checked bit-exact on `sample`."""
    out, replaced = layout_friendly_adaptive_pools(model)
    rewrites = [f"{replaced} adaptive max pool(s) as strided max pools"] if replaced else []
    out = relu_before_maxpool(out)
    rewrites.append("ReLU before MaxPool")
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    if not torch.equal(model.eval()(x), out(x)):
        raise ConversionError("the LiteRT export rewrites changed the model's outputs (they must be exact)",
                              hint="report this with the checkpoint")
    return out, rewrites


# ---------------------------------------------------------------------------------------------
# Reading the flatbuffer


def inspect_tflite(path: str | Path) -> dict:
    """Op counts by type, I/O tensors and what reads the input, from the flatbuffer itself."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        custom = oc.CustomCode()
        codes.append(f"CUSTOM:{custom.decode()}" if custom else names.get(code, str(code)))
    graph = model.Subgraphs(0)

    def dtype(i):
        return types.get(graph.Tensors(i).Type(), str(graph.Tensors(i).Type())).lower()

    def tensor(i):
        t = graph.Tensors(i)
        out = {"index": int(i), "name": t.Name().decode(), "shape": [int(d) for d in t.ShapeAsNumpy()],
               "dtype": dtype(i)}
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            out["scale"] = [float(v) for v in q.ScaleAsNumpy()]
            out["zero_point"] = [int(v) for v in q.ZeroPointAsNumpy()]
        return out

    ops = [(codes[graph.Operators(k).OpcodeIndex()], list(graph.Operators(k).InputsAsNumpy()))
           for k in range(graph.OperatorsLength())]
    # per op, the element types of its input / output tensors (None: an omitted optional input)
    op_types = [{"op": op, "inputs": [dtype(i) if i >= 0 else None for i in ins],
                 "outputs": [dtype(i) for i in graph.Operators(k).OutputsAsNumpy()]}
                for k, (op, ins) in enumerate(ops)]
    inputs = [tensor(i) for i in graph.InputsAsNumpy()]
    outputs = [tensor(i) for i in graph.OutputsAsNumpy()]
    first_input = inputs[0]["index"] if inputs else -1
    readers = [op for op, ins in ops if first_input in ins]
    sig = model.SignatureDefs(0) if model.SignatureDefsLength() else None
    constants = Counter()
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        if t.Buffer() and model.Buffers(t.Buffer()).DataLength() + model.Buffers(t.Buffer()).Size() > 0:
            constants[types.get(t.Type(), str(t.Type())).lower()] += 1
    return {
        "op_counts": dict(sorted(Counter(op for op, _ in ops).items())),
        "ops": op_types,
        "inputs": inputs,
        "outputs": outputs,
        "input_readers": readers,
        "input_transposes": sum(op == "TRANSPOSE" for op in readers),
        "constant_dtypes": dict(sorted(constants.items())),
        "signature_key": sig.SignatureKey().decode() if sig else None,
    }


CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
_FLOAT_TYPES = ("float32", "float16", "float64", "bfloat16")


def int8_summary(info: dict, request: ConvertRequest) -> dict:
    """How integer the flatbuffer really is, from its tensors' element types; checks that every
    layer asked to stay float did (ConversionError otherwise)."""
    from ..calibration.layers import quantizable_layers

    ops = info["ops"]
    convs = [op for op in ops if op["op"] in CONV_OPS]

    def conv_int8(op) -> bool:
        return len(op["inputs"]) > 1 and op["inputs"][0] == "int8" and op["inputs"][1] == "int8"

    def has_float(op) -> bool:
        return any(t in _FLOAT_TYPES for t in op["inputs"] + op["outputs"] if t)

    n_int8 = sum(conv_int8(op) for op in convs)
    layers = quantizable_layers(request.model)
    # One conv op per quantizable layer, in forward order (Activation = one depthwise conv).
    per_layer = ({name: "int8" if conv_int8(op) else (op["inputs"][1] or "float32")
                  for name, op in zip(layers, convs)} if len(layers) == len(convs) else None)
    kept = [n for n in layers if n in set(request.calibration.excluded_layers)] if request.calibration else []
    if kept and per_layer is None:
        raise ConversionError(f"cannot check that {', '.join(kept)} stayed float: the flatbuffer has "
                              f"{len(convs)} conv ops for {len(layers)} quantizable layers")
    leaked = [n for n in kept if per_layer[n] == "int8"]
    if leaked:
        raise ConversionError(f"layers asked to stay float were quantized: {', '.join(leaked)}",
                              hint="report this with the litert-torch version")
    return {
        "conv_total": len(convs),
        "conv_int8": n_int8,
        "int8_ops": sum(not has_float(op) and "int8" in op["inputs"] + op["outputs"] for op in ops),
        "float_ops": sum(has_float(op) for op in ops),
        "ops_total": len(ops),
        "fraction_conv_int8": round(n_int8 / len(convs), 4) if convs else 0.0,
        "layers": per_layer,
        "kept_float": kept,
        "io": {"input": info["inputs"][0]["dtype"], "output": info["outputs"][0]["dtype"]},
        "how": ("read from model.tflite's tensor types: a CONV_2D / DEPTHWISE_CONV_2D is int8 when its "
                "input and weight tensors are int8 (bias int32); int8_ops = ops with an int8 tensor and "
                "no floating-point one; float_ops = ops with any floating-point tensor (QUANTIZE / "
                "DEQUANTIZE around float layers count as float); layers = quantizable torch layers "
                "matched to the conv ops in forward order"),
    }


def _quantization_note(t: dict, meaning: str) -> dict:
    if len(t.get("scale", ())) != 1:
        raise ConversionError(f"tensor {t['name']} is {t['dtype']} without one scale / zero point")
    return {"dtype": t["dtype"], "scale": t["scale"][0], "zero_point": t["zero_point"][0], "meaning": meaning}


@contextlib.contextmanager
def _strict_qdq_mode():
    """Run litert_torch.convert with the converter's `strict_qdq_mode` on.

    In its default STATIC mode the converter also quantizes float ops that sit between a
    DEQUANTIZE and a QUANTIZE (picking int8 weights itself); strict mode converts exactly the
    PT2E graph's Q/DQ pairs. litert-torch 0.10 builds its ConvertToTFLConfig inside
    `exported_programs_to_flatbuffer` without a way to set that field, so for this call the
    module's `converter_api_ext` is a proxy whose ConvertToTFLConfig() has it set.
    """
    from litert_torch._convert import litert_converter as lc

    real = getattr(lc, "converter_api_ext", None)
    if real is None or not hasattr(real.ConvertToTFLConfig(), "strict_qdq_mode"):
        raise ConversionError("this litert-torch cannot keep chosen layers in float (its converter config "
                              "has no strict_qdq_mode)",
                              hint="convert without --max-drop / excluded layers, or use litert-torch 0.10")

    class _StrictExt:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def ConvertToTFLConfig():  # noqa: N802 - the name litert-torch calls
            config = real.ConvertToTFLConfig()
            config.strict_qdq_mode = True
            return config

    lc.converter_api_ext = _StrictExt()
    try:
        yield
    finally:
        lc.converter_api_ext = real


def integer_io(path: str | Path) -> None:
    """Make a float-I/O quantized flatbuffer int8-I/O in place (what TFLite's
    modify_model_interface does): drop the QUANTIZE reading the input and the DEQUANTIZE writing
    the output, and give their int8 tensors the I/O names and the signature entries."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        raise ConversionError("the flatbuffer keeps its weights outside the table (buffer offsets); "
                              "cannot rewrite its input/output types")
    graph = model.subgraphs[0]
    code = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]
    ops = list(graph.operators)
    old_in, old_out = int(graph.inputs[0]), int(graph.outputs[0])
    firsts = [op for op in ops if old_in in list(op.inputs)]
    lasts = [op for op in ops if old_out in list(op.outputs)]
    if (len(graph.inputs) != 1 or len(graph.outputs) != 1 or len(firsts) != 1 or len(lasts) != 1
            or code[firsts[0].opcodeIndex] != schema.BuiltinOperator.QUANTIZE
            or code[lasts[0].opcodeIndex] != schema.BuiltinOperator.DEQUANTIZE):
        raise ConversionError("expected QUANTIZE after the float input and DEQUANTIZE before the float "
                              "output of the strict-mode flatbuffer")
    new_in, new_out = int(firsts[0].outputs[0]), int(lasts[0].inputs[0])
    graph.operators = [op for op in ops if op is not firsts[0] and op is not lasts[0]]
    graph.tensors[new_in].name = graph.tensors[old_in].name
    graph.tensors[new_out].name = graph.tensors[old_out].name

    # drop the two float tensors, renumbering every reference
    gone = {old_in, old_out}
    remap = {}
    for i in range(len(graph.tensors)):
        if i not in gone:
            remap[i] = len(remap)
    remap.update({old_in: remap[new_in], old_out: remap[new_out], -1: -1})
    graph.tensors = [t for i, t in enumerate(graph.tensors) if i not in gone]
    for op in graph.operators:
        op.inputs = [remap[int(i)] for i in op.inputs]
        op.outputs = [remap[int(i)] for i in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = [remap[int(i)] for i in op.intermediates]
    graph.inputs = [remap[old_in]]
    graph.outputs = [remap[old_out]]
    for sig in model.signatureDefs or []:
        for entry in list(sig.inputs or []) + list(sig.outputs or []):
            entry.tensorIndex = remap[int(entry.tensorIndex)]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def _check_io(info: dict, request: ConvertRequest, io_dtype: str) -> None:
    b, s = request.batch, request.input_size
    if len(info["inputs"]) != 1 or len(info["outputs"]) != 1:
        raise ConversionError(f"expected one input and one output, got {len(info['inputs'])} and "
                              f"{len(info['outputs'])}")
    inp, out = info["inputs"][0], info["outputs"][0]
    if inp["shape"] != [b, s, s, 3] or inp["dtype"] != io_dtype:
        raise ConversionError(f"the artifact's input is {inp['dtype']} {inp['shape']}, expected {io_dtype} "
                              f"[{b}, {s}, {s}, 3] (NHWC)")
    if out["dtype"] != io_dtype or len(out["shape"]) != 2 or out["shape"][0] != b:
        raise ConversionError(f"the artifact's output is {out['dtype']} {out['shape']}, expected {io_dtype} "
                              f"[{b}, classes]")


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
