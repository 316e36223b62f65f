"""The verdict stage: full-size VanillaNet against a deep baseline at the paper's setting.

The trained tiny net proves the chain (accuracy, INT8 drop, verification); it says nothing about
speed at 224. So the main job also converts full-size VanillaNets and the baseline (random,
non-degenerate weights: latency only) to every verdict target and precision, plus their eager
PyTorch form, and benchmarks them in ONE interleaved run per device, so that the
VanillaNet / baseline ratios come from paired rounds.

Fairness (what the report's verdict rows rely on):
- every runtime runs with the same thread count (devices/base.resolve_threads) and says it;
- each artifact is also timed with every runtime setting its Runner offers for tuning that
  keeps the thread count (LiteRT XNNPACK / built-in kernels, OpenVINO f32 / bf16 hints), each
  setting first verified against the PyTorch model: a "plain" verdict row pairs the two models
  under identical settings, a "best" row pairs each model's own fastest verified setting;
- the VanillaNets are also converted with the exact rewrites of `verdict.rewrites` (dw_dilated:
  LiteRT/XNNPACK's 7x7 depthwise is ~20x slower than its 3x7 and 2x7 pieces), verified like any
  artifact; they count in the "best" rows only, labelled with the rewrite.
"""
from __future__ import annotations

from pathlib import Path

from ..converters.registry import left_out_reason
from ..devices.registry import EAGER_RUNTIME
from ..errors import VanillaNetEdgeError
from .context import Context, calibration_data
from .rundir import content_key

VERDICT_VERSION = 2      # bump when what the stage produces changes
N_VERIFY = 8             # real images per verification: random weights, relative error only


def stage_verdict(ctx: Context) -> None:
    v = ctx.cfg["verdict"]
    if not v["models"]:
        return
    calib_dir = calibration_data(ctx)
    precisions = list(v["precisions"])
    if "int8" in precisions and calib_dir is None:
        ctx.log("verdict: no images to calibrate int8 ranges on (set calibration.data); int8 left out")
        precisions.remove("int8")
    made: list[tuple[Path, list[dict]]] = []
    for model in [*v["models"], v["baseline"]]:
        made += _convert_model(ctx, model, v, precisions, calib_dir)
    _bench(ctx, made, v)


def _convert_model(ctx: Context, model: str, v: dict, precisions: list[str], calib_dir: Path | None):
    """(artifact folder, verified settings) for each target x precision and for eager PyTorch."""
    from ..converters.eager import write_eager_artifact

    size, out = v["input_size"], ctx.path("verdict", "artifacts")
    state = {"prep": None, "calibration": None}

    def prep():
        if state["prep"] is None:
            state["prep"] = _prepare(model, size, calib_dir)
        return state["prep"]

    made = []
    jobs = [(t, p, ()) for t in v["targets"] for p in precisions] + [(EAGER_RUNTIME, "fp32", ())]
    if model.startswith("vanillanet"):
        jobs += [(t, p, (rw,)) for rw in v["rewrites"] for t in v["rewrite_targets"] if t in v["targets"]
                 for p in precisions]
    for target, precision, rewrites in jobs:
        why = left_out_reason(target, precision) if target != EAGER_RUNTIME else None
        if why:             # a grid: what a target does not offer (ncnn int8) is left out, said once
            if not rewrites:
                ctx.log(f"verdict: {model}: {why}; left out")
            continue
        calib_part = (str(calib_dir), v["calib_samples"]) if precision == "int8" else None
        label = "+".join((model, *rewrites))
        name = f"verdict:{label}:{target}:{precision}"
        key = content_key(VERDICT_VERSION, model, size, target, precision, calib_part, rewrites)
        done = ctx.step("verdict", name, key)
        if done:
            ctx.skipped.append(name)
            made.append((ctx.path(done["outputs"][0]), done["result"]["settings"]))
            continue
        if target == EAGER_RUNTIME:
            ctx.log(f"verdict: {model} eager PyTorch at {size}x{size}")
            folder, settings = write_eager_artifact(prep(), out), [{}]
        else:
            ctx.log(f"verdict: convert {label} {target} {precision} at {size}x{size}")
            if precision == "int8" and state["calibration"] is None:
                from ..calibration.dataset import AUTO_METHOD, load_calibration
                state["calibration"] = load_calibration(calib_dir, prep().preprocessing, v["calib_samples"], 0,
                                                        AUTO_METHOD)
            folder, settings = _convert(ctx, _rewritten(prep(), rewrites), target, precision, out,
                                        state["calibration"])
            if folder is None:
                continue
        ctx.run.record(name, key, [folder], {"settings": settings})
        made.append((folder, settings))
    return made


