"""`vanillanet-edge report` and `vanillanet-edge baseline`: standalone Click commands.

Registered in cli.py with `main.add_command(report_cmd)` and `main.add_command(baseline_cmd)`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import limits
from .friendly import FriendlyCommand
from .options import OUT_FOLDER, number

# Standalone commands cache their help option on first use: give them -h themselves, so it
# works however they were first invoked (alone, or under the main group).
HELP = {"help_option_names": ["-h", "--help"]}


class _BaselineCommand(FriendlyCommand):
    """Appends the live list of baselines and variants to the help text."""

    def format_help_text(self, ctx, formatter):
        super().format_help_text(ctx, formatter)
        from ..model.baselines import BASELINES
        from ..model.variants import VARIANTS
        with formatter.section("Names"):
            rows = [f"  {b.name:<24} timm '{b.timm_name}'; published top-1 {b.published_top1} "
                    f"(not measured); targets: {b.backends}" for b in BASELINES.values()]
            rows.append(f"  {'vanillanet_5 ... _13':<24} {', '.join(VARIANTS)}: deploy form, random weights")
            formatter.write_text("\b\n" + "\n".join(rows))


@click.command("report", cls=FriendlyCommand, context_settings=HELP)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=OUT_FOLDER,
              help="Folder for report.md, report.html, report.json and plots/.")
@click.option("--peak-seconds", type=number(limits.PROBE_SECONDS), default=1.0, show_default=True,
              help="Seconds per matmul peak probe, when RUN_DIR holds no peaks measured by `run`.")
def report_cmd(run_dir, out, peak_seconds):
    """Turn saved benchmark and accuracy records into one report.

    \b
    RUN_DIR is searched recursively for JSON files holding result records: what
    `vanillanet-edge bench --save FILE` and `vanillanet-edge eval --save FILE` write.
    Writes OUT/report.md (plots beside it in OUT/plots/), OUT/report.html (one
    self-contained file: plots embedded) and OUT/report.json (every table with raw numbers).

    \b
    The report holds:
      - latency per model x runtime x precision, with the spread over rounds
      - latency against depth and against MACs (VanillaNet family next to deep baselines)
      - roofline efficiency: achieved GMAC/s against the matmul peak of the precision each
        artifact computes in (the pipeline measures it on each device; else measured here)
      - INT8 speed-up and top-1 change per runtime (where int8 and fp32 records exist)
      - first, the verdict: VanillaNet-9 / ResNet-50 latency ratio per device, runtime and
        precision with its 95% interval, plain (same settings) and best (each model's fastest
        verified setting), beside the published A100 figures (2.91 ms vs 7.64 ms)
    Anything without data reads "not measured".

    \b
    Example:
      vanillanet-edge baseline resnet50 vanillanet_9 --target onnx --out runs/a
      vanillanet-edge bench runs/a --rounds 3 --save runs/r1/latency.json
      vanillanet-edge report runs/r1 --out runs/r1/report
    """
    from ..devices.peak import measure_peaks
    from ..fileio import claim_folder
    from ..pipeline.report import build_report, load_records, summary_text

    claim_folder(out, "report folder")       # before the peaks are measured: ours, or refused
    records, _, _ = load_records(run_dir)
    peaks = None if any(r["kind"] == "peaks" for r in records) else measure_peaks(seconds_per_probe=peak_seconds)
    report = build_report(run_dir, out, peaks=peaks)
    click.echo(summary_text(report))
    click.echo(f"wrote {out / 'report.md'}, {out / 'report.html'} and {out / 'report.json'} "
               f"({report['records']} records from {len(report['sources'])} files)")


@click.command("baseline", cls=_BaselineCommand, context_settings=HELP)
@click.argument("names", nargs=-1, required=True)
@click.option("--target", "targets", multiple=True, required=True,
              help="onnx, openvino, tflite, coreml or all; repeat or comma-separate for several.")
@click.option("--precision", "precisions", multiple=True, default=("fp32",), show_default=True,
              type=click.Choice(["fp32", "fp16", "int8"]), help="Repeat for several.")
@click.option("--out", required=True, type=OUT_FOLDER, help="Folder for the artifacts.")
@click.option("--input-size", type=number(limits.INPUT_SIZE), default=224, show_default=True)
@click.option("--batch", type=number(limits.BATCH), default=1, show_default=True, help="Fixed batch size of the artifact.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Images to verify on (default: deterministic random normal inputs).")
@click.option("--calib-data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="INT8: folder of real images (ImageFolder or flat) to calibrate on.")
@click.option("--calib-samples", type=number(limits.SAMPLES), default=128, show_default=True, help="INT8: images to sample.")
@click.option("--calib-method", default="auto", show_default=True,
              help="INT8: range method; auto = the target's own default (see `convert --help`).")
@click.option("--seed", type=number(limits.SEED), default=0, show_default=True, help="Seed of the random weights and inputs.")
def baseline_cmd(names, targets, precisions, out, input_size, batch, data_dir, calib_data, calib_samples,
                 calib_method, seed):
    """Convert deep baselines (and random-weight VanillaNets) for latency comparisons.

    \b
    Each NAME is built with random, non-degenerate weights (nothing is downloaded: timm
    models use pretrained=False; every BatchNorm gamma is non-zero and its running statistics
    measured, so no converter can prune a branch) and goes through the same converters and
    verification as a checkpoint. Artifacts land in OUT/<name>-random-<target>-<precision>/
    with a manifest (params, MACs, depth, family, published top-1), ready for `bench`.
    The weights are random: measure latency with these, never accuracy. INT8 artifacts are
    verified like any other (top-1 agreement >= 90% with fp32), but random logits are nearly
    tied, so that check can fail at small input sizes; at 224 it passed for vanillanet_5/9 and
    resnet50 on ONNX Runtime and OpenVINO.

    \b
    Examples:
      vanillanet-edge baseline resnet50 vanillanet_9 --target onnx,openvino --out artifacts
      vanillanet-edge baseline resnet18 --target onnx --input-size 64 --out small
      vanillanet-edge baseline resnet50 --target openvino --precision int8 --calib-data imgs --out a
      vanillanet-edge bench artifacts --rounds 3 --save runs/r1/latency.json
    """
    from ..converters.baselines import prepare_any
    from ..converters.convert import convert_one
    from ..converters.registry import expand_targets
    from ..fileio import claim_folder, clean_partials
    from ..model.baselines import BASELINES
    from ..model.variants import VARIANTS

    unknown = [n for n in names if n not in BASELINES and n not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown: {', '.join(unknown)}; choose from "
                                 f"{', '.join(list(BASELINES) + list(VARIANTS))}", param_hint="NAMES")
    if "int8" in precisions and calib_data is None:
        raise click.UsageError("--precision int8 needs --calib-data DIR (real images to calibrate on)")
    target_list = expand_targets(list(targets))
    claim_folder(out, "output folder")
    clean_partials(out)
    failed = []
    for name in names:
        inputs = None
        if data_dir is not None:
            from ..images import Preprocessing, load_folder
            inputs = load_folder(data_dir, Preprocessing.imagenet(input_size), limit=32, seed=seed).inputs
        click.echo(f"{name}: building with random weights at {input_size}x{input_size}")
        prep = prepare_any(name, input_size, inputs=inputs, seed=seed)
        if data_dir is not None:
            prep.inputs_source = f"real images from {data_dir}"
        click.echo(f"  {prep.description}; verifying on {len(prep.inputs)} {prep.inputs_source}")
        calibration = None
        if "int8" in precisions:
            from ..calibration.dataset import load_calibration
            calibration = load_calibration(calib_data, prep.preprocessing, calib_samples, seed, calib_method)
        for target in target_list:
            for precision in precisions:
                o = convert_one(prep, target, precision, out, batch, None,
                                calibration if precision == "int8" else None)
                if o.ok:
                    v = o.manifest["verification"]
                    size = o.manifest["artifact"]["size_bytes"]
                    click.echo(f"  {target} {precision}: ok, {o.folder} (rel err {v['rel_err']:.2g}, top-1 "
                               f"agreement {100 * v['top1_agree']:.1f}%, {size / 1e6:.1f} MB for "
                               f"{prep.model_meta['params'] / 1e6:.2f} M params)")
                else:
                    failed.append((name, o))
                    click.secho(f"  {target} {precision}: FAILED at {o.stage}: {o.error}", fg="red")
    if failed:
        click.secho(f"{len(failed)} conversions failed:", fg="red", err=True)
        for name, o in failed:
            click.secho(f"  {name} {o.target} {o.precision}: {(o.error or '').splitlines()[0]}", fg="red", err=True)
        sys.exit(1)


__all__ = ["report_cmd", "baseline_cmd"]
