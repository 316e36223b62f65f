"""Names in result records are data, never markup: a model or file name holding HTML or
matplotlib mathtext ends up as text in report.md, report.html and the plots."""
from __future__ import annotations

import json

from vanillanet_edge.pipeline.report import build_report

HOSTILE = ['<img src=x onerror="alert(1)">', r"$\foo{$", "a|b*_`[x](javascript:alert(1))"]


def _record(name: str, variant: str, ms: float, runtime: str = "onnxruntime") -> dict:
    return {"schema_version": 1, "kind": "latency", "artifact": f"/nowhere/{name}", "name": name,
            "target": "onnx", "precision": "fp32", "runtime": runtime, "ok": True, "status": "ok",
            "model": {"variant": variant, "family": "vanillanet" if variant.startswith("vanillanet") else "baseline",
                      "width": 1.0, "macs": 10 ** 9},
            "input": {"shape": [1, 3, 224, 224], "layout": "NCHW"},
            "latency": {"median_ms": ms, "p90_ms": ms, "runs": 3},
            "round_medians_ms": [ms], "median_interval_ms": {"low_ms": ms * 0.9, "high_ms": ms * 1.1},
            "session_settings": {"threads": 2}, "machine": {"cpu_model": HOSTILE[0], "hostname": "h"}}


def test_hostile_names_are_escaped_and_plotted_as_text(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [_record(n, n, 5.0 + i) for i, n in enumerate(HOSTILE)]
    records += [_record("vn9" + HOSTILE[1], "vanillanet_9", 4.0), _record("r50" + HOSTILE[0], "resnet50", 8.0)]
    (run / "bench.json").write_text(json.dumps(records))
    peaks = {"peaks": {"onnxruntime": {"fp32": {"gmacs_per_s": 50.0, "threads": 2}}},
             "machine": {"cpu_model": HOSTILE[0], "hostname": "h"}, "how": HOSTILE[0]}
    report = build_report(run, tmp_path / "out", peaks=peaks)
    assert report["plots"]                       # matplotlib drew every label, mathtext included
    md = (tmp_path / "out" / "report.md").read_text()
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<img src=x" not in md and "<img src=x" not in html.replace("<img alt=", "")
    assert "&lt;img src=x onerror" in md and "&lt;img src=x onerror" in html
    verdict = report["tables"][0]["rows"]
    assert verdict[0]["ratio"] == 0.5            # the real pair still made it through
    assert not list((tmp_path / "out").rglob(".*partial*"))
