"""The JSON records vanillanet-edge writes, as types: one place for their fields and versions.

Each record is a plain JSON object (what the files hold and what the code passes around); these
TypedDicts say which keys it has and what they mean, and each kind carries its `schema_version`
from here. Standard library only: the device runner bundle ships this module.

Kinds: the manifest (manifest.json beside every artifact; read and validated by manifest.py),
"latency" and "accuracy" result records (bench / eval, devices/latency.py and accuracy.py),
"layer_profile" (devices/profiling.py) and "peaks" (devices/peak.py via the report).
"""
from __future__ import annotations

from typing import Any, TypedDict

MANIFEST_SCHEMA = 1
RESULT_SCHEMA = 1        # "latency" and "accuracy" records
PROFILE_SCHEMA = 1       # "layer_profile" records
PEAKS_SCHEMA = 1         # "peaks" records


class TensorSpec(TypedDict, total=False):
    name: str
    shape: list[int]
    layout: str          # "NCHW" or "NHWC" (inputs)
    dtype: str


class Manifest(TypedDict, total=False):
    """manifest.json: the artifact's contract (input, layout, preprocessing), provenance, checks."""
    schema_version: int
    target: str
    precision: str
    runtime: str
    artifact: dict[str, Any]          # file, sha256, size_bytes
    model: dict[str, Any]             # variant, family, width, num_classes, class_names, labels, macs, params...
    source: dict[str, Any]            # checkpoint path and sha256, or the library and weights
    input: TensorSpec
    output: TensorSpec
    preprocessing: dict[str, Any]     # images.Preprocessing.as_dict()
    tools: dict[str, str]             # versions of what wrote it
    conversion: dict[str, Any]
    verification: dict[str, Any]
    accuracy: dict[str, Any]          # convert --eval-data: top1, fp32_top1, drop_points...
    runtime_settings: dict[str, Any]  # pinned by `tune`: what bench, eval and apps load it with


class LatencySummary(TypedDict):
    runs: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p10_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: float | None


class MedianInterval(TypedDict):
    """devices/latency.median_interval: where another bench call's median should fall."""
    low_ms: float
    high_ms: float
    level: float
    method: str


class ResultRecord(TypedDict, total=False):
    """What latency and accuracy records share."""
    schema_version: int
    kind: str                         # "latency" | "accuracy"
    artifact: str
    name: str
    target: str | None
    precision: str | None
    runtime: str
    session_settings: dict[str, Any]  # what the runtime really used (threads, kernels, precision...)
    machine: dict[str, Any] | None    # devices/machine.describe_machine() where it ran
    device: dict[str, Any]            # {"name": devices.toml name} when not local
    status: str                       # "ok" | "failed" | "unavailable"
    ok: bool
    error: str
    reason: str


class LatencyRecord(ResultRecord, total=False):
    model: dict[str, Any]
    input: TensorSpec
    artifact_size_bytes: int | None
    settings: dict[str, Any]          # devices/latency.BenchSettings
    latency: LatencySummary
    round_medians_ms: list[float]
    median_interval_ms: MedianInterval
    load_ms: float
    first_inference_ms: float
    peak_rss_mib: float
    gmacs_per_s: float | None
    cpu_ms: dict[str, Any]            # process CPU time per inference: median_ms, share_of_wall, is_latency
    load_average_max: float | None    # the highest 1-minute load average seen around the timed runs
    load_warning: str                 # present when the machine was loaded during the run


class AccuracyRecord(ResultRecord, total=False):
    engine: str
    data: str
    images: int
    skipped: int
    skipped_files: list[dict[str, str]]
    top1: float
    top5: float
    agreement_with_fp32: float | None
    reference: str
    images_per_s: float | None


class ProfileRow(TypedDict, total=False):
    name: str
    op_type: str
    time_ms: float
    calls: int
    exec_type: str | None
    precision: str | None
    order: int
    share: float


class ProfileRecord(TypedDict, total=False):
    """A "layer_profile" record: per-layer times from the runtime's own profiler."""
    schema_version: int
    kind: str
    status: str
    artifact: str
    name: str
    runtime: str
    target: str | None
    precision: str | None
    runs: int
    warmup: int
    threads: int | None
    options: dict[str, Any]
    session_settings: dict[str, Any]
    rows: list[ProfileRow]
    total_ms: float
    wall_ms_per_inference: float
    wall_ms_mean: float
    profiled_share_of_wall: float | None
    profiler: str
    machine: dict[str, Any]


class PeaksRecord(TypedDict, total=False):
    """A "peaks" record: devices/peak.measure_peaks() on one device, as the report reads it."""
    schema_version: int
    kind: str
    device: dict[str, Any]
    machine: dict[str, Any] | None
    peaks: dict[str, dict[str, dict[str, Any]]]         # runtime -> precision -> entry
    unavailable: dict[str, dict[str, dict[str, Any]]]   # runtime -> precision -> {"reason", ...}
    how: str
    settings: dict[str, Any]
