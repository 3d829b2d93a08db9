"""A self-contained HTML report: provenance, the slice table, a forest plot, conditions, worst utterances.

No network: CSS is inline, plots are inline SVG, and a Content-Security-Policy forbids scripts and fetches.
Every string from the run (transcripts, tags, ids, paths, backend options) is untrusted and escaped.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.escaping import escape_html
from harness.report import format as fmt
from harness.report.data import incomplete_notice
from harness.report.render import (
    _footnote, condition_columns, condition_rows, disparity_lines, display_rows, significant_tests, slicing_text, table_columns,
    warning_lines,
)
from harness.report.slices import NOT_GIVEN, _snr_label
from harness.scoring import alignment

WORST_PER_SLICE = 5
FAILED_SHOWN = 20
TEXT_LIMIT_CHARS = 2_000
"""Most characters of one text (a reference, a hypothesis, an error) the page embeds; the rest is counted, not shown.
A 50 MB reference once made a 630 MB report.html. The full texts stay in results.sqlite and utterances.parquet."""
ALIGNMENT_LIMIT_WORDS = 400
"""Most aligned words shown per utterance; longer alignments are cut with a count of what is left out."""
# Defence in depth: even if some text escaped escaping, the page can run no script and load nothing.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { --fg: #1b1f24; --muted: #667085; --line: #d0d5dd; --bg-alt: #f6f7f9; --accent: #1f5fa8;
        --sub: #9a5b00; --sub-bg: #fff1d6; --del: #b42318; --del-bg: #fde7e5; --ins: #146c2e; --ins-bg: #e1f5e6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0 auto; padding: 20px 28px 48px; max-width: 1200px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
p, li { max-width: 92ch; }
.muted, .note { color: var(--muted); }
.note { font-size: 12.5px; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0 0; font-size: 13px; }
dl.prov dt { color: var(--muted); }
dl.prov dd { margin: 0; overflow-wrap: anywhere; }
code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--bg-alt); padding: 0 3px; border-radius: 3px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eaecf0; text-align: right; white-space: nowrap; }
th { background: var(--bg-alt); font-weight: 600; border-bottom: 1px solid var(--line); position: sticky; top: 0; }
th.l, td.l { text-align: left; }
tr.dim td { background: #eef3fa; font-weight: 600; text-align: left; color: var(--accent); }
tr.overall td { font-weight: 600; }
tr.small td { color: var(--muted); font-style: italic; }
.badge { display: inline-block; font-size: 11px; font-style: normal; padding: 0 6px; border-radius: 8px; background: #eaecf0; color: #475467; }
.scroll { overflow-x: auto; }
svg { max-width: 100%; height: auto; }
figure.robustness { margin: 8px 0; }
figure.robustness svg * { stroke-linejoin: round; stroke-linecap: butt; }
svg.forest text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--fg); }
svg.forest .lab-small, svg.forest .val-small { fill: var(--muted); font-style: italic; }
svg.forest .grid { stroke: #eaecf0; }
svg.forest .ci { stroke: var(--accent); stroke-width: 2; }
svg.forest .pt { fill: var(--accent); }
svg.forest .pt-small { fill: #fff; stroke: #98a2b3; stroke-width: 1.5; }
svg.forest .ref { stroke: #b42318; stroke-dasharray: 4 3; }
svg.forest .band { fill: #b42318; opacity: 0.08; }
svg.forest .dimlab { font-weight: 600; fill: var(--accent); }
details { margin: 4px 0; border: 1px solid #eaecf0; border-radius: 6px; padding: 4px 10px; }
details[open] { padding-bottom: 10px; }
summary { cursor: pointer; }
.utt { margin: 10px 0 0; padding-top: 8px; border-top: 1px dashed #eaecf0; }
.utt:first-of-type { border-top: 0; }
.utt .meta { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.align { font-size: 14px; line-height: 1.9; overflow-wrap: anywhere; }
.align .s { background: var(--sub-bg); color: var(--sub); font-weight: 600; padding: 1px 3px; border-radius: 3px; }
.align del { background: var(--del-bg); color: var(--del); padding: 1px 3px; border-radius: 3px; }
.align ins { background: var(--ins-bg); color: var(--ins); padding: 1px 3px; border-radius: 3px; }
.raw { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; margin: 2px 0; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.legend { font-size: 13px; color: var(--muted); max-width: none; }
.legend .s, .legend del, .legend ins { margin: 0 4px 0 10px; }
.warn { background: #fff4e5; border: 1px solid #f5b971; border-radius: 6px; padding: 8px 12px; color: #7a3e00; }
.cut { color: var(--muted); font-style: italic; }
"""


