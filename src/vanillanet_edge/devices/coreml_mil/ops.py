"""The ~45 MIL ops a VanillaNet-style graph needs, each a numpy function with its load-time
parameter check; _HANDLERS maps op type -> (run, check, known parameter names)."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .graph import _acc_dtype, _Args, _f32, _is_dynamic

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


def _batch_norm(a: _Args):
    """(x - mean) / sqrt(variance + epsilon) * gamma + beta over axis 1. coremltools writes
    it for a per-channel multiply-add too (fuse_elementwise_to_batchnorm): the normalization
    prepended to a raw-pixel model whose stem cannot absorb it."""
    x = np.asarray(a.get("x"))
    acc = _acc_dtype(a.out)
    shape = (1, -1) + (1,) * (x.ndim - 2)

    def param(name, default):
        v = a.get(name, None)
        return np.full(x.shape[1], default, acc) if v is None else np.asarray(v).astype(acc)

    mean, var = param("mean", 0.0), param("variance", 1.0)
    gamma, beta = param("gamma", 1.0), param("beta", 0.0)
    eps = float(a.scalar("epsilon", 1e-5))
    y = (x.astype(acc) - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + acc(eps))
    return y * gamma.reshape(shape) + beta.reshape(shape)


def _softmax(a: _Args):
    """exp(x - max) / sum over `axis` (default -1), accumulated like the reductions."""
    x = np.asarray(a.get("x")).astype(_acc_dtype(a.out))
    axis = int(a.scalar("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


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

def _classify(a: _Args):
    """(labels, probabilities): the label of each row's largest probability, and the
    probabilities themselves, rows in class order (the op's dictionary output as an array)."""
    classes = list(a.get("classes"))
    probs = np.asarray(a.get("probabilities"), np.float64)
    rows = probs.reshape(-1, probs.shape[-1])
    if rows.shape[1] != len(classes):
        raise ValueError(f"{rows.shape[1]} probabilities for {len(classes)} classes")
    labels = np.array([classes[i] for i in rows.argmax(1)], dtype=object)
    if a.op.outputs[0].shape == () and len(labels) == 1:   # one prediction: a scalar label
        labels = labels.reshape(())
    return labels, rows


def _classify_check(a: _Args, problems):
    classes = a.get("classes")
    if _is_dynamic(classes) or not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        problems.append("classes must be a constant list of strings (integer labels are not supported)")
    outs = a.op.outputs
    if len(outs) != 2 or outs[0].dtype != "string" or outs[1].dtype != "dictionaryType":
        problems.append("expected two outputs: a string label and a dictionary of probabilities")


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
    "softmax": (_softmax, None, ("x", "axis")),
    "batch_norm": (_batch_norm, None, ("x", "mean", "variance", "gamma", "beta", "epsilon")),
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
    # a classifier's last op (coremltools ClassifierConfig): two outputs, see _classify
    "classify": (_classify, _classify_check, ("probabilities", "classes")),
    "dequantize": (_dequantize, None, _QPARAMS),
}


def supported_ops() -> frozenset[str]:
    """MIL op types this interpreter can execute."""
    return frozenset(_HANDLERS)
