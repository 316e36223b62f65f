"""bench and eval on real runtimes: records, statistics, machine description, errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vanillanet_edge.cli.main import main
from vanillanet_edge.devices.accuracy import evaluate
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings, bench, summarize_times
from vanillanet_edge.devices.machine import describe_machine
from vanillanet_edge.errors import DataError, VanillaNetEdgeError


def test_summary_statistics_are_computed_from_the_times():
    s = summarize_times([1.0, 2.0, 3.0, 4.0, 100.0], batch=2)
    assert s["median_ms"] == 3.0 and s["min_ms"] == 1.0 and s["runs"] == 5
    assert s["p99_ms"] > s["p90_ms"] > s["median_ms"]
    assert s["throughput_ips"] == pytest.approx(2000 / 3.0)


def test_machine_description_has_what_reports_need():
    m = describe_machine()
    for key in ("cpu_model", "logical_cores", "isa", "os", "arch", "versions", "memory_gib"):
        assert key in m
    assert m["logical_cores"] >= 1 and "numpy" in m["versions"]


def test_bench_artifacts_and_checkpoint_in_separate_processes(tiny_artifacts, tiny_checkpoint):
    refs = resolve([tiny_artifacts, tiny_checkpoint.path])
    assert [r.runtime for r in refs] == ["onnxruntime", "openvino", "torch"]
    records = bench(refs, BenchSettings(warmup=2, runs=12, rounds=2))
    for r in records:
        assert r["ok"], r.get("error")
        lat = r["latency"]
        assert lat["runs"] == 12 and 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p99_ms"]
        assert len(r["round_medians_ms"]) == 2
        iv = r["median_interval_ms"]        # covers the median and every round's median
        assert iv["low_ms"] <= min(r["round_medians_ms"]) and max(r["round_medians_ms"]) <= iv["high_ms"]
        assert iv["low_ms"] < lat["median_ms"] < iv["high_ms"] and iv["level"] == 0.95
        assert r["load_ms"] > 0 and r["first_inference_ms"] > 0 and r["peak_rss_mib"] > 50
        assert r["gmacs_per_s"] > 0 and r["machine"]["cpu_model"]
    ov = next(r for r in records if r["runtime"] == "openvino")
    assert ov["session_settings"]["inference_precision"] in {"f32", "bf16", "f16"}


def test_coreml_latency_is_unavailable_off_macos(tiny_checkpoint, tmp_path):
    from vanillanet_edge.converters.convert import convert_checkpoint
    from vanillanet_edge.devices.coreml import on_macos

    [outcome] = convert_checkpoint(tiny_checkpoint.path, ["coreml"], ["fp32"], tmp_path)
    [record] = bench(resolve([outcome.folder]), BenchSettings(warmup=1, runs=3, rounds=1))
    if on_macos():
        assert record["status"] == "ok"
    else:
        assert record["status"] == "unavailable" and "macOS" in record["reason"]
        assert "latency" not in record


def test_bench_time_budget_and_runner_settings(tiny_artifacts):
    [ref] = [r for r in resolve([tiny_artifacts]) if r.runtime == "openvino"]
    [record] = bench([ref], BenchSettings(warmup=1, seconds=0.6, rounds=1, options={"precision_hint": "f32"}))
    assert record["ok"] and record["latency"]["runs"] > 1
    assert record["session_settings"]["inference_precision"] == "f32"


def test_eval_reports_top1_top5_and_agreement(tiny_artifacts, tiny_checkpoint):
    val = tiny_checkpoint.data / "val"
    [onnx_ref] = [r for r in resolve([tiny_artifacts]) if r.runtime == "onnxruntime"]
    result = evaluate(onnx_ref, val, limit=120)
    assert result["images"] == 120 and result["top5"] >= result["top1"] > 0.8
    assert result["agreement_with_fp32"] == 1.0     # fp32 ONNX vs the fused torch net
    torch_result = evaluate(resolve([tiny_checkpoint.path])[0], val, limit=120)
    assert torch_result["top1"] == result["top1"]


def test_eval_refuses_unlabelled_folder(tiny_artifacts, tiny_checkpoint, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((tiny_checkpoint.data / "val" / "3").glob("*.png"))[:3]:
        (flat / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DataError, match="no class sub-folders"):
        evaluate(resolve([tiny_artifacts])[0], flat)


def test_resolve_errors(tmp_path):
    with pytest.raises(VanillaNetEdgeError, match="not found"):
        resolve([tmp_path / "missing"])
    with pytest.raises(VanillaNetEdgeError, match="no artifact folders"):
        resolve([tmp_path])


def test_cli_bench_and_eval_json(tiny_artifacts, tiny_checkpoint, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["bench", str(tiny_artifacts), "--runs", "6", "--rounds", "1",
                               "--warmup", "1", "--json", "--save", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    records = json.loads(res.output)
    assert len(records) == 2 and json.loads((tmp_path / "b.json").read_text()) == records
    res = runner.invoke(main, ["eval", str(tiny_artifacts), "--data", str(tiny_checkpoint.data / "val"),
                               "--limit", "40"])
    assert res.exit_code == 0, res.output
    assert "top-1" in res.output and "onnxruntime" in res.output


def test_bench_at_one_thread_records_cpu_time_beside_wall_time(tiny_artifacts):
    """CPU time per inference is recorded beside wall time (issue 24): a latency at 1 thread."""
    refs = resolve([tiny_artifacts])
    records = bench(refs, BenchSettings(threads=1, warmup=2, runs=10, rounds=2))
    for r in records:
        assert r["ok"], r.get("error")
        cpu = r["cpu_ms"]
        assert cpu["is_latency"] and len(cpu["round_medians_ms"]) == 2
        # At 1 thread the process cannot spend much more CPU than wall time on a call, and on
        # this quiet-or-not machine it spends some: a share of (0, 1.5] (helper threads allowed).
        assert 0 < cpu["median_ms"] and 0 < cpu["share_of_wall"] <= 1.5
        assert r["load_average_max"] is None or r["load_average_max"] >= 0


def test_cpu_share_and_load_average_warn_of_a_loaded_machine():
    from vanillanet_edge.devices.latency import _cpu_and_load

    def rounds(cpu, load):
        return [{"cpu_times_ms": cpu, "load_average": load, "logical_cpus": 2,
                 "session_settings": {"threads": 1}}] * 2
    quiet = _cpu_and_load(rounds([9.5, 9.8, 9.9], [0.3, 0.9]), 10.0)
    assert "load_warning" not in quiet and quiet["cpu_ms"]["median_ms"] == 9.8
    preempted = _cpu_and_load(rounds([4.0, 4.1, 4.2], [0.3, 0.9]), 10.0)
    assert "41% of its wall time" in preempted["load_warning"]
    busy = _cpu_and_load(rounds([9.5, 9.8, 9.9], [3.2, 3.6]), 10.0)
    assert "load average reached 3.6 on 2 logical CPUs" in busy["load_warning"]
    assert _cpu_and_load([{"times_ms": [1.0]}], 1.0) == {}       # an older worker: nothing claimed


def test_cli_bench_table_shows_cpu_time(tiny_artifacts):
    res = CliRunner().invoke(main, ["bench", str(tiny_artifacts), "--threads", "1", "--runs", "4",
                                    "--rounds", "1", "--warmup", "1"])
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if line.startswith("artifact"))
    assert "CPU" in header.split() and "CPU: process CPU time per inference" in res.output
