"""eval over a real two-node Ray cluster on 127.0.0.1 (tests/cluster/conftest.py) gives a local
eval's answers: the same per-image logits, predictions and top-1, also with a worker killed
mid-run; an unreachable cluster and a missing ray give clear errors."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import time

import numpy as np
import pytest

from vanillanet_edge.cluster.ray_eval import ClusterError, evaluate_on_ray
from vanillanet_edge.devices import artifacts as art
from vanillanet_edge.devices.accuracy import CHUNK, evaluate
from vanillanet_edge.devices.registry import get_runner
from vanillanet_edge.errors import BackendMissingError
from vanillanet_edge.images import ImageFolder, load_images

# What a cluster record must share with the local record, value for value.
SAME_KEYS = ("schema_version", "kind", "artifact", "name", "target", "precision", "runtime", "engine",
             "session_settings", "data", "images", "skipped", "skipped_files", "top1", "top5",
             "agreement_with_fp32", "reference", "ok")


def local_logits(ref, data, threads=1):
    """Per-image logits of a plain local run: the runner loaded here, load_images per chunk."""
    session = get_runner(ref.runtime).load(ref.artifact, ref.manifest, threads=threads)
    from vanillanet_edge.images import Preprocessing

    prep = Preprocessing.from_dict(ref.manifest["preprocessing"])
    records = ImageFolder(data).sample(None)
    files, logits = [], []
    for i in range(0, len(records), CHUNK):
        chunk = load_images(records[i:i + CHUNK], prep, min_count=0)
        if len(chunk.inputs):
            logits.append(session.run_all(chunk.inputs))
            files += [str(p) for p in chunk.paths]
    return files, np.concatenate(logits)


@pytest.fixture(scope="module")
def val_with_a_broken_file(tiny_checkpoint, tmp_path_factory):
    """The digits val split plus one undecodable PNG (copied; under a second)."""
    root = tmp_path_factory.mktemp("val") / "val"
    shutil.copytree(tiny_checkpoint.data / "val", root)
    (root / "3" / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def check_same_as_local(ref, rec, data):
    local = evaluate(ref, data, settings={"threads": 1})
    assert {k: rec[k] for k in SAME_KEYS} == {k: local[k] for k in SAME_KEYS}
    files, logits = local_logits(ref, data)
    preds = rec["predictions"]
    assert [p["file"] for p in preds] == files
    got = np.stack([np.frombuffer(p["logits"], np.float32) for p in preds])
    assert got.tobytes() == logits.tobytes()                       # bit for bit
    assert [p["pred"] for p in preds] == logits.argmax(1).tolist()
    assert [p["top5"] for p in preds] == np.argsort(-logits, axis=1, kind="stable")[:, :5].tolist()
    return local


def test_cluster_eval_equals_local_eval(ray_cluster, tiny_artifacts, val_with_a_broken_file, tmp_path, monkeypatch):
    refs = art.resolve([tiny_artifacts])
    assert sorted(r.runtime for r in refs) == ["onnxruntime", "openvino"]
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)          # --ray auto finds it there
    seen = []
    recs = evaluate_on_ray(refs, val_with_a_broken_file, "auto", threads=1, cache_dir=tmp_path / "cache",
                           predictions=True, progress_for=lambda ref: seen.append)
    assert sum(seen) == 2 * len(ImageFolder(val_with_a_broken_file))
    for ref, rec in zip(refs, recs):
        local = check_same_as_local(ref, rec, val_with_a_broken_file)
        assert rec["skipped"] == 1 and rec["skipped_files"][0]["file"].endswith("zz-broken.png")
        assert local["top1"] > 0.9 and rec["agreement_with_fp32"] == 1.0
        c = rec["cluster"]
        assert (c["nodes"], c["cpus"], c["workers"], c["threads_per_worker"]) == (2, 2, 2, 1)
        assert 1 <= c["worker_nodes"] <= 2 and c["images_per_s"] > 0   # a fast actor may do all 6 chunks
    # The artifacts arrived once each, content-addressed, and were unpacked once per node.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")) == \
        sorted([recs[0]["cluster"]["artifact_sha256"], recs[1]["cluster"]["artifact_sha256"],
                __import__("hashlib").sha256(open(refs[0].manifest["source"]["checkpoint"], "rb").read()).hexdigest()])


def test_shipped_data_equals_local(ray_cluster, tiny_artifacts, val_with_a_broken_file, tmp_path):
    [ref] = [r for r in art.resolve([tiny_artifacts]) if r.runtime == "onnxruntime"]
    [rec] = evaluate_on_ray([ref], val_with_a_broken_file, ray_cluster.address, threads=1, ship_data=True,
                            shared_artifacts=True, predictions=True)
    check_same_as_local(ref, rec, val_with_a_broken_file)
    assert rec["cluster"]["data_transfer"] == "files shipped with the tasks"


def _map_workers(cluster):
    """pids of the Ray Data actors (their process title names the MapWorker)."""
    out = []
    for p in cluster.processes():
        try:
            if "MapWorker" in " ".join(p.cmdline()):
                out.append(p.pid)
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass
    return out


def test_killed_worker_is_retried_and_result_equals_local(ray_cluster, tiny_artifacts, tiny_checkpoint, tmp_path):
    """kill -9 every actor of the pool while all chunks are still to do: Ray restarts them and they
    do the work; the merged result is complete and equals the local one.

    Deterministic: each actor process is frozen (SIGSTOP) the moment it appears, so it cannot
    finish a chunk, and only when the whole pool (2 actors: 2 CPUs, 1 thread each) is frozen are
    both killed. Whatever is computed after that, a restarted actor computed, and Ray says so:
    `was_current_actor_reconstructed` (its GCS NumRestarts), recorded as restarted_workers.
    (Killing one actor after the first result depended on timing: under load the other actor
    sometimes finished every chunk before the restarted one was up, and nothing proved a restart.)"""
    [ref] = [r for r in art.resolve([tiny_artifacts]) if r.runtime == "openvino"]
    data = tmp_path / "val-x2"                 # 2 hard-linked copies of val: ~12 chunks to share out
    for k in range(2):
        for f in (tiny_checkpoint.data / "val").rglob("*.png"):
            dest = data / f.parent.name / f"{k}-{f.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dest)
    stale = set(_map_workers(ray_cluster))     # earlier tests' actors, possibly still exiting
    killed, done = [], threading.Event()

    def killer():
        frozen = []
        deadline = time.monotonic() + 120
        while len(frozen) < 2 and time.monotonic() < deadline and not done.is_set():
            for pid in _map_workers(ray_cluster):
                if pid not in stale and pid not in frozen:
                    os.kill(pid, signal.SIGSTOP)
                    frozen.append(pid)
            time.sleep(0.01)
        if len(frozen) == 2:
            for pid in frozen:
                os.kill(pid, signal.SIGKILL)
            killed.extend(frozen)
        else:                                  # never leave a process stopped
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        [rec] = evaluate_on_ray([ref], data, ray_cluster.address, threads=1, cache_dir=tmp_path / "cache",
                                predictions=True)
    finally:
        done.set()
        t.join(10)
    assert len(killed) == 2, "the pool's two actor processes were not both found and killed"
    assert rec["images"] == len(ImageFolder(data))
    check_same_as_local(ref, rec, data)
    assert rec["cluster"]["restarted_workers"] >= 1, rec["cluster"]   # Ray restarted the actors that did the work


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_cluster_is_a_clear_error(tiny_artifacts, tiny_checkpoint):
    refs = art.resolve([tiny_artifacts])[:1]
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as err:
        evaluate_on_ray(refs, tiny_checkpoint.data / "val", f"127.0.0.1:{_free_port()}")
    assert "no Ray cluster answers at 127.0.0.1:" in str(err.value) and err.value.hint
    assert time.monotonic() - t0 < 30


def test_missing_ray_names_the_extra(tiny_artifacts, tiny_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BackendMissingError) as err:
        evaluate_on_ray(art.resolve([tiny_artifacts])[:1], tiny_checkpoint.data / "val", "local")
    assert err.value.extra == "ray" and "vanillanet-edge[ray]" in err.value.hint


DRIVER = """
import sys
from vanillanet_edge.cluster.ray_eval import evaluate_on_ray
from vanillanet_edge.devices import artifacts as art
from vanillanet_edge.errors import VanillaNetEdgeError
from vanillanet_edge.fileio import write_json

