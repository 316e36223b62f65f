"""`vanillanet-edge report`: result records (bench --save / eval --save) -> report.md/.html/.json.

Everything shown is read from the records or measured here (the matmul peak probe); published
figures are labelled as such. A comparison that has no data says "not measured", never a number
made up or carried over. Tables hold numbers; the same table structures are written to
report.json with raw values, rendered to Markdown (plots beside it under plots/) and to one
self-contained HTML file (plots embedded as base64 PNG).
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..devices.registry import get_runner, reported_packages, runtime_names
from ..fileio import atomic_write_bytes, atomic_write_text, write_json

NOT_MEASURED = "not measured"
RESULT_KINDS = ("latency", "accuracy", "layer_profile", "peaks")

# The paper's headline and the authors' published figures (docs/vanillanet-facts.md): A100,
# batch 1, 224x224, FP32 eager PyTorch; TensorRT FP32/FP16 where the authors list them.
A100_EAGER_MS = {
    "vanillanet_5": 1.61, "vanillanet_6": 2.01, "vanillanet_7": 2.27, "vanillanet_8": 2.56,
    "vanillanet_9": 2.91, "vanillanet_10": 3.24, "vanillanet_11": 3.59, "vanillanet_12": 3.82,
    "vanillanet_13": 4.26, "vanillanet_13_x1_5": 7.83, "vanillanet_13_x1_5_ada_pool": 9.72,
    "resnet50": 7.64,
}
A100_TENSORRT_MS = {"vanillanet_5": (0.33, 0.27), "vanillanet_9": (0.58, 0.49), "vanillanet_13": (0.82, 0.67)}
OFFICIAL_SOURCE = ("published (not measured here): VanillaNet paper arXiv 2305.12972 and the authors' "
                   "README; A100, batch 1, 224x224, FP32 eager PyTorch unless TensorRT")
CLAIM_MODEL, BASELINE_MODEL = "vanillanet_9", "resnet50"


# ============================================================================ peaks

def peak_record(peaks: dict, device: str = "local") -> dict:
    """A devices/peak.measure_peaks() result as a record the report reads (kind "peaks")."""
    return {"schema_version": 1, "kind": "peaks", "device": {"name": device}, "machine": peaks.get("machine"),
            "peaks": peaks.get("peaks", {}), "unavailable": peaks.get("unavailable", {}),
            "how": peaks.get("how", ""), "settings": peaks.get("settings", {})}


def _peak_gmacs(peaks: list[Row], row: Row) -> tuple[float | None, str]:
    """The matmul peak of the precision `row` computes in, on the machine and device it ran on:
    its own runtime's probe where there is one, else the best probe of that precision there."""
    mine = [p for p in peaks if p.mkey == row.mkey]
    if not mine:
        return None, "no peak measured on this machine"
    table = mine[-1].rec["peaks"]
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

    Returns (records, files read, files skipped with why). Each record gets `_source` (the file,
    relative to run_dir) and `_index` (its position there), used to pair rounds of one run.
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
        for i, rec in enumerate(found):
            records.append({**rec, "_source": rel, "_index": i})
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


def _read_manifest(artifact: str | None) -> dict | None:
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
    from ..model.variants import VARIANTS
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
    rec: dict = field(repr=False, default_factory=dict)
    macs: int | None = None
    params: int | None = None
    depth: int | None = None
    published_top1: float | None = None

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


# ============================================================================ tables

@dataclass
class Table:
    key: str
    title: str
    columns: list[tuple[str, str]]     # (header, "num" | "text")
    rows: list[list] = field(default_factory=list)
    note: str = ""
    digits: dict = field(default_factory=dict)   # header -> decimals

    def cell(self, header: str, value) -> str:
        kind = dict(self.columns)[header]
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return NOT_MEASURED if kind == "num" else "-"
        if kind == "num":
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            d = self.digits.get(header, 2)
            return f"{float(value):.{d}f}"
        return " ".join(str(value).split())     # one line: error messages carry newlines

    def formatted(self) -> list[list[str]]:
        heads = [h for h, _ in self.columns]
        return [[self.cell(h, v) for h, v in zip(heads, row)] for row in self.rows]

    def as_json(self) -> dict:
        return {"key": self.key, "title": self.title, "note": self.note,
                "columns": [{"name": h, "type": k} for h, k in self.columns],
                "rows": [dict(zip([h for h, _ in self.columns], r)) for r in self.rows]}


def _interval(rec: dict) -> tuple[float, float]:
    """The 95% interval bench reports for its median (older records: the round min/max)."""
    iv = rec.get("median_interval_ms")
    if iv:
        return iv["low_ms"], iv["high_ms"]
    rounds = rec.get("round_medians_ms") or [rec["latency"]["median_ms"]]
    return min(rounds), max(rounds)


def _ratio_spread(a: Row, b: Row) -> tuple[float, float, float, str]:
    """median(a)/median(b), and its min/max over rounds: per-round ratios when both came from
    the same bench run with the same rounds (interleaved, so paired), else conservative bounds."""
    ma, mb = a.rec["latency"]["median_ms"], b.rec["latency"]["median_ms"]
    ra = a.rec.get("round_medians_ms") or [ma]
    rb = b.rec.get("round_medians_ms") or [mb]
    if a.source == b.source and len(ra) == len(rb):
        # The overall ratio (median over median of all runs) can fall just outside the per-round
        # ratios; the range shown always holds it.
        ratios = [x / y for x, y in zip(ra, rb)] + [ma / mb]
        return ma / mb, min(ratios), max(ratios), f"paired rounds ({len(ra)})"
    return ma / mb, min(ra) / max(rb), max(ra) / min(rb), "unpaired runs (conservative bounds)"


