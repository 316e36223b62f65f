"""Rendering: report.md (plots beside it), one self-contained report.html, report.json; build_report
ties records, tables and plots together."""
from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

from ...fileio import atomic_write_bytes, atomic_write_text, claim_folder, write_json
from ...model.published import A100_EAGER_MS, A100_TENSORRT_MS, OFFICIAL_SOURCE
from .plots import plot_int8, plot_latency, plot_ratio, plot_roofline, plot_scaling
from .records import (
    NOT_MEASURED,
    load_records,
    machine_line,
    normalise,
    peak_record,
)
from .tables import (
    Table,
    accuracy_table,
    devices_table,
    failures_table,
    fastest_table,
    headline_lines,
    int8_table,
    latency_table,
    official_table,
    peak_table,
    profile_table,
    verdict_sentences,
    verdict_table,
)

# ============================================================================ rendering

_CSS = """body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.nm{color:#a00;text-align:center}p.note{font-size:12px;color:#555}img{max-width:100%}
code{background:#f5f5f5}"""


def _md_table(t: Table) -> str:
    heads = [h for h, _ in t.columns]
    lines = ["| " + " | ".join(heads) + " |",
             "|" + "|".join("---:" if k == "num" else "---" for _, k in t.columns) + "|"]
    lines += ["| " + " | ".join(md_text(c).replace("|", "/") for c in row) + " |" for row in t.formatted()]
    return "\n".join(lines)


def md_text(text: str) -> str:
    """Text from records (model and file names, error messages) made inert in Markdown: HTML
    escaped (a renderer would run raw `<img onerror=...>`), Markdown's own marks backslashed."""
    out = html.escape(str(text), quote=False)
    for ch in "\\`*_[]#!":
        out = out.replace(ch, "\\" + ch)
    return out


