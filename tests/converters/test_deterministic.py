"""Converting the same checkpoint twice with the same options gives the same bytes, for every
target: the device cache and the pipeline's skip decisions are keyed by artifact hashes.

The second conversion runs in another process with another PYTHONHASHSEED, since that is
where nondeterminism shows (coremltools' protobuf maps came out in a per-process order, and
its package manifest named items by random uuids). Core ML int8 is here too, as the longest
route (a float program saved, calibrated, rewritten and saved again); fp16 and int8 of the
image/classifier form are compared in-process in test_coreml_app.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint
from vanillanet_edge.converters.registry import target_names
from vanillanet_edge.model.checkpoint import save_checkpoint
from vanillanet_edge.model.variants import create_model

pytestmark = pytest.mark.filterwarnings("ignore")

# The same conversions as `_convert` below, in a fresh interpreter.
_SCRIPT = """
import sys
from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint
from vanillanet_edge.converters.registry import target_names
ckpt, out, calib = sys.argv[1:]
bad = [o.error for o in convert_checkpoint(ckpt, target_names(), ["fp32"], out)
       + convert_checkpoint(ckpt, ["coreml"], ["int8"], out, int8=Int8Options(calib, samples=8))
       if not o.ok]
sys.exit("\\n".join(bad) or None)
"""


def _convert(ckpt, out, calib):
    return (convert_checkpoint(ckpt, target_names(), ["fp32"], out)
            + convert_checkpoint(ckpt, ["coreml"], ["int8"], out, int8=Int8Options(calib, samples=8)))


def _files(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_every_target_converts_to_the_same_bytes_twice(tmp_path, digits_data):
    torch.manual_seed(0)
    model = create_model("vanillanet_5", width=1 / 64, num_classes=10)
    # class names: Core ML's default form is then the full app-facing one (image in, classifier out)
    ckpt = save_checkpoint(model, tmp_path / "tiny.pth",
                           meta={"input_size": 32, "class_names": [f"c{i}" for i in range(10)]})
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    # the child converts while this process does (much of a conversion is single-threaded)
    child = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(ckpt), str(tmp_path / "b"),
                              str(digits_data / "train")], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        first = {(o.target, o.precision): o for o in _convert(ckpt, tmp_path / "a", digits_data / "train")}
        _, stderr = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert all(o.ok for o in first.values()), [o.error for o in first.values() if not o.ok]
    assert child.returncode == 0, stderr[-3000:]
    assert {t for t, _ in first} == set(target_names())
    for (target, precision), o in first.items():
        again = json.loads((tmp_path / "b" / o.folder.name / "manifest.json").read_text())
        assert again["artifact"] == o.manifest["artifact"], (target, precision)
        assert _files(o.folder) == _files(tmp_path / "b" / o.folder.name), (target, precision)