def _pick(rows: list[Row], prefer_source: str | None = None) -> Row | None:
    """One record out of several for the same thing: same file as the partner first, then the
    one with the most timed runs, then the latest file."""
    if not rows:
        return None
    if prefer_source:
        same = [r for r in rows if r.source == prefer_source]
        if same:
            rows = same
    return max(rows, key=lambda r: (r.rec.get("latency", {}).get("runs", 0), r.source, r.index))


def _pair(a_rows: list[Row], b_rows: list[Row]) -> tuple[Row | None, Row | None]:
    """Best (a, b) pair: from one run file when possible (their rounds were interleaved)."""
    common = sorted({r.source for r in a_rows} & {r.source for r in b_rows})
    if common:
        src = max(common)
        return _pick(a_rows, src), _pick(b_rows, src)
    a = _pick(a_rows)
    return a, _pick(b_rows, a.source if a else None)


def latency_table(lat: list[Row], peaks: list[Row]) -> Table:
    t = Table("latency", "Latency by model x runtime x precision (batch as recorded)",
              [("model", "text"), ("family", "text"), ("input", "num"), ("batch", "num"), ("device", "text"),
               ("runtime", "text"), ("precision", "text"), ("computed in", "text"),
               ("median ms", "num"), ("p90 ms", "num"), ("95% low ms", "num"), ("95% high ms", "num"),
               ("spread %", "num"), ("runs", "num"), ("GMACs", "num"), ("GMAC/s", "num"),
               ("% of peak", "num"), ("peak of", "text"), ("size MB", "num"), ("bytes/param", "num"),
               ("file", "text")],
              digits={"GMACs": 3, "size MB": 1, "spread %": 1, "% of peak": 1, "GMAC/s": 1})
    for r in sorted(lat, key=lambda r: (r.family != "vanillanet", r.model, r.input_size or 0, r.device, r.config)):
        L = r.rec["latency"]
        low, high = _interval(r.rec)
        g = r.rec.get("gmacs_per_s")
        peak, peak_of = _peak_gmacs(peaks, r)
        eff = 100 * g / peak if g and peak else None
        size = r.rec.get("artifact_size_bytes")
        bpp = size / r.params if size and r.params else None
        t.rows.append([r.model, r.family, r.input_size, r.batch, r.device, r.runtime, r.precision, r.compute,
                       L["median_ms"], L.get("p90_ms"), low, high,
                       100 * (high - low) / L["median_ms"], L.get("runs"),
                       r.macs / 1e9 if r.macs else None, g, eff, peak_of,
                       size / 1e6 if size else None, bpp, r.source])
    t.note = ("95% low/high: where another bench call's median is expected to fall (from the scatter "
              "of the per-round medians and the within-round error; always covering every round); "
              "spread = (high - low) / median. % of peak: achieved GMAC/s against the matmul peak of the "
              "precision the artifact computes in, measured through the runtimes' own kernels on the same "
              "machine (devices/peak.py; 'peak of' names the probe). Each round ran in a fresh process, interleaved with "
              "the other artifacts of its run. bytes/param near 4 "
              "(fp32), 2 (fp16) or 1 (int8) shows the artifact kept its weights (nothing pruned).")
    return t


def devices_table(lat: list[Row]) -> Table:
    """The same artifacts side by side, one median-latency column per device."""
    devices = sorted({r.device for r in lat}, key=lambda d: (d != "local", d))
    t = Table("devices", "Latency by device, side by side (median ms)",
              [("model", "text"), ("input", "num"), ("runtime", "text"), ("precision", "text")]
              + [(f"{d} ms", "num") for d in devices])
    keys = sorted({(r.family != "vanillanet", r.model, r.input_size or 0, r.runtime, r.precision) for r in lat})
    for _, model, size, runtime, prec in keys:
        cells = []
        for d in devices:
            rows = [r for r in lat if (r.model, r.input_size or 0, r.runtime, r.precision, r.device)
                    == (model, size, runtime, prec, d)]
            best = _pick(rows)
            cells.append(best.rec["latency"]["median_ms"] if best else None)
        t.rows.append([model, size or None, runtime, prec, *cells])
    where = {r.device: machine_line(r.machine).removeprefix("machine: ") for r in lat}
    t.note = "; ".join(f"{d}: {where[d]}" for d in devices)
    return t


def profile_table(profiles: list[Row], top: int = 6) -> Table:
    """Where time goes: each profiled artifact's slowest layers, from the runtime's own profiler."""
    t = Table("profile", "Where the time goes: slowest layers per artifact (runtime profilers)",
              [("model", "text"), ("runtime", "text"), ("precision", "text"), ("layer", "text"),
               ("op type", "text"), ("kernel", "text"), ("ms", "num"), ("share %", "num"),
               ("profiled total ms", "num"), ("plain run ms", "num")],
              digits={"ms": 3, "share %": 1, "profiled total ms": 3, "plain run ms": 3})
    for r in sorted(profiles, key=lambda r: (r.family != "vanillanet", r.model, r.config)):
        rec = r.rec
        for row in sorted(rec.get("rows", []), key=lambda x: -x["time_ms"])[:top]:
            t.rows.append([r.model, r.runtime, r.precision, row["name"], row.get("op_type"),
                           row.get("exec_type"), row["time_ms"], 100 * row.get("share", 0),
                           rec.get("total_ms"), rec.get("wall_ms_per_inference")])
    t.note = ("From ONNX Runtime's session profiler and OpenVINO's performance counters (`vanillanet-edge "
              "profile`); the profiler adds overhead, so compare shares rather than absolute times. "
              "Layer names are the runtime's, after its own fusions.")
    return t