refs = art.resolve([sys.argv[1]])
try:
    recs = evaluate_on_ray(refs, sys.argv[2], sys.argv[3], threads=1, cache_dir=sys.argv[5],
                           progress_for=lambda ref: lambda n: print("progress", n, flush=True))
except VanillaNetEdgeError as exc:
    print("ERROR", exc, flush=True)
    sys.exit(2)
write_json(sys.argv[4], recs)     # only a complete result is ever written (atomically)
"""


def test_cluster_that_disappears_mid_run_is_a_clear_error(tiny_artifacts, tiny_checkpoint, tmp_path):
    """Its own one-node cluster, killed (every process, kill -9) once rows come back: the driver
    (a subprocess: Ray may end a driver whose GCS is gone) reports ClusterError within seconds
    and writes nothing."""
    import subprocess
    import tempfile
    from pathlib import Path

    from raycluster import RAY_ENV, LocalRayCluster

    [ref] = [r for r in art.resolve([tiny_artifacts]) if r.runtime == "onnxruntime"]
    data = tmp_path / "val-x24"
    for k in range(24):
        for f in (tiny_checkpoint.data / "val").rglob("*.png"):
            dest = data / f.parent.name / f"{k}-{f.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dest)
    cluster = LocalRayCluster(Path(tempfile.mkdtemp(prefix="vne-ray-", dir="/tmp")), tmp_path)
    out = tmp_path / "records.json"
    try:
        cluster.start(nodes=1)
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(ref.path), str(data), cluster.address, str(out),
                                   str(tmp_path / "cache")],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  env={**os.environ, **RAY_ENV})
        first = driver.stdout.readline()
        assert first.startswith("progress"), first
        for p in cluster.processes():
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - gone meanwhile
                pass
        t0 = time.monotonic()
        rest, _ = driver.communicate(timeout=50)
        assert driver.returncode == 2, rest
        assert "went away mid-run" in rest and "no result was written" in rest
        assert time.monotonic() - t0 < 40
        assert not out.exists()
    finally:
        cluster.stop()


def test_a_workers_own_error_reaches_the_driver(ray_cluster, tiny_artifacts, tiny_checkpoint, monkeypatch):
    """A worker that refuses (here: another vanillanet-edge version than the driver's) ends the
    run with its own message and hint, not a Ray traceback."""
    import vanillanet_edge

    monkeypatch.setattr(vanillanet_edge, "__version__", "0.0.0-other")
    refs = art.resolve([tiny_artifacts])[:1]
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as err:
        evaluate_on_ray(refs, tiny_checkpoint.data / "val", ray_cluster.address, threads=1)
    assert "on a Ray worker: vanillanet-edge" in str(err.value) and "0.0.0-other on the driver" in str(err.value)
    assert err.value.hint == "install the same vanillanet-edge on every node"
    assert time.monotonic() - t0 < 60
