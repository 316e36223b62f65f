"""Image folders, decoding with unreadable files, deterministic sampling, preprocessing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vanillanet_edge.errors import DataError
from vanillanet_edge.images import IMAGENET_MEAN, IMAGENET_STD, ImageFolder, Preprocessing, load_folder, load_images


def write_image(path: Path, size=(40, 30), color=(10, 200, 30), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """cat/ (3 images, png/jpg/bmp) and dog/ (2 images), plus files that must be ignored."""
    root = tmp_path / "imagefolder"
    write_image(root / "cat" / "a.png")
    write_image(root / "cat" / "b.JPG", fmt="JPEG")
    write_image(root / "cat" / "nested" / "c.bmp")
    write_image(root / "dog" / "x.png", color=(255, 0, 0))
    write_image(root / "dog" / "y.webp")
    (root / "dog" / "notes.txt").write_text("not an image")
    write_image(root / ".hidden" / "z.png")            # hidden folders are not classes
    return root


def test_imagefolder_with_classes(image_folder):
    folder = ImageFolder(image_folder)
    assert folder.labelled and folder.classes == ["cat", "dog"]
    assert len(folder) == 5
    names = {(r.path.name, r.label) for r in folder.records}
    assert names == {("a.png", 0), ("b.JPG", 0), ("c.bmp", 0), ("x.png", 1), ("y.webp", 1)}


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(4):
        write_image(tmp_path / "flat" / f"{i}.png")
    (tmp_path / "flat" / "README").write_text("hello")
    folder = ImageFolder(tmp_path / "flat")
    assert not folder.labelled and folder.classes == []
    assert [r.path.name for r in folder.records] == ["0.png", "1.png", "2.png", "3.png"]
    assert all(r.label is None for r in folder.records)
    loaded = load_folder(tmp_path / "flat", Preprocessing(resize=32, crop=32))
    assert loaded.labels is None and loaded.inputs.shape == (4, 3, 32, 32)


def test_empty_folder_names_the_folder(tmp_path):
    empty = tmp_path / "empty_calibration"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as err:
        ImageFolder(empty)
    assert str(empty) in str(err.value) and err.value.hint


def test_class_folders_without_images(tmp_path):
    (tmp_path / "set" / "a").mkdir(parents=True)
    (tmp_path / "set" / "b").mkdir()
    with pytest.raises(DataError) as err:
        ImageFolder(tmp_path / "set")
    assert "2 class folders" in str(err.value) and str(tmp_path / "set") in str(err.value)


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ImageFolder(tmp_path / "nope")
    f = write_image(tmp_path / "one.png")
    with pytest.raises(DataError, match="is a file"):
        ImageFolder(f)


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    root = tmp_path / "mixed"
    for i in range(3):
        write_image(root / f"good{i}.png")
    (root / "text.png").write_text("this is not a png")
    (root / "empty.jpg").write_bytes(b"")
    good = write_image(tmp_path / "src.jpg", size=(64, 64), fmt="JPEG").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    folder = ImageFolder(root)
    assert len(folder) == 6
    loaded = load_images(folder.records, Preprocessing(resize=32, crop=32), where=root)
    assert loaded.inputs.shape == (3, 3, 32, 32)
    assert sorted(p.name for p in loaded.paths) == ["good0.png", "good1.png", "good2.png"]
    assert sorted(p.name for p, _ in loaded.skipped) == ["empty.jpg", "text.png", "truncated.jpg"]
    assert all(reason for _, reason in loaded.skipped)
    with pytest.raises(DataError) as err:
        load_images(folder.records, Preprocessing(resize=32, crop=32), min_count=4, where=root)
    assert "only 3 usable images" in str(err.value) and "3 unreadable" in str(err.value)


def test_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_text("nope")
    with pytest.raises(DataError, match="only 0 usable images"):
        load_folder(tmp_path / "bad", Preprocessing(resize=32, crop=32))


def test_sampling_is_deterministic_by_seed(tmp_path):
    for c in "abc":
        for i in range(10):
            write_image(tmp_path / "s" / c / f"{i}.png", size=(8, 8))
    folder = ImageFolder(tmp_path / "s")
    first = folder.sample(7, seed=3)
    again = ImageFolder(tmp_path / "s").sample(7, seed=3)
    assert first == again and len(first) == 7 and len(set(first)) == 7
    assert [str(r.path) for r in first] == sorted(str(r.path) for r in first)
    others = {tuple(r.path for r in folder.sample(7, seed=s)) for s in range(5)}
    assert len(others) > 1                                 # the seed matters
    assert folder.sample(None) == folder.records
    assert folder.sample(1000, seed=1) == folder.records
    a = load_folder(tmp_path / "s", Preprocessing(resize=8, crop=8), limit=5, seed=9)
    b = load_folder(tmp_path / "s", Preprocessing(resize=8, crop=8), limit=5, seed=9)
    assert a.paths == b.paths and np.array_equal(a.inputs, b.inputs) and np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize("size,resize,crop", [
    ((300, 200), 256, 224),      # landscape: shorter side (height) -> 256, then centre 224
    ((200, 300), 256, 224),      # portrait
    ((32, 32), 32, 32),          # already the right size: untouched
    ((8, 8), 36, 32),            # upscaled
    ((1000, 40), 37, 32),        # very wide
])
def test_preprocessing_shapes(size, resize, crop):
    prep = Preprocessing(resize=resize, crop=crop)
    x = prep(Image.new("RGB", size, (128, 64, 32)))
    assert x.shape == (3, crop, crop) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]


def test_preprocessing_normalises_with_imagenet_statistics():
    x = Preprocessing(resize=16, crop=16)(Image.new("RGB", (16, 16), (255, 0, 128)))
    expect = [(v / 255.0 - m) / s for v, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD)]
    for c in range(3):
        assert np.allclose(x[c], expect[c], atol=1e-6)


def test_preprocessing_crops_the_centre_and_converts_grey():
    # column index encoded in the pixel value: a 40x20 grey image, no resize needed (shorter side 20)
    img = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 5, (20, 1)))
    x = Preprocessing(resize=20, crop=20, mean=(0, 0, 0), std=(1, 1, 1))(img)
    assert x.shape == (3, 20, 20)
    assert np.allclose(x[0, 0] * 255, np.arange(10, 30) * 5)     # columns 10..29 survive
    assert np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])


def test_imagenet_preprocessing_and_round_trip():
    prep = Preprocessing.imagenet(224)
    assert (prep.resize, prep.crop, prep.interpolation) == (256, 224, "bicubic")
    assert Preprocessing.from_dict(prep.as_dict()) == prep
    assert Preprocessing.imagenet(32).resize == 37
    # a dict that went through JSON (lists instead of tuples) still compares equal
    import json
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.as_dict()))) == prep


def test_rgba_and_palette_images_decode(tmp_path):
    Image.new("RGBA", (20, 20), (1, 2, 3, 0)).save(tmp_path / "a.png")
    Image.new("P", (20, 20), 3).save(tmp_path / "b.gif")
    loaded = load_folder(tmp_path, Preprocessing(resize=16, crop=16))
    assert loaded.inputs.shape == (2, 3, 16, 16) and not loaded.skipped


def test_impossible_preprocessing_is_refused():
    with pytest.raises(DataError, match="crop 256"):
        Preprocessing(resize=224, crop=256)          # PIL would pad the missing border with black
    with pytest.raises(DataError, match="interpolation"):
        Preprocessing(resize=32, crop=32, interpolation="lanczos9")
    assert Preprocessing.imagenet(224, crop_pct=1.0).resize == 224


def test_calibration_set_lists_skipped_files_with_why(tmp_path):
    from vanillanet_edge.calibration.dataset import load_calibration

    for i in range(8):
        write_image(tmp_path / "cal" / f"{i}.png", color=(i * 30, 0, 0))
    (tmp_path / "cal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (tmp_path / "cal" / "notes.jpg").write_text("text")
    cal = load_calibration(tmp_path / "cal", Preprocessing(resize=32, crop=32), samples=64)
    d = cal.describe()
    assert d["samples"] == 8 and d["found"] == 10 and d["skipped"] == 2
    assert sorted(Path(s["file"]).name for s in d["skipped_files"]) == ["broken.png", "notes.jpg"]
    assert all(s["why"] for s in d["skipped_files"])
    with pytest.raises(DataError) as err:          # too few left: the message names the skipped files
        load_calibration(tmp_path / "cal", Preprocessing(resize=32, crop=32), samples=64, min_count=9)
    assert "broken.png" in str(err.value) and "notes.jpg" in str(err.value)
