"""The report's tables: one function per table, each a Table of raw values with a note."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...metrics import finite
from ...model.published import A100_EAGER_MS, A100_TENSORRT_MS, BASELINE_MODEL, CLAIM_MODEL, OFFICIAL_SOURCE
from .records import (
    NOT_MEASURED,
    Row,
    _peak_gmacs,
    _read_manifest,
    machine_line,
)

# ============================================================================ tables

@dataclass
class Table:
    key: str
    title: str
    columns: list[tuple[str, str]]     # (header, "num" | "text")
    rows: list[list] = field(default_factory=list)
    note: str = ""
    digits: dict = field(default_factory=dict)   # header -> decimals
    published: str = ""     # one line of published (not measured) figures, shown under the table

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
        return {"key": self.key, "title": self.title, "note": self.note, "published": self.published,
                "columns": [{"name": h, "type": k} for h, k in self.columns],
                "rows": [dict(zip([h for h, _ in self.columns], r)) for r in self.rows]}


def _interval(r: Row) -> tuple[float, float]:
    """The 95% interval bench reports for its median (older records: the round min/max)."""
    iv = r.latency.get("median_interval_ms")
    if iv:
        return iv["low_ms"], iv["high_ms"]
    rounds = r.latency.get("round_medians_ms") or [r.median_ms]
    return min(rounds), max(rounds)


def _ratio_spread(a: Row, b: Row) -> tuple[float, float, float, str]:
    """median(a)/median(b), and its min/max over rounds: per-round ratios when both came from
    the same bench run with the same rounds (interleaved, so paired), else conservative bounds."""
    ma, mb = a.median_ms, b.median_ms
    ra = a.latency.get("round_medians_ms") or [ma]
    rb = b.latency.get("round_medians_ms") or [mb]
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
    return max(rows, key=lambda r: (r.latency["latency"]["runs"], r.source, r.index))


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
               ("spread %", "num"), ("CPU ms", "num"), ("load", "text"), ("runs", "num"), ("GMACs", "num"), ("GMAC/s", "num"),
               ("% of peak", "num"), ("peak of", "text"), ("size MB", "num"), ("bytes/param", "num"),
               ("file", "text")],
              digits={"GMACs": 3, "size MB": 1, "spread %": 1, "% of peak": 1, "GMAC/s": 1})
    for r in sorted(lat, key=lambda r: (r.family != "vanillanet", r.model, r.input_size or 0, r.device, r.config)):
        L = r.latency["latency"]
        low, high = _interval(r)
        g = r.latency.get("gmacs_per_s")
        peak, peak_of = _peak_gmacs(peaks, r)
        eff = 100 * g / peak if g and peak else None
        size = r.latency.get("artifact_size_bytes")
        bpp = size / r.params if size and r.params else None
        t.rows.append([r.model, r.family, r.input_size, r.batch, r.device, r.runtime, r.precision, r.compute,
                       L["median_ms"], L["p90_ms"], low, high,
                       100 * (high - low) / L["median_ms"], (r.latency.get("cpu_ms") or {}).get("median_ms"),
                       "loaded" if r.latency.get("load_warning") else "", L["runs"],
                       r.macs / 1e9 if r.macs else None, g, eff, peak_of,
                       size / 1e6 if size else None, bpp, r.source])
    t.note = ("95% low/high: where another bench call's median is expected to fall (from the scatter "
              "of the per-round medians and the within-round error; always covering every round); "
              "spread = (high - low) / median. CPU ms: process CPU time per inference, a latency at "
              "1 thread that holds on a busy machine (the sum over threads otherwise); load 'loaded': the "
              "load average passed the CPU count, or a 1-thread run was on a CPU for under 80% of its "
              "wall time (its wall times may read high). % of peak: achieved GMAC/s against the matmul peak of the "
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
            cells.append(best.median_ms if best else None)
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
        rec = r.profile
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
        why = r.latency.get("error") or r.latency.get("reason") or "no rounds"
        t.rows.append([r.name, r.device, r.runtime, r.latency.get("status", "failed"), why[:300], r.source])
    return t


def accuracy_table(acc: list[Row]) -> Table:
    t = Table("accuracy", "Accuracy records (measured on the images named)",
              [("model", "text"), ("runtime", "text"), ("precision", "text"), ("images", "num"),
               ("top-1 %", "num"), ("top-5 %", "num"), ("agreement with fp32 %", "num"),
               ("data", "text"), ("file", "text")])
    for r in sorted(acc, key=lambda r: (r.model, r.runtime, r.precision)):
        rec = r.accuracy
        a = rec.get("agreement_with_fp32")
        t.rows.append([r.model, r.runtime, r.precision, rec.get("images"), 100 * rec["top1"],
                       100 * rec["top5"] if rec.get("top5") is not None else None,
                       100 * a if a is not None else None, rec.get("data"), r.source])
    return t


def _manifest_top1(row: Row) -> tuple[float | None, float | None]:
    m = _read_manifest(row.latency.get("artifact"))
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
        same = [y for y in fp_a if y.accuracy.get("data") == x.accuracy.get("data")
                and y.accuracy.get("images") == x.accuracy.get("images")]
        if same:
            top_i8, top_fp = 100 * x.accuracy["top1"], 100 * same[0].accuracy["top1"]
            where = f"eval records ({x.accuracy.get('images')} images)"
            break
    if top_i8 is None and b is not None:
        m_i8, m_fp = _manifest_top1(b)
        if m_i8 is not None and m_fp is not None:
            top_i8, top_fp, where = 100 * m_i8, 100 * m_fp, "int8 artifact's manifest (convert --eval-data)"
    return [model, size, runtime, a.compute if a else None, a.median_ms if a else None,
            b.median_ms if b else None, speed, lo, hi, how,
            top_fp, top_i8, (top_i8 - top_fp) if top_i8 is not None and top_fp is not None else None, where]


def setting_label(r: Row) -> str:
    """The runtime settings a record was timed with, as the report names them."""
    ss = r.latency.get("session_settings") or {}
    rewrites = (r.latency.get("model") or {}).get("rewrites")
    parts = ["+".join(rewrites)] if rewrites else []
    if ss.get("kernels"):
        parts.append(f"{ss['kernels']} kernels")
    if ss.get("inference_precision"):
        parts.append(f"{ss['inference_precision']} hint")
    threads = ss.get("threads")
    parts.append(f"{threads} threads" if isinstance(threads, int) else f"threads: {threads or 'not recorded'}")
    return ", ".join(parts)


def _ratio_interval(a: Row, b: Row) -> tuple[float, float]:
    """95% bounds of the ratio from each median's 95% interval (conservative: both extremes)."""
    a_lo, a_hi = _interval(a)
    b_lo, b_hi = _interval(b)
    return a_lo / b_hi, a_hi / b_lo


