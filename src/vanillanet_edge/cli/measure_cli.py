"""`bench` and `eval`: latency and accuracy of artifacts, here or on devices."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api, limits
from ..fileio import json_text
from .options import (
    OUT_FILE,
    device_line,
    device_options,
    echo_skipped,
    force_option,
    number,
    parse_options,
    refuse_existing,
    runtime_choice,
)


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--runtime", type=runtime_choice(), default=None,
              help="Override the artifact's own runtime (e.g. torch for a checkpoint).")
@click.option("--threads", type=number(limits.THREADS), default=None,
              help="Intra-op threads for every runtime (default: one per physical core, the same for all).")
@click.option("--warmup", type=number(limits.WARMUP), default=10, show_default=True)
@click.option("--runs", type=number(limits.RUNS), default=100, show_default=True,
              help="Timed runs in total, over all rounds.")
@click.option("--seconds", type=number(limits.SECONDS), default=None, help="Time budget instead of --runs.")
@click.option("--rounds", type=number(limits.ROUNDS), default=3, show_default=True,
              help="Interleaved repeats, each in a fresh process per artifact.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Runner setting, e.g. kernels=builtin (LiteRT), precision_hint=f32 (OpenVINO), "
                   "compute_units=CPU_ONLY (Core ML on macOS).")
@device_options
@click.option("--json", "as_json", is_flag=True, help="Print the result records as JSON.")
@click.option("--save", type=OUT_FILE, default=None, help="Also write the records to this JSON file.")
@force_option("the --save file")
def bench_cmd(artifacts, runtime, threads, warmup, runs, seconds, rounds, options, device_names, devices_file,
              accept_new_host_key, as_json, save, force):
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
    from ..console import progress_bar
    from ..devices import artifacts as art
    from ..devices.latency import BenchSettings

    if save:
        refuse_existing(force, save)
    settings = BenchSettings(runtime, threads, warmup, runs, seconds, rounds, parse_options(options))
    refs = art.resolve(artifacts)
    specs = api.resolve_devices(device_names, devices_file)
    bar = progress_bar(total=rounds * len(refs) * len(specs), desc="bench", unit="run", disable=as_json)
    records = api.bench(refs, settings, specs, accept_new_host_key,
                        progress=lambda spec, r, i, ref: bar.update(1))
    bar.close()
    _emit(records, as_json, save, _print_latency)


@click.command("eval")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="ImageFolder with one sub-folder per class (the ImageNet val layout works).")
@click.option("--limit", type=number(limits.LIMIT), default=None, help="Evaluate a seeded sample of this many images.")
@click.option("--runtime", type=runtime_choice(), default=None, help="Override the artifact's runtime.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE", help="Runner setting (see bench).")
@device_options
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on a Ray cluster (the `ray` extra): auto, HOST:PORT (its GCS) or local (start one "
                   "here). Each worker loads the artifact once, with the same runner settings (threads: "
                   "--set threads=N, default 1 per worker), and the record equals a local eval's, plus "
                   "`cluster`. The artifact travels once through Ray's object store and is cached on each "
                   "node by its sha256. --data must be a path every node sees (a shared file system), "
                   "unless --ray-ship-data.")
@click.option("--ray-ship-data", is_flag=True,
              help="With --ray: send the image files with the tasks instead (small sets on a local disk).")
@click.option("--ray-shared-artifacts", is_flag=True,
              help="With --ray: the artifacts' paths are seen by every node; nothing is shipped (each "
                   "worker checks the sha256 before loading).")
@click.option("--ray-workers", type=number(limits.WORKERS), default=None, metavar="N",
              help="With --ray: workers in the pool (default: the cluster's CPUs / threads).")
@click.option("--json", "as_json", is_flag=True, help="Print the result records as JSON.")
@click.option("--save", type=OUT_FILE, default=None, help="Also write the records to this JSON file.")
@force_option("the --save file")
def eval_cmd(artifacts, data_dir, limit, runtime, options, device_names, devices_file, accept_new_host_key,
             ray_address, ray_ship_data, ray_shared_artifacts, ray_workers, as_json, save, force):
    """Top-1 / top-5 of artifacts on labelled images, and agreement with the fp32 reference.

    Each artifact is fed through its own manifest's preprocessing. Core ML off macOS runs
    through vanillanet-edge's numpy MIL interpreter, and the result says so. On a remote
    --device, images are decoded here and only the input tensors travel; img/s is the
    device's own compute time.
    """
    from ..console import progress_bar
    from ..devices import artifacts as art

    if save:
        refuse_existing(force, save)
    settings = parse_options(options)
    refs = art.resolve(artifacts)
    specs = api.resolve_devices(device_names, devices_file)
    bars = []

    def progress_for(spec, ref):
        bars.append(progress_bar(desc=f"eval {ref.name}" + ("" if spec.is_local else f" on {spec.name}"),
                         unit="img", disable=as_json))
        return bars[-1].update

    if ray_address:       # on a Ray cluster instead of devices (cluster/ray_eval.py)
        from ..cluster.ray_eval import evaluate_on_ray

        if device_names:
            raise click.UsageError("--ray and --device are exclusive")
        records = evaluate_on_ray(refs, data_dir, ray_address, limit, runtime, settings,
                                  workers=ray_workers, ship_data=ray_ship_data,
                                  shared_artifacts=ray_shared_artifacts,
                                  progress_for=lambda ref: progress_for(specs[0], ref))
    else:
        records = api.evaluate(refs, data_dir, specs, limit, runtime, settings,
                               accept_new_host_key, progress_for)
    for bar in bars:
        bar.close()
    _emit(records, as_json, save, _print_accuracy)


@click.command("classify")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", type=number(limits.LABELS), default=5, show_default=True, help="Labels per image.")
@click.option("--runtime", type=runtime_choice(), default=None, help="Override the artifact's runtime.")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE", help="Runner setting (see bench).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def classify_cmd(artifact, images, top, runtime, options, as_json):
    """Top labels with probabilities for IMAGES, through ARTIFACT's own runtime and input contract.

    \b
    ARTIFACT is a folder written by `convert` (any target: Core ML runs through the numpy MIL
    interpreter off macOS) or a checkpoint (PyTorch). Images are resized and cropped as the
    manifest says; labels come from the manifest (the training folders' names, or ImageNet-1k
    names for 1000-class checkpoints). Unreadable images are skipped and listed.

    \b
    Examples:
      vanillanet-edge classify artifacts/tiny-tflite-fp32 photo.jpg
      vanillanet-edge classify artifacts/tiny-coreml-fp32 data/digits/val/3/*.png --top 3 --json
    """
    result = api.classify(artifact, images, top, runtime, parse_options(options))
    if as_json:
        click.echo(json_text(result, indent=2))
        return
    threads = result["session_settings"].get("threads")
    click.echo(f"{result['name']} ({result['runtime']}" + (f", {threads} threads)" if threads else ")"))
    for item in result["results"]:
        click.echo(item["image"])
        for rank, hit in enumerate(item["top"], 1):
            click.echo(f"  {rank}. {hit['label']:<24} {100 * hit['probability']:6.2f}%")
    echo_skipped(result)


def _emit(records, as_json, save, printer):
    if save:
        from ..fileio import write_json
        write_json(save, records)
    if as_json:
        click.echo(json_text(records, indent=2))
    else:
        printer(records)
        if save:
            click.echo(f"wrote {save}")
    if any(r.get("status", "ok" if r.get("ok") else "failed") == "failed" for r in records):
        sys.exit(1)


def failure_reason(record: dict) -> str:
    """Why a record failed: its error, else its reason; never an empty string."""
    text = str(record.get("error") or record.get("reason") or "").strip()
    return text or "no reason recorded (see the record's JSON: --json or --save)"


def _by_device(records):
    """Records grouped by the device they ran on, with a header line for each device."""
    groups: dict[str, list] = {}
    for r in records:
        groups.setdefault(r.get("device", {}).get("name", "local"), []).append(r)
    for name, recs in groups.items():
        m = next((r["machine"] for r in recs if r.get("machine")), None)
        where = recs[0].get("device", {}).get("where", "this machine")
        click.secho(device_line(name, where, m), bold=True)
        yield recs


def _print_latency(records):
    for group in _by_device(records):
        _print_latency_rows(group)
    click.echo("(ms; medians over all rounds, each artifact in its own process; 95% interval: where "
               "another call's median is expected to fall; CPU: process CPU time per inference, a "
               "latency at 1 thread that holds on a busy machine, the sum over threads otherwise)")


def _print_latency_rows(records):
    click.echo(f"{'artifact':<36}{'runtime':<13}{'median':>9}{'95% interval':>18}{'CPU':>9}{'p90':>9}{'p99':>9}"
               f"{'load':>9}{'RSS MiB':>9}{'GMAC/s':>8}  settings")
    warned = []
    for r in records:
        if r["status"] == "unavailable":
            click.secho(f"{r['name']:<36}{r['runtime']:<13} unavailable here: {r['reason']}", fg="yellow")
            continue
        if not r["ok"]:
            click.secho(f"{r['name']:<36}{r['runtime']:<13} FAILED: {failure_reason(r)}", fg="red")
            continue
        lat, ss = r["latency"], r["session_settings"]
        extra = ", ".join(f"{k}={v}" for k, v in ss.items() if k in
                          ("inference_precision", "kernels", "threads", "engine", "providers"))
        iv = r["median_interval_ms"]
        interval = f"{iv['low_ms']:.2f}-{iv['high_ms']:.2f}"
        cpu = r.get("cpu_ms") or {}
        cpu_text = f"{cpu['median_ms']:>8.2f}m" if cpu.get("median_ms") is not None else f"{'-':>9}"
        click.echo(f"{r['name']:<36}{r['runtime']:<13}{lat['median_ms']:>8.2f}m{interval:>18}{cpu_text}"
                   f"{lat['p90_ms']:>8.2f}m{lat['p99_ms']:>8.2f}m{r['load_ms']:>8.0f}m{r['peak_rss_mib']:>9.0f}"
                   f"{(r['gmacs_per_s'] or 0):>8.1f}  {extra}")
        if r.get("load_warning"):
            warned.append(f"warning: {r['name']}: {r['load_warning']}")
    for line in warned:
        click.secho(line, fg="yellow", err=True)


def _print_accuracy(records):
    for group in _by_device(records):
        _print_accuracy_rows(group)
    shown = set()   # every artifact reads the same files: list each set of skipped files once
    for r in records:
        key = repr(r.get("skipped_files"))
        if r.get("skipped") and key not in shown:
            shown.add(key)
            echo_skipped(r)


def _print_accuracy_rows(records):
    click.echo(f"{'artifact':<36}{'engine':<24}{'top-1':>8}{'top-5':>8}{'agree fp32':>12}{'img/s':>9}")
    for r in records:
        if not r["ok"]:
            click.secho(f"{r['name']:<36} FAILED: {failure_reason(r)}", fg="red")
            continue
        agree = f"{100 * r['agreement_with_fp32']:.2f}%" if r["agreement_with_fp32"] is not None else "-"
        engine = r["engine"] if len(r["engine"]) < 23 else r["engine"][:20] + "..."
        click.echo(f"{r['name']:<36}{engine:<24}{100 * r['top1']:>7.2f}%{100 * r['top5']:>7.2f}%"
                   f"{agree:>12}{(r['images_per_s'] or 0):>9.0f}")
