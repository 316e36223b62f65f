"""The pipeline's stages, in order: data, train, fuse, convert, calibrate, eval, bench, verdict, report.

Each stage reads what earlier stages recorded in the run folder, hashes its own inputs and
settings, and skips itself when nothing changed (RunDir.done). Changing one setting redoes
only the steps whose key it enters: e.g. a new bench.runs reruns bench and report, nothing else.
"""
from __future__ import annotations

from contextlib import ExitStack, closing
from pathlib import Path

from ..errors import VanillaNetEdgeError
from ..fileio import sha256_path, write_json
from .context import Context, _split, calibration_data
from .rundir import content_key

STAGES = ("data", "train", "fuse", "convert", "calibrate", "eval", "bench", "verdict", "report")


class StageError(VanillaNetEdgeError):
    def __init__(self, stage: str, exc: Exception):
        hint = getattr(exc, "hint", None)
        super().__init__(f"stage '{stage}' failed: {exc if not hint else Exception.__str__(exc)}", hint=hint)
        self.stage = stage


def stage_data(ctx: Context) -> None:
    root = ctx.cfg["data"]["root"]
    if root:
        ctx.data_root = Path(root)
        ctx.log(f"data: using {root}")
        return
    if ctx.cfg["model"]["checkpoint"]:
        return   # shipping a given net: images come from calibration.data and eval.data
    from ..steps import make_digits

    key = content_key("digits", 32, 0)
    ctx.data_root = ctx.path("data")
    if ctx.step("data", "data", key):
        ctx.skipped.append("data")
        return
    info = make_digits(ctx.data_root)
    ctx.log(f"data: wrote {info['train']} train / {info['val']} val digits images to {ctx.data_root}")
    ctx.run.record("data", key, [ctx.data_root], info)


def _data_key(ctx: Context, split: str) -> str:
    folder = _split(ctx, split)
    return content_key(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))


def stage_train(ctx: Context) -> None:
    given = ctx.cfg["model"]["checkpoint"]
    if given:
        ctx.checkpoint = Path(given)
        ctx.checkpoint_sha = sha256_path(ctx.checkpoint)
        ctx.log(f"train: not needed, shipping {given}")
        return
    from ..model.train import TrainConfig
    from ..steps import train_model

    t, m = ctx.cfg["train"], ctx.cfg["model"]
    cfg = TrainConfig(variant=m["variant"] or "vanillanet_5", width=m["width"], epochs=t["epochs"],
                      decay_epochs=t["decay_epochs"], batch_size=t["batch_size"], lr=t["lr"], seed=t["seed"])
    size = m["input_size"] or 32
    key = content_key(cfg.__dict__, size, _data_key(ctx, "train"), _data_key(ctx, "val"))
    stem = cfg.variant if cfg.width == 1 else f"tiny-{cfg.variant}"   # names every artifact
    ctx.checkpoint = ctx.path("model", f"{stem}.pth")
    if not ctx.step("train", "train", key):
        ctx.log(f"train: {cfg.variant} width {cfg.width:g}, {cfg.epochs} epochs on {ctx.data_root}")
        result = train_model(ctx.data_root, ctx.checkpoint, cfg, input_size=size)
        ctx.log(f"train: val top-1 {100 * result['val_top1']:.2f}% in {result['seconds']:.0f} s")
        ctx.run.record("train", key, [ctx.checkpoint], {"val_top1": result["val_top1"]})
    else:
        ctx.skipped.append("train")
    ctx.checkpoint_sha = sha256_path(ctx.checkpoint)


def stage_fuse(ctx: Context) -> None:
    from ..steps import fuse_checkpoint

    out = _deploy_path(ctx)
    m = ctx.cfg["model"]
    key = content_key(ctx.checkpoint_sha, m["variant"], m["key"], m["input_size"])
    if ctx.step("fuse", "fuse", key):
        ctx.skipped.append("fuse")
        return
    r = fuse_checkpoint(ctx.checkpoint, out, data=_eval_data(ctx),
                        variant=m["variant"] or None, key=m["key"] or None, input_size=m["input_size"] or None)
    ctx.log(f"fuse: {r.check.random}")
    ctx.run.record("fuse", key, [out, r.report_path], {"rel_err": r.check.random.rel_err})


