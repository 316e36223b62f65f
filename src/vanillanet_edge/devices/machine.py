"""Describe the machine a result was measured on: every result record carries this."""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

# ISA features that decide which kernels runtimes pick for conv / matmul.
ISA_FLAGS = {
    "avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni", "avx512_bf16": "avx512_bf16", "amx_tile": "amx_tile",
    "amx_int8": "amx_int8", "amx_bf16": "amx_bf16", "neon": "asimd", "sve": "sve",
}


def _cpuinfo() -> dict:
    info = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if ":" in line:
                    key, _, value = line.partition(":")
                    info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _physical_cores() -> int | None:
    """Distinct (package, core) pairs in /proc/cpuinfo; None where the kernel does not say."""
    try:
        blocks = open("/proc/cpuinfo").read().split("\n\n")
    except OSError:
        return None
    pairs = set()
    for block in blocks:
        fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines()))
        if "core id" in fields:
            pairs.add((fields.get("physical id"), fields["core id"]))
    return len(pairs) or None


def default_threads() -> int:
    """The intra-op thread count every runtime gets unless told otherwise: one per physical
    core this process may use. One number for all runtimes, so that no comparison between
    them is decided by their different defaults (ai_edge_litert: 1, ONNX Runtime: one per
    logical core, OpenVINO: one per physical core)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(_physical_cores() or usable, usable))


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def _versions() -> dict:
    """Versions of every registered runtime's distributions found here, then numpy's."""
    from .registry import runtime_packages

    out = {}
    for pkg in [*runtime_packages(), "numpy"]:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=1)
def describe_machine() -> dict:
    cpu = _cpuinfo()
    flags = set((cpu.get("flags") or cpu.get("Features") or "").split())
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "arch": platform.machine(),
        "cpu_model": cpu.get("model name") or cpu.get("Hardware") or platform.processor() or "unknown",
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "default_threads": default_threads(),
        "memory_gib": _memory_gib(),
        "isa": sorted(name for name, flag in ISA_FLAGS.items() if flag in flags),
        "python": platform.python_version(),
        "versions": _versions(),
    }
