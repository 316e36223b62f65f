"""MILProgram: load an ML Program (protobuf + weights), check every op up front, run it with numpy."""
from __future__ import annotations

import collections
import os
from typing import Any, Callable

import numpy as np

from .graph import (
    _DYNAMIC,
    MILOp,
    MILVar,
    UnsupportedMILOp,
    _Args,
    _find_model_spec,
    _is_const_type,
    _Ref,
    _ValueDecoder,
    _var_from_valuetype,
)
from .ops import _HANDLERS

# Ops with more than one output, whose run function returns one value per output:
# classify returns (labels, probabilities), the probabilities as an (N, classes) array in the
# order of `MILProgram.class_labels` where Core ML's output is a {label: probability} dictionary.
MULTI_OUTPUT_OPS = frozenset({"classify"})

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
        class_labels: a classifier's labels (its ``classify`` op), else None;
            :meth:`run` returns its probabilities dictionary as an (N, classes)
            array in this order.
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
        # a classifier's labels (its classify op), in the order its probabilities are returned
        self.class_labels: list[str] | None = None

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
            from ...errors import BackendMissingError

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
            if op_spec.type in MULTI_OUTPUT_OPS:
                pass    # its check validates its outputs
            elif len(outs) != 1 or (outs[0].np_dtype is None and outs[0].dtype != "string"):
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
        classify = [op for op in ops if op.type == "classify"]
        if len(classify) == 1 and "classify" not in bad_types:
            self.class_labels = list(classify[0].inputs["classes"][0])
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
            try:
                results = fn(_Args(op, env))
                if op.type not in MULTI_OUTPUT_OPS:
                    results = (results,)
                results = [_to_dtype(r, v) for r, v in zip(results, op.outputs, strict=True)]
            except UnsupportedMILOp:
                raise
            except Exception as exc:
                raise RuntimeError(f"{op.type} '{op.name}' (op #{op.index}) failed: {exc}") from exc
            for result, out_var in zip(results, op.outputs):
                _check_shape(result, out_var, f"{op.type} '{op.name}' (op #{op.index})")
                env[out_var.name] = result
            if record is not None:     # one call per op, with its first output
                view = results[0].view()
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
