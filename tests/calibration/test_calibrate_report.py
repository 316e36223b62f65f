"""`calibrate`: statistics, sensitivity ranking, the plot and the layers worth keeping in float."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vanillanet_edge.api import calibrate
from vanillanet_edge.calibration.report import keep_in_float
from vanillanet_edge.cli.main import main
from vanillanet_edge.errors import DataError


def test_calibrate_writes_statistics_ranking_and_plot(tiny_checkpoint, tmp_path):
    report = calibrate(tiny_checkpoint.path, tiny_checkpoint.data / "train", tmp_path, samples=48)
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["calibration"]["samples"] == 48 and saved["calibration"]["files_sha256"]
    layers = [r["layer"] for r in report["sensitivity"]]
    assert set(layers) == set(report["layers"]) and "stages.0.conv" in layers
    errs = [r["rel_err"] for r in report["sensitivity"]]
    assert errs == sorted(errs, reverse=True) and errs[0] > 0
    st = report["layers"]["stages.1.act"]
    assert st["min"] >= 0.0 <= st["percentiles"]["50"] <= st["max"]      # the act's conv sees relu(x)
    assert sum(st["histogram"]["counts"]) > 0 and len(st["histogram"]["edges"]) == 65
    with Image.open(tmp_path / "sensitivity.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert np.asarray(Image.open(tmp_path / "sensitivity.png").convert("L")).std() > 0   # not blank


def test_keep_in_float_flags_outliers_and_flips():
    rows = [{"layer": "a", "rel_err": 0.01, "top1_agree": 1.0}, {"layer": "b", "rel_err": 0.011, "top1_agree": 1.0},
            {"layer": "c", "rel_err": 0.05, "top1_agree": 1.0}, {"layer": "d", "rel_err": 0.01, "top1_agree": 0.95}]
    assert keep_in_float(rows) == ["c", "d"]


def test_calibrate_cli_and_empty_folder(tiny_checkpoint, tmp_path):
    res = CliRunner().invoke(main, ["calibrate", str(tiny_checkpoint.path), "--data",
                                    str(tiny_checkpoint.data / "val"), "--out", str(tmp_path / "c"),
                                    "--samples", "24"])
    assert res.exit_code == 0, res.output
    assert "worth keeping in float" in res.output and (tmp_path / "c" / "sensitivity.png").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        calibrate(tiny_checkpoint.path, tmp_path / "empty", tmp_path / "c2")
    assert not (tmp_path / "c2").exists()
