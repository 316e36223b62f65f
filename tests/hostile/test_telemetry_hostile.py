"""No runtime telemetry from our processes: a real eval and bench of an ONNX and an OpenVINO
artifact, and the device runner bundle, run with HOME set to a fresh folder, leave nothing under
HOME/.cache/Microsoft (ONNX Runtime's 1DS device id and event store) or HOME/intel (OpenVINO's
openvino_telemetry client id and usage counter). devices/telemetry_off.py says how.

The control runs the same runtimes in the same environment WITHOUT our package and checks that
those paths DO appear: otherwise the other tests would prove nothing (a runtime upgrade that
drops its telemetry makes the control fail; update telemetry_off.py's notes then).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).with_name("vanillanet-edge"))
# Variables that silence the runtimes on their own (CI detection, ORT's test switch) or move
# ORT's store: scrubbed, so only our code can be what keeps HOME clean.
SCRUBBED = ("CI", "TF_BUILD", "JENKINS_URL", "GITHUB_ACTIONS", "ORT_DISABLE_TELEMETRY",
            "ORT_RUNNING_UNIT_TESTS", "XDG_CACHE_HOME")
TELEMETRY_PATHS = (".cache/Microsoft", "intel")


def _env(home: Path) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env["HOME"] = str(home)
    return env


def _written(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for rel in TELEMETRY_PATHS if (home / rel).exists()
                  for p in [home / rel, *(home / rel).rglob("*")])


def _run(args: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return proc


def test_control_the_runtimes_alone_do_write_telemetry_there(tiny_artifacts, tmp_path):
    home = tmp_path / "home"
    onnx = next(tiny_artifacts.glob("*-onnx-fp32")) / "model.onnx"
    code = ("import sys, onnxruntime as ort\n"
            "ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
            "import openvino\n"
            "openvino.Core()\n")
    _run([sys.executable, "-c", code, str(onnx)], _env(home), cwd=tmp_path)
    written = _written(home)
    assert any(w.startswith(".cache/Microsoft/DeveloperTools/.onnxruntime") for w in written), written
    assert any(w.startswith("intel/") for w in written), written


def test_eval_and_bench_leave_no_runtime_telemetry(tiny_artifacts, digits_dir, tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    arts = [str(next(tiny_artifacts.glob(f"*-{t}-fp32"))) for t in ("onnx", "openvino")]
    out = _run([CLI, "eval", *arts, "--data", str(digits_dir / "val"), "--limit", "40"], env, cwd=tmp_path)
    assert "onnxruntime" in out.stdout and "openvino" in out.stdout, out.stdout
    _run([CLI, "bench", *arts, "--rounds", "1", "--runs", "3", "--warmup", "1"], env, cwd=tmp_path)
    assert _written(home) == []


def test_device_runner_bundle_leaves_no_runtime_telemetry(tmp_path):
    """`python runner-<hash>.pyz peaks` loads every runtime installed here, as on a device."""
    from vanillanet_edge.remote.bundle import build

    data, sha = build()
    pyz = tmp_path / f"runner-{sha[:12]}.pyz"
    pyz.write_bytes(data)
    home = tmp_path / "home"
    out = _run([sys.executable, str(pyz), "peaks", "0.02"], _env(home), cwd=tmp_path)
    assert '"onnxruntime"' in out.stdout and '"openvino"' in out.stdout, out.stdout[:500]
    assert _written(home) == []