def failures_table(failed: list[Row]) -> Table:
    t = Table("failed", "Records that failed or could not be measured",
              [("name", "text"), ("device", "text"), ("runtime", "text"), ("status", "text"),
               ("error", "text"), ("file", "text")])
    for r in failed:
        why = r.rec.get("error") or r.rec.get("reason") or "no rounds"
        t.rows.append([r.name, r.device, r.runtime, r.rec.get("status", "failed"), why[:300], r.source])
    return t


def accuracy_table(acc: list[Row]) -> Table:
    t = Table("accuracy", "Accuracy records (measured on the images named)",
              [("model", "text"), ("runtime", "text"), ("precision", "text"), ("images", "num"),
               ("top-1 %", "num"), ("top-5 %", "num"), ("agreement with fp32 %", "num"),
               ("data", "text"), ("file", "text")])
    for r in sorted(acc, key=lambda r: (r.model, r.runtime, r.precision)):
        a = r.rec.get("agreement_with_fp32")
        t.rows.append([r.model, r.runtime, r.precision, r.rec.get("images"), 100 * r.rec["top1"],
                       100 * r.rec["top5"] if r.rec.get("top5") is not None else None,
                       100 * a if a is not None else None, r.rec.get("data"), r.source])
    return t


def _manifest_top1(row: Row) -> tuple[float | None, float | None]:
    m = _read_manifest(row.rec.get("artifact"))
    acc = (m or {}).get("accuracy")
    if acc and "top1" in acc:
        return acc["top1"], acc.get("fp32_top1")
    return None, None


def int8_table(lat: list[Row], acc: list[Row]) -> Table:
    t = Table("int8", "INT8 against FP32, per model and runtime",
              [("model", "text"), ("input", "num"), ("runtime", "text"), ("fp32 computed in", "text"),
               ("fp32 median ms", "num"), ("int8 median ms", "num"), ("speed-up x", "num"),
               ("speed-up min", "num"), ("speed-up max", "num"), ("rounds", "text"),
               ("fp32 top-1 %", "num"), ("int8 top-1 %", "num"), ("top-1 change (points)", "num"),
               ("accuracy from", "text")])
    keys = sorted({(r.model, r.input_size, r.runtime, r.mkey) for r in lat + acc if r.precision == "int8"})
    for model, size, runtime, mk in keys:
        def sel(rows, prec):
            return [r for r in rows if (r.model, r.input_size, r.runtime, r.mkey) == (model, size, runtime, mk)
                    and r.precision == prec]
        fp_l, i8_l = sel(lat, "fp32"), sel(lat, "int8")
        # one row per way the fp32 artifact ran: fp32 compute first (the honest baseline), then
        # e.g. OpenVINO's default bf16 on AMX/AVX512-BF16 CPUs (what a user gets by default)
        computes = sorted({r.compute for r in fp_l}, key=lambda c: (c != "fp32", c)) or [None]
        for compute in computes:
            a, b = _pair([r for r in fp_l if r.compute == compute], i8_l)
            t.rows.append(_int8_row(model, size, runtime, a, b, sel(acc, "fp32"), sel(acc, "int8")))
    t.note = ("speed-up = fp32 median / int8 median (> 1: int8 faster); min/max over rounds (paired "
              "when both came from one bench run). One row per way the fp32 artifact ran: in fp32, and "
              "in OpenVINO's default bf16 on CPUs with bf16 units (see 'fp32 computed in').")
    return t


def _int8_row(model, size, runtime, a: Row | None, b: Row | None, fp_a: list[Row], i8_a: list[Row]) -> list:
    speed = lo = hi = None
    how = NOT_MEASURED
    if a and b:
        speed, lo, hi, how = _ratio_spread(a, b)
    # accuracy: eval records on the same images first, then the manifests' convert-time numbers
    top_fp = top_i8 = None
    where = NOT_MEASURED
    for x in i8_a:
        same = [y for y in fp_a if y.rec.get("data") == x.rec.get("data") and y.rec.get("images") == x.rec.get("images")]
        if same:
            top_i8, top_fp = 100 * x.rec["top1"], 100 * same[0].rec["top1"]
            where = f"eval records ({x.rec.get('images')} images)"
            break
    if top_i8 is None and b is not None:
        m_i8, m_fp = _manifest_top1(b)
        if m_i8 is not None and m_fp is not None:
            top_i8, top_fp, where = 100 * m_i8, 100 * m_fp, "int8 artifact's manifest (convert --eval-data)"
    return [model, size, runtime, a.compute if a else None, a.rec["latency"]["median_ms"] if a else None,
            b.rec["latency"]["median_ms"] if b else None, speed, lo, hi, how,
            top_fp, top_i8, (top_i8 - top_fp) if top_i8 is not None and top_fp is not None else None, where]


def setting_label(r: Row) -> str:
    """The runtime settings a record was timed with, as the report names them."""
    ss = r.rec.get("session_settings") or {}
    parts = []
    if ss.get("kernels"):
        parts.append(f"{ss['kernels']} kernels")
    if ss.get("inference_precision"):
        parts.append(f"{ss['inference_precision']} hint")
    threads = ss.get("threads")
    parts.append(f"{threads} threads" if isinstance(threads, int) else f"threads: {threads or 'not recorded'}")
    return ", ".join(parts)


def _ratio_interval(a: Row, b: Row) -> tuple[float, float]:
    """95% bounds of the ratio from each median's 95% interval (conservative: both extremes)."""
    a_lo, a_hi = _interval(a.rec)
    b_lo, b_hi = _interval(b.rec)
    return a_lo / b_hi, a_hi / b_lo


