"""Core ML: coremltools' mlprogram (.mlpackage), iOS 17 / macOS 14 and newer.

Two input forms (ConvertRequest.pixels). "raw", the default here, is what an app drops in:
an RGB image input (ImageType, scale 1, bias 0: the normalization is inside the model), and,
given class names, a classifier (ClassifierConfig: a softmax is appended to the net, so the
outputs are classLabel and a probabilities dictionary), which Xcode's preview and Vision's
VNCoreMLRequest use as they are. "normalized" is the float32 NCHW MultiArray input of the
network itself, with a float32 logits MultiArray output. Either way the model's metadata
carries the request's app_info, and the package's bytes depend only on its content
(coreml_package.py).

On Linux nothing can `predict` a Core ML model; verification runs the saved package with our
numpy MIL interpreter (devices/coreml_mil/). On macOS the runner uses Core ML itself.

INT8 (W8A8): an fp16-compute program (float32 I/O) whose convs read int8 activations
(coremltools' quantize/dequantize pairs) and int8 per-channel symmetric weights
(constexpr_affine_dequantize). fp16 compute is what the Neural Engine runs W8A8 with, and
coremltools 9.0's activation passes need it: insert_suffix_quantize_dequantize_pair builds its
scales from float16 ranges, so on an fp32 program `quantize` fails with "scale has dtype fp16
whereas input has dtype fp32".

Activation ranges are ours (calibration/coreml_stats.py: the float program run by the MIL
interpreter over every calibration image), because coremltools' own calibration needs
`MLModel.predict` (macOS only) and in 9.0 keeps only the last sample's range. The graph
rewriting stays coremltools': see `_quantize_activations_with_stats`.
"""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConversionError
from ..metrics import within
from .base import Converter, ConvertRequest, ExportResult, package_versions, quiet_output
from .coreml_package import save_deterministic, set_app_metadata

# coremltools' activation quantization, as `linear_quantize_activations` runs it in 9.0
# (optimize/coreml/_post_training_quantization.py), in this order.
_ACTIVATION_PASSES = ("compression::insert_prefix_quantize_dequantize_pair",
                      "compression::insert_suffix_quantize_dequantize_pair")
_DEDUP_PASS = "common::dequantize_quantize_pair_elimination"
_CHECKED_COREMLTOOLS = "9.0"
_INT8_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


