"""Result records -> normalised rows: loading a run folder's records, the machine they ran on,
matmul peaks, and one Row per record (what every table reads)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ...devices.registry import get_runner, reported_packages, runtime_names
from ...records import PEAKS_SCHEMA, AccuracyRecord, LatencyRecord, Manifest, PeaksRecord, ProfileRecord
from .validate import record_problem

NOT_MEASURED = "not measured"
RESULT_KINDS = ("latency", "accuracy", "layer_profile", "peaks")


# ============================================================================ peaks

def peak_record(peaks: dict, device: str = "local") -> PeaksRecord:
    """A devices/peak.measure_peaks() result as a record the report reads (kind "peaks")."""
    return {"schema_version": PEAKS_SCHEMA, "kind": "peaks", "device": {"name": device}, "machine": peaks.get("machine"),
            "peaks": peaks.get("peaks", {}), "unavailable": peaks.get("unavailable", {}),
            "how": peaks.get("how", ""), "settings": peaks.get("settings", {})}


def _peak_gmacs(peaks: list[Row], row: Row) -> tuple[float | None, str]:
    """The matmul peak of the precision `row` computes in, on the machine and device it ran on:
    its own runtime's probe where there is one, else the best probe of that precision there."""
    mine = [p for p in peaks if p.mkey == row.mkey]
    if not mine:
        return None, "no peak measured on this machine"
    table = mine[-1].peaks["peaks"]
    own = (table.get(row.runtime) or {}).get(row.compute)
    if own:
        return own["gmacs_per_s"], f"{row.runtime} {row.compute}"
    others = [(e["gmacs_per_s"], rt) for rt, by in table.items() for prec, e in by.items() if prec == row.compute]
    if others:
        value, rt = max(others)
        return value, f"{rt} {row.compute} (best probe of that precision)"
    return None, f"no {row.compute} peak measured"


# ============================================================================ records

def load_records(run_dir: str | Path) -> tuple[list[dict], list[str], list[dict]]:
    """Every latency/accuracy record in JSON files under run_dir (recursively).

    Returns (records, files read, files or records skipped with why). Each record gets `_source`
    (the file, relative to run_dir) and `_index` (its position there), used to pair rounds of one
    run. A record whose fields the report cannot use (validate.py: a string or NaN median, a
    missing summary...) is skipped with its reason, the file's other records kept.
    """
    root = Path(run_dir)
    records, sources, skipped = [], [], []
    for path in sorted(root.rglob("*.json")):
        if path.name in ("manifest.json", "report.json"):
            continue
        rel = str(path.relative_to(root))
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            skipped.append({"file": rel, "why": f"not readable JSON: {exc}"})
            continue
        items = data if isinstance(data, list) else [data]
        found = [r for r in items if isinstance(r, dict) and r.get("kind") in RESULT_KINDS]
        if not found:
            skipped.append({"file": rel, "why": "holds no latency or accuracy records"})
            continue
        kept = 0
        for i, rec in enumerate(found):
            why = record_problem(rec)
            if why:
                skipped.append({"file": rel, "why": f"record {i} ({rec['kind']}) skipped: {why}"})
                continue
            records.append({**rec, "_source": rel, "_index": i})
            kept += 1
        if kept:
            sources.append(rel)
    return records, sources, skipped


def machine_line(m: dict | None) -> str:
    if not m:
        return "machine: not recorded"
    v = m.get("versions", {})
    vers = ", ".join(f"{k} {v[k]}" for k in reported_packages() if k in v)
    return (f"machine: {m.get('cpu_model', 'unknown CPU')}, {m.get('logical_cores')} logical cores "
            f"({m.get('cpus_usable')} usable, {m.get('physical_cores')} physical), "
            f"{m.get('memory_gib')} GiB, ISA {' '.join(m.get('isa') or []) or '-'}, {m.get('os')}, "
            f"Python {m.get('python')}; {vers}")


def _machine_key(m: dict | None) -> str:
    return f"{(m or {}).get('hostname')}|{(m or {}).get('cpu_model')}"


def _read_manifest(artifact: str | None) -> Manifest | None:
    if not artifact:
        return None
    p = Path(artifact)
    f = p / "manifest.json" if p.is_dir() else None
    try:
        return json.loads(f.read_text()) if f and f.exists() else None
    except (OSError, ValueError):
        return None