e = escape_html  # short name: it wraps every value on every line below


def render_html(report, *, worst_per_slice: int = WORST_PER_SLICE) -> str:
    """The whole report as one HTML document that opens offline."""
    from harness.report.build import select_condition
    from harness.report.data import load_run

    data = load_run(report.run_dir)  # the worst utterances are shown with their transcripts
    frame, _ = select_condition(data, report.options)
    label = report.options.rate.label
    notice = incomplete_notice(report.run)
    body = [
        f"<h1>{label} report: {e(report.run_dir.name)}</h1>",
        *([f'<p class="warn" role="alert"><strong>Warning:</strong> {e(notice)}</p>'] if notice else []),
        provenance_html(report),
        f"<h2>{label} by slice</h2>",
        slice_table_html(report),
        f'<p class="note">{e(_footnote(report))}</p>',
        disparities_html(report),
        *latency_html(report),
        "<h2>Forest plot</h2>",
        f'<p class="note">Pooled {label} of each slice with its {e(report.options.label)} interval; the dashed line and band are the overall {label} and its interval. '
        "Hollow grey points are small slices: shown without an interval and not ranked.</p>",
        forest_svg(report.table.overall, report.table.slices, metric=report.options.metric),
    ]
    if report.conditions is not None:
        body += conditions_html(report)
    body += worst_utterances_html(report, frame, worst_per_slice)
    body += failed_html(data.frame)
    return page(f"WER report: {report.run_dir.name}", "\n".join(body))


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def provenance_items(report) -> list[tuple[str, str]]:
    """(label, plain text) pairs describing where the figures came from; shared with the service card."""
    run = report.run
    manifest = run.get("manifest") or {}
    backend = run.get("backend") or {}
    normalizer = run.get("normalizer") or {}
    git = run.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    items = [
        ("Manifest", f"{manifest.get('path')} ({manifest.get('format')}, {manifest.get('n_utterances')} utterances)"),
        ("Manifest sha256", str(manifest.get("sha256") or "unknown")),
        ("Backend", f"{backend.get('name')} {json.dumps(backend.get('options') or {}, ensure_ascii=False)}"),
        ("Normaliser", f"{normalizer.get('name')} ({normalizer.get('implementation')})"),
        ("Seed", f"run {run.get('seed')}; permutation tests {report.options.seed}"),
        ("Git", commit),
        ("Created", str(run.get("created_at"))),
        ("Conditions", ", ".join(map(str, run.get("conditions") or [])) or "clean"),
    ]
    counts = run.get("completeness") or {}
    if counts and not counts.get("complete"):
        items.append(("Run status", f"{counts.get('status')}: {counts.get('transcribed')} of {counts.get('expected')} utterance-conditions transcribed"))
    elif run.get("status") != "complete":
        items.append(("Run status", f"{run.get('status')}: not every utterance was transcribed"))
    if report.condition:
        items.append(("Slice table covers", f"condition {report.condition}"))
    items.append(("Slicing", slicing_text(report.options)))
    return items


def provenance_html(report) -> str:
    rows = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in provenance_items(report))
    return f'<dl class="prov">{rows}</dl>'