def _calib_settings(ctx: Context) -> dict:
    data = calibration_data(ctx)
    return {**ctx.cfg["calibration"], "data": str(data) if data else None}


def _calib_images(calib: dict) -> str:
    if calib["data"] is None:
        raise VanillaNetEdgeError("int8 needs calibration images and this run has none (no calibration.data, "
                                  "no train split under data.root)",
                                  hint="set calibration.data (images like the deployment data) or data.root")
    return calib["data"]


def _eval_data(ctx: Context) -> Path | None:
    e = ctx.cfg["eval"]["data"]
    if e:
        return Path(e)
    val = _split(ctx, "val") if ctx.data_root else None
    return val if val and val.is_dir() else None


def stage_convert(ctx: Context) -> None:
    conv, m = ctx.cfg["convert"], ctx.cfg["model"]
    calib, eval_dir = _calib_settings(ctx), _eval_data(ctx)
    with ExitStack() as stack:
        # [eval] ray: the convert stage's top-1 measurements (every max-drop candidate) run on
        # that cluster too, connected on the first one (cluster/ray_accuracy.py); same numbers.
        measure = None
        if ctx.cfg["eval"].get("ray") and eval_dir:
            from ..cluster.ray_accuracy import RayAccuracy
            measure = LazyEnter(stack, lambda: RayAccuracy(ctx.cfg["eval"]["ray"]))
        _convert_all(ctx, conv, m, calib, eval_dir, measure)
    convert_baselines(ctx)


class LazyEnter:
    """A context-managed accuracy measurer entered (connected) on its first call only."""

    def __init__(self, stack: ExitStack, make):
        self.stack, self.make, self.entered = stack, make, None

    def __call__(self, *args):
        if self.entered is None:
            self.entered = self.stack.enter_context(self.make())
        return self.entered(*args)


def _convert_all(ctx: Context, conv, m, calib, eval_dir, measure) -> None:
    from ..calibration.dataset import load_calibration
    from ..converters.convert import convert_int8_within_budget, convert_one, load_eval_set, prepare
    from ..converters.registry import converter_class, left_out_reason

    prep = calibration = evaluation = None
    for target in conv["targets"]:
        for precision in conv["precisions"]:
            why = left_out_reason(target, precision)
            if why:
                # targets x precisions is a grid: a pair the target does not offer (ncnn int8)
                # is left out and said, not a failed conversion that fails the run.
                ctx.log(f"convert: {why}; left out")
                continue
            int8_part = calib if precision == "int8" else None
            pixels = conv["input"] or converter_class(target).default_pixels
            key = content_key(ctx.checkpoint_sha, target, precision, conv["batch"], m["input_size"],
                              m["variant"], m["key"], int8_part, str(eval_dir), pixels)
            name = f"convert:{target}:{precision}"
            done = ctx.step("convert", name, key)
            if done:
                ctx.artifacts.append(ctx.path(done["outputs"][0]))
                ctx.skipped.append(name)
                continue
            if prep is None:
                prep = prepare(ctx.checkpoint, m["input_size"] or None, eval_dir,
                               m["variant"] or None, m["key"] or None)
                if eval_dir:
                    evaluation = load_eval_set(prep, eval_dir)
            if precision == "int8" and calibration is None:
                calibration = load_calibration(_calib_images(calib), prep.preprocessing, calib["samples"],
                                               calib["seed"], calib["method"])
            ctx.log(f"convert: {target} {precision}")
            out = ctx.path("artifacts")
            if precision == "int8" and calib["max_drop"] >= 0 and evaluation is not None:
                outcome = convert_int8_within_budget(prep, target, out, conv["batch"], None, calibration,
                                                     evaluation, calib["max_drop"], ctx.log, pixels,
                                                     measure=measure)
            else:
                outcome = convert_one(prep, target, precision, out, conv["batch"], None,
                                      calibration if precision == "int8" else None, evaluation, pixels=pixels,
                                      measure=measure)
            if not outcome.ok:
                ctx.log(f"convert: {target} {precision} FAILED at {outcome.stage}: {outcome.error}")
                ctx.failures.append({"step": name, "error": outcome.error})
                if target in conv["required"]:
                    raise VanillaNetEdgeError(f"required target {target} failed ({precision}): {outcome.error}")
                continue
            v = outcome.manifest["verification"]
            ctx.log(f"convert: {target} {precision} ok (rel err {v['rel_err']:.2g}) -> {outcome.folder}")
            ctx.run.record(name, key, [outcome.folder], {"verification": v})
            ctx.artifacts.append(outcome.folder)


