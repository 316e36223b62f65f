"""The `vanillanet-edge` command line: a thin layer over vanillanet_edge.api."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Quiet the C++ logging of the TensorFlow-based LiteRT converter and friends; set before they load.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "2")

import click  # noqa: E402

from .. import api  # noqa: E402
from ..model.train import TrainConfig  # noqa: E402
from ..model.variants import VARIANTS  # noqa: E402
from .friendly import FriendlyGroup  # noqa: E402

VARIANT_CHOICE = click.Choice(list(VARIANTS))


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@click.version_option(package_name="vanillanet-edge")
@click.option("-v", "--verbose", is_flag=True,
              help="Show the toolchains' own output (TensorFlow, OpenVINO, coremltools warnings...). "
                   "Without it, `run` keeps it in OUT/toolchain.log and other commands drop it.")
def main(verbose):
    """Ship a trained VanillaNet to edge hardware.

    \b
    Typical flow:
      vanillanet-edge data digits data/digits          # built-in real images (scikit-learn digits)
      vanillanet-edge train --data data/digits --out tiny.pth
      vanillanet-edge fuse tiny.pth --out tiny-deploy.pth
      vanillanet-edge info vanillanet_5                # params, MACs, per-layer table
    Or all of it on the built-in default: vanillanet-edge run   (vanillanet-edge init: a pipeline file)
    """
    if not verbose:
        from ..console import quiet
        quiet()


@main.group()
def data():
    """Write built-in data sets (no download needed)."""


@data.command("digits")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--size", default=32, show_default=True, help="Side of the written PNGs in pixels.")
@click.option("--seed", default=0, show_default=True, help="Seed of the train/val split.")
def data_digits(out, size, seed):
    """Write scikit-learn's 1,797 handwritten digits as OUT/train and OUT/val ImageFolders."""
    info = api.make_digits(out, size=size, seed=seed)
    click.echo(f"wrote {info['train']} train and {info['val']} val images ({size}x{size} RGB PNG) to {out}")


@main.command("train")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with train/ and val/ ImageFolders (e.g. from `data digits`).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint to write (.pth).")
@click.option("--variant", type=VARIANT_CHOICE, default="vanillanet_5", show_default=True)
@click.option("--width", type=float, default=1 / 32, show_default=True,
              help="Channel multiplier; 1 is the official size, 1/32 trains in seconds on 2 cores.")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--decay-epochs", type=int, default=None,
              help="Epochs over which act_learn rises from 0 to 1 (default: half of --epochs).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=4e-3, show_default=True)
