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

from .graph import MILOp, MILVar, UnsupportedMILOp
from .ops import supported_ops
from .program import MILProgram

__all__ = ["MILOp", "MILProgram", "MILVar", "UnsupportedMILOp", "supported_ops"]
