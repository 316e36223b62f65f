"""The program's values and ops as read from the protobuf (MILVar, MILOp, inline value decoding),
the error for what is not implemented, and the resolved arguments an op runs on (_Args)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .weights import _MIL_DTYPE_NAME, _NP_DTYPE, _STRING, _SUB_BYTE, _BlobFile, _unpack_sub_byte


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
        if (value.type.WhichOneof("type") == "listType" and value.WhichOneof("value") == "immediateValue"
                and value.immediateValue.WhichOneof("value") == "list"):
            # a classify op's class labels: a list of string scalars
            return [self.decode(v) for v in value.immediateValue.list.values]
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
