"""`convert --eval-data DIR --ray ADDRESS`: each artifact's top-1 (every candidate of the
`--max-drop` loop) measured on a Ray cluster, with the numbers a local measurement gives.

`RayAccuracy` is an accuracy measurer (converters/convert.py `AccuracyMeasurer`): convert_one
calls it where it would call `measure_here`. It runs `ray_eval.evaluate_on_ray` on the candidate
artifact (its private, not yet published folder, shipped content-addressed) over the same
seeded sample of the same folder (EvalSet data/limit/seed), in the same chunks, with the same
runner settings (the converter's verify settings), and takes top-1 as the argmax of each
image's logits, as `measure_here` does. The files the cluster scored are checked against the
EvalSet's: a node that reads a different set (another copy of the folder, a file unreadable
there) ends the command rather than give a number from other images.

What stays on the driver: export, verification, the sensitivity ranking and the fp32 reference
top-1 (the fused net on the EvalSet's images, computed once per command); latency never runs on
the cluster. The connection is opened once, on entering, and shared by every measurement
(`ray_eval.connect` keeps an already initialised Ray running). Worker threads: the settings'
`threads`, else 1 per actor (`evaluate_on_ray`); the runtimes' per-image logits do not depend
on it for the artifacts we make (tests/cluster/test_ray_convert.py checks ONNX Runtime INT8).
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from .ray_eval import ClusterError, connect, evaluate_on_ray, require_ray


class RayAccuracy:
    """An accuracy measurer on the Ray cluster at `address`; use it as a context manager."""

    def __init__(self, address: str, workers: int | None = None, cache_dir: str | Path | None = None,
                 local_cpus: int | None = None):
        self.address, self.workers, self.cache_dir, self.local_cpus = address, workers, cache_dir, local_cpus
        self._stack = ExitStack()

    def __enter__(self) -> "RayAccuracy":
        require_ray("convert --ray (Ray Data)")
        self._stack.enter_context(connect(self.address, self.local_cpus))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def __call__(self, evaluation, runtime: str, folder: Path, artifact: Path, manifest: dict,
                 settings: dict) -> dict:
        from ..converters.convert import AccuracyUnavailable
        from ..devices.artifacts import ArtifactRef

        ref = ArtifactRef(Path(folder), Path(artifact), manifest, runtime)
        try:
            [record] = evaluate_on_ray([ref], evaluation.data, self.address, evaluation.limit,
                                       settings=settings, seed=evaluation.seed, workers=self.workers,
                                       cache_dir=self.cache_dir, predictions=True, reference=False)
        except ClusterError as exc:
            raise AccuracyUnavailable(f"measuring top-1 on the Ray cluster failed: {exc.args[0]}",
                                      exc.hint) from exc
        per_image = record["predictions"]
        if [p["file"] for p in per_image] != list(evaluation.files):
            raise AccuracyUnavailable(
                f"the Ray cluster scored {len(per_image)} images of {evaluation.data}, not the "
                f"{len(evaluation.files)} this machine reads, so its top-1 would not compare with the fp32 one",
                hint="give --eval-data a path every node sees with the same files")
        hits = sum(int(p["pred"] == p["label"]) for p in per_image)
        return {"top1": hits / len(per_image), "measured_on": record["device"]["where"]}