class CoreMlConverter(Converter):
    target = "coreml"
    extra = "coreml"
    runtime = "coreml"
    modules = ("coremltools",)
    precisions = ("fp32", "fp16", "int8")
    int8_methods = ("minmax", "percentile")
    excludes_layers = True
    description = ("Core ML mlprogram (.mlpackage): RGB image in, classLabel + probabilities out (or NCHW "
                   "float32 in, logits out); verified by a numpy MIL interpreter off macOS")
    # Apps hand Core ML images (Vision, Xcode's preview): the image input is the default form.
    default_pixels = "raw"

    def library_versions(self) -> dict[str, str]:
        return package_versions("coremltools")

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        with quiet_output():   # coremltools draws a progress bar per MIL pass
            if request.precision == "int8":
                return self._export_int8(request, folder)
            return self._export_float(request, folder)

    def _export_float(self, request: ConvertRequest, folder: Path) -> ExportResult:
        io = app_io(request)
        mlmodel = _convert(request, io, fp16=request.precision == "fp16")
        save_deterministic(mlmodel, folder / "model.mlpackage")
        notes = {"minimum_deployment_target": "iOS17",
                 "compute_precision": request.precision, **io.notes}
        return ExportResult("model.mlpackage", "NCHW", io.input_name, io.output_name, notes=notes,
                            input_dtype=io.input_dtype)

    def _export_int8(self, request: ConvertRequest, folder: Path) -> ExportResult:
        import coremltools.optimize as cto

        from ..calibration.coreml_stats import collect_activation_stats
        from ..calibration.layers import select_layers
        from ..devices.coreml_mil import MILProgram

        self.check_int8_request(request.calibration)
        cal = request.calibration
        io = app_io(request)
        float_model = _convert(request, io, fp16=True)
        with tempfile.TemporaryDirectory(prefix="vne-coreml-") as tmp:
            # the float program is calibrated (and mapped) as saved, by the interpreter
            float_path = Path(tmp) / "float.mlpackage"
            float_model.save(str(float_path))
            program = MILProgram.load(float_path)
            layer_ops = map_layers_to_conv_ops(request.model, program, _trace_input(request))
            keep_float = select_layers(request.model, cal.excluded_layers, layer_ops, "Core ML conv")
            stats = collect_activation_stats(program, cal.inputs, cal.method, cal.percentile)
            feeders = _output_quantizers_feeding(program, set(keep_float.values()))
        float_ops = {op: None for op in keep_float.values()}   # None = leave this op alone

        act_quant = cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
        # prefix pass: Q/DQ on the inputs of every conv/pool/linear/add except the float ones
        act_config = cto.coreml.OptimizationConfig(global_config=act_quant, op_name_configs=float_ops)
        # suffix pass: Q/DQ on the output of each quantized pattern, except where that output
        # feeds a layer kept in float (else the float layer would still read int8-rounded values)
        out_config = cto.coreml.OptimizationConfig(
            global_config=act_quant, op_name_configs={**float_ops, **{op: None for op in feeders}})
        # weight_threshold=0: the default (2048) would leave VanillaNet's small convs in fp16
        weight_config = cto.coreml.OptimizationConfig(
            global_config=cto.coreml.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0),
            op_name_configs=dict(float_ops))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a8 = _quantize_activations_with_stats(float_model, act_config, out_config,
                                                  stats.for_coremltools())
            w8a8 = cto.coreml.linear_quantize_weights(a8, weight_config)
        # the graph passes rebuild the model from its description: set the metadata again
        set_app_metadata(w8a8, request.app_info, io.description + " (W8A8)")
        save_deterministic(w8a8, folder / "model.mlpackage")

        final = MILProgram.load(folder / "model.mlpackage")
        int8 = count_int8(final)
        producer = {o.name: op.type for op in final.ops for o in op.outputs}
        leaked = [name for name, op_name in keep_float.items()   # float: no int8 input or weight
                  for conv in final.ops if conv.type == "conv" and conv.name == op_name
                  if {producer.get(str(conv.inputs["x"][0])), producer.get(str(conv.inputs["weight"][0]))}
                  & {"dequantize", *_INT8_WEIGHT_OPS}]
        if leaked:
            raise ConversionError(f"layers asked to stay float were quantized: {', '.join(leaked)}")
        int8["kept_float"] = keep_float
        notes = {"minimum_deployment_target": "iOS17",
                 "compute_precision": "fp16 compute, int8 weights and activations (W8A8)",
                 "weights": "int8 linear_symmetric per output channel (linear_quantize_weights, "
                            "weight_threshold=0)",
                 "activations": {
                     "mode": "linear_symmetric int8 per tensor (coremltools passes "
                             + ", ".join(_ACTIVATION_PASSES + (_DEDUP_PASS,)) + ")",
                     "method": stats.method, "samples": stats.samples,
                     **({"percentile": stats.percentile,
                         "percentile_rule": "two-sided on signed values: rmin = P(100-p), rmax = P(p)"}
                        if stats.method == "percentile" else {}),
                     "calibrated_with": "numpy MIL interpreter on the fp16 program, all samples "
                                        "(coremltools' own calibration needs MLModel.predict)"},
                 "layer_to_op": layer_ops, **io.notes}
        return ExportResult("model.mlpackage", "NCHW", io.input_name, io.output_name, notes=notes, int8=int8,
                            input_dtype=io.input_dtype)


@dataclass
class AppIO:
    """The artifact's inputs and outputs, as app_io chooses them for a request."""

    image: bool                    # ImageType input (raw pixels) rather than a float MultiArray
    classes: list[str] | None      # ClassifierConfig labels, output index order
    input_name: str
    output_name: str               # what the runner reads: logits, or the probabilities dictionary
    description: str
    notes: dict

    @property
    def input_dtype(self) -> str | None:
        """An image input holds 8-bit pixels: the manifest says uint8, so the harness feeds
        whole pixel values (devices/base.to_artifact_pixels) as Core ML would receive them."""
        return "uint8" if self.image else None


