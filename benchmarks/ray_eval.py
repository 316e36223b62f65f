"""Images/s of `eval` here against `eval --ray` on a local Ray cluster of 1 and 2 workers.

Usage: python benchmarks/ray_eval.py [ARTIFACT --data VAL_DIR] [--min-images 20000] [--work DIR]

Without ARTIFACT it builds what the tests use: the digits set, the tiny VanillaNet (vanillanet_5
at width 1/32, 32x32 inputs, 6 epochs) and its ONNX fp32 artifact (about a minute). The val
split is repeated (hard links) until it holds at least --min-images images. Every run does the
same work per image: decode + preprocess, the artifact's inference, the fp32 reference (for
agreement), with 1 intra-op thread per worker.

  local        devices.accuracy.evaluate in this process, threads=1
  ray N=1, 2   cluster.ray_eval.evaluate_on_ray on `ray.init(address="local", num_cpus=N)`,
               N actors of 1 CPU and 1 thread each

For the cluster runs it prints the end-to-end rate (the whole call: actors start, load the
artifact, torch for the reference, then stream) and the steady rate of a second dataset run
on the same cluster (artifacts already cached on the node). Results must be identical.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_tiny(work: Path) -> tuple[Path, Path]:
    import torch

    from vanillanet_edge.api import make_digits, train_model
    from vanillanet_edge.converters.convert import convert_checkpoint
    from vanillanet_edge.model.train import TrainConfig

    ckpt, arts = work / "tiny.pth", work / "artifacts"
    if not (arts / "tiny-onnx-fp32").exists():
        make_digits(work / "digits")
        torch.set_num_threads(1)
        train_model(work / "digits", ckpt, TrainConfig(variant="vanillanet_5", width=1 / 32, epochs=6,
                                                       decay_epochs=3, seed=0), input_size=32, progress=False)
        [outcome] = convert_checkpoint(ckpt, ["onnx"], ["fp32"], arts)
        assert outcome.ok, outcome.error
    return arts / "tiny-onnx-fp32", work / "digits" / "val"


def repeated(val: Path, min_images: int, work: Path) -> Path:
    files = sorted(p for p in val.rglob("*") if p.is_file())
    copies = -(-min_images // len(files))
    out = work / f"val-x{copies}"
    if not out.exists():
        tmp = work / f".val-x{copies}.partial"
        for k in range(copies):
            for f in files:
                dest = tmp / f.relative_to(val).parent / f"{k:03d}-{f.name}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, dest)
        tmp.rename(out)
    return out


def per_image_costs(ref, data: Path, n: int = 2000) -> str:
    """What one image costs on one thread: decode + preprocess, the artifact, the fp32 reference."""
    import numpy as np
    import torch

    from vanillanet_edge.devices.accuracy import CHUNK, _reference_model
    from vanillanet_edge.devices.registry import get_runner
    from vanillanet_edge.images import ImageFolder, Preprocessing, read_image

    torch.set_num_threads(1)
    records = ImageFolder(data).sample(n, 0)
    prep = Preprocessing.from_dict(ref.manifest["preprocessing"])
    t0 = time.perf_counter()
    x = np.stack([read_image(r.path, prep) for r in records])
    decode = time.perf_counter() - t0
    session = get_runner(ref.runtime).load(ref.artifact, ref.manifest, threads=1)
    t0 = time.perf_counter()
    session.run_all(x)
    infer = time.perf_counter() - t0
    model, _ = _reference_model(ref)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), CHUNK):
            model(torch.from_numpy(x[i:i + CHUNK]))
    reference = time.perf_counter() - t0
    us = 1e6 / len(x)
    return (f"per image, 1 thread: decode+preprocess {decode * us:.0f} us, artifact {infer * us:.0f} us, "
            f"fp32 reference {reference * us:.0f} us")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", nargs="?")
    ap.add_argument("--data", type=Path, help="labelled val folder (with ARTIFACT)")
    ap.add_argument("--min-images", type=int, default=20000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vne-ray-bench")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.artifact:
        artifact, val = Path(args.artifact), args.data
    else:
        artifact, val = build_tiny(args.work)
    data = repeated(val, args.min_images, args.work)

    import ray

    from vanillanet_edge.cluster.ray_eval import evaluate_on_ray
    from vanillanet_edge.devices.accuracy import evaluate
    from vanillanet_edge.devices.artifacts import resolve

    [ref] = resolve([artifact])
    keys = ("images", "skipped", "top1", "top5", "agreement_with_fp32")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores, load average {os.getloadavg()[0]:.1f}; "
          f"ray {ray.__version__}")
    print(per_image_costs(ref, data))
    print(f"artifact {ref.name} ({ref.runtime}), {data}: ", end="", flush=True)

    t0 = time.perf_counter()
    local = evaluate(ref, data, settings={"threads": 1})
    wall = time.perf_counter() - t0
    print(f"{local['images']} images")
    print(f"  local          1 thread : {local['images'] / wall:8.1f} img/s   ({wall:.1f} s; "
          f"inference alone {local['images_per_s']:.0f} img/s)  top1 {local['top1']:.4f}")
    for n in args.workers:
        cache = args.work / "cache"
        ray.init(address="local", num_cpus=n, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
        try:
            t0 = time.perf_counter()
            [first] = evaluate_on_ray([ref], data, "local", workers=n, threads=1, cache_dir=cache)
            cold = time.perf_counter() - t0
            [second] = evaluate_on_ray([ref], data, "local", workers=n, threads=1, cache_dir=cache)
        finally:
            ray.shutdown()
        same = all(first[k] == local[k] == second[k] for k in keys)
        c = second["cluster"]
        print(f"  ray {n} worker{'s' if n > 1 else ' '} x1 thread: {c['images_per_s']:8.1f} img/s steady "
              f"({c['wall_s']:.1f} s), {first['images'] / cold:8.1f} img/s end-to-end ({cold:.1f} s)  "
              f"top1 {second['top1']:.4f}  same as local: {same}")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
