"""`data`, `train`, `fuse`, `convert`, `calibrate` and `info`: the model's side of the command line."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api, limits
from ..fileio import json_text
from ..model.train import TrainConfig
from ..model.variants import VARIANTS
from .options import OUT_FILE, OUT_FOLDER, echo_skipped, force_option, number, refuse_existing

VARIANT_CHOICE = click.Choice(list(VARIANTS))


@click.group()
def data():
    """Write built-in data sets (no download needed)."""


@data.command("digits")
@click.argument("out", type=OUT_FOLDER)
@click.option("--size", type=number(limits.IMAGE_SIZE), default=32, show_default=True,
              help="Side of the written PNGs in pixels.")
@click.option("--seed", type=number(limits.SEED), default=0, show_default=True, help="Seed of the train/val split.")
def data_digits(out, size, seed):
    """Write scikit-learn's 1,797 handwritten digits as OUT/train and OUT/val ImageFolders."""
    info = api.make_digits(out, size=size, seed=seed)
    click.echo(f"wrote {info['train']} train and {info['val']} val images ({size}x{size} RGB PNG) to {out}")


@click.command("train")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with train/ and val/ ImageFolders (e.g. from `data digits`).")
@click.option("--out", required=True, type=OUT_FILE, help="Checkpoint to write (.pth).")
@click.option("--variant", type=VARIANT_CHOICE, default="vanillanet_5", show_default=True)
@click.option("--width", type=number(limits.WIDTH), default=1 / 32, show_default=True,
              help="Channel multiplier; 1 is the official size, 1/32 trains in seconds on 2 cores.")
@click.option("--epochs", type=number(limits.EPOCHS), default=30, show_default=True)
@click.option("--decay-epochs", type=number(limits.DECAY_EPOCHS), default=None,
              help="Epochs over which act_learn rises from 0 to 1 (default: half of --epochs).")
@click.option("--batch-size", type=number(limits.TRAIN_BATCH), default=64, show_default=True)
@click.option("--lr", type=number(limits.LR), default=4e-3, show_default=True)
@click.option("--input-size", type=number(limits.INPUT_SIZE), default=32, show_default=True)
@click.option("--seed", type=number(limits.SEED), default=0, show_default=True)
@force_option("OUT")
def train_cmd(data_dir, out, variant, width, epochs, decay_epochs, batch_size, lr, input_size, seed, force):
    """Deep-train a VanillaNet with the paper's act_learn schedule.

    act_learn is annealed from 0 (ReLU) to 1 (identity) over --decay-epochs, then held at 1,
    so the result can be fused exactly. The checkpoint uses the official training-form layout.
    """
    refuse_existing(force, out)
    cfg = TrainConfig(variant=variant, width=width, epochs=epochs,
                      decay_epochs=epochs // 2 if decay_epochs is None else decay_epochs,
                      batch_size=batch_size, lr=lr, seed=seed)
    result = api.train_model(data_dir, out, cfg, input_size=input_size)
    click.echo(f"val top-1 {100 * result['val_top1']:.2f}% after {epochs} epochs "
               f"({result['seconds']:.0f} s); act_learn {result['act_learn']:g}; wrote {out}")


@click.command("fuse")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=OUT_FILE, help="Deploy-form checkpoint to write (and OUT.json).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Images to verify on (default: the val split the net was trained on, if known).")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help="Check the file against this variant.")
@click.option("--key", default=None, help="Entry of the checkpoint dict holding the weights "
                                          "(default: model_ema, then model, then state_dict).")
@click.option("--input-size", type=number(limits.INPUT_SIZE), default=None,
              help="Verification input size (default: recorded, else 224).")
@click.option("--allow-inexact", is_flag=True,
              help="Fuse even when act_learn < 1 (not exact); the report shows the error it causes.")
