"""Checkpoint -> verified artifacts: the shared path every target goes through.

load (any checkpoint) -> fuse if needed (verified) -> export form (exact rewrites) ->
Converter.export into a private folder -> run it in its runtime against the fused model ->
manifest.json -> publish the folder atomically. Nothing half-written is ever left at OUT.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..calibration.dataset import CalibrationSet
from ..calibration.inputs import input_size_of, preprocessing_of, real_inputs_for
from ..errors import ConversionError, FusionError, VanillaNetEdgeError
from ..fileio import atomic_path, claim_folder, clean_partials, sha256_path, size_bytes, write_json
from ..images import Preprocessing
from ..metrics import finite, within
from ..model.adapool import replace_adaptive_max_pools
from ..model.checkpoint import load_checkpoint
from ..model.fuse import fuse_model, fusion_finite, fusion_ok, verify_fusion
from ..model.labels import labels_for
from ..model.profile import summarize
from .base import PIXELS, PRECISIONS, ConvertRequest
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, environment_versions
from .registry import expand_targets, get_converter, left_out_reason
from .verify import LIMITS, torch_reference, verify_artifact

N_VERIFY = 32   # real images per verification: enough for top-1 agreement, quick on 2 cores


@dataclass
class PreparedModel:
    """Everything every target shares: computed once per convert call.

    Built from a VanillaNet checkpoint by `prepare`, or from any torch classifier (the deep
    baselines) by the caller, so every model goes through the same converters and checks.
    """

    name: str                      # artifact folder stem
    description: str               # one line for the log
    model_meta: dict               # manifest "model" section (variant, classes, params, macs...)
    source: dict                   # manifest "source" section (checkpoint and hash, or library)
    fused: torch.nn.Module
    export_model: torch.nn.Module
    input_size: int
    preprocessing: Preprocessing
    inputs: np.ndarray
    inputs_source: str
    reference: np.ndarray
    stats: dict
    # Random weights (latency-only baselines): near-tied logits make top-1 agreement noise, so
    # verification holds such artifacts to the relative-error limit only.
    random_weights: bool = False


@dataclass
class ConvertOutcome:
    target: str
    precision: str
    ok: bool
    folder: Path | None = None
    manifest: dict = field(default_factory=dict)
    error: str | None = None
    stage: str | None = None


def prepare(checkpoint: str | Path, input_size: int | None = None, data: str | Path | None = None,
            variant: str | None = None, key: str | None = None, allow_inexact: bool = False,
            n_verify: int = N_VERIFY) -> PreparedModel:
    """Load, fuse (verified), rewrite for export and pick the verification images."""
    ckpt = load_checkpoint(checkpoint, variant=variant, key=key)
    size = input_size_of(ckpt, input_size)
    fused = fuse_model(ckpt.model, allow_inexact=allow_inexact)
    real, source = real_inputs_for(ckpt, data, size, limit=n_verify)
    if ckpt.form == "train":
        check = verify_fusion(ckpt.model, fused, size, real_inputs=real)
        if not fusion_finite(check) or (not fusion_ok(check) and not allow_inexact):
            raise FusionError(f"fusion check failed before conversion: {check.random}"
                              + ("" if fusion_finite(check) else " (outputs are not finite numbers)"),
                              hint="check the checkpoint with `vanillanet-edge fuse` first")
    if real is None:
        # No images known: deterministic noise still checks the numerics, and says so.
        gen = torch.Generator().manual_seed(0)
        real = torch.randn(n_verify, 3, size, size, generator=gen)
        source = "random normal inputs (no image folder given: pass --data DIR for real images)"
    inputs = real.numpy().astype(np.float32)
    export_model = replace_adaptive_max_pools(fused, size)
    stats = summarize(fused, size)
    cfg = ckpt.config
    labels, labels_source = labels_for(ckpt.meta.get("class_names"), cfg.num_classes)
    model_meta = {"variant": cfg.name, "width": cfg.width, "num_classes": cfg.num_classes,
                  "class_names": ckpt.meta.get("class_names"), "labels": labels,
                  "labels_source": labels_source, "params": stats["params"],
                  "macs": stats["macs"], "depth": stats["depth"], "family": "vanillanet",
                  "val_top1": ckpt.meta.get("val_top1")}
    origin = {"checkpoint": str(ckpt.path.resolve()), "sha256": ckpt.sha256, "form": ckpt.form,
              "weights_key": ckpt.weights_key}
    return PreparedModel(ckpt.path.stem, ckpt.describe(), model_meta, origin, fused, export_model,
                         size, preprocessing_of(ckpt, size), inputs, source,
                         torch_reference(fused, inputs), stats)


def artifact_name(prep: PreparedModel, target: str, precision: str) -> str:
    return f"{prep.name}-{target}-{precision}"


@dataclass
class EvalSet:
    """Labelled images for the accuracy check: fp32 top-1 is measured once, on the fused net.

    The seeded sample `eval` scores (devices.accuracy.labelled_sample of `data`, `limit`,
    `seed`), decoded in chunks of devices.accuracy.CHUNK records as `eval` decodes them:
    `chunks` holds how many images each chunk kept (unreadable files skipped) and `files` which
    ones, so an artifact is fed the same batches here and on a Ray cluster (cluster/ray_accuracy.py).
    """

    inputs: np.ndarray
    labels: np.ndarray
    source: str
    fp32_top1: float
    data: Path | None = None
    limit: int | None = None
    seed: int = 0
    files: list[str] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)


class BudgetExceeded(ConversionError):
    def __init__(self, message: str, drop: float, top1: float):
        super().__init__(message)
        self.drop, self.top1 = drop, top1


class AccuracyUnavailable(VanillaNetEdgeError):
    """The accuracy measurer itself failed (a Ray cluster gone mid-run): this ends the command,
    as `eval --ray` ends, instead of becoming one more failed conversion."""


# (evaluation, runtime, artifact folder, artifact file, manifest, runner settings) -> {"top1": ...,
# anything else for the manifest's accuracy section}. measure_here runs it here; the api layer
# may pass another (cluster/ray_accuracy.RayAccuracy): converters never import the cluster.
AccuracyMeasurer = Callable[[EvalSet, str, Path, Path, dict, dict], dict]


def load_eval_set(prep: PreparedModel, folder: str | Path, limit: int | None = 500, seed: int = 0) -> EvalSet:
    from ..devices.accuracy import decoded_chunks, labelled_sample
    from ..errors import DataError
    from ..images import describe_skipped

    records = labelled_sample(folder, {"model": prep.model_meta}, limit, seed)
    parts, labels, files, chunks, skipped = [], [], [], [], []
    for _, part in decoded_chunks(records, prep.preprocessing):
        parts.append(part.inputs)
        labels += [] if part.labels is None else part.labels.tolist()
        files += [str(f) for f in part.paths]
        chunks.append(len(part.inputs))
        skipped += part.skipped
    if not files:
        raise DataError(f"none of the {len(records)} images in {folder} could be read:\n"
                        + describe_skipped(skipped), hint="pass --eval-data a folder of images PIL can decode")
    inputs, label_array = np.concatenate(parts), np.asarray(labels, dtype=np.int64)
    logits = torch_reference(prep.fused, inputs)
    return EvalSet(inputs, label_array, f"{len(label_array)} labelled images from {folder}",
                   float((logits.argmax(1) == label_array).mean()), Path(folder), limit, seed, files, chunks)


def measure_here(evaluation: EvalSet, runtime: str, folder: Path, artifact: Path, manifest: dict,
                 settings: dict) -> dict:
    """Top-1 of the artifact on `evaluation`, run here: one run_all per chunk, the batches
    `eval` (and a Ray worker) feeds; top-1 is argmax, as the fp32 reference's."""
    from ..devices.registry import get_runner

    session = get_runner(runtime).load(artifact, manifest, **settings)
    try:
        hits, start = 0, 0
        for n in evaluation.chunks or [len(evaluation.labels)]:
            logits = session.run_all(evaluation.inputs[start:start + n])
            hits += int((logits.argmax(1) == evaluation.labels[start:start + n]).sum())
            start += n
    finally:
        session.close()
    return {"top1": hits / len(evaluation.labels)}