LABEL_OUTPUT = "classLabel"
PROBS_OUTPUT = LABEL_OUTPUT + "_probs"   # coremltools names the probabilities dictionary so


def app_io(request: ConvertRequest) -> AppIO:
    if request.pixels not in ("raw", "normalized"):
        raise ConversionError(f"unknown input pixels {request.pixels!r}", hint="raw or normalized")
    if request.pixels == "normalized":
        return AppIO(False, None, "input", "logits",
                     "VanillaNet classifier: NCHW RGB input, logits output", {})
    if request.batch != 1:
        # Core ML's image inputs and classifier outputs are one image per prediction
        # (coremltools refuses a classify op over a batch)
        raise ConversionError(
            f"a Core ML image input takes one image per prediction; batch {request.batch} was asked for",
            hint="use batch 1 (apps batch through Vision or MLModel's batch API), or --input "
                 "normalized for a batched float MultiArray model")
    image_note = {"input_type": "image: RGB, 8 bits per channel, the model's size (ImageType scale 1, "
                                "bias 0: the normalization is inside the model)"}
    if not request.class_names:
        return AppIO(True, None, "image", "logits",
                     "VanillaNet classifier: RGB image input, logits output",
                     {**image_note, "output_meaning": "logits"})
    classes = [str(c) for c in request.class_names]
    if len(set(classes)) != len(classes):
        # the probabilities dictionary is keyed by label: two equal labels would share one entry
        raise ConversionError("class names repeat: a Core ML classifier needs distinct labels",
                              hint="rename the duplicate classes, or use --input normalized")
    return AppIO(True, classes, "image", PROBS_OUTPUT,
                 f"VanillaNet classifier of {len(classes)} classes: RGB image input, "
                 f"{LABEL_OUTPUT} and {PROBS_OUTPUT} (softmax probabilities) outputs",
                 {**image_note, "output_meaning": "probabilities",
                  "classifier": {"label_output": LABEL_OUTPUT, "probabilities_output": PROBS_OUTPUT,
                                 "classes": len(classes),
                                 "how": "softmax appended to the net, coremltools ClassifierConfig"}})


