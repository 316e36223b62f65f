"""Every official variant converts to every target at 224 and verifies (reduced width keeps it quick).

Full size is a matter of memory and minutes, not of different ops: the graph of each variant
is the same at any width. Full-size runs are recorded in benchmarks/ and the issue notes.
"""
from __future__ import annotations

import pytest
import torch

from vanillanet_edge.converters.convert import convert_checkpoint
from vanillanet_edge.converters.registry import target_names
from vanillanet_edge.model.checkpoint import save_checkpoint
from vanillanet_edge.model.variants import VARIANTS, create_model

WIDTH = 1 / 64


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_converts_to_all_targets_at_224(variant, tmp_path):
    torch.manual_seed(0)
    model = create_model(variant, width=WIDTH, num_classes=10)
    with torch.no_grad():   # non-degenerate BN statistics, so outputs depend on the input
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-0.2, 0.2)
                m.weight.uniform_(0.5, 1.5)
    ckpt = save_checkpoint(model, tmp_path / f"{variant}.pth", meta={"input_size": 224})
    outcomes = convert_checkpoint(ckpt, ["all"], ["fp32"], tmp_path / "out")
    assert [o.target for o in outcomes] == target_names()
    for o in outcomes:
        assert o.ok, f"{variant} {o.target}: {o.error}"
        v = o.manifest["verification"]
        assert v["rel_err"] < 1e-4 and v["top1_agree"] >= 0.99, (variant, o.target, v)
        assert o.manifest["input"]["shape"][1:] in ([3, 224, 224], [224, 224, 3])