def convert_baselines(ctx: Context) -> None:
    """Deep baselines at fp32 on the same targets (random weights: latency only, see model/baselines.py)."""
    b, conv = ctx.cfg["baselines"], ctx.cfg["convert"]
    if not b["models"]:
        return
    from ..converters.baselines import prepare_baseline
    from ..converters.convert import convert_one

    size = b["input_size"] or ctx.cfg["model"]["input_size"] or 32
    for model in b["models"]:
        prep = None
        for target in conv["targets"]:
            name = f"baseline:{model}:{target}:fp32"
            key = content_key(model, size, target, conv["batch"])
            done = ctx.step("convert", name, key)
            if done:
                ctx.artifacts.append(ctx.path(done["outputs"][0]))
                ctx.skipped.append(name)
                continue
            prep = prep or prepare_baseline(model, size)
            ctx.log(f"convert: baseline {model} {target} fp32 at {size}x{size}")
            outcome = convert_one(prep, target, "fp32", ctx.path("artifacts"), conv["batch"])
            if not outcome.ok:
                ctx.log(f"convert: baseline {model} {target} FAILED at {outcome.stage}: {outcome.error}")
                ctx.failures.append({"step": name, "error": outcome.error})
                continue
            ctx.run.record(name, key, [outcome.folder])
            ctx.artifacts.append(outcome.folder)


def stage_calibrate(ctx: Context) -> None:
    from ..converters.registry import converter_class

    conv = ctx.cfg["convert"]
    if "int8" not in conv["precisions"] or not any("int8" in converter_class(t).precisions for t in conv["targets"]):
        return
    from ..steps import calibrate

    calib = _calib_settings(ctx)
    _calib_images(calib)
    key = content_key(ctx.checkpoint_sha, calib["data"], calib["samples"], calib["seed"])
    out = ctx.path("calibration")
    if ctx.step("calibrate", "calibrate", key):
        ctx.skipped.append("calibrate")
        return
    from ..console import progress_bar
    bar = progress_bar(desc="calibrate: sensitivity", unit="layer")

    def advance(done, total, name):
        bar.total = total
        bar.update(1)

    report = calibrate(ctx.checkpoint, calib["data"], out, samples=calib["samples"], seed=calib["seed"],
                       input_size=ctx.cfg["model"]["input_size"] or None, progress=advance)
    bar.close()
    ctx.log(f"calibrate: keep in float: {', '.join(report['keep_in_float']) or 'none'}")
    ctx.run.record("calibrate", key, [out / "calibration.json", out / "sensitivity.png"],
                   {"keep_in_float": report["keep_in_float"]})


def _refs(ctx: Context):
    from ..devices.artifacts import resolve
    return resolve(ctx.artifacts + [_deploy_path(ctx)])


def _deploy_path(ctx: Context) -> Path:
    return ctx.path("model", f"{ctx.checkpoint.stem}-deploy.pth")


def stage_eval(ctx: Context) -> None:
    eval_dir = _eval_data(ctx)
    if eval_dir is None:
        ctx.log("eval: no labelled data (set eval.data); skipped")
        return
    from ..console import progress_bar
    from ..devices.accuracy import evaluate

    limit = ctx.cfg["eval"]["limit"] or None
    records = []
    for ref in _refs(ctx):
        if ref.manifest.get("model", {}).get("family") == "baseline":
            continue   # random weights: accuracy would mean nothing
        key = content_key(sha256_path(ref.artifact), str(eval_dir), limit)
        name = f"eval:{ref.name}"
        out = ctx.path("results", "eval", f"{ref.name}.json")
        done = ctx.step("eval", name, key)
        if done:
            records.append(done["result"])
            ctx.skipped.append(name)
            continue
        bar = progress_bar(desc=f"eval {ref.name}", unit="img")
        if ctx.cfg["eval"].get("ray"):      # same record, computed on a Ray cluster
            from ..cluster.ray_eval import evaluate_on_ray
            [record] = evaluate_on_ray([ref], eval_dir, ctx.cfg["eval"]["ray"], limit,
                                       progress_for=lambda r: bar.update)
        else:
            record = evaluate(ref, eval_dir, limit, progress=bar.update)
        bar.close()
        write_json(out, [record])
        ctx.run.record(name, key, [out], record)
        records.append(record)
    ctx.results["eval"] = records


