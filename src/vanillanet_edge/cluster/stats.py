"""Per-layer activation statistics for INT8 calibration, computed in shards and merged exactly,
here or over a Ray cluster (issue 18, part 2).

A shard is one chunk of `devices.accuracy.CHUNK` calibration images (the seeded sample a
calibration uses, decoded with the checkpoint's preprocessing by `images.load_images`), run
through the fused fp32 model with forward pre-hooks on every quantizable layer
(`calibration.layers.quantizable_layers`), recording the layer's INPUT as its integer kernel
sees it (`calibration.sensitivity.layer_input`: relu(x) for an activation's conv), which is
what `calibrate` reports and what its sensitivity quantizes. Two passes:

1. ranges: per layer min, max, element count, and the shard's float64 sum and sum of squares.
   Merging takes min of mins, max of maxes, the sum of counts and keeps every shard's sums,
   added only at the end with math.fsum (correctly rounded): exact, in any order.
2. histograms over a SHARED binning: the edges come from the merged ranges of pass 1
   (`bins` equal bins from min to max per layer), fixed before any shard runs, so every shard
   counts into the same bins and merging is an integer sum: exact, in any order.

Because every shard is the same batch wherever it runs (same images, same chunk, same torch
thread count), the merged statistics of a cluster run equal those of `calibration_statistics`
run here, bit for bit. The checkpoint travels to the workers once, content-addressed, like an
artifact in `ray_eval` (`ray_eval.materialize`).

`calibrate --ray ADDRESS` (steps.calibrate) writes these statistics, computed on the cluster,
as calibration.json's per-layer section (`report_layers`); without --ray the same function
runs here, so the file's numbers are the same either way. Its sensitivity pass (each layer
fake-quantized alone, calibration/sensitivity.py) runs here, on these ranges.

What is not done yet: the converters' own calibrators still gather their statistics
themselves, from the same CalibrationSet images, inside each toolchain: ONNX Runtime's
calibrators (minmax, percentile, entropy), NNCF's range estimators (OpenVINO), torchao's PT2E
observers (LiteRT) and MNN's quantization tool each run the model in their own graph and
collect ranges on their own tensors (with their own percentile/entropy/histogram rules);
none of them takes ranges from outside through a public API (ORT's TensorsData is the closest,
but for its own tensor names), so handing them these merged statistics is per-toolchain
work; Core ML's ranges (calibration/coreml_stats.py) are our own, local. `convert --ray`
fans out only the top-1 measurements (cluster/ray_accuracy.py).
"""
from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..calibration.coreml_stats import hist_quantile
from ..calibration.sensitivity import HIST_BINS, PERCENTILES, layer_input
from ..errors import DataError
from .ray_eval import _fail_from, _ship_spec, connect, materialize, pool_map, require_ray, rows_watched

DEFAULT_BINS = 2048


@dataclass
class LayerStats:
    """Statistics of each layer's input (as its integer kernel sees it) over some images."""

    layers: list[str]
    minimum: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)            # elements seen
    sums: dict[str, list] = field(default_factory=dict)            # per shard (sum, sum of squares)
    edges: dict[str, np.ndarray] | None = None                     # shared binning (pass 2)
    hist: dict[str, np.ndarray] | None = None                      # int64 counts per bin
    images: int = 0
    skipped: list = field(default_factory=list)                    # (file, why)

    def merge(self, other: "LayerStats") -> "LayerStats":
        """Exact and order-free: min/min, max/max, sums of integers. Histograms must share edges."""
        if other.layers != self.layers:
            raise ValueError("statistics of different layers cannot be merged")
        out = LayerStats(list(self.layers), images=self.images + other.images,
                         skipped=[*self.skipped, *other.skipped])
        for n in self.layers:
            mine, theirs = n in self.count, n in other.count
            if mine and theirs:
                out.minimum[n] = min(self.minimum[n], other.minimum[n])
                out.maximum[n] = max(self.maximum[n], other.maximum[n])
                out.count[n] = self.count[n] + other.count[n]
                out.sums[n] = [*self.sums.get(n, []), *other.sums.get(n, [])]
            elif mine or theirs:
                src = self if mine else other
                out.minimum[n], out.maximum[n], out.count[n] = src.minimum[n], src.maximum[n], src.count[n]
                out.sums[n] = list(src.sums.get(n, []))
        if (self.hist is None) != (other.hist is None):
            raise ValueError("a histogram pass cannot be merged with a range pass")
        if self.hist is not None:
            out.edges, out.hist = {}, {}
            for n in self.layers:
                if not np.array_equal(self.edges[n], other.edges[n]):
                    raise ValueError(f"histograms of {n} have different binnings")
                out.edges[n] = self.edges[n]
                out.hist[n] = self.hist[n] + other.hist[n]
        return out

    def as_dict(self) -> dict:
        d = {"layers": self.layers, "images": self.images, "skipped": len(self.skipped),
             "ranges": {n: {"min": self.minimum[n], "max": self.maximum[n], "count": self.count[n]}
                        for n in self.layers if n in self.count}}
        if self.hist is not None:
            d["histograms"] = {n: {"edges": self.edges[n].tolist(), "counts": self.hist[n].tolist()}
                               for n in self.layers}
        return d

    def mean_std(self, n: str) -> tuple[float, float]:
        """Mean and standard deviation of layer `n`'s values, from the exact sums (fsum)."""
        c = self.count[n]
        mean = math.fsum(a for a, _ in self.sums[n]) / c
        return mean, math.sqrt(max(math.fsum(b for _, b in self.sums[n]) / c - mean * mean, 0.0))