def _rewritten(prep, rewrites: tuple):
    """The prepared model with exact rewrites applied to its export form, named by them."""
    if not rewrites:
        return prep
    import dataclasses

    from ..model.rewrites import apply_rewrites
    return dataclasses.replace(prep, name=f"{prep.name}-{'+'.join(rewrites)}",
                               model_meta={**prep.model_meta, "rewrites": list(rewrites)},
                               export_model=apply_rewrites(prep.export_model, rewrites))


def _prepare(model: str, size: int, calib_dir: Path | None):
    from ..converters.baselines import prepare_baseline, prepare_vanillanet_random
    from ..images import Preprocessing, load_folder

    inputs = (load_folder(calib_dir, Preprocessing.imagenet(size), limit=N_VERIFY, seed=1).inputs
              if calib_dir else None)
    prep = (prepare_vanillanet_random(model, size, inputs=inputs) if model.startswith("vanillanet")
            else prepare_baseline(model, size, inputs=inputs))
    if calib_dir:
        prep.inputs_source = f"real images from {calib_dir}"
    return prep


def _convert(ctx: Context, prep, target: str, precision: str, out: Path, calibration):
    """Convert and verify; then verify every alternative setting the runner offers (same threads)."""
    from ..converters.convert import convert_one
    from ..converters.verify import verify_artifact
    from ..devices.machine import describe_machine
    from ..devices.registry import get_runner

    outcome = convert_one(prep, target, precision, out, 1, None,
                          calibration if precision == "int8" else None, None)
    if not outcome.ok:
        ctx.log(f"verdict: {prep.name} {target} {precision} FAILED at {outcome.stage}: {outcome.error}")
        ctx.failures.append({"step": f"verdict:{prep.name}:{target}:{precision}", "error": outcome.error})
        return None, []
    manifest = outcome.manifest
    runner = get_runner(manifest["runtime"])
    options = [o for o in runner.tuning_options(describe_machine(), precision) if "threads" not in o] or [{}]
    verified = []
    for settings in options:
        limits = "fp16" if settings.get("precision_hint") in ("bf16", "f16") else precision
        check = verify_artifact(manifest["runtime"], outcome.folder / manifest["artifact"]["file"], manifest,
                                prep.inputs, prep.reference, limits, raise_on_fail=False,
                                require_agreement=False, **settings)
        if check["passed"]:
            verified.append(settings)
        else:
            ctx.log(f"verdict: {outcome.folder.name} with {settings} fails verification "
                    f"(rel err {check['rel_err']:.3g}); not timed")
    return outcome.folder, verified


def _bench(ctx: Context, made: list[tuple[Path, list[dict]]], v: dict) -> None:
    """One interleaved bench run per device over every (artifact, verified setting)."""
    from ..console import progress_bar
    from ..devices.artifacts import resolve
    from ..devices.latency import BenchSettings
    from ..fileio import sha256_path, write_json
    from ..remote.device import open_device
    from ..remote.fleet import resolve_devices

    b = ctx.cfg["bench"]
    specs = resolve_devices(b["devices"], b["devices_file"] or None)
    jobs = []
    for folder, settings_list in made:
        ref = resolve([folder])[0]
        for settings in settings_list:
            jobs.append((ref, BenchSettings(threads=b["threads"] or None, warmup=v["warmup"], runs=v["runs"],
                                            rounds=b["rounds"], options=dict(settings))))
    key = content_key(VERDICT_VERSION, sorted(sha256_path(f) for f, _ in made),
                      [(j[0].name, j[1].__dict__) for j in jobs], [s.__dict__ for s in specs])
    out = ctx.path("results", "verdict.json")
    if ctx.step("verdict", "verdict:bench", key):
        ctx.skipped.append("verdict:bench")
        return
    records = []
    bar = progress_bar(total=len(jobs) * b["rounds"] * len(specs), desc="verdict bench", unit="run")
    for spec in specs:
        try:
            device = open_device(spec)
        except VanillaNetEdgeError as exc:
            ctx.failures.append({"step": f"verdict@{spec.name}", "error": str(exc)})
            continue
        try:
            records += device.bench_jobs(jobs, progress=lambda r, i, ref: bar.update(1))
        finally:
            device.close()
    bar.close()
    for rec in records:
        rec["verdict"] = True
    write_json(out, records)
    failed = [r for r in records if r.get("device_error")]
    if not failed:
        ctx.run.record("verdict:bench", key, [out])
