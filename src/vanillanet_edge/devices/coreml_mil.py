"""A small numpy interpreter for Core ML ML Programs (``.mlpackage``).

Core ML can only *execute* a model on macOS (``MLModel.predict``), but an ML
Program is just a protobuf description of a MIL program plus a weights file,
so on Linux we can read both back from disk and run the program with numpy.
This is meant for numerically verifying the artifacts we ship (fp32, fp16,
int8-weight and int8-activation VanillaNet graphs) and for collecting
per-layer activation statistics (INT8 calibration) through the ``record``
callback of :meth:`MILProgram.run`.

Only the ops a VanillaNet-style graph needs are implemented (see
:func:`supported_ops`). Anything else -- an unknown op type, or a known op
with a parameter value this module does not implement (e.g. a ``pad_type``,
``interleave=True`` in ``concat``, ``ceil_mode`` on an ``avg_pool`` whose
windows overhang) -- is reported by :class:`UnsupportedMILOp` before any op
is executed, so the interpreter never computes something silently wrong.
A parameter name an op does not list is refused too.

Program layout (coremltools 9): ``Data/com.apple.CoreML/model.mlmodel`` is a
``Model_pb2.Model``; the ops are in
``spec.mlProgram.functions["main"].block_specializations[fn.opset]``
(``CoreML7`` = iOS17, ``CoreML8`` = iOS18).  Op parameters are bound in
``op.inputs`` to a variable name or an inline value; every scalar parameter
(strides, pad_type, ...) is usually its own ``const`` op.  ``const`` and the
iOS16/17 ``constexpr_*`` ops keep their values in ``op.attributes`` (next to
``name``), iOS18 ``constexpr_blockwise_shift_scale`` in ``op.inputs`` as inline
values that point into the weights file.  Inline fp16 / int8 / uint8 / sub-byte
values are raw little-endian ``bytes``, fp32 ``floats``, int32 ``ints``.

Numerics
--------
Every tensor is kept in the dtype the program declares for it (``fp16``
tensors are ``np.float16`` arrays, ``int8`` tensors ``np.int8``...).  An op
computes in float32 on its (fp16-rounded, when they are fp16) inputs and the
result is rounded to the op's declared output dtype; that emulates an fp16
program honestly (every intermediate is an fp16 value).  Ops whose output is
fp32 accumulate convolutions / matmuls / reductions in float64 before rounding
to float32.  Elementwise ops are computed in float32, which for IEEE ``+ - *
/`` gives the correctly rounded result for both fp32 and fp16 outputs.
Where the Core ML runtime's exact behaviour is not specified (accumulation
order, fp16 accumulators on the GPU/ANE, round-half-even in ``quantize``) this
interpreter gives a reference answer, not a bit-exact prediction of a device.

Weights file layout (``Data/com.apple.CoreML/weights/weight.bin``, the MILBlob
storage format, little endian)::

    storage_header (64 bytes): uint32 count, uint32 version (=2), 56 reserved
    per blob, 64-byte aligned:
        blob_metadata (64 bytes): uint32 sentinel 0xDEADBEEF, uint32 dtype,
            uint64 size_in_bytes, uint64 data_offset (absolute, in the file),
            uint64 padding_size_in_bits (sub-byte types only), 4 x uint64 reserved
        raw data (at data_offset)

A ``blobFileValue.offset`` in the program points at the *metadata record*, not
at the data.  Blob dtype codes: 1 fp16, 2 fp32, 3 uint8, 4 int8, 5 bf16,
6 int16, 7 uint16, 8 int4, 9 uint1, 10 uint2, 11 uint4, 12 uint3, 13 uint6,
14 int32, 15 uint32, 16 fp8e4m3fn, 17 fp8e5m2.  Sub-byte values are packed
least-significant-bit first.

Example::

    prog = MILProgram.load("model.mlpackage")
    out = prog.run({"input": x})["logits"]
    stats = {}
    prog.run({"input": x}, record=lambda name, typ, a: stats.setdefault(name, a.max()))
"""

from __future__ import annotations

import collections
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["MILOp", "MILProgram", "MILVar", "UnsupportedMILOp", "supported_ops"]


class UnsupportedMILOp(Exception):
    """The program uses an op type, or an op parameter value, that this
    interpreter does not implement.

    Raised before anything is executed.  ``problems`` lists one line per
    offending op (``"<op type> '<op name>' (op #i): <why>"``) and ``op_types``
    the set of op types involved.
    """

    def __init__(self, problems: list[str], op_types: Iterable[str] = ()):
        self.problems = list(problems)
        self.op_types = frozenset(op_types)
        head = "unsupported MIL op(s)"
        if self.op_types:
            head += " " + ", ".join(sorted(self.op_types))
        super().__init__(head + ":\n  " + "\n  ".join(self.problems))


# --------------------------------------------------------------------------
# MIL data types (coremltools.proto.MIL_pb2.DataType values)
# --------------------------------------------------------------------------

_BOOL, _STRING = 1, 2
_FP16, _FP32, _FP64, _BF16 = 10, 11, 12, 13
_INT8, _INT16, _INT32, _INT64, _INT4 = 21, 22, 23, 24, 25
_UINT8, _UINT16, _UINT32, _UINT64 = 31, 32, 33, 34
_UINT4, _UINT2, _UINT1, _UINT6, _UINT3 = 35, 36, 37, 38, 39

