"""`eval --ray ADDRESS`: accuracy of artifacts over a Ray cluster, with a local eval's answers.

The labelled images are cut into the same chunks of `devices.accuracy.CHUNK` images a local eval
runs, one Ray Data row per chunk. `map_batches` sends the rows to a pool of actors; each actor
loads the artifact ONCE through our own runner (`devices.registry.get_runner(runtime).load`,
with the manifest's pinned settings, the caller's overrides and an explicit thread count),
decodes its chunk with the manifest's preprocessing (`calibration.images.read_image`, skipping
unreadable files exactly as `load_images` does) and returns per-image predictions. Because a
chunk is the same batch a local eval feeds (same padding of the artifact's fixed batch), the
per-image logits are the local ones, bit for bit, for the same settings.

Artifacts travel once, content-addressed: the driver hashes the artifact (fileio.sha256_path),
puts a tar of it into Ray's object store, and each node unpacks it once into
`<cache>/<sha256>/` (default ~/.cache/vanillanet-edge/ray, or $VNE_RAY_CACHE on the node),
checks the hash of what it unpacked and publishes it atomically; later actors and later runs
on that node find it there. With `shared_artifacts=True` the artifact's path must be visible
on every node (a shared file system); each actor checks its hash before loading it.

Data stays where the user has it: by default `data` must be a path every node sees (the paths
travel, not the pixels); `ship_data=True` sends the files' bytes with the tasks instead, for
small sets on a local disk. Decoding happens on the workers either way.

Faults: actors are restarted and their in-flight chunks retried (MAX_RESTARTS /
MAX_TASK_RETRIES); the merged result is only returned once every chunk has answered, so a
killed worker changes nothing but the time. A cluster that cannot be reached, or that fails
for good mid-run, raises ClusterError: nothing partial is returned, and callers write their
JSON only at the end (atomically).
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import pickle
import socket
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import BackendMissingError, DataError, VanillaNetEdgeError

RAY_EXTRA = "ray"
MAX_RESTARTS = 4        # an actor killed more often than this ends the run (a crash that repeats)
MAX_TASK_RETRIES = 4    # in-flight chunks of a killed actor are retried on its restart
MAX_CHUNKS_PER_ROW = 16   # a Ray task carries up to 16 chunks of CHUNK images
ROWS_PER_WORKER = 8
CONNECT_TIMEOUT_S = 5.0
LOST_AFTER_S = 10.0       # a GCS port closed this long mid-run: the cluster is gone
CACHE_ENV = "VNE_RAY_CACHE"
ADDRESS_HELP = ("auto (a cluster started with `ray start`, found through RAY_ADDRESS or this "
                "machine's Ray session), HOST:PORT (its GCS address), or local (start one here)")


class ClusterError(VanillaNetEdgeError):
    """The Ray cluster cannot be reached, or failed for good during a run."""


def require_ray(what: str = "eval --ray (Ray Data)"):
    """The ray module, or BackendMissingError naming the extra (and `what` needed it)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise BackendMissingError(what, RAY_EXTRA, "ray") from exc
    return ray


def default_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vanillanet-edge" / "ray")


# ---------------------------------------------------------------------------------------------
# Connecting


def _check_reachable(address: str) -> None:
    """A quick TCP check of HOST:PORT, so a wrong address fails in seconds, not after Ray's
    own reconnect timeout."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--ray expects {ADDRESS_HELP}; got {address!r}",
                           hint="e.g. --ray 10.0.0.5:6379, --ray auto or --ray local")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at {address}: {exc.strerror or exc}",
                           hint=f"start one there (`ray start --head --port={port}`), check the "
                                "address and firewall, or use --ray local to start one on this machine") from exc


@contextmanager
def connect(address: str, local_cpus: int | None = None):
    """ray.init for `address` (auto | HOST:PORT | local), shut down on exit when we connected.

    An already initialised Ray (a caller's own ray.init) is used as it is and left running."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")      # nothing phones home
    kwargs = {"logging_level": "WARNING", "log_to_driver": False, "configure_logging": True}
    if address == "local":
        kwargs.update(address="local", include_dashboard=False, num_cpus=local_cpus)
    elif address == "auto":
        kwargs.update(address="auto")
    else:
        if address.startswith("ray://"):
            raise ClusterError("Ray Client addresses (ray://) are not supported: Ray Data runs best "
                               "from a driver inside the cluster",
                               hint="run the command on a cluster node with --ray auto, or pass the GCS HOST:PORT")
        _check_reachable(address)
        kwargs.update(address=address)
    try:
        ray.init(**kwargs)
    except Exception as exc:   # noqa: BLE001 - ConnectionError, AuthenticationError, RuntimeError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        auth = "auth" in f"{type(exc).__name__} {first}".lower()
        raise ClusterError(f"could not connect to the Ray cluster at {address!r}: {first[:300]}",
                           hint=("the cluster wants its token: set RAY_AUTH_TOKEN (or "
                                 "RAY_AUTH_TOKEN_PATH) as on its nodes" if auth else
                                 "`ray status` on a cluster node shows whether it runs; "
                                 "--ray local starts one on this machine")) from exc
    try:
        yield ray
    finally:
        ray.shutdown()           # about 5 s when the cluster has gone away


def _cluster_size(ray) -> dict:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"nodes": len(nodes), "cpus": int(sum(n.get("Resources", {}).get("CPU", 0) for n in nodes))}


