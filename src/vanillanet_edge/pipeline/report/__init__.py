"""`vanillanet-edge report`: result records (bench --save / eval --save) -> report.md/.html/.json.

Everything shown is read from the records or measured here (the matmul peak probe); published
figures are labelled as such. A comparison that has no data says "not measured", never a number
made up or carried over. Tables hold numbers; the same table structures are written to
report.json with raw values, rendered to Markdown (plots beside it under plots/) and to one
self-contained HTML file (plots embedded as base64 PNG).
"""
from __future__ import annotations

from .plots import _spread  # noqa: F401  (tests draw its error bars)
from .records import NOT_MEASURED, RESULT_KINDS, Row, load_records, machine_line, normalise, peak_record
from .render import build_report, md_text, summary_text, verdict_lines
from .tables import Table, setting_label, verdict_sentences

__all__ = ["build_report", "peak_record", "verdict_lines", "load_records", "summary_text", "machine_line", "NOT_MEASURED",
           "RESULT_KINDS", "Row", "Table", "md_text", "normalise", "setting_label", "verdict_sentences"]
