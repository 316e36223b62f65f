"""The report from a small real run: tiny artifacts converted, benchmarked and evaluated for real."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from vanillanet_edge.cli.report_cli import baseline_cmd, report_cmd
from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint
from vanillanet_edge.devices.accuracy import evaluate
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings, bench
from vanillanet_edge.devices.peak import measure_peaks
from vanillanet_edge.fileio import write_json
from vanillanet_edge.pipeline.report import NOT_MEASURED, build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def peak():
    """This machine's matmul peaks through ONNX Runtime (short probes: a few seconds)."""
    return measure_peaks(runtimes=("onnxruntime",), seconds_per_probe=0.1, min_calls=1)


@pytest.fixture(scope="module")
def run_dir(tiny_checkpoint, tmp_path_factory):
    """ONNX fp32 + int8 of the tiny net, benchmarked (2 interleaved rounds) and evaluated."""
    arts = tmp_path_factory.mktemp("report-artifacts")
    int8 = Int8Options(calib_data=tiny_checkpoint.data / "train", samples=32)
    outcomes = convert_checkpoint(tiny_checkpoint.path, ["onnx"], ["fp32", "int8"], arts, int8=int8)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    refs = resolve([arts])
    run = tmp_path_factory.mktemp("run")
    write_json(run / "latency.json", bench(refs, BenchSettings(warmup=2, runs=8, rounds=2)))
    val = tiny_checkpoint.data / "val"
    write_json(run / "sub" / "accuracy.json", [evaluate(r, val, limit=60) for r in refs])
    (run / "notes.json").write_text(json.dumps({"not": "a record"}))
    return run