@click.option("--input-size", type=int, default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def train_cmd(data_dir, out, variant, width, epochs, decay_epochs, batch_size, lr, input_size, seed):
    """Deep-train a VanillaNet with the paper's act_learn schedule.

    act_learn is annealed from 0 (ReLU) to 1 (identity) over --decay-epochs, then held at 1,
    so the result can be fused exactly. The checkpoint uses the official training-form layout.
    """
    cfg = TrainConfig(variant=variant, width=width, epochs=epochs,
                      decay_epochs=epochs // 2 if decay_epochs is None else decay_epochs,
                      batch_size=batch_size, lr=lr, seed=seed)
    result = api.train_model(data_dir, out, cfg, input_size=input_size)
    click.echo(f"val top-1 {100 * result['val_top1']:.2f}% after {epochs} epochs "
               f"({result['seconds']:.0f} s); act_learn {result['act_learn']:g}; wrote {out}")


@main.command("fuse")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Deploy-form checkpoint to write.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Images to verify on (default: the val split the net was trained on, if known).")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help="Check the file against this variant.")
@click.option("--key", default=None, help="Entry of the checkpoint dict holding the weights "
                                          "(default: model_ema, then model, then state_dict).")
@click.option("--input-size", type=int, default=None, help="Verification input size (default: recorded, else 224).")
@click.option("--allow-inexact", is_flag=True,
              help="Fuse even when act_learn < 1 (not exact); the report shows the error it causes.")
def fuse_cmd(checkpoint, out, data_dir, variant, key, input_size, allow_inexact):
    """Apply the deploy switch: fold every BN, merge the paired 1x1 convs, verify.

    Writes OUT in the authors' deploy layout ({'model': state_dict}) and OUT.json with the
    verification: max abs error, relative error and top-1 agreement against the unfused net.
    """
    r = api.fuse_checkpoint(checkpoint, out, data=data_dir, allow_inexact=allow_inexact,
                            variant=variant, key=key, input_size=input_size)
    rep = r.report
    click.echo(f"loaded {rep['variant']} width {rep['width']:g} ({rep['source_form']} form, "
               f"weights from {rep['weights_key'] or 'bare state_dict'}; {rep['variant_source']})")
    click.echo(f"params {rep['params_train']:,} -> {rep['params_deploy']:,} after fusion")
    click.echo(f"random inputs: {r.check.random}")
    click.echo(f"real inputs:   {r.check.real if r.check.real else rep['real_inputs_from']}")
    _echo_skipped(rep)
    if not rep["exact"]:
        click.secho(f"INEXACT fusion at act_learn {rep['act_learn']:g}: outputs differ as shown", fg="yellow")
    click.echo(f"wrote {r.checkpoint} and {r.report_path}")


def _targets_help() -> str:
    from ..converters.registry import get_converter, target_names
    rows = []
    for name in target_names():
        try:
            c = get_converter(name)
            int8 = (f"int8 methods: {', '.join(c.int8_methods)}; --max-drop: "
                    f"{'yes' if c.excludes_layers else 'no'}") if "int8" in c.precisions else "no int8 yet"
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


@main.command("convert", cls=TargetListCommand)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--target", "targets", multiple=True, required=True,
              help="onnx, openvino, tflite, coreml or all; repeat or comma-separate for several.")
@click.option("--precision", "precisions", multiple=True, default=("fp32",), show_default=True,
              type=click.Choice(["fp32", "fp16", "int8"]), help="Repeat for several.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the artifacts.")
@click.option("--input-size", type=int, default=None, help="Default: recorded in the checkpoint, else 224.")
@click.option("--batch", type=int, default=1, show_default=True, help="Fixed batch size of the artifact.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Images to verify on (default: the val split the net was trained on, if known).")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help="Check the file against this variant.")
@click.option("--key", default=None, help="Entry of the checkpoint dict holding the weights.")
@click.option("--allow-inexact", is_flag=True, help="Fuse even when act_learn < 1 (not exact).")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None,
              help="INT8: folder of real images (ImageFolder or flat) to calibrate on.")
@click.option("--calib-samples", type=int, default=128, show_default=True, help="INT8: images to sample.")
@click.option("--calib-method", default="minmax", show_default=True,
              help="INT8: range method; which ones each target supports is listed below.")
@click.option("--seed", type=int, default=0, show_default=True, help="INT8: sampling seed.")
@click.option("--max-drop", type=float, default=None,
              help="INT8: top-1 points the artifact may lose against fp32 (needs --eval-data); the "
                   "most sensitive layers are kept in float, one at a time, until it fits.")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="Labelled ImageFolder: record top-1 of every artifact against the fp32 net.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
