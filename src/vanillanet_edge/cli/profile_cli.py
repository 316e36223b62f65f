"""`vanillanet-edge profile`: per-layer time of artifacts, from each runtime's own profiler.

Registered in cli.py with `main.add_command(profile_cmd)`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import limits
from ..fileio import json_text
from .friendly import FriendlyCommand
from .options import OUT_FILE, device_line, device_options, force_option, number, parse_options, refuse_existing

# Standalone commands cache their help option on first use: give them -h themselves (as report_cli does).
HELP = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
NAME_WIDTH = 56


@click.command("profile", cls=FriendlyCommand, context_settings=HELP)
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--runs", type=number(limits.RUNS), default=20, show_default=True,
              help="Profiled inferences after warm-up; layer times are their mean. As many plain "
                   "(unprofiled) runs are timed for comparison.")
@click.option("--warmup", type=number(limits.WARMUP), default=5, show_default=True, help="Untimed inferences first.")
@click.option("--threads", type=number(limits.THREADS), default=None, help="Intra-op threads (default: the runtime's).")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Runner setting, as for `bench`: precision_hint=f32 (OpenVINO), provider=... (ONNX Runtime).")
@click.option("--top", type=number(limits.TOP), default=15, show_default=True, help="Layers listed per artifact (0: all).")
@click.option("--ops/--no-ops", "op_probe", default=True, show_default=True,
              help="LiteRT (.tflite): time each distinct layer as a one-op model in the same runtime and "
                   "settings (the op probe), since LiteRT's Python API has no profiler.")
@click.option("--peak/--no-peak", default=True, show_default=True,
              help="Op probe: also measure the device's matmul peak of the artifact's precision "
                   "(a few seconds, by its runtimes) and give each layer's GMAC/s as a share of it.")
@device_options
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON instead of tables.")
@click.option("--save", type=OUT_FILE, default=None, help="Also write the records to this JSON file.")
@force_option("the --save file")
def profile_cmd(artifacts, runs, warmup, threads, options, top, op_probe, peak, device_names, devices_file,
                accept_new_host_key, as_json, save, force):
    """Where the time goes, layer by layer, per artifact, from each runtime's OWN profiler.

    \b
    ARTIFACTS are artifact folders from `convert`, or folders of them. Per artifact: the
    slowest layers as the runtime executed them (after its own fusions: names, op types
    and kernels are the runtime's), their time per inference and share of the total, then
    the same summed by op type. The runner's usual settings apply (OpenVINO runs "fp32"
    models in bf16 on AMX CPUs unless --set precision_hint=f32), so what is profiled is
    what `bench` times.

    \b
    Profilers used:
      onnxruntime  ONNX Runtime's session profiler (per-node kernel time, execution provider)
      openvino     OpenVINO's performance counters (per-node real time, exec_type such as
                   brgconv_avx512_I8, which shows the precision the kernel really ran in)
      litert       no profiler from Python: the op probe instead (--ops, the default) cuts
                   each distinct layer out of the .tflite into a one-op model, times it with
                   the same threads and kernels, and reports GMAC/s per layer against the
                   median layer and the device's matmul peak; "slow" flags layers under
                   1/5 of the median
    Other artifacts are still profiled when one runtime has no profiler.

    \b
    On a --device of devices.toml (see `vanillanet-edge devices --help`) the artifact is sent
    there and profiled by the device's own runtimes, the op probe and its matmul peak
    included, exactly as here; each record names its device and carries its machine
    description. A device that cannot be reached fails its records and the others go on.

    \b
    Profilers add their own cost per layer, so layer times do not add up to a plain
    inference; each artifact also gets the median of plain timed runs (same settings,
    no profiler) to compare. Read shares, not absolute times, on tiny models.
    Exit status: 0 when at least one artifact was profiled and none failed, 1 otherwise.

    \b
    Examples:
      vanillanet-edge profile artifacts/                       # every artifact folder in it
      vanillanet-edge profile artifacts/v5-openvino-int8 --runs 50 --top 0
      vanillanet-edge profile artifacts/v5-openvino-fp32 --set precision_hint=f32 --threads 1
      vanillanet-edge profile artifacts/ --json --save runs/r1/profile.json
      vanillanet-edge profile artifacts/v5-tflite-int8 --device pi5 --threads 4   # on a board
    """
    from .. import api
    from ..devices.artifacts import resolve

    if save:
        refuse_existing(force, save)
    settings = parse_options(options)
    refs = resolve(artifacts)
    specs = api.resolve_devices(device_names, devices_file)
    shown: list[str] = []

    def show(record: dict) -> None:
        device = record["device"]
        if device_names and shown[-1:] != [device["name"]]:     # no --device: printed as it always was
            click.secho(f"\n{device_line(device['name'], device['where'], record.get('machine'))}", bold=True)
            shown.append(device["name"])
        _print_record(record, top, device["name"] if device_names else None)

    records = api.profile(refs, specs, accept_new_host_key, on_record=None if as_json else show,
                          runs=runs, warmup=warmup, threads=threads, options=settings, op_probe=op_probe, peak=peak)
    if as_json:
        click.echo(json_text(records, indent=2))
    if save:
        from ..fileio import write_json
        write_json(save, records)
        if not as_json:
            click.echo(f"wrote {len(records)} records to {save}")
    if any(r["status"] == "failed" for r in records) or not any(r["status"] == "ok" for r in records):
        sys.exit(1)


def _short(text: str, width: int) -> str:
    """Cut the middle out of long names: the head says where, the tail says what."""
    text = str(text)
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "~" + text[-(width - 1 - head):]


def _ms(v: float) -> str:
    return f"{v:.4f}" if v < 1 else f"{v:.2f}"


def _profiler_cells(row: dict) -> str:
    return (f"{_short(row['op_type'], 18):<18} {_short(row.get('exec_type') or '-', 24):<24} "
            f"{row.get('precision') or '-':<5} {_ms(row['time_ms']):>8} {100 * row['share']:>6.1f}%")


def _probe_cells(row: dict) -> str:
    g, each = row.get("gmacs_per_s"), row.get("ms_each")
    rates = (f"{g:>8.1f} {row['vs_median']:>7.2f} " + (f"{100 * row['fraction_of_peak']:>5.1f}%"
                                                       if row.get("fraction_of_peak") else f"{'-':>6}")
             if g else f"{'-':>8} {'-':>7} {'-':>6}")
    return (f"{row['calls']:>5} {_ms(each) if each is not None else '-':>8} {_ms(row['time_ms']):>8} "
            f"{100 * row['share']:>6.1f}% {rates}  {row.get('flag') or row.get('error') or ''}")


# The two kinds of layer_profile record, one table each: the runtime profilers' (onnxruntime,
# openvino) and the op probe's (litert): (column headings after `layer`, one row's cells).
PROFILER_TABLE = (f"{'op type':<18} {'exec / kernel':<24} {'prec':<5} {'ms':>8} {'share':>7}", _profiler_cells)
PROBE_TABLE = (f"{'calls':>5} {'ms each':>8} {'ms':>8} {'share':>7} {'GMAC/s':>8} {'/median':>7} {'/peak':>6}  flag",
               _probe_cells)


def _print_record(r: dict, top: int, device: str | None = None) -> None:
    title = f"{r['name']}  ({r['runtime']}, {r.get('precision') or '?'} artifact)" + (f" on {device}" if device else "")
    click.secho(f"\n{title}", bold=True)
    if r["status"] != "ok":
        color = "yellow" if r["status"] == "not_offered" else "red"
        click.secho(f"  {'not offered' if r['status'] == 'not_offered' else 'failed'}: {r['reason']}", fg=color)
        if r.get("hint"):
            click.echo(f"  hint: {r['hint']}")
        return
    ss = r["session_settings"]
    probe = r.get("median_gmacs_per_s", False) is not False
    if probe:
        click.echo(f"  threads={ss.get('threads')}, kernels={ss.get('kernels')} ({ss.get('interpreter')})")
        click.echo(f"  profiler: {r['profiler']}")
        click.echo(f"  layers sum to {_ms(r['total_ms'])} ms per inference one op at a time; whole artifact: "
                   f"{_ms(r['wall_ms_per_inference'])} ms median")
        med, peak = r.get("median_gmacs_per_s"), r.get("peak_gmacs_per_s")
        click.echo(f"  median layer {med:.1f} GMAC/s" if med else "  no layer with MACs")
        click.echo(f"  matmul peak: {peak:.1f} GMAC/s, {r.get('peak_note')}" if peak else f"  matmul peak: {r.get('peak_note')}")
    else:
        click.echo("  " + ", ".join(f"{k}={v}" for k, v in ss.items() if k in ("inference_precision", "providers", "threads")))
        click.echo(f"  profiler: {r['profiler']}; {r['runs']} profiled runs after {r['warmup']} warm-up")
        click.echo(f"  layers sum to {_ms(r['total_ms'])} ms per inference under the profiler; "
                   f"plain runs: {_ms(r['wall_ms_per_inference'])} ms median")
    headings, cells = PROBE_TABLE if probe else PROFILER_TABLE
    rows = r["rows"] if top <= 0 else r["rows"][:top]
    click.echo(f"  {'layer':<{NAME_WIDTH}} {headings}")
    for row in rows:
        click.echo(f"  {_short(row['name'], NAME_WIDTH):<{NAME_WIDTH}} {cells(row)}")
    rest = r["rows"][len(rows):]
    if rest:
        click.echo(f"  ... {len(rest)} more layers, {100 * sum(x['share'] for x in rest):.1f}% of the time "
                   f"(--top 0 lists all)")
    if probe:
        slow = [row for row in r["rows"] if row.get("flag") == "slow"]
        if slow:
            click.secho(f"  {len(slow)} layer kind(s) under {r['slow_fraction']:g} of the median GMAC/s: "
                        f"{', '.join(row['name'] for row in slow)}", fg="yellow")
        return
    from ..devices.profiling import group_by_op_type

    click.echo(f"  {'by op type':<{NAME_WIDTH}} {'layers':>6} {'ms':>8} {'share':>7}")
    for g in group_by_op_type(r):
        click.echo(f"  {_short(g['op_type'], NAME_WIDTH):<{NAME_WIDTH}} {g['layers']:>6} "
                   f"{_ms(g['time_ms']):>8} {100 * g['share']:>6.1f}%")
