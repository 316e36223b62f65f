"""`tune`: the fastest verified artifact and runtime settings for one model on one device.

1. Convert the model to every (target, precision, exact rewrite, batch) asked for; each
   artifact is verified against the fused net by the converters as always.
2. Expand each artifact into candidates: the runtime settings its runner offers for that
   device (Runner.tuning_options: precision hints, threads, kernel sets...).
3. Check every candidate's numbers with its own settings (a bf16 hint changes them): top-1
   on labelled images when given, agreement with the fused net on the verification images.
4. Benchmark every surviving candidate with the latency harness, rounds interleaved, on the
   device; rank by time per image; pick one under the latency / accuracy budgets.
5. Copy the chosen artifact to OUT/recommended/ with its settings pinned in the manifest
   (`runtime_settings`), which bench, eval and the remote runner apply when loading it.
"""
from __future__ import annotations

import dataclasses
import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration.dataset import AUTO_METHOD
from ..converters.convert import PreparedModel, convert_one, load_eval_set, prepare
from ..converters.registry import TUNE_ANCHOR_TARGET, converter_class, default_targets, get_converter
from ..converters.verify import LIMITS, check_limits, run_artifact
from ..devices.artifacts import resolve
from ..devices.latency import BenchSettings
from ..devices.registry import get_runner
from ..errors import VanillaNetEdgeError
from ..fileio import atomic_path, claim_folder, clean_partials, write_json
from ..manifest import MANIFEST_NAME, read_manifest
from ..metrics import compare_logits, finite, within
from ..model.rewrites import apply_rewrites
from ..records import LatencyRecord, MedianInterval

TUNE_SCHEMA = 1


@dataclass
class TuneOptions:
    targets: tuple = tuple(default_targets())
    precisions: tuple = ("fp32", "int8")
    # each entry: rewrites applied together. dw_dilated takes LiteRT's pathological 7x7 depthwise
    # apart (model/rewrites.py); it may cost ONNX Runtime or OpenVINO, so tune measures it per device.
    rewrites: tuple = ((), ("relu_before_pool",), ("dw_dilated",))
    batches: tuple = (1,)                              # >1 only where the app can batch
    input_sizes: tuple = (None,)                       # None = the checkpoint's own (224 for names)
    layouts: tuple = ("native",)                       # + "NHWC" where a converter can write it
    budget_ms: float | None = None                     # per call (one batch)
    max_drop: float | None = None                      # top-1 points vs fp32 (needs eval_data)
    calib_data: str | None = None
    calib_samples: int = 128
    calib_method: str = AUTO_METHOD                    # auto: each target's own default
    eval_data: str | None = None
    eval_limit: int = 500
    warmup: int = 5
    runs: int = 60
    rounds: int = 3
    peaks: bool = True                                 # measure matmul peaks (local device only)
    anchor: tuple = (TUNE_ANCHOR_TARGET, "int8", ())   # the plain export to compare against


