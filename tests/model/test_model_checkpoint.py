"""load_checkpoint on what people really have: release dicts, deploy files, bare and broken files."""
from __future__ import annotations

import argparse
import builtins
import copy
import os
import pickle
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from vanillanet_edge.api import fuse_checkpoint
from vanillanet_edge.errors import CheckpointError, FusionError
from vanillanet_edge.model.checkpoint import load_checkpoint, save_checkpoint
from vanillanet_edge.model.fuse import fuse_model
from vanillanet_edge.model.vanillanet import VanillaNet
from vanillanet_edge.model.variants import create_model

WIDTH = 1 / 16


@torch.no_grad()
def make_net(seed: int, name: str = "vanillanet_5", classes: int = 10) -> VanillaNet:
    """A small training-form net with random, non-trivial BN statistics."""
    torch.manual_seed(seed)
    model = create_model(name, WIDTH, classes)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(1234)
    return model.eval()


def prefixed(sd: dict) -> dict:
    return {f"module.{k}": v for k, v in sd.items()}


def release_dict(model: VanillaNet, ema: VanillaNet, epoch: int = 299, module_prefix: bool = False,
                 model_name: str = "vanillanet_5") -> dict:
    """Exactly the shape of what the authors' training script saves (utils.save_model)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.05)
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()                                    # populate exp_avg / exp_avg_sq / step
    model.eval()
    args = argparse.Namespace(
        model=model_name, batch_size=128, epochs=300, decay_epochs=100, decay_linear=True,
        input_size=224, drop=0.0, drop_path=0.0, model_ema=True, model_ema_decay=0.99996,
        opt="lamb", lr=3.5e-3, weight_decay=0.35, sched="cosine", warmup_epochs=5,
        data_path="/cache/data/imagenet", nb_classes=1000, output_dir="/cache/output",
        switch_to_deploy=None, dist_eval=True, crop_pct=0.875, mixup=0.1, cutmix=0.0,
        smoothing=0.1, seed=0, use_amp=True, update_freq=1, layer_decay=None, world_size=32)
    sd, sd_ema = model.state_dict(), ema.state_dict()
    if module_prefix:
        sd, sd_ema = prefixed(sd), prefixed(sd_ema)
    return {"model": sd, "model_ema": sd_ema, "optimizer": optimizer.state_dict(), "epoch": epoch,
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                       "growth_interval": 2000, "_growth_tracker": 0},
            "args": args}


def same_weights(model: nn.Module, sd: dict) -> bool:
    got = model.state_dict()
    return set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


@pytest.fixture(scope="module")
def nets():
    """(model, ema): two different nets of the same variant; the EMA is what evaluation uses."""
    return make_net(0), make_net(1)


@pytest.fixture
def x():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


# ---- the release format -----------------------------------------------------------------------

@pytest.mark.parametrize("module_prefix", [False, True])
def test_release_dict_loads_and_uses_model_ema(tmp_path, nets, x, module_prefix):
    model, ema = copy.deepcopy(nets[0]), nets[1]
    path = tmp_path / "vanillanet_5.pth"
    torch.save(release_dict(model, ema, module_prefix=module_prefix), path)
    ck = load_checkpoint(path)
    assert ck.weights_key == "model_ema"
    assert "'model_ema'" in ck.describe()
    assert ck.form == "train" and ck.config.name == "vanillanet_5"
    assert ck.config.width == pytest.approx(WIDTH) and ck.config.num_classes == 10
    assert same_weights(ck.model, ema.state_dict())
    assert ck.model.act_learn == 1.0                # epoch 299 of a 100-epoch decay
    assert not ck.model.training
    with torch.no_grad():
        assert torch.equal(ck.model(x), ema(x))
        assert not torch.allclose(ck.model(x), model(x))
    assert len(ck.sha256) == 64


def test_key_model_overrides_the_ema(tmp_path, nets):
    model, ema = copy.deepcopy(nets[0]), nets[1]
    path = tmp_path / "release.pth"
    payload = release_dict(model, ema, module_prefix=True)
    torch.save(payload, path)
    ck = load_checkpoint(path, key="model")
    assert ck.weights_key == "model"
    assert same_weights(ck.model, model.state_dict())
    with pytest.raises(CheckpointError, match="no entry 'model_emaa'"):
        load_checkpoint(path, key="model_emaa")
    with pytest.raises(CheckpointError, match="'optimizer' is not a state_dict"):
        load_checkpoint(path, key="optimizer")


def test_release_mid_schedule_is_detected_and_refused_by_fusion(tmp_path, nets):
    path = tmp_path / "epoch50.pth"
    torch.save(release_dict(copy.deepcopy(nets[0]), nets[1], epoch=50), path)
    ck = load_checkpoint(path)
    assert ck.model.act_learn == pytest.approx(0.5)
    with pytest.raises(FusionError):
        fuse_model(ck.model)


def test_args_naming_another_variant_is_refused(tmp_path, nets):
    path = tmp_path / "mislabelled.pth"
    torch.save(release_dict(copy.deepcopy(nets[0]), nets[1], model_name="vanillanet_6"), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "vanillanet_6" in str(err.value) and "vanillanet_5" in str(err.value)


def test_args_naming_an_unknown_model_falls_back_to_inference(tmp_path, nets):
    path = tmp_path / "custom_name.pth"
    torch.save(release_dict(copy.deepcopy(nets[0]), nets[1], model_name="my_vanillanet"), path)
    ck = load_checkpoint(path)
    assert ck.config.name == "vanillanet_5" and "inferred" in ck.variant_source


# ---- other accepted forms ---------------------------------------------------------------------

def test_deploy_form_dict(tmp_path, nets, x):
    fused = fuse_model(nets[1])
    path = tmp_path / "deploy.pth"
    torch.save({"model": fused.state_dict()}, path)      # the authors' --switch_to_deploy output
    ck = load_checkpoint(path)
    assert ck.form == "deploy" and ck.model.deploy and ck.weights_key == "model"
    assert same_weights(ck.model, fused.state_dict())
    with torch.no_grad():
        assert torch.equal(ck.model(x), fused(x))


def test_bare_state_dict(tmp_path, nets, x):
    path = tmp_path / "bare.pt"
    torch.save(nets[0].state_dict(), path)
    ck = load_checkpoint(path)
    assert ck.weights_key is None and "bare state_dict" in ck.describe()
    assert same_weights(ck.model, nets[0].state_dict())
    with torch.no_grad():
        assert torch.equal(ck.model(x), nets[0](x))


def test_safetensors(tmp_path, nets, x):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file(nets[0].state_dict(), str(path))
    ck = load_checkpoint(path)
    assert ck.form == "train" and ck.weights_key is None
    with torch.no_grad():
        assert torch.equal(ck.model(x), nets[0](x))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(bad)


def test_our_own_checkpoint_round_trip(tmp_path, nets, x):
    model = copy.deepcopy(nets[0])
    model.act_learn = 0.75
    path = save_checkpoint(model, tmp_path / "ours.pth", meta={"input_size": 32}, epoch=3,
                           args={"decay_epochs": 4})
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"model", "epoch", "args"} and raw["epoch"] == 3
    ck = load_checkpoint(path)
    assert ck.model.act_learn == 0.75 and ck.meta["input_size"] == 32
    assert ck.config.name == "vanillanet_5" and "inferred" not in ck.variant_source  # from our metadata
    with torch.no_grad():
        assert torch.equal(ck.model(x), model(x))


def test_reduced_width_x1_5_is_ambiguous_and_says_so(tmp_path):
    model = create_model("vanillanet_13_x1_5_ada_pool", 1 / 32, 10)
    path = tmp_path / "ada.pth"
    torch.save(model.state_dict(), path)
    ck = load_checkpoint(path)                      # no name anywhere: shapes alone cannot tell
    assert "also fit" in ck.variant_source and "--variant" in ck.variant_source
    ck = load_checkpoint(path, variant="vanillanet_13_x1_5_ada_pool")
    assert ck.config.name == "vanillanet_13_x1_5_ada_pool" and ck.config.ada_pool


# ---- refusals ---------------------------------------------------------------------------------

def test_wrong_explicit_variant(tmp_path, nets):
    path = tmp_path / "v5.pth"
    torch.save({"model": nets[0].state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, variant="vanillanet_9")
    msg = str(err.value)
    assert "do not fit vanillanet_9" in msg and "3 stages" in msg and "vanillanet_5" in msg
    assert err.value.hint


def test_wrong_class_count(tmp_path, nets):
    path = tmp_path / "v5.pth"
    torch.save(nets[0].state_dict(), path)
    with pytest.raises(CheckpointError, match="10 classes, not 1000"):
        load_checkpoint(path, num_classes=1000)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "nope.pth")
    assert "not found" in str(err.value) and "hint" in str(err.value)
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file(tmp_path, nets, legacy):
    full = tmp_path / "full.pth"
    torch.save({"model": nets[0].state_dict()}, full, _use_new_zipfile_serialization=not legacy)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(cut)
    assert "truncated" in str(err.value) and str(len(data) // 2) in str(err.value)


@pytest.mark.parametrize("content", [
    pytest.param(random.Random(0).randbytes(4096), id="random-bytes"),     # seeded: same bytes each run
    pytest.param(b"this is a text file, not a checkpoint\n" * 20, id="text"),
    pytest.param(b"", id="empty"),
    pytest.param(b"PK\x03\x04" + b"\x00" * 100, id="broken-zip"),
])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    assert err.value.hint
    assert "construct" not in str(err.value)   # not mistaken for a refused code-running pickle


class RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class RunsPython:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("payload_cls", [RunsShell, RunsPython])
@pytest.mark.parametrize("writer", ["torch.save", "torch.save-in-release-dict", "pickle-2", "pickle-default"])
def test_code_running_pickle_is_refused_and_not_run(tmp_path, nets, payload_cls, writer):
    marker = tmp_path / "MARKER"
    evil = payload_cls(marker)
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save({"model": evil}, path)
    elif writer == "torch.save-in-release-dict":
        torch.save({"model": nets[0].state_dict(), "epoch": 1, "args": evil}, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(evil, fh, protocol=2 if writer == "pickle-2" else pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert not marker.exists()
    assert "nothing from the file was executed" in str(err.value)
    if writer != "pickle-default":       # protocol >= 4 is refused before any global is read
        assert ("system" if payload_cls is RunsShell else "exec") in str(err.value)


def test_the_code_running_pickle_is_live(tmp_path):
    """Control for the test above: an unsafe loader really would run the payload."""
    marker = tmp_path / "MARKER"
    pickle.loads(pickle.dumps(RunsPython(marker)))
    assert marker.read_text() == "pwned"


def test_missing_key_is_named(tmp_path, nets):
    sd = dict(nets[0].state_dict())
    del sd["stages.1.act.bn.running_var"]
    del sd["cls1.3.weight"]
    path = tmp_path / "missing.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "missing" in msg and "stages.1.act.bn.running_var" in msg and "cls1.3.weight" in msg


def test_misshaped_key_is_named(tmp_path, nets):
    sd = dict(nets[0].state_dict())
    c = sd["stages.0.act.weight"].shape[0]
    sd["stages.0.act.weight"] = torch.zeros(c, 1, 5, 5)          # act_num 2 instead of 3
    sd["unexpected.thing"] = torch.zeros(3)
    path = tmp_path / "misshaped.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "mis-shaped" in msg and f"stages.0.act.weight ({c}, 1, 5, 5) != ({c}, 1, 7, 7)" in msg
    assert "unexpected" in msg and "unexpected.thing" in msg


def test_not_a_vanillanet_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a VanillaNet state_dict"):
        load_checkpoint(path)
    path2 = tmp_path / "nothing.pth"
    torch.save({"epoch": 3, "optimizer": {"state": {}}}, path2)
    with pytest.raises(CheckpointError, match="no state_dict found"):
        load_checkpoint(path2)


# ---- the deploy file we write -----------------------------------------------------------------

def test_fuse_checkpoint_output_has_official_deploy_keys(tmp_path, tiny_checkpoint):
    out = tmp_path / "tiny-deploy.pth"
    result = fuse_checkpoint(tiny_checkpoint.path, out)
    assert out.exists() and result.report_path == Path(str(out) + ".json")
    raw = torch.load(out, map_location="cpu", weights_only=True)
    sd = raw["model"]
    fresh = create_model("vanillanet_5", 1 / 32, num_classes=10, deploy=True)
    fresh.load_state_dict(sd, strict=True)            # exactly the authors' deploy keys
    fresh.eval()
    source = load_checkpoint(tiny_checkpoint.path).model
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out_fused = source(x), fresh(x)
    assert float((out_fused - ref).norm() / ref.norm()) < 1e-5
    assert torch.equal(out_fused.argmax(1), ref.argmax(1))
    # and our loader reads it back as deploy form
    ck = load_checkpoint(out)
    assert ck.form == "deploy" and ck.meta["input_size"] == 32