def stage_bench(ctx: Context) -> None:
    from ..console import progress_bar
    from ..devices.latency import BenchSettings
    from ..remote.fleet import bench_on_devices, resolve_devices

    b = ctx.cfg["bench"]
    refs = _refs(ctx)
    specs = resolve_devices(b["devices"], b["devices_file"] or None)
    key = content_key(sorted(sha256_path(r.artifact) for r in refs), b, [s.__dict__ for s in specs])
    out = ctx.path("results", "bench.json")
    done = ctx.step("bench", "bench", key)
    if done:
        import json
        ctx.results["bench"] = json.loads(out.read_text())
        ctx.skipped.append("bench")
        return
    settings = BenchSettings(threads=b["threads"] or None, warmup=b["warmup"], runs=b["runs"], rounds=b["rounds"])
    bar = progress_bar(total=len(refs) * b["rounds"] * len(specs), desc="bench", unit="run")
    records = bench_on_devices(refs, settings, specs, progress=lambda spec, r, i, ref: bar.update(1))
    bar.close()
    write_json(out, records)
    ctx.results["bench"] = records
    # A device that could not be used at all: report it, keep the others' results, and leave the
    # step unrecorded so that the next run tries again (finished work elsewhere is not redone).
    down = sorted({r["device"]["name"] for r in records if r.get("device_error")})
    for name in down:
        error = next(r["error"] for r in records if r["device"]["name"] == name and not r["ok"])
        ctx.failures.append({"step": f"bench@{name}", "error": error})
    _profile_layers(ctx, refs)
    _measure_peaks(ctx, specs, down)
    if not down:
        ctx.run.record("bench", key, [out, ctx.path("results", "profile.json"), ctx.path("results", "peaks.json")])


def _measure_peaks(ctx: Context, specs, down) -> None:
    """Matmul peaks per runtime and precision on each device, through its runtimes' own kernels
    at the bench's thread count: what the report's "% of peak" divides by (devices/peak.py)."""
    from ..remote.device import open_device
    from .report import peak_record

    records = []
    for spec in specs:
        if spec.name in down:
            continue
        try:
            with closing(open_device(spec)) as device:
                records.append(peak_record(device.peaks(0.5), spec.name))
        except Exception as exc:        # peaks must not cost the bench results (the report says none)
            ctx.log(f"peaks on {spec.name}: {exc}")
    write_json(ctx.path("results", "peaks.json"), records)


def _profile_layers(ctx: Context, refs) -> None:
    """Per-layer profiles (this machine) of every artifact whose runtime has a profiler."""
    from ..devices.profiling import profile
    from ..errors import ProfilingNotOfferedError

    records = []
    for ref in refs:
        try:
            records.append(profile(ref, runs=10, warmup=3))
        except ProfilingNotOfferedError:
            continue
        except Exception as exc:        # a profiler failing must not cost the bench results
            ctx.log(f"profile {ref.name}: {type(exc).__name__}: {exc}")
    write_json(ctx.path("results", "profile.json"), records)


def stage_verdict(ctx: Context) -> None:
    from .verdict import stage_verdict as run  # its own module: full-size models, fair settings
    run(ctx)


def stage_report(ctx: Context) -> None:
    try:
        from .report import build_report
    except ImportError:   # the report module arrives with the harness issue
        ctx.log("report: not available in this version; results are in results/")
        return
    results = ctx.path("results")
    key = content_key(sha256_path(results))
    out = ctx.path("report")
    if ctx.step("report", "report", key):
        ctx.skipped.append("report")
        return
    build_report(results, out)
    ctx.log(f"report: {out / 'report.html'}")
    ctx.run.record("report", key, [out])


RUNNERS = {"data": stage_data, "train": stage_train, "fuse": stage_fuse, "convert": stage_convert,
           "calibrate": stage_calibrate, "eval": stage_eval, "bench": stage_bench, "verdict": stage_verdict,
           "report": stage_report}
