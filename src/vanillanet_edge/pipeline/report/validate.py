"""Records read from disk are hostile input: each one is checked, field by field, against what the
report reads from it before any table sees it. A record that does not fit is a counted skip with
its reason (the report's "Files skipped" and the terminal's warnings), never a traceback, and a
NaN, inf, None or string median is never "measured", so never the fastest artifact.

Only what the report uses is checked (the TypedDicts in records.py name every field); the
required numbers must be finite, optional ones finite or absent/null.
"""
from __future__ import annotations

from typing import Any, Callable

from ...metrics import finite

Check = Callable[[Any], bool]
Fields = dict[str, tuple[Check, bool, str]]   # field -> (check, required, what it should be)


def _number(v) -> bool:
    return finite(v)


def _positive(v) -> bool:
    return finite(v) and v > 0


def _non_negative(v) -> bool:
    return finite(v) and v >= 0


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _fraction(v) -> bool:
    return finite(v) and 0 <= v <= 1


def _text(v) -> bool:
    return isinstance(v, str)


def _dict(v) -> bool:
    return isinstance(v, dict)


def _numbers(v) -> bool:
    return isinstance(v, list) and bool(v) and all(_positive(x) for x in v)


def _shape(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)


def _what(v) -> str:
    return repr(v) if finite(v) or v is None or isinstance(v, bool) else f"{v!r} ({type(v).__name__})"


def _problems(rec: dict, path: str, fields: Fields) -> str | None:
    """The first field of `rec` (a dict at `path`) that fails its check: (check, required, wanted)."""
    for key, (check, required, wanted) in fields.items():
        if key not in rec or rec[key] is None:
            if required:
                return f"{path}{key} is missing"
            continue
        if not check(rec[key]):
            return f"{path}{key} is {_what(rec[key])}, not {wanted}"
    return None


_COMMON: Fields = {"name": (_text, False, "a string"), "artifact": (_text, False, "a string"),
           "runtime": (_text, False, "a string"), "precision": (_text, False, "a string"),
           "target": (_text, False, "a string"), "status": (_text, False, "a string"),
           "error": (_text, False, "a string"), "reason": (_text, False, "a string"),
           "model": (_dict, False, "an object"), "input": (_dict, False, "an object"),
           "machine": (_dict, False, "an object"), "device": (_dict, False, "an object"),
           "session_settings": (_dict, False, "an object")}
_MODEL: Fields = {"variant": (_text, False, "a string"), "family": (_text, False, "a string"),
          "width": (_positive, False, "a positive number"), "macs": (_positive, False, "a positive number"),
          "params": (_positive, False, "a positive number"), "depth": (_count, False, "a whole number >= 1"),
          "published_top1": (_number, False, "a number")}
_LATENCY: Fields = {"median_ms": (_positive, True, "a positive finite number of ms"),
            "p90_ms": (_positive, True, "a positive finite number of ms"),
            "runs": (_count, True, "a whole number >= 1")}
_MEASURED: Fields = {"latency": (_dict, False, "an object"),     # ok without it: the failures table says "no rounds"
             "round_medians_ms": (_numbers, False, "a list of positive finite numbers"),
             "median_interval_ms": (_dict, False, "an object"),
             "gmacs_per_s": (_positive, False, "a positive finite number"),
             "artifact_size_bytes": (_positive, False, "a positive number"),
             "cpu_ms": (_dict, False, "an object"), "load_warning": (_text, False, "a string")}
_CPU: Fields = {"median_ms": (_non_negative, True, "a finite number of ms")}
_INTERVAL: Fields = {"low_ms": (_positive, True, "a positive finite number"), "high_ms": (_positive, True, "a positive finite number")}
_ACCURACY: Fields = {"top1": (_fraction, True, "a fraction between 0 and 1"), "top5": (_fraction, False, "a fraction"),
             "agreement_with_fp32": (_fraction, False, "a fraction"), "images": (_count, False, "a whole number"),
             "data": (_text, False, "a string")}
_PROFILE_ROW: Fields = {"name": (_text, True, "a string"), "time_ms": (_non_negative, True, "a finite number of ms"),
                "share": (_non_negative, False, "a finite number"), "op_type": (_text, False, "a string"),
                "exec_type": (_text, False, "a string")}
_PROFILE: Fields = {"rows": (lambda v: isinstance(v, list), False, "a list"),
            "total_ms": (_non_negative, False, "a finite number of ms"),
            "wall_ms_per_inference": (_non_negative, False, "a finite number of ms")}
_PEAK: Fields = {"gmacs_per_s": (_positive, True, "a positive finite number"), "threads": (_count, False, "a whole number"),
         "exec_type": (_text, False, "a string")}


def _nested(table, path: str, inner: Fields | None) -> str | None:
    """runtime -> precision -> entry tables of a peaks record."""
    if not isinstance(table, dict):
        return f"{path} is not an object"
    for runtime, by in table.items():
        if not isinstance(by, dict):
            return f"{path}.{runtime} is not an object"
        for prec, e in by.items():
            where = f"{path}.{runtime}.{prec}"
            if not isinstance(e, dict):
                return f"{where} is not an object"
            if inner and (why := _problems(e, where + ".", inner)):
                return why
    return None


def record_problem(rec: dict) -> str | None:
    """Why the report cannot use this result record, or None."""
    kind = rec.get("kind")
    why = _problems(rec, "", _COMMON)
    if why is None and isinstance(rec.get("model"), dict):
        why = _problems(rec["model"], "model.", _MODEL)
    if why is None and isinstance(rec.get("input"), dict) and rec["input"].get("shape") is not None \
            and not _shape(rec["input"]["shape"]):
        why = f"input.shape is {_what(rec['input']['shape'])}, not a list of whole numbers"
    if why is not None:
        return why
    if kind == "latency" and rec.get("ok"):
        why = _problems(rec, "", _MEASURED)
        if why is None and rec.get("latency") is not None:
            why = _problems(rec["latency"], "latency.", _LATENCY)
        if why is None and rec.get("median_interval_ms") is not None:
            why = _problems(rec["median_interval_ms"], "median_interval_ms.", _INTERVAL)
        if why is None and rec.get("cpu_ms") is not None:
            why = _problems(rec["cpu_ms"], "cpu_ms.", _CPU)
        return why
    if kind == "accuracy" and rec.get("ok", True):
        return _problems(rec, "", _ACCURACY)
    if kind == "layer_profile":
        why = _problems(rec, "", _PROFILE)
        for i, row in enumerate(rec.get("rows") or []):
            if why is None:
                why = (f"rows[{i}] is not an object" if not isinstance(row, dict)
                       else _problems(row, f"rows[{i}].", _PROFILE_ROW))
        return why
    if kind == "peaks":
        return (_nested(rec.get("peaks", {}), "peaks", _PEAK)
                or _nested(rec.get("unavailable", {}), "unavailable", None)
                or (None if isinstance(rec.get("how", ""), str) else "how is not a string"))
    return None
