"""The model-side steps as functions: digits data, training, fusion, conversion, calibration,
model facts. The pipeline's stages call them; api.py (the public façade) re-exports them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import limits as L
from .calibration.digits import write_digits
from .calibration.inputs import input_size_of, preprocessing_of, real_inputs_for
from .converters.convert import ConvertOutcome, Int8Options, convert_checkpoint
from .errors import FusionError, VanillaNetEdgeError
from .fileio import claim_folder, write_json
from .images import Preprocessing, skipped_record
from .model.checkpoint import load_checkpoint, save_checkpoint
from .model.fuse import FUSION_REL_TOL, FusionCheck, fuse_model, fusion_finite, fusion_ok, verify_fusion
from .model.profile import summarize
from .model.train import TrainConfig, train
from .model.variants import PUBLISHED, VARIANTS, create_model, variant_config


def make_digits(out: str | Path, size: int = 32, seed: int = 0) -> dict:
    """Write scikit-learn's bundled digits as train/ and val/ ImageFolders of RGB PNGs."""
    L.check("size", size, L.IMAGE_SIZE)
    L.check("seed", seed, L.SEED)
    return write_digits(out, size=size, seed=seed)


def train_model(data: str | Path, out: str | Path, config: TrainConfig | None = None,
                input_size: int = 32, progress: bool = True) -> dict:
    """Deep-train a VanillaNet on an ImageFolder with train/ and val/; write its checkpoint.

    Images are resized (shorter side) and centre-cropped to `input_size`, then normalised with
    ImageNet statistics; the checkpoint records this so every later step feeds the same input.
    """
    cfg = config or TrainConfig()
    for name, rng in (("width", L.WIDTH), ("epochs", L.EPOCHS), ("decay_epochs", L.DECAY_EPOCHS),
                      ("batch_size", L.TRAIN_BATCH), ("lr", L.LR), ("seed", L.SEED), ("threads", L.THREADS)):
        L.check(name, getattr(cfg, name), rng)
    L.check("input_size", input_size, L.INPUT_SIZE)
    create_model(cfg.variant, cfg.width).config.check_input_size(input_size)
    return train(data, out, cfg, Preprocessing(resize=input_size, crop=input_size), progress=progress)


@dataclass
class FuseResult:
    checkpoint: Path
    report_path: Path
    report: dict
    check: FusionCheck


def fuse_checkpoint(ckpt_path: str | Path, out: str | Path, data: str | Path | None = None,
                    allow_inexact: bool = False, variant: str | None = None,
                    key: str | None = None, input_size: int | None = None) -> FuseResult:
    """Load, fuse, verify against the unfused net, write the deploy checkpoint and a report."""
    L.check("input_size", input_size, L.INPUT_SIZE)
    ckpt = load_checkpoint(ckpt_path, variant=variant, key=key)
    size = input_size_of(ckpt, input_size)
    fused = fuse_model(ckpt.model, allow_inexact=allow_inexact)
    skipped = []
    real, real_source = real_inputs_for(ckpt, data, size, skipped=skipped)
    check = verify_fusion(ckpt.model, fused, size, real_inputs=real)
    exact = ckpt.model.act_learn == 1.0 or ckpt.form == "deploy"
    if not fusion_finite(check):       # never allowed, inexact or not: NaN passes no limit
        raise FusionError(f"the nets' outputs are not finite numbers ({check.random}); nothing was written",
                          hint="the weights overflow float32 on these inputs: check the checkpoint")
    if not fusion_ok(check) and not (allow_inexact and not exact):
        raise FusionError(f"fused net differs from the unfused one: relative error {check.worst_rel_err:.3g} "
                          f"> {FUSION_REL_TOL:g}; nothing was written",
                          hint="this should not happen for an exact fusion: please report it")
    out = Path(out)
    meta = {k: v for k, v in ckpt.meta.items() if k not in {"form", "act_learn"}}
    meta.update({"input_size": size, "preprocessing": preprocessing_of(ckpt, size).as_dict(),
                 "fused_from": str(ckpt.path), "fused_from_sha256": ckpt.sha256})
    save_checkpoint(fused, out, meta=meta)
    report = {
        "source": str(ckpt.path), "source_sha256": ckpt.sha256, "source_form": ckpt.form,
        "weights_key": ckpt.weights_key, "variant": ckpt.config.name, "width": ckpt.config.width,
        "variant_source": ckpt.variant_source, "act_learn": ckpt.model.act_learn,
        "exact": exact, "tolerance_rel": FUSION_REL_TOL, "input_size": size,
        "real_inputs_from": real_source, **skipped_record(skipped), **check.as_dict(),
        "params_train": sum(p.numel() for p in ckpt.model.parameters()),
        "params_deploy": sum(p.numel() for p in fused.parameters()),
        "output": str(out),
    }
    report_path = out.with_suffix(out.suffix + ".json")
    write_json(report_path, report)
    return FuseResult(out, report_path, report, check)