# MIL dtype -> numpy dtype used to hold the values in this interpreter.
_NP_DTYPE = {
    _BOOL: np.dtype(np.bool_),
    _FP16: np.dtype(np.float16),
    _FP32: np.dtype(np.float32),
    _FP64: np.dtype(np.float64),
    _INT8: np.dtype(np.int8),
    _INT16: np.dtype(np.int16),
    _INT32: np.dtype(np.int32),
    _INT64: np.dtype(np.int64),
    _INT4: np.dtype(np.int8),
    _UINT8: np.dtype(np.uint8),
    _UINT16: np.dtype(np.uint16),
    _UINT32: np.dtype(np.uint32),
    _UINT64: np.dtype(np.uint64),
    _UINT4: np.dtype(np.uint8),
    _UINT2: np.dtype(np.uint8),
    _UINT1: np.dtype(np.uint8),
    _UINT6: np.dtype(np.uint8),
    _UINT3: np.dtype(np.uint8),
}
# Sub-byte types: (bit width, signed)
_SUB_BYTE = {
    _INT4: (4, True),
    _UINT1: (1, False),
    _UINT2: (2, False),
    _UINT3: (3, False),
    _UINT4: (4, False),
    _UINT6: (6, False),
}
_MIL_DTYPE_NAME = {
    _BOOL: "bool", _STRING: "string", _FP16: "fp16", _FP32: "fp32", _FP64: "fp64",
    _BF16: "bf16", _INT8: "int8", _INT16: "int16", _INT32: "int32", _INT64: "int64",
    _INT4: "int4", _UINT8: "uint8", _UINT16: "uint16", _UINT32: "uint32",
    _UINT64: "uint64", _UINT4: "uint4", _UINT2: "uint2", _UINT1: "uint1",
    _UINT6: "uint6", _UINT3: "uint3", 40: "fp8e4m3fn", 41: "fp8e5m2",
}
# dtype strings accepted by ``cast`` / ``quantize`` -> MIL dtype
_DTYPE_BY_STRING = {
    "fp16": _FP16, "fp32": _FP32, "int32": _INT32, "bool": _BOOL,
    "int8": _INT8, "uint8": _UINT8, "int16": _INT16, "uint16": _UINT16,
}

# MILBlob storage format
_BLOB_SENTINEL = 0xDEADBEEF
_BLOB_DTYPE_TO_MIL = {
    1: _FP16, 2: _FP32, 3: _UINT8, 4: _INT8, 5: _BF16, 6: _INT16, 7: _UINT16,
    8: _INT4, 9: _UINT1, 10: _UINT2, 11: _UINT4, 12: _UINT3, 13: _UINT6,
    14: _INT32, 15: _UINT32, 16: 40, 17: 41,
}
_BLOB_METADATA = np.dtype(
    [
        ("sentinel", "<u4"),
        ("dtype", "<u4"),
        ("size", "<u8"),
        ("offset", "<u8"),
        ("padding_bits", "<u8"),
        ("reserved", "<u8", (4,)),
    ]
)
assert _BLOB_METADATA.itemsize == 64


def _unpack_sub_byte(raw: np.ndarray, nbits: int, signed: bool, count: int) -> np.ndarray:
    """Unpack ``count`` ``nbits``-wide values packed LSB-first in ``raw`` (uint8)."""
    bits = np.unpackbits(raw.astype(np.uint8, copy=False), bitorder="little")
    if bits.size < count * nbits:
        raise ValueError(f"packed data holds {bits.size} bits, need {count * nbits}")
    bits = bits[: count * nbits].reshape(count, nbits).astype(np.uint16)
    vals = (bits << np.arange(nbits, dtype=np.uint16)).sum(axis=1)
    if signed:
        vals = vals.astype(np.int16)
        vals = np.where(vals >= (1 << (nbits - 1)), vals - (1 << nbits), vals)
        return vals.astype(np.int8)
    return vals.astype(np.uint8)


class _BlobFile:
    """Reader for one MILBlob (v2) weights file."""

    def __init__(self, path: str):
        self.path = path
        self._data = np.memmap(path, dtype=np.uint8, mode="r")
        if self._data.size < 64:
            raise ValueError(f"{path}: too small to be a MILBlob weights file")
        count, version = np.frombuffer(self._data[:8].tobytes(), "<u4")
        if version != 2:
            raise ValueError(f"{path}: MILBlob storage version {version}, only 2 is supported")
        self.count = int(count)

    def read(self, offset: int, mil_dtype: int, shape: tuple[int, ...]) -> np.ndarray:
        meta = np.frombuffer(self._data[offset : offset + 64].tobytes(), _BLOB_METADATA)[0]
        if int(meta["sentinel"]) != _BLOB_SENTINEL:
            raise ValueError(f"{self.path}: no blob metadata (bad sentinel) at offset {offset}")
        blob_dtype = _BLOB_DTYPE_TO_MIL.get(int(meta["dtype"]))
        if blob_dtype != mil_dtype:
            raise ValueError(
                f"{self.path}@{offset}: blob dtype code {int(meta['dtype'])} "
                f"({_MIL_DTYPE_NAME.get(blob_dtype, '?')}) but the program declares "
                f"{_MIL_DTYPE_NAME.get(mil_dtype, mil_dtype)}"
            )
        start, size = int(meta["offset"]), int(meta["size"])
        raw = np.array(self._data[start : start + size])  # copy out of the memmap
        count = int(np.prod(shape, dtype=np.int64))
        if mil_dtype in _SUB_BYTE:
            nbits, signed = _SUB_BYTE[mil_dtype]
            if size * 8 - int(meta["padding_bits"]) != count * nbits:
                raise ValueError(f"{self.path}@{offset}: blob size does not match shape {shape}")
            return _unpack_sub_byte(raw, nbits, signed, count).reshape(shape)
        if mil_dtype not in _NP_DTYPE:
            raise ValueError(
                f"{self.path}@{offset}: blob dtype {_MIL_DTYPE_NAME.get(mil_dtype)} not supported"
            )
        dt = _NP_DTYPE[mil_dtype].newbyteorder("<")
        if size != count * dt.itemsize:
            raise ValueError(
                f"{self.path}@{offset}: blob holds {size} bytes, shape {shape} needs "
                f"{count * dt.itemsize}"
            )
        return raw.view(dt).astype(_NP_DTYPE[mil_dtype]).reshape(shape)


# --------------------------------------------------------------------------
# Program representation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class MILVar:
    """A named value of the program: MIL dtype name, numpy dtype, static shape
    (``None`` entries for unknown dimensions; ``shape`` is ``None`` for
    non-tensor values)."""

    name: str
    dtype: str
    np_dtype: np.dtype | None
    shape: tuple[int | None, ...] | None


@dataclass
class MILOp:
    """One operation: ``name`` (its ``name`` attribute), ``type``, its input
    bindings (parameter -> list of variable names, or inline values) and its
    output variables."""

    index: int
    name: str
    type: str
    inputs: dict[str, list[Any]] = field(repr=False)
    outputs: list[MILVar]


class _Ref(str):
    """A binding to a variable by name (an inline value is stored as is)."""


_CONST_TYPES = frozenset({"const"})  # plus every "constexpr_*" op