def _fastest(rows: list[Row]) -> Row | None:
    return min(rows, key=lambda r: r.rec["latency"]["median_ms"]) if rows else None


def verdict_table(lat: list[Row]) -> Table:
    t = Table("verdict", "The verdict: VanillaNet / ResNet-50 latency ratio (< 1: VanillaNet faster)",
              [("device", "text"), ("runtime", "text"), ("precision", "text"), ("comparison", "text"),
               ("settings", "text"), ("input", "num"), ("batch", "num"), ("VanillaNet", "text"),
               ("VanillaNet ms", "num"), ("ResNet-50 ms", "num"), ("ratio", "num"), ("95% low", "num"),
               ("95% high", "num"), ("ratio min", "num"), ("ratio max", "num"), ("rounds", "text"),
               ("verdict here", "text"), ("A100 eager VanillaNet ms", "num"), ("A100 eager ResNet-50 ms", "num"),
               ("A100 ratio", "num"), ("A100 TensorRT fp32 ms", "num"), ("A100 TensorRT fp16 ms", "num")],
              digits={"ratio": 3, "ratio min": 3, "ratio max": 3, "95% low": 3, "95% high": 3, "A100 ratio": 3})
    full = [r for r in lat if r.full_size]
    vns = [r for r in full if r.family == "vanillanet"]
    r50 = [r for r in full if r.variant == BASELINE_MODEL]
    groups = sorted({(r.mkey, r.runtime, r.precision, r.input_size or 0, r.batch or 0) for r in vns + r50},
                    key=lambda g: (g[0], g[3] != 224, g[1], g[2], g[3], g[4]))
    for mk, runtime, prec, size, batch in groups:
        def sel(rows):
            return [r for r in rows if (r.mkey, r.runtime, r.precision, r.input_size or 0, r.batch or 0)
                    == (mk, runtime, prec, size, batch)]
        g_vn, g_r50 = sel(vns), sel(r50)
        for variant in sorted({r.variant for r in g_vn} or {CLAIM_MODEL}, key=lambda v: (v != CLAIM_MODEL, v)):
            mine = [r for r in g_vn if r.variant == variant]
            labels = sorted({setting_label(r) for r in mine + g_r50})
            for label in labels:      # plain: both models with the same settings
                a, b = _pair([r for r in mine if setting_label(r) == label],
                             [r for r in g_r50 if setting_label(r) == label])
                t.rows.append(_verdict_row(mk, runtime, prec, "plain", label, size, batch, variant, a, b))
            if len({setting_label(r) for r in mine}) > 1 or len({setting_label(r) for r in g_r50}) > 1:
                a, b = _fastest(mine), _fastest(g_r50)     # best: each model its own fastest setting
                label = (f"VanillaNet: {setting_label(a) if a else '-'}; "
                         f"ResNet-50: {setting_label(b) if b else '-'}")
                t.rows.append(_verdict_row(mk, runtime, prec, "best", label, size, batch, variant, a, b))
    if not t.rows:
        t.rows.append(_verdict_row(None, None, None, "-", "-", None, None, CLAIM_MODEL, None, None))
    t.note = ("ratio = VanillaNet median / ResNet-50 median. plain: both models with the same runtime "
              "settings and kernels (named); best: each model with its own fastest verified setting. "
              "95% low/high: from each median's 95% interval (both extremes); ratio min/max: per-round "
              "ratios of the interleaved rounds. Records with different thread counts are never paired. "
              "Only full-size models (width 1) count. The A100 columns are the authors' PUBLISHED figures "
              "(not measured): eager PyTorch FP32, batch 1, 224x224. The paper's setting is batch 1 at 224.")
    return t


def _verdict_row(mk, runtime, prec, how_paired, label, size, batch, variant, a: Row | None, b: Row | None) -> list:
    ratio = lo = hi = lo95 = hi95 = None
    how, verdict = NOT_MEASURED, NOT_MEASURED
    if a and b:
        ratio, lo, hi, how = _ratio_spread(a, b)
        lo95, hi95 = _ratio_interval(a, b)
        verdict = (f"VanillaNet {1 / ratio:.1f}x faster" if hi95 < 1 else
                   f"ResNet-50 {ratio:.1f}x faster" if lo95 > 1 else "no clear difference (within the 95% interval)")
    elif a:
        verdict = "ResNet-50 not measured with these settings"
    elif b:
        verdict = f"{variant} not measured with these settings"
    trt = A100_TENSORRT_MS.get(variant, (None, None))
    a_vn, a_r = A100_EAGER_MS.get(variant), A100_EAGER_MS[BASELINE_MODEL]
    return [mk.split("|")[0] if mk else NOT_MEASURED, runtime or NOT_MEASURED, prec or "-", how_paired, label,
            size or None, batch or None, variant, a.rec["latency"]["median_ms"] if a else None,
            b.rec["latency"]["median_ms"] if b else None, ratio, lo95, hi95, lo, hi, how, verdict,
            a_vn, a_r, a_vn / a_r if a_vn else None, trt[0], trt[1]]


