"""Numbers that are not numbers, and pixels that are not 8-bit, through the real CLI.

- NaN/inf weights (and BatchNorm statistics that fold to NaN, and weights that overflow float32):
  fuse and convert refuse with exit 2 and write nothing. A comparison with NaN is always False,
  so `err > limit` once passed them ("rel err nan, top-1 agreement 100.0%", exit 0).
- 16-bit PNGs (grey: PIL mode I;16; RGB: read as 8-bit RGB by PIL) of a real 8-bit digit give the
  same class and probability as the 8-bit file in classify and eval; float and 32-bit integer
  pixels are skipped with their reason, and counted.
- report: records with a string, NaN, inf or null median are skipped with a warning (never a
  traceback, never "fastest"); report.json is strict JSON.
"""
from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vanillanet_edge.calibration.report import keep_in_float
from vanillanet_edge.converters.verify import check_limits
from vanillanet_edge.fileio import write_json
from vanillanet_edge.metrics import Agreement, at_least, within

CLI = str(Path(sys.executable).with_name("vanillanet-edge"))


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def strict_json(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity (what Python's own parser accepts)."""
    def refuse(token):
        raise ValueError(f"not strict JSON: bare {token}")
    return json.loads(text, parse_constant=refuse)


# ============================================================================ NaN / inf

def test_limits_are_never_met_by_nan_inf_none_or_strings():
    for bad in (float("nan"), float("inf"), -float("inf"), None, "0.0", True):
        assert not within(bad, 1.0) and not at_least(bad, 0.0)
    assert within(1e-6, 1e-4) and at_least(0.99, 0.99) and not within(1.0, float("nan"))
    broken = Agreement(max_abs=float("nan"), rel_err=float("nan"), top1_agree=1.0, samples=8)
    assert not check_limits(broken, "fp32")["passed"]
    assert not check_limits(broken, "int8", require_agreement=False)["passed"]
    rows = [{"layer": "a", "rel_err": 0.01, "top1_agree": 1.0}, {"layer": "b", "rel_err": float("nan"), "top1_agree": 1.0},
            {"layer": "c", "rel_err": 0.011, "top1_agree": float("nan")}]
    assert keep_in_float(rows) == ["b", "c"]     # NaN is flagged; the median is over the finite errors


def _broken_checkpoint(src: Path, out: Path, how: str) -> Path:
    ck = torch.load(src, weights_only=False)
    sd = ck["model"]
    if how in ("nan", "inf"):
        key = "stages.1.conv1.0.weight"
        sd[key] = sd[key].clone()
        sd[key].view(-1)[3] = float(how)
    elif how == "negative-running-var":       # finite, but folds to sqrt(negative) = NaN
        key = "stem2.1.running_var"
        sd[key] = sd[key].clone()
        sd[key][0] = -5.0
    elif how == "overflow":                   # finite weights whose outputs overflow float32
        for key in [k for k in sd if k.endswith("weight") and sd[k].dim() == 4]:
            sd[key] = sd[key] * 1e12
    torch.save(ck, out)
    return out


@pytest.mark.parametrize("how, says", [
    ("nan", "NaN or inf values in 1 tensors: stages.1.conv1.0.weight"),
    ("inf", "NaN or inf values in 1 tensors: stages.1.conv1.0.weight"),
    ("negative-running-var", "the fused net holds NaN or inf values in stem.0.weight"),
    ("overflow", "not finite numbers"),
])
def test_fuse_and_convert_refuse_non_finite_nets_and_write_nothing(tiny_checkpoint, tmp_path, how, says):
    bad = _broken_checkpoint(tiny_checkpoint.path, tmp_path / f"{how}.pth", how)
    deploy = tmp_path / "deploy.pth"
    for extra in ([], ["--allow-inexact"]):          # inexact fusion never excuses NaN
        proc = cli("fuse", bad, "--out", deploy, *extra)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert says in proc.stderr and "hint:" in proc.stderr, proc.stderr
        assert not list(tmp_path.glob("deploy*")), list(tmp_path.iterdir())
    out = tmp_path / "artifacts"
    proc = cli("convert", bad, "--target", "onnx", "--out", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stderr or "not finite numbers" in proc.stderr, proc.stderr
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]


def test_write_json_writes_null_for_nan_and_numbers_for_numpy(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"median_ms": float("nan"), "rounds": [1.5, float("inf"), -float("inf")],
                      "top1": np.float32(0.5), "runs": np.int64(3), "nested": ({"x": float("nan")},)})
    text = path.read_text()
    assert strict_json(text) == {"median_ms": None, "rounds": [1.5, None, None], "top1": 0.5, "runs": 3,
                                 "nested": [{"x": None}]}


# ============================================================================ 16-bit pictures

def _png16_rgb(rgb16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = rgb16.shape
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb16)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _write_16bit_copies(src: Path, folder: Path) -> dict[str, Path]:
    """The 8-bit PNG `src` widened as PIL/libpng do (v = 257 x): grey I;16 PNG, RGB 16-bit PNG,
    big-endian I;16B TIFF; and two files whose pixels have no defined range (F, I)."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        rgb = np.asarray(im.convert("RGB")).astype(np.uint16)
    assert (rgb[..., 0] == rgb[..., 1]).all()       # the digits are grey: one channel holds it all
    grey16 = rgb[..., 0] * 257
    out = {"grey16_png": folder / "grey16.png", "rgb16_png": folder / "rgb16.png",
           "grey16be_tif": folder / "grey16be.tif"}
    Image.fromarray(grey16).save(out["grey16_png"])
    out["rgb16_png"].write_bytes(_png16_rgb(rgb * 257))
    Image.fromarray(grey16.astype(">u2")).save(out["grey16be_tif"])
    with Image.open(out["grey16_png"]) as im:
        assert im.mode == "I;16"                     # what PIL's convert("RGB") used to clip at 255
    return out


def _no_range_files(folder: Path) -> list[Path]:
    a = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    f, i = folder / "float.tif", folder / "int32.tif"
    Image.fromarray(a).save(f)
    Image.fromarray((a * 1000).astype(np.int32)).save(i)
    return [f, i]


def _top(result: dict) -> tuple[str, float]:
    best = result["top"][0]
    return best["label"], best["probability"]


def test_16bit_pngs_classify_like_their_8bit_original(tiny_artifacts, digits_dir, tmp_path):
    onnx = next(tiny_artifacts.glob("*-onnx-fp32"))
    sevens = sorted((digits_dir / "val" / "7").glob("*.png"))[:12]
    proc = cli("classify", onnx, *sevens, "--top", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    scored = strict_json(proc.stdout)["results"]
    # the 8-bit seven the net is surest of (a '7' it reads as '7' when it reads any as such)
    best = max(scored, key=lambda r: (r["top"][0]["label"] == "7", r["top"][0]["probability"]))
    original = Path(best["image"])
    copies = _write_16bit_copies(original, tmp_path / "copies")
    odd = _no_range_files(tmp_path / "copies")
    for artifact in (onnx, next(tiny_artifacts.glob("*-openvino-fp32"))):
        proc = cli("classify", artifact, original, *copies.values(), *odd, "--top", "1", "--json")
        assert proc.returncode == 0, proc.stderr
        result = strict_json(proc.stdout)
        label, p = _top(result["results"][0])
        for name, r in zip(copies, result["results"][1:]):
            got, q = _top(r)
            assert (got, round(q, 4)) == (label, round(p, 4)), (artifact.name, name, got, q, label, p)
        assert result["skipped"] == 2, result
        whys = {Path(s["file"]).name: s["why"] for s in result["skipped_files"]}
        assert "floating-point pixels (PIL mode F)" in whys["float.tif"]
        assert "(PIL mode I)" in whys["int32.tif"] and "no defined 0-255 range" in whys["int32.tif"]


def test_16bit_folder_evaluates_like_its_8bit_original(tiny_artifacts, digits_dir, tmp_path):
    eight, sixteen = tmp_path / "eight", tmp_path / "sixteen"
    for cls in sorted(p.name for p in (digits_dir / "val").iterdir()):
        for src in sorted((digits_dir / "val" / cls).glob("*.png"))[:3]:
            (eight / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, eight / cls / src.name)
            with Image.open(src) as im:
                grey = np.asarray(im.convert("L")).astype(np.uint16) * 257
            (sixteen / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(grey).save(sixteen / cls / src.name)
    _no_range_files(sixteen / "0")
    arts = [next(tiny_artifacts.glob(f"*-{t}-fp32")) for t in ("onnx", "openvino")]
    runs = {}
    for folder in (eight, sixteen):
        proc = cli("eval", *arts, "--data", folder, "--json")
        assert proc.returncode == 0, proc.stderr
        runs[folder.name] = {r["runtime"]: r for r in strict_json(proc.stdout)}
    for runtime, rec in runs["sixteen"].items():
        ref = runs["eight"][runtime]
        assert rec["images"] == ref["images"] == 30
        assert (rec["top1"], rec["top5"]) == (ref["top1"], ref["top5"]), (runtime, rec, ref)
        assert rec["skipped"] == 2 and ref["skipped"] == 0


# ============================================================================ report

def _latency(name: str, variant: str, median, runtime: str = "onnxruntime") -> dict:
    return {"schema_version": 1, "kind": "latency", "artifact": f"/nowhere/{name}", "name": name,
            "target": "onnx", "precision": "fp32", "runtime": runtime, "ok": True, "status": "ok",
            "model": {"variant": variant, "family": "vanillanet" if variant.startswith("vanillanet") else "baseline",
                      "width": 1.0, "macs": 10 ** 9},
            "input": {"shape": [1, 3, 224, 224], "layout": "NCHW"},
            "latency": {"median_ms": median, "p90_ms": 9.0, "runs": 3},
            "round_medians_ms": [5.0], "median_interval_ms": {"low_ms": 4.5, "high_ms": 5.5},
            "session_settings": {"threads": 2}, "machine": {"cpu_model": "cpu", "hostname": "h"}}


def test_report_skips_string_nan_inf_and_null_medians_and_writes_strict_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [_latency("vn9-good", "vanillanet_9", 6.0), _latency("r50", "resnet50", 8.0),
               _latency("vn9-string", "vanillanet_9", "fast"), _latency("vn9-nan", "vanillanet_9", float("nan")),
               _latency("vn9-inf", "vanillanet_9", float("inf")), _latency("vn9-null", "vanillanet_9", None),
               {**_latency("vn9-rounds", "vanillanet_9", 1.0), "round_medians_ms": ["1", 2]},
               {"schema_version": 1, "kind": "accuracy", "artifact": "/nowhere/vn9-good", "runtime": "onnxruntime",
                "precision": "fp32", "top1": "high", "images": 10}]
    # written as older versions did: bare NaN / Infinity tokens (json.dumps' default)
    (run / "bench.json").write_text(json.dumps(records))
    assert "NaN" in (run / "bench.json").read_text()
    peaks = {"schema_version": 1, "kind": "peaks", "device": {"name": "local"},
             "machine": {"cpu_model": "cpu", "hostname": "h"}, "how": "test",
             "peaks": {"onnxruntime": {"fp32": {"gmacs_per_s": float("nan"), "threads": 2}}}}
    (run / "peaks.json").write_text(json.dumps([peaks, {**peaks, "peaks": {"onnxruntime": {"fp32": {
        "gmacs_per_s": 50.0, "threads": 2}}}}]))

    proc = cli("report", run, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 7, proc.stdout
    for needle in ("latency.median_ms is 'fast' (str)", "latency.median_ms is nan", "latency.median_ms is inf",
                   "latency.median_ms is missing", "round_medians_ms is", "top1 is 'high' (str)",
                   "peaks.onnxruntime.fp32.gmacs_per_s is nan"):
        assert any(needle in w for w in warnings), (needle, warnings)

    text = (tmp_path / "out" / "report.json").read_text()
    report = strict_json(text)
    assert "NaN" not in text and "Infinity" not in text
    assert len(report["skipped_files"]) == 7 and report["records"] == 3      # 2 latency + 1 peaks
    fastest = {r["model"]: r for r in next(t for t in report["tables"] if t["key"] == "fastest")["rows"]}
    assert fastest["vanillanet_9"]["artifact"] == "vn9-good" and fastest["vanillanet_9"]["median ms"] == 6.0
    verdict = next(t for t in report["tables"] if t["key"] == "verdict")["rows"]
    assert verdict[0]["ratio"] == pytest.approx(6.0 / 8.0)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "vn9-nan" not in md.split("## Files skipped")[0] and "## Files skipped" in md
    assert all(math.isfinite(r["median ms"]) for t in report["tables"] if t["key"] == "latency" for r in t["rows"])