def _is_const_type(op_type: str) -> bool:
    return op_type in _CONST_TYPES or op_type.startswith("constexpr_")


def _var_from_valuetype(name: str, vt) -> MILVar:
    kind = vt.WhichOneof("type")
    if kind != "tensorType":
        return MILVar(name, kind or "unknown", None, None)
    tt = vt.tensorType
    dims: list[int | None] = []
    for d in tt.dimensions:
        dims.append(int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None)
    if tt.rank >= 0 and len(dims) != tt.rank:
        dims = [None] * tt.rank
    return MILVar(
        name, _MIL_DTYPE_NAME.get(tt.dataType, str(tt.dataType)), _NP_DTYPE.get(tt.dataType), tuple(dims)
    )


class _ValueDecoder:
    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self._files: dict[str, _BlobFile] = {}

    def _blob(self, file_name: str) -> _BlobFile:
        if file_name.startswith("@model_path/"):
            path = os.path.join(self.model_dir, file_name[len("@model_path/") :])
        else:
            path = os.path.join(self.model_dir, file_name)
        if path not in self._files:
            self._files[path] = _BlobFile(path)
        return self._files[path]

    def decode(self, value) -> Any:
        """Decode a ``MIL_pb2.Value`` holding a tensor into a numpy array (a
        python ``str`` for a scalar string)."""
        if value.type.WhichOneof("type") != "tensorType":
            raise ValueError(f"non-tensor value of type {value.type.WhichOneof('type')}")
        tt = value.type.tensorType
        mil_dtype = tt.dataType
        if any(d.WhichOneof("dimension") != "constant" for d in tt.dimensions):
            raise ValueError("constant value with a non-constant dimension")
        shape = tuple(int(d.constant.size) for d in tt.dimensions)
        count = int(np.prod(shape, dtype=np.int64))
        which = value.WhichOneof("value")
        if which == "blobFileValue":
            return self._blob(value.blobFileValue.fileName).read(
                int(value.blobFileValue.offset), mil_dtype, shape
            )
        if which != "immediateValue" or value.immediateValue.WhichOneof("value") != "tensor":
            raise ValueError(f"unsupported value kind {which}")
        tensor = value.immediateValue.tensor
        kind = tensor.WhichOneof("value")
        if mil_dtype == _STRING:
            vals = [s.decode() if isinstance(s, bytes) else s for s in tensor.strings.values]
            return vals[0] if shape == () and vals else np.array(vals, dtype=object).reshape(shape)
        if mil_dtype not in _NP_DTYPE:
            raise ValueError(f"unsupported immediate dtype {_MIL_DTYPE_NAME.get(mil_dtype, mil_dtype)}")
        np_dtype = _NP_DTYPE[mil_dtype]
        if kind == "bytes":
            raw = np.frombuffer(tensor.bytes.values, dtype=np.uint8)
            if mil_dtype in _SUB_BYTE:
                nbits, signed = _SUB_BYTE[mil_dtype]
                arr = _unpack_sub_byte(raw, nbits, signed, count)
            else:
                arr = raw.view(np_dtype.newbyteorder("<")).astype(np_dtype)
        elif kind in ("floats", "ints", "bools", "longInts", "doubles"):
            arr = np.asarray(list(getattr(tensor, kind).values)).astype(np_dtype)
        elif kind is None:
            arr = np.zeros((0,), np_dtype)
        else:
            raise ValueError(f"unsupported immediate tensor field {kind}")
        if arr.size != count:
            raise ValueError(f"immediate value has {arr.size} elements, shape {shape} needs {count}")
        return arr.reshape(shape)


def _find_model_spec(path: str) -> tuple[str, str]:
    """Return (path of the Model protobuf, directory that ``@model_path`` names)."""
    if os.path.isfile(path):  # a bare .mlmodel next to its weights/ folder
        return path, os.path.dirname(os.path.abspath(path))
    data = os.path.join(path, "Data")
    manifest = os.path.join(path, "Manifest.json")
    rel = None
    if os.path.isfile(manifest):
        with open(manifest) as fh:
            man = json.load(fh)
        root = man.get("rootModelIdentifier")
        entry = man.get("itemInfoEntries", {}).get(root)
        if entry and "path" in entry:
            rel = entry["path"]
    if rel is None:
        rel = "com.apple.CoreML/model.mlmodel"
    spec_path = os.path.join(data, rel)
    if not os.path.isfile(spec_path):
        raise FileNotFoundError(f"no model spec at {spec_path}")
    return spec_path, os.path.dirname(spec_path)


# --------------------------------------------------------------------------
# Op implementations
# --------------------------------------------------------------------------

_MISSING = object()


class _Args:
    """Resolved inputs of one op.  ``values`` maps a variable name to its value;
    at validation time it only holds constants and ``dynamic`` is returned for
    anything computed at run time."""

    def __init__(self, op: MILOp, values: dict[str, Any], dynamic: Any = _MISSING,
                 var_types: dict[str, MILVar] | None = None):
        self.op = op
        self._values = values
        self._dynamic = dynamic
        self._var_types = var_types or {}

    def declared(self, name: str) -> MILVar | None:
        """Declared type of the variable bound to input ``name`` (None if inline)."""
        bindings = self.op.inputs.get(name, [])
        if len(bindings) == 1 and isinstance(bindings[0], _Ref):
            return self._var_types.get(bindings[0])
        return None

    def _resolve(self, binding):
        if isinstance(binding, _Ref):
            if binding in self._values:
                return self._values[binding]
            if self._dynamic is not _MISSING:
                return self._dynamic
            raise KeyError(f"variable {binding!r} is not defined")
        return binding

    def has(self, name: str) -> bool:
        return name in self.op.inputs

    def get(self, name: str, default: Any = _MISSING) -> Any:
        if name not in self.op.inputs:
            if default is _MISSING:
                raise KeyError(f"{self.op.type} '{self.op.name}': required input {name!r} missing")
            return default
        bindings = self.op.inputs[name]
        if len(bindings) != 1:
            raise ValueError(f"{self.op.type} '{self.op.name}': input {name!r} is a tuple")
        return self._resolve(bindings[0])

    def tuple(self, name: str) -> list[Any]:
        return [self._resolve(b) for b in self.op.inputs.get(name, [])]

    # convenience for scalar / vector parameters
    def ints(self, name, default=_MISSING):
        v = self.get(name, default)
        return None if v is None else [int(i) for i in np.asarray(v).reshape(-1)]

    def scalar(self, name, default=_MISSING):
        v = self.get(name, default)
        return v if (v is None or isinstance(v, str)) else np.asarray(v).reshape(()).item()

    @property
    def out(self) -> MILVar:
        return self.op.outputs[0]


