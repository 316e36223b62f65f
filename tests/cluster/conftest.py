"""Fixtures for the Ray cluster tests: a real two-node Ray cluster on 127.0.0.1 (raycluster.py)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# tests/ has no __init__.py files: pytest puts this folder on sys.path, so raycluster.py imports
# as a top-level module (test modules here may do the same).
from raycluster import RAY_ENV, LocalRayCluster

os.environ.update(RAY_ENV)      # before ray is first imported: the driver in this process uses the token

pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A two-node Ray cluster on 127.0.0.1, one CPU per node, shared by every test here (about
    15-25 s to start on 2 busy cores, 10 s to stop)."""
    # A short private temp dir: Ray's unix sockets live there (paths are limited to 107 bytes).
    cluster = LocalRayCluster(Path(tempfile.mkdtemp(prefix="vne-ray-", dir="/tmp")),
                              tmp_path_factory.mktemp("ray-logs"))
    try:
        cluster.start(nodes=2)
        yield cluster
    finally:
        cluster.stop()