def fastest_table(lat: list[Row], acc: list[Row]) -> Table:
    """Each model's fastest measured artifact per device, with its top-1 where one was measured."""
    t = Table("fastest", "Fastest verified artifact of each model",
              [("device", "text"), ("model", "text"), ("input", "num"), ("artifact", "text"),
               ("runtime", "text"), ("precision", "text"), ("settings", "text"), ("median ms", "num"),
               ("top-1 %", "num"), ("top-1 source", "text")])
    top1 = {}
    for r in acc:
        top1.setdefault(r.rec.get("artifact"), r.rec.get("top1"))
    keys = sorted({(r.device, r.model, r.input_size or 0) for r in lat}, key=lambda k: (k[0], k[2] != 224, k[1]))
    for device, model, size in keys:
        best = _fastest([r for r in lat if (r.device, r.model, r.input_size or 0) == (device, model, size)])
        acc_top1 = top1.get(best.rec.get("artifact"))
        random = "random" in str((_read_manifest(best.rec.get("artifact")) or {}).get("source", {}).get("weights", ""))
        t.rows.append([device, model, size or None, best.name, best.runtime, best.precision, setting_label(best),
                       best.rec["latency"]["median_ms"], 100 * acc_top1 if acc_top1 is not None else None,
                       "eval of this artifact" if acc_top1 is not None else
                       ("random weights: latency only" if random else "not evaluated")])
    t.note = "Every artifact was verified against its PyTorch model when it was written (see its manifest)."
    return t


def verdict_sentences(table: Table) -> list[str]:
    """One or two sentences per device: where VanillaNet wins, where it loses, by how much."""
    out = []
    rows = [dict(zip([h for h, _ in table.columns], r)) for r in table.rows]
    for device in sorted({r["device"] for r in rows if r["ratio"] is not None}):
        mine = [r for r in rows if r["device"] == device and r["ratio"] is not None and r["input"] == 224
                and r["batch"] == 1 and r["comparison"] == "plain"]
        if not mine:
            continue
        wins = [r for r in mine if r["95% high"] < 1]
        losses = [r for r in mine if r["95% low"] > 1]
        def say(r):
            extra = "" if r["settings"].count(",") == 0 else f" ({r['settings'].rsplit(',', 1)[0]})"
            return f"{r['runtime']} {r['precision']}{extra}: {r['ratio']:.2f}"
        text = f"On {device}, at 224x224 and batch 1, {mine[0]['VanillaNet']} / ResNet-50 latency ratios: "
        text += ("VanillaNet is faster on " + "; ".join(say(r) for r in wins) + ". ") if wins else \
            "VanillaNet is faster on no runtime measured. "
        text += ("ResNet-50 is faster on " + "; ".join(say(r) for r in losses) + ". ") if losses else ""
        rest = [r for r in mine if r not in wins and r not in losses]
        if rest:
            text += "No clear difference on " + "; ".join(say(r) for r in rest) + ". "
        a100 = A100_EAGER_MS.get(mine[0]["VanillaNet"])
        if a100:
            text += (f"The paper's A100 ratio (published, eager PyTorch) is "
                     f"{a100 / A100_EAGER_MS[BASELINE_MODEL]:.2f}.")
        out.append(text.strip())
    return out


def official_table() -> Table:
    t = Table("official", "Published reference figures (A100; not measured here)",
              [("model", "text"), ("A100 eager fp32 ms", "num"), ("A100 TensorRT fp32 ms", "num"),
               ("A100 TensorRT fp16 ms", "num"), ("ratio to ResNet-50 (eager)", "num")],
              digits={"ratio to ResNet-50 (eager)": 3})
    for m, ms in A100_EAGER_MS.items():
        trt = A100_TENSORRT_MS.get(m, (None, None))
        t.rows.append([m, ms, trt[0], trt[1], ms / A100_EAGER_MS[BASELINE_MODEL]])
    t.note = OFFICIAL_SOURCE
    return t


def peak_table(peaks: list[Row]) -> Table:
    t = Table("peak", "Measured matmul peak per runtime and precision (devices/peak.py)",
              [("device", "text"), ("runtime", "text"), ("precision", "text"), ("GMAC/s", "num"),
               ("threads", "num"), ("kernel", "text"), ("shape", "text")], digits={"GMAC/s": 1})
    for p in peaks:
        for runtime, by in sorted(p.rec.get("peaks", {}).items()):
            for prec, e in sorted(by.items()):
                t.rows.append([p.device, runtime, prec, e.get("gmacs_per_s"), e.get("threads"),
                               e.get("exec_type"), e.get("shape")])
        for runtime, by in sorted(p.rec.get("unavailable", {}).items()):
            for prec, e in sorted(by.items()):
                t.rows.append([p.device, runtime, prec, None, None, e.get("reason"), "-"])
    t.note = ((peaks[-1].rec.get("how") if peaks else "") or "") + (
        "; one definition for the report and tune: a % of peak is against the peak of the precision "
        "the artifact computes in")
    return t


