"""Hostile image files beside good ones: eval, calibrate and fuse finish, and count and list
every file they skipped, in their JSON and on the console, through the real CLI.

The hostile files are made here: a 68-byte PNG claiming 20000x20000 pixels (PIL raises
DecompressionBombError), a PNG whose second IDAT chunk has a garbage chunk type (SyntaxError),
a 1x60000 PNG (a small file whose resize to the net's input would take gigabytes), text and
an empty file named .png, a truncated JPEG.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vanillanet_edge import images as images_mod
from vanillanet_edge.images import ImageFolder, ImageRecord, Preprocessing, load_images

CLI = str(Path(sys.executable).with_name("vanillanet-edge"))
PREP = Preprocessing(resize=32, crop=32)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))


def bomb_png(w: int = 20000, h: int = 20000) -> bytes:
    """A tiny PNG claiming w x h RGB pixels."""
    return png_header(w, h) + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b"")


def bad_idat_png() -> bytes:
    """A 16x16 PNG whose image data is split over two IDAT chunks, the second with a garbage type."""
    raw = b"".join(b"\0" + bytes([i * 9 % 256]) * 48 for i in range(16))
    comp = zlib.compress(raw)
    return (png_header(16, 16) + png_chunk(b"IDAT", comp[:10]) + png_chunk(b"\x01\x02\xff\x00", comp[10:])
            + png_chunk(b"IEND", b""))


def write_hostile(folder: Path) -> dict[str, str]:
    """The hostile files, written into `folder`; returns {name: what it is}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bomb.png").write_bytes(bomb_png())
    (folder / "bad_idat.png").write_bytes(bad_idat_png())
    Image.new("RGB", (1, 60000), (9, 9, 9)).save(folder / "thin.png")
    (folder / "text.png").write_text("this is a text file, not a png\n")
    (folder / "empty.png").write_bytes(b"")
    buf = folder / "tmp.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buf.read_bytes()[:200])
    buf.unlink()
    return {"bomb.png": "DecompressionBomb", "bad_idat.png": "IDAT", "thin.png": "aspect",
            "text.png": "text", "empty.png": "empty", "truncated.jpg": "truncated"}


HOSTILE = sorted(["bomb.png", "bad_idat.png", "thin.png", "text.png", "empty.png", "truncated.jpg"])


def test_crafted_files_really_break_pil(tmp_path):
    """Control: the crafted files raise what the issue reported when PIL reads them plainly."""
    write_hostile(tmp_path)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "bomb.png")
    assert len((tmp_path / "bomb.png").read_bytes()) < 70
    with pytest.raises(SyntaxError):
        with Image.open(tmp_path / "bad_idat.png") as im:
            im.load()


def test_loader_skips_every_hostile_file_with_a_reason(tmp_path):
    write_hostile(tmp_path / "d")
    for i in range(3):
        Image.new("RGB", (40, 30), (i, 50, 90)).save(tmp_path / "d" / f"good{i}.png")
    loaded = load_images(ImageFolder(tmp_path / "d").records, PREP)
    assert loaded.inputs.shape == (3, 3, 32, 32)
    assert sorted(p.name for p, _ in loaded.skipped) == HOSTILE
    why = {p.name: w for p, w in loaded.skipped}
    assert "pixels" in why["bomb.png"] and "SyntaxError" in why["bad_idat.png"]
    assert "aspect" in why["thin.png"]
    record = loaded.skipped_record()
    assert record["skipped"] == 6 and {Path(s["file"]).name for s in record["skipped_files"]} == set(HOSTILE)


