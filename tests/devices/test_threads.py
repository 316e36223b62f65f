"""Every runtime runs with the same intra-op thread count unless told otherwise, and every
record states the integer it used (ai_edge_litert alone would run 1 thread, ONNX Runtime one per
logical core): cross-runtime comparisons are then between equals."""
from __future__ import annotations

import pytest

from vanillanet_edge.converters.convert import convert_checkpoint
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings, bench
from vanillanet_edge.devices.machine import default_threads, describe_machine


@pytest.fixture(scope="module")
def three_runtimes(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("threads")
    outcomes = convert_checkpoint(tiny_checkpoint.path, ["onnx", "openvino", "tflite"], ["fp32"], out)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return resolve([out, tiny_checkpoint.path])


def test_default_threads_is_one_per_physical_core_this_process_may_use():
    m = describe_machine()
    assert isinstance(default_threads(), int) and 1 <= default_threads() <= m["cpus_usable"]
    assert default_threads() == min(m["physical_cores"] or m["cpus_usable"], m["cpus_usable"])


def test_bench_records_the_same_integer_threads_for_every_runtime(three_runtimes):
    records = bench(three_runtimes, BenchSettings(warmup=1, runs=2, rounds=1))
    assert all(r["ok"] for r in records), [r.get("error") for r in records]
    assert {r["runtime"] for r in records} == {"onnxruntime", "openvino", "litert", "torch"}
    assert {r["session_settings"]["threads"] for r in records} == {default_threads()}


def test_an_explicit_count_reaches_every_runtime(three_runtimes):
    records = bench(three_runtimes, BenchSettings(threads=1, warmup=1, runs=2, rounds=1))
    assert {r["session_settings"]["threads"] for r in records} == {1}


def test_verification_records_the_threads_and_kernels_it_ran_with(three_runtimes):
    for ref in three_runtimes[:-1]:         # the converted artifacts (the checkpoint has no manifest check)
        used = ref.manifest["verification"]["runtime_settings"]
        assert used["threads"] == default_threads()
        if ref.runtime == "litert":
            assert used["kernels"] == "xnnpack"