def slice_table_html(report) -> str:
    columns = table_columns(report)
    header = "".join(f'<th class="{"l" if k in ("slice", "flag") else ""}" scope="col">{e(h)}</th>' for k, h in columns)
    lines = [f'<div class="scroll"><table class="slices"><thead><tr>{header}</tr></thead><tbody>']
    previous = None
    for source, row in zip([{**report.table.overall, "dimension": "overall"}, *report.table.slices], display_rows(report)):
        if source["dimension"] != previous and source["dimension"] != "overall":
            lines.append(f'<tr class="dim"><td colspan="{len(columns)}">by {e(source["dimension"])}</td></tr>')
        previous = source["dimension"]
        classes = "overall" if source["dimension"] == "overall" else ("small" if source["small"] else "")
        cells = []
        for key, _ in columns:
            value = row[key]
            if key == "flag" and value:
                cells.append(f'<td class="l"><span class="badge" title="too few speakers or words to rank or to trust an interval">{e(value)}</span></td>')
            else:
                cells.append(f'<td class="{"l" if key in ("slice", "flag") else ""}">{e(value)}</td>')
        lines.append(f'<tr class="{classes}">{"".join(cells)}</tr>')
    lines.append("</tbody></table></div>")
    return "".join(lines)


def latency_html(report) -> list[str]:
    """Latency p50/p90 per slice, for backends that measure it (HTTP APIs, command-line engines)."""
    rows = [{**report.table.overall, "dimension": "overall", "by": {}}, *report.table.slices]
    if not any(row.get("latency_p50_s") is not None for row in rows):
        return []
    body = "".join(
        f'<tr><td class="l">{e("overall" if not row["by"] else ", ".join(f"{k}={v}" for k, v in row["by"].items()))}</td>'
        f"<td>{e(row.get('n_latency', 0))}</td><td>{e(_seconds(row.get('latency_p50_s')))}</td><td>{e(_seconds(row.get('latency_p90_s')))}</td></tr>"
        for row in rows
    )
    return [
        "<h2>Latency by slice</h2>",
        '<p class="note">Seconds per utterance for the request that returned its transcript (retries and waits excluded).</p>',
        f'<table class="latency"><thead><tr><th class="l" scope="col">slice</th><th scope="col">measured</th><th scope="col">p50</th><th scope="col">p90</th></tr></thead><tbody>{body}</tbody></table>',
    ]


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} s"


def disparities_html(report) -> str:
    items = [f"<li>{e(line)}</li>" for line in warning_lines(report) + disparity_lines(report)]
    return f"<ul>{''.join(items)}</ul>" if items else ""


# Forest plot geometry, in SVG user units (pixels at 100%).
LABEL_W, PLOT_W, VALUE_W, ROW_H, TOP, BOTTOM = 190, 520, 170, 19, 34, 34