@force_option("OUT and OUT.json")
def fuse_cmd(checkpoint, out, data_dir, variant, key, input_size, allow_inexact, force):
    """Apply the deploy switch: fold every BN, merge the paired 1x1 convs, verify.

    Writes OUT in the authors' deploy layout ({'model': state_dict}) and OUT.json with the
    verification: max abs error, relative error and top-1 agreement against the unfused net.
    """
    refuse_existing(force, out, out.with_suffix(out.suffix + ".json"))
    r = api.fuse_checkpoint(checkpoint, out, data=data_dir, allow_inexact=allow_inexact,
                            variant=variant, key=key, input_size=input_size)
    rep = r.report
    click.echo(f"loaded {rep['variant']} width {rep['width']:g} ({rep['source_form']} form, "
               f"weights from {rep['weights_key'] or 'bare state_dict'}; {rep['variant_source']})")
    click.echo(f"params {rep['params_train']:,} -> {rep['params_deploy']:,} after fusion")
    click.echo(f"random inputs: {r.check.random}")
    click.echo(f"real inputs:   {r.check.real if r.check.real else rep['real_inputs_from']}")
    echo_skipped(rep)
    if not rep["exact"]:
        click.secho(f"INEXACT fusion at act_learn {rep['act_learn']:g}: outputs differ as shown", fg="yellow")
    click.echo(f"wrote {r.checkpoint} and {r.report_path}")


def _targets_help() -> str:
    from ..converters.registry import get_converter, target_names
    rows = []
    for name in target_names():
        try:
            c = get_converter(name)
            int8 = (f"int8 methods: {', '.join(c.int8_methods)} (auto: {c.default_int8_method}); --max-drop: "
                    f"{'yes' if c.excludes_layers else 'no'}") if "int8" in c.precisions else (
                       f"no int8 ({c.int8_methods_note})" if c.int8_methods_note else "no int8 yet")
            rows.append(f"  {name:<9} {c.description}\n"
                        f"            [{', '.join(c.precisions)}; {int8}; extra: {c.extra}]")
        except Exception as exc:  # a broken install must not break --help
            rows.append(f"  {name:<9} (unavailable: {exc})")
    return "\n".join(rows)


class TargetListCommand(click.Command):
    """Appends the live target table to the help text, built only when help is shown."""

    def format_help_text(self, ctx, formatter):
        super().format_help_text(ctx, formatter)
        with formatter.section("Targets"):
            formatter.write_text("\b\n" + _targets_help() + "\n  all       every target above")


@click.command("convert", cls=TargetListCommand)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--target", "targets", multiple=True, required=True,
              help="onnx, openvino, tflite, coreml or all; repeat or comma-separate for several.")
@click.option("--precision", "precisions", multiple=True, default=("fp32",), show_default=True,
              type=click.Choice(["fp32", "fp16", "int8"]), help="Repeat for several.")
@click.option("--out", required=True, type=OUT_FOLDER, help="Folder for the artifacts.")
@click.option("--input-size", type=number(limits.INPUT_SIZE), default=None,
              help="Default: recorded in the checkpoint, else 224.")
@click.option("--batch", type=number(limits.BATCH), default=1, show_default=True,
              help="Fixed batch size of the artifact.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Images to verify on (default: the val split the net was trained on, if known).")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help="Check the file against this variant.")
@click.option("--key", default=None, help="Entry of the checkpoint dict holding the weights.")
@click.option("--allow-inexact", is_flag=True, help="Fuse even when act_learn < 1 (not exact).")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None,
              help="INT8: folder of real images (ImageFolder or flat) to calibrate on.")
@click.option("--calib-samples", type=number(limits.SAMPLES), default=128, show_default=True,
              help="INT8: images to sample.")
@click.option("--calib-method", default="auto", show_default=True,
              help="INT8: range method; auto = each target's own default (listed below with the "
                   "methods each target supports).")
@click.option("--seed", type=number(limits.SEED), default=0, show_default=True, help="INT8: sampling seed.")
@click.option("--max-drop", type=number(limits.MAX_DROP), default=None,
              help="INT8: top-1 points the artifact may lose against fp32 (needs --eval-data); the "
                   "most sensitive layers are kept in float, one at a time, until it fits.")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="Labelled ImageFolder: record top-1 of every artifact against the fp32 net.")
@click.option("--input", "pixels", type=click.Choice(["raw", "normalized"]), default=None,
              help="What the artifact's input takes: raw = RGB 0-255 pixels, ImageNet mean/std inside "
                   "the model (folded into VanillaNet's stem: exact, free); normalized = the net's own "
                   "input. Default per target: raw for tflite and coreml, normalized for the others.")