def _strip_suffix(name: str, target: str | None, precision: str | None) -> str:
    suffix = f"-{target}-{precision}"
    return name[: -len(suffix)] if target and precision and name.endswith(suffix) else name


def _vanillanet_depth(variant: str) -> int | None:
    from ...model.variants import VARIANTS
    cfg = VARIANTS.get(variant)
    return len(cfg.strides) + 2 if cfg else None   # stem + stages + head (model/profile.py)


def _width_text(width: float) -> str:
    inv = 1 / width if width else 0
    return f"1/{round(inv)}" if width < 1 and abs(inv - round(inv)) < 1e-6 else f"{width:g}"


@dataclass
class Row:
    """One normalised record."""

    kind: str
    model: str            # variant (+ width when not 1): the comparison key
    variant: str
    family: str
    width: float | None
    input_size: int | None
    batch: int | None
    runtime: str
    precision: str
    compute: str          # what really computed: "bf16" for OpenVINO fp32 on AMX, etc.
    name: str
    source: str
    index: int
    machine: dict | None
    rec: dict[str, Any] = field(repr=False, default_factory=dict)   # the record as read: its kind's TypedDict
    macs: int | None = None
    params: int | None = None
    depth: int | None = None
    published_top1: float | None = None

    # The record as its kind's type (records.py): the report reads fields through these, so mypy
    # checks them against the schema. Which kind a row is was checked when it was sorted (render).
    @property
    def latency(self) -> LatencyRecord:
        return cast(LatencyRecord, self.rec)

    @property
    def accuracy(self) -> AccuracyRecord:
        return cast(AccuracyRecord, self.rec)

    @property
    def profile(self) -> ProfileRecord:
        return cast(ProfileRecord, self.rec)

    @property
    def peaks(self) -> PeaksRecord:
        return cast(PeaksRecord, self.rec)

    @property
    def median_ms(self) -> float:
        """The median of a measured latency record (its `latency` summary is there when ok)."""
        return self.latency["latency"]["median_ms"]

    @property
    def device(self) -> str:
        """The device (devices.toml name) it ran on; records before remote devices: local."""
        return (self.rec.get("device") or {}).get("name", "local")

    @property
    def config(self) -> str:
        label = f"{self.runtime} {self.precision}"
        label += f" [{self.compute} compute]" if self.compute != self.precision else ""
        return label + (f" @{self.device}" if self.device != "local" else "")

    @property
    def full_size(self) -> bool:
        return self.width in (None, 1, 1.0)

    @property
    def mkey(self) -> str:
        """Comparisons pair records of one device and machine only."""
        return f"{self.device}|{_machine_key(self.machine)}"


def _compute_precision(rec: dict) -> str:
    """What the record's runtime says its maths ran in (Runner.computed_in); the record's
    precision where the runtime is not one of ours."""
    prec = rec.get("precision") or "?"
    runtime = rec.get("runtime")
    if runtime not in runtime_names():
        return prec
    return get_runner(runtime).computed_in(prec, rec.get("session_settings") or {})


def normalise(rec: dict) -> Row:
    manifest = None
    model = rec.get("model") or {}
    inp = rec.get("input") or {}
    if not model or not inp:
        manifest = _read_manifest(rec.get("artifact"))
        if manifest:
            model = model or manifest.get("model", {})
            inp = inp or manifest.get("input", {})
    name = rec.get("name") or Path(rec.get("artifact", "?")).name
    variant = model.get("variant") or _strip_suffix(name, rec.get("target"), rec.get("precision"))
    width = model.get("width")
    family = model.get("family") or ("vanillanet" if str(variant).startswith("vanillanet") else "baseline")
    shape = inp.get("shape")
    size = batch = None
    if shape and len(shape) == 4:
        batch = shape[0]
        size = shape[1] if inp.get("layout") == "NHWC" else shape[2]
    label = variant if width in (None, 1, 1.0) else f"{variant} (width {_width_text(width)})"
    depth = model.get("depth")
    if depth is None and family == "vanillanet":
        depth = _vanillanet_depth(variant)
    return Row(rec["kind"], label, variant, family, width, size, batch, rec.get("runtime") or "?",
               rec.get("precision") or "?", _compute_precision(rec), name, rec.get("_source", "?"),
               rec.get("_index", 0), rec.get("machine"), rec, model.get("macs"), model.get("params"),
               depth, model.get("published_top1"))
