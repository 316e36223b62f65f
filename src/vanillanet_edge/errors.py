"""Errors a user can act on. Every error names what went wrong and what to do next."""
from __future__ import annotations

import difflib


class VanillaNetEdgeError(Exception):
    """Base class: `str(err)` is the message, `err.hint` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base


class CheckpointError(VanillaNetEdgeError):
    """A checkpoint file is missing, unreadable, unsafe or does not fit the model."""

    DEFAULT_HINT = ("check that the file is complete and is a VanillaNet checkpoint (copy or save it again); "
                    "if its name does not say which variant it is, pass --variant")

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint or self.DEFAULT_HINT)   # every checkpoint error says what to do


class FusionError(VanillaNetEdgeError):
    """The deploy switch cannot be applied exactly."""


class InputSizeError(VanillaNetEdgeError):
    """The network cannot take the requested input size."""


class DataError(VanillaNetEdgeError):
    """An image folder is missing, empty or unreadable."""


class BackendMissingError(VanillaNetEdgeError):
    """An optional backend library is not installed."""

    def __init__(self, what: str, extra: str, missing_module: str):
        super().__init__(
            f"{what} needs the Python package '{missing_module}', which is not installed",
            hint=f"pip install 'vanillanet-edge[{extra}]' -c constraints.txt",
        )
        self.extra = extra
        self.missing_module = missing_module


class ConversionError(VanillaNetEdgeError):
    """A converter or the verification of its artifact failed."""


class VerificationError(ConversionError):
    """An artifact's outputs differ from the fused PyTorch reference beyond the limits."""


RECONVERT_HINT = "re-convert it with `vanillanet-edge convert`"


class ArtifactDamagedError(VanillaNetEdgeError):
    """An artifact's files are not what its manifest says (size, sha256), or its runtime cannot
    load or run it: the file was cut, replaced or changed after conversion."""

    def __init__(self, message: str, hint: str | None = RECONVERT_HINT):
        super().__init__(message, hint)


class ProfilingNotOfferedError(VanillaNetEdgeError):
    """A runtime has no per-layer profiler that vanillanet-edge can drive."""


def did_you_mean(name: str, options) -> str:
    """"did you mean 'x'? " for the closest of `options` to a mistyped `name`, else ""."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean '{close[0]}'? " if close else ""