@click.option("--no-metadata", is_flag=True,
              help="tflite raw: skip the TFLite metadata (labels, normalization; needs the mediapipe extra).")
@click.option("--author", default=None, help="Author written into app-facing metadata (default unknown).")
@click.option("--license", "license_", default=None, help="License written into app-facing metadata.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Measure top-1 on --eval-data (each artifact's, and every candidate of the --max-drop "
                   "loop) on a Ray cluster (the `ray` extra): auto, HOST:PORT (its GCS) or local (start one "
                   "here). Same images, preprocessing and runtime settings as here, so the same numbers; "
                   "--eval-data must be a path every node sees. Export, verification, the sensitivity "
                   "ranking and the fp32 top-1 run here; latency never runs on the cluster.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
def convert_cmd(checkpoint, targets, precisions, out, input_size, batch, data_dir, variant, key,
                allow_inexact, calib_data, calib_samples, calib_method, seed, max_drop, eval_data,
                pixels, no_metadata, author, license_, ray_address, as_json):
    """Convert a checkpoint to verified edge artifacts.

    \b
    CHECKPOINT may be training form (it is fused first, and the fusion verified) or deploy form.
    Each (target, precision) is written to OUT/<checkpoint>-<target>-<precision>/ with
    manifest.json, after running the artifact in its own runtime against the fused PyTorch
    model on real images (--data, or the val split the net was trained on).
    Limits: fp32 rel err <= 1e-4, fp16 <= 1e-2, int8 <= 0.25 (and top-1 agreement >= 99%,
    95%, 90%). A failed conversion leaves nothing at its output path; the exit code is 1 if
    any failed.

    \b
    INT8 uses each toolchain's own static quantizer (ONNX Runtime QDQ, NNCF, litert-torch
    PT2E, coremltools W8A8 with ranges we collect ourselves), calibrated on --calib-data
    preprocessed exactly as at evaluation. The manifest records the method, samples, seed,
    a hash of the file list, the layers kept in float and how many convs run in int8.

    \b
    Examples:
      vanillanet-edge convert tiny.pth --target all --out artifacts
      vanillanet-edge convert vanillanet_5.pth --target onnx --precision fp16 --data imagenet/val --out a
      vanillanet-edge convert tiny.pth --target openvino --precision int8 --calib-data data/train \\
          --eval-data data/val --max-drop 1.0 --out a
    """
    if ray_address and eval_data is None:
        raise click.UsageError("--ray measures top-1 on a Ray cluster: it needs --eval-data DIR (labelled "
                               "images every node sees), usually with --max-drop")
    int8 = None
    if "int8" in precisions or calib_data is not None:
        if calib_data is None:
            raise click.UsageError("--precision int8 needs --calib-data DIR (real images to calibrate on)")
        int8 = api.Int8Options(calib_data, calib_samples, calib_method, seed, max_drop, eval_data)
    outcomes = api.convert(checkpoint, list(targets), list(precisions), out, input_size=input_size,
                           batch=batch, data=data_dir, variant=variant, key=key,
                           allow_inexact=allow_inexact, int8=int8, eval_data=eval_data,
                           log=None if as_json else click.echo, pixels=pixels,
                           app_info={"author": author, "license": license_},
                           options={"metadata": False} if no_metadata else None, ray=ray_address)
    if as_json:
        click.echo(json_text([{"target": o.target, "precision": o.precision, "ok": o.ok,
                                "folder": str(o.folder) if o.folder else None, "error": o.error,
                                "stage": o.stage, "verification": o.manifest.get("verification")}
                               for o in outcomes], indent=2))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        if not as_json:
            click.secho(f"{len(failed)} of {len(outcomes)} conversions failed:", fg="red", err=True)
            for o in failed:
                click.secho(f"  {o.target} {o.precision}: {o.error}", fg="red", err=True)
        sys.exit(1)


def _advance(bar, total: int) -> None:
    bar.total = total
    bar.update(1)


@click.command("calibrate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of real images (ImageFolder or flat).")
@click.option("--out", required=True, type=OUT_FOLDER, help="Folder for the report.")
@click.option("--samples", type=number(limits.SAMPLES), default=128, show_default=True)
@click.option("--seed", type=number(limits.SEED), default=0, show_default=True)
@click.option("--input-size", type=number(limits.INPUT_SIZE), default=None)
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Compute the per-layer statistics on a Ray cluster (the `ray` extra): auto, HOST:PORT "
                   "(its GCS) or local (start one here); --data must be a path every node sees. They are "
                   "merged exactly: calibration.json holds the same numbers as without --ray. The "
                   "sensitivity pass (each layer fake-quantized alone) still runs here.")
