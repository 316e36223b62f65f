"""Matmul peak probes per runtime and precision, on the real runtimes (short settings, ~10 s)."""
from __future__ import annotations

import sys
import tempfile

import pytest

from vanillanet_edge.devices import onnxruntime as ort_runner
from vanillanet_edge.devices.machine import describe_machine
from vanillanet_edge.devices.openvino import OpenVinoRunner
from vanillanet_edge.devices.peak import CONV_SHAPE, best_peak, measure_peaks, peak_for

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

ISA = set(describe_machine()["isa"])


@pytest.fixture(scope="module")
def peaks(tmp_path_factory):
    """Every probe, conv shape only, 0.3 s each (~5 s); temp files go to a folder checked empty."""
    tmp = tmp_path_factory.mktemp("peak_tmp")
    before, tempfile.tempdir = tempfile.tempdir, str(tmp)
    try:
        result = measure_peaks(seconds_per_probe=0.3, shapes=(CONV_SHAPE,))
    finally:
        tempfile.tempdir = before
    result["_tmp"] = tmp
    return result


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_probe_measures_a_positive_verified_rate(peaks, runtime, precision):
    entry = peaks["peaks"][runtime][precision]
    assert entry["gmacs_per_s"] > 0 and entry["verified"]
    assert (entry["m"], entry["n"], entry["k"]) == (CONV_SHAPE.m, CONV_SHAPE.n, CONV_SHAPE.k)
    assert entry["exec_type"] and entry["threads"]
    assert peak_for(peaks, runtime, precision) == entry["gmacs_per_s"]


def test_openvino_int8_runs_as_int8(peaks):
    entry = peaks["peaks"]["openvino"]["int8"]
    assert set(entry["runtime_precision"].split(", ")) <= {"u8", "i8"}
    assert "i8" in entry["exec_type"].lower() or "u8" in entry["exec_type"].lower(), entry["exec_type"]


def test_onnxruntime_int8_is_fused_into_an_integer_matmul(peaks):
    entry = peaks["peaks"]["onnxruntime"]["int8"]
    assert entry["runtime_precision"] == "u8"
    assert any(op in entry["exec_type"] for op in ort_runner._ORT_INT8_OPS), entry["exec_type"]


def test_openvino_bf16_runs_as_bf16_where_the_cpu_has_it(peaks):
    if ISA & {"avx512_bf16", "amx_bf16"}:
        entry = peaks["peaks"]["openvino"]["bf16"]
        assert entry["runtime_precision"] == "bf16" and "bf16" in entry["exec_type"]
        assert entry["inference_precision"] == "bf16"
    else:
        assert "avx512_bf16" in peaks["unavailable"]["openvino"]["bf16"]["reason"]


@pytest.mark.skipif(not ISA & {"avx512_vnni", "avx_vnni", "amx_int8"}, reason="no VNNI / AMX-INT8")
def test_openvino_int8_peak_beats_fp32_with_vnni(peaks):
    assert peak_for(peaks, "openvino", "int8") > peak_for(peaks, "openvino", "fp32")


def test_onnxruntime_bf16_is_reported_unavailable_with_why(peaks):
    assert peak_for(peaks, "onnxruntime", "bf16") is None
    assert "bf16" in peaks["unavailable"]["onnxruntime"]["bf16"]["reason"].replace("bfloat16", "bf16")


def test_best_peak_is_the_fastest_runtime_of_a_precision_and_lends_it_to_runtimes_without_a_probe(peaks):
    """LiteRT has no matmul probe: tune rates its candidates against the best peak measured on
    the device in the same run, and says whose it is."""
    from types import SimpleNamespace

    from vanillanet_edge.tune.search import TuneOptions, _row

    rates = {r: e["fp32"]["gmacs_per_s"] for r, e in peaks["peaks"].items() if e.get("fp32")}
    assert best_peak(peaks, "fp32") == (max(rates.values()), max(rates, key=rates.get))
    assert best_peak(peaks, "no-such-precision") is None and best_peak({}, "fp32") is None
    gmacs = 0.5 * max(rates.values())
    record = {"ok": True, "latency": {"median_ms": 1.0}, "median_interval_ms": {"low_ms": 0.9, "high_ms": 1.1},
              "gmacs_per_s": gmacs}
    manifest = {"target": "tflite", "precision": "fp32", "input": {"shape": [1, 32, 32, 3], "layout": "NHWC"}}
    lite = SimpleNamespace(label="x", artifact="a", manifest=manifest, runtime="litert", compute="fp32",
                           settings={}, rewrites=(), batch=1, input_size=32, checks={}, record=record, precision="fp32")
    row = _row(lite, peaks, TuneOptions())
    assert row["peak_runtime"] == best_peak(peaks, "fp32")[1] and row["fraction_of_peak"] == pytest.approx(0.5)
    own = _row(SimpleNamespace(**{**vars(lite), "runtime": "onnxruntime"}), peaks, TuneOptions())
    assert own["peak_runtime"] == "onnxruntime" and own["peak_gmacs_per_s"] == peak_for(peaks, "onnxruntime", "fp32")


def test_result_carries_machine_and_leaves_no_files(peaks):
    assert peaks["machine"] == describe_machine()
    assert list(peaks["_tmp"].iterdir()) == []


def test_bf16_without_cpu_support_is_unavailable():
    assert "avx512_bf16" in OpenVinoRunner().peak_unavailable("bf16", {"isa": ["avx2", "avx512f"]})
    assert OpenVinoRunner().peak_unavailable("bf16", {"isa": ["avx512_bf16"]}) is None


def test_missing_runtime_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)    # makes `import onnxruntime` fail
    result = measure_peaks(("fp32",), ("onnxruntime",))
    assert result["peaks"] == {}
    assert "not installed" in result["unavailable"]["onnxruntime"]["fp32"]["reason"]


def test_probe_in_another_precision_is_not_a_peak(monkeypatch):
    fake = {"gmacs_per_s": 1.0, "verified": False, "exec_type": "gemm_mlas_f32", "runtime_precision": "f32"}
    monkeypatch.setattr(OpenVinoRunner, "probe_peak", lambda *a: dict(fake))
    result = measure_peaks(("int8",), ("openvino",))
    assert peak_for(result, "openvino", "int8") is None
    item = result["unavailable"]["openvino"]["int8"]
    assert "gemm_mlas_f32" in item["reason"] and item["measured"]["verified"] is False


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp64"):
        measure_peaks(("fp64",))
