"""Every registered converter and runner holds to the same contract (as timm's tests/test_models.py
does over its model registry): each declares its facts, availability never raises, a missing
toolchain fails loudly with BackendMissingError naming the extra, and the facts the rest of the
code reads (packages, profiler, peak probe, tuning options, compute precision) are well formed.
A backend whose library is not installed here is skipped with the reason, never passed silently.
"""
from __future__ import annotations

import builtins
import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from vanillanet_edge.converters import registry as conv_registry
from vanillanet_edge.converters.base import PRECISIONS, Converter
from vanillanet_edge.devices import registry as dev_registry
from vanillanet_edge.devices.base import Runner
from vanillanet_edge.devices.machine import describe_machine
from vanillanet_edge.errors import BackendMissingError

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
TARGETS = conv_registry.target_names()
RUNTIMES = dev_registry.runtime_names()


def _without(monkeypatch, modules):
    """Make importing any of `modules` (and their submodules) fail, as where they are not installed."""
    real = builtins.__import__
    blocked = {m.split(".")[0] for m in modules}

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in blocked:
            raise ImportError(f"No module named '{name}' (blocked by the test)")
        return real(name, *args, **kwargs)

    for name in list(sys.modules):
        if name.split(".")[0] in blocked:
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: fake(name))


# ============================================================================ converters

@pytest.mark.parametrize("target", TARGETS)
def test_converter_declares_its_facts(target):
    cls = conv_registry.converter_class(target)
    assert issubclass(cls, Converter) and cls.target == target
    assert cls.extra in EXTRAS, f"{target}: extra '{cls.extra}' is not in pyproject's extras"
    assert cls.runtime in RUNTIMES, f"{target}: verifies with unknown runtime '{cls.runtime}'"
    assert cls.modules and all(isinstance(m, str) for m in cls.modules)
    assert cls.precisions and set(cls.precisions) <= set(PRECISIONS)
    assert ("int8" in cls.precisions) == bool(cls.int8_methods), "int8 needs calibration methods and back"
    assert cls.description
    if cls.int8_methods:        # --calib-method auto (the default) resolves to a method it has
        assert cls.default_int8_method in cls.int8_methods
        from vanillanet_edge.calibration.dataset import AUTO_METHOD, CalibrationSet

        auto = CalibrationSet(np.zeros((1, 3, 8, 8), np.float32), AUTO_METHOD, 0, "x", "0", 1)
        resolved = cls.for_target(auto)
        assert resolved.method == cls.default_int8_method and auto.method == AUTO_METHOD
        cls.check_int8_request(resolved)
        explicit = dataclasses.replace(auto, method=cls.int8_methods[-1])
        assert cls.for_target(explicit) is explicit


@pytest.mark.parametrize("target", TARGETS)
def test_converter_availability_never_raises(target):
    ok, why = conv_registry.get_converter(target).availability()
    assert isinstance(ok, bool) and isinstance(why, str) and why


@pytest.mark.parametrize("target", TARGETS)
def test_missing_toolchain_names_the_extra(target, monkeypatch):
    converter = conv_registry.get_converter(target)
    _without(monkeypatch, converter.modules)
    ok, why = converter.availability()
    assert not ok and f"[{converter.extra}]" in why
    with pytest.raises(BackendMissingError) as info:
        converter.check_available()
    assert info.value.extra == converter.extra and info.value.missing_module in converter.modules


@pytest.mark.parametrize("target", TARGETS)
def test_converter_reports_versions_where_installed(target):
    converter = conv_registry.get_converter(target)
    ok, why = converter.availability()
    if not ok:
        pytest.skip(why)
    versions = converter.library_versions()
    assert versions and all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items())


def test_default_targets_and_anchor_are_registered():
    assert set(conv_registry.default_targets()) <= set(TARGETS)
    assert conv_registry.TUNE_ANCHOR_TARGET in conv_registry.default_targets()


# ============================================================================ runners

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runner_declares_its_facts(runtime):
    cls = dev_registry.runner_class(runtime)
    assert issubclass(cls, Runner) and cls.name == runtime
    assert cls.extra in EXTRAS, f"{runtime}: extra '{cls.extra}' is not in pyproject's extras"
    assert cls.modules and cls.artifact_suffixes
    packages = dev_registry.packages_of(runtime)
    assert packages and all(isinstance(p, str) and p for p in packages)
    assert all(s.startswith(".") for s in cls.artifact_suffixes)
    assert cls.profiler is None or (isinstance(cls.profiler, str) and cls.profiler)
    if cls.peak_precisions:
        assert cls.probe_peak is not Runner.probe_peak, f"{runtime} lists peak precisions but has no probe"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runner_availability_never_raises(runtime):
    runner = dev_registry.get_runner(runtime)
    for check in (runner.availability, runner.latency_availability):
        ok, why = check()
        assert isinstance(ok, bool) and isinstance(why, str) and why


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_missing_runtime_names_the_extra(runtime, monkeypatch):
    runner = dev_registry.get_runner(runtime)
    _without(monkeypatch, [*runner.modules, "tflite_runtime"])
    ok, why = runner.availability()
    assert not ok and f"[{runner.extra}]" in why
    with pytest.raises(BackendMissingError) as info:
        runner.require()
    assert info.value.extra == runner.extra


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_runner_tuning_options_and_compute_precision(runtime, precision):
    runner = dev_registry.get_runner(runtime)
    options = runner.tuning_options(describe_machine(), precision)
    assert options and all(isinstance(o, dict) for o in options)
    for o in options:
        assert runner.computed_in(precision, o) in ("fp32", "fp16", "bf16", "int8")
    assert runner.computed_in(precision, {}) == precision
    if precision == "int8":
        assert all(runner.computed_in("int8", o) == "int8" for o in options)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_peak_probe_facts(runtime):
    runner = dev_registry.get_runner(runtime)
    for precision in ("fp32", "bf16", "int8"):
        why = runner.peak_unavailable(precision, {"isa": []})
        assert why is None or isinstance(why, str)
    assert (runtime in dev_registry.peak_runtimes()) == bool(runner.peak_precisions)


def test_machine_description_names_every_runtime_package_found():
    versions = describe_machine()["versions"]
    from importlib.metadata import PackageNotFoundError, version
    for package in dev_registry.runtime_packages():
        try:
            installed = version(package)
        except PackageNotFoundError:
            assert package not in versions
        else:
            assert versions[package] == installed


def test_machine_description_needs_no_numpy_or_runner_module():
    """A bare device describes itself before numpy is installed (remote/runner.py describe)."""
    code = ("import sys\nsys.modules['numpy'] = None\n"
            "from vanillanet_edge.devices.machine import describe_machine\n"
            "assert describe_machine()['versions']\n"
            "assert not [m for m in sys.modules if m.startswith('vanillanet_edge.devices.') and "
            "m.split('.')[-1] not in ('machine', 'registry', 'telemetry_off')], sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_runner_modules_import_without_their_runtime_or_torch():
    """The registry's facts are class attributes: reading them must not import the runtimes
    (the bench workers and the device bundle stay torch-free)."""
    code = ("import sys\nfrom vanillanet_edge.devices.registry import runner_classes, runtime_packages\n"
            "classes = runner_classes(); runtime_packages()\n"
            "runtimes = {'torch', *(m for c in classes for m in c.modules)}\n"
            "heavy = [m for m in sorted(runtimes) if m in sys.modules]\nassert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