@dataclass
class Candidate:
    artifact: Path
    manifest: dict
    runtime: str
    settings: dict
    rewrites: tuple
    checks: dict = field(default_factory=dict)
    record: LatencyRecord | None = None

    @property
    def file(self) -> Path:
        """What the runtime loads (the artifact folder holds it and its manifest)."""
        return self.artifact / self.manifest["artifact"]["file"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def input_size(self) -> int:
        shape, layout = self.manifest["input"]["shape"], self.manifest["input"]["layout"]
        return shape[1] if layout == "NHWC" else shape[2]

    @property
    def batch(self) -> int:
        return self.manifest["input"]["shape"][0]

    @property
    def compute(self) -> str:
        """The precision the maths ran in (a bf16 hint makes an fp32 artifact compute in bf16)."""
        return get_runner(self.runtime).computed_in(self.precision, self.settings)

    @property
    def label(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "defaults"
        rw = "+".join(self.rewrites) or "plain"
        layout = " NHWC" if self.manifest["input"]["layout"] == "NHWC" else ""
        return (f"{self.manifest['target']} {self.precision} {self.input_size}px b{self.batch}{layout} [{rw}] "
                f"{self.runtime} ({opts})")


def _prepare(model: str, size: int | None, data: str | None) -> PreparedModel:
    """A checkpoint file, or an official variant name (random weights: latency only).

    A random-weight net is verified on the real images given (calibration or eval), not on
    random noise: INT8 ranges calibrated on images say nothing about noise."""
    from ..converters.baselines import prepare_vanillanet_random
    from ..images import Preprocessing, load_folder
    from ..model.variants import VARIANTS

    if model in VARIANTS and not Path(model).exists():
        size = size or 224
        inputs = load_folder(data, Preprocessing.imagenet(size), limit=32, seed=1).inputs if data else None
        prep = prepare_vanillanet_random(model, size, inputs=inputs)
        if data:
            prep.inputs_source = f"real images from {data}"
        return prep
    return prepare(model, size, data)


def _with_rewrites(prep: PreparedModel, rewrites: tuple, batch: int) -> PreparedModel:
    suffix = ("-" + "+".join(rewrites) if rewrites else "") + (f"-b{batch}" if batch > 1 else "")
    meta = {**prep.model_meta, "rewrites": list(rewrites)}
    return dataclasses.replace(prep, name=prep.name + suffix, model_meta=meta,
                               export_model=apply_rewrites(prep.export_model, rewrites))


def convert_all(prep: PreparedModel, opts: TuneOptions, out: Path, log) -> tuple[list, list[dict], object]:
    """Every (rewrite, target, precision, batch) artifact; failures are kept as table rows."""
    calibration = evaluation = None
    if "int8" in opts.precisions:
        if not opts.calib_data:
            raise VanillaNetEdgeError("tuning int8 needs calibration images",
                                      hint="pass --calib-data DIR, or --precision fp32 --precision fp16 only")
        from ..calibration.dataset import load_calibration
        calibration = load_calibration(opts.calib_data, prep.preprocessing, opts.calib_samples, 0,
                                       opts.calib_method)
    if opts.eval_data:
        evaluation = load_eval_set(prep, opts.eval_data, opts.eval_limit)
        log(f"accuracy on {evaluation.source}: fp32 top-1 {100 * evaluation.fp32_top1:.2f}%")
    claim_folder(out, "tune artifacts folder")
    clean_partials(out)
    made, failed = [], []
    for rewrites, batch, layout, target, precision in itertools.product(
            opts.rewrites, opts.batches, opts.layouts, opts.targets, opts.precisions):
        converter = get_converter(target)
        if precision not in converter.precisions or (layout != "native" and layout not in converter.layout_options):
            continue
        variant = _with_rewrites(prep, tuple(rewrites), batch)
        if layout != "native":
            variant = dataclasses.replace(variant, name=f"{variant.name}-{layout.lower()}")
        folder = out / f"{variant.name}-{target}-{precision}"
        if _reusable(folder, variant, precision, opts):     # from an earlier tune run
            made.append((folder, tuple(rewrites)))
            continue
        log(f"convert {folder.name}")
        outcome = convert_one(variant, target, precision, out, batch,
                              options={"input_layout": layout} if layout != "native" else None,
                              calibration=calibration if precision == "int8" else None,
                              evaluation=evaluation)
        if outcome.ok and outcome.folder is not None:      # ok: the folder was written
            made.append((outcome.folder, tuple(rewrites)))
        else:
            failed.append({"candidate": f"{target} {precision} b{batch} {layout} [{'+'.join(rewrites) or 'plain'}]",
                           "stage": outcome.stage, "error": outcome.error})
    return made, failed, evaluation


def _reusable(folder: Path, prep: PreparedModel, precision: str, opts: TuneOptions) -> bool:
    """An artifact an earlier run made from the same weights, rewrites and calibration settings
    (anything else is converted again and replaces it)."""
    if not (folder / MANIFEST_NAME).exists():
        return False
    m = read_manifest(folder)
    same = m.get("source") == prep.source and m.get("model", {}).get("rewrites") == prep.model_meta["rewrites"]
    if precision == "int8":
        cal = m.get("calibration") or {}
        method = opts.calib_method
        if method == AUTO_METHOD:       # the manifest records the method auto resolved to
            method = converter_class(m["target"]).default_int8_method
        same = same and (cal.get("method"), cal.get("samples")) == (method, opts.calib_samples)
    return same


def check_candidate(c: Candidate, prep: PreparedModel, evaluation) -> dict:
    """Numbers with the candidate's own settings: agreement with the fused net, and top-1."""
    logits, _ = run_artifact(c.runtime, c.file, c.manifest, prep.inputs, **c.settings)
    limits_for = c.compute if c.compute in LIMITS else "fp16"        # bf16: checked like fp16
    checks: dict[str, Any] = {"verification": check_limits(compare_logits(logits, prep.reference), limits_for,
                                           require_agreement=not prep.random_weights)}
    if evaluation is not None:
        logits, _ = run_artifact(c.runtime, c.file, c.manifest, evaluation.inputs, **c.settings)
        top1 = float((np.asarray(logits).argmax(1) == evaluation.labels).mean())
        checks["top1"] = top1
        checks["drop_points"] = round(100 * (evaluation.fp32_top1 - top1), 4)
    return checks


def expand(made, machine: dict) -> list[Candidate]:
    cands = []
    for folder, rewrites in made:
        manifest = read_manifest(folder)
        runner = get_runner(manifest["runtime"])
        for settings in runner.tuning_options(machine, manifest["precision"]):
            cands.append(Candidate(folder, manifest, manifest["runtime"], settings, rewrites))
    return cands


def _is_anchor(c: Candidate, anchor: tuple) -> bool:
    target, precision, rewrites = anchor
    return ((c.manifest["target"], c.precision, c.rewrites, c.batch, c.settings, c.manifest["input"]["layout"])
            == (target, precision, tuple(rewrites), 1, {}, "NCHW"))


def tune(model: str, out: str | Path, device=None, opts: TuneOptions | None = None, log=print) -> dict:
    """Search, measure, rank, recommend. `device`: a remote.device.Device (default local)."""
    from ..remote.device import Device
    from ..remote.devices_file import DeviceSpec

    opts = opts or TuneOptions()
    out = claim_folder(out, "tune folder")
    device = device or Device(DeviceSpec("local"))
    machine = device.machine()
    preps, made, failed = {}, [], []
    for size in opts.input_sizes:           # each input size: its own model copy, images, checks
        prep = _prepare(model, size, opts.eval_data or opts.calib_data)
        if len(opts.input_sizes) > 1:
            prep = dataclasses.replace(prep, name=f"{prep.name}-{prep.input_size}px")
        log(f"tune {prep.description} at {prep.input_size}px for device '{device.spec.name}' "
            f"({machine.get('cpu_model')}, ISA {' '.join(machine.get('isa', []))})")
        made_s, failed_s, evaluation = convert_all(prep, opts, out / "artifacts", log)
        preps[prep.input_size] = (prep, evaluation)
        made += made_s
        failed += failed_s
    cands = expand(made, machine)
    # The plain export with default settings is always measured, as the reference point
    # (at the first input size).
    target, precision, rewrites = opts.anchor
    first = next(iter(preps))
    base = next((c for c in cands if (c.manifest["target"], c.precision, c.rewrites, c.batch, c.input_size,
                                      c.manifest["input"]["layout"]) == (target, precision, tuple(rewrites), 1, first, "NCHW")),
                None)
    if base and not any(_is_anchor(c, opts.anchor) for c in cands):
        cands.insert(0, Candidate(base.artifact, base.manifest, base.runtime, {}, base.rewrites))

    kept = []
    for c in cands:
        try:
            c.checks = check_candidate(c, *preps[c.input_size])
        except Exception as exc:      # a runtime refusing a setting is that candidate's failure only
            failed.append({"candidate": c.label, "stage": "check", "error": f"{type(exc).__name__}: {exc}"})
            continue
        v = c.checks["verification"]
        over = opts.max_drop is not None and not within(c.checks.get("drop_points", 0), opts.max_drop)
        if not v["passed"] or over:
            why = (f"verification failed (rel err {v['rel_err']:.3g}, agreement {100 * v['top1_agree']:.1f}%)"
                   if not v["passed"] else f"loses {c.checks['drop_points']:.2f} top-1 points > {opts.max_drop:g}")
            failed.append({"candidate": c.label, "stage": "accuracy", "error": why})
            if not _is_anchor(c, opts.anchor):
                continue
        kept.append(c)
    if not kept:
        raise VanillaNetEdgeError("no candidate passed its checks", hint="see the failures in tune.json")

    log(f"benchmark {len(kept)} candidates x {opts.rounds} interleaved rounds on '{device.spec.name}'")
    refs = {str(c.artifact): r for c, r in zip(kept, resolve([c.artifact for c in kept]))}
    jobs = [(refs[str(c.artifact)], BenchSettings(warmup=opts.warmup, runs=opts.runs, rounds=opts.rounds,
                                                   options=dict(c.settings))) for c in kept]
    for c, rec in zip(kept, device.bench_jobs(jobs)):
        c.record = rec
    peaks = _peaks(device, opts, log)
    rows = [_row(c, peaks, opts) for c in kept]
    rows.sort(key=lambda r: (not r["ok"], r["ms_per_image"] if r["ms_per_image"] is not None else float("inf")))
    anchor_row = next((r for r in rows if r["anchor"]), None)
    for r in rows:
        if anchor_row and anchor_row["ms_per_image"] and r["ms_per_image"]:
            r["speedup_vs_anchor"] = anchor_row["ms_per_image"] / r["ms_per_image"]
    choice = _choose(rows, opts)
    result = {"schema_version": TUNE_SCHEMA, "model": preps[first][0].description, "device": device.spec.name,
              "machine": machine, "options": dataclasses.asdict(opts), "candidates": rows,
              "failed": failed, "anchor": anchor_row, "recommendation": choice, "peaks": peaks}
    if choice:
        chosen = next(c for c in kept if str(c.artifact) == choice["artifact"] and c.settings == choice["settings"])
        result["recommended_artifact"] = str(pin(chosen, choice, out / "recommended", device.spec.name))
    write_json(out / "tune.json", result)
    return result


def _peaks(device, opts: TuneOptions, log) -> dict | None:
    """The device's matmul peaks per precision, measured right after the candidates."""
    if not opts.peaks:
        return None
    log(f"matmul peaks per precision on '{device.spec.name}' (same run)")
    try:
        return device.peaks(seconds=1.0)
    except VanillaNetEdgeError as exc:      # no peak: the table says '-', the ranking stands
        log(f"peaks not measured: {exc}")
        return None


def _row(c: Candidate, peaks: dict | None, opts: TuneOptions) -> dict:
    from ..devices.peak import best_peak, peak_for

    rec: LatencyRecord = c.record or {}
    ok = bool(rec.get("ok"))
    median = rec["latency"]["median_ms"] if ok and "latency" in rec else None   # ok: measured, so it is there
    if median is None or not finite(median) or median <= 0:    # a NaN or missing median was not measured: never the fastest
        ok, median = False, None
    iv: MedianInterval | dict = rec.get("median_interval_ms") or {}
    gmacs = rec.get("gmacs_per_s") if ok else None
    # the runtime's own matmul peak; a runtime without a probe (LiteRT) is set against the best
    # any runtime reached on the device in the same run (peak_runtime says whose)
    peak, peak_runtime = (peak_for(peaks, c.runtime, c.compute), c.runtime) if peaks else (None, None)
    if peaks and peak is None and (best := best_peak(peaks, c.compute)):
        peak, peak_runtime = best
    fits = ok and (opts.budget_ms is None or within(median, opts.budget_ms))
    return {"label": c.label, "artifact": str(c.artifact), "target": c.manifest["target"],
            "input_size": c.input_size,
            "precision": c.precision, "compute": c.compute, "runtime": c.runtime, "settings": c.settings,
            "rewrites": list(c.rewrites), "batch": c.batch, "ok": ok, "status": rec.get("status"),
            "error": rec.get("error") or rec.get("reason"), "median_ms": median,
            "interval_ms": [iv.get("low_ms"), iv.get("high_ms")] if ok else None,
            "ms_per_image": median / c.batch if median else None, "gmacs_per_s": gmacs,
            "peak_gmacs_per_s": peak, "peak_runtime": peak_runtime if peak else None,
            "fraction_of_peak": gmacs / peak if gmacs and peak else None,
            "agreement": c.checks.get("verification", {}).get("top1_agree"),
            "rel_err": c.checks.get("verification", {}).get("rel_err"),
            "top1": c.checks.get("top1"), "drop_points": c.checks.get("drop_points"),
            "passed_checks": c.checks.get("verification", {}).get("passed", False)
            and (opts.max_drop is None or within(c.checks.get("drop_points", 0), opts.max_drop)),
            "within_budget": bool(fits), "anchor": _is_anchor(c, opts.anchor),
            "session_settings": rec.get("session_settings")}


def _choose(rows: list[dict], opts: TuneOptions) -> dict | None:
    """Fastest per image among what passed; with --budget-ms, the most accurate that fits (then fastest)."""
    ok = [r for r in rows if r["ok"] and r["passed_checks"] and r["within_budget"]]
    if not ok:
        return None
    if opts.budget_ms is not None:
        def accuracy(r):
            return r["top1"] if r["top1"] is not None else -(r["rel_err"] or 0)
        return max(ok, key=lambda r: (accuracy(r), -r["ms_per_image"]))
    return min(ok, key=lambda r: r["ms_per_image"])


def pin(c: Candidate, row: dict, folder: Path, device: str) -> Path:
    """Copy the chosen artifact and pin its settings in the copy's manifest (atomically)."""
    final = folder / c.artifact.name
    claim_folder(folder, "recommended folder")
    with atomic_path(final, is_dir=True) as tmp:
        shutil.copytree(c.artifact, tmp, dirs_exist_ok=True)
        manifest = dict(c.manifest)
        manifest["runtime_settings"] = dict(c.settings)
        manifest["tuned"] = {"device": device, "median_ms": row["median_ms"], "interval_ms": row["interval_ms"],
                             "ms_per_image": row["ms_per_image"], "top1": row["top1"],
                             "agreement": row["agreement"], "rewrites": row["rewrites"],
                             "how": "vanillanet-edge tune: interleaved rounds against every other candidate"}
        write_json(tmp / MANIFEST_NAME, manifest)
    return final