def forest_svg(overall: dict[str, Any], slices: list[dict[str, Any]], *, include_small: bool = True, title: str = "WER by slice", metric: str = "wer") -> str:
    """Slice WER with intervals, one row per slice grouped by dimension; overall WER as a reference line.

    Trusted slices are filled points (class "pt") on their interval; small ones are hollow grey (class
    "pt-small") with no interval, or left out entirely with include_small=False.
    """
    m, low_key, high_key, metric_label = metric, f"{metric}_ci_low", f"{metric}_ci_high", metric.upper()
    shown = [r for r in slices if (include_small or not r["small"]) and r[m] is not None]
    if not shown:
        return '<p class="note">No slice to plot.</p>'
    values = [v for r in shown for v in (r[m], None if r["small"] else r.get(high_key)) if v is not None]
    values += [v for v in (overall.get(m), overall.get(high_key)) if v is not None]
    step, top = _axis(max(values) if values else 1.0)

    def x(value: float) -> float:
        return LABEL_W + PLOT_W * min(value, top) / top

    rows: list[tuple[str, Any]] = []
    for row in shown:
        if not rows or rows[-1][1] is not None and rows[-1][1]["dimension"] != row["dimension"]:
            rows.append((row["dimension"], None))
        rows.append((row["dimension"], row))
    height = TOP + ROW_H * len(rows) + BOTTOM
    width = LABEL_W + PLOT_W + VALUE_W
    bottom = TOP + ROW_H * len(rows)
    out = [
        f'<svg class="forest" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{e(title)}">',
        f"<title>{e(title)}: pooled {metric_label} with intervals{'; small slices hollow, without interval' if include_small else ''}</title>",
    ]
    tick = 0.0
    while tick <= top + 1e-9:
        out.append(f'<line class="grid" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP - 4}" y2="{bottom}"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{tick * 100:g}%</text>')
        tick += step
    out.append(f'<text x="{LABEL_W + PLOT_W / 2:.1f}" y="{bottom + 31}" text-anchor="middle">{metric_label}</text>')
    if overall.get(m) is not None:
        if overall.get(low_key) is not None and overall.get(high_key) is not None:
            lo, hi = x(overall[low_key]), x(overall[high_key])
            out.append(f'<rect class="band" x="{lo:.1f}" y="{TOP - 4}" width="{max(hi - lo, 0.5):.1f}" height="{bottom - TOP + 4}"/>')
        ox = x(overall[m])
        out.append(f'<line class="ref" x1="{ox:.1f}" x2="{ox:.1f}" y1="{TOP - 4}" y2="{bottom}"/>')
        out.append(f'<text x="{ox:.1f}" y="{TOP - 10}" text-anchor="middle" fill="#b42318">overall {e(fmt.pct(overall[m]))}</text>')
    out.append(f'<text x="{LABEL_W + PLOT_W + 10}" y="{TOP - 10}" class="dimlab">{metric_label} [interval]</text>')
    for i, (dimension, row) in enumerate(rows):
        y = TOP + ROW_H * i + ROW_H / 2
        if row is None:
            out.append(f'<text class="dimlab" x="4" y="{y + 4:.1f}">by {e(dimension)}</text>')
            continue
        label = ", ".join(row["by"].values())
        shown_label = label if len(label) <= 26 else label[:25] + "…"
        ci = fmt.interval(row.get(low_key), row.get(high_key))
        interval = "" if row["small"] else f" [{ci}]"
        tooltip = f"{fmt.slice_label(row['by'])}: {metric_label} {fmt.pct(row[m])}{interval}; {row['n_speakers']} speakers ({row.get('n_effective_speakers', 0):.1f} effective), {row['n_utterances']} utterances{' (small)' if row['small'] else ''}"
        out.append(f"<g><title>{e(tooltip)}</title>")
        out.append(f'<text class="{"lab-small" if row["small"] else "lab"}" x="14" y="{y + 4:.1f}">{e(shown_label)}</text>')
        if row["small"]:
            out.append(f'<circle class="pt-small" cx="{x(row[m]):.1f}" cy="{y:.1f}" r="4"/>')
            value = f"{fmt.pct(row[m])} (small)"
        else:
            if row.get(low_key) is not None and row.get(high_key) is not None:
                out.append(f'<line class="ci" x1="{x(row[low_key]):.1f}" x2="{x(row[high_key]):.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
            out.append(f'<circle class="pt" cx="{x(row[m]):.1f}" cy="{y:.1f}" r="4.5"/>')
            value = f"{fmt.pct(row[m])} [{ci}]"
        out.append(f'<text class="{"val-small" if row["small"] else "val"}" x="{LABEL_W + PLOT_W + 10}" y="{y + 4:.1f}">{e(value)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _axis(maximum: float) -> tuple[float, float]:
    """A tick step and an axis end (as fractions) covering `maximum` with at most 8 ticks."""
    maximum = max(maximum, 0.01)
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0):
        top = math.ceil(maximum * 1.02 / step) * step
        if top / step <= 8:
            return step, top
    return 10.0, math.ceil(maximum / 10.0) * 10.0


def conditions_html(report) -> list[str]:
    columns = condition_columns(report)
    header = "".join(f'<th class="{"l" if k in ("slice", "condition", "flag") else ""}" scope="col">{e(h)}</th>' for k, h in columns)
    rows = []
    for row in condition_rows(report):
        cells = "".join(
            f'<td class="l"><span class="badge">{e(row[k])}</span></td>' if k == "flag" and row[k] else f'<td class="{"l" if k in ("slice", "condition", "flag") else ""}">{e(row[k])}</td>'
            for k, _ in columns
        )
        rows.append(f'<tr class="{"small" if row["flag"] else ""}">{cells}</tr>')
    findings = significant_tests(report)
    out = [
        "<h2>Under each condition</h2>",
        f'<p class="note">Paired by utterance: each slice\'s {report.options.rate.label} clean and under the condition, and the change, with {e(report.options.label)} intervals clustered by speaker; p: sign-flip test over speakers.</p>',
        f'<div class="scroll"><table class="conditions"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>',
        f"<p><strong>Differential degradation</strong>: {len(findings)} of {len(report.conditions.tests)} slice pairs differ significantly "
        "(Welch t test over speakers, Holm-adjusted within each dimension and condition).</p>",
    ]
    if findings:
        out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in findings) + "</ul>")
    svg = robustness_svg(report.conditions)
    if svg:
        out += ["<h3>WER against SNR</h3>", f'<figure class="robustness">{svg}</figure>']
    return out


