"""Property test: generated corruptions of checkpoints and images, with a fixed seed.

Every corrupted checkpoint either loads (a flipped bit in a weight is still a checkpoint) or is
refused with CheckpointError; never another exception type, and no code in a file ever runs.
Every corrupted image is either decoded to the right shape or skipped with a reason; reading it
never raises. Plain `random` with fixed seeds (hypothesis is not in the venv): the same cases
on every run, about 590 checkpoints and 305 images, in well under a minute on 2 cores.
"""
from __future__ import annotations

import io
import pickle
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vanillanet_edge.errors import CheckpointError
from vanillanet_edge.images import ImageRecord, Preprocessing, load_images
from vanillanet_edge.model.checkpoint import load_checkpoint, save_checkpoint
from vanillanet_edge.model.variants import create_model

SEED = 12


# ---- corruptions ------------------------------------------------------------------------------

def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(0, len(data))]


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 16))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def overwrite_run(data: bytes, rng: random.Random) -> bytes:
    """A run of random bytes somewhere (a damaged sector)."""
    out = bytearray(data)
    i = rng.randrange(len(out))
    n = min(rng.choice((4, 16, 64, 512)), len(out) - i)
    out[i:i + n] = rng.randbytes(n)
    return bytes(out)


def zip_entries(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    z = zipfile.ZipFile(io.BytesIO(data))
    return [(i, z.read(i.filename)) for i in z.infolist()]


def write_zip(entries, compress=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compress) as z:
        for name, blob in entries:
            z.writestr(name, blob)
    return out.getvalue()


def evil_pickle(module: str, name: str, arg: str, protocol: int) -> bytes:
    """A pickle that calls module.name(arg) when loaded by an unsafe unpickler."""
    body = (b"c" + module.encode() + b"\n" + name.encode() + b"\n"
            + pickle.dumps(arg, protocol=2)[2:-1] + b"\x85R")           # (arg,) then REDUCE
    return (b"\x80" + bytes([protocol]) if protocol >= 2 else b"") + body + b"."


def zip_mutations(data: bytes, marker: Path, rng: random.Random) -> list[bytes]:
    """Wrong zip entries: missing, renamed, swapped, duplicated, replaced, code-running data.pkl."""
    entries = [(i.filename, blob) for i, blob in zip_entries(data)]
    names = [n for n, _ in entries]
    pkl = next(n for n in names if n.endswith("data.pkl"))
    storages = [n for n in names if "/data/" in n]
    out = []
    for n in names:                                            # each entry missing in turn
        out.append(write_zip([(m, b) for m, b in entries if m != n]))
    for n in names:                                            # each entry renamed
        out.append(write_zip([(m + ".x" if m == n else m, b) for m, b in entries]))
    for n in names:                                            # each entry replaced by random bytes
        out.append(write_zip([(m, rng.randbytes(max(1, len(b))) if m == n else b) for m, b in entries]))
    for n in names:                                            # each entry emptied
        out.append(write_zip([(m, b"" if m == n else b) for m, b in entries]))
    for _ in range(10):                                        # two storages swapped (wrong sizes)
        a, b = rng.sample(storages, 2)
        blobs = dict(entries)
        out.append(write_zip([(m, blobs[b] if m == a else blobs[a] if m == b else blobs[m]) for m in names]))
    out.append(write_zip(entries + [(pkl, b"duplicate")]))     # the same name twice
    out.append(write_zip(entries, compress=zipfile.ZIP_BZIP2))  # a method torch cannot read
    out.append(write_zip(entries, compress=zipfile.ZIP_LZMA))
    out.append(write_zip([(m, b.replace(b"vanillanet_5", b"vanillanet_6") if m == pkl else b)
                          for m, b in entries]))               # metadata naming another variant
    prefix = pkl.rsplit("/", 1)[0]
    for module, name in (("os", "system"), ("posix", "system"), ("subprocess", "check_call"),
                         ("builtins", "exec"), ("builtins", "eval"), ("__builtin__", "eval"),
                         ("torch", "load"), ("pickle", "loads"), ("shutil", "rmtree")):
        cmd = (f"open({str(marker)!r}, 'w')" if name in ("exec", "eval")
               else f"touch '{marker}'" if name in ("system", "check_call") else str(marker))
        for protocol in (2, 4):
            out.append(write_zip([(m, evil_pickle(module, name, cmd, protocol) if m == pkl else b)
                                  for m, b in entries]))
    out.append(write_zip([(f"{prefix}/data.pkl", pickle.dumps(list(range(10))))]))  # no storages
    return out


@pytest.fixture(scope="module")
def checkpoint_cases(tmp_path_factory) -> tuple[list[tuple[str, bytes, str]], Path]:
    """(id, bytes, suffix) of about 590 corrupted checkpoints of a vanillanet_5 at width 1/32 (~2 s)."""
    root = tmp_path_factory.mktemp("ck")
    marker = root / "MARKER"
    torch.manual_seed(0)
    net = create_model("vanillanet_5", 1 / 32, 10).eval()
    ours = save_checkpoint(net, root / "ours.pth", meta={"input_size": 32}, epoch=5,
                           args={"decay_epochs": 10, "model": "vanillanet_5"}).read_bytes()
    legacy_buf = io.BytesIO()
    torch.save({"model": net.state_dict()}, legacy_buf, _use_new_zipfile_serialization=False)
    from safetensors.torch import save as st_save
    sources = {"zip": (ours, ".pth"), "legacy": (legacy_buf.getvalue(), ".pth"),
               "safetensors": (st_save(net.state_dict()), ".safetensors")}
    rng = random.Random(SEED)
    cases = []
    for kind, (data, suffix) in sources.items():
        for how, count in ((truncate, 20), (flip_bits, 25), (overwrite_run, 10)):
            for i in range(count):
                cases.append((f"{kind}-{how.__name__}-{i}", how(data, rng), suffix))
    for i, data in enumerate(zip_mutations(ours, marker, rng)):
        cases.append((f"zip-entries-{i}", data, ".pth"))
    for i, (module, name) in enumerate((("os", "system"), ("builtins", "exec"), ("subprocess", "Popen"))):
        for protocol in (0, 2, 5):
            cmd = f"touch '{marker}'" if name != "exec" else f"open({str(marker)!r}, 'w')"
            cases.append((f"pickle-{module}.{name}-p{protocol}", evil_pickle(module, name, cmd, protocol), ".pth"))
    return cases, marker


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
def test_every_corrupted_checkpoint_loads_or_is_refused(checkpoint_cases, tmp_path):
    cases, marker = checkpoint_cases
    assert len(cases) >= 200
    outcomes = {"loaded": 0, "refused": 0}
    for case_id, data, suffix in cases:
        path = tmp_path / f"{case_id}{suffix}"
        path.write_bytes(data)
        try:
            ck = load_checkpoint(path)
        except CheckpointError as exc:
            assert str(path) in str(exc) or "weights" in str(exc) or "stage" in str(exc), (case_id, str(exc))
            outcomes["refused"] += 1
        except Exception as exc:   # noqa: BLE001 - the property under test
            pytest.fail(f"{case_id}: {type(exc).__name__}: {exc}")
        else:
            assert ck.config.name == "vanillanet_5", case_id
            outcomes["loaded"] += 1
        finally:
            path.unlink()
        assert not marker.exists(), f"{case_id} ran code from the file"
    assert outcomes["refused"] > 150 and outcomes["loaded"] > 0, outcomes


# ---- images -----------------------------------------------------------------------------------

def image_sources() -> dict[str, bytes]:
    rng = np.random.default_rng(SEED)
    pic = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = {}
    for name, kw in (("png", {"format": "PNG"}), ("jpeg", {"format": "JPEG", "quality": 85}),
                     ("progressive-jpeg", {"format": "JPEG", "progressive": True}),
                     ("palette-png", {"format": "PNG"}), ("gif", {"format": "GIF"})):
        buf = io.BytesIO()
        (pic.convert("P") if name in ("palette-png", "gif") else pic).save(buf, **kw)
        out[name] = buf.getvalue()
    return out


def test_every_corrupted_image_decodes_or_is_skipped(tmp_path):
    rng = random.Random(SEED)
    prep = Preprocessing(resize=32, crop=32)
    records = []
    for kind, data in image_sources().items():
        suffix = ".gif" if kind == "gif" else ".png" if "png" in kind else ".jpg"
        for how, count in ((truncate, 25), (flip_bits, 25), (overwrite_run, 10)):
            for i in range(count):
                path = tmp_path / f"{kind}-{how.__name__}-{i}{suffix}"
                path.write_bytes(how(data, rng))
                records.append(ImageRecord(path, 0))
    # the header's size fields flipped: claims of huge or zero sizes
    png = image_sources()["png"]
    for i, (w, h) in enumerate(((0, 48), (64, 0), (2 ** 31 - 1, 1), (1, 2 ** 31 - 1), (65535, 65535))):
        head = bytearray(png)
        struct.pack_into(">II", head, 16, w, h)
        path = tmp_path / f"png-size-{i}.png"
        path.write_bytes(bytes(head))
        records.append(ImageRecord(path, 0))
    assert len(records) >= 200
    loaded = load_images(records, prep, min_count=0)      # never raises, whatever the files hold
    assert len(loaded.paths) + len(loaded.skipped) == len(records)
    assert loaded.inputs.shape == (len(loaded.paths), 3, 32, 32) and np.isfinite(loaded.inputs).all()
    assert all(why for _, why in loaded.skipped)
    assert len(loaded.skipped) > 100 and len(loaded.paths) > 20
