"""The Python API. The CLI (cli/, entry point cli/main.py) is a thin layer over these functions.

The model-side steps live in steps.py (below the pipeline, which runs them as stages); they are
re-exported here unchanged."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path

from . import limits as L
from .converters.convert import ConvertOutcome, Int8Options  # noqa: F401  (public names)
from .model.train import TrainConfig  # noqa: F401  (public name)
from .steps import FuseResult, calibrate, convert, fuse_checkpoint, make_digits, model_info, train_model  # noqa: F401


def _check_fields(source, pairs) -> None:
    """Range-check each (name, limits range) read from `source`, a dict or an options object."""
    for name, rng in pairs:
        L.check(name, source.get(name) if isinstance(source, dict) else getattr(source, name, None), rng)


def _check_settings(settings: dict | None) -> None:
    """Runner settings that are numbers (threads) are range-checked like the options."""
    L.check("threads", (settings or {}).get("threads"), L.THREADS)


def run_pipeline(config=None, out: str | Path = "runs/demo", only=(), force=(), log=print) -> dict:
    """The main job: data, train, fuse, convert, calibrate, eval, bench, report; cached and
    resumable in the run folder `out`. See pipeline/run.py."""
    from .pipeline.run import run_pipeline as _run
    return _run(config, out, tuple(only), tuple(force), log)


def resolve_devices(names=None, devices_file: str | Path | None = None):
    """Device specs by name from a devices file (default ./devices.toml); none named = local."""
    from .remote.fleet import resolve_devices as _resolve
    return _resolve(list(names or []), devices_file)


def bench(refs, settings, devices=None, accept_new_host_key: bool = False, progress=None) -> list[dict]:
    """Latency records of artifacts (devices.artifacts.resolve) on each device (default: local)."""
    from .remote.fleet import bench_on_devices

    _check_fields(settings, (("threads", L.THREADS), ("warmup", L.WARMUP), ("runs", L.RUNS),
                             ("seconds", L.SECONDS), ("rounds", L.ROUNDS)))
    _check_settings(settings.options)
    return bench_on_devices(refs, settings, devices or resolve_devices(), accept_new_host_key, progress)


def evaluate(refs, data: str | Path, devices=None, limit: int | None = None, runtime: str | None = None,
             settings: dict | None = None, accept_new_host_key: bool = False, progress_for=None) -> list[dict]:
    """Accuracy records of artifacts on labelled images, run on each device (default: local)."""
    from .remote.fleet import eval_on_devices

    L.check("limit", limit, L.LIMIT)
    _check_settings(settings)
    return eval_on_devices(refs, data, devices or resolve_devices(), limit, runtime, settings,
                           accept_new_host_key, progress_for)


def profile(refs, devices=None, accept_new_host_key: bool = False, on_record=None, **settings) -> list[dict]:
    """Layer-profile records of artifacts, made on each device (default: local): the runtime's
    own profiler, or the op probe with the device's matmul peak (devices/layer_profile.py).
    `settings`: runs, warmup, threads, options, op_probe, peak, probe_seconds (Device.profile)."""
    from .remote.fleet import profile_on_devices

    _check_fields(settings, (("runs", L.RUNS), ("warmup", L.WARMUP), ("threads", L.THREADS),
                             ("probe_seconds", L.PROBE_SECONDS)))
    _check_settings(settings.get("options"))
    return profile_on_devices(refs, devices or resolve_devices(), accept_new_host_key, on_record, **settings)


def classify(artifact: str | Path, images, top: int = 5, runtime: str | None = None,
             settings: dict | None = None) -> dict:
    """Top-k labels with probabilities for image files, through the artifact's own runtime and
    input contract (an artifact folder from `convert`, or a checkpoint for PyTorch)."""
    from .classify import classify as _classify
    from .devices.artifacts import resolve

    L.check("top", top, L.LABELS)
    _check_settings(settings)
    refs = resolve([artifact])
    if len(refs) != 1:
        from .errors import VanillaNetEdgeError
        raise VanillaNetEdgeError(f"{artifact} holds {len(refs)} artifacts; classify takes one",
                                  hint="pass one artifact folder (e.g. artifacts/tiny-tflite-fp32)")
    return _classify(refs[0], list(images), top, runtime, settings)


def check_devices(names=None, devices_file: str | Path | None = None,
                  accept_new_host_key: bool = False) -> list[dict]:
    """Reachability, machine and runtimes of the named devices (default: all in the devices file)."""
    from .remote.devices_file import load_devices
    from .remote.fleet import check_devices as _check

    specs = list(load_devices(devices_file).values()) if not names else resolve_devices(names, devices_file)
    return _check(specs, accept_new_host_key)


def clean_devices(names, devices_file: str | Path | None = None) -> list[str]:
    """Remove what vanillanet-edge put on each device (runner zips, cached artifacts, its marker),
    never anything else in its working folder."""
    from .remote.device import open_device

    out = []
    for spec in resolve_devices(names, devices_file):
        with closing(open_device(spec)) as device:
            out.append(device.clean())
    return out


def tune(model: str, out: str | Path, device: str = "local", devices_file: str | Path | None = None,
         options=None, accept_new_host_key: bool = False, log=print) -> dict:
    """The fastest verified artifact and settings for `model` (checkpoint or variant name) on a
    device; writes OUT/tune.json and OUT/recommended/<artifact>/ (settings pinned)."""
    from .remote.device import open_device
    from .tune.search import tune as _tune

    _check_tune_options(options)
    [spec] = resolve_devices([device], devices_file)
    with closing(open_device(spec, accept_new_host_key)) as handle:
        return _tune(model, out, handle, options, log)


def recommend(models, out: str | Path, budget_ms: float, device: str = "local",
              devices_file: str | Path | None = None, options=None, log=print) -> dict:
    """The most accurate of `models` (variant names or checkpoints) that fits `budget_ms` on a device."""
    from .remote.device import open_device
    from .tune.recommend import recommend as _recommend

    L.check("budget_ms", budget_ms, L.BUDGET_MS)
    _check_tune_options(options)
    [spec] = resolve_devices([device], devices_file)
    with closing(open_device(spec)) as handle:
        return _recommend(list(models), out, handle, budget_ms, options, log)


def _check_tune_options(options) -> None:
    if options is None:
        return
    _check_fields(options, (("budget_ms", L.BUDGET_MS), ("max_drop", L.MAX_DROP), ("calib_samples", L.SAMPLES),
                            ("eval_limit", L.LIMIT), ("warmup", L.WARMUP), ("runs", L.RUNS), ("rounds", L.ROUNDS)))
    for batch in options.batches:
        L.check("batches", batch, L.BATCH)
    for size in options.input_sizes:
        L.check("input_sizes", size, L.INPUT_SIZE)


def __getattr__(name: str):
    if name == "TuneOptions":          # loaded on use: the tune package pulls in every converter
        from .tune.search import TuneOptions
        return TuneOptions
    raise AttributeError(name)