def check_pixels(pixels: str) -> str:
    if pixels not in PIXELS:
        raise VanillaNetEdgeError(f"unknown input convention '{pixels}'",
                                  hint=f"choose --input from {', '.join(PIXELS)}")
    return pixels


def _app_info(prep: PreparedModel, given: dict | None) -> dict:
    """What app-facing metadata says about the model (TFLite's and Core ML's fields)."""
    from .. import __version__

    return {"name": prep.name,
            "description": (f"{prep.model_meta.get('variant', prep.name)} image classifier "
                            f"({prep.model_meta['num_classes']} classes, {prep.input_size}x{prep.input_size} "
                            f"RGB input), converted by vanillanet-edge"),
            "version": f"vanillanet-edge {__version__}", "author": "unknown", "license": "unknown",
            **{k: v for k, v in (given or {}).items() if v}}


def _request(prep: PreparedModel, precision: str, batch: int, options: dict | None,
             calibration: CalibrationSet | None, pixels: str, app_info: dict | None) -> tuple[ConvertRequest, str | None]:
    """The converter's request: for raw pixels the model takes 0-255 RGB (normalization folded
    into the stem, or prepended) and its sample and calibration images are raw too."""
    from dataclasses import replace

    from ..model.normalize import raw_input_model, to_raw

    model, inputs, how = prep.export_model, prep.inputs, None
    mean, std = prep.preprocessing.mean, prep.preprocessing.std
    if check_pixels(pixels) == "raw":
        model, how = raw_input_model(prep.export_model, mean, std)
        inputs = to_raw(prep.inputs, mean, std)
        if calibration is not None:
            calibration = replace(calibration, inputs=to_raw(calibration.inputs, mean, std))
    request = ConvertRequest(model, precision, prep.input_size, batch, prep.preprocessing, inputs,
                             dict(options or {}), calibration if precision == "int8" else None,
                             pixels=pixels,
                             # what a person reads (model/labels.py), else the class folder names
                             class_names=prep.model_meta.get("labels") or prep.model_meta.get("class_names"),
                             app_info=_app_info(prep, app_info))
    return request, how


