"""Per-layer profiles from the runtimes' own profilers, on real tiny artifacts; the profile command."""
from __future__ import annotations

import importlib.util
import json
import os
import re

import pytest
from click.testing import CliRunner

from vanillanet_edge.cli.main import main
from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.onnxruntime import aggregate_ort_trace
from vanillanet_edge.devices.openvino import exec_precision
from vanillanet_edge.devices.profiling import group_by_op_type, profile
from vanillanet_edge.devices.registry import get_runner
from vanillanet_edge.errors import ProfilingNotOfferedError, VanillaNetEdgeError

RUNS, WARMUP = 5, 2
HAVE_LITERT_CONVERTER = importlib.util.find_spec("litert_torch") is not None


@pytest.fixture(scope="module")
def more_artifacts(tiny_checkpoint, tmp_path_factory):
    """INT8 ONNX and OpenVINO artifacts of the shared tiny net (a few seconds): the fp32
    ONNX/OpenVINO ones come from `tiny_artifacts`, the LiteRT fp32 one from `lite_folders`."""
    out = tmp_path_factory.mktemp("profile_artifacts")
    outcomes = convert_checkpoint(tiny_checkpoint.path, ["onnx", "openvino"], ["int8"], out,
                                  int8=Int8Options(calib_data=tiny_checkpoint.data / "train", samples=16))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return out


@pytest.fixture
def lite_folders(request):
    """[the shared LiteRT fp32 artifact folder] (tests/conftest.py tiny_tflite), or [] where
    the LiteRT converter is not installed."""
    return [request.getfixturevalue("tiny_tflite").folder] if HAVE_LITERT_CONVERTER else []


@pytest.fixture(scope="module")
def refs(tiny_artifacts, more_artifacts):
    """(runtime, precision) -> ArtifactRef of every artifact above."""
    return {(r.runtime, r.manifest["precision"]): r for r in resolve([tiny_artifacts, more_artifacts])}


def _check_record(record, runs=RUNS):
    rows = record["rows"]
    assert record["kind"] == "layer_profile" and record["status"] == "ok" and rows
    assert all(r["time_ms"] >= 0 and r["calls"] >= 1 for r in rows)
    assert record["total_ms"] > 0 and record["wall_ms_per_inference"] > 0
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    times = [r["time_ms"] for r in rows]
    assert times == sorted(times, reverse=True)
    assert sorted(r["order"] for r in rows) == list(range(len(rows)))
    assert "cpu_model" in record["machine"]
    groups = group_by_op_type(record)
    assert sum(g["share"] for g in groups) == pytest.approx(1.0)
    assert sum(g["layers"] for g in groups) == len(rows)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnxruntime_rows_are_the_graphs_conv_nodes(refs, precision):
    import onnx

    ref = refs[("onnxruntime", precision)]
    record = profile(ref, runs=RUNS, warmup=WARMUP)
    _check_record(record)
    graph = onnx.load(str(ref.artifact)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    known = {n.name for n in graph.node} | {t for n in graph.node for t in n.output}
    rows = [r for r in record["rows"] if r["op_type"] in ("Conv", "QLinearConv", "FusedConv")]
    # ORT renames the nodes it rewrites (<node>_token_N after QDQ fusion, <output>_nchwc after
    # the NCHWc layout pass); the stem is still the graph's node or the tensor it writes.
    assert len(rows) == len(convs)
    for r in rows:
        stem = re.sub(r"(_token_\d+|_nchwc)+$", "", r["name"])
        assert stem in known, r["name"]
        assert r["time_ms"] > 0 and r["calls"] == RUNS       # warm-up runs were cut out
        assert r["exec_type"] == "CPUExecutionProvider"
    want = "u8" if precision == "int8" else "f32"
    assert {r["op_type"] for r in rows} == ({"QLinearConv"} if precision == "int8" else {"Conv"})
    assert all(r["precision"] in (want, "i8") for r in rows)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_rows_are_the_models_conv_layers(refs, precision):
    import openvino as ov

    ref = refs[("openvino", precision)]
    record = profile(ref, runs=RUNS, warmup=WARMUP)
    _check_record(record)
    model = ov.Core().read_model(str(ref.artifact))
    convs = {op.get_friendly_name() for op in model.get_ordered_ops()
             if op.get_type_name() in ("Convolution", "GroupConvolution")}
    rows = [r for r in record["rows"] if r["op_type"] in ("Convolution", "GroupConvolution")]
    assert {r["name"] for r in rows} == convs
    assert all(r["calls"] == RUNS for r in rows)
    # OpenVINO counts whole microseconds per layer and inference: a tiny layer may read 0, the stem not
    assert all(r["time_ms"] >= 0 for r in rows)
    assert next(r for r in rows if "stem.0" in r["name"])["time_ms"] > 0
    if precision == "int8":     # the kernels that ran are integer ones
        assert all(re.search(r"(I8|i8|u8)$", r["exec_type"]) for r in rows), [r["exec_type"] for r in rows]
        assert all(r["precision"] in ("i8", "u8") for r in rows)


def test_openvino_profile_keeps_the_runner_settings(refs):
    record = profile(refs[("openvino", "fp32")], runs=2, warmup=1, threads=1, options={"precision_hint": "f32"})
    assert record["session_settings"]["inference_precision"] == "f32"
    assert record["session_settings"]["threads"] == 1
    convs = [r for r in record["rows"] if r["op_type"] == "Convolution"]
    assert convs and all(r["exec_type"].endswith("f32") for r in convs)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="THROUGHPUT compiles one stream on one core")
