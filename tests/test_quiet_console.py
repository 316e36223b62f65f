"""A quiet console: the main commands print our own lines (and progress bars) only; the
toolchains' chatter (absl/TensorFlow, XNNPACK, coremltools, torch, multiprocessing warnings) goes
to the run folder's toolchain.log, or nowhere, and `-v` shows it."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# What the toolchains print when nobody stops them (all seen on this project's commands).
FOREIGN = re.compile(r"^[IWEF]\d{4} |Warning|warn\(|WARNING|^INFO|Failed to load|os\.fork|self\.pid|"
                     r"\[START\]|\[ DONE\]|TensorFlow|absl|XNNPACK delegate|scikit-learn version|"
                     r"Torch version|oneDNN|flatbuffer", re.I)


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("vanillanet-edge")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def _foreign(proc: subprocess.CompletedProcess) -> list[str]:
    lines = (proc.stdout + "\n" + proc.stderr).replace("\r", "\n").splitlines()
    return [line for line in lines if FOREIGN.search(line)]


@pytest.mark.parametrize("args", [
    ("devices", "check"),
    ("info", "vanillanet_5"),
])
def test_quick_commands_print_only_our_lines(args, tmp_path):
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _foreign(proc) == []


def test_convert_and_bench_print_only_our_lines_and_v_shows_the_rest(tiny_checkpoint, tmp_path):
    convert = _cli("convert", str(tiny_checkpoint.path), "--target", "onnx", "--target", "tflite",
                   "--target", "coreml", "--precision", "fp32", "--out", "arts", cwd=tmp_path)
    assert convert.returncode == 0, convert.stderr
    assert _foreign(convert) == []
    bench = _cli("bench", "arts", "--runs", "2", "--rounds", "1", "--warmup", "1", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    assert _foreign(bench) == []
    loud = _cli("-v", "devices", "check", cwd=tmp_path)     # the same chatter, shown on request
    assert loud.returncode == 0 and _foreign(loud)


def test_run_keeps_the_chatter_in_the_run_folder(tiny_checkpoint, tmp_path):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(f'[model]\ncheckpoint = "{tiny_checkpoint.path}"\n[data]\nroot = "{tiny_checkpoint.data}"\n'
                        '[convert]\ntargets = ["tflite"]\nprecisions = ["fp32"]\n[eval]\nlimit = 20\n'
                        '[bench]\nruns = 2\nrounds = 1\nwarmup = 1\n[verdict]\nmodels = []\n')
    proc = _cli("run", str(pipeline), "--out", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _foreign(proc) == []
    log = (tmp_path / "run" / "toolchain.log").read_text()
    assert FOREIGN.search(log)           # the LiteRT converter's lines landed there
