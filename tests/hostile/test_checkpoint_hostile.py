"""Hostile checkpoints: metadata of the wrong type or range, zip entries that inflate far beyond
what a checkpoint needs, shapes that describe a gigantic net. Each is refused with
CheckpointError before anything big is allocated, and the CLI exits 2 with a hint.
"""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from vanillanet_edge.errors import CheckpointError
from vanillanet_edge.model import checkpoint as ckmod
from vanillanet_edge.model.checkpoint import META_KEY, load_checkpoint, save_checkpoint, size_budget
from vanillanet_edge.model.variants import create_model

CLI = str(Path(sys.executable).with_name("vanillanet-edge"))
WIDTH = 1 / 32


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_model("vanillanet_5", WIDTH, 10).eval()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    return res


def with_meta(path: Path, net, meta) -> Path:
    """Our layout ({'model': sd, 'vanillanet_edge': meta}) with the metadata given as is."""
    torch.save({"model": net.state_dict(), META_KEY: meta}, path)
    return path


GOOD_PREP = {"resize": 32, "crop": 32, "interpolation": "bicubic",
             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

BAD_META = {
    "input-size-1e8": {"input_size": 10 ** 8},
    "input-size-str": {"input_size": "224"},
    "input-size-float": {"input_size": 224.0},
    "input-size-bool": {"input_size": True},
    "input-size-negative": {"input_size": -32},
    "input-size-below-variant-min": {"input_size": 16},      # vanillanet_5 needs 32
    "input-size-2049": {"input_size": 2049},
    "variant-unhashable": {"variant": ["vanillanet_5"]},
    "variant-unknown": {"variant": "vanillanet_99"},
    "width-negative": {"width": -1.0},
    "width-nan": {"width": float("nan")},
    "num-classes-str": {"num_classes": "10"},
    "act-learn-str": {"act_learn": "1"},
    "act-learn-inf": {"act_learn": float("inf")},
    "form-other": {"form": "quantized"},
    "class-names-int": {"class_names": 10},
    "class-names-wrong-count": {"class_names": ["a", "b"]},
    "val-top1-str": {"val_top1": "high"},
    "trained-on-list": {"trained_on": ["/data"]},
    "prep-not-dict": {"preprocessing": "imagenet"},
    "prep-missing-key": {"preprocessing": {k: v for k, v in GOOD_PREP.items() if k != "std"}},
    "prep-extra-key": {"preprocessing": {**GOOD_PREP, "flip": True}},
    "prep-resize-str": {"preprocessing": {**GOOD_PREP, "resize": "32"}},
    "prep-resize-huge": {"preprocessing": {**GOOD_PREP, "resize": 10 ** 8, "crop": 32}},
    "prep-crop-over-resize": {"preprocessing": {**GOOD_PREP, "crop": 64}},
    "prep-crop-not-input-size": {"input_size": 64, "preprocessing": GOOD_PREP},
    "prep-interp-int": {"preprocessing": {**GOOD_PREP, "interpolation": 3}},
    "prep-mean-short": {"preprocessing": {**GOOD_PREP, "mean": [0.5]}},
    "prep-std-zero": {"preprocessing": {**GOOD_PREP, "std": [0, 1, 1]}},
    "prep-mean-str": {"preprocessing": {**GOOD_PREP, "mean": "0.5"}},
    "key-not-str": {3: "three"},
    "unknown-key-tensor": {"extra": torch.zeros(3)},
    "meta-list": [("input_size", 32)],
    "meta-str": "input_size=32",
    "meta-tensor": torch.zeros(4),
}


@pytest.mark.parametrize("meta", BAD_META.values(), ids=BAD_META.keys())
def test_bad_metadata_is_refused(tmp_path, net, meta):
    path = with_meta(tmp_path / "bad.pth", net, meta)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "metadata" in str(err.value) and err.value.hint


def test_good_metadata_still_loads(tmp_path, net):
    meta = {"input_size": 32, "preprocessing": GOOD_PREP, "class_names": [str(i) for i in range(10)],
            "val_top1": 0.9, "trained_on": "/data", "notes": {"free": ["form", 1, None]}}
    ck = load_checkpoint(save_checkpoint(net, tmp_path / "ok.pth", meta=meta))
    assert ck.meta["input_size"] == 32 and ck.meta["notes"] == {"free": ["form", 1, None]}


def test_info_cli_input_size_1e8_exits_2(tmp_path, net):
    """The reported crash: `info` tried to allocate 1.2e17 bytes for a 10**8-pixel input."""
    path = with_meta(tmp_path / "huge.pth", net, {"input_size": 10 ** 8})
    res = run_cli("info", str(path))
    assert res.returncode == 2
    assert "input_size" in res.stderr and "2048" in res.stderr and "hint" in res.stderr


@pytest.mark.parametrize("meta,command", [
    ({"input_size": "224"}, "info"), ({"preprocessing": {**GOOD_PREP, "std": "x"}}, "fuse"),
    ({"variant": {"a": 1}}, "fuse")], ids=["str-size-info", "str-std-fuse", "dict-variant-fuse"])
def test_info_and_fuse_cli_wrong_types_exit_2(tmp_path, net, meta, command):
    path = with_meta(tmp_path / "typed.pth", net, meta)
    extra = ["--out", str(tmp_path / "d.pth")] if command == "fuse" else []
    res = run_cli(command, str(path), *extra)
    assert res.returncode == 2 and "metadata" in res.stderr and "hint" in res.stderr, res.stderr
    assert not (tmp_path / "d.pth").exists()


@pytest.mark.parametrize("args,epoch", [
    ({"decay_epochs": "abc"}, 3), ({"decay_epochs": [1]}, 3), ({"decay_epochs": 4}, 10 ** 400),
    ({"decay_epochs": 4}, float("nan")), ({"decay_epochs": 0}, 3), ({"model": ["vanillanet_5"]}, 3),
    ("a string", 3), (None, 3),
], ids=["str", "list", "huge-epoch", "nan-epoch", "zero", "unhashable-model", "str-args", "none"])
def test_authors_args_of_odd_types_mean_an_unknown_schedule(tmp_path, net, args, epoch):
    path = tmp_path / "odd.pth"
    torch.save({"model": net.state_dict(), "epoch": epoch, "args": args}, path)
    ck = load_checkpoint(path)
    assert ck.model.act_learn == 1.0 and "assumed 1" in ck.act_learn_source


# ---- sizes --------------------------------------------------------------------------------------

def rezip(data: bytes, compress_type=zipfile.ZIP_DEFLATED) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename), compress_type=compress_type)
    return out.getvalue()