# ============================================================================ plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    from matplotlib.text import Text

    # Labels come from records (model and file names): draw them as written. With mathtext on,
    # a '$' starts a formula, and a name such as '$\\foo{$' would crash the whole report.
    for text in fig.findobj(Text):
        text.set_parse_math(False)
    for ax in fig.axes:                    # tick labels that exist only once ticks are made
        for text in ax.get_xticklabels() + ax.get_yticklabels():
            text.set_parse_math(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def plot_latency(lat: list[Row]) -> bytes:
    plt = _plt()
    models = sorted({(r.family != "vanillanet", r.model, r.input_size) for r in lat})
    configs = sorted({r.config for r in lat})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(models) * max(1, len(configs)) / 2 + 3), 4.5))
    width = 0.8 / max(1, len(configs))
    for j, cfg in enumerate(configs):
        xs, ys, lo, hi = [], [], [], []
        for i, (_, model, size) in enumerate(models):
            rows = [r for r in lat if (r.model, r.input_size, r.config) == (model, size, cfg)]
            r = _pick(rows)
            if r is None:
                continue
            med = r.rec["latency"]["median_ms"]
            low, high = _interval(r.rec)
            xs.append(i + (j - (len(configs) - 1) / 2) * width)
            ys.append(med)
            lo.append(max(0.0, med - low))
            hi.append(max(0.0, high - med))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=cfg)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels([f"{m}\n@{s}" for _, m, s in models], fontsize=8)
    ax.set_ylabel("median latency (ms)")
    ax.set_title("Latency per model, runtime and precision (error bars: min/max round median)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_scaling(lat: list[Row]) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    configs = sorted({r.config for r in lat})
    markers = "os^Dv<>pP*hX"
    colors = {"vanillanet": "tab:blue", "baseline": "tab:red"}
    skipped_depth = set()
    for j, cfg in enumerate(configs):
        for family in ("vanillanet", "baseline"):
            rows = {}
            for r in lat:
                if r.config == cfg and r.family == family:
                    rows.setdefault((r.model, r.input_size), []).append(r)
            picked = [_pick(v) for v in rows.values()]
            for ax, attr in zip(axes, ("depth", "macs")):
                pts = [(getattr(r, attr), r.rec["latency"]["median_ms"], r.model) for r in picked
                       if getattr(r, attr) is not None]
                if attr == "depth":
                    skipped_depth |= {r.model for r in picked if r.depth is None}
                if not pts:
                    continue
                pts.sort()
                xs = [p[0] / (1e9 if attr == "macs" else 1) for p in pts]
                if family == "vanillanet" and len(pts) > 1:
                    ax.plot(xs, [p[1] for p in pts], color=colors[family], lw=0.8, alpha=0.5)
                ax.scatter(xs, [p[1] for p in pts], marker=markers[j % len(markers)],
                           color=colors.get(family, "gray"), label=f"{family}: {cfg}")
                for x, p in zip(xs, pts):
                    ax.annotate(p[2], (x, p[1]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    axes[0].set_xlabel("depth (paper's sense: non-linear layers + 1 / weighted layers)")
    axes[1].set_xlabel("GMACs per image")
    for ax in axes:
        ax.set_ylabel("median latency (ms)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Latency against depth" + (f" (no depth: {', '.join(sorted(skipped_depth))})"
                                                 if skipped_depth else ""), fontsize=9)
    axes[1].set_title("Latency against MACs", fontsize=9)
    handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        uniq = dict(zip(labels, handles))
        axes[1].legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _png(fig)


def plot_roofline(lat: list[Row], peaks: list[Row]) -> bytes | None:
    rows = [(r, *_peak_gmacs(peaks, r)) for r in lat if r.rec.get("gmacs_per_s")]
    rows = sorted([x for x in rows if x[1]], key=lambda x: x[0].rec["gmacs_per_s"] / x[1])
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(rows) + 1.5)))
    vals = [100 * r.rec["gmacs_per_s"] / peak for r, peak, _ in rows]
    ax.barh(range(len(rows)), vals, color=["tab:blue" if r.family == "vanillanet" else "tab:red" for r, _, _ in rows])
    for i, (v, (_, peak, of)) in enumerate(zip(vals, rows)):
        ax.text(v, i, f" {v:.0f}% of {peak:.0f} GMAC/s ({of})", va="center", fontsize=6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r.model}@{r.input_size} {r.config}" for r, _, _ in rows], fontsize=7)
    ax.set_xlabel("% of the matmul peak of the precision each artifact computes in")
    ax.set_title("Roofline efficiency: achieved rate against the measured peak")
    return _png(fig)


def _spread(value: float, low: float, high: float) -> list[list[float]]:
    """Error-bar extents around `value`; a side never goes negative (bounds built from unpaired
    rounds are not guaranteed to hold the point estimate)."""
    return [[max(0.0, value - low)], [max(0.0, high - value)]]


def plot_ratio(table: Table) -> bytes | None:
    heads = [h for h, _ in table.columns]
    rows = [dict(zip(heads, r)) for r in table.rows]
    rows = sorted([r for r in rows if r["ratio"] is not None],
                  key=lambda r: (r["device"], r["runtime"], r["precision"], r["comparison"], r["settings"]))
    if not rows:
        return None
    plt = _plt()
    devices = sorted({r["device"] for r in rows})
    colors = {d: plt.cm.tab10(k % 10) for k, d in enumerate(devices)}
    fig, ax = plt.subplots(figsize=(9, max(3, 0.35 * len(rows) + 1.5)))
    for i, r in enumerate(rows):
        ax.errorbar(r["ratio"], i, xerr=_spread(r["ratio"], r["95% low"], r["95% high"]), fmt="o", capsize=3,
                    color=colors[r["device"]],
                    label=r["device"] if r["device"] not in ax.get_legend_handles_labels()[1] else None)
        if r["A100 ratio"] is not None:
            ax.plot(r["A100 ratio"], i, "x", color="tab:green")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([(f"{r['device']}: " if len(devices) > 1 else "")
                        + f"{r['VanillaNet']}, {r['runtime']} {r['precision']} {r['comparison']} "
                          f"({r['settings']}) @{r['input']}" for r in rows], fontsize=7)
    ax.set_xlabel("latency ratio, 95% interval (< 1: VanillaNet faster); x = published A100 eager ratio")
    if len(devices) > 1:
        ax.legend(title="device", fontsize=7)
        ax.set_title("VanillaNet / ResNet-50 on each device")
    else:
        ax.set_title(f"VanillaNet / ResNet-50 on this machine ({devices[0]})")
    return _png(fig)


