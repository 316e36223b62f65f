"""Options and helpers shared by several command modules (the --set parser, runtime choice,
device options and header lines, skipped-file lines)."""
from __future__ import annotations

from pathlib import Path

import click


def runtime_choice():
    from ..devices.registry import runtime_names
    return click.Choice(runtime_names())


def parse_options(pairs) -> dict:
    """--set KEY=VALUE pairs -> runner settings (digits become ints)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        out[key.replace("-", "_")] = int(value) if value.isdigit() else value
    return out


def device_options(fn):
    """--device / --devices / --accept-new-host-key, shared by bench, eval and profile."""
    fn = click.option("--accept-new-host-key", is_flag=True,
                      help="Trust an SSH device's host key on FIRST contact (printed, saved to its "
                           "known_hosts); a changed key is always refused.")(fn)
    fn = click.option("--devices", "devices_file", type=click.Path(path_type=Path), default=None,
                      help="Devices file (default: ./devices.toml; see `vanillanet-edge devices --help`).")(fn)
    fn = click.option("--device", "device_names", multiple=True, metavar="NAME",
                      help="Run on this device of the devices file; repeat for several. Default: local.")(fn)
    return fn


def device_line(name: str, where: str, machine: dict | None) -> str:
    """"device NAME (WHERE): CPU, cores, ISA, OS": the header of a device's results."""
    desc = (f"{machine['cpu_model']}, {machine['logical_cores']} cores, ISA {' '.join(machine['isa']) or '-'}, "
            f"{machine['os']}" if machine else "no machine description (device not reached)")
    return f"device {name} ({where}): {desc}"


def echo_skipped(record: dict) -> None:
    """The unreadable images a run skipped (record: skipped, skipped_files), one line each."""
    if record.get("skipped"):
        click.secho(f"{record['skipped']} unreadable image(s) skipped:", fg="yellow")
        for s in record.get("skipped_files", []):
            click.echo(f"  {s['file']}: {s['why']}")
        if record["skipped"] > len(record.get("skipped_files", [])):
            click.echo(f"  ... and {record['skipped'] - len(record.get('skipped_files', []))} more (see the JSON)")
