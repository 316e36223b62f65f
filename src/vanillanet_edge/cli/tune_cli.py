"""`vanillanet-edge tune` and `recommend`: the fastest verified artifact for a device."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api, limits
from ..converters.registry import default_targets
from ..fileio import json_text
from .options import OUT_FOLDER, number


@click.command("tune")
@click.argument("model")
@click.option("--out", type=OUT_FOLDER, required=True, help="Folder for artifacts, tune.json, recommended/.")
@click.option("--device", "device_name", default="local", show_default=True, help="Device (devices.toml name) to tune for.")
@click.option("--devices", "devices_file", type=click.Path(path_type=Path), default=None, help="Devices file (default ./devices.toml).")
@click.option("--budget-ms", type=number(limits.BUDGET_MS), default=None,
              help="Latency budget per call: pick the most accurate candidate within it (else the fastest).")
@click.option("--max-drop", type=number(limits.MAX_DROP), default=None,
              help="Top-1 points a candidate may lose against fp32 (needs --eval-data).")
@click.option("--target", "targets", multiple=True, default=tuple(default_targets()), show_default=True,
              help="Targets to try (repeat).")
@click.option("--precision", "precisions", multiple=True, default=("fp32", "int8"), show_default=True,
              help="Artifact precisions to try (repeat); bf16 is tried as a runtime hint where the CPU has it.")
@click.option("--rewrite", "rewrites", multiple=True, default=("none", "relu_before_pool", "dw_dilated"),
              show_default=True,
              help="Exact graph rewrites to try, each on its own; 'none' = the plain export. relu_before_pool: "
                   "ReLU ahead of each max pool (fuses into the conv); dw_dilated / dw_bands / dw_blocks / "
                   "dw_rows: the 7x7 depthwise activation as a sum of smaller depthwise convs (LiteRT's XNNPACK "
                   "runs a 7x7 one very slowly; dw_dilated needs no PAD or SLICE and stays all-integer in "
                   "INT8; a split may cost other runtimes, so tune measures it per device).")
@click.option("--layout", "layouts", multiple=True, default=("native",), show_default=True,
              help="Input layouts to try (repeat): native (each target's own), NHWC (OpenVINO can take "
                   "camera frames as they come; LiteRT is NHWC natively).")
@click.option("--batch", "batches", multiple=True, type=number(limits.BATCH), default=(1,), show_default=True,
              help="Batch sizes the app can use (repeat); ranking is by time per image.")
@click.option("--input-size", "input_sizes", multiple=True, type=number(limits.INPUT_SIZE),
              help="Input sides to try (repeat; default: the checkpoint's, 224 for variant names). "
                   "Accuracy at each comes from --eval-data.")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None, help="Images to calibrate int8 on.")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None, help="Labelled ImageFolder for top-1.")
@click.option("--runs", type=number(limits.RUNS), default=60, show_default=True,
              help="Timed runs per candidate (over all rounds).")
@click.option("--rounds", type=number(limits.ROUNDS), default=3, show_default=True,
              help="Interleaved rounds, a fresh process each.")
@click.option("--accept-new-host-key", is_flag=True, help="Trust an SSH device's host key on first contact.")
@click.option("--json", "as_json", is_flag=True, help="Print tune.json.")
def tune_cmd(model, out, device_name, devices_file, budget_ms, max_drop, targets, precisions, rewrites, layouts, batches,
             input_sizes, calib_data, eval_data, runs, rounds, accept_new_host_key, as_json):
    """Find the fastest verified artifact and runtime settings for MODEL on a device.

    MODEL is a checkpoint, or an official variant name (random weights: latency only).
    Every (target, precision, rewrite, batch) is converted and verified against the fused
    net; each artifact is tried with the settings its runtime offers on that device
    (OpenVINO f32/bf16 hints and threads, LiteRT XNNPACK/built-in kernels, ONNX Runtime
    threads); each candidate's accuracy is checked with its own settings; all are then
    benchmarked with interleaved rounds. The winner is copied to OUT/recommended/ with its
    settings pinned in the manifest (bench and eval apply them). The plain OpenVINO INT8
    export at default settings is always measured as the reference ('vs plain').

    \b
    Examples:
      vanillanet-edge tune vanillanet_5 --calib-data data/train --out runs/tune5
      vanillanet-edge tune tiny.pth --calib-data d/train --eval-data d/val --max-drop 0.5 --out t
      vanillanet-edge tune tiny.pth --device pi5 --budget-ms 20 --target tflite --out t-pi
    """
    from ..model.rewrites import REWRITES

    unknown = [r for r in rewrites if r != "none" and r not in REWRITES]
    if unknown:
        raise click.BadParameter(f"unknown rewrite {unknown[0]!r}; choose from: none, {', '.join(REWRITES)}",
                                 param_hint="--rewrite")
    opts = api.TuneOptions(
        targets=tuple(targets), precisions=tuple(precisions),
        rewrites=tuple(() if r == "none" else (r,) for r in rewrites), batches=tuple(batches),
        layouts=tuple(layouts),
        input_sizes=tuple(input_sizes) or (None,), budget_ms=budget_ms, max_drop=max_drop,
        calib_data=str(calib_data) if calib_data else None, eval_data=str(eval_data) if eval_data else None,
        runs=runs, rounds=rounds)
    result = api.tune(model, out, device_name, devices_file, opts, accept_new_host_key,
                      log=(lambda m: None) if as_json else click.echo)
    if as_json:
        click.echo(json_text(result, indent=2))
    else:
        print_tune(result)
    if not result.get("recommendation"):
        sys.exit(1)


def print_tune(result: dict) -> None:
    rows = result["candidates"]
    click.echo(f"\n{'#':>3} {'candidate':<72}{'ms/img':>9}{'95% interval':>17}{'GMAC/s':>8}{'% peak':>8}"
               f"{'agree':>8}{'top-1':>8}{'vs plain':>9}")
    for i, r in enumerate(rows, 1):
        if not r["ok"]:
            click.secho(f"{i:>3} {r['label']:<72} {r['status']}: {r['error']}", fg="yellow")
            continue
        iv = r["interval_ms"]
        interval = f"{iv[0] / r['batch']:.2f}-{iv[1] / r['batch']:.2f}"
        borrowed = r["fraction_of_peak"] and r.get("peak_runtime") not in (None, r["runtime"])
        peak = (f"{100 * r['fraction_of_peak']:.0f}%" + ("*" if borrowed else "")) if r["fraction_of_peak"] else "-"
        top1 = f"{100 * r['top1']:.2f}" if r["top1"] is not None else "-"
        agree = f"{100 * r['agreement']:.1f}%" if r["agreement"] is not None else "-"
        speed = f"{r['speedup_vs_anchor']:.2f}x" if r.get("speedup_vs_anchor") else "-"
        mark = " (plain)" if r["anchor"] else ""
        line = (f"{i:>3} {(r['label'] + mark)[:71]:<72}{r['ms_per_image']:>9.2f}{interval:>17}"
                f"{(r['gmacs_per_s'] or 0):>8.1f}{peak:>8}{agree:>8}{top1:>8}{speed:>9}")
        click.secho(line, fg=None if r["passed_checks"] and r["within_budget"] else "bright_black")
    lenders = sorted({(r["runtime"], r["peak_runtime"]) for r in rows if r["ok"] and r.get("fraction_of_peak")
                      and r.get("peak_runtime") not in (None, r["runtime"])})
    for runtime, lender in lenders:
        click.echo(f"  * {runtime} has no matmul probe: % of the best peak measured on the device in this run ({lender})")
    for f in result["failed"]:
        click.secho(f"    not kept: {f['candidate']}: {f['stage']}: {f['error']}", fg="yellow")
    rec = result.get("recommendation")
    if rec:
        click.secho(f"\nrecommended: {rec['label']}\n  {rec['ms_per_image']:.2f} ms per image "
                    f"(95% interval {rec['interval_ms'][0] / rec['batch']:.2f}-{rec['interval_ms'][1] / rec['batch']:.2f}), "
                    + (f"top-1 {100 * rec['top1']:.2f}%, " if rec["top1"] is not None else "")
                    + f"agreement with the fused net {100 * rec['agreement']:.1f}%"
                    + (f", {rec['speedup_vs_anchor']:.2f}x the plain OpenVINO INT8 export" if rec.get("speedup_vs_anchor") else ""),
                    fg="green", bold=True)
        click.echo(f"  pinned in {result['recommended_artifact']}/manifest.json (runtime_settings)")
    else:
        click.secho("\nno candidate met the budgets", fg="red")


@click.command("recommend")
@click.option("--budget-ms", type=number(limits.BUDGET_MS), required=True, help="Latency budget per call on the device.")
@click.option("--variant", "variants", multiple=True,
              help="Official variant to consider (repeat): published accuracy, random weights for timing.")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Your own trained checkpoint to consider (repeat; any variant/width): accuracy from --eval-data.")
@click.option("--out", type=OUT_FOLDER, required=True, help="Folder for each model's tune run.")
@click.option("--device", "device_name", default="local", show_default=True, help="Device to choose for.")
@click.option("--devices", "devices_file", type=click.Path(path_type=Path), default=None, help="Devices file.")
@click.option("--target", "targets", multiple=True, default=tuple(default_targets()), show_default=True)
@click.option("--precision", "precisions", multiple=True, default=("fp32", "int8"), show_default=True)
@click.option("--input-size", "input_sizes", multiple=True, type=number(limits.INPUT_SIZE),
              help="Input sides allowed (repeat; default: each model's own). Accuracy at other sizes "
                   "needs --eval-data: published figures are for 224.")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None, help="Images to calibrate int8 on.")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="Labelled ImageFolder: rank by accuracy measured on it (else by published accuracy).")
@click.option("--runs", type=number(limits.RUNS), default=30, show_default=True)
@click.option("--rounds", type=number(limits.ROUNDS), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def recommend_cmd(budget_ms, variants, checkpoints, out, device_name, devices_file, targets, precisions,
                  input_sizes, calib_data, eval_data, runs, rounds, as_json):
    """The most accurate model whose fastest verified configuration fits the latency budget.

    
    Every model given is run through `tune` on the device. Accuracy comes from --eval-data
    (your labelled images) when given, else from the published ImageNet figures of the official
    variants; the two kinds are never ranked against each other, and the answer says which
    kind it used.

    
    Examples:
      vanillanet-edge recommend --budget-ms 40 --variant vanillanet_5 --variant vanillanet_6 \\
          --calib-data calib/ --out runs/rec
      vanillanet-edge recommend --budget-ms 5 --checkpoint small.pth --checkpoint wide.pth \\
          --eval-data val/ --calib-data train/ --device pi5 --out runs/rec-pi
    """
    opts = api.TuneOptions(targets=tuple(targets), precisions=tuple(precisions), input_sizes=tuple(input_sizes) or (None,),
                           calib_data=str(calib_data) if calib_data else None,
                           eval_data=str(eval_data) if eval_data else None, runs=runs, rounds=rounds)
    result = api.recommend(list(variants) + list(checkpoints), out, budget_ms, device_name, devices_file, opts,
                           log=(lambda m: None) if as_json else click.echo)
    if as_json:
        click.echo(json_text(result, indent=2))
    else:
        click.echo(f"\n{'model':<32}{'best config':<60}{'ms':>9}{'fits':>6}  accuracy")
        for r in result["models"]:
            cfg = r["best"]["label"][:58] if r["best"] else (r["error"] or "-")[:58]
            ms = f"{r['median_ms']:.2f}" if r["median_ms"] else "-"
            acc = f"{100 * r['accuracy']:.2f}% ({r['accuracy_kind']})" if r["accuracy"] is not None else r["accuracy_kind"]
            click.echo(f"{r['model']:<32}{cfg:<60}{ms:>9}{'yes' if r['fits'] else 'no':>6}  {acc}")
        rec = result["recommendation"]
        if rec:
            click.secho(f"\nrecommended for {result['device']} under {budget_ms:g} ms: {rec['model']} "
                        f"({100 * rec['accuracy']:.2f}% top-1, {rec['accuracy_kind']}) as {rec['best']['label']}, "
                        f"{rec['median_ms']:.2f} ms", fg="green", bold=True)
        else:
            click.secho(f"\nno model fits {budget_ms:g} ms with a known {result['accuracy_used']} accuracy", fg="red")
    if not result["recommendation"]:
        sys.exit(1)