def convert(checkpoint: str | Path, targets, precisions=("fp32",), out: str | Path = "artifacts",
            input_size: int | None = None, batch: int = 1, data: str | Path | None = None,
            variant: str | None = None, key: str | None = None, allow_inexact: bool = False,
            int8: Int8Options | None = None, eval_data: str | Path | None = None,
            log=None, pixels: str | None = None, app_info: dict | None = None,
            options: dict | None = None, ray: str | None = None) -> list[ConvertOutcome]:
    """Convert a checkpoint to every (target, precision); see converters/convert.py.
    `pixels`: "raw" | "normalized" input for every artifact (None: each target's default).
    `ray` (auto | HOST:PORT | local): measure top-1 on the eval data (every candidate of the
    max-drop loop) on that Ray cluster, connected once for the whole call
    (cluster/ray_accuracy.py); everything else runs here.

    Returns one ConvertOutcome per artifact; failures are outcomes (ok=False, error, stage),
    so one missing backend does not hide the others' results.
    """
    from contextlib import ExitStack

    L.check("input_size", input_size, L.INPUT_SIZE)
    L.check("batch", batch, L.BATCH)
    if int8 is not None:
        L.check("samples", int8.samples, L.SAMPLES)
        L.check("seed", int8.seed, L.SEED)
        L.check("max_drop", int8.max_drop, L.MAX_DROP)
        L.check("eval_limit", int8.eval_limit, L.LIMIT)
    measure = None
    with ExitStack() as stack:
        if ray:
            if eval_data is None and (int8 is None or int8.eval_data is None):
                raise VanillaNetEdgeError("--ray measures top-1 on a Ray cluster, so it needs labelled "
                                          "images to measure on", hint="pass --eval-data DIR (with --max-drop "
                                          "for the accuracy budget); export and verification always run here")
            from .cluster.ray_accuracy import RayAccuracy
            measure = stack.enter_context(RayAccuracy(ray))
        return convert_checkpoint(checkpoint, targets, precisions, out, input_size=input_size,
                                  batch=batch, data=data, variant=variant, key=key,
                                  allow_inexact=allow_inexact, int8=int8, eval_data=eval_data,
                                  log=log or (lambda m: None), pixels=pixels, app_info=app_info,
                                  options=options, measure=measure)


def calibrate(checkpoint: str | Path, data: str | Path, out: str | Path, samples: int = 128,
              seed: int = 0, input_size: int | None = None, variant: str | None = None,
              key: str | None = None, progress=None, ray: str | None = None) -> dict:
    """Per-layer activation statistics and INT8 sensitivity; writes calibration.json and a plot.

    The per-layer statistics (ranges, mean/std, percentiles, histogram of each layer's input)
    are cluster/stats.py's shard statistics, merged exactly: on the Ray cluster at `ray` (auto |
    HOST:PORT | local), else here; the numbers are the same either way. The sensitivity pass
    runs here."""
    from .calibration.dataset import load_calibration
    from .calibration.report import calibration_report
    from .cluster.stats import DEFAULT_BINS, REPORT_BINS, calibration_statistics, report_layers

    L.check("samples", samples, L.SAMPLES)
    L.check("seed", seed, L.SEED)
    L.check("input_size", input_size, L.INPUT_SIZE)
    ckpt = load_checkpoint(checkpoint, variant=variant, key=key)
    size = input_size_of(ckpt, input_size)
    fused = fuse_model(ckpt.model)
    calib = load_calibration(data, preprocessing_of(ckpt, size), samples, seed)
    claim_folder(out, "calibration folder")     # before the long work: a folder not ours is refused
    stats = calibration_statistics(ckpt.path, data, samples, seed, address=ray, input_size=input_size,
                                   variant=variant, key=key)
    if stats.images != len(calib.inputs):
        raise VanillaNetEdgeError(f"the statistics saw {stats.images} images of {data}, the sensitivity "
                                  f"pass {len(calib.inputs)}", hint="give --data a path every node "
                                  "sees with the same files" if ray else None)
    statistics = {"where": f"Ray cluster at {ray}" if ray else "here", "images": stats.images,
                  "of": "each quantizable layer's input, as its int8 kernel sees it (relu(x) for an activation's conv)",
                  "method": (f"per-shard ranges, exact sums and counts over {DEFAULT_BINS} shared bins, merged "
                             f"exactly (cluster/stats.py); percentiles read off those bins (to one bin, "
                             f"(max-min)/{DEFAULT_BINS}); histogram: {REPORT_BINS} bins, the shared ones summed")}
    title = f"INT8 sensitivity of {ckpt.config.name} (width {ckpt.config.width:g}), {len(calib.inputs)} images"
    return calibration_report(fused, calib, Path(out), title, progress=progress, stats=report_layers(stats),
                              statistics=statistics)


def model_info(target: str, input_size: int | None = None, width: float = 1.0,
               num_classes: int | None = None) -> dict:
    """Parameters (both forms), MACs, depth and a per-layer table for a variant name or a file."""
    L.check("input_size", input_size, L.INPUT_SIZE)
    L.check("width", width, L.WIDTH)
    L.check("num_classes", num_classes, L.NUM_CLASSES)
    if target in VARIANTS:
        classes = num_classes or 1000
        train_form = create_model(target, width, classes)
        deploy_form = create_model(target, width, classes, deploy=True)
        size = input_size or 224
        source = {"variant": target}
    else:
        if not Path(target).exists() and target.startswith("vanillanet"):
            variant_config(target)   # raises "unknown variant" listing the official names
        ckpt = load_checkpoint(target)
        size = input_size_of(ckpt, input_size)
        deploy_form = fuse_model(ckpt.model, allow_inexact=True)
        train_form = ckpt.model if ckpt.form == "train" else None
        source = {"checkpoint": str(ckpt.path), "form": ckpt.form, "weights_key": ckpt.weights_key}
    deploy_form.config.check_input_size(size)
    info = summarize(deploy_form, size)
    info["params_deploy"] = info.pop("params")
    info["params_train"] = sum(p.numel() for p in train_form.parameters()) if train_form else None
    info["published"] = PUBLISHED.get(deploy_form.config.name) if deploy_form.config.width == 1 else None
    info.update(source)
    return info
