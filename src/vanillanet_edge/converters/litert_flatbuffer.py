"""Reading a written .tflite flatbuffer: ops, tensors and their quantization (inspect_tflite), the
INT8 proof for the manifest, integer I/O, and the I/O checks."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import ConversionError
from .base import ConvertRequest


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


def read_model(data: bytes, purpose: str):
    """A .tflite's object tree (schema.ModelT), to rewrite and write back with model_bytes.
    Files that keep their weights outside the table (buffer offsets) are refused: the object
    API would drop them."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        raise ConversionError(f"the flatbuffer keeps its weights outside the table (buffer offsets); "
                              f"cannot {purpose}")
    return model


def model_bytes(model) -> bytes:
    """A schema.ModelT packed back into .tflite bytes (file identifier TFL3)."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def integer_io(path: str | Path) -> None:
    """Make a float-I/O quantized flatbuffer int8-I/O in place (what TFLite's
    modify_model_interface does): drop the QUANTIZE reading the input and the DEQUANTIZE writing
    the output, and give their int8 tensors the I/O names and the signature entries."""
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    model = read_model(path.read_bytes(), "rewrite its input/output types")
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

    path.write_bytes(model_bytes(model))


def _opcode(model, schema, builtin: int, version: int) -> int:
    """Index of `builtin` in the model's operator codes (added if absent), at least `version`."""
    codes = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]
    if builtin in codes:
        index = codes.index(builtin)
        model.operatorCodes[index].version = max(model.operatorCodes[index].version, version)
        return index
    oc = schema.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = builtin      # both < 127 here
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _bridge_io(model, schema, side: str, new_type: int, op_code: int, options: tuple, why: str,
               quantization=None):
    """Put a new `new_type` tensor in place of the graph's one per-tensor int8 `side` ("inputs" or
    "outputs") tensor and bridge the two with one op (DEQUANTIZE after an output, QUANTIZE
    before an input): the old tensor keeps its name + "_int8", the graph and its signatures
    point at the new one. Returns the old tensor's quantization."""
    graph = model.subgraphs[0]
    ends = getattr(graph, side)
    old = int(ends[0])
    t = graph.tensors[old]
    q = t.quantization
    if len(ends) != 1 or t.type != schema.TensorType.INT8 or q is None or q.scale is None or len(q.scale) != 1:
        raise ConversionError(f"expected one per-tensor quantized int8 {side[:-1]} to {why}")
    new = schema.TensorT()
    new.shape, new.shapeSignature, new.type, new.name = t.shape, t.shapeSignature, new_type, t.name
    new.quantization = quantization
    model.buffers.append(schema.BufferT())          # an empty buffer of its own, like every graph end
    new.buffer = len(model.buffers) - 1
    t.name = (t.name.decode() if isinstance(t.name, bytes) else t.name) + "_int8"
    graph.tensors.append(new)
    new_index = len(graph.tensors) - 1
    op = schema.OperatorT()
    op.opcodeIndex, op.builtinOptionsType, op.builtinOptions = op_code, options[0], options[1]
    if side == "outputs":
        op.inputs, op.outputs = [old], [new_index]
        graph.operators.append(op)
    else:
        op.inputs, op.outputs = [new_index], [old]
        graph.operators.insert(0, op)
    setattr(graph, side, [new_index])
    for sig in model.signatureDefs or []:
        for entry in getattr(sig, side) or []:
            if int(entry.tensorIndex) == old:
                entry.tensorIndex = new_index
    return q


def float_output(path: str | Path) -> dict:
    """Give an int8-output flatbuffer a float32 output, in place: a DEQUANTIZE op after the int8
    logits (exactly what a reader computes from scale / zero point). MediaPipe Tasks' classifier
    takes only UINT8 / FLOAT32 outputs ("Expected output tensor ... UINT8 or FLOAT32 or BOOL,
    found INT8"). Returns the output note."""
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    model = read_model(path.read_bytes(), "rewrite its output type")
    code = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE, 2)   # int8 input: v2
    q = _bridge_io(model, schema, "outputs", schema.TensorType.FLOAT32, code,
                   (schema.BuiltinOptions.DequantizeOptions, schema.DequantizeOptionsT()), "give a float output")
    path.write_bytes(model_bytes(model))
    return {"dtype": "float32", "meaning": "logits; a DEQUANTIZE op after the int8 logits "
                                           f"(scale {q.scale[0]:.6g}, zero point {int(q.zeroPoint[0])})"}


def uint8_input(path: str | Path) -> dict:
    """Give an int8-input flatbuffer a uint8 input with scale 1 and zero point 0 (raw pixels as
    an app's camera buffer holds them), in place: a QUANTIZE op reads the new uint8 tensor and
    writes the old int8 one (real = q_u8 exactly; QUANTIZE requantizes to the int8 scale the
    calibration chose). This is how TFLite's own modify_model_interface makes uint8 inputs;
    PT2E and the LiteRT converter quantize activations to int8 only. Returns the input note."""
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    model = read_model(path.read_bytes(), "rewrite its input type")
    unit = schema.QuantizationParametersT()
    unit.scale, unit.zeroPoint = [1.0], [0]
    code = _opcode(model, schema, schema.BuiltinOperator.QUANTIZE, 2)   # QUANTIZE writing int8: v2
    q = _bridge_io(model, schema, "inputs", schema.TensorType.UINT8, code,
                   (schema.BuiltinOptions.QuantizeOptions, schema.QuantizeOptionsT()), "give a uint8 input", unit)
    path.write_bytes(model_bytes(model))
    return {"dtype": "uint8", "scale": 1.0, "zero_point": 0,
            "meaning": "raw RGB pixels 0-255 as they are (uint8, scale 1, zero point 0); a QUANTIZE op "
                       f"requantizes them to the int8 input the calibration chose (scale {q.scale[0]:.6g}, "
                       f"zero point {int(q.zeroPoint[0])})"}


def _check_io(info: dict, request: ConvertRequest, io_dtype: str, input_dtype: str | None = None,
              output_dtype: str | None = None) -> None:
    b, s = request.batch, request.input_size
    if len(info["inputs"]) != 1 or len(info["outputs"]) != 1:
        raise ConversionError(f"expected one input and one output, got {len(info['inputs'])} and "
                              f"{len(info['outputs'])}")
    inp, out = info["inputs"][0], info["outputs"][0]
    if inp["shape"] != [b, s, s, 3] or inp["dtype"] != (input_dtype or io_dtype):
        raise ConversionError(f"the artifact's input is {inp['dtype']} {inp['shape']}, expected {input_dtype or io_dtype} "
                              f"[{b}, {s}, {s}, 3] (NHWC)")
    if out["dtype"] != (output_dtype or io_dtype) or len(out["shape"]) != 2 or out["shape"][0] != b:
        raise ConversionError(f"the artifact's output is {out['dtype']} {out['shape']}, expected {output_dtype or io_dtype} "
                              f"[{b}, classes]")