def test_openvino_refuses_several_streams(refs):
    with pytest.raises(VanillaNetEdgeError, match="one stream"):
        profile(refs[("openvino", "fp32")], runs=1, options={"performance_hint": "THROUGHPUT"})


def test_exec_type_precision():
    assert exec_precision("brgconv_avx512_1x1_I8") == "i8"
    assert exec_precision("jit_avx512_bf16") == "bf16"
    assert exec_precision("ref_any") is None


def test_ort_trace_keeps_only_the_last_runs():
    """Warm-up inferences recorded in the same trace are cut out by their model_run spans."""
    events = []
    for i, dur in enumerate([500, 400, 10, 20, 30]):        # 2 warm-up runs, then 3 measured
        ts = 1000 * i
        events.append({"cat": "Session", "name": "model_run", "ts": ts, "dur": 100})
        events.append({"cat": "Node", "name": "conv_kernel_time", "ts": ts + 5, "dur": dur,
                       "args": {"op_name": "Conv", "provider": "CPUExecutionProvider",
                                "input_type_shape": [{"float": [1, 3, 8, 8]}]}})
    [row] = aggregate_ort_trace(events, runs=3)
    assert row["name"] == "conv" and row["calls"] == 3 and row["precision"] == "f32"
    assert row["time_ms"] == pytest.approx(0.020)


def test_litert_says_profiling_is_not_offered_and_what_to_use():
    manifest = {"precision": "int8", "input": {"shape": [1, 32, 32, 3], "layout": "NHWC"}}
    with pytest.raises(ProfilingNotOfferedError) as err:
        get_runner("litert").profile_layers("m/model.tflite", manifest, 10, threads=2)
    assert "not offered by the litert runtime" in str(err.value)
    hint = err.value.hint
    assert "--enable_op_profiling=true" in hint and "--graph=m/model.tflite" in hint
    assert "--num_threads=2" in hint and "--use_xnnpack=false" not in hint  # XNNPACK, as the runner's default
    with pytest.raises(ProfilingNotOfferedError) as err:
        get_runner("litert").profile_layers("m/model.tflite", manifest, 10, threads=2, kernels="builtin")
    assert "--use_xnnpack=false" in err.value.hint                        # the built-in kernels, when asked
    with pytest.raises(ProfilingNotOfferedError, match="torch runtime"):  # the base class default
        get_runner("torch").profile_layers("x.pth", manifest, 10)


def test_profile_command_on_folders(tiny_artifacts, more_artifacts, lite_folders, tmp_path):
    save = tmp_path / "profile.json"
    result = CliRunner().invoke(main, ["profile", str(tiny_artifacts), str(more_artifacts), *map(str, lite_folders), "--runs", "3",
                                       "--warmup", "1", "--top", "4", "--save", str(save)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("by op type") == 4 and "exec / kernel" in out
    assert "__module.stem.0/aten::_convolution/Convolution" in out and "QLinearConv" in out
    assert re.search(r"(?i)(brgconv|jit)\w*_i8", out), out   # _I8 on VNNI, _i8 on AMX kernels
    records = json.loads(save.read_text())
    # ONNX Runtime and OpenVINO by their own profilers; LiteRT (no profiler in its Python API)
    # by the op probe: each distinct layer timed as a one-op model (devices/op_probe.py)
    assert sum(r["status"] == "ok" for r in records) == 4 + HAVE_LITERT_CONVERTER


def test_profile_command_json_and_nothing_profiled(lite_folders, tiny_artifacts):
    result = CliRunner().invoke(main, ["profile", str(tiny_artifacts), "--runs", "2", "--warmup", "0", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["runtime"] for r in records] == ["onnxruntime", "openvino"]
    for lite in lite_folders:          # only a runtime without a profiler: nothing profiled, exit 1
        result = CliRunner().invoke(main, ["profile", str(lite), "--no-ops"], catch_exceptions=False)
        assert result.exit_code == 1 and "not offered" in result.output and "benchmark_model --graph=" in result.output


def test_profile_help_has_examples():
    result = CliRunner().invoke(main, ["profile", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--set precision_hint=f32" in result.output
