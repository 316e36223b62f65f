"""The pipeline file: a TOML file users edit by hand, validated before anything runs.

Every key has a type, a default and a one-line meaning (SCHEMA), and every number its range
(limits.py, the table the command-line options use too; nan and inf are never accepted);
`vanillanet-edge init` writes the commented example from the same table, so the docs cannot
drift from the validator. Errors name the key's path (`calibration.samples`) and a hint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomllib

from .. import limits as L
from ..converters.registry import REWRITE_TARGETS, default_targets, target_names
from ..errors import VanillaNetEdgeError, did_you_mean
from ..limits import Range

ALL_TARGETS = target_names()


class ConfigError(VanillaNetEdgeError):
    pass


@dataclass(frozen=True)
class Key:
    type: type | tuple
    default: object
    help: str
    choices: tuple = ()
    is_path: bool = False
    range: Range | None = None        # every int and float key has one


SCHEMA: dict[str, dict[str, Key]] = {
    "model": {
        "checkpoint": Key(str, "", "trained checkpoint to ship; empty = train the tiny net on [data]", is_path=True),
        "variant": Key(str, "", "variant to train (empty: vanillanet_5) or to check a checkpoint against (empty: inferred)"),
        "width": Key(float, 1 / 32, "channel multiplier for training (1 = official size)", range=L.WIDTH),
        "input_size": Key(int, 0, "input side in pixels; 0 = what the checkpoint records (32 for the demo)",
                          range=L.INPUT_SIZE.or_(0)),
        "key": Key(str, "", "checkpoint entry holding the weights; empty = model_ema, then model"),
    },
    "data": {
        "root": Key(str, "", "ImageFolder root with train/ and val/; empty = the built-in digits", is_path=True),
    },
    "train": {
        "epochs": Key(int, 30, "training epochs (only when no checkpoint is given)", range=L.EPOCHS),
        "decay_epochs": Key(int, 15, "epochs over which act_learn rises from 0 to 1", range=L.DECAY_EPOCHS),
        "batch_size": Key(int, 64, "training batch size", range=L.TRAIN_BATCH),
        "lr": Key(float, 4e-3, "peak learning rate", range=L.LR),
        "seed": Key(int, 0, "training seed", range=L.SEED),
    },
    "convert": {
        "targets": Key(list, list(ALL_TARGETS), "targets to write", choices=tuple(ALL_TARGETS)),
        "precisions": Key(list, ["fp32", "int8"], "precisions to write", choices=("fp32", "fp16", "int8")),
        "batch": Key(int, 1, "fixed batch size of the artifacts", range=L.BATCH),
        "input": Key(str, "", "what the artifacts' input takes: raw (RGB 0-255, normalization inside the "
                              "model) or normalized; empty = each target's default (raw for tflite)",
                     choices=("", "raw", "normalized")),
        "required": Key(list, [], "targets whose failure fails the run (others are reported)",
                        choices=tuple(ALL_TARGETS)),
    },
    "calibration": {
        "data": Key(str, "", "images to calibrate INT8 on; empty = the train split", is_path=True),
        "samples": Key(int, 128, "calibration images, sampled by seed", range=L.SAMPLES),
        "method": Key(str, "auto", "range method; auto = each target's own default "
                                   "(see `vanillanet-edge convert --help`)"),
        "seed": Key(int, 0, "sampling seed", range=L.SEED),
        "max_drop": Key(float, -1.0, "top-1 points INT8 may lose (keeps layers in float); -1 = no budget",
                        range=L.MAX_DROP.or_(-1.0)),
    },
    "eval": {
        "data": Key(str, "", "labelled ImageFolder; empty = the val split", is_path=True),
        "limit": Key(int, 0, "images to evaluate (seeded sample); 0 = all", range=L.LIMIT.or_(0)),
        "ray": Key(str, "", "Ray cluster to evaluate on (the ray extra): auto, HOST:PORT or local; "
                            "empty = here. data must be a path every node sees"),
    },
    "bench": {
        "runs": Key(int, 60, "timed runs per artifact (over all rounds)", range=L.RUNS),
        "warmup": Key(int, 5, "warm-up runs per process", range=L.WARMUP),
        "rounds": Key(int, 3, "interleaved rounds, a fresh process each", range=L.ROUNDS),
        "threads": Key(int, 0, "intra-op threads for every runtime; 0 = one per physical core (the same for all)",
                       range=L.THREADS.or_(0)),
        "devices": Key(list, ["local"], "devices to benchmark on (names in devices_file; local = this machine)"),
        "devices_file": Key(str, "", "devices.toml naming the devices (see `vanillanet-edge devices --help`)",
                            is_path=True),
    },
    "verdict": {
        "models": Key(list, ["vanillanet_9"], "full-size VanillaNets (random weights: latency only) timed against "
                                             "the baseline at the paper's setting; [] for no verdict",
                      choices=("vanillanet_5", "vanillanet_6", "vanillanet_7", "vanillanet_8", "vanillanet_9",
                               "vanillanet_10", "vanillanet_11", "vanillanet_12", "vanillanet_13")),
        "baseline": Key(str, "resnet50", "the deep network they are compared with (random weights)",
                        choices=("resnet50", "resnet18", "mobilenetv3_large_100", "convnext_tiny")),
        "input_size": Key(int, 224, "input side (the paper's claim: 224, batch 1)", range=L.INPUT_SIZE),
        "targets": Key(list, default_targets(), "runtimes the verdict is measured on "
                                                             "(plus PyTorch eager)", choices=tuple(ALL_TARGETS)),
        "precisions": Key(list, ["fp32", "int8"], "precisions compared", choices=("fp32", "fp16", "int8")),
        "calib_samples": Key(int, 16, "calibration images for the int8 ranges (latency only: few suffice)",
                             range=L.SAMPLES),
        "runs": Key(int, 15, "timed runs per artifact and setting (over all rounds)", range=L.RUNS),
        "warmup": Key(int, 2, "warm-up runs per process", range=L.WARMUP),
        "rewrites": Key(list, ["dw_dilated"], "exact rewrites of the VanillaNets also timed (in the 'best' rows "
                                            "only; `vanillanet-edge tune --help` lists them)"),
        "rewrite_targets": Key(list, list(REWRITE_TARGETS), "targets the rewritten VanillaNets are converted to",
                               choices=tuple(ALL_TARGETS)),
    },
    "baselines": {
        "models": Key(list, [], "deep baselines (timm, random weights: latency only) converted at fp32 and "
                                 "benched beside your model at its input size (the full-size verdict is [verdict])",
                      choices=("resnet50", "resnet18", "mobilenetv3_large_100", "convnext_tiny")),
        "input_size": Key(int, 0, "baseline input side; 0 = the VanillaNet's", range=L.INPUT_SIZE.or_(0)),
    },
}


def _type_name(t) -> str:
    return {str: "a string", int: "an integer", float: "a number", list: "a list", bool: "true/false"}.get(t, str(t))


def validate(raw: dict, base: Path) -> dict:
    """Fill defaults, check names, types, choices and files; paths resolved against `base`."""
    cfg: dict[str, dict] = {}
    for section in raw:
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}]",
                              hint=f"{did_you_mean(section, SCHEMA)}sections: {', '.join(SCHEMA)}")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"'{section}' must be a [{section}] table")
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        for name in given:
            if name not in keys:
                raise ConfigError(f"unknown key {section}.{name}",
                                  hint=f"{did_you_mean(name, keys)}keys of [{section}]: {', '.join(keys)}")
        cfg[section] = {}
        for name, key in keys.items():
            value = given.get(name, key.default)
            if key.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, key.type) or isinstance(value, bool) != (key.type is bool):
                raise ConfigError(f"{section}.{name} must be {_type_name(key.type)}, got {value!r}",
                                  hint=key.help)
            problem = key.range.problem(value) if key.range else None
            if problem:
                raise ConfigError(f"{section}.{name} {problem}, got {value!r}", hint=key.help)
            if key.choices:
                bad = [v for v in (value if isinstance(value, list) else [value]) if v not in key.choices]
                if bad:
                    raise ConfigError(f"{section}.{name}: {bad[0]!r} is not one of {', '.join(key.choices)}")
            if key.is_path and value:
                path = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
                if not path.exists():
                    raise ConfigError(f"{section}.{name}: {path} does not exist", hint=key.help)
                value = str(path)
            cfg[section][name] = value
    _check_combinations(cfg)
    return cfg


def _check_combinations(cfg: dict) -> None:
    from ..model.variants import VARIANTS

    if cfg["model"]["variant"] and cfg["model"]["variant"] not in VARIANTS:
        raise ConfigError(f"model.variant: unknown variant {cfg['model']['variant']!r}",
                          hint=f"{did_you_mean(cfg['model']['variant'], VARIANTS)}choose one of {', '.join(VARIANTS)}")
    if cfg["train"]["decay_epochs"] > cfg["train"]["epochs"]:
        raise ConfigError("train.decay_epochs exceeds train.epochs",
                          hint="act_learn must reach 1 before training ends, or the net cannot be fused")
    missing = [t for t in cfg["convert"]["required"] if t not in cfg["convert"]["targets"]]
    if missing:
        raise ConfigError(f"convert.required names {missing[0]!r}, which convert.targets does not include")
    if not cfg["convert"]["targets"] or not cfg["convert"]["precisions"]:
        raise ConfigError("convert.targets and convert.precisions must not be empty")
    if cfg["verdict"]["models"]:
        from ..model.variants import VARIANTS
        size = cfg["verdict"]["input_size"]
        for name in cfg["verdict"]["models"]:
            least = VARIANTS[name].min_input_size()
            if not least <= size <= 2048:
                raise ConfigError(f"verdict.input_size {size} does not fit {name}",
                                  hint=f"use {least}..2048; the paper's claim is at 224")
        from ..model.rewrites import REWRITES
        unknown = [r for r in cfg["verdict"]["rewrites"] if r not in REWRITES]
        if unknown:
            raise ConfigError(f"verdict.rewrites: unknown rewrite {unknown[0]!r}",
                              hint=f"{did_you_mean(unknown[0], REWRITES)}known: {', '.join(REWRITES)}")
        if not cfg["verdict"]["targets"] or not cfg["verdict"]["precisions"]:
            raise ConfigError("verdict.targets and verdict.precisions must not be empty",
                              hint="or set verdict.models = [] for no verdict")
    if not cfg["bench"]["devices"]:
        raise ConfigError("bench.devices must name at least one device", hint="e.g. [\"local\"]")
    if cfg["bench"]["devices"] != ["local"]:     # unknown names fail now, not after the conversions
        from ..remote.fleet import resolve_devices
        try:
            resolve_devices(cfg["bench"]["devices"], cfg["bench"]["devices_file"] or None)
        except VanillaNetEdgeError as exc:
            raise ConfigError(f"bench.devices: {exc}") from None
    if cfg["model"]["checkpoint"] and not cfg["data"]["root"] and "int8" in cfg["convert"]["precisions"] \
            and not cfg["calibration"]["data"]:
        raise ConfigError("int8 for a given checkpoint needs calibration images",
                          hint="set calibration.data (images like the deployment data) or data.root")


def load_config(path: str | Path | None) -> dict:
    """The validated pipeline config; no file means the built-in demo defaults."""
    if path is None:
        return validate({}, Path.cwd())
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"pipeline file not found: {path}", hint="write one with `vanillanet-edge init`")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return validate(raw, path.parent.resolve())


def example_toml() -> str:
    """A commented pipeline file holding every key at its default (what `init` writes)."""
    lines = ["# vanillanet-edge pipeline. Run with: vanillanet-edge run THIS_FILE --out runs/NAME",
             "# Every key is optional; the defaults below are the built-in demo.", ""]
    for section, keys in SCHEMA.items():
        lines.append(f"[{section}]")
        for name, key in keys.items():
            value = key.default
            if isinstance(value, str):
                text = f'"{value}"'
            elif isinstance(value, list):
                text = "[" + ", ".join(f'"{v}"' for v in value) + "]"
            elif isinstance(value, float):
                text = repr(round(value, 6))
            else:
                text = str(value).lower() if isinstance(value, bool) else str(value)
            lines.append(f"# {key.help}")
            lines.append(f"{name} = {text}")
        lines.append("")
    return "\n".join(lines)