def robustness_svg(analysis) -> str:
    """robustness_plot's SVG, stripped to a bare <svg> element that can sit inside the page."""
    from harness.report.conditions import robustness_plot

    with tempfile.TemporaryDirectory() as directory:
        written = robustness_plot(analysis, Path(directory) / "robustness")
        svg_files = [p for p in written if p.suffix == ".svg"]
        if not svg_files:
            return ""
        text = svg_files[0].read_text(encoding="utf-8")
    return inline_svg(text)


def inline_svg(text: str) -> str:
    # Matplotlib writes each label's text into an XML comment (escaped, but there is no need for it),
    # plus a prolog and metadata that do not belong inside HTML.
    # Its <style> holds a `*` rule that would apply to the whole page; the page CSS scopes it instead.
    text = re.sub(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<!--.*?-->|<metadata>.*?</metadata>|<style.*?</style>", "", text, flags=re.S)
    start = text.find("<svg")
    text = text[start:].strip() if start >= 0 else ""
    if not text or re.search(r"<script|<foreignObject|\son[a-z]+\s*=", text, flags=re.I):
        return ""
    return text.replace("<svg", '<svg role="img" aria-label="WER against SNR by slice"', 1)


def slice_members(frame: pd.DataFrame, by: dict[str, str]) -> pd.Series:
    """Rows of `frame` in the slice `by`, labelled the way the slice table labels them."""
    mask = pd.Series(True, index=frame.index)
    for name, value in by.items():
        column = frame[name].map(_snr_label) if name == "snr_db" else frame[name].astype("string").fillna(NOT_GIVEN)
        mask &= column == value
    return mask


def worst_utterances(frame: pd.DataFrame, by: dict[str, str], n: int) -> pd.DataFrame:
    """The slice's n scored utterances with the most word errors (ties: higher WER, then id)."""
    members = frame[slice_members(frame, by) & (frame["status"] == "ok") & (frame["errors"] > 0)].copy()
    members["_wer"] = members["errors"] / members["ref_words"].where(members["ref_words"] > 0, 1)
    return members.sort_values(["errors", "_wer", "utterance_id"], ascending=[False, False, True]).head(n)


def capped(value: Any, limit: int = TEXT_LIMIT_CHARS) -> str:
    """Escaped text, cut at `limit` characters with a note of how many were left out."""
    text = "" if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else str(value)
    if len(text) <= limit:
        return e(text)
    return f'{e(text[:limit])}<span class="cut"> … {len(text) - limit:,} more characters not shown (full text in results.sqlite)</span>'


def alignment_html(reference_normalized: str, hypothesis_normalized: str, *, limit_words: int = ALIGNMENT_LIMIT_WORDS) -> str:
    """Aligned words: substitutions as ref→hyp, deletions in <del>, insertions in <ins>; marked in text as well as colour.

    At most `limit_words` aligned positions are shown; texts too long to align cheaply are not aligned here.
    """
    reference_normalized, hypothesis_normalized = reference_normalized or "", hypothesis_normalized or ""
    if len(reference_normalized) + len(hypothesis_normalized) > 50 * TEXT_LIMIT_CHARS:
        return '<span class="cut">too long to align in this page; the texts (cut) are below</span>'
    chunks = alignment(reference_normalized, hypothesis_normalized)
    parts = []
    for kind, ref, hyp in chunks[:limit_words]:
        if kind == "equal":
            parts.append(e(ref))
        elif kind == "substitute":
            parts.append(f'<span class="s" title="substitution"><span class="sr">substituted: </span>{e(ref)}→{e(hyp)}</span>')
        elif kind == "delete":
            parts.append(f'<del title="deletion"><span class="sr">deleted: </span>{e(ref)}</del>')
        else:
            parts.append(f'<ins title="insertion"><span class="sr">inserted: </span>+{e(hyp)}</ins>')
    if len(chunks) > limit_words:
        parts.append(f'<span class="cut">… {len(chunks) - limit_words:,} more aligned words not shown</span>')
    return " ".join(parts)


def worst_utterances_html(report, frame: pd.DataFrame, n: int) -> list[str]:
    if n <= 0 or not report.table.slices:
        return []
    trusted = [r for r in report.table.slices if not r["small"] and r["wer"] is not None]
    opened = max(trusted, key=lambda r: r["wer"]) if trusted else None
    out = [
        "<h2>Worst utterances per slice</h2>",
        f'<p class="note">Up to {n} utterances per slice with the most word errors, aligned on the normalised text. '
        "The slice with the highest WER among those large enough to rank is expanded.</p>",
        '<p class="legend align">Legend: <span class="s">ref→hyp</span> substitution '
        "<del>word</del> deletion (struck through) <ins>+word</ins> insertion (underlined, with a leading +)</p>",
    ]
    previous = None
    for row in report.table.slices:
        if row["dimension"] != previous:
            out.append(f"<h3>by {e(row['dimension'])}</h3>")
            previous = row["dimension"]
        worst = worst_utterances(frame, row["by"], n)
        state = " open" if row is opened else ""
        small = ' <span class="badge">small</span>' if row["small"] else ""
        out.append(
            f"<details{state}><summary>{e(fmt.slice_label(row['by']))}{small} — WER {e(fmt.pct(row['wer']))}, "
            f"{row['n_speakers']} speakers, {row['n_utterances']} utterances; {len(worst)} shown</summary>"
        )
        if worst.empty:
            out.append('<p class="note">No utterance with an error.</p>')
        for _, utt in worst.iterrows():
            condition = f"; condition {utt['condition_key']}" if report.condition is None and utt["condition_key"] != "clean" else ""
            out.append(
                '<div class="utt">'
                f'<div class="meta">{capped(utt["utterance_id"], 200)} · speaker {e(_short(utt["speaker"]))}{e(condition)} · '
                f"{int(utt['errors'])} errors / {int(utt['ref_words'])} words (S {int(utt['substitutions'])}, D {int(utt['deletions'])}, I {int(utt['insertions'])})</div>"
                f'<div class="align">{alignment_html(utt["reference_normalized"], utt["hypothesis_normalized"])}</div>'
                f'<div class="raw">reference: {capped(utt["reference"])}</div>'
                f'<div class="raw">hypothesis: {capped(utt["hypothesis"]) or "<em>(empty)</em>"}</div>'
                + (f'<div class="raw">note: {capped(utt["error"])}</div>' if isinstance(utt.get("error"), str) and utt["error"] else "")
                + "</div>"
            )
        out.append("</details>")
    return out


def failed_html(frame: pd.DataFrame) -> list[str]:
    failed = frame[frame["status"] != "ok"]
    if failed.empty:
        return []
    items = "".join(
        f"<li><code>{capped(r['utterance_id'], 200)}</code> ({e(r['condition_key'])}): {capped(r['error'])}</li>" for _, r in failed.head(FAILED_SHOWN).iterrows()
    )
    more = f'<p class="note">… and {len(failed) - FAILED_SHOWN} more.</p>' if len(failed) > FAILED_SHOWN else ""
    return [f"<h2>Failed utterances ({len(failed)})</h2>", '<p class="note">Every condition: not scored, so in no WER; the “failed” column counts them per slice.</p>', f"<ul>{items}</ul>{more}"]


def _short(value: Any, limit: int = 16) -> str:
    text = "unknown" if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = ["render_html", "forest_svg", "alignment_html", "worst_utterances", "page", "provenance_items"]
