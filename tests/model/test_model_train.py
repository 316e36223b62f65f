"""Deep training of a tiny VanillaNet on real images: schedule, checkpoint layout, exact fusion."""
from __future__ import annotations

import pytest
import torch

from vanillanet_edge.api import train_model
from vanillanet_edge.calibration.digits import digits_preprocessing
from vanillanet_edge.errors import DataError
from vanillanet_edge.images import load_folder
from vanillanet_edge.model.checkpoint import load_checkpoint
from vanillanet_edge.model.fuse import fuse_model, verify_fusion
from vanillanet_edge.model.train import TrainConfig, act_learn_at
from vanillanet_edge.model.variants import create_model


def test_act_learn_schedule():
    assert [act_learn_at(e, 4) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert act_learn_at(0, 0) == 1.0


def test_training_history_follows_the_schedule(tiny_checkpoint):
    epochs, decay = tiny_checkpoint.config.epochs, tiny_checkpoint.config.decay_epochs
    assert decay < epochs
    history = tiny_checkpoint.result["history"]
    assert len(history) == epochs
    assert [h["act_learn"] for h in history] == [act_learn_at(e, decay) for e in range(epochs)]
    assert history[0]["act_learn"] == 0.0 and history[-1]["act_learn"] == 1.0
    assert history[-1]["loss"] < history[0]["loss"]
    assert tiny_checkpoint.result["act_learn"] == 1.0
    # ten classes, so chance is 10%; a few epochs already learn the digits
    assert tiny_checkpoint.result["val_top1"] >= 0.8


def test_checkpoint_is_in_the_official_training_layout(tiny_checkpoint):
    raw = torch.load(tiny_checkpoint.path, map_location="cpu", weights_only=True)
    assert {"model", "epoch", "args"} <= set(raw)
    reference = create_model("vanillanet_5", 1 / 32, num_classes=10).state_dict()
    sd = raw["model"]
    assert set(sd) == set(reference)
    assert all(sd[k].shape == reference[k].shape for k in sd)
    assert "stem1.0.weight" in sd and "stages.0.act.bn.running_var" in sd and "cls2.0.weight" in sd
    assert raw["epoch"] == tiny_checkpoint.config.epochs - 1
    assert raw["args"]["decay_epochs"] == tiny_checkpoint.config.decay_epochs and raw["args"]["model"] == "vanillanet_5"
    meta = raw["vanillanet_edge"]
    assert meta["act_learn"] == 1.0 and meta["form"] == "train"
    assert meta["input_size"] == 32 and meta["class_names"] == [str(i) for i in range(10)]
    assert meta["preprocessing"]["crop"] == 32


def test_trained_checkpoint_fuses_exactly_on_real_images(tiny_checkpoint):
    ck = load_checkpoint(tiny_checkpoint.path)
    assert ck.form == "train" and ck.model.act_learn == 1.0
    fused = fuse_model(ck.model)
    val = load_folder(tiny_checkpoint.data / "val", digits_preprocessing(), limit=64, seed=0)
    real = torch.from_numpy(val.inputs)
    check = verify_fusion(ck.model, fused, 32, real_inputs=real)
    assert check.random.rel_err < 1e-5 and check.real.rel_err < 1e-5
    assert check.real.top1_agree == 1.0
    with torch.no_grad():
        acc = float((fused(real).argmax(1) == torch.from_numpy(val.labels)).float().mean())
    assert acc >= 0.8


def test_decay_longer_than_training_is_refused(tmp_path, digits_dir):
    with pytest.raises(DataError) as err:
        train_model(digits_dir, tmp_path / "x.pth", TrainConfig(epochs=2, decay_epochs=3), progress=False)
    assert "decay_epochs" in str(err.value) and "fused" in err.value.hint
    assert not (tmp_path / "x.pth").exists()


def test_training_needs_train_and_val_folders(tmp_path, digits_dir):
    with pytest.raises(DataError):
        train_model(digits_dir / "train", tmp_path / "x.pth", TrainConfig(epochs=1, decay_epochs=1),
                    progress=False)


@pytest.mark.slow
def test_default_demo_config_reaches_95_percent(tmp_path, digits_dir, one_torch_thread):
    """The demo's settings: vanillanet_5 at width 1/32, 30 epochs (decay 15), digits at 32x32."""
    cfg = TrainConfig()
    assert (cfg.variant, cfg.width, cfg.epochs) == ("vanillanet_5", 1 / 32, 30)
    result = train_model(digits_dir, tmp_path / "demo.pth", TrainConfig(decay_epochs=15), progress=False)
    assert result["val_top1"] >= 0.95
    assert result["act_learn"] == 1.0
