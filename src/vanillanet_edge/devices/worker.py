"""One measurement in a fresh process: `python -m vanillanet_edge.devices.worker latency < job.json`.

A fresh process per runtime keeps thread pools, spinning threads and allocator state of one
runtime from disturbing another's timings. The last stdout line is the JSON result.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import VanillaNetEdgeError
from .artifacts import resolve
from .latency import BenchSettings, measure_in_process
from .machine import describe_machine


def main(argv: list[str]) -> int:
    if argv[:1] != ["latency"]:
        print("usage: python -m vanillanet_edge.devices.worker latency < job.json", file=sys.stderr)
        return 2
    job = json.loads(sys.stdin.read())
    settings = BenchSettings(**job["settings"])
    try:
        [ref] = resolve([Path(job["artifact"])], batch=1)
        result = measure_in_process(ref, job["runtime"], settings)
    except VanillaNetEdgeError as exc:
        # Our errors (a damaged artifact, a refused manifest) are the round's result, as one
        # clean message: bench records it instead of the end of a traceback.
        result = {"status": "failed", "error": str(exc), "machine": describe_machine()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
