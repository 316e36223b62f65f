"""The built-in digits data set and the atomic writes it relies on (fileio)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vanillanet_edge.api import make_digits
from vanillanet_edge.calibration.digits import digits_preprocessing
from vanillanet_edge.fileio import (
    ForeignPathError,
    _temp_name,
    atomic_path,
    clean_partials,
    sha256_path,
    size_bytes,
    write_json,
)
from vanillanet_edge.images import ImageFolder, load_folder


def test_digits_layout(digits_dir):
    train, val = ImageFolder(digits_dir / "train"), ImageFolder(digits_dir / "val")
    assert train.classes == val.classes == [str(i) for i in range(10)]
    assert len(train) + len(val) == 1797 and len(val) == round(1797 * 0.2)
    train_ids = {p.path.stem for p in train.records}
    assert not train_ids & {p.path.stem for p in val.records}          # disjoint split
    with Image.open(train.records[0].path) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    assert not [p for p in digits_dir.parent.iterdir() if ".partial-" in p.name]


def test_digits_are_real_and_labelled(digits_dir):
    loaded = load_folder(digits_dir / "val", digits_preprocessing(), limit=50, seed=0)
    assert loaded.inputs.shape == (50, 3, 32, 32) and not loaded.skipped
    assert set(loaded.labels.tolist()) <= set(range(10)) and len(set(loaded.labels.tolist())) > 5
    # real scans: images differ from one another and are not blank
    flat = loaded.inputs.reshape(50, -1)
    assert flat.std(1).min() > 0.1 and np.unique(flat, axis=0).shape[0] == 50


def test_digits_rewrite_is_atomic_and_deterministic(tmp_path):
    a = make_digits(tmp_path / "d", size=16, seed=1)
    first = sha256_path(tmp_path / "d")
    b = make_digits(tmp_path / "d", size=16, seed=1)                    # replaces our folder
    assert a == b and a["train"] == 1438 and a["size"] == 16
    assert sha256_path(tmp_path / "d") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]          # no leftovers
    # A file someone put into it since: the folder is no longer only ours, so it stays.
    (tmp_path / "d" / "notes.txt").write_text("a user's")
    with pytest.raises(ForeignPathError, match="notes.txt"):
        make_digits(tmp_path / "d", size=16, seed=1)
    assert (tmp_path / "d" / "notes.txt").read_text() == "a user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_atomic_path_publishes_only_on_success(tmp_path):
    final = tmp_path / "out.json"
    write_json(final, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("interrupted")
    assert final.read_text().strip().startswith("{") and '"a": 1' in final.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    with atomic_path(tmp_path / "folder", is_dir=True) as tmp:
        (tmp / "x.bin").write_bytes(b"1234")
    assert size_bytes(tmp_path / "folder") == 4


def test_clean_partials_removes_only_dead_writers(tmp_path):
    # Ours: the exact name check; a dead writer's partial holds no flock.
    dead = _temp_name(tmp_path / "model.onnx", "partial")
    dead.write_text("left by a crash")
    # A user's file that merely looks like a PID-named partial is not ours.
    lookalike = tmp_path / ".model.onnx.partial-999999999"
    lookalike.write_text("a user's")
    removed = clean_partials(tmp_path)
    assert removed == [dead] and not dead.exists() and lookalike.exists()
