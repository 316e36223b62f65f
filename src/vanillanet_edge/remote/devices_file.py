"""devices.toml: the named machines bench and eval can run on.

    [devices.pi5]
    url = "ssh://pi@192.168.1.20"          # or ssh://user@host:port ; a device named local is this machine
    identity_file = "~/.ssh/id_ed25519"     # key only: passwords are never read from or written to a file
    known_hosts = "~/.ssh/known_hosts"      # host keys are checked against this file
    python = "/home/pi/venv/bin/python"     # the device's Python (needs numpy and the runtimes)
    workdir = "~/.cache"                    # we make and use only workdir/vanillanet-edge/ on the device
    runtimes = ["onnxruntime", "litert"]    # what to use there; empty = every runtime it has

A device named `local` always exists (this machine, no SSH) unless the file redefines it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import tomllib

from .. import limits
from ..errors import VanillaNetEdgeError, did_you_mean

DEFAULT_FILE = "devices.toml"
LOCAL = "local"
# Key names that would mean a secret in our file: refused, never stored or read.
SECRET_KEYS = ("password", "passphrase", "pass", "secret", "token")
# Our own folder inside the device's workdir: the only place we create, mark and clean.
OWN_FOLDER = "vanillanet-edge"


class DeviceConfigError(VanillaNetEdgeError):
    pass


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    url: str = LOCAL                       # "local" or SCHEME://...: its transport (transport.TRANSPORTS)
    identity_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    python: str = "python3"
    workdir: str = "~/.cache"              # we use only workdir/vanillanet-edge/ (own_dir)
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

    @property
    def own_dir(self) -> str:
        """The device folder that is ours: created, marked and cleaned by us, inside workdir."""
        return f"{self.workdir.rstrip('/')}/{OWN_FOLDER}"

    def describe(self) -> str:
        return "this machine" if self.is_local else f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


KEYS = {  # key -> (type, meaning); the dataclass defaults are the defaults
    "url": (str, "'local' or ssh://user@host[:port]"),
    "identity_file": (str, "private key file for SSH (an ssh-agent works too)"),
    "known_hosts": (str, "known_hosts file the host key is checked against"),
    "python": (str, "the device's Python interpreter (absolute path recommended)"),
    "workdir": (str, f"folder on the device; we make our own {OWN_FOLDER}/ in it for the runner and artifacts"),
    "runtimes": (list, "runtimes to use there; empty = all it has"),
    "connect_timeout_s": ((int, float), "seconds to wait for the SSH connection"),
    "run_timeout_s": ((int, float), "seconds one benchmark round or eval may take"),
    "keep_cache": (bool, "keep sent artifacts on the device for later calls"),
    "options": (dict, "runner settings for this device, e.g. {device = 'NPU'} for OpenVINO"),
}


# The numbers among KEYS and their ranges (limits.py, the table every option and key uses).
NUMBERS = {"connect_timeout_s": limits.TIMEOUT_S, "run_timeout_s": limits.TIMEOUT_S}


def _check_url(name: str, url: str) -> None:
    """A URL whose scheme a transport serves (transport.TRANSPORTS) and that its class accepts."""
    from .transport import transport_class, url_forms

    cls = transport_class(url)
    if cls is None:
        raise DeviceConfigError(f"devices.{name}.url: {url!r} is neither {url_forms()}",
                                hint="e.g. url = \"ssh://pi@192.168.1.20:22\"")
    try:
        port = urlsplit(url).port
    except ValueError:
        port = None                        # the transport's own check names a bad port
    if port is not None and limits.PORT.problem(port):
        raise DeviceConfigError(f"devices.{name}.url: port {port} in {url!r} {limits.PORT.problem(port)}",
                                hint="leave the port out for 22, e.g. url = \"ssh://pi@192.168.1.20\"")
    problem = cls.check_url(name, url)
    if problem:
        raise DeviceConfigError(problem[0], hint=problem[1])


def _check_workdir(name: str, workdir: str, source: str) -> None:
    """Refuse a workdir that is the home or root folder, or that climbs with '..'."""
    parts = [p for p in workdir.strip().split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DeviceConfigError(f"{source}: devices.{name}.workdir {workdir!r} has a '..' component",
                                hint="give a plain folder such as \"~/.cache\" (we make our own "
                                     f"{OWN_FOLDER}/ inside it)")
    if not parts or parts == ["~"]:
        raise DeviceConfigError(f"{source}: devices.{name}.workdir {workdir!r} is the home or root folder "
                                "(or empty)",
                                hint="give a folder below it, such as \"~/.cache\" (we make our own "
                                     f"{OWN_FOLDER}/ inside it and `devices clean` removes only that)")


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
            if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise DeviceConfigError(f"{source}: devices.{name}.{key} holds a control character "
                                        f"({value!r})", hint=meaning)
            rng = NUMBERS.get(key)
            problem = rng.problem(value) if rng else None
            if problem:
                raise DeviceConfigError(f"{source}: devices.{name}.{key} {problem}, got {value!r}", hint=meaning)
        threads = table.get("options", {}).get("threads")
        if threads is not None and limits.THREADS.problem(threads):
            raise DeviceConfigError(f"{source}: devices.{name}.options.threads {limits.THREADS.problem(threads)}, "
                                    f"got {threads!r}", hint=KEYS["options"][1])
        url = table.get("url", LOCAL if name == LOCAL else "")
        if not url:
            raise DeviceConfigError(f"{source}: devices.{name} has no url", hint=KEYS["url"][1])
        _check_url(name, url)
        if "workdir" in table:
            _check_workdir(name, table["workdir"], source)
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