def convert_cmd(checkpoint, targets, precisions, out, input_size, batch, data_dir, variant, key,
                allow_inexact, calib_data, calib_samples, calib_method, seed, max_drop, eval_data, as_json):
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
    int8 = None
    if "int8" in precisions or calib_data is not None:
        if calib_data is None:
            raise click.UsageError("--precision int8 needs --calib-data DIR (real images to calibrate on)")
        int8 = api.Int8Options(calib_data, calib_samples, calib_method, seed, max_drop, eval_data)
    outcomes = api.convert(checkpoint, list(targets), list(precisions), out, input_size=input_size,
                           batch=batch, data=data_dir, variant=variant, key=key,
                           allow_inexact=allow_inexact, int8=int8, eval_data=eval_data,
                           log=None if as_json else click.echo)
    if as_json:
        click.echo(json.dumps([{"target": o.target, "precision": o.precision, "ok": o.ok,
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


@main.command("calibrate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of real images (ImageFolder or flat).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the report.")
@click.option("--samples", type=int, default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--input-size", type=int, default=None)
def calibrate_cmd(checkpoint, data_dir, out, samples, seed, input_size):
    """Per-layer INT8 statistics and sensitivity: which layers lose accuracy.

    \b
    Writes OUT/calibration.json (per layer: min, max, percentiles, histogram of its input;
    the output error and top-1 agreement when that layer alone is INT8) and
    OUT/sensitivity.png (bar chart, layers worth keeping in float in red).
    The ranking is what `convert --max-drop` uses on every target.
    """
    from tqdm import tqdm
    bar = tqdm(desc="sensitivity", unit="layer")
    try:
        report = api.calibrate(checkpoint, data_dir, out, samples=samples, seed=seed,
                               input_size=input_size, progress=lambda done, total, name: _advance(bar, total))
    finally:
        bar.close()
    cal = report["calibration"]
    click.echo(f"{cal['samples']} images from {cal['source']} ({cal['skipped']} unreadable skipped)")
    _echo_skipped(cal)
    click.echo(f"{'layer':<16}{'rel err':>10}{'top-1 agree':>13}   input range")
    for row in report["sensitivity"]:
        st = report["layers"][row["layer"]]
        click.echo(f"{row['layer']:<16}{row['rel_err']:>10.2e}{100 * row['top1_agree']:>12.1f}%"
                   f"   [{st['min']:.3g}, {st['max']:.3g}]")
    keep = report["keep_in_float"]
    click.echo(f"worth keeping in float: {', '.join(keep) if keep else 'none'}")
    click.echo(f"wrote {Path(out) / 'calibration.json'} and {Path(out) / 'sensitivity.png'}")


def _runtime_choice():
    from ..devices.registry import runtime_names
    return click.Choice(runtime_names())


def _parse_options(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        out[key.replace("-", "_")] = int(value) if value.isdigit() else value
    return out


def device_options(fn):
    """--device / --devices / --accept-new-host-key, shared by bench and eval."""
    fn = click.option("--accept-new-host-key", is_flag=True,
                      help="Trust an SSH device's host key on FIRST contact (printed, saved to its "
                           "known_hosts); a changed key is always refused.")(fn)
    fn = click.option("--devices", "devices_file", type=click.Path(path_type=Path), default=None,
                      help="Devices file (default: ./devices.toml; see `vanillanet-edge devices --help`).")(fn)
    fn = click.option("--device", "device_names", multiple=True, metavar="NAME",
                      help="Run on this device of the devices file; repeat for several. Default: local.")(fn)
    return fn


@main.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--runtime", type=_runtime_choice(), default=None,
              help="Override the artifact's own runtime (e.g. torch for a checkpoint).")
@click.option("--threads", type=int, default=None, help="Intra-op threads for every runtime (default: one per physical core, the same for all).")
@click.option("--warmup", type=int, default=10, show_default=True)
@click.option("--runs", type=int, default=100, show_default=True, help="Timed runs in total, over all rounds.")
@click.option("--seconds", type=float, default=None, help="Time budget instead of --runs.")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Interleaved repeats, each in a fresh process per artifact.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Runner setting, e.g. kernels=builtin (LiteRT), precision_hint=f32 (OpenVINO), "
                   "compute_units=CPU_ONLY (Core ML on macOS).")
@device_options
@click.option("--json", "as_json", is_flag=True, help="Print the result records as JSON.")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="Also write the records to this JSON file.")
def bench_cmd(artifacts, runtime, threads, warmup, runs, seconds, rounds, options, device_names, devices_file,
              accept_new_host_key, as_json, save):
    """Latency of artifacts (folders from `convert`, a folder of them, or a checkpoint for PyTorch).

    \b
    Load and first inference are reported apart from steady state; then warm-up and timed
    runs: median, p90, p99, mean, std, throughput, peak RSS, achieved GMAC/s. Each artifact
    runs in its own process, rounds are interleaved across artifacts, and every record
    carries the machine description (CPU, ISA flags, versions, threads).

    \b
    Examples:
      vanillanet-edge bench artifacts/                  # every artifact in the folder
      vanillanet-edge bench artifacts/tiny-tflite-int8 --set kernels=builtin
      vanillanet-edge bench tiny-deploy.pth             # PyTorch eager baseline
      vanillanet-edge bench artifacts/ --device local --device pi5   # here and on a board (devices.toml)
    """
    from tqdm import tqdm

    from ..devices import artifacts as art
    from ..devices.latency import BenchSettings

    refs = art.resolve(artifacts)
    specs = api.resolve_devices(device_names, devices_file)
    settings = BenchSettings(runtime, threads, warmup, runs, seconds, rounds, _parse_options(options))
    bar = tqdm(total=rounds * len(refs) * len(specs), desc="bench", unit="run", disable=as_json)
    records = api.bench(refs, settings, specs, accept_new_host_key,
                        progress=lambda spec, r, i, ref: bar.update(1))
    bar.close()
    _emit(records, as_json, save, _print_latency)


@main.command("eval")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="ImageFolder with one sub-folder per class (the ImageNet val layout works).")
@click.option("--limit", type=int, default=None, help="Evaluate a seeded sample of this many images.")
@click.option("--runtime", type=_runtime_choice(), default=None, help="Override the artifact's runtime.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE", help="Runner setting (see bench).")
@device_options
@click.option("--json", "as_json", is_flag=True, help="Print the result records as JSON.")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="Also write the records to this JSON file.")
def eval_cmd(artifacts, data_dir, limit, runtime, options, device_names, devices_file, accept_new_host_key,
             as_json, save):
    """Top-1 / top-5 of artifacts on labelled images, and agreement with the fp32 reference.

    Each artifact is fed through its own manifest's preprocessing. Core ML off macOS runs
    through vanillanet-edge's numpy MIL interpreter, and the result says so. On a remote
    --device, images are decoded here and only the input tensors travel; img/s is the
    device's own compute time.
    """
    from tqdm import tqdm

    from ..devices import artifacts as art

    refs = art.resolve(artifacts)
    specs = api.resolve_devices(device_names, devices_file)
    bars = []

    def progress_for(spec, ref):
        bars.append(tqdm(desc=f"eval {ref.name}" + ("" if spec.is_local else f" on {spec.name}"),
                         unit="img", disable=as_json))
        return bars[-1].update

    records = api.evaluate(refs, data_dir, specs, limit, runtime, _parse_options(options),
                           accept_new_host_key, progress_for)
    for bar in bars:
        bar.close()
    _emit(records, as_json, save, _print_accuracy)


def _emit(records, as_json, save, printer):
    if save:
        from ..fileio import write_json
        write_json(save, records)
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
    else:
        printer(records)
        if save:
            click.echo(f"wrote {save}")
    if any(r.get("status", "ok" if r.get("ok") else "failed") == "failed" for r in records):
        sys.exit(1)


def _by_device(records):
    """Records grouped by the device they ran on, with a header line for each device."""
    groups: dict[str, list] = {}
    for r in records:
        groups.setdefault(r.get("device", {}).get("name", "local"), []).append(r)
    for name, recs in groups.items():
        m = next((r["machine"] for r in recs if r.get("machine")), None)
        where = recs[0].get("device", {}).get("where", "this machine")
        desc = (f"{m['cpu_model']}, {m['logical_cores']} cores, ISA {' '.join(m['isa']) or '-'}, {m['os']}"
                if m else "no machine description (device not reached)")
        click.secho(f"device {name} ({where}): {desc}", bold=True)
        yield recs


def _print_latency(records):
    for group in _by_device(records):
        _print_latency_rows(group)
    click.echo("(ms; medians over all rounds, each artifact in its own process; 95% interval: where "
               "another call's median is expected to fall)")


def _print_latency_rows(records):
    click.echo(f"{'artifact':<36}{'runtime':<13}{'median':>9}{'95% interval':>18}{'p90':>9}{'p99':>9}"
               f"{'load':>9}{'RSS MiB':>9}{'GMAC/s':>8}  settings")
    for r in records:
        if r["status"] == "unavailable":
            click.secho(f"{r['name']:<36}{r['runtime']:<13} unavailable here: {r['reason']}", fg="yellow")
            continue
        if not r["ok"]:
            click.secho(f"{r['name']:<36}{r['runtime']:<13} FAILED: {r.get('error', '')}", fg="red")
            continue
        lat, ss = r["latency"], r["session_settings"]
        extra = ", ".join(f"{k}={v}" for k, v in ss.items() if k in
                          ("inference_precision", "kernels", "threads", "engine", "providers"))
        iv = r["median_interval_ms"]
        interval = f"{iv['low_ms']:.2f}-{iv['high_ms']:.2f}"
        click.echo(f"{r['name']:<36}{r['runtime']:<13}{lat['median_ms']:>8.2f}m{interval:>18}{lat['p90_ms']:>8.2f}m"
                   f"{lat['p99_ms']:>8.2f}m{r['load_ms']:>8.0f}m{r['peak_rss_mib']:>9.0f}"
                   f"{(r['gmacs_per_s'] or 0):>8.1f}  {extra}")


def _echo_skipped(record: dict) -> None:
    """The unreadable images a run skipped (record: skipped, skipped_files), one line each."""
    if record.get("skipped"):
        click.secho(f"{record['skipped']} unreadable image(s) skipped:", fg="yellow")
        for s in record.get("skipped_files", []):
            click.echo(f"  {s['file']}: {s['why']}")
        if record["skipped"] > len(record.get("skipped_files", [])):
            click.echo(f"  ... and {record['skipped'] - len(record.get('skipped_files', []))} more (see the JSON)")


def _print_accuracy(records):
    for group in _by_device(records):
        _print_accuracy_rows(group)
    shown = set()   # every artifact reads the same files: list each set of skipped files once
    for r in records:
        key = repr(r.get("skipped_files"))
        if r.get("skipped") and key not in shown:
            shown.add(key)
            _echo_skipped(r)


def _print_accuracy_rows(records):
    click.echo(f"{'artifact':<36}{'engine':<24}{'top-1':>8}{'top-5':>8}{'agree fp32':>12}{'img/s':>9}")
    for r in records:
        if not r["ok"]:
            click.secho(f"{r['name']:<36} FAILED: {r.get('error', '')}", fg="red")
            continue
        agree = f"{100 * r['agreement_with_fp32']:.2f}%" if r["agreement_with_fp32"] is not None else "-"
        engine = r["engine"] if len(r["engine"]) < 23 else r["engine"][:20] + "..."
        click.echo(f"{r['name']:<36}{engine:<24}{100 * r['top1']:>7.2f}%{100 * r['top5']:>7.2f}%"
                   f"{agree:>12}{(r['images_per_s'] or 0):>9.0f}")


@main.command("info")
@click.argument("target")
@click.option("--input-size", type=int, default=None, help="Default: recorded in the checkpoint, else 224.")
@click.option("--width", type=float, default=1.0, show_default=True, help="For a variant name only.")
@click.option("--num-classes", type=int, default=None, help="For a variant name only (default 1000).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info_cmd(target, input_size, width, num_classes, as_json):
    """Parameters, MACs, depth and per-layer table of a VARIANT name or a CHECKPOINT file."""
    info = api.model_info(target, input_size=input_size, width=width, num_classes=num_classes)
    if as_json:
        click.echo(json.dumps(info, indent=2))
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


@main.command("run")
@click.argument("pipeline", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Run folder: every stage writes here, and a re-run resumes from it.")
@click.option("--only", multiple=True, metavar="STAGE", help="Run only these stages (others must be done).")
@click.option("--force", multiple=True, metavar="STAGE", help="Redo these stages even if unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary table as JSON.")
def run_cmd(pipeline, out, only, force, as_json):
    """The main job: checkpoint (or the built-in default) to verified artifacts, INT8,
    measurements and the report.

    \b
    Stages: data, train, fuse, convert, calibrate, eval, bench, verdict, report.
    With no PIPELINE file, the built-in demo: digits, a tiny VanillaNet trained on them, all
    four targets at fp32 and int8 (accuracy, INT8 drop, the verified chain); then the verdict:
    full-size VanillaNet-9 against ResNet-50 at 224, batch 1 (random weights: latency only),
    through ONNX Runtime, OpenVINO, LiteRT and eager PyTorch at one thread count, each runtime
    setting verified; the report opens with it. `vanillanet-edge init` writes a commented pipeline file.
    Every stage records its inputs' hashes in OUT/state.json: a re-run skips unchanged steps,
    a changed setting redoes only what it affects, Ctrl-C or a kill leaves OUT consistent,
    and a second run on the same OUT is refused while the first holds its lock.
    """
    from ..console import log_to
    log_to(out / "toolchain.log")          # only in quiet mode (no -v): the chatter, kept with the run
    result = api.run_pipeline(pipeline, out, only, force, log=(lambda m: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items()}, indent=2, default=str))
    else:
        _print_summary(result)
    if result["failures"]:
        sys.exit(1)


def _print_summary(result: dict) -> None:
    w = max([len("artifact")] + [len(r["artifact"]) for r in result["summary"]]) + 2
    devices = {r.get("device", "local") for r in result["summary"]}
    dw = max(len(d) for d in devices | {"device"}) + 2 if len(devices) > 1 else 0
    click.echo(f"\n{'artifact':<{w}}{'device' if dw else '':<{dw}}{'runtime':<13}{'prec':<6}{'size KB':>9}"
               f"{'top-1':>9}{'median ms':>12}{'vs eager':>10}")
    for row in result["summary"]:
        top1 = f"{100 * row['top1']:.2f}%" if row["top1"] is not None else "-"
        med = f"{row['median_ms']:.3f}" if row["median_ms"] is not None else row["status"]
        speed = f"{row['speedup_vs_eager']:.1f}x" if row["speedup_vs_eager"] else "-"
        device = row.get("device", "local") if dw else ""
        click.echo(f"{row['artifact']:<{w}}{device:<{dw}}{row['runtime']:<13}{row['precision']:<6}"
                   f"{row['size_kb']:>9.0f}{top1:>9}{med:>12}{speed:>10}")
    if result.get("verdict"):
        click.echo("")
        for line in result["verdict"]:
            click.echo(line)
    for f in result["failures"]:
        click.secho(f"failed: {f['step']}: {f['error']}", fg="red")
    click.echo(f"\nrun folder: {result['out']}")
    if Path(result["report"]).exists():
        click.echo(f"report: {result['report']}")


@main.command("init")
@click.argument("path", type=click.Path(path_type=Path), default=Path("pipeline.toml"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_cmd(path, force):
    """Write a commented example pipeline file (every key, at the built-in demo's values)."""
    from ..fileio import atomic_path
    from .config import example_toml

    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; pass --force to overwrite it")
    with atomic_path(path) as tmp:
        tmp.write_text(example_toml())
    click.echo(f"wrote {path}; edit it, then: vanillanet-edge run {path} --out runs/mine")


from .report_cli import baseline_cmd, report_cmd  # noqa: E402

main.add_command(report_cmd)
main.add_command(baseline_cmd)

from .devices_cli import devices_group  # noqa: E402
from .tune_cli import recommend_cmd, tune_cmd  # noqa: E402

main.add_command(devices_group)
main.add_command(tune_cmd)
main.add_command(recommend_cmd)

from .profile_cli import profile_cmd  # noqa: E402

main.add_command(profile_cmd)


if __name__ == "__main__":
    main()
