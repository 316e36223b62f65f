"""The accuracy budget (--max-drop): a case plain INT8 misses, reached by keeping layers in float."""
from __future__ import annotations

import pytest
import torch

from vanillanet_edge.calibration.sensitivity import sensitivity_ranking
from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint
from vanillanet_edge.errors import VanillaNetEdgeError
from vanillanet_edge.fileio import OWNED_MARK
from vanillanet_edge.model.checkpoint import load_checkpoint, save_checkpoint
from vanillanet_edge.model.fuse import fuse_model

OUTLIER = 3000.0


@pytest.fixture(scope="module")
def outlier_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny net with one huge, useless channel feeding stages.2.conv.

    Channel 0 of stages.1.act's output is scaled by OUTLIER and stages.2.conv ignores it (zero
    weights), so the float net is unchanged. A per-tensor INT8 range for that tensor must now
    span the outlier, which leaves a handful of levels for every real channel: plain INT8 loses
    accuracy, and keeping stages.2.conv in float (no quantizer on its input) restores it.
    """
    ckpt = load_checkpoint(tiny_checkpoint)
    model = fuse_model(ckpt.model)
    with torch.no_grad():
        model.stages[1].act.weight[0] *= OUTLIER
        model.stages[1].act.bias[0] = OUTLIER
        model.stages[2].conv.weight[:, 0] = 0.0
    path = tmp_path_factory.mktemp("outlier") / "outlier.pth"
    save_checkpoint(model, path, meta={k: v for k, v in ckpt.meta.items() if k not in {"form", "act_learn"}})
    return path


def test_sensitivity_ranks_the_outlier_layer_first(outlier_checkpoint, digits_data):
    from vanillanet_edge.calibration.dataset import load_calibration
    from vanillanet_edge.images import Preprocessing

    ckpt = load_checkpoint(outlier_checkpoint)
    calib = load_calibration(digits_data / "train", Preprocessing.from_dict(ckpt.meta["preprocessing"]), 64)
    assert sensitivity_ranking(ckpt.model, calib.inputs)[0] == "stages.2.conv"


def test_max_drop_reaches_a_budget_plain_int8_misses(outlier_checkpoint, digits_data, tmp_path):
    opts = dict(calib_data=digits_data / "train", samples=64, eval_data=digits_data / "val")
    [plain] = convert_checkpoint(outlier_checkpoint, ["openvino"], ["int8"], tmp_path / "plain",
                                 int8=Int8Options(**opts))
    # plain INT8 may fail verification outright or lose accuracy: either way it misses 1 point
    if plain.ok:
        assert plain.manifest["accuracy"]["drop_points"] > 1.0
    else:
        assert "differs" in plain.error
    [budget] = convert_checkpoint(outlier_checkpoint, ["openvino"], ["int8"], tmp_path / "budget",
                                  int8=Int8Options(**opts, max_drop=1.0))
    assert budget.ok, budget.error
    acc = budget.manifest["accuracy"]
    assert acc["drop_points"] <= 1.0 and acc["budget_points"] == 1.0
    assert "stages.2.conv" in acc["kept_in_float"]
    assert budget.manifest["calibration"]["excluded_layers"] == acc["kept_in_float"]
    assert budget.manifest["int8"]["conv_int8"] < budget.manifest["int8"]["conv_total"]


def test_max_drop_needs_labelled_eval_data(tiny_checkpoint, digits_data, tmp_path):
    with pytest.raises(VanillaNetEdgeError, match="--max-drop needs labelled images"):
        convert_checkpoint(tiny_checkpoint, ["onnx"], ["int8"], tmp_path,
                           int8=Int8Options(calib_data=digits_data / "train", max_drop=1.0))


def test_empty_calibration_folder_fails_and_leaves_nothing(tiny_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    (empty / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(VanillaNetEdgeError, match="no images found"):
        convert_checkpoint(tiny_checkpoint, ["onnx"], ["int8"], tmp_path / "out",
                           int8=Int8Options(calib_data=empty))
    assert not (tmp_path / "out").exists() or [p.name for p in (tmp_path / "out").iterdir()] == [OWNED_MARK]


def test_too_few_usable_calibration_images(tiny_checkpoint, digits_data, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((digits_data / "train" / "1").glob("*.png"))[:3]:
        (few / p.name).write_bytes(p.read_bytes())
    (few / "broken.png").write_bytes(b"not a png")
    with pytest.raises(VanillaNetEdgeError, match=r"only 3 usable calibration images .*1 unreadable"):
        convert_checkpoint(tiny_checkpoint, ["onnx"], ["int8"], tmp_path / "out",
                           int8=Int8Options(calib_data=few))
