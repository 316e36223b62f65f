"""Calibration statistics in shards: merged exactly (min/max, histograms over a shared binning),
and a two-node Ray cluster's merged statistics equal a local run's, bit for bit."""
from __future__ import annotations

import numpy as np

from vanillanet_edge.cluster.stats import LayerStats, calibration_statistics, shared_edges


def _shard(values: dict, edges=None) -> LayerStats:
    s = LayerStats(sorted(values), images=1)
    for n, v in values.items():
        s.minimum[n], s.maximum[n], s.count[n] = float(v.min()), float(v.max()), v.size
    if edges is not None:
        s.edges = edges
        s.hist = {n: np.histogram(v, bins=edges[n])[0].astype(np.int64) for n, v in values.items()}
    return s


def test_merge_is_exact_in_any_order():
    rng = np.random.default_rng(0)
    shards = [{"a": rng.standard_normal(1000).astype(np.float32) * (k + 1),
               "b": rng.random(500).astype(np.float32) - k} for k in range(7)]
    whole = {n: np.concatenate([s[n] for s in shards]) for n in ("a", "b")}
    ranges = _shard(whole)
    merged = [_shard(s) for s in shards]
    for order in ([0, 1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1, 0], [3, 0, 6, 1, 5, 2, 4]):
        m = merged[order[0]]
        for i in order[1:]:
            m = m.merge(merged[i])
        assert (m.minimum, m.maximum, m.count) == (ranges.minimum, ranges.maximum, ranges.count)
    edges = shared_edges(ranges, 64)
    one = _shard(whole, edges)
    parts = [_shard(s, edges) for s in shards]
    m = parts[5]
    for p in parts[:5] + parts[6:]:
        m = m.merge(p)
    for n in ("a", "b"):
        assert np.array_equal(m.hist[n], one.hist[n]) and m.hist[n].sum() == whole[n].size


def test_cluster_statistics_equal_local(ray_cluster, tiny_checkpoint, tmp_path):
    val = tiny_checkpoint.data / "val"
    local = calibration_statistics(tiny_checkpoint.path, val, samples=200, bins=128)
    remote = calibration_statistics(tiny_checkpoint.path, val, samples=200, bins=128,
                                    address=ray_cluster.address, cache_dir=tmp_path / "cache")
    assert local.layers == remote.layers and len(local.layers) >= 5 and local.images == remote.images == 200
    assert (local.minimum, local.maximum, local.count) == (remote.minimum, remote.maximum, remote.count)
    for n in local.layers:
        assert np.array_equal(local.edges[n], remote.edges[n])
        assert np.array_equal(local.hist[n], remote.hist[n])
        assert local.hist[n].sum() == local.count[n]
