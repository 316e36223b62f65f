"""Options and helpers shared by several command modules: the range-checked number type, the
output path types and the one rule for named output files, the --set parser, runtime choice,
device options and header lines, skipped-file lines."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import click

from .. import limits
from ..errors import VanillaNetEdgeError


class Number(click.ParamType):
    """An int or float option in a `limits.Range`: nan, inf and anything outside the range are
    refused while the arguments are parsed (click's "Invalid value for '--limit': ...", exit 2),
    before any work or any write."""

    def __init__(self, rng: limits.Range):
        self.rng = rng
        self.name = "integer" if rng.kind is int else "number"

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            self.fail(f"{value!r} is not {self.rng.describe()}", param, ctx)
        if isinstance(value, (int, float)):          # a default, or a value given from Python
            number = value
        else:
            text = str(value).strip()
            try:
                number = int(text, 10) if self.rng.kind is int else float(text)
            except ValueError:
                self.fail(f"{value!r} is not {self.rng.describe()}", param, ctx)
        if self.rng.kind is float:
            try:
                number = float(number)
            except OverflowError:
                self.fail(f"{value!r} is not {self.rng.describe()}", param, ctx)
        problem = self.rng.problem(number)
        if problem:
            self.fail(f"{value} {problem}", param, ctx)
        return number


def number(rng: limits.Range) -> Number:
    """The click type of an option holding a number in `rng` (a limits.Range)."""
    return Number(rng)


class OutputPath(click.Path):
    """A path a command writes: a folder (`folder=True`, e.g. --out DIR) or a file (--save FILE).

    Refused while parsing, never as a traceback later: an empty path; for a folder, an existing
    file or anything else that is not a folder (a broken link included); for a file, an existing
    folder, device, fifo or socket (an atomic rename would replace a device node such as
    /dev/null); and any path below something that is not a folder. How a folder is then claimed
    is the command's business (the run folder's lock, atomic publishing), and so is an existing
    file (`refuse_existing`)."""

    def __init__(self, folder: bool):
        super().__init__(path_type=Path, file_okay=not folder, dir_okay=folder)
        self.folder = folder

    def convert(self, value, param, ctx):
        if not str(value).strip():
            self.fail("an empty path names nothing to write", param, ctx)
        path = Path(super().convert(value, param, ctx))
        for above in path.absolute().parents:       # the nearest existing folder above it
            if os.path.lexists(above):
                if not above.is_dir():
                    self.fail(f"{above} is not a folder, so {path} cannot be created below it", param, ctx)
                break
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            self.fail(f"{path}: {exc.strerror}", param, ctx)
        if mode is None and os.path.lexists(path):
            self.fail(f"{path} is a broken symbolic link", param, ctx)
        if self.folder and mode is not None and not stat.S_ISDIR(mode):
            self.fail(f"{path} exists and is not a folder", param, ctx)
        if not self.folder and mode is not None and not stat.S_ISREG(mode):
            self.fail(f"{path} exists and is not a regular file", param, ctx)
        return path


OUT_FOLDER = OutputPath(folder=True)
OUT_FILE = OutputPath(folder=False)


class OutputExistsError(VanillaNetEdgeError):
    """A file a command would write is already there."""


def refuse_existing(force: bool, *paths: Path) -> None:
    """The one rule for every file written under a name the user gives (fuse --out, train --out,
    bench/eval/profile --save, init): an existing file (or a link at that name) is replaced only
    with --force. Checked before any work starts."""
    if force:
        return
    for path in paths:
        if os.path.lexists(path):
            raise OutputExistsError(f"{path} exists; pass --force to replace it",
                                    hint="or give a name that is not taken")


def force_option(what: str):
    """--force for a command that writes the named file(s) `what`."""
    return click.option("--force", is_flag=True, help=f"Replace {what} if it exists (else refused).")


def runtime_choice():
    from ..devices.registry import runtime_names
    return click.Choice(runtime_names())


# Runner settings that are numbers (every other setting is a runtime's own word): checked here.
NUMERIC_SETTINGS = {"threads": limits.THREADS}


def parse_options(pairs) -> dict:
    """--set KEY=VALUE pairs -> runner settings (digits become ints, true/false booleans; a
    numeric setting such as threads is range-checked like the option of the same name)."""
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        if key in NUMERIC_SETTINGS:
            try:
                out[key] = Number(NUMERIC_SETTINGS[key]).convert(value, None, None)
            except click.BadParameter as exc:
                raise click.BadParameter(f"{key}: {exc.message}", param_hint="--set") from None
            continue
        lower = value.strip().lower()
        out[key] = int(value) if value.isdigit() else (lower == "true") if lower in ("true", "false") else value
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