def _html_table(t: Table) -> str:
    out = [f'<table id="{t.key}"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h, _ in t.columns)
           + "</tr></thead><tbody>"]
    for row in t.formatted():
        cells = []
        for (h, kind), c in zip(t.columns, row):
            cls = "nm" if c == NOT_MEASURED else ("num" if kind == "num" else "text")
            cells.append(f'<td class="{cls}" data-type="{kind}">{html.escape(c)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def summary_text(report: dict) -> str:
    """The lines a terminal wants: machine, medians per model/runtime/precision, the verdict."""
    lines = list(report["machines"]) or ["machine: not recorded"]
    for p in report.get("peaks", []):
        best = ", ".join(f"{rt} {prec} {e['gmacs_per_s']:.0f}" for rt, by in sorted(p["peaks"].items())
                         for prec, e in sorted(by.items()))
        lines.append(f"matmul peaks on {p['device']['name']} (GMAC/s): {best or 'none measured'}")
    tables = {t["key"]: t for t in report["tables"]}
    lines.append(f"{'model':<30}{'in':>5} {'runtime / precision':<34}{'median ms':>10}{'95% low':>10}"
                 f"{'95% high':>10}{'GMAC/s':>8}")
    for r in tables["latency"]["rows"]:
        config = r["runtime"] + " " + r["precision"] + (
            "" if r["computed in"] == r["precision"] else f" [{r['computed in']} compute]")
        lines.append(f"{r['model']:<30}{r['input'] or '':>5} {config:<34}{r['median ms']:>10.2f}"
                     f"{r['95% low ms']:>10.2f}{r['95% high ms']:>10.2f}{(r['GMAC/s'] or 0):>8.1f}")
    lines += verdict_lines(report)
    skipped = report.get("skipped_files", [])
    lines += [f"warning: skipped {s['file']}: {s['why']}" for s in skipped[:10]]
    if len(skipped) > 10:
        lines.append(f"warning: ... and {len(skipped) - 10} more skipped (report.json skipped_files)")
    return "\n".join(lines)


def verdict_lines(report: dict) -> list[str]:
    """The verdict for a terminal: one line per comparison row, then the sentences."""
    tables = {t["key"]: t for t in report["tables"]}
    lines = [*report.get("headlines", []),
             "The verdict, VanillaNet / ResNet-50 latency (< 1: VanillaNet faster; 95% interval):"]
    for r in tables["verdict"]["rows"]:
        where = f"  {r['device']} {r['runtime']} {r['precision']} {r['comparison']} ({r['settings']})"
        if r["ratio"] is None:
            why = "" if r["verdict here"] == NOT_MEASURED else f" ({r['verdict here']})"
            lines.append(f"{where} {r['VanillaNet']}: {NOT_MEASURED}{why}")
        else:
            lines.append(f"{where} @{r['input']}: {r['VanillaNet']} {r['VanillaNet ms']:.2f} ms / ResNet-50 "
                         f"{r['ResNet-50 ms']:.2f} ms = {r['ratio']:.3f} [{r['95% low']:.3f}, {r['95% high']:.3f}]: "
                         f"{r['verdict here']}")
    return lines + report.get("verdict_sentences", [])



def build_report(run_dir: str | Path, out_dir: str | Path, peaks: dict | None = None) -> dict:
    """Read every result record under run_dir; write report.md, report.html, report.json (and
    the plots as PNG under out_dir/plots/). Matmul peaks come from the "peaks" records under
    run_dir (the pipeline's bench measures them on each device); where there are none, `peaks`
    (a devices/peak.measure_peaks() result of this machine) is used, else measured now. Returns
    what report.json holds."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    records, sources, skipped = load_records(run_dir)
    rows = [normalise(r) for r in records]
    lat = [r for r in rows if r.kind == "latency" and r.rec.get("ok") and r.rec.get("latency")]
    failed = [r for r in rows if r.kind == "latency" and not (r.rec.get("ok") and r.rec.get("latency"))]
    acc = [r for r in rows if r.kind == "accuracy" and r.rec.get("ok", True) and r.rec.get("top1") is not None]
    profiles = [r for r in rows if r.kind == "layer_profile" and r.rec.get("rows")]
    peak_rows = [r for r in rows if r.kind == "peaks"]
    if not peak_rows:
        if peaks is None:
            from ...devices.machine import default_threads
            from ...devices.peak import measure_peaks
            peaks = measure_peaks(threads=default_threads())
        rec = {**peak_record(peaks), "_source": "(measured when the report was built)", "_index": 0}
        peak_rows = [normalise(rec)]

    machines: dict[str, str] = {}
    for r in rows:
        if r.machine:
            machines.setdefault(r.mkey, machine_line(r.machine))
    verdict = verdict_table(lat)
    sentences = verdict_sentences(verdict)
    headlines = headline_lines(verdict)
    # The answer first: the verdict and each model's fastest artifact, then the details.
    tables = [verdict, fastest_table(lat, acc), latency_table(lat, peak_rows), int8_table(lat, acc),
              accuracy_table(acc), official_table(), peak_table(peak_rows)]
    if len({r.device for r in lat}) > 1:
        tables.insert(2, devices_table(lat))
    if profiles:
        tables.append(profile_table(profiles))
    if failed:
        tables.append(failures_table(failed))
    by_key = {t.key: t for t in tables}

    plots: dict[str, bytes] = {}
    if lat:
        plots["latency"] = plot_latency(lat)
        plots["scaling"] = plot_scaling(lat)
        if any(r.latency.get("gmacs_per_s") for r in lat):
            roofline = plot_roofline(lat, peak_rows)
            if roofline:
                plots["roofline"] = roofline
    for key, fn, t in (("verdict", plot_ratio, by_key["verdict"]), ("int8", plot_int8, by_key["int8"])):
        png = fn(t)
        if png:
            plots[key] = png
    captions = {
        "latency": "Median latency per model x runtime x precision; error bars: min and max round median.",
        "scaling": "Latency against depth and against MACs: VanillaNet family (blue) next to the deep baselines (red).",
        "roofline": "Achieved GMAC/s as % of the measured matmul peak of the precision each artifact computes in.",
        "verdict": "VanillaNet / ResNet-50 latency ratio with its 95% interval; x: the published A100 eager ratio.",
        "int8": "INT8 speed-up over FP32 per runtime, with the top-1 change where it was measured.",
    }
    placement = {"latency": ["latency", "scaling", "roofline"], "verdict": ["verdict"], "int8": ["int8"]}

    claim_folder(out_dir, "report folder")
    (out_dir / "plots").mkdir(exist_ok=True)
    for key, png in plots.items():
        atomic_write_bytes(out_dir / "plots" / f"{key}.png", png)

    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    header = [f"Generated {created} from {len(records)} records in {len(sources)} files under `{run_dir}`.",
              *[f"- {m}" for m in machines.values()],
              "- % of peak: against the matmul peak of the precision an artifact computes in, measured "
              "through the runtimes' own kernels on the machine that ran it (table at the end)"]
    if len(machines) > 1:
        header.append("- records come from more than one machine: comparisons pair records of the same machine only")
    if not records:
        header.append(f"- no latency or accuracy records found under `{run_dir}`: every comparison is "
                      f"'{NOT_MEASURED}'")
    notes = ["Baseline and random-weight VanillaNet artifacts carry random weights: their latency is "
             "real, their accuracy is not. Top-1 figures labelled 'published' come from papers and "
             "model cards, never from these runs."]

    # One headline line per device opens the report; the per-runtime sentences follow the table.
    answer = headlines or [f"Verdict: {NOT_MEASURED} (no full-size VanillaNet and ResNet-50 timed together "
                           "at 224x224, batch 1; see [verdict] in `vanillanet-edge init`)."]
    md = ["# vanillanet-edge report", "", *[md_text(a) for a in answer], "", *[md_text(h) for h in header], "",
          *[md_text(n) for n in notes], ""]
    body = ["<h1>vanillanet-edge report</h1>" + "".join(f'<p class="answer">{html.escape(a)}</p>' for a in answer)
            + f"<p>{html.escape(header[0])}</p><ul>"
            + "".join(f"<li>{html.escape(h[2:])}</li>" for h in header[1:]) + "</ul>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes)]
    for t in tables:
        md += [f"## {md_text(t.title)}", "", _md_table(t), ""]
        body.append(f"<h2>{html.escape(t.title)}</h2>{_html_table(t)}")
        if t.published:
            md += [md_text(t.published), ""]
            body.append(f'<p class="published">{html.escape(t.published)}</p>')
        if t.key == "verdict" and sentences:
            md += [*[md_text(x) for x in sentences], ""]
            body.append("".join(f'<p class="detail">{html.escape(x)}</p>' for x in sentences))
        if t.note:
            md += [f"_{md_text(t.note)}_", ""]
            body.append(f'<p class="note">{html.escape(t.note)}</p>')
        for key in placement.get(t.key, []):
            if key in plots:
                md += [f"![{captions[key]}](plots/{key}.png)", "", f"_{captions[key]}_", ""]
                b64 = base64.b64encode(plots[key]).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(key)}" src="data:image/png;base64,{b64}">'
                            f"<figcaption>{html.escape(captions[key])}</figcaption></figure>")
    if skipped:
        md += ["## Files skipped", ""] + [f"- {md_text(s['file'])}: {md_text(s['why'])}" for s in skipped] + [""]
        body.append("<h2>Files skipped</h2><ul>" + "".join(
            f"<li><code>{html.escape(s['file'])}</code>: {html.escape(s['why'])}</li>" for s in skipped) + "</ul>")

    report = {"schema_version": 1, "created_utc": created, "run_dir": str(run_dir),
              "sources": sources, "skipped_files": skipped, "records": len(records),
              "machines": list(machines.values()), "peaks": [p.rec for p in peak_rows],
              "verdict_sentences": sentences, "headlines": headlines,
              "tables": [t.as_json() for t in tables], "plots": {k: f"plots/{k}.png" for k in plots},
              "official": {"a100_eager_ms": A100_EAGER_MS, "a100_tensorrt_fp32_fp16_ms": A100_TENSORRT_MS,
                           "source": OFFICIAL_SOURCE}}
    # Each file whole or not at all: a crash mid-report never leaves a finished-looking half.
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    atomic_write_text(out_dir / "report.html",
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>vanillanet-edge report</title>"
        f"<style>{_CSS}</style></head><body>" + "".join(body) + "</body></html>")
    write_json(out_dir / "report.json", report)
    return report


