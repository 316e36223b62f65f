"""Runs that fan out over a Ray cluster (the `ray` extra): `eval --ray ADDRESS` (ray_eval.py),
`convert --eval-data DIR --ray ADDRESS` top-1 measurements (ray_accuracy.py) and `calibrate --ray
ADDRESS` per-layer statistics (stats.py).

Ray is imported inside functions, so importing this package costs nothing and a missing extra
only matters when a cluster is asked for (`BackendMissingError` names the extra).
"""
from importlib import import_module

_API = {"evaluate_on_ray": ".ray_eval", "ClusterError": ".ray_eval", "RAY_EXTRA": ".ray_eval"}
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'vanillanet_edge.cluster' has no attribute {name!r}")
