"""Parameter and MAC counts against the authors' published numbers (facts sheet table)."""
from __future__ import annotations

import pytest
import torch

from vanillanet_edge.api import model_info
from vanillanet_edge.model.variants import create_model

# name: (params M deployed, GMACs) exactly as the facts sheet prints them.
PUBLISHED_TABLE = {
    "vanillanet_5": (15.5, 5.2),
    "vanillanet_6": (32.5, 6.0),
    "vanillanet_7": (32.8, 6.9),
    "vanillanet_8": (37.1, 7.7),
    "vanillanet_9": (41.4, 8.6),
    "vanillanet_10": (45.7, 9.4),
    "vanillanet_11": (50.0, 10.3),
    "vanillanet_12": (54.3, 11.1),
    "vanillanet_13": (58.6, 11.9),
    "vanillanet_13_x1_5": (127.8, 26.5),
    "vanillanet_13_x1_5_ada_pool": (127.8, 48.9),
}
BIG = {"vanillanet_13_x1_5", "vanillanet_13_x1_5_ada_pool"}   # ~130M/240M params: seconds each


def meta_params(name, deploy):
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name, deploy=deploy).parameters())


@pytest.mark.parametrize("name", list(PUBLISHED_TABLE))
def test_deployed_param_count_cheap(name):
    """All 11 variants, counted on the meta device (no memory, no forward)."""
    assert round(meta_params(name, deploy=True) / 1e6, 1) == PUBLISHED_TABLE[name][0]


def test_training_form_vanillanet_5_has_more_params():
    assert round(meta_params("vanillanet_5", deploy=False) / 1e6, 2) == 22.33
    assert round(meta_params("vanillanet_5", deploy=True) / 1e6, 2) == 15.52


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n
                                  for n in PUBLISHED_TABLE])
def test_model_info_matches_published(name):
    params_m, gmacs = PUBLISHED_TABLE[name]
    info = model_info(name)
    assert info["input_size"] == 224 and info["form"] == "deploy"
    assert round(info["params_deploy"] / 1e6, 1) == params_m
    assert info["params_train"] > info["params_deploy"]
    assert abs(info["macs"] / 1e9 - gmacs) / gmacs < 0.01, info["macs"]
    assert info["published"]["params_m"] == params_m and info["published"]["gmacs"] == gmacs
    # The per-layer table accounts for every deployed parameter and MAC.
    assert sum(r["params"] for r in info["layers"]) == info["params_deploy"]
    assert sum(r["macs"] for r in info["layers"]) == info["macs"]
    # "Depth" in the name counts non-linear layers plus one.
    assert info["depth"] == int(name.split("_")[1])


def test_model_info_vanillanet_5_details():
    info = model_info("vanillanet_5")
    assert round(info["params_train"] / 1e6, 2) == 22.33
    assert round(info["params_deploy"] / 1e6, 2) == 15.52
    assert info["macs"] == pytest.approx(5.2e9, rel=0.01)
    stem = next(r for r in info["layers"] if r["name"] == "stem.0")
    # 4x4 stride-4 conv to 512 channels: 56x56 output, 3*4*4*512 weights each used 56*56 times.
    assert tuple(stem["out_shape"]) == (512, 56, 56)
    assert stem["macs"] == 56 * 56 * 512 * 3 * 4 * 4


def test_model_info_reduced_width_has_no_published_numbers():
    info = model_info("vanillanet_5", width=1 / 32, num_classes=10, input_size=32)
    assert info["published"] is None
    assert info["num_classes"] == 10 and info["input_size"] == 32
    assert info["params_deploy"] == sum(p.numel() for p in create_model(
        "vanillanet_5", 1 / 32, 10, deploy=True).parameters())