def _html_cells(html: str) -> list[tuple[str, str, str]]:
    """(table id, data-type, text) for every body cell."""
    out = []
    for tid, body in re.findall(r'<table id="([^"]+)">(.*?)</table>', html, re.S):
        for kind, text in re.findall(r'<td class="[^"]*" data-type="([^"]+)">(.*?)</td>', body, re.S):
            out.append((tid, kind, text))
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_report_files_plots_and_numbers(run_dir, tmp_path, peak):
    out = tmp_path / "report"
    report = build_report(run_dir, out, peaks=peak)
    for name in ("report.md", "report.html", "report.json"):
        assert (out / name).stat().st_size > 0
    assert report["records"] == 4 and sorted(report["sources"]) == ["latency.json", "sub/accuracy.json"]
    assert [s["file"] for s in report["skipped_files"]] == ["notes.json"]
    [peaks] = report["peaks"]
    assert peaks["peaks"]["onnxruntime"]["fp32"]["gmacs_per_s"] > 0 and json.loads((out / "report.json").read_text())["peaks"]

    html = (out / "report.html").read_text()
    imgs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", html)
    assert len(imgs) >= 4                        # latency, scaling, roofline, int8
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://" not in html and "https://" not in html and "<link" not in html

    # every cell of a numeric column holds a number or says "not measured"
    cells = _html_cells(html)
    assert cells
    for tid, kind, text in cells:
        if kind == "num":
            assert _is_number(text) or text == NOT_MEASURED, (tid, text)
    for table in report["tables"]:
        nums = [c["name"] for c in table["columns"] if c["type"] == "num"]
        for row in table["rows"]:
            for c in nums:
                assert row[c] is None or isinstance(row[c], (int, float)), (table["key"], c, row[c])

    md = (out / "report.md").read_text()
    for block in re.findall(r"((?:^\|.*\|\n)+)", md + "\n", re.M):
        lines = block.strip().splitlines()
        numeric = [a.strip().endswith(":") for a in lines[1].strip("|").split("|")]
        for line in lines[2:]:
            for is_num, cell in zip(numeric, line.strip("|").split("|")):
                if is_num:
                    assert _is_number(cell.strip()) or cell.strip() == NOT_MEASURED, line
    for m in re.findall(r"\]\((plots/[^)]+\.png)\)", md):
        assert (out / m).read_bytes().startswith(PNG_MAGIC)

    tables = {t["key"]: t for t in report["tables"]}
    lat = tables["latency"]["rows"]
    assert {(r["runtime"], r["precision"]) for r in lat} == {("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    for r in lat:
        assert r["95% low ms"] <= r["median ms"] <= r["95% high ms"] and r["GMAC/s"] > 0 and r["bytes/param"] > 0.5
        # % of the peak of the precision it computes in, through its own runtime's probe
        assert r["peak of"] == f"onnxruntime {r['computed in']}" and r["% of peak"] > 0
    [int8] = tables["int8"]["rows"]
    assert int8["speed-up x"] > 0 and int8["speed-up min"] <= int8["speed-up x"] <= int8["speed-up max"]
    assert int8["rounds"].startswith("paired rounds")
    assert int8["top-1 change (points)"] is not None and int8["accuracy from"].startswith("eval records")
    assert len(tables["accuracy"]["rows"]) == 2


def test_verdict_says_not_measured_without_resnet50(run_dir, tmp_path, peak):
    report = build_report(run_dir, tmp_path / "r", peaks=peak)
    verdict = {t["key"]: t for t in report["tables"]}["verdict"]["rows"]
    assert verdict and all(r["ratio"] is None and r["ResNet-50 ms"] is None for r in verdict)
    assert any(r["VanillaNet"] == "vanillanet_9" for r in verdict)
    # the tiny net is vanillanet_5 at width 1/32: not the full-size model of the claim
    assert all(r["VanillaNet ms"] is None for r in verdict)
    html = (tmp_path / "r" / "report.html").read_text()
    verdict_html = re.search(r'<table id="verdict">(.*?)</table>', html, re.S).group(1)
    assert NOT_MEASURED in verdict_html and "2.91" not in verdict_html     # published: one line, not columns
    published = re.search(r'</table><p class="published">(.*?)</p>', html[html.index('<table id="verdict">'):]).group(1)
    assert published.startswith("Published, not measured here") and "2.91 ms" in published and "7.64 ms" in published


def test_empty_run_dir_gives_not_measured_report(tmp_path, peak):
    (tmp_path / "run").mkdir()
    report = build_report(tmp_path / "run", tmp_path / "out", peaks=peak)
    assert report["records"] == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert NOT_MEASURED in md and "<img" not in (tmp_path / "out" / "report.html").read_text()


def test_report_command(run_dir, tmp_path):
    result = CliRunner().invoke(report_cmd, [str(run_dir), "--out", str(tmp_path / "o"), "--peak-seconds", "0.05"])
    assert result.exit_code == 0, result.output
    assert "machine:" in result.output and "not measured" in result.output
    assert (tmp_path / "o" / "report.html").exists()
    help_text = CliRunner().invoke(report_cmd, ["--help"]).output
    assert "bench --save" in help_text and "Example" in help_text


def test_baseline_command_help_and_bad_name(tmp_path):
    help_text = CliRunner().invoke(baseline_cmd, ["--help"]).output
    for word in ("resnet50", "convnext_tiny", "vanillanet_9", "random", "Examples"):
        assert word in help_text
    bad = CliRunner().invoke(baseline_cmd, ["resnet51", "--target", "onnx", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "resnet51" in bad.output


def _chromium() -> str:
    """Debian's Chromium; installed on first use where this machine kind allows (root + apt)."""
    found = shutil.which("chromium")
    if not found and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.fail("Chromium is needed to check the HTML report in a real browser: apt-get install chromium")
    return found


def test_html_report_renders_in_headless_chromium(run_dir, tmp_path, peak):
    """Every plot decodes in a real browser, and every number table arrives with numbers."""
    build_report(run_dir, tmp_path / "rep", peaks=peak)
    html = (tmp_path / "rep" / "report.html").read_text()
    # A copy with a probe: after load, the title says how many images really decoded.
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.title='IMAGES '+i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>")
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"))
    dom = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    [(ok, total)] = re.findall(r"<title>IMAGES (\d+)/(\d+)</title>", dom)
    assert int(total) >= 3 and ok == total
    rendered = _html_cells(dom)
    assert rendered and all(_is_number(text) for _, kind, text in rendered if kind == "number")


def test_error_bars_never_negative_when_the_overall_ratio_is_outside_the_rounds():
    from vanillanet_edge.pipeline.report import _spread
    assert _spread(1.276, 1.156, 1.266) == [[pytest.approx(0.12)], [0.0]]
    assert _spread(1.0, 1.2, 1.5) == [[0.0], [0.5]]
