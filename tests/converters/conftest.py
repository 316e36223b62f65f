"""Fixtures for converter tests: real digits images and a tiny net trained on them."""
from __future__ import annotations

import pytest

from vanillanet_edge.api import make_digits, train_model
from vanillanet_edge.model.train import TrainConfig


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits") / "digits"
    make_digits(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(digits_data, tmp_path_factory):
    """vanillanet_5 at width 1/32, deep-trained briefly (act_learn reaches 1), 32x32 input."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    train_model(digits_data, path, TrainConfig(epochs=8, decay_epochs=4), progress=False)
    return path
