"""How each precision is exported to LiteRT: fp32 and fp16 plans, and INT8 through PT2E static
quantization (torchao observers, kept-in-float layers, strict QDQ conversion)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ConversionError
from .base import ConvertRequest
from .litert_export import INPUT_KEY

# int8 calibration method -> torchao observer for activations (weights: PerChannelMinMaxObserver).
# torchao has no percentile observer, so "percentile" is not offered.
INT8_OBSERVERS = {"minmax": "MinMaxObserver", "mse": "HistogramObserver"}
ACT_EPS = 2 ** -12       # litert-torch's own get_symmetric_quantization_config uses this eps


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

    cal = request.calibration
    keep = _kept_layers(request)
    # layer "stages.1.act" is module "net.wrapped.stages.1.act" inside NhwcInput
    prefix = next(name for name, m in module.named_modules() if m is module.net.wrapped)
    quantizer = int8_quantizer(cal.method, [f"{prefix}.{layer}" for layer in keep], _weight_eps(request))

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


def _weight_eps(request: ConvertRequest) -> float | None:
    """Raw-pixel input: the stem's weights carry the folded 1/(255 std) (about 1/57), so their
    per-channel scales max|w|/127 fall below litert-torch's weight-observer floor (eps 2^-12)
    and were clamped to it: a coarse stem (rel err 0.071 vs 0.020 normalized on the digits
    net). The floor scaled by the same factor keeps the unfolded net's resolution; None keeps
    litert-torch's own config (normalized input: unchanged artifacts)."""
    if request.pixels != "raw":
        return None
    return ACT_EPS * min(1.0 / (255.0 * s) for s in request.preprocessing.std)


def int8_quantizer(method: str, keep_paths=(), weight_eps: float | None = None):
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
    if weight_eps is not None:
        config = dataclasses.replace(config, weight=dataclasses.replace(
            base.weight, observer_or_fake_quant_ctr=observer.PerChannelMinMaxObserver.with_args(eps=weight_eps)))
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
                return _annotate_adds(super().annotate(model), act, annotated, kept)
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
            return _annotate_adds(model, act, annotated, kept)

    return _Quantizer().set_global(config)


_RELUS = ("aten.relu.default", "aten.relu_.default")


def _annotate_adds(model, act, annotated, kept):
    """Quantize the adds of two activations (the split depthwise pieces' sums), with a ReLU right
    after one fused into it, as litert-torch's own "add"/"add_relu" annotators mean to: they find
    adds by `source_fn_stack`, which torch.export no longer records (torch 2.14), so they match
    nothing. ResNet's residual adds came out int8 anyway (the converter's STATIC mode quantizes a
    float op between a DEQUANTIZE and a QUANTIZE; its artifacts are unchanged by this), but the
    split pieces' adds stayed float, with a DEQUANTIZE per piece. An add with a constant
    operand (the prepended normalization) is left as it was."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in model.graph.nodes:
        if node.op != "call_function" or str(node.target) != "aten.add.Tensor" or annotated(node) or kept(node):
            continue
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else None
        if not all(isinstance(x, torch.fx.Node) and x.op == "call_function" for x in (a, b)):
            continue
        users = list(node.users)
        relu = users[0] if (len(users) == 1 and str(users[0].target) in _RELUS
                            and not annotated(users[0]) and not kept(users[0])) else None
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={a: act, b: act}, output_qspec=None if relu is not None else act, _annotated=True)
        if relu is not None:
            relu.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=act, _annotated=True)
    return model


def _flat_nodes(args) -> list:
    out: list = []
    torch.fx.node.map_arg(args, out.append)
    return out


_PRECISION_PATHS = {"fp32": _fp32_path, "fp16": _fp16_path, "int8": _int8_pt2e_path}


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