class _Dynamic:
    """Placeholder for a value only known at run time (validation pass)."""

    def __repr__(self):
        return "<run-time value>"


_DYNAMIC = _Dynamic()


def _is_dynamic(v) -> bool:
    return v is _DYNAMIC


def _f32(a) -> np.ndarray:
    """Values in float32 (fp16 inputs are exactly representable)."""
    return np.asarray(a).astype(np.float32, copy=False)


def _acc_dtype(out: MILVar) -> type:
    """Accumulator dtype for reductions / dot products producing ``out``."""
    return np.float64 if out.dtype in ("fp32", "fp64") else np.float32


# --- padding helpers ------------------------------------------------------


def _spatial_pads(pad_type, pad, in_sizes, kernel, strides, dilations):
    """Per spatial dim (before, after) padding for conv / pooling."""
    pad_type = pad_type.lower()
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if pad_type == "valid":
        return [(0, 0)] * len(kernel)
    if pad_type == "custom":
        pad = pad if pad is not None else [0] * (2 * len(kernel))
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(len(kernel))]
    if pad_type in ("same", "same_lower"):
        out = []
        for i, k, s in zip(in_sizes, eff, strides):
            total = max(0, (math.ceil(i / s) - 1) * s + k - i)
            small, big = total // 2, total - total // 2
            out.append((small, big) if pad_type == "same" else (big, small))
        return out
    raise ValueError(f"pad_type {pad_type!r}")


_PAD_TYPES = ("valid", "custom", "same", "same_lower")


def _check_spatial(a: _Args, problems: list[str]):
    out = a.out
    if out.shape is None or len(out.shape) != 4:
        problems.append(f"only 2-D (rank 4, NCHW) {a.op.type} is supported, output rank is "
                        f"{None if out.shape is None else len(out.shape)}")
    pt = a.scalar("pad_type", "valid")
    if _is_dynamic(pt) or str(pt).lower() not in _PAD_TYPES:
        problems.append(f"pad_type {pt!r} not supported (supported: {', '.join(_PAD_TYPES)})")
    for p in ("strides", "pad", "dilations", "groups", "kernel_sizes", "ceil_mode",
              "exclude_padding_from_average"):
        if a.has(p) and _is_dynamic(a.get(p)):
            problems.append(f"parameter {p!r} is not a constant")


# --- conv -------------------------------------------------------------------


def _conv(a: _Args):
    x = a.get("x")
    w = a.get("weight")
    bias = a.get("bias", None)
    n, cin, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    groups = int(a.scalar("groups", 1))
    strides = a.ints("strides", None) or [1, 1]
    dil = a.ints("dilations", None) or [1, 1]
    pads = _spatial_pads(a.scalar("pad_type", "valid"), a.ints("pad", None), (h, wd), (kh, kw), strides, dil)
    if cin != cg * groups or cout % groups:
        raise ValueError(f"conv '{a.op.name}': x has {cin} channels, weight {w.shape}, groups {groups}")
    acc = _acc_dtype(a.out)
    xp = np.asarray(x).astype(acc)
    if any(p != (0, 0) for p in pads):
        xp = np.pad(xp, ((0, 0), (0, 0), pads[0], pads[1]))
    hp, wp = xp.shape[2:]
    ho = (hp - ((kh - 1) * dil[0] + 1)) // strides[0] + 1
    wo = (wp - ((kw - 1) * dil[1] + 1)) // strides[1] + 1
    og = cout // groups
    wt = np.asarray(w).astype(acc).reshape(groups, og, cg, kh, kw)
    xg = xp.reshape(n, groups, cg, hp, wp)

    def tap(i, j):
        r0, c0 = i * dil[0], j * dil[1]
        return xg[:, :, :, r0 : r0 + strides[0] * (ho - 1) + 1 : strides[0],
                  c0 : c0 + strides[1] * (wo - 1) + 1 : strides[1]]

    if cg == 1:  # depthwise (channel multiplier og): multiply-accumulate shifted slices
        out = np.zeros((n, groups, og, ho, wo), acc)
        for i in range(kh):
            for j in range(kw):
                out += wt[None, :, :, 0, i, j, None, None] * tap(i, j)
    else:  # grouped / dense: one (og x cg) @ (cg x pixels) matmul per tap and group
        out = np.zeros((n, groups, og, ho * wo), acc)
        for i in range(kh):
            for j in range(kw):
                xs = np.ascontiguousarray(tap(i, j)).reshape(n, groups, cg, ho * wo)
                out += np.matmul(wt[None, :, :, :, i, j], xs)
    out = out.reshape(n, cout, ho, wo)
    if bias is not None:
        out += np.asarray(bias).astype(acc).reshape(1, cout, 1, 1)
    return out


def _conv_check(a: _Args, problems):
    _check_spatial(a, problems)


# --- pooling ------------------------------------------------------------------


def _pool_geometry(a: _Args, x):
    k = a.ints("kernel_sizes")
    s = a.ints("strides", None) or [1] * len(k)
    h, w = x.shape[2:]
    pads = _spatial_pads(a.scalar("pad_type", "valid"), a.ints("pad", None), (h, w), k, s, [1, 1])
    ceil = bool(a.scalar("ceil_mode", False))
    outs, extra = [], []
    for size, kk, ss, (pb, pa) in zip((h, w), k, s, pads):
        total = size + pb + pa
        if not ceil:
            o = (total - kk) // ss + 1
        else:  # same rule as coremltools' shape inference (== PyTorch's)
            o = (total - kk + ss - 1) // ss + 1
            if (o - 1) * ss >= size + pb and (pb > 0 or pa > 0):
                o -= 1
        outs.append(o)
        extra.append(max(0, (o - 1) * ss + kk - total))  # ceil_mode overhang
    return k, s, pads, outs, extra


def _pool_taps(xp, k, s, outs):
    for i in range(k[0]):
        for j in range(k[1]):
            yield xp[:, :, i : i + s[0] * (outs[0] - 1) + 1 : s[0], j : j + s[1] * (outs[1] - 1) + 1 : s[1]]


