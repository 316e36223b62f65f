"""The range of every number a user gives: command-line options, pipeline keys, API arguments.

One table, read by the CLI's option types (cli/options.py `number`), the pipeline file's schema
(pipeline/config.py) and the API's argument checks (api.py, steps.py), so a value refused in one
place is refused in all, with the same words. Floats must be finite everywhere: nan and inf
are never a setting. The upper bounds are far above any sensible value; they keep a typo from
asking for petabytes, a billion threads or a week of timing. Imports nothing of ours but errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .errors import VanillaNetEdgeError

# The largest input side any command takes, and an artifact's largest fixed batch: the one
# definition (manifest.py bounds a manifest by them, model/vanillanet.py a net; this module ships
# in the device bundle).
MAX_INPUT_SIZE = 2048
MAX_BATCH = 1024


class RangeError(VanillaNetEdgeError):
    """A number is not one the setting can take."""


def _fmt(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


@dataclass(frozen=True)
class Range:
    """The values a number may take: `kind` int or float, from `low` to `high` (both included,
    but `low` itself excluded when `low_open`), plus `sentinels`: values with a meaning of their
    own (the pipeline file's 0 = "the default", -1 = "no budget")."""

    kind: type
    low: float
    high: float
    low_open: bool = False
    sentinels: tuple = ()

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        if self.low_open:
            text = f"{what} above {_fmt(self.low)} and at most {_fmt(self.high)}"
        else:
            text = f"{what} from {_fmt(self.low)} to {_fmt(self.high)}"
        return text + "".join(f" or {_fmt(s)}" for s in self.sentinels)

    def problem(self, value) -> str | None:
        """None if `value` is allowed, else what it must be ("must be an integer from 1 to 8")."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.kind is int and not isinstance(value, int)):
            return f"must be {self.describe()}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be {self.describe()} (not {value})"
        if value in self.sentinels:
            return None
        below = value <= self.low if self.low_open else value < self.low
        if below or value > self.high:
            return f"must be {self.describe()}"
        return None

    def or_(self, *sentinels) -> "Range":
        """This range plus values with a meaning of their own."""
        return replace(self, sentinels=self.sentinels + sentinels)


def check(name: str, value, rng: Range) -> None:
    """Raise RangeError naming `name` unless `value` is None or in `rng`."""
    if value is None:
        return
    problem = rng.problem(value)
    if problem:
        raise RangeError(f"{name} {problem}, got {value!r}")


# -- the table ---------------------------------------------------------------------------------
SEED = Range(int, 0, 2 ** 32 - 1)                 # numpy's and random's seed range
INPUT_SIZE = Range(int, 1, MAX_INPUT_SIZE)        # each variant's own minimum is checked by the model
IMAGE_SIZE = Range(int, 1, MAX_INPUT_SIZE)        # `data digits --size`
BATCH = Range(int, 1, MAX_BATCH)                  # the fixed batch of an artifact
TRAIN_BATCH = Range(int, 1, 65536)
EPOCHS = Range(int, 1, 100_000)
DECAY_EPOCHS = Range(int, 0, 100_000)
LR = Range(float, 0.0, 10.0, low_open=True)
WIDTH = Range(float, 0.0, 4.0, low_open=True)     # channel multiplier (1 = the official size)
NUM_CLASSES = Range(int, 1, 100_000)
SAMPLES = Range(int, 1, 1_000_000)                # calibration images
LIMIT = Range(int, 1, 1_000_000_000)              # images evaluated (a seeded sample)
MAX_DROP = Range(float, 0.0, 100.0)               # top-1 points
THREADS = Range(int, 1, 1024)
WARMUP = Range(int, 0, 100_000_000)
RUNS = Range(int, 1, 100_000_000)
ROUNDS = Range(int, 1, 1000)                      # each a fresh process per artifact
SECONDS = Range(float, 0.1, 86_400.0)             # a timing budget instead of a run count
PROBE_SECONDS = Range(float, 0.0, 600.0, low_open=True)
BUDGET_MS = Range(float, 0.0, 3_600_000.0, low_open=True)
TOP = Range(int, 0, 1_000_000)                    # rows listed; 0 = all
LABELS = Range(int, 1, 20)                        # classify's labels per image
WORKERS = Range(int, 1, 4096)
TIMEOUT_S = Range(float, 0.0, 7 * 86_400.0, low_open=True)
PORT = Range(int, 1, 65535)
