"""One measurement in a fresh process: `python -m vanillanet_edge.devices.worker latency < job.json`.

A fresh process per runtime keeps thread pools, spinning threads and allocator state of one
runtime from disturbing another's timings. The last stdout line is the JSON result.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .artifacts import resolve
from .latency import BenchSettings, measure_in_process


def main(argv: list[str]) -> int:
    if argv[:1] != ["latency"]:
        print("usage: python -m vanillanet_edge.devices.worker latency < job.json", file=sys.stderr)
        return 2
    job = json.loads(sys.stdin.read())
    settings = BenchSettings(**job["settings"])
    [ref] = resolve([Path(job["artifact"])], batch=1)
    result = measure_in_process(ref, job["runtime"], settings)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
