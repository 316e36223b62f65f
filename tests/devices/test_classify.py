"""`vanillanet-edge classify`: the right digit for a real digits image through every target's
own runtime (Core ML through the MIL interpreter), the checkpoint too; hostile inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vanillanet_edge.cli.main import main
from vanillanet_edge.converters.convert import convert_checkpoint
from vanillanet_edge.converters.registry import target_names


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def every_target(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("classify")
    outcomes = convert_checkpoint(tiny_checkpoint.path, ["all"], ["fp32"], out)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return {o.target: o.folder for o in outcomes}


@pytest.fixture(scope="module")
def digit_images(digits_dir):
    """One val image of each of three classes, each class's first file."""
    return {c: sorted((digits_dir / "val" / c).glob("*.png"))[0] for c in ("3", "7", "9")}


@pytest.mark.parametrize("target", target_names())
def test_classify_names_the_right_digit_on_every_target(target, every_target, digit_images):
    res = _cli("classify", every_target[target], *digit_images.values(), "--top", "3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [r["image"] for r in out["results"]] == [str(p) for p in digit_images.values()]
    for (digit, _), item in zip(digit_images.items(), out["results"]):
        assert len(item["top"]) == 3
        assert item["top"][0]["label"] == digit, (target, item)
        probs = [t["probability"] for t in item["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
    assert out["session_settings"].get("threads") or target == "coreml"
    assert out["skipped"] == 0


def test_classify_checkpoint_prints_labels(tiny_checkpoint, digit_images):
    res = _cli("classify", tiny_checkpoint.path, digit_images["7"], "--top", "2")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("tiny (torch, ") and lines[1] == str(digit_images["7"])
    assert lines[2].split()[:2] == ["1.", "7"] and lines[2].endswith("%") and lines[3].startswith("  2. ")


def test_classify_skips_unreadable_images_and_refuses_when_none_read(every_target, digit_images, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    folder = every_target["onnx"]
    res = _cli("classify", folder, bad, digit_images["3"], "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["skipped"] == 1 and out["skipped_files"][0]["file"] == str(bad)
    assert [r["top"][0]["label"] for r in out["results"]] == ["3"]
    res = _cli("classify", folder, bad)
    assert res.exit_code == 2 and "none of the 1 image(s) could be read" in res.output
    assert "Traceback" not in res.output
    res = _cli("classify", folder.parent, digit_images["3"])
    assert res.exit_code == 2 and "classify takes one" in res.output


def test_imagenet_labels_for_unnamed_1000_class_checkpoints():
    from vanillanet_edge.model.labels import labels_for

    labels, source = labels_for(None, 1000)
    assert len(labels) == 1000 and labels[0] == "tench" and "ImageNet-1k" in source
    assert labels_for(["a", "b"], 2) == (["a", "b"], "class_names")
    assert labels_for(None, 10) == (None, None)
    assert np.unique(labels).size >= 999      # torchvision's list repeats two names ("crane", "maillot")