def plot_int8(table: Table) -> bytes | None:
    rows = [r for r in table.rows if r[6] is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(rows) + 1.5)))
    for i, r in enumerate(rows):
        ax.barh(i, r[6], color="tab:purple")
        ax.errorbar(r[6], i, xerr=_spread(r[6], r[7], r[8]), fmt="none", capsize=3, color="k")
        if r[12] is not None:
            ax.text(r[8], i, f"  top-1 {r[12]:+.2f} pts", va="center", fontsize=7)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r[0]}@{r[1]} {r[2]} (fp32 in {r[3]})" for r in rows], fontsize=7)
    ax.set_xlabel("INT8 speed-up over FP32 (x)")
    ax.set_title("INT8 speed-up per runtime (and top-1 change where measured)")
    return _png(fig)


# ============================================================================ rendering

_CSS = """body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.nm{color:#a00;text-align:center}p.note{font-size:12px;color:#555}img{max-width:100%}
code{background:#f5f5f5}"""


def _md_table(t: Table) -> str:
    heads = [h for h, _ in t.columns]
    lines = ["| " + " | ".join(heads) + " |",
             "|" + "|".join("---:" if k == "num" else "---" for _, k in t.columns) + "|"]
    lines += ["| " + " | ".join(md_text(c).replace("|", "/") for c in row) + " |" for row in t.formatted()]
    return "\n".join(lines)


def md_text(text: str) -> str:
    """Text from records (model and file names, error messages) made inert in Markdown: HTML
    escaped (a renderer would run raw `<img onerror=...>`), Markdown's own marks backslashed."""
    out = html.escape(str(text), quote=False)
    for ch in "\\`*_[]#!":
        out = out.replace(ch, "\\" + ch)
    return out