class _Probabilities(torch.nn.Module):
    """The net followed by a softmax, so the classifier's dictionary holds probabilities."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), dim=1)


def _trace_input(request: ConvertRequest) -> torch.Tensor:
    return torch.from_numpy(request.sample_inputs[:1]).repeat(request.batch, 1, 1, 1)


def _convert(request: ConvertRequest, io: AppIO, fp16: bool):
    import coremltools as ct

    x = _trace_input(request)
    model = request.model.eval()
    if io.classes is not None:
        with torch.no_grad():
            n_out = model(x).shape[-1]
        if n_out != len(io.classes):
            raise ConversionError(f"{len(io.classes)} class names for a net with {n_out} outputs",
                                  hint="give one class name per output")
        model = _Probabilities(model).eval()
    if io.image:
        # Core ML hands the program the image's 0-255 values as float: scale 1, bias 0
        inputs = [ct.ImageType(name=io.input_name, shape=tuple(x.shape), scale=1.0,
                               bias=[0.0, 0.0, 0.0], color_layout=ct.colorlayout.RGB)]
    else:
        # float32 I/O even at fp16: the fp16 route would otherwise make I/O float16 too
        inputs = [ct.TensorType(name=io.input_name, shape=tuple(x.shape), dtype=np.float32)]
    if io.classes is not None:
        # the dictionary output is named after the label output: classLabel_probs
        extra = {"classifier_config": ct.ClassifierConfig(io.classes, predicted_feature_name=LABEL_OUTPUT)}
    else:
        extra = {"outputs": [ct.TensorType(name=io.output_name, dtype=np.float32)]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # jit deprecation, "untested torch version"
        traced = torch.jit.trace(model, x)
        precision = ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32
        mlmodel = ct.convert(
            traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
            inputs=inputs, compute_precision=precision, compute_units=ct.ComputeUnit.ALL, **extra)
    set_app_metadata(mlmodel, request.app_info, io.description)
    return mlmodel


def _quantize_activations_with_stats(mlmodel, config, suffix_config, activation_stats: dict):
    """coremltools' own W8A8 activation rewrite, fed with our ranges.

    `coremltools.optimize.coreml.linear_quantize_activations` (checked against coremltools
    9.0) is: stats = _get_activation_calibration_stats(model, samples)  [needs predict; buggy],
    then three graph passes: compression::insert_prefix_quantize_dequantize_pair and
    compression::insert_suffix_quantize_dequantize_pair, both given the pass options
    `config` and `activation_stats` ({var name: {"rmin", "rmax"}}), then
    common::dequantize_quantize_pair_elimination, applied with models.utils._apply_graph_pass
    at spec version iOS17. We run exactly that with our stats (the suffix pass gets
    `suffix_config`, which differs from `config` only where a layer is kept in float, see
    `_output_quantizers_feeding`). `activation_stats` is the
    passes' declared option for this (set_options refuses unknown options, so a renamed
    option fails loudly here), and we use fresh pass instances instead of the registry's
    shared ones or patching `_get_activation_calibration_stats`, so no coremltools global
    is changed and nothing else in the process sees our stats.
    """
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto_load
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.models import utils as model_utils

    if not ct.__version__.startswith(_CHECKED_COREMLTOOLS.split(".")[0] + "."):
        warnings.warn(f"coremltools {ct.__version__}: the W8A8 activation passes were checked "
                      f"against {_CHECKED_COREMLTOOLS}", stacklevel=2)
    passes = []
    try:
        for name, cfg in zip(_ACTIVATION_PASSES, (config, suffix_config)):
            graph_pass = type(PASS_REGISTRY[name])()
            graph_pass.set_options([PassOption("config", cfg),
                                    PassOption("activation_stats", activation_stats)])
            passes.append(graph_pass)
        passes.append(PASS_REGISTRY[_DEDUP_PASS])
    except (KeyError, NotImplementedError) as exc:
        raise ConversionError(
            f"coremltools {ct.__version__} no longer has the activation quantization passes "
            f"this converter uses (checked against {_CHECKED_COREMLTOOLS}): {exc}") from exc
    return model_utils._apply_graph_pass(
        mlmodel, passes, spec_version=ct._SPECIFICATION_VERSION_IOS_17,
        pymil_load_func=milproto_load.load, skip_model_load=mlmodel.__proxy__ is None)


def _output_quantizers_feeding(program, float_ops: set[str]) -> set[str]:
    """Ops whose output Q/DQ (insert_suffix_quantize_dequantize_pair) would feed an op in
    `float_ops`: walking up from each float op's input through the activations that pass
    folds into a pattern (conv -> relu ...) to the pattern's core op (conv, pool, add, linear)."""
    try:
        from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
        activations = set(type(PASS_REGISTRY[_ACTIVATION_PASSES[1]])._allowed_activations)
    except (KeyError, AttributeError):   # the 9.0 list
        activations = {"leaky_relu", "tanh", "scaled_tanh", "sigmoid", "hard_sigmoid", "relu", "relu6"}
    producer = {o.name: op for op in program.ops for o in op.outputs}
    feeders = set()
    for op in program.ops:
        if op.name not in float_ops:
            continue
        src = producer.get(str((op.inputs.get("x") or [""])[0]))
        if src is not None and src.type in activations:
            src = producer.get(str((src.inputs.get("x") or [""])[0]))
        if src is not None and src.type in ("conv", "add", "avg_pool", "max_pool", "linear"):
            feeders.add(src.name)
    return feeders