def _max_pool(a: _Args):
    x = _f32(a.get("x"))
    k, s, pads, outs, extra = _pool_geometry(a, x)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0][0], pads[0][1] + extra[0]), (pads[1][0], pads[1][1] + extra[1])),
                constant_values=-np.inf)
    out = None
    for t in _pool_taps(xp, k, s, outs):
        out = t.copy() if out is None else np.maximum(out, t)
    return out


def _avg_pool(a: _Args):
    acc = _acc_dtype(a.out)
    x = np.asarray(a.get("x")).astype(acc)
    k, s, pads, outs, extra = _pool_geometry(a, x)
    pw = ((0, 0), (0, 0), pads[0], pads[1])
    xp = np.pad(x, pw)
    total = np.zeros(xp.shape[:2] + tuple(outs), acc)
    for t in _pool_taps(xp, k, s, outs):
        total += t
    if bool(a.scalar("exclude_padding_from_average", False)):
        ones = np.pad(np.ones((1, 1) + x.shape[2:], acc), pw)
        cnt = sum(t for t in _pool_taps(ones, k, s, outs))
        return total / cnt
    return total / float(k[0] * k[1])


def _pool_check(a: _Args, problems):
    _check_spatial(a, problems)
    if problems:
        return
    if a.op.type == "avg_pool" and bool(a.scalar("ceil_mode", False)):
        x = a.declared("x")
        shape = None if x is None else x.shape
        if shape is None or len(shape) != 4 or None in shape:
            problems.append("avg_pool with ceil_mode needs a statically known input shape")
            return
        if any(_pool_geometry(a, np.empty(shape, np.float32))[4]):
            problems.append("avg_pool with ceil_mode=True and overhanging windows is not supported")


# --- linear algebra -------------------------------------------------------------


def _linear(a: _Args):
    acc = _acc_dtype(a.out)
    x = np.asarray(a.get("x")).astype(acc)
    w = np.asarray(a.get("weight")).astype(acc)
    out = x @ w.T
    b = a.get("bias", None)
    if b is not None:
        out = out + np.asarray(b).astype(acc)
    return out


def _matmul(a: _Args):
    acc = _acc_dtype(a.out)
    x = np.asarray(a.get("x")).astype(acc)
    y = np.asarray(a.get("y")).astype(acc)
    if bool(a.scalar("transpose_x", False)):
        x = np.swapaxes(x, -1, -2)
    if bool(a.scalar("transpose_y", False)):
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


# --- activations / elementwise ----------------------------------------------------


def _relu(a: _Args):
    x = np.asarray(a.get("x"))
    return np.maximum(x, np.zeros((), x.dtype))


def _leaky_relu(a: _Args):
    x = _f32(a.get("x"))
    alpha = np.float32(a.scalar("alpha", 0.01))
    return np.where(x >= 0, x, alpha * x)


def _binary(fn):
    def run(a: _Args):
        x, y = np.asarray(a.get("x")), np.asarray(a.get("y"))
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            return fn(_f32(x), _f32(y))
        return fn(x.astype(np.int64), y.astype(np.int64))

    return run


def _real_div(x, y):
    if x.dtype.kind != "f":
        return x.astype(np.float64) / y
    return x / y


def _identity(a: _Args):
    return np.asarray(a.get("x")).copy()


def _cast(a: _Args):
    x = np.asarray(a.get("x"))
    if x.dtype.kind == "f" and a.out.dtype in ("int32", "int16", "int8", "uint8", "uint16"):
        raise ValueError("float -> int cast")  # rejected at validation
    return x


def _cast_check(a: _Args, problems):
    dt = a.scalar("dtype")
    if _is_dynamic(dt) or dt not in ("fp16", "fp32", "int32", "bool"):
        problems.append(f"cast to dtype {dt!r} is not supported")
        return
    if dt == "int32":
        src = a.declared("x")
        if src is None or src.dtype in ("fp16", "fp32", "fp64"):
            problems.append("cast from floating point to int32 (rounding mode unknown) is not supported")


# --- reductions -------------------------------------------------------------------


def _reduce(fn_name):
    def run(a: _Args):
        x = np.asarray(a.get("x"))
        axes = a.ints("axes", None)
        keep = bool(a.scalar("keep_dims", False))
        ax = None if axes is None else tuple(int(i) % x.ndim for i in axes)
        if fn_name in ("mean", "sum"):
            xa = x.astype(_acc_dtype(a.out))
            return getattr(np, fn_name)(xa, axis=ax, keepdims=keep)
        return getattr(np, fn_name)(x, axis=ax, keepdims=keep)

    return run


# --- shape ops ------------------------------------------------------------------------


def _reshape(a: _Args):
    x = np.asarray(a.get("x"))
    shape = a.ints("shape")
    if len(shape) == x.ndim:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _transpose(a: _Args):
    return np.transpose(np.asarray(a.get("x")), a.ints("perm"))


def _squeeze(a: _Args):
    x = np.asarray(a.get("x"))
    axes = a.ints("axes", None)
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(i % x.ndim for i in axes))


def _expand_dims(a: _Args):
    x = np.asarray(a.get("x"))
    axes = a.ints("axes")
    rank = x.ndim + len(axes)
    for ax in sorted(i % rank for i in axes):
        x = np.expand_dims(x, ax)
    return x


def _flatten2d(a: _Args):
    x = np.asarray(a.get("x"))
    axis = int(a.scalar("axis", 1)) % max(x.ndim, 1)
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _slice_by_index(a: _Args):
    x = np.asarray(a.get("x"))
    r = x.ndim
    begin = a.ints("begin")
    end = a.ints("end")
    stride = a.ints("stride", None) or [1] * r
    bmask = a.get("begin_mask", None)
    emask = a.get("end_mask", None)
    smask = a.get("squeeze_mask", None)
    bmask = [False] * r if bmask is None else [bool(v) for v in np.asarray(bmask).reshape(-1)]
    emask = [False] * r if emask is None else [bool(v) for v in np.asarray(emask).reshape(-1)]
    smask = [False] * r if smask is None else [bool(v) for v in np.asarray(smask).reshape(-1)]
    idx = []
    for d in range(r):
        if smask[d]:
            idx.append(begin[d] % x.shape[d] if x.shape[d] else 0)
            continue
        b = None if bmask[d] else begin[d]
        e = None if emask[d] else end[d]
        idx.append(slice(b, e, stride[d]))
    return x[tuple(idx)]


