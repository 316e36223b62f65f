"""MNN: torch -> ONNX (the ONNX target's exporter) -> MNN's converter; INT8 by MNN's quantizer.

MNN's tools are C++ inside the wheel's `_tools` extension, called directly, each in a child
Python process:
- never through the wheel's Python wrappers or console scripts (MNN.tools.*): importing them
  loads a telemetry logger that runs `pip install -U aliyun-log-python-sdk` via os.system
  and sends usage to a remote server;
- a child, because the tools print to descriptor 1 from C++ and MNN 3.6.1's quantizer can
  crash the process (a segfault in its KL pass on some graphs, fixed upstream after 3.6.1 in
  alibaba/MNN#4711): a crash becomes a ConversionError with the tool's own output.

Graph: ReduceMean over H and W (the head's global average pool) is written as ONNX
GlobalAveragePool before conversion. Same maths; MNN converts ReduceMean into a Raster op
that its 3.6.1 quantizer crashes on, so every precision gets this one graph. INT8 exports
also move each block's ReLU ahead of its max pool (model/rewrites.relu_before_pool, exact):
MNN then fuses the ReLU into the conv and pools int8 at the conv's scale. Left after the
pool, the ReLU is a float island (int8 pool -> Int8ToFloat -> ReLU -> FloatToInt8) and
MNN 3.6.1's CPU kernels gave chance-level top-1 on the digits net whenever the pool's and
the ReLU's calibrated scales differ (KL: 13% against 98.6% fp32; the quantizer's own
fake-quant check said cosine 0.999), while the same model with the ReLU first keeps 98.6%.

fp16: `--fp16` stores conv weights and biases as float16 (half the file); MNN expands them
at load and computes in the session's precision (runner: "low" for fp16 artifacts).

INT8: MNN's post-training quantizer (mnnquant) on the fp32 .mnn: symmetric int8 per output
channel for weights (MAX_ABS), per-tensor symmetric int8 activations by KL ("entropy") or
ADMM ("mse": alternating minimisation of the quantisation error). It has no plain min/max
range method. The calibration tensors are handed over as they are: its "sequence" input type
reads each sample from a text file of values (`%.9g` round-trips float32 exactly through the
double it parses), so no image is re-decoded or re-normalised by MNN.

Deterministic: MNN writes a random UUID (Net.mnn_uuid) into every file; it is replaced by
one derived from the file's other bytes, so the same model converts to the same bytes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import uuid
from hashlib import sha256
from pathlib import Path

import numpy as np

from ..errors import BackendMissingError, ConversionError
from .base import Converter, ConvertRequest, ExportResult, package_versions

# Our method names -> MNN's feature_quantize_method (tools/quantization/Helper.cpp).
_METHODS = {"entropy": "KL", "mse": "ADMM"}
_WEIGHT_METHOD = "MAX_ABS"
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Runs one of MNN's C++ tools in a child Python: argv = tool name, then the tool's own argv.
# MNN.tools (the wrappers that load the telemetry logger) is made unimportable there first.
_CHILD = ("import sys\n"
          "sys.modules['MNN.tools'] = None\n"
          "import _tools\n"
          "ok = getattr(_tools, sys.argv[1])(sys.argv[1:])\n"
          "sys.exit(3 if ok is False else 0)\n")
_TOOL_OUTPUT_CHARS = 2000


class MnnConverter(Converter):
    target = "mnn"
    extra = "mnn"
    runtime = "mnn"
    modules = ("MNN", "onnx", "onnxscript")
    precisions = ("fp32", "fp16", "int8")
    int8_methods = tuple(_METHODS)
    default_int8_method = "entropy"   # MNN's quantizer has no min/max range for activations (KL)
    excludes_layers = True          # mnnquant's skip_quant_op_names, mapped through the ONNX graph
    int8_methods_note = ("MNN's quantizer computes activation ranges by KL (entropy) or ADMM (mse); "
                         "it has no plain min/max method")
    description = ("MNN (.mnn via ONNX), NCHW float32 I/O, run with MNN's CPU backend "
                   "(fp16: fp16-stored weights; int8: MNN's quantizer, int8 convs)")

    def library_versions(self) -> dict[str, str]:
        return package_versions("MNN", "onnx", "onnxscript")

    def check_available(self) -> None:
        from ..devices.mnn import import_mnn

        try:
            import_mnn()              # quietly: MNN prints a banner from C++ when it loads
        except ImportError:
            raise BackendMissingError(f"the {self.target} converter", self.extra, "MNN") from None
        super().check_available()

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        from .onnx import _export_fp32

        path = (folder / "model.mnn").absolute()    # the tools run in another working folder
        notes: dict = {"via": "ONNX (torch.onnx dynamo exporter) -> MNN converter"}
        int8 = None
        with tempfile.TemporaryDirectory(prefix="vne-mnn-") as tmp_name:
            tmp = Path(tmp_name).absolute()
            onnx_path = tmp / "model.onnx"
            rewrites: list[str] = []
            if request.precision == "int8":
                request, rewrites = _relu_before_pool(request)
            _export_fp32(request, onnx_path)
            notes["graph_rewrites"] = rewrites + mnn_friendly_onnx(onnx_path)
            fp16 = request.precision == "fp16"
            float_path = tmp / "fp32.mnn" if request.precision == "int8" else path
            run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(float_path),
                                    "--bizCode", "vanillanet-edge"] + (["--fp16"] if fp16 else []), tmp, float_path)
            if fp16:
                notes["fp16"] = "conv weights and biases stored as float16 (--fp16); float32 input and output"
            if request.precision == "int8":
                notes["int8"] = quantize(request, float_path, path, tmp, onnx_path)
        notes["mnn_uuid"] = fix_uuid(path)
        if request.precision == "int8":
            int8 = count_int8(path, request, notes["int8"]["kept_float"])
        return ExportResult(path.name, "NCHW", INPUT_NAME, OUTPUT_NAME, notes=notes, int8=int8)


def _relu_before_pool(request: ConvertRequest) -> tuple[ConvertRequest, list[str]]:
    """The request with each VanillaNet block's ReLU ahead of its pool (exact; see the module
    docstring). Models without a ReLU after a pool (other families; VanillaNets already
    rewritten by relu_before_pool or a dw_* split) are returned as they are."""
    import dataclasses

    import torch

    from ..model.layers import Activation, Block
    from ..model.rewrites import relu_before_pool

    if not any(isinstance(m, Block) and isinstance(m.act, Activation) for m in request.model.modules()):
        return request, []
    model = relu_before_pool(request.model)
    x = torch.from_numpy(request.sample_inputs[:2])
    with torch.no_grad():
        if not torch.allclose(model(x), request.model(x), rtol=1e-5, atol=1e-6):
            raise ConversionError("moving the ReLUs ahead of the pools changed the model's outputs",
                                  hint="report this with the checkpoint; fp32 and fp16 are unaffected")
    return dataclasses.replace(request, model=model), ["ReLU before MaxPool (relu_before_pool)"]


def run_tool(tool: str, args: list[str], cwd: Path, output_file: Path | None = None) -> str:
    """One of MNN's C++ tools (`_tools.mnnconvert`, `_tools.mnnquant`) in a child Python;
    its output (it prints progress from C++) is returned, and shown only when it fails."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, tool, *args], cwd=cwd, capture_output=True,
                          text=True, errors="replace")
    output = (proc.stdout + proc.stderr).replace("\r", "\n")
    # The tools report some failures (a file they cannot open) only in their output.
    missing = output_file is not None and (not output_file.is_file() or output_file.stat().st_size == 0)
    if proc.returncode != 0 or missing:
        why = (f"crashed (signal {-proc.returncode})" if proc.returncode < 0
               else f"failed (exit status {proc.returncode})" if proc.returncode
               else f"wrote no {getattr(output_file, 'name', 'output')}")
        raise ConversionError(f"MNN's {tool} {why}; its last output:\n{output[-_TOOL_OUTPUT_CHARS:]}",
                              hint="try another precision or target meanwhile")
    return output