def _fastest(rows: list[Row]) -> Row | None:
    """The lowest median; a record without a finite median (validate.py skips those) never is."""
    measured = [r for r in rows if finite(r.median_ms)]
    return min(measured, key=lambda r: r.median_ms) if measured else None


def verdict_table(lat: list[Row]) -> Table:
    t = Table("verdict", "The verdict: VanillaNet / ResNet-50 latency ratio (< 1: VanillaNet faster)",
              [("device", "text"), ("runtime", "text"), ("precision", "text"), ("comparison", "text"),
               ("settings", "text"), ("input", "num"), ("batch", "num"), ("VanillaNet", "text"),
               ("VanillaNet ms", "num"), ("ResNet-50 ms", "num"), ("ratio", "num"), ("95% low", "num"),
               ("95% high", "num"), ("ratio min", "num"), ("ratio max", "num"), ("rounds", "text"),
               ("verdict here", "text")],
              digits={"ratio": 3, "ratio min": 3, "ratio max": 3, "95% low": 3, "95% high": 3})
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
            own, theirs = {setting_label(r) for r in mine}, {setting_label(r) for r in g_r50}
            # plain: both models with the same settings (a rewrite of VanillaNet alone is never
            # plain); where the two share none, each setting shows what was not measured
            labels = sorted(own & theirs) or sorted(own | theirs)
            for label in labels:
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
              "settings and kernels (named), no rewrites; best: each model with its own fastest verified "
              "setting, exact rewrites of VanillaNet included (named, e.g. dw_bands). "
              "95% low/high: from each median's 95% interval (both extremes); ratio min/max: per-round "
              "ratios of the interleaved rounds. Records with different thread counts are never paired. "
              "Only full-size models (width 1) count. The paper's setting is batch 1 at 224.")
    t.published = published_line(sorted({row[7] for row in t.rows}))
    return t