def _reference_for(prep: PreparedModel, manifest: dict) -> np.ndarray:
    """The fused net's logits on what the artifact really receives: for an integer raw input
    the harness's images rounded to whole pixels (what an app's camera buffer holds)."""
    from ..devices.base import to_artifact_pixels
    from ..model.normalize import from_raw

    spec = manifest["input"]
    if spec.get("pixels") != "raw" or np.dtype(spec["dtype"]).kind not in "iu":
        return prep.reference
    whole = to_artifact_pixels(prep.inputs, manifest)
    return torch_reference(prep.fused, from_raw(whole, prep.preprocessing.mean, prep.preprocessing.std))


def convert_one(prep: PreparedModel, target: str, precision: str, out: Path, batch: int = 1,
                options: dict | None = None, calibration: CalibrationSet | None = None,
                evaluation: EvalSet | None = None, max_drop: float | None = None,
                pixels: str = "normalized", app_info: dict | None = None,
                measure: AccuracyMeasurer | None = None) -> ConvertOutcome:
    """One (target, precision): export, verify, measure, manifest, publish. Errors become outcomes.

    With `evaluation`, top-1 of the artifact is measured against the fp32 net's; with
    `max_drop` (points) too, an artifact losing more is not published (BudgetExceeded).
    `measure` runs the artifact over `evaluation` (default measure_here; the api layer passes
    a Ray cluster's, same numbers); a measurer's own failure (AccuracyUnavailable) is raised.
    `pixels` ("normalized" | "raw", see ConvertRequest) is what the artifact's input takes;
    verification always feeds the harness's normalized images through the runner, which
    converts them (devices/base.to_artifact_pixels).
    """
    stage = "setup"
    try:
        converter = get_converter(target)
        if precision not in converter.precisions:
            # A target that cannot do int8 at all says why (its int8_methods_note).
            why = converter.int8_methods_note if precision == "int8" else ""
            raise VanillaNetEdgeError(
                f"{target} does not support {precision}" + (f": {why}" if why else " yet"),
                hint=f"{target} supports: {', '.join(converter.precisions)}")
        if precision == "int8":
            calibration = converter.for_target(calibration)
            converter.check_int8_request(calibration)
        converter.check_available()
        final = out / artifact_name(prep, target, precision)
        request, normalization = _request(prep, precision, batch, options, calibration, pixels, app_info)
        with atomic_path(final, is_dir=True) as tmp:
            stage = "export"
            start = time.perf_counter()
            result = converter.export(request, tmp)
            seconds = time.perf_counter() - start
            artifact = tmp / result.artifact
            manifest = _manifest(prep, converter, request, result, artifact, seconds, normalization)
            stage = "verify"
            settings = converter.verify_settings(request)
            # Under an accuracy budget a failed check is one more reason to keep layers in
            # float, so the budget loop decides; otherwise it ends the conversion here.
            budgeted = max_drop is not None and evaluation is not None
            manifest["verification"] = {
                "inputs": f"{len(prep.inputs)} {prep.inputs_source}",
                **verify_artifact(converter.runtime, artifact, manifest, prep.inputs,
                                  _reference_for(prep, manifest), precision, raise_on_fail=not budgeted,
                                  require_agreement=not prep.random_weights, **settings),
            }
            if evaluation is not None:
                stage = "accuracy"
                manifest["accuracy"] = _measure_accuracy(measure or measure_here, converter.runtime, tmp,
                                                         artifact, manifest, evaluation, settings)
                drop = manifest["accuracy"]["drop_points"]
                if max_drop is not None:
                    manifest["accuracy"]["budget_points"] = max_drop
                    manifest["accuracy"]["kept_in_float"] = list(request.calibration.excluded_layers
                                                                 if request.calibration else ())
                passed = manifest["verification"]["passed"]
                if max_drop is not None and (not within(drop, max_drop) or not passed):
                    why = "" if passed else " and fails verification"
                    rank = drop if finite(drop) else float("inf")     # how the budget loop orders tries
                    raise BudgetExceeded(
                        f"{target} {precision} loses {drop:.2f} points of top-1 "
                        f"(fp32 {100 * evaluation.fp32_top1:.2f}% -> "
                        f"{100 * manifest['accuracy']['top1']:.2f}%){why}, over the {max_drop:g}-point budget",
                        rank if passed else max(rank, max_drop + 1e-9), manifest["accuracy"]["top1"])
            stage = "manifest"
            write_json(tmp / MANIFEST_NAME, manifest)
        return ConvertOutcome(target, precision, True, final, manifest)
    except (BudgetExceeded, AccuracyUnavailable):
        raise
    except VanillaNetEdgeError as exc:
        return ConvertOutcome(target, precision, False, error=str(exc), stage=stage)
    except Exception as exc:  # a toolchain raised: keep its message and say where
        msg = f"{target} {precision} failed during {stage}: {type(exc).__name__}: {exc}"
        return ConvertOutcome(target, precision, False, error=str(ConversionError(msg)), stage=stage)


