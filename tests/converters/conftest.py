"""Converter tests use the suite's shared digits data and tiny trained net (tests/conftest.py),
under the names these tests were written with: a Path to the checkpoint, and the data root."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_data(digits_dir):
    """The shared digits ImageFolder root (train/ and val/)."""
    return digits_dir


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_checkpoint):
    """The shared tiny net's checkpoint path (overrides the root fixture's TrainedNet)."""
    return tiny_checkpoint.path