@torch.no_grad()
def map_layers_to_conv_ops(model: torch.nn.Module, program, x: torch.Tensor,
                           rel_tol: float = 0.05) -> dict[str, str]:
    """Torch module name (calibration/layers.py) -> name of the MIL conv op that computes it.

    The jit route names ops after torch graph debug names (input_3_cast_fp16...), so names
    cannot be matched. Instead: every quantizable layer is one conv (the activation's is its
    depthwise conv), run in a fixed forward order; we record the torch call order with hooks and
    pair it with the program's conv ops in program order, then check each pair's weight shape
    and, running `x` through both, that the outputs agree (within fp16 rounding).
    """
    from ..calibration.coreml_stats import executed_ops
    from ..calibration.layers import quantizable_layers

    modules = dict(model.named_modules())
    order: list[str] = []
    torch_out: dict[str, np.ndarray] = {}

    def hook(name):
        def fn(module, args, out):
            order.append(name)
            torch_out[name] = out.detach().float().numpy()
        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in quantizable_layers(model)]
    try:
        model.eval()(x)
    finally:
        for h in handles:
            h.remove()

    convs = [op for op in program.ops if op.type == "conv"]
    if len(order) != len(set(order)) or len(order) != len(convs):
        raise ConversionError(f"cannot map torch layers to Core ML convs: torch ran {len(order)} "
                              f"quantizable layers ({', '.join(order)}), the program has {len(convs)} convs")
    shapes = {o.name: o.shape for op in program.ops for o in op.outputs}
    mil_out: dict[str, np.ndarray] = {}
    ops = executed_ops(program)
    it = iter(ops)

    def record(op_name, op_type, out):
        op = next(it)
        if op.type == "conv":
            mil_out[op.outputs[0].name] = np.asarray(out, np.float32)

    program.run({program.input_names[0]: x.numpy()}, record=record)
    mapping = {}
    for name, op in zip(order, convs):
        weight = getattr(modules[name], "weight", None)
        w_shape = shapes.get(str(op.inputs["weight"][0])) if op.inputs.get("weight") else None
        if weight is None or w_shape is None or tuple(weight.shape) != tuple(w_shape):
            raise ConversionError(f"cannot map torch layer {name} (weight {tuple(weight.shape)}) "
                                  f"to Core ML conv '{op.name}' (weight {w_shape})")
        got, ref = mil_out[op.outputs[0].name], torch_out[name]
        err = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12)) if got.shape == ref.shape else np.inf
        if not within(err, rel_tol):
            raise ConversionError(f"cannot map torch layer {name} to Core ML conv '{op.name}': "
                                  f"outputs differ (rel err {err:.3g})")
        mapping[name] = op.name
    return mapping


def count_int8(program) -> dict:
    """What the saved program really computes in int8, read from its op graph."""
    producer = {o.name: op for op in program.ops for o in op.outputs}

    def made_by(op, param):
        refs = op.inputs.get(param) or [None]
        return producer.get(str(refs[0])) if isinstance(refs[0], str) else None

    def int8_weight(op) -> bool:
        w = made_by(op, "weight")
        if w is None or w.type not in _INT8_WEIGHT_OPS:
            return False
        data = (w.inputs.get("quantized_data") or w.inputs.get("data") or [None])[0]
        if isinstance(data, str):    # a reference: look at what produced it
            src = producer.get(str(data))
            data = (src.inputs.get("val") or [None])[0] if src is not None else None
        return getattr(data, "dtype", None) == np.int8

    convs = [op for op in program.ops if op.type == "conv"]
    int8_convs = [op for op in convs
                  if (made_by(op, "x") is not None and made_by(op, "x").type == "dequantize")
                  and int8_weight(op)]
    int8_ids = {id(op) for op in int8_convs}
    total = len(convs)
    return {
        "conv_total": total,
        "conv_int8": len(int8_convs),
        "quantize_ops": int(program.op_types["quantize"]),
        "dequantize_ops": int(program.op_types["dequantize"]),
        "int8_weight_ops": int(sum(program.op_types[t] for t in _INT8_WEIGHT_OPS)),
        "fraction_conv_int8": round(len(int8_convs) / total, 4) if total else 0.0,
        "float_convs": [op.name for op in convs if id(op) not in int8_ids],
        "how": "read back from the saved .mlpackage (numpy MIL reader): a conv counts as int8 when "
               "its input x comes from a dequantize op (int8 activation) and its weight from a "
               "constexpr_affine_dequantize of int8 data; quantize/dequantize = activation Q/DQ ops",
    }
