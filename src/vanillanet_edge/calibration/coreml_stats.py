"""Activation ranges of a Core ML ML Program over a whole calibration set, with our interpreter.

coremltools 9.0 cannot do this itself here: its calibration (`linear_quantize_activations`)
needs `MLModel.predict` (macOS only), and even there `ModelDebugger.record_intermediate_output`
overwrites the running min/max with the current sample's before comparing, so only the last
sample's range survives. We run the float program with the numpy MIL interpreter
(devices/coreml_mil/) batch by batch and keep, per variable, only a running min/max (and for
"percentile" a fixed-size histogram): memory does not grow with the number of samples.

Statistics are keyed by the *output variable name* of each op (what coremltools' activation
passes look up: `activation_stats[var.name]`), never by op name: op names and variable names
live in different namespaces in MIL and do collide (a conv op named `input_3_cast_fp16` next to
a variable of another op with that name is legal).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

METHODS = ("minmax", "percentile")
HIST_BINS = 4096          # per variable; the percentile is exact to (max - min) / 4096
FP16_MAX = 65504.0        # coremltools casts the ranges to float16 (optimize/_utils.py)
MIN_RANGE = 1e-4          # |range| below this would round to a zero fp16 scale (range / 127)


@dataclass
class ActivationStats:
    """Per-variable ranges over `samples` calibration images.

    minmax[var] = (min, max) over every element of every sample;
    ranges[var] = {"rmin", "rmax"}: what the chosen method hands to coremltools.
    """

    method: str
    samples: int
    percentile: float | None
    minmax: dict[str, tuple[float, float]]
    ranges: dict[str, dict[str, float]]
    producers: dict[str, tuple[str, str]] = field(default_factory=dict)   # var -> (op name, op type)

    def for_coremltools(self) -> dict[str, dict[str, float]]:
        """The dict coremltools' activation passes read ({var: {"rmin", "rmax"}}), made safe
        for float16 scales: clipped to the fp16 range and never a zero-width range (a zero
        scale would divide by zero in insert_suffix_quantize_dequantize_pair)."""
        out = {}
        for var, r in self.ranges.items():
            lo = float(np.clip(r["rmin"], -FP16_MAX, FP16_MAX))
            hi = float(np.clip(r["rmax"], -FP16_MAX, FP16_MAX))
            if max(abs(lo), abs(hi)) < MIN_RANGE:  # a dead (all ~0) tensor: any small scale works
                hi = max(hi, MIN_RANGE)
            out[var] = {"rmin": lo, "rmax": hi}
        return out


def executed_ops(program) -> list:
    """The ops `MILProgram.run` calls `record` for, in order (consts and constexpr_* are not)."""
    return [op for op in program.ops if not (op.type == "const" or op.type.startswith("constexpr_"))]


class _Recorder:
    """A `record` callback that knows which op (and so which output variable) each call is for.

    `run` calls record once per executed op, in program order; we walk the same list and check
    the op name and type agree, so a change in the interpreter cannot silently shift the keys.
    """

    def __init__(self, program, batch: int, sink):
        self._ops = executed_ops(program)
        self._batch = self._valid = batch
        self._sink = sink
        self._it: Iterator = iter(())

    def start(self, valid: int) -> None:
        self._valid = valid
        self._it = iter(self._ops)

    def __call__(self, op_name: str, op_type: str, out: np.ndarray) -> None:
        op = next(self._it, None)
        if op is None or op.name != op_name or op.type != op_type:
            raise RuntimeError(f"interpreter recorded {op_type} '{op_name}' where "
                               f"{'nothing' if op is None else op.type + ' ' + repr(op.name)} was expected")
        if not np.issubdtype(out.dtype, np.floating) or out.size == 0:
            return
        if self._valid < self._batch and out.ndim and out.shape[0] == self._batch:
            out = out[: self._valid]                  # a padded last batch: drop the padding
        self._sink(op.outputs[0].name, out)


def _batches(inputs: np.ndarray, batch: int):
    """(padded batch, number of real samples in it); padding repeats the last sample."""
    for i in range(0, len(inputs), batch):
        chunk = inputs[i:i + batch]
        valid = len(chunk)
        if valid < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - valid, axis=0)])
        yield chunk, valid


def collect_activation_stats(program, inputs: np.ndarray, method: str = "minmax",
                             percentile: float = 99.99, bins: int = HIST_BINS) -> ActivationStats:
    """Ranges of every float variable of `program` (a float MILProgram) over all `inputs`.

    minmax: rmin/rmax = the min/max over every element of every sample.
    percentile: two-sided, on the signed values: rmin = the (100 - p)th and rmax = the pth
    percentile of all elements of all samples (p = `percentile`), from a `bins`-bin histogram
    between the true min and max (a second pass). ReLU outputs keep rmin = 0; with
    coremltools' linear_symmetric mode the scale then follows max(|rmin|, |rmax|).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    if len(program.inputs) != 1:
        raise ValueError("calibration supports single-input programs only")
    var = program.inputs[0]
    batch = var.shape[0] if var.shape and var.shape[0] else 1
    inputs = np.asarray(inputs, dtype=np.float32)
    if len(inputs) == 0:
        raise ValueError("no calibration inputs")

    lo: dict[str, float] = {}
    hi: dict[str, float] = {}

    def take_range(name: str, out: np.ndarray) -> None:
        a, b = float(out.min()), float(out.max())
        lo[name] = min(a, lo.get(name, a))
        hi[name] = max(b, hi.get(name, b))

    recorder = _Recorder(program, batch, take_range)
    for chunk, valid in _batches(inputs, batch):
        take_range(var.name, chunk[:valid])
        recorder.start(valid)
        program.run({var.name: chunk}, record=recorder)
    minmax = {k: (lo[k], hi[k]) for k in lo}

    if method == "minmax":
        ranges = {k: {"rmin": a, "rmax": b} for k, (a, b) in minmax.items()}
    else:
        hists: dict[str, np.ndarray] = {k: np.zeros(bins, np.int64) for k in minmax}

        def take_hist(name: str, out: np.ndarray) -> None:
            a, b = minmax[name]
            if b > a:
                hists[name] += np.histogram(out.astype(np.float32, copy=False), bins=bins, range=(a, b))[0]

        recorder = _Recorder(program, batch, take_hist)
        for chunk, valid in _batches(inputs, batch):
            take_hist(var.name, chunk[:valid])
            recorder.start(valid)
            program.run({var.name: chunk}, record=recorder)
        ranges = {}
        for k, (a, b) in minmax.items():
            if b > a:
                ranges[k] = {"rmin": hist_quantile(hists[k], a, b, 1 - percentile / 100),
                             "rmax": hist_quantile(hists[k], a, b, percentile / 100)}
            else:
                ranges[k] = {"rmin": a, "rmax": b}

    producers = {op.outputs[0].name: (op.name, op.type) for op in executed_ops(program)}
    return ActivationStats(method, int(len(inputs)), percentile if method == "percentile" else None,
                           minmax, ranges, producers)


def hist_quantile(counts: np.ndarray, lo: float, hi: float, q: float) -> float:
    """The q-quantile (0..1) of the values a histogram over [lo, hi] counted, linear in a bin."""
    total = counts.sum()
    if total == 0:
        return lo
    cdf = np.cumsum(counts)
    target = q * total
    i = int(np.searchsorted(cdf, target, side="left"))
    i = min(i, len(counts) - 1)
    before = cdf[i - 1] if i else 0
    frac = (target - before) / counts[i] if counts[i] else 0.0
    width = (hi - lo) / len(counts)
    return float(np.clip(lo + (i + frac) * width, lo, hi))
