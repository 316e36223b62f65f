"""`run` (the whole pipeline, resumable) and `init` (a commented pipeline file)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api
from ..fileio import json_text
from .options import OUT_FILE, OUT_FOLDER, refuse_existing


@click.command("run")
@click.argument("pipeline", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=OUT_FOLDER, default=Path("runs/demo"), show_default=True,
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
    # In quiet mode (no -v) the chatter is kept in OUT/toolchain.log, opened by the pipeline
    # only once the pipeline file is valid and OUT is claimed: a refused run writes nothing.
    result = api.run_pipeline(pipeline, out, only, force, log=(lambda m: None) if as_json else click.echo)
    if as_json:
        click.echo(json_text({k: v for k, v in result.items()}, indent=2))
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
    for row in result["summary"]:        # a failed measurement says why here, not only in the JSON
        if row["status"] == "failed":
            click.secho(f"bench failed: {row['artifact']} ({row['runtime']}"
                        + (f", {row['device']}" if dw else "") + f"): {_one_line(row.get('note'))}", fg="red")
    if result.get("verdict"):
        click.echo("")
        for line in result["verdict"]:
            click.echo(line)
    for f in result["failures"]:
        click.secho(f"failed: {f['step']}: {f['error']}", fg="red")
    click.echo(f"\nrun folder: {result['out']}")
    if Path(result["report"]).exists():
        click.echo(f"report: {result['report']}")
    if result.get("try_it"):
        click.echo(f"try an artifact: {result['try_it']}")


def _one_line(text) -> str:
    """A record's error in one line: a traceback's last line (the exception), else the first."""
    lines = [line.strip() for line in str(text or "").strip().splitlines() if line.strip()]
    if not lines:
        return "no reason recorded (see results/bench.json)"
    return (lines[-1] if lines[0].startswith("Traceback") else lines[0]) + (
        " (more in results/bench.json)" if len(lines) > 1 else "")


@click.command("init")
@click.argument("path", type=OUT_FILE, default=Path("pipeline.toml"))
@click.option("--force", is_flag=True, help="Replace PATH if it exists (else refused).")
def init_cmd(path, force):
    """Write a commented example pipeline file (every key, at the built-in demo's values)."""
    from ..fileio import atomic_path
    from ..pipeline.config import example_toml

    refuse_existing(force, path)
    with atomic_path(path) as tmp:
        tmp.write_text(example_toml())
    click.echo(f"wrote {path}; edit it, then: vanillanet-edge run {path} --out runs/mine")