def mnn_friendly_onnx(path: Path) -> list[str]:
    """Rewrite ReduceMean over the last two axes with keepdims (a global average pool) as
    GlobalAveragePool, in place; returns what was rewritten (see the module docstring)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    done = []
    for i, node in enumerate(list(graph.node)):
        if node.op_type != "ReduceMean":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:
            axes = consts.get(node.input[1])
        if axes is None or attrs.get("keepdims", 1) != 1:
            continue
        if sorted(int(a) for a in np.asarray(axes).ravel()) not in ([-2, -1], [2, 3]):
            continue
        graph.node.remove(node)
        graph.node.insert(i, helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output),
                                              name=node.name))
        done.append(f"{node.name}: ReduceMean(H, W) -> GlobalAveragePool")
    if done:
        onnx.save(model, str(path))
    return done


def fix_uuid(path: Path) -> str:
    """Replace the random UUID MNN's tools write into the file by one derived from the file's
    other bytes (same length, so the flatbuffer is otherwise untouched); returns it."""
    from ..devices.mnn import import_mnn

    data = path.read_bytes()
    old = import_mnn().get_model_uuid(str(path))
    key = old.encode("ascii") if old else b""
    if len(key) != 36 or data.count(key) != 1:
        raise ConversionError(f"cannot find the UUID MNN wrote into {path.name} exactly once",
                              hint="report this with the MNN version; the file may not be reproducible")
    start = data.index(key)
    blank = data[:start] + b"0" * 36 + data[start + 36:]
    new = str(uuid.UUID(bytes=sha256(blank).digest()[:16], version=4))
    path.write_bytes(data[:start] + new.encode("ascii") + data[start + 36:])
    return new


def write_calibration(inputs: np.ndarray, batch: int, root: Path) -> int:
    """One folder per calibration batch, as MNN's quantizer reads "sequence" input:
    <root>/<i>/input.txt (the values, `%.9g`: float32 exactly) and input.json (name, shape).
    A last partial batch is completed with images from the start. Returns the folder count."""
    n = len(inputs)
    count = -(-n // batch)
    order = np.arange(count * batch) % n
    shape = [batch, *inputs.shape[1:]]
    for i in range(count):
        sample = root / f"{i:06d}"
        sample.mkdir(parents=True)
        values = np.ascontiguousarray(inputs[order[i * batch:(i + 1) * batch]], dtype=np.float32)
        np.savetxt(sample / f"{INPUT_NAME}.txt", values.reshape(-1, values.shape[-1]), fmt="%.9g")
        (sample / "input.json").write_text(json.dumps({"inputs": [{"name": INPUT_NAME, "shape": shape}]}))
    return count


def kept_float_ops(request: ConvertRequest, onnx_path: Path) -> dict[str, list[str]]:
    """Layer (torch module name) -> the MNN ops of its convs, for the layers to keep in float.
    MNN names each op after its ONNX node's output; the ONNX nodes of a layer come from the
    exporter's scope metadata (converters/onnx.map_layers_to_nodes)."""
    import onnx

    from ..calibration.layers import select_layers
    from .onnx import map_layers_to_nodes

    assert request.calibration is not None
    if not request.calibration.excluded_layers:
        return {}
    model = onnx.load(str(onnx_path))
    convs = {n.name: n.output[0] for n in model.graph.node if n.op_type == "Conv"}
    chosen = select_layers(request.model, request.calibration.excluded_layers, map_layers_to_nodes(model),
                           "MNN (via ONNX)")
    return {layer: [convs[n] for n in nodes if n in convs] for layer, nodes in chosen.items()}


