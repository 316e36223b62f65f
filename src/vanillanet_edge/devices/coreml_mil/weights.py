"""MIL data types and the MILBlob weights file (``weights/weight.bin``) reader."""
from __future__ import annotations

import numpy as np

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
