"""The op probe: LiteRT layers timed one at a time (real .tflite of the tiny digits net)."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from click.testing import CliRunner  # noqa: E402

from vanillanet_edge.devices.op_probe import distinct_layers, probe_ops, single_op_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def tflite_fp32(tiny_tflite):
    """The tiny digits net as a verified LiteRT fp32 artifact (tests/conftest.py, built once)."""
    return tiny_tflite


def test_one_row_per_distinct_layer_with_gmacs_and_flag(tflite_fp32):
    folder, manifest = tflite_fp32.folder, tflite_fp32.manifest
    path = folder / manifest["artifact"]["file"]
    layers = distinct_layers(path)
    n_ops = sum(manifest["conversion"]["op_counts"].values())
    assert sum(len(k["ops"]) for k in layers) == n_ops
    rec = probe_ops(folder, manifest, threads=1, peak_gmacs=100.0, rounds=2, seconds=0.02)
    rows = rec["rows"]
    assert rec["status"] == "ok" and len(rows) == len(layers)
    assert len({r["name"] for r in rows}) == len(rows)
    assert sum(r["calls"] for r in rows) == n_ops
    assert rec["session_settings"]["threads"] == 1 and rec["wall_ms_per_inference"] > 0
    convs = [r for r in rows if r["op_type"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs and all(r["gmacs_per_s"] > 0 and r["macs"] > 0 for r in convs)
    assert any(r["name"].startswith("DEPTHWISE_CONV_2D 7x7") for r in convs)
    for r in rows:
        assert r["flag"] in ("", "slow") and r["error"] is None and r["ms_each"] > 0
        if r["gmacs_per_s"]:
            assert r["fraction_of_peak"] == pytest.approx(r["gmacs_per_s"] / 100.0)
            assert (r["flag"] == "slow") == (r["vs_median"] < rec["slow_fraction"])
    assert abs(sum(r["share"] for r in rows) - 1) < 1e-9


def test_single_op_model_computes_what_the_artifact_computes(tflite_fp32):
    """The first layer (the stem's CONV_2D on the NHWC input) cut out alone gives the same
    tensor as the full interpreter's intermediate."""
    from ai_edge_litert.interpreter import Interpreter

    path = tflite_fp32.folder / tflite_fp32.manifest["artifact"]["file"]
    first = distinct_layers(path)[0]
    assert first["op_type"] == "CONV_2D" and first["ops"] == [0]
    one = Interpreter(model_content=single_op_model(path, 0), num_threads=1,
                      experimental_preserve_all_tensors=True)
    full = Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True)
    for it in (one, full):
        it.allocate_tensors()
    x = np.random.default_rng(0).standard_normal(one.get_input_details()[0]["shape"]).astype(np.float32)
    one.set_tensor(one.get_input_details()[0]["index"], x)
    full.set_tensor(full.get_input_details()[0]["index"], x)
    one.invoke()
    full.invoke()
    y = one.get_tensor(one.get_output_details()[0]["index"])
    ops = full._get_ops_details()
    conv = next(op for op in ops if op["op_name"] == "CONV_2D")
    np.testing.assert_allclose(full.get_tensor(conv["outputs"][0]), y, rtol=1e-5, atol=1e-5)


def test_profile_cli_probes_litert_artifacts(tflite_fp32):
    from vanillanet_edge.cli.profile_cli import profile_cmd

    res = CliRunner().invoke(profile_cmd, [str(tflite_fp32.folder), "--no-peak", "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    [rec] = json.loads(res.output[res.output.index("["):])
    assert rec["status"] == "ok" and rec["profiler"].startswith("op probe")
    assert rec["name"] == tflite_fp32.folder.name
    assert all("flag" in r and "gmacs_per_s" in r for r in rec["rows"])
    res = CliRunner().invoke(profile_cmd, [str(tflite_fp32.folder), "--no-peak", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "GMAC/s" in res.output and "DEPTHWISE_CONV_2D 7x7" in res.output
    res = CliRunner().invoke(profile_cmd, [str(tflite_fp32.folder), "--no-ops"])
    assert res.exit_code == 1 and "benchmark_model" in res.output
