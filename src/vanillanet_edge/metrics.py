"""How two sets of logits are compared, everywhere: fusion checks, artifact verification, INT8."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


# Every check of a measured error against a limit goes through these two. A comparison with NaN
# is always False, so `err > limit: fail` passes a NaN error (a net with NaN weights "verified"
# with rel err nan); these are False for anything that is not a finite number.
def finite(value) -> bool:
    """A real, finite number (bools, None, strings, NaN and +-inf are not)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


def within(value, limit) -> bool:
    """value <= limit, with both finite numbers; NaN, inf, None or a string is never within."""
    return finite(value) and finite(limit) and value <= limit


def at_least(value, floor) -> bool:
    """value >= floor, with both finite numbers; NaN, inf, None or a string never is."""
    return finite(value) and finite(floor) and value >= floor


@dataclass(frozen=True)
class Agreement:
    max_abs: float       # largest absolute difference of any logit
    rel_err: float       # ||candidate - reference|| / ||reference|| over the whole batch
    top1_agree: float    # fraction of samples whose argmax matches
    samples: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"max abs {self.max_abs:.3g}, rel err {self.rel_err:.3g}, "
                f"top-1 agreement {100 * self.top1_agree:.1f}% over {self.samples} inputs")


def compare_logits(candidate, reference) -> Agreement:
    cand = np.asarray(candidate, dtype=np.float64).reshape(len(reference), -1)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if cand.shape != ref.shape:
        raise ValueError(f"output shapes differ: {cand.shape} vs reference {ref.shape}")
    diff = cand - ref
    norm = np.linalg.norm(ref)
    return Agreement(
        max_abs=float(np.abs(diff).max()) if diff.size else 0.0,
        rel_err=float(np.linalg.norm(diff) / norm) if norm > 0 else float(np.linalg.norm(diff)),
        top1_agree=float((cand.argmax(1) == ref.argmax(1)).mean()),
        samples=int(len(ref)),
    )
