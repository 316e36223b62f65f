"""Several devices at once: bench, eval or profile the same artifacts on each; one device failing
(down, wrong host key, dropped mid-run) is recorded as failed and never stops the others."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path

from ..devices.artifacts import ArtifactRef
from ..devices.latency import RESULT_SCHEMA, BenchSettings
from ..devices.layer_profile import not_done
from ..errors import DataError, VanillaNetEdgeError
from .device import open_device
from .devices_file import DeviceSpec, load_devices, pick


def resolve_devices(names: list[str] | None, devices_file: str | Path | None) -> list[DeviceSpec]:
    specs = load_devices(devices_file)
    return [pick(specs, n) for n in (names or ["local"])]


def _failed(ref: ArtifactRef, spec: DeviceSpec, kind: str, error: Exception) -> dict:
    return {"schema_version": RESULT_SCHEMA, "kind": kind, "artifact": str(ref.path), "name": ref.name,
            "target": ref.manifest.get("target"), "precision": ref.manifest.get("precision"),
            "runtime": ref.runtime, "model": ref.manifest.get("model", {}), "ok": False, "status": "failed",
            "error": str(error), "device": {"name": spec.name, "where": spec.describe()}, "machine": None,
            "device_error": getattr(error, "kind", "failed")}


def check_devices(specs: list[DeviceSpec], accept_new_host_key: bool = False) -> list[dict]:
    reports = []
    for spec in specs:
        with closing(open_device(spec, accept_new_host_key)) as device:
            reports.append(device.check())
    return reports


def _on_each_device(specs: list[DeviceSpec], refs: list[ArtifactRef], kind: str, accept_new_host_key: bool,
                    work, failed=None) -> list[dict]:
    """work(device, spec) -> records, for each device in turn; a device that cannot even be
    opened gets one failed record per artifact (`failed(ref, spec, error)`, default: a failed
    `kind` record), and the others go on."""
    failed = failed or (lambda ref, spec, exc: _failed(ref, spec, kind, exc))
    records = []
    for spec in specs:
        try:
            device = open_device(spec, accept_new_host_key)
        except VanillaNetEdgeError as exc:
            records += [failed(ref, spec, exc) for ref in refs]
            continue
        with closing(device):
            records += work(device, spec)
    return records


def bench_on_devices(refs: list[ArtifactRef], settings: BenchSettings, specs: list[DeviceSpec],
                     accept_new_host_key: bool = False, progress=None) -> list[dict]:
    """Records for every (device, artifact); each tagged with its device."""
    def work(device, spec):
        return device.bench(refs, settings, progress=(lambda r, i, ref: progress(spec, r, i, ref)) if progress else None)
    return _on_each_device(specs, refs, "latency", accept_new_host_key, work)


def eval_on_devices(refs: list[ArtifactRef], data, specs: list[DeviceSpec], limit=None, runtime=None,
                    settings: dict | None = None, accept_new_host_key: bool = False,
                    progress_for=None) -> list[dict]:
    """Accuracy records for every (device, artifact). Images are decoded here, run there."""
    from ..devices.accuracy import evaluate

    def work(device, spec):
        records = []
        for ref in refs:
            try:
                rec = evaluate(ref, data, limit, runtime, settings, open_session=device.open_session,
                               progress=progress_for(spec, ref) if progress_for else None)
                rec["device"] = {"name": spec.name, "where": spec.describe()}
            except DataError:
                raise                   # the images, not the device: stop and say so
            except VanillaNetEdgeError as exc:
                rec = _failed(ref, spec, "accuracy", exc)
            records.append(rec)
        return records
    return _on_each_device(specs, refs, "accuracy", accept_new_host_key, work)


def profile_on_devices(refs: list[ArtifactRef], specs: list[DeviceSpec], accept_new_host_key: bool = False,
                       on_record=None, **settings) -> list[dict]:
    """layer_profile records for every (device, artifact), each made on its device
    (remote/device.Device.profile; `settings`: its keyword arguments) and tagged with it.
    A device that fails gets "failed" records (reason, hint, device_error) and the others go on;
    `on_record(record)` is called as each record is made."""
    def failed(ref, spec, exc):
        record = {**not_done(ref, "failed", exc), "machine": None, "device_error": getattr(exc, "kind", "failed"),
                  "device": {"name": spec.name, "where": spec.describe()}}
        if on_record:
            on_record(record)
        return record

    def work(device, spec):
        records = []
        for ref in refs:
            try:
                record = device.profile(ref, **settings)
            except VanillaNetEdgeError as exc:     # the device's failure, not a runtime's (those are records)
                records.append(failed(ref, spec, exc))
                continue
            records.append(record)
            if on_record:
                on_record(record)
        return records
    return _on_each_device(specs, refs, "layer_profile", accept_new_host_key, work, failed)