def _slice_by_size(a: _Args):
    x = np.asarray(a.get("x"))
    begin = a.ints("begin")
    size = a.ints("size")
    idx = []
    for d, (b, s) in enumerate(zip(begin, size)):
        b = b % x.shape[d] if b < 0 else b
        idx.append(slice(b, None if s == -1 else b + s))
    return x[tuple(idx)]


def _tile(a: _Args):
    return np.tile(np.asarray(a.get("x")), a.ints("reps"))


def _gather(a: _Args):
    # MIL gather with batch_dims 0 is numpy's take; negative indices count from the end.
    x = np.asarray(a.get("x"))
    axis = int(a.scalar("axis", 0))
    idx = np.asarray(a.get("indices")).astype(np.int64)
    return np.take(x, np.where(idx < 0, idx + x.shape[axis], idx), axis=axis)


def _gather_check(a: _Args, problems):
    bd = a.scalar("batch_dims", 0)
    if _is_dynamic(bd) or int(bd) != 0:
        problems.append("gather with batch_dims != 0 is not supported")


def _concat(a: _Args):
    vals = [np.asarray(v) for v in a.tuple("values")]
    axis = int(a.scalar("axis"))
    return np.concatenate(vals, axis=axis)


def _concat_check(a: _Args, problems):
    il = a.scalar("interleave", False)
    if _is_dynamic(il) or bool(il):
        problems.append("concat with interleave=True is not supported")


def _pad(a: _Args):
    x = np.asarray(a.get("x"))
    pad = a.ints("pad")
    mode = a.scalar("mode", "constant")
    n = len(pad) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    if mode == "constant":
        cv = a.scalar("constant_val", 0.0)
        return np.pad(x, widths, mode="constant", constant_values=np.asarray(cv).astype(x.dtype))
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


def _pad_check(a: _Args, problems):
    mode = a.scalar("mode", "constant")
    if _is_dynamic(mode) or mode not in ("constant", "reflect", "replicate"):
        problems.append(f"pad mode {mode!r} not supported")


# --- quantization ------------------------------------------------------------------------


def _broadcast_param(p, rank: int, axis) -> np.ndarray:
    """Scale / zero point of (de)quantize: scalar, or vector along ``axis``."""
    p = np.asarray(p)
    if p.ndim == 0:
        return p
    if p.ndim != 1 or axis is None:
        raise ValueError(f"quantization parameter of shape {p.shape} with axis {axis}")
    shape = [1] * rank
    shape[int(axis) % rank] = p.size
    return p.reshape(shape)


_QRANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def _quantize(a: _Args):
    x = _f32(a.get("input"))
    axis = a.scalar("axis", None)
    scale = _f32(_broadcast_param(a.get("scale"), x.ndim, axis))
    zp = a.get("zero_point", None)
    q = np.round(x / scale)  # round half to even, as coremltools' reference
    if zp is not None:
        q = q + _broadcast_param(zp, x.ndim, axis).astype(np.float32)
    lo, hi = _QRANGE[a.scalar("output_dtype")]
    return np.clip(q, lo, hi)


def _quantize_check(a: _Args, problems):
    dt = a.scalar("output_dtype")
    if _is_dynamic(dt) or dt not in _QRANGE:
        problems.append(f"quantize output_dtype {dt!r} not supported")


def _dequantize(a: _Args):
    x = np.asarray(a.get("input"))
    axis = a.scalar("axis", None)
    scale = _f32(_broadcast_param(a.get("scale"), x.ndim, axis))
    zp = a.get("zero_point", None)
    xf = x.astype(np.float32)
    if zp is not None:
        xf = xf - _broadcast_param(zp, x.ndim, axis).astype(np.float32)
    return xf * scale


def _constexpr_affine_dequantize(a: _Args):
    q = np.asarray(a.get("quantized_data"))
    axis = int(a.scalar("axis"))
    scale = _f32(_broadcast_param(a.get("scale"), q.ndim, axis))
    zp = _broadcast_param(a.get("zero_point"), q.ndim, axis).astype(np.float32)
    return (q.astype(np.float32) - zp) * scale