def pool_map(ray, ds, cls, payload: dict, pool: int, threads: int):
    """`ds.map_batches` over a pool of `pool` actors of class `cls`, each reserving `threads`
    CPUs: restarted when killed and its in-flight rows retried, but bounded (MAX_RESTARTS,
    MAX_TASK_RETRIES), so a crash that repeats ends the run instead of looping. Ray Data 2.60
    marks these remote args deprecated (due to go in 2.64) without a replacement yet; its own
    default is unbounded, so we keep passing them, loudly failing if they are removed."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        return ds.map_batches(cls, batch_size=1, batch_format="numpy", fn_constructor_kwargs={"payload": payload},
                              compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=threads,
                              max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)


def rows_watched(ray, ds, address: str):
    """`ds.iter_rows()`, with a cluster that goes away mid-run turned into a ClusterError within
    about LOST_AFTER_S.

    Ray's driver would otherwise wait for its GCS (60 s by default,
    RAY_gcs_rpc_server_reconnect_timeout_s) and then end the whole process itself. The rows are
    pulled by a daemon thread; this generator waits on them with a timeout and, whenever none
    came for a second, checks that the GCS port still accepts connections."""
    import queue
    import threading

    host, _, port = ray.get_runtime_context().gcs_address.rpartition(":")
    rows: queue.Queue = queue.Queue(maxsize=256)

    def pump():
        try:
            for row in ds.iter_rows():
                rows.put(("row", row))
            rows.put(("done", None))
        except BaseException as exc:     # noqa: BLE001 - handed to the caller's thread
            rows.put(("error", exc))

    threading.Thread(target=pump, name="vne-ray-rows", daemon=True).start()
    down_since = None
    while True:
        try:
            kind, value = rows.get(timeout=1.0)
        except queue.Empty:
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
                down_since = None
            except OSError:
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since >= LOST_AFTER_S:
                    raise ClusterError(f"the Ray cluster at {address!r} went away mid-run (its GCS has not "
                                       f"answered for {LOST_AFTER_S:.0f} s); no result was written",
                                       hint="check the head node (`ray status`) and run again") from None
            continue
        if kind == "row":
            yield value
        elif kind == "done":
            return
        else:
            raise value


# ---------------------------------------------------------------------------------------------
# Artifacts and checkpoints: content-addressed transfer


def _tar_bytes(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if path.is_file():
            tar.add(path, arcname=path.name, recursive=False)
        else:
            for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
                tar.add(f, arcname=f.relative_to(path).as_posix(), recursive=False)
    return buf.getvalue()


def _ship_spec(ray, path: Path, shared: bool) -> dict:
    """What an actor needs to find `path` (a folder or one file): its sha256 and either the
    shared path or an object-store reference to a tar of it (wrapped in a list, so Ray hands
    the reference itself to the actor and the bytes are fetched only on a cache miss)."""
    from ..fileio import sha256_path

    spec = {"sha256": sha256_path(path), "is_dir": path.is_dir(), "name": path.name, "path": str(path)}
    if not shared:
        spec["blob"] = [ray.put(_tar_bytes(path))]
    return spec


def materialize(spec: dict, cache_dir: str | None) -> Path:
    """The local path of a shipped folder/file on this node: unpacked once into
    <cache>/<sha256>/ (flock'ed, checked against the hash, published atomically)."""
    from ..fileio import atomic_path, sha256_path

    sha = spec["sha256"]
    if "blob" not in spec:
        path = Path(spec["path"])
        if not path.exists() or sha256_path(path) != sha:
            raise ClusterError(f"{path} on {socket.gethostname()} is missing or differs from the driver's copy",
                               hint="put the artifact on a file system every node sees, or let "
                                    "vanillanet-edge ship it (drop the shared-artifacts option)")
        return path
    cache = Path(cache_dir) if cache_dir else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / sha
    target = folder if spec["is_dir"] else folder / spec["name"]
    # the lock file is opened without following a link planted at its name
    with open(cache / f".{sha}.lock", "a", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW, 0o644)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one unpacker per node; the others wait
        if folder.is_dir() and target.exists() and sha256_path(target) == sha:
            return target
        import ray

        data = ray.get(spec["blob"][0])
        with atomic_path(folder, is_dir=True) as tmp:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            got = sha256_path(tmp if spec["is_dir"] else tmp / spec["name"])
            if got != sha:
                raise ClusterError(f"the artifact arrived altered on {socket.gethostname()} "
                                   f"(sha256 {got[:12]}, sent {sha[:12]})", hint="run again")
        return target


# ---------------------------------------------------------------------------------------------
# The actor


class Predictor:
    """One Ray actor: loads the artifact once, then scores chunks of images."""

    def __init__(self, payload: dict):
        import vanillanet_edge

        from ..devices.machine import describe_machine
        from ..devices.registry import get_runner
        from ..images import Preprocessing

        if payload["version"] != vanillanet_edge.__version__:
            raise ClusterError(f"vanillanet-edge {vanillanet_edge.__version__} on {socket.gethostname()}, "
                               f"{payload['version']} on the driver",
                               hint="install the same vanillanet-edge on every node")
        self.manifest = payload["manifest"]
        self.keep_logits = payload["keep_logits"]
        artifact_root = materialize(payload["artifact"], payload["cache_dir"])
        artifact = artifact_root / payload["artifact_file"] if payload["artifact"]["is_dir"] else artifact_root
        self.session = get_runner(payload["runtime"]).load(artifact, self.manifest, **payload["settings"])
        self.prep = Preprocessing.from_dict(self.manifest["preprocessing"])
        self.reference = None
        if payload["reference"]:
            self.reference = self._reference(payload, materialize(payload["reference"], payload["cache_dir"]))
        import ray

        ctx = ray.get_runtime_context()
        self.worker = {"node": ctx.get_node_id(), "pid": os.getpid(), "host": socket.gethostname(),
                       "session_settings": self.session.settings, "machine": describe_machine(),
                       "restarted": bool(ctx.was_current_actor_reconstructed)}   # Ray's own count (GCS)
        self.announced = False

    def _reference(self, payload: dict, checkpoint: Path):
        """The fp32 reference, built exactly as a local eval builds it (accuracy._reference_model)."""
        import torch

        from ..devices.accuracy import _reference_model
        from ..devices.artifacts import ArtifactRef

        torch.set_num_threads(payload["settings"]["threads"])
        manifest = {**self.manifest, "source": {**self.manifest.get("source", {}), "checkpoint": str(checkpoint)}}
        model, _ = _reference_model(ArtifactRef(checkpoint, checkpoint, manifest, payload["artifact_runtime"]))
        return model

    def __call__(self, batch: dict) -> dict:
        """Rows of several chunks in, one row per chunk out (its JSON result, its logits)."""
        out = {"result": [], "logits": []}
        for r in range(len(batch["chunks"])):
            chunks = json.loads(batch["chunks"][r])
            blobs = pickle.loads(batch["blobs"][r]) if "blobs" in batch else [None] * len(chunks)
            for chunk, chunk_blobs in zip(chunks, blobs):
                result, logits = self._score(chunk, chunk_blobs)
                out["result"].append(json.dumps(result))
                out["logits"].append(logits)
        return {"result": np.asarray(out["result"], dtype=object), "logits": np.asarray(out["logits"], dtype=object)}

    def _score(self, chunk: dict, blobs) -> tuple[dict, bytes]:
        from ..images import _why, read_image

        arrays, ok, why = [], [], {}
        for j, path in enumerate(chunk["paths"]):
            try:        # as load_images: any exception skips the file, with the reason
                arrays.append(read_image(io.BytesIO(blobs[j]) if blobs is not None else path, self.prep))
            except Exception as exc:
                why[j] = _why(exc)
                continue
            ok.append(j)
        result = {"start": chunk["start"], "ok": ok, "why": why, "worker": None, "compute_s": 0.0}
        if not self.announced:
            result["worker"], self.announced = self.worker, True
        result["worker_key"] = f"{self.worker['node']}:{self.worker['pid']}"
        if not ok:
            return result, b""
        x = np.stack(arrays)
        before = self.session.compute_seconds
        logits = self.session.run_all(x)
        result["compute_s"] = self.session.compute_seconds - before
        labels = np.asarray([chunk["labels"][j] for j in ok], dtype=np.int64)
        k = min(5, logits.shape[1])
        top5 = np.argpartition(-logits, k - 1, axis=1)[:, :k]        # as accuracy._topk_hits
        top1 = np.argpartition(-logits, 0, axis=1)[:, :1]
        result["hit1"] = (top1 == labels[:, None]).any(axis=1).astype(int).tolist()
        result["hit5"] = (top5 == labels[:, None]).any(axis=1).astype(int).tolist()
        result["pred"] = logits.argmax(1).astype(int).tolist()
        order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        result["top5"] = order.astype(int).tolist()
        if self.reference is not None:
            import torch

            with torch.no_grad():
                ref_logits = self.reference(torch.from_numpy(x)).numpy()
            result["ref_pred"] = ref_logits.argmax(1).astype(int).tolist()
        return result, (logits.astype(np.float32).tobytes() if self.keep_logits else b"")


# ---------------------------------------------------------------------------------------------
# The driver


def _worker_error(exc: BaseException) -> VanillaNetEdgeError | None:
    """Our own error raised on a worker (a missing runtime there, another vanillanet-edge
    version, an altered transfer), found in the chain Ray wraps it in, re-raised as a plain one."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, VanillaNetEdgeError) and type(e).__module__.startswith("vanillanet_edge"):
            message = e.args[0] if e.args else type(e).__name__
            return (ClusterError if isinstance(e, ClusterError) else VanillaNetEdgeError)(
                f"on a Ray worker: {message}", getattr(e, "hint", None))
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    # An actor that failed in __init__ reaches us as ActorDiedError, the worker's exception
    # kept only as text ("...vanillanet_edge.x.SomeError: message\n  hint: hint"): read it there.
    import re

    found = re.findall(r"vanillanet_edge\.[\w.]*?\.(\w+): ([^\n]*)(?:\n\s*hint: ([^\n]*))?", str(exc))
    if found:
        name, message, hint = found[-1]
        return (ClusterError if name == "ClusterError" else VanillaNetEdgeError)(
            f"on a Ray worker: {message}", hint or None)
    return None


def _fail_from(exc: BaseException, address: str) -> VanillaNetEdgeError:
    """The worker's own error if there is one, else a ClusterError: the run did not complete."""
    mine = _worker_error(exc)
    if mine is not None:
        return mine
    lines = [line for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
    return ClusterError(f"the Ray run at {address!r} did not complete ({type(exc).__name__}: "
                        f"{lines[-1][:300]}); no result was written",
                        hint="check the cluster (`ray status`) and run again; a worker that keeps "
                             f"dying (over {MAX_RESTARTS} restarts) ends the run")


def evaluate_on_ray(refs, data: str | Path, address: str = "auto", limit: int | None = None,
                    runtime: str | None = None, settings: dict | None = None, seed: int = 0,
                    workers: int | None = None, threads: int | None = None, ship_data: bool = False,
                    shared_artifacts: bool = False, cache_dir: str | Path | None = None,
                    local_cpus: int | None = None, progress_for=None, predictions: bool = False,
                    reference: bool = True) -> list[dict]:
    """Accuracy records of artifacts (devices.artifacts.ArtifactRef) on a Ray cluster.

    Each record is what a local `evaluate` writes (top1, top5, agreement_with_fp32, images,
    skipped, skipped_files, session_settings, machine, ...) plus `cluster`: address, nodes,
    cpus, workers, threads per worker, wall seconds and end-to-end images/s (decoding included;
    `images_per_s` stays the inference-only rate, as locally). `threads` per actor: `threads`,
    else the settings' own, else 1; each actor reserves that many CPUs. `workers`: actors in
    the pool (default: the cluster's CPUs // threads). With `predictions=True` each record also
    carries `predictions` (per image, in the local order: file, label, pred, top5, ref_pred,
    and `logits` as float32 bytes). `reference=False`: no fp32 reference on the workers
    (agreement_with_fp32 None; convert --ray has its own). Raises ClusterError when the cluster cannot be reached or
    fails for good; nothing partial is ever returned.
    """
    import vanillanet_edge

    from ..devices.accuracy import CHUNK, RESULT_SCHEMA, labelled_sample  # the local eval's chunk, schema, images
    from ..devices.base import pinned_settings, resolve_threads
    from ..images import describe_skipped, skipped_record

    require_ray()                      # before any work: a missing extra is said first
    prepared = []
    for ref in refs:
        records = labelled_sample(data, ref.manifest, limit, seed)
        run_settings = pinned_settings(ref.manifest, settings)
        run_settings["threads"] = resolve_threads(threads or run_settings.get("threads") or 1)
        prepared.append((ref, records, run_settings))

    out = []
    with connect(address, local_cpus) as ray:
        import logging

        import ray.data

        logging.getLogger("ray.data").setLevel(logging.WARNING)    # no per-dataset INFO lines
        dctx = ray.data.DataContext.get_current()
        dctx.enable_progress_bars = False
        if hasattr(dctx, "print_on_execution_start"):
            dctx.print_on_execution_start = False
        try:
            size = _cluster_size(ray)
        except Exception as exc:       # noqa: BLE001 - a cluster gone between init and here
            raise _fail_from(exc, address) from exc
        for ref, records, run_settings in prepared:
            try:
                out.append(_run_one(ray, ref, data, records, run_settings, runtime, address, size, workers,
                                    ship_data, shared_artifacts, cache_dir, predictions,
                                    progress_for(ref) if progress_for else None,
                                    vanillanet_edge.__version__, CHUNK, RESULT_SCHEMA,
                                    skipped_record, describe_skipped, reference))
            except VanillaNetEdgeError as exc:
                if type(exc).__module__.startswith("vanillanet_edge"):
                    raise                  # ours, raised here (not a worker's, wrapped by Ray)
                raise _fail_from(exc, address) from exc
            except Exception as exc:   # noqa: BLE001 - anything Ray raises ends the run cleanly
                raise _fail_from(exc, address) from exc
    return out


def _run_one(ray, ref, data, records, run_settings, runtime, address, size, workers, ship_data,
             shared_artifacts, cache_dir, predictions, progress, version, chunk_size, schema,
             skipped_record, describe_skipped, reference=True) -> dict:
    from ..devices.accuracy import reference_checkpoint  # the local eval's own choice of reference

    runtime = runtime or ref.runtime
    threads = run_settings["threads"]
    pool = workers or max(1, size["cpus"] // threads)
    ckpt, ref_note = reference_checkpoint(ref) if reference else (None, "not computed (asked for none)")
    payload = {"version": version, "manifest": ref.manifest, "runtime": runtime, "artifact_runtime": ref.runtime,
               "settings": run_settings, "cache_dir": str(cache_dir) if cache_dir else None,
               "artifact": _ship_spec(ray, ref.path, shared_artifacts),
               "artifact_file": ref.artifact.relative_to(ref.path).as_posix() if ref.path.is_dir() else ref.path.name,
               "reference": _ship_spec(ray, ckpt, shared_artifacts) if ckpt else None,
               "keep_logits": predictions}
    chunks = []
    for start in range(0, len(records), chunk_size):
        part = records[start:start + chunk_size]
        chunks.append(({"start": start, "paths": [str(r.path) for r in part], "labels": [r.label for r in part]},
                       [Path(r.path).read_bytes() for r in part] if ship_data else None))
    # A Ray row carries several chunks (fewer tasks; each still runs chunk by chunk, as locally),
    # with about ROWS_PER_WORKER rows per worker so the pool stays balanced and a retry is small.
    per_row = max(1, min(MAX_CHUNKS_PER_ROW, len(chunks) // (pool * ROWS_PER_WORKER)))
    items = []
    for i in range(0, len(chunks), per_row):
        group = chunks[i:i + per_row]
        item = {"chunks": json.dumps([c for c, _ in group])}
        if ship_data:
            item["blobs"] = pickle.dumps([b for _, b in group])
        items.append(item)
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = pool_map(ray, ds, Predictor, payload, pool, threads)
    results, logits_of = {}, {}
    t0 = time.perf_counter()
    for row in rows_watched(ray, ds, address):
        res = json.loads(row["result"])
        results[res["start"]] = res
        logits_of[res["start"]] = row["logits"]
        if progress:
            progress(len(res["ok"]) + len(res["why"]))
    wall = time.perf_counter() - t0
    missing = [s for s in range(0, len(records), chunk_size) if s not in results]
    if missing:
        raise ClusterError(f"the Ray run returned {len(results)} of {len(chunks)} chunks; no result was written",
                           hint="run again; check the cluster with `ray status`")

    top1 = top5 = agree = seen = 0
    compute = 0.0
    skipped, workers_seen, per_image = [], {}, []
    has_ref = payload["reference"] is not None
    for start in sorted(results):
        res = results[start]
        part = records[start:start + chunk_size]
        for j, why in sorted(res["why"].items(), key=lambda kv: int(kv[0])):
            skipped.append((part[int(j)].path, why))
        if res.get("worker"):
            workers_seen[res["worker_key"]] = res["worker"]
        workers_seen.setdefault(res["worker_key"], None)
        compute += res["compute_s"]
        if not res["ok"]:
            continue
        seen += len(res["ok"])
        top1 += sum(res["hit1"])
        top5 += sum(res["hit5"])
        if has_ref:
            agree += sum(int(a == b) for a, b in zip(res["pred"], res["ref_pred"]))
        if predictions:
            classes = None
            raw = logits_of[start]
            if raw:
                flat = np.frombuffer(raw, dtype=np.float32)
                classes = flat.reshape(len(res["ok"]), -1)
            for n, j in enumerate(res["ok"]):
                per_image.append({"file": str(part[j].path), "label": part[j].label, "pred": res["pred"][n],
                                  "top5": res["top5"][n], "ref_pred": res["ref_pred"][n] if has_ref else None,
                                  "logits": classes[n].tobytes() if classes is not None else None})
    if seen == 0:
        raise DataError(f"none of the {len(records)} images in {data} could be read:\n"
                        + describe_skipped(skipped),
                        hint="point --data at a folder of images PIL can decode (PNG, JPEG, ...)")
    described = [w for w in workers_seen.values() if w]
    kinds = {json.dumps(w["session_settings"], sort_keys=True, default=str) for w in described}
    if len(kinds) > 1:
        raise ClusterError(f"the workers ran {ref.name} with different settings ({len(kinds)} kinds: "
                           "runtime versions or precisions differ between nodes), so their answers "
                           "could differ from one another", hint="install the same runtimes on every node")
    first = described[0] if described else {"session_settings": {}, "machine": None}
    settings_used = first["session_settings"]
    record = {"schema_version": schema, "kind": "accuracy", "artifact": str(ref.path), "name": ref.name,
              "target": ref.manifest.get("target"), "precision": ref.manifest.get("precision"),
              "runtime": runtime, "engine": settings_used.get("engine", runtime),
              "session_settings": settings_used, "data": str(data), "images": seen, **skipped_record(skipped),
              "top1": top1 / seen, "top5": top5 / seen,
              "agreement_with_fp32": (agree / seen) if has_ref else None,
              "reference": ref_note,
              "images_per_s": seen / compute if compute else None,
              "machine": first["machine"], "ok": True,
              "cluster": {"engine": "ray", "ray": ray.__version__, "address": address,
                          "nodes": size["nodes"], "cpus": size["cpus"], "workers": pool,
                          "threads_per_worker": threads,
                          "worker_processes": len(workers_seen),          # > workers when one was restarted
                          "restarted_workers": sum(bool(w.get("restarted")) for w in described),
                          "worker_nodes": len({k.split(":")[0] for k in workers_seen}),
                          "wall_s": round(wall, 3),
                          "images_per_s": round((seen + len(skipped)) / wall, 1) if wall else None,
                          "artifact_transfer": ("shared path, sha256 checked on each worker" if shared_artifacts
                                                else "object store once, cached per node by sha256"),
                          "artifact_sha256": payload["artifact"]["sha256"],
                          "data_transfer": "files shipped with the tasks" if ship_data else "path seen by every node"}}
    c = record["cluster"]
    # Where it ran, as remote.fleet names a device (the CLI groups records by it). A cluster's
    # end-to-end images/s stays under `cluster`, never beside a device's latency.
    record["device"] = {"name": "ray", "where": f"Ray cluster at {address}: {c['nodes']} node(s), {c['cpus']} CPUs, "
                                                f"{pool} worker(s) x {threads} thread(s), {c['images_per_s']} img/s "
                                                "end to end"}
    if predictions:
        record["predictions"] = per_image
    return record
