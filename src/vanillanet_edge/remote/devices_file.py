"""devices.toml: the named machines bench and eval can run on.

    [devices.pi5]
    url = "ssh://pi@192.168.1.20"          # or ssh://user@host:port ; a device named local is this machine
    identity_file = "~/.ssh/id_ed25519"     # key only: passwords are never read from or written to a file
    known_hosts = "~/.ssh/known_hosts"      # host keys are checked against this file
    python = "/home/pi/venv/bin/python"     # the device's Python (needs numpy and the runtimes)
    workdir = "~/.cache/vanillanet-edge"    # where the runner and the artifacts go on the device
    runtimes = ["onnxruntime", "litert"]    # what to use there; empty = every runtime it has

A device named `local` always exists (this machine, no SSH) unless the file redefines it.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import VanillaNetEdgeError, did_you_mean

DEFAULT_FILE = "devices.toml"
LOCAL = "local"
# Key names that would mean a secret in our file: refused, never stored or read.
SECRET_KEYS = ("password", "passphrase", "pass", "secret", "token")


class DeviceConfigError(VanillaNetEdgeError):
    pass


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    url: str = LOCAL                       # "local" or ssh://user@host[:port]
    identity_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    python: str = "python3"
    workdir: str = "~/.cache/vanillanet-edge"
    runtimes: tuple[str, ...] = ()
    connect_timeout_s: float = 10.0
    run_timeout_s: float = 900.0
    keep_cache: bool = True                # keep sent artifacts for the next call (content-addressed)
    options: dict = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.url == LOCAL

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 22

    @property
    def user(self) -> str | None:
        return urlsplit(self.url).username

    def describe(self) -> str:
        return "this machine" if self.is_local else f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


KEYS = {  # key -> (type, meaning); the dataclass defaults are the defaults
    "url": (str, "'local' or ssh://user@host[:port]"),
    "identity_file": (str, "private key file for SSH (an ssh-agent works too)"),
    "known_hosts": (str, "known_hosts file the host key is checked against"),
    "python": (str, "the device's Python interpreter (absolute path recommended)"),
    "workdir": (str, "folder on the device for the runner and artifacts"),
    "runtimes": (list, "runtimes to use there; empty = all it has"),
    "connect_timeout_s": ((int, float), "seconds to wait for the SSH connection"),
    "run_timeout_s": ((int, float), "seconds one benchmark round or eval may take"),
    "keep_cache": (bool, "keep sent artifacts on the device for later calls"),
    "options": (dict, "runner settings for this device, e.g. {device = 'NPU'} for OpenVINO"),
}


def _check_url(name: str, url: str) -> None:
    if url == LOCAL:
        return
    parts = urlsplit(url)
    try:
        parts.port
    except ValueError:
        raise DeviceConfigError(f"devices.{name}.url: bad port in {url!r}") from None
    if parts.scheme != "ssh" or not parts.hostname:
        raise DeviceConfigError(f"devices.{name}.url: {url!r} is neither 'local' nor ssh://user@host[:port]",
                                hint="e.g. url = \"ssh://pi@192.168.1.20:22\"")
    if parts.password is not None:
        raise DeviceConfigError(f"devices.{name}.url holds a password",
                                hint="vanillanet-edge never stores passwords: use a key (identity_file) "
                                     "or an ssh-agent, and remove the password from the URL")


def parse_devices(raw: dict, source: str = DEFAULT_FILE, base: Path | None = None) -> dict[str, DeviceSpec]:
    """Validated device specs by name from the parsed TOML (`[devices.NAME]` tables)."""
    unknown = [k for k in raw if k != "devices"]
    if unknown:
        raise DeviceConfigError(f"{source}: unknown top-level key '{unknown[0]}'",
                                hint="devices go in [devices.NAME] tables")
    specs = {LOCAL: DeviceSpec(LOCAL)}
    for name, table in raw.get("devices", {}).items():
        if not isinstance(table, dict):
            raise DeviceConfigError(f"{source}: devices.{name} must be a table ([devices.{name}])")
        for key in table:
            if key.lower() in SECRET_KEYS:
                raise DeviceConfigError(f"{source}: devices.{name}.{key} looks like a secret",
                                        hint="vanillanet-edge never reads or stores passwords: use SSH keys "
                                             "(identity_file) or an ssh-agent")
            if key not in KEYS:
                raise DeviceConfigError(f"{source}: unknown key devices.{name}.{key}",
                                        hint=f"{did_you_mean(key, KEYS)}keys: {', '.join(KEYS)}")
            want, meaning = KEYS[key]
            value = table[key]
            if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
                raise DeviceConfigError(f"{source}: devices.{name}.{key} has the wrong type ({value!r})",
                                        hint=meaning)
        url = table.get("url", LOCAL if name == LOCAL else "")
        if not url:
            raise DeviceConfigError(f"{source}: devices.{name} has no url", hint=KEYS["url"][1])
        _check_url(name, url)
        values = {k: v for k, v in table.items() if k != "url"}
        for key in ("identity_file", "known_hosts"):   # local files: relative to the devices file
            if key in values and base is not None and not values[key].startswith("~"):
                values[key] = str((base / values[key]).resolve()) if not Path(values[key]).is_absolute() else values[key]
        if "runtimes" in values:
            _check_runtimes(name, values["runtimes"], source)
            values["runtimes"] = tuple(values["runtimes"])
        specs[name] = DeviceSpec(name=name, url=url, **values)
    return specs


def _check_runtimes(name: str, runtimes: list, source: str) -> None:
    from ..devices.registry import runtime_names

    for r in runtimes:
        if r not in runtime_names():
            raise DeviceConfigError(f"{source}: devices.{name}.runtimes: unknown runtime {r!r}",
                                    hint=f"{did_you_mean(str(r), runtime_names())}runtimes: {', '.join(runtime_names())}")


def load_devices(path: str | Path | None = None) -> dict[str, DeviceSpec]:
    """The devices of PATH (default ./devices.toml; only `local` when that default is absent)."""
    given = path is not None
    path = Path(path or DEFAULT_FILE).expanduser()
    if not path.exists():
        if given:
            raise DeviceConfigError(f"devices file {path} not found",
                                    hint="write one (see `vanillanet-edge devices --help`) or leave "
                                         "--devices out to use only `local`")
        return {LOCAL: DeviceSpec(LOCAL)}
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeviceConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_devices(raw, str(path), path.parent)


def pick(specs: dict[str, DeviceSpec], name: str) -> DeviceSpec:
    if name not in specs:
        raise DeviceConfigError(f"no device named '{name}'",
                                hint=f"{did_you_mean(name, specs)}devices: {', '.join(specs)} "
                                     f"(add it to {DEFAULT_FILE} or pass --devices FILE)")
    return specs[name]