def test_own_pixel_bound_holds_without_pils(tmp_path, monkeypatch):
    """Our bound does not rely on PIL's process-wide MAX_IMAGE_PIXELS: switched off, the bomb
    (and a 144 Mpx header PIL would only warn about) is still refused before decoding."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    (tmp_path / "a.png").write_bytes(bomb_png())
    (tmp_path / "b.png").write_bytes(bomb_png(12000, 12000))
    loaded = load_images([ImageRecord(tmp_path / "a.png", None), ImageRecord(tmp_path / "b.png", None)],
                         PREP, min_count=0)
    assert [("pixel limit" in w) for _, w in loaded.skipped] == [True, True]


def test_big_jpeg_is_drafted_big_png_refused(tmp_path, monkeypatch):
    """Over the bound, a JPEG is decoded at reduced scale (draft) instead of refused; a PNG cannot be."""
    monkeypatch.setattr(images_mod, "MIN_PIXEL_LIMIT", 1_000_000)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8))
    img.save(tmp_path / "big.jpg", quality=80)
    img.save(tmp_path / "big.png")
    img.resize((160, 120)).save(tmp_path / "small.png")
    loaded = load_images([ImageRecord(tmp_path / n, None) for n in ("big.jpg", "big.png", "small.png")],
                         PREP, min_count=0)
    assert [p.name for p in loaded.paths] == ["big.jpg", "small.png"]
    assert [p.name for p, _ in loaded.skipped] == ["big.png"]
    assert np.abs(loaded.inputs[0] - loaded.inputs[1]).mean() < 0.5   # the same picture


def test_images_under_the_bound_decode_exactly_as_before(tmp_path):
    """Nothing changes for ordinary images: no draft, the same pixels as a plain PIL decode."""
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    img.save(tmp_path / "a.jpg", quality=90)
    loaded = load_images([ImageRecord(tmp_path / "a.jpg", None)], Preprocessing(resize=256, crop=224))
    with Image.open(tmp_path / "a.jpg") as im:
        assert np.array_equal(loaded.inputs[0], Preprocessing(resize=256, crop=224)(im))


# ---- through the real CLI ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def hostile_digits(tiny_checkpoint, tmp_path_factory) -> Path:
    """An ImageFolder of the digits' classes: 3 good val images per class, the hostile files in
    class 3 and class 7 (12 skipped in all)."""
    root = tmp_path_factory.mktemp("hostile") / "val"
    for c in sorted(p.name for p in (tiny_checkpoint.data / "val").iterdir()):
        (root / c).mkdir(parents=True)
        for f in sorted((tiny_checkpoint.data / "val" / c).iterdir())[:3]:
            shutil.copy(f, root / c / f.name)
    write_hostile(root / "3")
    write_hostile(root / "7")
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    return res


def assert_listed(record: dict, console: str, root: Path, classes=("3", "7")) -> None:
    expected = {str(root / c / n) for c in classes for n in HOSTILE}
    assert record["skipped"] == len(expected)
    assert {s["file"] for s in record["skipped_files"]} == expected
    assert all(s["why"] for s in record["skipped_files"])
    assert f"{len(expected)} unreadable image(s) skipped" in console
    for f in expected:
        assert f in console


def test_eval_cli_skips_counts_and_lists(tiny_checkpoint, hostile_digits, tmp_path):
    save = tmp_path / "eval.json"
    res = run_cli("eval", str(tiny_checkpoint.path), "--data", str(hostile_digits), "--save", str(save))
    assert res.returncode == 0, res.stderr
    [record] = json.loads(save.read_text())
    assert record["ok"] and record["images"] == 30
    assert_listed(record, res.stdout, hostile_digits)


def test_calibrate_cli_skips_counts_and_lists(tiny_checkpoint, hostile_digits, tmp_path):
    res = run_cli("calibrate", str(tiny_checkpoint.path), "--data", str(hostile_digits),
                  "--out", str(tmp_path / "c"), "--samples", "64")
    assert res.returncode == 0, res.stderr
    cal = json.loads((tmp_path / "c" / "calibration.json").read_text())["calibration"]
    assert cal["samples"] == 30 and cal["found"] == 42
    assert_listed(cal, res.stdout, hostile_digits)


def test_fuse_cli_skips_counts_and_lists(tiny_checkpoint, hostile_digits, tmp_path):
    # fuse verifies on a sample of 32 images: one class folder (9 files) is read whole
    out = tmp_path / "deploy.pth"
    res = run_cli("fuse", str(tiny_checkpoint.path), "--out", str(out), "--data", str(hostile_digits / "3"))
    assert res.returncode == 0, res.stderr
    report = json.loads(Path(str(out) + ".json").read_text())
    assert report["real_inputs"] is not None and out.exists()
    assert_listed(report, res.stdout, hostile_digits.parent, classes=("val/3",))


def test_only_hostile_files_is_exit_2_with_the_list(tiny_checkpoint, tmp_path):
    root = tmp_path / "bad"
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
    write_hostile(root / "0")
    res = run_cli("eval", str(tiny_checkpoint.path), "--data", str(root))
    assert res.returncode == 2
    assert "could be read" in res.stderr and "bomb.png" in res.stderr and "hint" in res.stderr
