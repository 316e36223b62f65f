"""What every pipeline stage is handed: the config, the run folder, the log and what ran so far
(stages.py runs them; verdict.py is one in its own module)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import VanillaNetEdgeError
from .rundir import RunDir


@dataclass
class Context:
    cfg: dict
    run: RunDir
    log: Callable[[str], None]
    force: set = field(default_factory=set)
    only: set = field(default_factory=set)
    data_root: Path | None = None
    checkpoint: Path | None = None
    checkpoint_sha: str = ""
    artifacts: list[Path] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def step(self, stage: str, name: str, key: str) -> dict | None:
        """Cached result of a step, or None when it must run (forced, new key, outputs gone)."""
        if stage in self.force:
            return None
        entry = self.run.done(name, key)
        if entry is None and self.only and stage not in self.only:
            raise VanillaNetEdgeError(f"stage '{stage}' has not run with these settings yet",
                                      hint=f"drop --only, or add --only {stage}")
        return entry

    def path(self, *parts) -> Path:
        return self.run.path.joinpath(*parts)


def _split(ctx: Context, name: str) -> Path:
    return ctx.data_root / name


def calibration_data(ctx: Context) -> Path | None:
    """The images int8 ranges are calibrated on: the calibration.data folder, else the data
    root's train split when there is one, else None (the caller says what that means: the
    run's int8 stages stop with a hint, the verdict leaves int8 out)."""
    given = ctx.cfg["calibration"]["data"]
    if given:
        return Path(given)
    train = _split(ctx, "train") if ctx.data_root else None
    return train if train and train.is_dir() else None
