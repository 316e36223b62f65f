"""Deep baselines from timm with non-degenerate random weights, through the shared converters."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from vanillanet_edge.converters.baselines import prepare_baseline, prepare_vanillanet_random
from vanillanet_edge.converters.convert import convert_one
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.model.baselines import BASELINES, build_baseline, count_macs, zero_gammas
from vanillanet_edge.model.profile import summarize

timm = pytest.importorskip("timm")


@pytest.fixture(scope="module")
def resnet18():
    return build_baseline("resnet18", stats_input_size=32)


def test_timm_zero_inits_gammas_and_we_do_not(resnet18):
    plain = timm.create_model("resnet18", pretrained=False)
    assert zero_gammas(plain), "timm no longer zero-inits the last BN of each block: update the notes"
    assert zero_gammas(resnet18) == []
    bns = [m for m in resnet18.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 20
    for bn in bns:
        assert 0.5 <= float(bn.weight.detach().min()) and float(bn.weight.detach().max()) <= 1.5
        assert float(bn.running_var.min()) > 0 and not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not resnet18.training
    with torch.no_grad():
        y = resnet18(torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    assert torch.isfinite(y).all() and len(set(y.argmax(1).tolist())) > 1   # depends on the input


def test_mac_counts_match_known_figures(resnet18):
    # ResNet-18: 1.82 GMACs at 224 (torchvision's model card: 1.81 GFLOPS, i.e. MACs)
    assert count_macs(resnet18, 224)["macs"] == pytest.approx(1.814e9, rel=0.01)
    # ResNet-50: 4.09 GMACs (the paper's "4.1 FLOPs")
    r50 = timm.create_model("resnet50", pretrained=False)
    assert count_macs(r50, 224)["macs"] == pytest.approx(4.089e9, rel=0.01)
    assert sum(p.numel() for p in r50.parameters()) == pytest.approx(25.56e6, rel=0.01)


def test_registry_labels_published_figures():
    assert {"resnet50", "resnet18", "mobilenetv3_large_100", "convnext_tiny"} <= set(BASELINES)
    assert BASELINES["resnet50"].depth == 50
    for b in BASELINES.values():
        assert b.published_source.startswith("published") and 60 < b.published_top1 < 90 and b.backends


def test_small_baseline_converts_to_onnx_and_verifies(tmp_path):
    prep = prepare_baseline("resnet18", input_size=64, n_verify=8)
    meta = prep.model_meta
    assert meta["family"] == "baseline" and meta["depth"] == 18 and meta["definition"] == f"timm {timm.__version__}"
    assert meta["published_top1"] == BASELINES["resnet18"].published_top1
    assert prep.source["pretrained"] is False and "random" in prep.source["weights"]
    assert "random normal" in prep.inputs_source
    outcome = convert_one(prep, "onnx", "fp32", tmp_path)
    assert outcome.ok, outcome.error
    m = outcome.manifest
    assert m["verification"]["passed"] and m["verification"]["rel_err"] < 1e-4
    # nothing pruned: the fp32 artifact holds every parameter
    assert m["artifact"]["size_bytes"] >= 4 * meta["params"] * 0.98
    [ref] = resolve([outcome.folder])
    assert ref.runtime == "onnxruntime" and ref.manifest["model"]["macs"] == meta["macs"]


def test_random_vanillanet_is_full_size_and_not_degenerate():
    prep = prepare_vanillanet_random("vanillanet_5", input_size=64, n_verify=8)
    meta = prep.model_meta
    assert meta["family"] == "vanillanet" and meta["depth"] == 5 and meta["published_top1"] == 72.49
    assert meta["params"] == pytest.approx(15.52e6, rel=0.01)
    assert count_macs(prep.fused, 64)["macs"] == summarize(prep.fused, 64)["macs"] == meta["macs"]
    assert np.isfinite(prep.reference).all() and len(set(prep.reference.argmax(1).tolist())) > 1
    assert prep.name == "vanillanet_5-random"


def test_baseline_command_writes_benchable_artifacts(tmp_path):
    from vanillanet_edge.cli.report_cli import baseline_cmd

    result = CliRunner().invoke(baseline_cmd, ["resnet18", "--target", "onnx", "--input-size", "32",
                                               "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [ref] = resolve([tmp_path])
    assert ref.name == "resnet18-random-onnx-fp32" and ref.manifest["input"]["shape"] == [1, 3, 32, 32]
    assert ref.manifest["source"]["library"] == "timm"