def _measure_accuracy(measure: AccuracyMeasurer, runtime: str, folder: Path, artifact: Path, manifest: dict,
                      evaluation: EvalSet, settings: dict) -> dict:
    measured = measure(evaluation, runtime, folder, artifact, manifest, settings)
    top1 = measured.pop("top1")
    return {"data": evaluation.source, "fp32_top1": evaluation.fp32_top1, "top1": top1,
            "drop_points": round(100 * (evaluation.fp32_top1 - top1), 4), **measured}


def _input_section(request: ConvertRequest, result, shape: list, normalization: str | None) -> dict:
    section = {"name": result.input_name, "shape": shape, "layout": result.layout,
               "dtype": result.input_dtype or result.io_dtype, "color": "RGB", "pixels": request.pixels}
    if request.pixels == "raw":
        p = request.preprocessing
        section["app_must"] = (f"RGB pixel values 0-255 ({section['dtype']}, {result.layout}); resize the "
                               f"shorter side to {p.resize} ({p.interpolation}) and centre-crop "
                               f"{p.crop}x{p.crop}; no normalization (mean/std are inside the model)")
        section["normalization"] = normalization
    return section


def _manifest(prep: PreparedModel, converter, request: ConvertRequest, result, artifact: Path,
              seconds: float, normalization: str | None = None) -> dict:
    b, s = request.batch, request.input_size
    shape = [b, s, s, 3] if result.layout == "NHWC" else [b, 3, s, s]
    return {
        "schema_version": SCHEMA_VERSION,
        "target": converter.target,
        "precision": request.precision,
        "runtime": converter.runtime,
        "artifact": _describe_files(artifact.parent, result.artifact),
        "model": prep.model_meta,
        "source": prep.source,
        "input": _input_section(request, result, shape, normalization),
        "output": {"name": result.output_name, "shape": [b, prep.model_meta["num_classes"]],
                   "dtype": result.io_dtype,
                   # a classifier artifact (Core ML's, softmax inside) says so in its notes
                   "meaning": ("probabilities (softmax inside the model)"
                               if result.notes.get("output_meaning") == "probabilities"
                               else "logits (apply softmax for probabilities)")},
        "preprocessing": prep.preprocessing.as_dict(),
        "tools": {**environment_versions(), **converter.library_versions()},
        "conversion": {"seconds": round(seconds, 3),
                       "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "options": request.options, **result.notes},
        **({"calibration": request.calibration.describe(), "int8": result.int8}
           if request.calibration is not None else {}),
        "verification": {},
    }


def _describe_files(folder: Path, main: str) -> dict:
    """The main artifact plus every companion file (OpenVINO's .bin), each hashed and sized."""
    files = {p.name: {"sha256": sha256_path(p), "size_bytes": size_bytes(p)}
             for p in sorted(folder.iterdir()) if p.name != MANIFEST_NAME}
    return {"file": main, "sha256": files[main]["sha256"],
            "size_bytes": sum(f["size_bytes"] for f in files.values()), "files": files}


@dataclass
class Int8Options:
    """How to calibrate INT8 and, optionally, the accuracy budget it must meet."""

    calib_data: str | Path
    samples: int = 128
    method: str = "minmax"
    seed: int = 0
    max_drop: float | None = None       # top-1 points; needs eval_data
    eval_data: str | Path | None = None
    eval_limit: int | None = 500


def convert_checkpoint(checkpoint: str | Path, targets, precisions, out: str | Path,
                       input_size: int | None = None, batch: int = 1, data: str | Path | None = None,
                       variant: str | None = None, key: str | None = None,
                       allow_inexact: bool = False, options: dict | None = None,
                       int8: Int8Options | None = None, eval_data: str | Path | None = None,
                       log: Callable[[str], None] = lambda m: None, pixels: str | None = None,
                       app_info: dict | None = None,
                       measure: AccuracyMeasurer | None = None) -> list[ConvertOutcome]:
    """Convert one checkpoint to every (target, precision); one failure does not stop the rest.

    `pixels` ("raw" | "normalized") is what every artifact's input takes; None = each target's
    own default (Converter.default_pixels: raw where apps feed camera pixels, e.g. LiteRT).
    `app_info` (author, license, description...) goes into app-facing metadata.

    `eval_data` (an ImageFolder) adds a top-1 measurement to every artifact's manifest;
    `int8.eval_data` does the same and is required for `int8.max_drop`. `measure` measures
    each artifact's top-1 on those images (default measure_here; see AccuracyMeasurer).
    """
    names = expand_targets(targets)
    grid = any(part.strip() == "all" for t in ([targets] if isinstance(targets, str) else targets)
               for part in t.split(","))
    precisions = [precisions] if isinstance(precisions, str) else list(precisions)
    for p in precisions:
        if p not in PRECISIONS:
            raise VanillaNetEdgeError(f"unknown precision '{p}'", hint=f"choose from {', '.join(PRECISIONS)}")
    if batch < 1:
        raise VanillaNetEdgeError(f"batch must be at least 1, got {batch}")
    if "int8" in precisions and int8 is None:
        raise VanillaNetEdgeError("int8 needs calibration images", hint="pass --calib-data DIR")
    eval_data = eval_data or (int8.eval_data if int8 else None)
    if int8 and int8.max_drop is not None and eval_data is None:
        raise VanillaNetEdgeError("--max-drop needs labelled images to measure top-1",
                                  hint="pass --eval-data DIR (an ImageFolder with one sub-folder per class)")
    # What each target's input takes, and whether its app-facing extras are installed: refused
    # here, before minutes of work, with the extra to install (the CLI exits 2).
    chosen = {}
    for target in names:
        converter = get_converter(target)
        chosen[target] = check_pixels(pixels or converter.default_pixels)
        converter.check_app_request(chosen[target], dict(options or {}))
    # Ours before minutes of work: a folder we did not make, or a file, is refused here.
    out = claim_folder(out, "output folder")
    log(f"loading {checkpoint}")
    prep = prepare(checkpoint, input_size, data, variant, key, allow_inexact)
    log(f"{prep.description}; input {prep.input_size}x{prep.input_size}, "
        f"verifying on {len(prep.inputs)} {prep.inputs_source}")
    calibration = evaluation = None
    if int8 and "int8" in precisions:
        from ..calibration.dataset import load_calibration
        calibration = load_calibration(int8.calib_data, prep.preprocessing, int8.samples, int8.seed, int8.method)
        log(f"calibration: {len(calibration.inputs)} images from {int8.calib_data} "
            f"({len(calibration.skipped)} unreadable skipped), method {int8.method}, seed {int8.seed}")
    if eval_data is not None:
        evaluation = load_eval_set(prep, eval_data, int8.eval_limit if int8 else 500)
        log(f"accuracy: {evaluation.source}; fp32 top-1 {100 * evaluation.fp32_top1:.2f}%")
    clean_partials(out)
    outcomes = []
    for target in names:
        for precision in precisions:
            why = left_out_reason(target, precision) if grid else None
            if why:
                # `--target all` is a grid: a pair the target does not offer is left out and said
                # (a target named on its own still fails loudly, in convert_one).
                log(f"{target} {precision}: left out: {why}")
                continue
            log(f"{target} {precision}: converting")
            if precision == "int8" and int8.max_drop is not None:
                outcome = convert_int8_within_budget(prep, target, out, batch, options, calibration,
                                                     evaluation, int8.max_drop, log, chosen[target], app_info,
                                                     measure)
            else:
                outcome = convert_one(prep, target, precision, out, batch, options,
                                      calibration if precision == "int8" else None, evaluation,
                                      pixels=chosen[target], app_info=app_info, measure=measure)
            outcomes.append(outcome)
            if outcome.ok:
                v = outcome.manifest["verification"]
                acc = outcome.manifest.get("accuracy")
                log(f"{target} {precision}: ok, {outcome.folder} (rel err {v['rel_err']:.2g}, "
                    f"top-1 agreement {100 * v['top1_agree']:.1f}%"
                    + (f", top-1 {100 * acc['top1']:.2f}% vs fp32 {100 * acc['fp32_top1']:.2f}%" if acc else "")
                    + ")")
            else:
                log(f"{target} {precision}: FAILED at {outcome.stage}: {outcome.error}")
    return outcomes


def convert_int8_within_budget(prep: PreparedModel, target: str, out: Path, batch: int,
                               options: dict | None, calibration: CalibrationSet,
                               evaluation: EvalSet, max_drop: float,
                               log: Callable[[str], None], pixels: str = "normalized",
                               app_info: dict | None = None,
                               measure: AccuracyMeasurer | None = None) -> ConvertOutcome:
    """NNCF's accuracy-control idea for every target: while INT8 loses more than `max_drop`
    points, keep the next most sensitive layer in float and try again."""
    from ..calibration.sensitivity import sensitivity_ranking

    excluded: list[str] = []
    ranking: list[str] | None = None
    best: tuple[float, list[str]] | None = None
    while True:
        try:
            outcome = convert_one(prep, target, "int8", out, batch, options,
                                  calibration.with_excluded(excluded), evaluation, max_drop,
                                  pixels=pixels, app_info=app_info, measure=measure)
        except BudgetExceeded as exc:
            if best is None or exc.drop < best[0]:
                best = (exc.drop, list(excluded))
            if not get_converter(target).excludes_layers:
                return ConvertOutcome(target, "int8", False, error=f"{exc} ({target} cannot keep layers "
                                      "in float, so the budget cannot be met)", stage="accuracy")
            if ranking is None:
                ranking = sensitivity_ranking(prep.fused, calibration.inputs)
                log(f"{target} int8: sensitivity ranking {', '.join(ranking)}")
            remaining = [layer for layer in ranking if layer not in excluded]
            if not remaining:
                return ConvertOutcome(
                    target, "int8", False, stage="accuracy",
                    error=f"no configuration meets the {max_drop:g}-point budget; the best lost "
                          f"{best[0]:.2f} points with {best[1] or 'no layers'} in float")
            excluded.append(remaining[0])
            log(f"{target} int8: {exc}; keeping {remaining[0]} in float and retrying")
            continue
        return outcome


__all__ = ["convert_checkpoint", "prepare", "convert_one", "measure_here", "AccuracyMeasurer", "Int8Options",
           "convert_int8_within_budget", "ConvertOutcome", "PreparedModel", "LIMITS"]