REPORT_BINS = HIST_BINS     # the histogram calibrate writes (64): the 2048 shared bins summed 32 at a time


def report_layers(stats: "LayerStats", bins: int = REPORT_BINS) -> dict[str, dict]:
    """calibrate's per-layer section: min, max, mean, std (exact), percentiles (read off the shared
    equal-width histogram, to one of its bins) and a `bins`-bin histogram (the shared bins summed,
    exactly)."""
    out = {}
    for n in stats.layers:
        edges, hist = stats.edges[n], stats.hist[n]
        step = max(1, len(hist) // bins)
        mean, std = stats.mean_std(n)
        out[n] = {"min": stats.minimum[n], "max": stats.maximum[n], "mean": mean, "std": std,
                  "elements": stats.count[n],
                  "percentiles": {str(q): hist_quantile(hist, float(edges[0]), float(edges[-1]), q / 100)
                                  for q in PERCENTILES},
                  "histogram": {"counts": np.add.reduceat(hist, np.arange(0, len(hist), step)).tolist(),
                                "edges": edges[::step].tolist()}}
    return out


def shared_edges(ranges: LayerStats, bins: int) -> dict[str, np.ndarray]:
    """`bins` equal bins from each layer's merged min to max (float64), fixed for every shard."""
    edges = {}
    for n in ranges.layers:
        lo, hi = float(ranges.minimum[n]), float(ranges.maximum[n])
        if hi <= lo:                                # a constant output: one bin around it
            hi = lo + max(abs(lo), 1.0) * 1e-6
        edges[n] = np.linspace(lo, hi, bins + 1, dtype=np.float64)
    return edges


def shard_statistics(model, layers: list[str], inputs: np.ndarray, edges: dict | None) -> LayerStats:
    """One shard: a forward pass with hooks on `layers`; ranges, and counts in `edges` if given."""
    import torch

    stats = LayerStats(list(layers), images=len(inputs))
    if edges is not None:
        stats.edges, stats.hist = dict(edges), {}
    modules = dict(model.named_modules())
    handles = []

    def hook_for(name):
        def hook(module, args):      # a module called twice adds to its own numbers
            y = layer_input(module, args[0]).detach()
            lo, hi = float(y.min()), float(y.max())
            stats.minimum[name] = min(lo, stats.minimum.get(name, lo))
            stats.maximum[name] = max(hi, stats.maximum.get(name, hi))
            stats.count[name] = stats.count.get(name, 0) + int(y.numel())
            v = y.numpy().ravel().astype(np.float64)         # numpy sums: one thread, pairwise
            stats.sums.setdefault(name, []).append((float(v.sum()), float((v * v).sum())))
            if edges is not None:
                counts, _ = np.histogram(v, bins=edges[name])
                stats.hist[name] = stats.hist.get(name, 0) + counts.astype(np.int64)
        return hook

    for n in layers:
        handles.append(modules[n].register_forward_pre_hook(hook_for(n)))
    try:
        with torch.no_grad():
            model(torch.from_numpy(inputs))
    finally:
        for h in handles:
            h.remove()
    return stats


def _model_for(checkpoint: Path, threads: int, input_size: int | None = None, variant: str | None = None,
               key: str | None = None):
    import torch

    from ..calibration.inputs import input_size_of, preprocessing_of
    from ..calibration.layers import quantizable_layers
    from ..model.adapool import replace_adaptive_max_pools
    from ..model.checkpoint import load_checkpoint
    from ..model.fuse import fuse_model

    torch.set_num_threads(threads)
    ckpt = load_checkpoint(checkpoint, variant=variant, key=key)
    size = input_size_of(ckpt, input_size)
    model = replace_adaptive_max_pools(fuse_model(ckpt.model), size).eval()
    return model, quantizable_layers(model), preprocessing_of(ckpt, size)


def _chunks(data, samples, seed, chunk):
    from ..images import ImageFolder

    records = ImageFolder(data).sample(samples, seed)
    return [records[i:i + chunk] for i in range(0, len(records), chunk)]


def _run_chunk(model, layers, prep, records, edges) -> LayerStats:
    from ..images import load_images

    loaded = load_images(records, prep, min_count=0)
    if len(loaded.inputs):
        s = shard_statistics(model, layers, loaded.inputs, edges)
    else:                                       # every file of the chunk unreadable
        s = LayerStats(list(layers))
        if edges is not None:
            s.edges, s.hist = dict(edges), {n: np.zeros(len(e) - 1, np.int64) for n, e in edges.items()}
    s.skipped = [(str(p), why) for p, why in loaded.skipped]
    return s


class StatsWorker:
    """A Ray actor: builds the fused model once, then returns one shard's statistics per row."""

    def __init__(self, payload: dict):
        checkpoint = materialize(payload["checkpoint"], payload["cache_dir"])
        self.model, self.layers, self.prep = _model_for(checkpoint, payload["threads"], **payload["model"])
        self.edges = payload["edges"]

    def __call__(self, batch: dict) -> dict:
        from ..images import ImageRecord

        out = []
        for r in range(len(batch["chunk"])):
            chunk = json.loads(batch["chunk"][r])
            records = [ImageRecord(Path(p), lab) for p, lab in zip(chunk["paths"], chunk["labels"])]
            s = _run_chunk(self.model, self.layers, self.prep, records, self.edges)
            out.append(pickle.dumps((chunk["index"], s)))
        return {"stats": np.asarray(out, dtype=object)}


def _merge_all(parts: list[LayerStats]) -> LayerStats:
    total = parts[0]
    for p in parts[1:]:
        total = total.merge(p)
    return total


def calibration_statistics(checkpoint: str | Path, data: str | Path, samples: int | None = 128, seed: int = 0,
                           bins: int = DEFAULT_BINS, address: str | None = None, workers: int | None = None,
                           threads: int = 1, cache_dir: str | Path | None = None, chunk: int | None = None,
                           local_cpus: int | None = None, input_size: int | None = None,
                           variant: str | None = None, key: str | None = None) -> LayerStats:
    """Merged per-layer ranges and histograms (over a shared binning) of a checkpoint's fused
    model on a seeded sample of `data`: here when `address` is None, else on a Ray cluster
    (auto | HOST:PORT | local). Either way the result is the same, exactly. `input_size`,
    `variant`, `key`: as for load_checkpoint / input_size_of (calibrate's options)."""
    import torch

    from ..devices.accuracy import CHUNK

    checkpoint = Path(checkpoint)
    chunks = _chunks(data, samples, seed, chunk or CHUNK)
    model_args = {"input_size": input_size, "variant": variant, "key": key}
    if address is None:
        before = torch.get_num_threads()
        try:
            model, layers, prep = _model_for(checkpoint, threads, **model_args)
            ranges = _merge_all([_run_chunk(model, layers, prep, c, None) for c in chunks])
            _check_seen(ranges, data)
            edges = shared_edges(ranges, bins)
            return _merge_all([_run_chunk(model, layers, prep, c, edges) for c in chunks])
        finally:
            torch.set_num_threads(before)      # the caller's own thread count, as it was
    require_ray("calibrate --ray (Ray Data)")
    with connect(address, local_cpus) as ray:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            spec = _ship_spec(ray, checkpoint, shared=False)
            pool = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)

            def run(edges):
                payload = {"checkpoint": spec, "cache_dir": str(cache_dir) if cache_dir else None,
                           "threads": threads, "edges": edges, "model": model_args}
                items = [{"chunk": json.dumps({"index": i, "paths": [str(r.path) for r in c],
                                               "labels": [r.label for r in c]})} for i, c in enumerate(chunks)]
                ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
                ds = pool_map(ray, ds, StatsWorker, payload, pool, threads)
                parts = dict(pickle.loads(row["stats"]) for row in rows_watched(ray, ds, address))
                if len(parts) != len(chunks):
                    from .ray_eval import ClusterError
                    raise ClusterError(f"the Ray run returned {len(parts)} of {len(chunks)} shards")
                return _merge_all([parts[i] for i in range(len(chunks))])

            ranges = run(None)
            _check_seen(ranges, data)
            return run(shared_edges(ranges, bins))
        except DataError:
            raise
        except Exception as exc:   # noqa: BLE001 - anything Ray raises ends the run cleanly
            if type(exc).__module__.startswith("vanillanet_edge"):
                raise
            raise _fail_from(exc, address) from exc


def _check_seen(ranges: LayerStats, data) -> None:
    if ranges.images == 0:
        raise DataError(f"none of the sampled images in {data} could be read",
                        hint="point at a folder of images PIL can decode (PNG, JPEG, ...)")