def quantize(request: ConvertRequest, src: Path, dst: Path, tmp: Path, onnx_path: Path) -> dict:
    MnnConverter.check_int8_request(request.calibration)
    cal = request.calibration
    assert cal is not None                       # check_int8_request refuses None
    keep_float = kept_float_ops(request, onnx_path)
    samples = write_calibration(cal.inputs, request.batch, tmp / "calibration")
    shape = [request.batch, *cal.inputs.shape[1:]]
    config = {
        "input_type": "sequence",
        "path": str(tmp / "calibration"),
        "used_sample_num": samples,
        "inputs": [{"name": INPUT_NAME, "shape": shape}],
        "feature_quantize_method": _METHODS[cal.method],
        "weight_quantize_method": _WEIGHT_METHOD,
        # Image fields MNN reads whatever the input type: the tensor's own size, no scaling.
        "format": "RGB", "mean": [0.0, 0.0, 0.0], "normal": [1.0, 1.0, 1.0],
        "width": int(shape[-1]), "height": int(shape[-2]),
        "skip_quant_op_names": sorted({op for ops in keep_float.values() for op in ops}),
    }
    (tmp / "quant.json").write_text(json.dumps(config, indent=1))
    run_tool("mnnquant", [str(src), str(dst), str(tmp / "quant.json")], tmp, dst)
    return {"tool": "MNN quantizer (_tools.mnnquant, the C++ quantized.out)",
            "activations": f"int8 symmetric per tensor, ranges by {_METHODS[cal.method]}",
            "weights": f"int8 symmetric per output channel ({_WEIGHT_METHOD})",
            "calibration": {"samples": int(len(cal.inputs)), "batches": samples,
                            "input_type": "sequence (the preprocessed tensors, %.9g text)"},
            "kept_float": keep_float}


def count_int8(path: Path, request: ConvertRequest, keep_float: dict[str, list[str]]) -> dict:
    """Convs MNN's CPU backend really runs on int8 tensors (its runtime op types); the layers
    asked to stay float must have run in float."""
    from ..devices.mnn import INT8_TAG, count_runtime_convs, runtime_op_types

    manifest = {"precision": "int8", "input": {"shape": list(request.input_shape_nchw), "layout": "NCHW"}}
    ops = runtime_op_types(path, manifest)
    counts = count_runtime_convs(ops)
    ran = dict(ops)
    leaked = [layer for layer, names in keep_float.items() if any(INT8_TAG in ran.get(n, "") for n in names)]
    if leaked:
        raise ConversionError(f"layers asked to stay float were quantized: {', '.join(leaked)}")
    total, int8 = counts["runtime_convs"], counts["runtime_conv_int8"]
    return {"conv_total": total, "conv_int8": int8,
            "fraction_conv_int8": round(int8 / total, 4) if total else 0.0,
            "kept_float": list(keep_float), "float_conv_ops": sorted(op for v in keep_float.values() for op in v),
            "how": "Convolution/ConvolutionDepthwise ops in one inference of MNN's CPU session, int8 "
                   "when MNN reports them on DT_INT8 tensors (runSessionWithCallBackInfo op types)"}
