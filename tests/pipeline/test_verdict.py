"""The verdict stage: full-size-architecture VanillaNet against ResNet-50 (random weights), every
runtime at one stated thread count, each model against its own eager time, the answer first
in the report. Small inputs here (32 px) keep it quick; the 224 run is `make demo`."""
from __future__ import annotations

import json
import re

import pytest

from vanillanet_edge.devices.machine import default_threads
from vanillanet_edge.pipeline.run import run_pipeline


def _cfg(tiny, targets, precisions=("fp32",)) -> dict:
    return {"model": {"checkpoint": str(tiny.path)}, "data": {"root": str(tiny.data)},
            "convert": {"targets": ["onnx"], "precisions": ["fp32"]},
            "eval": {"limit": 20}, "bench": {"runs": 3, "warmup": 1, "rounds": 2},
            "verdict": {"models": ["vanillanet_5"], "baseline": "resnet50", "input_size": 32,
                        "targets": list(targets), "precisions": list(precisions), "calib_samples": 8,
                        "runs": 4, "warmup": 1}}


@pytest.fixture(scope="module")
def verdict_run(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("verdict") / "run"
    logs: list[str] = []
    result = run_pipeline(_cfg(tiny_checkpoint, ["tflite"]), out, log=logs.append)
    return out, result, logs


def test_every_verdict_record_states_the_same_integer_thread_count(verdict_run):
    out, result, _ = verdict_run
    assert not result["failures"], result["failures"]
    records = json.loads((out / "results" / "verdict.json").read_text())
    assert records and all(r["ok"] for r in records), [r.get("error") for r in records if not r["ok"]]
    threads = {r["session_settings"]["threads"] for r in records}
    assert threads == {default_threads()}
    runtimes = {r["runtime"] for r in records}
    assert runtimes == {"litert", "torch"}      # (LiteRT alone keeps it quick: it has the kernel
    # choices and the rewrite; every runtime's verdict path is the same code, run on all of them by `make demo`)
    # LiteRT is timed with both kernel choices (each verified first), and says which ran
    kernels = {(r["name"], r["session_settings"]["kernels"]) for r in records if r["runtime"] == "litert"}
    assert {k for _, k in kernels} == {"xnnpack", "builtin"}
    assert len(kernels) == 6        # (VanillaNet, its dw_dilated rewrite, ResNet-50) x 2 kernel choices
    rewritten = [r for r in records if r["model"].get("rewrites")]
    assert rewritten and all(r["model"]["rewrites"] == ["dw_dilated"] and r["runtime"] == "litert" for r in rewritten)


def test_report_opens_with_numeric_plain_and_best_ratios(verdict_run):
    out, _, _ = verdict_run
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["tables"][0]["key"] == "verdict"
    rows = report["tables"][0]["rows"]
    plain = [r for r in rows if r["comparison"] == "plain"]
    best = [r for r in rows if r["comparison"] == "best"]
    assert {(r["runtime"], r["precision"]) for r in plain} == {("litert", "fp32"), ("torch", "fp32")}
    for r in plain + best:
        assert r["VanillaNet"] == "vanillanet_5" and r["input"] == 32 and r["batch"] == 1
        assert r["ratio"] > 0 and r["95% low"] <= r["ratio"] <= r["95% high"]
        assert f"{default_threads()} threads" in r["settings"]
    # plain rows pair identical settings; LiteRT has two (xnnpack, builtin), so a best row exists
    assert {r["settings"].split(",")[0] for r in plain if r["runtime"] == "litert"} == {"xnnpack kernels",
                                                                                         "builtin kernels"}
    assert {(r["runtime"], r["precision"]) for r in best} == {("litert", "fp32")}
    assert all("dw_dilated" not in r["settings"] for r in plain)     # a rewrite is never "plain"
    html = (out / "report" / "report.html").read_text()
    assert html.index('<table id="verdict">') < html.index('<table id="latency">')
    assert re.search(r'<p class="answer">On local, at 32x32', html) is None   # the sentence is about 224 only
    md = (out / "report" / "report.md").read_text()
    assert md.index("The verdict") < md.index("Latency by model")


def test_speedups_are_against_each_models_own_eager_time(verdict_run):
    _, result, _ = verdict_run
    eager = [r for r in result["summary"] if r["runtime"] == "torch"]
    onnx = [r for r in result["summary"] if r["runtime"] == "onnxruntime"]
    assert len(eager) == 1 and len(onnx) == 1
    assert onnx[0]["speedup_vs_eager"] == pytest.approx(eager[0]["median_ms"] / onnx[0]["median_ms"])


def test_a_rerun_skips_the_verdict(verdict_run, tiny_checkpoint):
    out, _, _ = verdict_run
    logs: list[str] = []
    again = run_pipeline(_cfg(tiny_checkpoint, ["tflite"]), out, log=logs.append)
    assert "verdict:bench" in again["skipped"]
    assert not any(line.startswith("verdict: convert") for line in logs)