def _html_table(t: Table) -> str:
    out = [f'<table id="{t.key}"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h, _ in t.columns)
           + "</tr></thead><tbody>"]
    for row in t.formatted():
        cells = []
        for (h, kind), c in zip(t.columns, row):
            cls = "nm" if c == NOT_MEASURED else ("num" if kind == "num" else "text")
            cells.append(f'<td class="{cls}" data-type="{kind}">{html.escape(c)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def summary_text(report: dict) -> str:
    """The lines a terminal wants: machine, medians per model/runtime/precision, the verdict."""
    lines = list(report["machines"]) or ["machine: not recorded"]
    for p in report.get("peaks", []):
        best = ", ".join(f"{rt} {prec} {e['gmacs_per_s']:.0f}" for rt, by in sorted(p["peaks"].items())
                         for prec, e in sorted(by.items()))
        lines.append(f"matmul peaks on {p['device']['name']} (GMAC/s): {best or 'none measured'}")
    tables = {t["key"]: t for t in report["tables"]}
    lines.append(f"{'model':<30}{'in':>5} {'runtime / precision':<34}{'median ms':>10}{'95% low':>10}"
                 f"{'95% high':>10}{'GMAC/s':>8}")
    for r in tables["latency"]["rows"]:
        config = r["runtime"] + " " + r["precision"] + (
            "" if r["computed in"] == r["precision"] else f" [{r['computed in']} compute]")
        lines.append(f"{r['model']:<30}{r['input'] or '':>5} {config:<34}{r['median ms']:>10.2f}"
                     f"{r['95% low ms']:>10.2f}{r['95% high ms']:>10.2f}{(r['GMAC/s'] or 0):>8.1f}")
    lines += verdict_lines(report)
    return "\n".join(lines)


def verdict_lines(report: dict) -> list[str]:
    """The verdict for a terminal: one line per comparison row, then the sentences."""
    tables = {t["key"]: t for t in report["tables"]}
    lines = ["The verdict, VanillaNet / ResNet-50 latency (< 1: VanillaNet faster; 95% interval):"]
    for r in tables["verdict"]["rows"]:
        where = f"  {r['device']} {r['runtime']} {r['precision']} {r['comparison']} ({r['settings']})"
        if r["ratio"] is None:
            why = "" if r["verdict here"] == NOT_MEASURED else f" ({r['verdict here']})"
            lines.append(f"{where} {r['VanillaNet']}: {NOT_MEASURED}{why}")
        else:
            lines.append(f"{where} @{r['input']}: {r['VanillaNet']} {r['VanillaNet ms']:.2f} ms / ResNet-50 "
                         f"{r['ResNet-50 ms']:.2f} ms = {r['ratio']:.3f} [{r['95% low']:.3f}, {r['95% high']:.3f}]: "
                         f"{r['verdict here']}")
    return lines + report.get("verdict_sentences", [])



def build_report(run_dir: str | Path, out_dir: str | Path, peaks: dict | None = None) -> dict:
    """Read every result record under run_dir; write report.md, report.html, report.json (and
    the plots as PNG under out_dir/plots/). Matmul peaks come from the "peaks" records under
    run_dir (the pipeline's bench measures them on each device); where there are none, `peaks`
    (a devices/peak.measure_peaks() result of this machine) is used, else measured now. Returns
    what report.json holds."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    records, sources, skipped = load_records(run_dir)
    rows = [normalise(r) for r in records]
    lat = [r for r in rows if r.kind == "latency" and r.rec.get("ok") and r.rec.get("latency")]
    failed = [r for r in rows if r.kind == "latency" and not (r.rec.get("ok") and r.rec.get("latency"))]
    acc = [r for r in rows if r.kind == "accuracy" and r.rec.get("ok", True) and r.rec.get("top1") is not None]
    profiles = [r for r in rows if r.kind == "layer_profile" and r.rec.get("rows")]
    peak_rows = [r for r in rows if r.kind == "peaks"]
    if not peak_rows:
        if peaks is None:
            from ..devices.machine import default_threads
            from ..devices.peak import measure_peaks
            peaks = measure_peaks(threads=default_threads())
        rec = {**peak_record(peaks), "_source": "(measured when the report was built)", "_index": 0}
        peak_rows = [normalise(rec)]

    machines = {}
    for r in rows:
        if r.machine:
            machines.setdefault(r.mkey, machine_line(r.machine))
    verdict = verdict_table(lat)
    sentences = verdict_sentences(verdict)
    # The answer first: the verdict and each model's fastest artifact, then the details.
    tables = [verdict, fastest_table(lat, acc), latency_table(lat, peak_rows), int8_table(lat, acc),
              accuracy_table(acc), official_table(), peak_table(peak_rows)]
    if len({r.device for r in lat}) > 1:
        tables.insert(2, devices_table(lat))
    if profiles:
        tables.append(profile_table(profiles))
    if failed:
        tables.append(failures_table(failed))
    by_key = {t.key: t for t in tables}

    plots: dict[str, bytes] = {}
    if lat:
        plots["latency"] = plot_latency(lat)
        plots["scaling"] = plot_scaling(lat)
        if any(r.rec.get("gmacs_per_s") for r in lat):
            roofline = plot_roofline(lat, peak_rows)
            if roofline:
                plots["roofline"] = roofline
    for key, fn, t in (("verdict", plot_ratio, by_key["verdict"]), ("int8", plot_int8, by_key["int8"])):
        png = fn(t)
        if png:
            plots[key] = png
    captions = {
        "latency": "Median latency per model x runtime x precision; error bars: min and max round median.",
        "scaling": "Latency against depth and against MACs: VanillaNet family (blue) next to the deep baselines (red).",
        "roofline": "Achieved GMAC/s as % of the measured matmul peak of the precision each artifact computes in.",
        "verdict": "VanillaNet / ResNet-50 latency ratio with its min/max over rounds; x: the published A100 ratio.",
        "int8": "INT8 speed-up over FP32 per runtime, with the top-1 change where it was measured.",
    }
    placement = {"latency": ["latency", "scaling", "roofline"], "verdict": ["verdict"], "int8": ["int8"]}

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    for key, png in plots.items():
        atomic_write_bytes(out_dir / "plots" / f"{key}.png", png)

    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    header = [f"Generated {created} from {len(records)} records in {len(sources)} files under `{run_dir}`.",
              *[f"- {m}" for m in machines.values()],
              "- % of peak: against the matmul peak of the precision an artifact computes in, measured "
              "through the runtimes' own kernels on the machine that ran it (table at the end)"]
    if len(machines) > 1:
        header.append("- records come from more than one machine: comparisons pair records of the same machine only")
    if not records:
        header.append(f"- no latency or accuracy records found under `{run_dir}`: every comparison is "
                      f"'{NOT_MEASURED}'")
    notes = ["Baseline and random-weight VanillaNet artifacts carry random weights: their latency is "
             "real, their accuracy is not. Top-1 figures labelled 'published' come from papers and "
             "model cards, never from these runs."]

    answer = sentences or [f"Verdict: {NOT_MEASURED} (no full-size VanillaNet and ResNet-50 timed together; "
                           "see [verdict] in `vanillanet-edge init`)."]
    md = ["# vanillanet-edge report", "", *[md_text(a) for a in answer], "", *[md_text(h) for h in header], "",
          *[md_text(n) for n in notes], ""]
    body = [f"<h1>vanillanet-edge report</h1>" + "".join(f'<p class="answer">{html.escape(a)}</p>' for a in answer)
            + f"<p>{html.escape(header[0])}</p><ul>"
            + "".join(f"<li>{html.escape(h[2:])}</li>" for h in header[1:]) + "</ul>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes)]
    for t in tables:
        md += [f"## {md_text(t.title)}", "", _md_table(t), ""]
        body.append(f"<h2>{html.escape(t.title)}</h2>{_html_table(t)}")
        if t.note:
            md += [f"_{md_text(t.note)}_", ""]
            body.append(f'<p class="note">{html.escape(t.note)}</p>')
        for key in placement.get(t.key, []):
            if key in plots:
                md += [f"![{captions[key]}](plots/{key}.png)", "", f"_{captions[key]}_", ""]
                b64 = base64.b64encode(plots[key]).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(key)}" src="data:image/png;base64,{b64}">'
                            f"<figcaption>{html.escape(captions[key])}</figcaption></figure>")
    if skipped:
        md += ["## Files skipped", ""] + [f"- {md_text(s['file'])}: {md_text(s['why'])}" for s in skipped] + [""]
        body.append("<h2>Files skipped</h2><ul>" + "".join(
            f"<li><code>{html.escape(s['file'])}</code>: {html.escape(s['why'])}</li>" for s in skipped) + "</ul>")

    report = {"schema_version": 1, "created_utc": created, "run_dir": str(run_dir),
              "sources": sources, "skipped_files": skipped, "records": len(records),
              "machines": list(machines.values()), "peaks": [p.rec for p in peak_rows],
              "verdict_sentences": sentences,
              "tables": [t.as_json() for t in tables], "plots": {k: f"plots/{k}.png" for k in plots},
              "official": {"a100_eager_ms": A100_EAGER_MS, "a100_tensorrt_fp32_fp16_ms": A100_TENSORRT_MS,
                           "source": OFFICIAL_SOURCE}}
    # Each file whole or not at all: a crash mid-report never leaves a finished-looking half.
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    atomic_write_text(out_dir / "report.html",
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>vanillanet-edge report</title>"
        f"<style>{_CSS}</style></head><body>" + "".join(body) + "</body></html>")
    write_json(out_dir / "report.json", report)
    return report


__all__ = ["build_report", "peak_record", "verdict_lines", "load_records", "summary_text", "machine_line", "NOT_MEASURED"]
