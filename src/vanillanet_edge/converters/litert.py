"""LiteRT (.tflite): litert-torch, NHWC float32 I/O, verified in the LiteRT interpreter.

Route: fused model -> exact export-form rewrites (this module) -> NHWC wrapper
(`litert_torch.to_channel_last_io`, whose input permute the converter's layout pass cancels
against the first conv, so the graph starts with CONV_2D on the NHWC input) ->
`litert_torch.convert` -> `model.tflite`.

Precisions (one function each in `_PRECISION_PATHS`; int8 is added there later):
  fp32: plain conversion.
  fp16: litert-torch's supported float16 route, `quant_recipes.full_fp16_recipe()`: the
        converter hands the flatbuffer to ai-edge-quantizer (FLOAT_CASTING, weight-only),
        which stores weights as float16 and inserts DEQUANTIZE ops feeding float32 compute;
        input and output stay float32.
  int8 (later): PT2E static quantization. It needs `relu_before_maxpool` below: the LiteRT
        converter fuses a ReLU that follows a MaxPool into the pool, and PT2E's same-scale
        constraint on MaxPool then fails; ReLU first is mathematically identical.

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
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConversionError
from ..model.adapool import FixedAdaptiveMaxPool2d, adaptive_windows
from ..model.layers import Activation, Block
from .base import Converter, ConvertRequest, ExportResult, package_versions

ARTIFACT = "model.tflite"
INPUT_KEY = "input"      # signature input name (the interpreter calls the tensor serving_default_input)
OUTPUT_KEY = "logits"    # signature output name
MAX_RUNS_PER_AXIS = 4    # beyond this an adaptive pool keeps its gather form (still exact)


class LiteRtConverter(Converter):
    target = "tflite"
    extra = "tflite"
    runtime = "litert"
    modules = ("litert_torch", "ai_edge_litert")
    precisions = ("fp32", "fp16")
    description = "LiteRT flatbuffer (.tflite) via litert-torch, NHWC float32 I/O, run with the LiteRT interpreter"

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
        module, convert_kwargs, notes = _PRECISION_PATHS[request.precision](
            NhwcInput(model).eval(), x_nhwc, request)

        path = folder / ARTIFACT
        with _quiet():
            edge = litert_torch.convert(module, sample_kwargs={INPUT_KEY: x_nhwc}, **convert_kwargs)
            edge.export(str(path))

        info = inspect_tflite(path)
        _check_io(info, request, io_dtype="float32")
        if info["input_transposes"]:
            raise ConversionError(
                f"the converted graph transposes its input ({info['input_transposes']} TRANSPOSE "
                f"op(s) read it): NHWC input did not reach the first conv directly",
                hint="report this with the litert-torch version; the layout pass did not cancel the permute")
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
        return ExportResult(ARTIFACT, "NHWC", inp["name"], out["name"], io_dtype="float32", notes=notes)


# ---------------------------------------------------------------------------------------------
# Precision paths: (NHWC module, sample input, request) -> (module to convert, convert kwargs, notes)


def _fp32_path(module: nn.Module, x_nhwc: torch.Tensor, request: ConvertRequest):
    return module, {}, {}


def _fp16_path(module: nn.Module, x_nhwc: torch.Tensor, request: ConvertRequest):
    from litert_torch.generative.quantize import quant_recipes
    notes = {"fp16": "weights stored as float16 (litert-torch full_fp16_recipe -> ai-edge-quantizer "
                     "FLOAT_CASTING, weight-only); DEQUANTIZE ops feed float32 compute; float32 "
                     "input and output"}
    return module, {"quant_config": quant_recipes.full_fp16_recipe()}, notes


# int8 goes here later as "int8": _int8_pt2e_path. Tried once on vanillanet_5 (width 1/32): on
# the NhwcInput module, torch.export.export(module, (), {"input": x_nhwc}).module() ->
# quantize_pt2e.prepare_pt2e(gm, PT2EQuantizer().set_global(get_symmetric_quantization_config(
# is_per_channel=True))) -> gm(input=...) per calibration image (request.calibration, NHWC) ->
# convert_pt2e(gm, fold_quantize=False) -> litert_torch.convert(gm, sample_kwargs=...,
# quant_config=QuantConfig(pt2e_quantizer=quantizer)) gave all-int8 ops with int8 I/O and no
# TRANSPOSE. Without relu_before_maxpool (applied by export_form) it fails with "'tfl.max_pool_2d'
# op quantization parameters violate the same scale constraint". Its ExportResult must say
# io_dtype="int8" (and _check_io(..., io_dtype="int8")); the runner quantizes at the edges.
_PRECISION_PATHS = {"fp32": _fp32_path, "fp16": _fp16_path}


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

    def tensor(i):
        t = graph.Tensors(i)
        return {"index": int(i), "name": t.Name().decode(), "shape": [int(d) for d in t.ShapeAsNumpy()],
                "dtype": types.get(t.Type(), str(t.Type())).lower()}

    ops = [(codes[graph.Operators(k).OpcodeIndex()], list(graph.Operators(k).InputsAsNumpy()))
           for k in range(graph.OperatorsLength())]
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
        "inputs": inputs,
        "outputs": outputs,
        "input_readers": readers,
        "input_transposes": sum(op == "TRANSPOSE" for op in readers),
        "constant_dtypes": dict(sorted(constants.items())),
        "signature_key": sig.SignatureKey().decode() if sig else None,
    }


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
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _version(dist: str) -> str:
    return package_versions(dist)[dist]
