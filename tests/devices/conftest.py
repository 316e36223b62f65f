"""Fixtures for harness tests: real artifacts converted once from the shared tiny net."""
from __future__ import annotations

import pytest

from vanillanet_edge.converters.convert import convert_checkpoint


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_checkpoint, tmp_path_factory):
    """ONNX and OpenVINO fp32 artifacts of the shared tiny net (a few seconds)."""
    out = tmp_path_factory.mktemp("artifacts")
    outcomes = convert_checkpoint(tiny_checkpoint.path, ["onnx", "openvino"], ["fp32"], out)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return out