def _expand_blocks(p: np.ndarray, shape) -> np.ndarray:
    p = np.asarray(p)
    if p.ndim != len(shape):
        raise ValueError(f"blockwise parameter rank {p.ndim} != data rank {len(shape)}")
    for d, (n, m) in enumerate(zip(shape, p.shape)):
        if n % m:
            raise ValueError(f"dimension {d}: {n} not divisible into {m} blocks")
        if m != n:
            p = np.repeat(p, n // m, axis=d)
    return p


def _constexpr_blockwise_shift_scale(a: _Args):
    data = np.asarray(a.get("data"))
    out = data.astype(np.float32)
    off = a.get("offset", None)
    if off is not None:
        out = out - _expand_blocks(off, data.shape).astype(np.float32)
    return out * _f32(_expand_blocks(a.get("scale"), data.shape))


def _constexpr_cast(a: _Args):
    return np.asarray(a.get("source_val"))


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_POOL = ("x", "kernel_sizes", "strides", "pad_type", "pad", "ceil_mode")
_REDUCE = ("x", "axes", "keep_dims")
_BIN = ("x", "y")
_QPARAMS = ("input", "zero_point", "scale", "axis")

# op type -> (run function, parameter check run at load time, known parameter names).
# A parameter name not listed is refused at load time (it could change the semantics).
_HANDLERS: dict[str, tuple[Callable[[_Args], Any] | None, Callable[[_Args, list], None] | None, tuple]] = {
    "const": (None, None, ("val",)),
    "constexpr_affine_dequantize": (_constexpr_affine_dequantize, None,
                                    ("quantized_data", "zero_point", "scale", "axis")),
    "constexpr_blockwise_shift_scale": (_constexpr_blockwise_shift_scale, None, ("data", "scale", "offset")),
    "constexpr_cast": (_constexpr_cast, None, ("source_val", "output_dtype")),
    "conv": (_conv, _conv_check, ("x", "weight", "bias", "strides", "pad_type", "pad", "dilations", "groups")),
    "linear": (_linear, None, ("x", "weight", "bias")),
    "matmul": (_matmul, None, ("x", "y", "transpose_x", "transpose_y")),
    "relu": (_relu, None, ("x",)),
    "leaky_relu": (_leaky_relu, None, ("x", "alpha")),
    "max_pool": (_max_pool, _pool_check, _POOL),
    "avg_pool": (_avg_pool, _pool_check, _POOL + ("exclude_padding_from_average",)),
    "reduce_mean": (_reduce("mean"), None, _REDUCE),
    "reduce_sum": (_reduce("sum"), None, _REDUCE),
    "reduce_max": (_reduce("max"), None, _REDUCE),
    "reduce_min": (_reduce("min"), None, _REDUCE),
    "add": (_binary(np.add), None, _BIN),
    "sub": (_binary(np.subtract), None, _BIN),
    "mul": (_binary(np.multiply), None, _BIN),
    "real_div": (_binary(_real_div), None, _BIN),
    "maximum": (_binary(np.maximum), None, _BIN),
    "minimum": (_binary(np.minimum), None, _BIN),
    "identity": (_identity, None, ("x",)),
    "cast": (_cast, _cast_check, ("x", "dtype")),
    "reshape": (_reshape, None, ("x", "shape")),
    "transpose": (_transpose, None, ("x", "perm")),
    "squeeze": (_squeeze, None, ("x", "axes")),
    "expand_dims": (_expand_dims, None, ("x", "axes")),
    "flatten2d": (_flatten2d, None, ("x", "axis")),
    "slice_by_index": (_slice_by_index, None,
                       ("x", "begin", "end", "stride", "begin_mask", "end_mask", "squeeze_mask")),
    "slice_by_size": (_slice_by_size, None, ("x", "begin", "size")),
    "concat": (_concat, _concat_check, ("values", "axis", "interleave")),
    "gather": (_gather, _gather_check, ("x", "indices", "axis", "batch_dims", "validate_indices")),
    "tile": (_tile, None, ("x", "reps")),
    "pad": (_pad, _pad_check, ("x", "pad", "mode", "constant_val")),
    "quantize": (_quantize, _quantize_check, _QPARAMS + ("output_dtype",)),
    "dequantize": (_dequantize, None, _QPARAMS),
}


def supported_ops() -> frozenset[str]:
    """MIL op types this interpreter can execute."""
    return frozenset(_HANDLERS)


# --------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------


def _to_dtype(arr, var: MILVar) -> np.ndarray:
    """Round / convert a computed result to the op's declared output dtype."""
    arr = np.asarray(arr)
    if var.np_dtype is None:
        return arr
    if arr.dtype != var.np_dtype:
        arr = arr.astype(var.np_dtype)
    return arr


class MILProgram:
    """A loaded ML Program (function ``main``) that can be executed with numpy.

    Attributes:
        input_names: names of the function inputs, in declaration order.
        output_names: names of the block outputs, in declaration order.
        inputs / outputs: the corresponding :class:`MILVar` (dtype, shape).
        op_types: ``collections.Counter`` of op types over all ops (``const``
            included), e.g. ``op_types["constexpr_affine_dequantize"]``.
        ops: the ops (:class:`MILOp`) in program order.
        opset: the function's opset name (``CoreML7`` = iOS17, ...).
        unsupported: problems found at load time (only non-empty when loaded
            with ``strict=False``; :meth:`run` then raises).
    """

    def __init__(self, ops, inputs, outputs, consts, opset, unsupported, source=""):
        self.ops: list[MILOp] = ops
        self.inputs: list[MILVar] = inputs
        self.outputs: list[MILVar] = outputs
        self.input_names: list[str] = [v.name for v in inputs]
        self.output_names: list[str] = [v.name for v in outputs]
        self.op_types: collections.Counter = collections.Counter(op.type for op in ops)
        self.opset: str = opset
        self.unsupported: list[str] = unsupported
        self.source = source
        self._consts: dict[str, Any] = consts
        self._unsupported_types: set[str] = set()

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, mlpackage_path, strict: bool = True) -> "MILProgram":
        """Read an ``.mlpackage`` (or a bare ``.mlmodel`` whose ``@model_path``
        weights folder sits next to it) and decode its constants and weights.

        Raises :class:`UnsupportedMILOp` listing every op (type and name) or
        op parameter this interpreter does not implement; with
        ``strict=False`` the problems are kept in ``.unsupported`` and raised
        by :meth:`run` instead.
        """
        try:  # imported lazily: coremltools is an optional extra and slow to import
            from coremltools.proto import Model_pb2
        except ImportError as exc:
            from ..errors import BackendMissingError

            raise BackendMissingError("reading a Core ML package", "coreml", "coremltools") from exc

        path = os.fspath(mlpackage_path)
        spec_path, model_dir = _find_model_spec(path)
        spec = Model_pb2.Model()
        with open(spec_path, "rb") as fh:
            spec.ParseFromString(fh.read())
        if spec.WhichOneof("Type") != "mlProgram":
            raise ValueError(f"{path}: not an ML Program (model type {spec.WhichOneof('Type')})")
        prog = spec.mlProgram
        if "main" not in prog.functions:
            raise ValueError(f"{path}: ML Program has no 'main' function")
        fn = prog.functions["main"]
        opset = fn.opset
        if opset not in fn.block_specializations:
            raise ValueError(f"{path}: no block for opset {opset!r}")
        block = fn.block_specializations[opset]

        decoder = _ValueDecoder(model_dir)
        problems: list[str] = []
        bad_types: set[str] = set()
        inputs = [_var_from_valuetype(v.name, v.type) for v in fn.inputs]
        for v in inputs:
            if v.np_dtype is None:
                problems.append(f"function input '{v.name}' of type {v.dtype} is not supported")

        ops: list[MILOp] = []
        for i, op_spec in enumerate(block.operations):
            name = op_spec.outputs[0].name if op_spec.outputs else f"op{i}"
            if "name" in op_spec.attributes:
                try:
                    name = str(decoder.decode(op_spec.attributes["name"]))
                except ValueError:
                    pass
            op_inputs: dict[str, list[Any]] = {}
            where = f"{op_spec.type} '{name}' (op #{i})"
            try:
                for key, arg in op_spec.inputs.items():
                    bindings = []
                    for b in arg.arguments:
                        if b.WhichOneof("binding") == "name":
                            bindings.append(_Ref(b.name))
                        else:
                            bindings.append(decoder.decode(b.value))
                    op_inputs[key] = bindings
                # iOS16/17 constexpr_* (and const) keep their parameters in attributes
                for key, val in op_spec.attributes.items():
                    if key != "name" and key not in op_inputs:
                        op_inputs[key] = [decoder.decode(val)]
            except ValueError as exc:
                problems.append(f"{where}: cannot decode a parameter: {exc}")
                bad_types.add(op_spec.type)
            outs = [_var_from_valuetype(o.name, o.type) for o in op_spec.outputs]
            op = MILOp(i, name, op_spec.type, op_inputs, outs)
            ops.append(op)
            if op_spec.type not in _HANDLERS:
                problems.append(f"{where}: op type not supported")
                bad_types.add(op_spec.type)
                continue
            unknown = sorted(set(op_inputs) - set(_HANDLERS[op_spec.type][2]))
            if unknown:
                problems.append(f"{where}: unknown parameter(s) {', '.join(unknown)}")
                bad_types.add(op_spec.type)
            if len(op_spec.blocks):
                problems.append(f"{where}: ops with nested blocks are not supported")
                bad_types.add(op_spec.type)
            if len(outs) != 1 or (outs[0].np_dtype is None and outs[0].dtype != "string"):
                problems.append(f"{where}: only ops with a single tensor output are supported")
                bad_types.add(op_spec.type)

        # constants and decompressed weights, then parameter validation
        consts: dict[str, Any] = {}
        defined = set(v.name for v in inputs)
        var_types = {v.name: v for v in inputs}
        for op in ops:
            var_types.update((o.name, o) for o in op.outputs)
        for op in ops:
            where = f"{op.type} '{op.name}' (op #{op.index})"
            if op.type in bad_types and op.type not in _HANDLERS:
                defined.update(o.name for o in op.outputs)
                continue
            for bindings in op.inputs.values():
                for b in bindings:
                    if isinstance(b, _Ref) and b not in defined:
                        problems.append(f"{where}: input variable {str(b)!r} is not defined before use")
            if _is_const_type(op.type) and op.type in _HANDLERS and op.outputs:
                try:
                    if op.type == "const":
                        val = op.inputs["val"][0]
                    else:
                        val = _HANDLERS[op.type][0](_Args(op, consts))
                    val = _to_dtype(val, op.outputs[0]) if not isinstance(val, str) else val
                    _check_shape(val, op.outputs[0], where)
                    consts[op.outputs[0].name] = val
                except Exception as exc:  # noqa: BLE001 - reported as unsupported
                    problems.append(f"{where}: cannot evaluate constant: {exc}")
                    bad_types.add(op.type)
            else:
                check = _HANDLERS[op.type][1]
                if check is not None:
                    local: list[str] = []
                    try:
                        check(_Args(op, consts, dynamic=_DYNAMIC, var_types=var_types), local)
                    except Exception as exc:  # noqa: BLE001
                        local.append(f"cannot validate parameters: {exc}")
                    if local:
                        bad_types.add(op.type)
                        problems.extend(f"{where}: {p}" for p in local)
            defined.update(o.name for o in op.outputs)

        outputs = []
        for name in block.outputs:
            if name not in defined:
                problems.append(f"block output {name!r} is never defined")
            var = next((o for op in ops for o in op.outputs if o.name == name), None)
            if var is None:
                var = next((v for v in inputs if v.name == name), MILVar(name, "unknown", None, None))
            outputs.append(var)

        self = cls(ops, inputs, outputs, consts, opset, problems, source=path)
        self._unsupported_types = bad_types
        if problems and strict:
            raise UnsupportedMILOp(problems, bad_types)
        return self

    # ---------------------------------------------------------------- running
    def run(
        self,
        inputs: dict[str, np.ndarray],
        record: Callable[[str, str, np.ndarray], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Execute the program.

        Args:
            inputs: one array per function input (``input_names``); values are
                converted to the declared dtype (e.g. float64 -> float32) and
                their shape must match the declared static dimensions.
            record: optional ``record(op_name, op_type, output)`` called after
                every executed op, i.e. every op except ``const`` and the
                ``constexpr_*`` weight-decompression ops (those are evaluated
                once at load time).  ``op_name`` is the op's ``name``
                attribute, ``output`` the op's result in its declared dtype
                (np.float16 in fp16 programs), passed as a read-only array.

        Returns:
            ``{output_name: array}`` in the declared output dtypes.
        """
        if self.unsupported:
            raise UnsupportedMILOp(self.unsupported, self._unsupported_types)
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise KeyError(f"inputs: missing {missing}, unexpected {extra}; expected {self.input_names}")
        env: dict[str, Any] = dict(self._consts)
        for var in self.inputs:
            arr = _to_dtype(np.asarray(inputs[var.name]), var)
            _check_shape(arr, var, f"input '{var.name}'")
            env[var.name] = arr
        for op in self.ops:
            if _is_const_type(op.type):
                continue
            fn = _HANDLERS[op.type][0]
            out_var = op.outputs[0]
            try:
                result = _to_dtype(fn(_Args(op, env)), out_var)
            except UnsupportedMILOp:
                raise
            except Exception as exc:
                raise RuntimeError(f"{op.type} '{op.name}' (op #{op.index}) failed: {exc}") from exc
            _check_shape(result, out_var, f"{op.type} '{op.name}' (op #{op.index})")
            env[out_var.name] = result
            if record is not None:
                view = result.view()
                view.flags.writeable = False
                record(op.name, op.type, view)
        return {name: np.array(env[name]) for name in self.output_names}

    def __repr__(self):
        return (f"MILProgram({self.source!r}, opset={self.opset}, inputs={self.input_names}, "
                f"outputs={self.output_names}, ops={sum(self.op_types.values())})")


def _check_shape(arr, var: MILVar, where: str) -> None:
    if var.shape is None or isinstance(arr, str):
        return
    shape = np.shape(arr)
    ok = len(shape) == len(var.shape) and all(d is None or d == s for d, s in zip(var.shape, shape))
    if not ok:
        raise RuntimeError(f"{where}: computed shape {shape}, program declares {var.shape}")