def published_line(variants: list[str]) -> str:
    """The authors' A100 figures for these VanillaNets and ResNet-50, once, labelled published."""
    base = A100_EAGER_MS[BASELINE_MODEL]
    parts = []
    for v in variants:
        if v in A100_EAGER_MS:
            trt = A100_TENSORRT_MS.get(v)
            parts.append(f"{v} {A100_EAGER_MS[v]:.2f} ms (ratio {A100_EAGER_MS[v] / base:.2f})"
                         + (f", TensorRT fp32 {trt[0]:.2f} / fp16 {trt[1]:.2f} ms" if trt else ""))
    if not parts:
        return ""
    return (f"Published, not measured here (A100, eager PyTorch FP32, batch 1, 224x224): "
            f"{'; '.join(parts)}; ResNet-50 {base:.2f} ms.")


def headline_lines(table: Table) -> list[str]:
    """One short line per device: who is faster at the paper's setting, over how many runtimes."""
    rows = [dict(zip([h for h, _ in table.columns], r)) for r in table.rows]
    out = []
    for device in sorted({r["device"] for r in rows if r["ratio"] is not None}):
        mine = [r for r in rows if r["device"] == device and r["ratio"] is not None and r["input"] == 224
                and r["batch"] == 1 and r["comparison"] == "plain"]
        if not mine:
            continue
        ratios = sorted(r["ratio"] for r in mine)
        wins = sum(r["95% high"] < 1 for r in mine)
        losses = sum(r["95% low"] > 1 for r in mine)
        span = f"{ratios[0]:.2f}" if len(ratios) == 1 else f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
        who = (f"VanillaNet faster on {wins} of {len(mine)}" if wins > losses else
               f"ResNet-50 faster on {losses} of {len(mine)}" if losses else f"no clear difference on {len(mine)}")
        out.append(f"{device}: {mine[0]['VanillaNet']} / ResNet-50 at 224x224, batch 1: {who} runtime x "
                   f"precision pairs (latency ratio {span}; < 1: VanillaNet faster).")
    return out


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
    return [mk.split("|")[0] if mk else NOT_MEASURED, runtime or NOT_MEASURED, prec or "-", how_paired, label,
            size or None, batch or None, variant, a.median_ms if a else None,
            b.median_ms if b else None, ratio, lo95, hi95, lo, hi, how, verdict]


def fastest_table(lat: list[Row], acc: list[Row]) -> Table:
    """Each model's fastest measured artifact per device, with its top-1 where one was measured."""
    t = Table("fastest", "Fastest verified artifact of each model",
              [("device", "text"), ("model", "text"), ("input", "num"), ("artifact", "text"),
               ("runtime", "text"), ("precision", "text"), ("settings", "text"), ("median ms", "num"),
               ("top-1 %", "num"), ("top-1 source", "text")])
    top1: dict[str | None, float] = {}
    for r in acc:
        top1.setdefault(r.accuracy.get("artifact"), r.accuracy["top1"])
    keys = sorted({(r.device, r.model, r.input_size or 0) for r in lat}, key=lambda k: (k[0], k[2] != 224, k[1]))
    for device, model, size in keys:
        best = _fastest([r for r in lat if (r.device, r.model, r.input_size or 0) == (device, model, size)])
        if best is None:                 # no finite median for this model: nothing is the fastest
            continue
        acc_top1 = top1.get(best.latency.get("artifact"))
        source = (_read_manifest(best.latency.get("artifact")) or {}).get("source", {})   # weights: baselines only
        random = "random" in str(source.get("weights", ""))
        t.rows.append([device, model, size or None, best.name, best.runtime, best.precision, setting_label(best),
                       best.median_ms, 100 * acc_top1 if acc_top1 is not None else None,
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
        best = [r for r in rows if r["device"] == device and r["ratio"] is not None and r["input"] == 224
                and r["batch"] == 1 and r["comparison"] == "best"]
        if best:
            text += ("Each model at its own fastest verified setting: " + "; ".join(
                f"{r['runtime']} {r['precision']}: {r['ratio']:.2f} ({r['settings']})" for r in best) + ". ")
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
        for runtime, by in sorted(p.peaks.get("peaks", {}).items()):
            for prec, e in sorted(by.items()):
                t.rows.append([p.device, runtime, prec, e.get("gmacs_per_s"), e.get("threads"),
                               e.get("exec_type"), e.get("shape")])
        for runtime, by in sorted(p.peaks.get("unavailable", {}).items()):
            for prec, e in sorted(by.items()):
                t.rows.append([p.device, runtime, prec, None, None, e.get("reason"), "-"])
    t.note = ((peaks[-1].peaks.get("how") if peaks else "") or "") + (
        "; one definition for the report and tune: a % of peak is against the peak of the precision "
        "the artifact computes in")
    return t