def test_deflate_bomb_is_refused_before_inflating(tmp_path):
    buf = io.BytesIO()
    torch.save({"model": torch.zeros(16 << 20)}, buf)          # 64 MiB of zeros
    path = tmp_path / "bomb.pth"
    path.write_bytes(rezip(buf.getvalue()))
    assert path.stat().st_size < 100_000
    assert torch.load(path, weights_only=True)["model"].numel() == 16 << 20   # control: torch inflates it
    with pytest.raises(CheckpointError, match="inflate") as err:
        load_checkpoint(path)
    assert err.value.hint
    res = run_cli("info", str(path))
    assert res.returncode == 2 and "inflate" in res.stderr


def test_a_deflated_real_checkpoint_still_loads(tmp_path, net):
    """Random weights barely compress: re-zipping a real checkpoint with deflate is not a bomb."""
    plain = save_checkpoint(net, tmp_path / "plain.pth")
    path = tmp_path / "deflated.pth"
    path.write_bytes(rezip(plain.read_bytes()))
    assert any(i.compress_type == zipfile.ZIP_DEFLATED for i in zipfile.ZipFile(path).infolist())
    ck = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(ck.model.state_dict().values(), net.state_dict().values()))


def test_lying_central_directory_over_budget_is_refused(tmp_path, net):
    """A stored entry whose directory claims 2 GB: more than vanillanet_5 can need."""
    data = bytearray(save_checkpoint(net, tmp_path / "v.pth").read_bytes())
    at = data.index(b"PK\x01\x02")                          # first central directory header
    struct.pack_into("<I", data, at + 24, 2_000_000_000)    # its uncompressed size
    path = tmp_path / "lying.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="vanillanet_5 needs"):
        load_checkpoint(path, variant="vanillanet_5")


def test_file_bigger_than_the_variant_needs(tmp_path):
    path = tmp_path / "big.pth"
    with open(path, "wb") as fh:                            # sparse: no disk used
        fh.truncate(size_budget("vanillanet_5") + 1)
    with pytest.raises(CheckpointError, match="more than a checkpoint of vanillanet_5 needs"):
        load_checkpoint(path, variant="vanillanet_5")
    with pytest.raises(CheckpointError):                    # without --variant: read, not a checkpoint
        load_checkpoint(tmp_path / "missing.pth")


def test_budget_covers_a_full_release_file():
    """model + EMA + Adam's two moments of the biggest variant fit the default budget."""
    numel = ckmod._train_form_numel(create_model("vanillanet_13_x1_5").config)
    assert size_budget() >= 4 * 4 * numel
    assert size_budget("vanillanet_5") < size_budget()


def test_broadcast_tensor_is_refused(tmp_path, net):
    sd = dict(net.state_dict())
    sd["stem1.0.weight"] = torch.zeros(1).expand(10 ** 6, 3, 4, 4)   # stored: one float
    path = tmp_path / "expanded.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match="stores only"):
        load_checkpoint(path)


def test_shapes_of_a_gigantic_net_are_refused_without_building_it(tmp_path):
    """Out-channel counts that fit vanillanet_5 at width 64 (about 90 G parameters): the net is
    compared on the meta device, never allocated."""
    dims = [512 * 64, 1024 * 64, 2048 * 64, 4096 * 64]
    sd = {"stem1.0.weight": torch.zeros(dims[0], 3, 4, 4), "cls2.0.weight": torch.zeros(10, 1, 1, 1)}
    for i, c in enumerate(dims[1:]):
        sd[f"stages.{i}.conv2.0.weight"] = torch.zeros(c, 1, 1, 1)
    path = tmp_path / "giant.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="do not fit vanillanet_5"):
        load_checkpoint(path)


@pytest.mark.parametrize("shape", [(), (0, 3, 4, 4), (16,)], ids=["scalar", "zero-out", "1-d"])
def test_stem_of_the_wrong_rank_is_refused(tmp_path, net, shape):
    sd = dict(net.state_dict())
    sd["stem1.0.weight"] = torch.zeros(shape)
    path = tmp_path / "rank.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_wrong_dtype_weights_are_refused(tmp_path, net):
    sd = {k: (v.to(torch.complex64) if k == "stem1.0.weight" else v) for k, v in net.state_dict().items()}
    path = tmp_path / "complex.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="not a plain weight tensor"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short", b"not a checkpoint at all" * 10])
def test_every_checkpoint_error_says_what_to_do(tmp_path, content):
    from vanillanet_edge.errors import CheckpointError
    from vanillanet_edge.model.checkpoint import load_checkpoint
    bad = tmp_path / "vanillanet_5.pth"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert info.value.hint and "hint:" in str(info.value)