def calibrate_cmd(checkpoint, data_dir, out, samples, seed, input_size, ray_address):
    """Per-layer INT8 statistics and sensitivity: which layers lose accuracy.

    \b
    Writes OUT/calibration.json (per layer: min, max, mean, std, percentiles, histogram of its
    input, computed in shards of 64 images and merged exactly, here or with --ray on a cluster;
    the output error and top-1 agreement when that layer alone is INT8) and
    OUT/sensitivity.png (bar chart, layers worth keeping in float in red).
    The ranking is what `convert --max-drop` uses on every target.
    """
    from ..console import progress_bar
    bars: list = []                  # made on the first layer: no bar before the statistics are in

    def advance(done, total, name):
        if not bars:
            bars.append(progress_bar(desc="sensitivity", unit="layer"))
        _advance(bars[0], total)
    try:
        report = api.calibrate(checkpoint, data_dir, out, samples=samples, seed=seed,
                               input_size=input_size, progress=advance, ray=ray_address)
    finally:
        for bar in bars:
            bar.close()
    cal = report["calibration"]
    click.echo(f"{cal['samples']} images from {cal['source']} ({cal['skipped']} unreadable skipped)")
    echo_skipped(cal)
    click.echo(f"{'layer':<16}{'rel err':>10}{'top-1 agree':>13}   input range")
    for row in report["sensitivity"]:
        st = report["layers"][row["layer"]]
        click.echo(f"{row['layer']:<16}{row['rel_err']:>10.2e}{100 * row['top1_agree']:>12.1f}%"
                   f"   [{st['min']:.3g}, {st['max']:.3g}]")
    keep = report["keep_in_float"]
    click.echo(f"worth keeping in float: {', '.join(keep) if keep else 'none'}")
    click.echo(f"wrote {Path(out) / 'calibration.json'} and {Path(out) / 'sensitivity.png'}")


@click.command("info")
@click.argument("target")
@click.option("--input-size", type=number(limits.INPUT_SIZE), default=None,
              help="Default: recorded in the checkpoint, else 224.")
@click.option("--width", type=number(limits.WIDTH), default=1.0, show_default=True, help="For a variant name only.")
@click.option("--num-classes", type=number(limits.NUM_CLASSES), default=None,
              help="For a variant name only (default 1000).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info_cmd(target, input_size, width, num_classes, as_json):
    """Parameters, MACs, depth and per-layer table of a VARIANT name or a CHECKPOINT file."""
    info = api.model_info(target, input_size=input_size, width=width, num_classes=num_classes)
    if as_json:
        click.echo(json_text(info, indent=2))
        return
    pub = info.get("published")
    click.echo(f"{info['variant']} (width {info['width']:g}, {info['num_classes']} classes) at "
               f"{info['input_size']}x{info['input_size']}, depth {info['depth']}")
    if info["params_train"] is not None:
        click.echo(f"  params, training form: {info['params_train'] / 1e6:.2f} M")
    click.echo(f"  params, deployed:      {info['params_deploy'] / 1e6:.2f} M"
               + (f"   (published {pub['params_m']} M)" if pub else ""))
    click.echo(f"  MACs:                  {info['macs'] / 1e9:.2f} G"
               + (f"   (published {pub['gmacs']} G)" if pub else ""))
    click.echo(f"\n  {'layer':<16}{'op':<24}{'output':<18}{'params':>12}{'MACs':>16}")
    for row in info["layers"]:
        shape = "x".join(map(str, row["out_shape"]))
        click.echo(f"  {row['name']:<16}{row['op']:<24}{shape:<18}{row['params']:>12,}{row['macs']:>16,}")
