"""`vanillanet-edge devices ...`: the machines bench and eval can run on (devices.toml)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api
from ..fileio import json_text

EXAMPLE = '''# devices.toml: where `bench --device NAME` and `eval --device NAME` run.
# A device named "local" (this machine) always exists.

[devices.pi5]
url = "ssh://pi@192.168.1.20"           # ssh://user@host[:port]
identity_file = "~/.ssh/id_ed25519"      # SSH key (or leave out and use ssh-agent); never a password
known_hosts = "~/.ssh/known_hosts"       # the device's host key must be in here (or --accept-new-host-key)
python = "/home/pi/venv/bin/python"      # Python 3.9+ with numpy and the runtimes
workdir = "~/.cache"                     # we make workdir/vanillanet-edge/ for runner and artifacts
                                         # (`devices clean pi5` removes only what we put there)
runtimes = ["onnxruntime", "litert"]     # what to use there; leave out for every runtime it has
connect_timeout_s = 10
run_timeout_s = 900                      # per benchmark round / eval
keep_cache = true                        # keep sent artifacts so the next call need not resend them
# options = { device = "NPU" }          # runner settings for this device (OpenVINO device, threads...)
'''


@click.group("devices")
def devices_group():
    """Remote devices: check them, clean them, write an example devices.toml.

    \b
    bench and eval take --device NAME (repeatable) to run on machines listed in a
    devices.toml: the same harness runs there (a small self-contained runner that needs
    only Python, numpy and the runtime), artifacts are sent once (content-addressed) and the
    results come back with the device's own machine description. Host keys are checked
    against known_hosts; no password is ever asked for or stored (SSH keys / ssh-agent).

    \b
    Examples:
      vanillanet-edge devices example > devices.toml     # then edit
      vanillanet-edge devices check                      # every device in ./devices.toml
      vanillanet-edge bench artifacts/ --device local --device pi5
      vanillanet-edge devices clean pi5                  # remove what we put on the device
    """


@devices_group.command("check")
@click.argument("names", nargs=-1)
@click.option("--devices", "devices_file", type=click.Path(path_type=Path), default=None,
              help="Devices file (default: ./devices.toml).")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust a device's host key on first contact (printed and saved); changed keys are refused.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def check_cmd(names, devices_file, accept_new_host_key, as_json):
    """Reach each device (all, or the NAMES given) and report what it is and what it has.

    Reports reachable or not (and why), OS and architecture, CPU model and ISA flags, memory,
    Python, which runtimes import there with their versions, and for anything missing the
    command that would install it. Exit status 1 when any device is unreachable.
    """
    reports = api.check_devices(list(names), devices_file, accept_new_host_key)
    if as_json:
        click.echo(json_text(reports, indent=2))
    else:
        for r in reports:
            _print_report(r)
    if not all(r["reachable"] for r in reports):
        sys.exit(1)


def _print_report(r: dict) -> None:
    head = f"{r['device']} ({r['where']})"
    if r.get("accepted_host_key"):
        click.secho(f"{head}: accepted NEW host key {r['accepted_host_key']}", fg="yellow")
    if not r["reachable"]:
        click.secho(f"{head}: NOT reachable [{r['kind']}]\n  {r['error']}", fg="red")
        return
    click.secho(f"{head}: reachable", fg="green", bold=True)
    if r.get("error"):                 # reached, but it cannot run the runner
        click.secho(f"  {r['error']}", fg="red")
        for m in r.get("missing", []):
            click.secho(f"  missing {m['what']}: {m['install']}", fg="yellow")
        return
    click.echo(f"  {r['os']} {r['arch']}, {r['cpu_model']}, {r['logical_cores']} cores, "
               f"{r['memory_gib']} GiB; ISA {' '.join(r['isa']) or '-'}")
    click.echo(f"  python {r['python']} ({r['python_executable']})")
    for name, info in r.get("runtimes", {}).items():
        mark = "ok " if info["available"] else "-- "
        ver = f" {info['version']}" if info.get("version") else ""
        note = "" if info["reason"].startswith("ok") else f": {info['reason']}"
        click.echo(f"  {mark}{name}{ver}{note}")
    for m in r.get("missing", []):
        click.secho(f"  missing {m['what']}: {m['install']}", fg="yellow")


@devices_group.command("clean")
@click.argument("names", nargs=-1, required=True)
@click.option("--devices", "devices_file", type=click.Path(path_type=Path), default=None,
              help="Devices file (default: ./devices.toml).")
def clean_cmd(names, devices_file):
    """Remove what vanillanet-edge put on the devices (runner, cached artifacts).

    Only workdir/vanillanet-edge/ is touched, and only when it holds our marker: the runners,
    artifacts/ and our marker go, then the folder itself if nothing else is in it. Other files
    are never removed.
    """
    for line in api.clean_devices(list(names), devices_file):
        click.echo(line)


@devices_group.command("example")
def example_cmd():
    """Print a commented devices.toml to start from."""
    click.echo(EXAMPLE, nl=False)
