"""Render a report: a rich terminal table, report.md, report.csv and report.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.errors import ConfigError

DASH = "–"  # shown where an interval is omitted: too few speakers to trust one
FORMATS = ("md", "csv", "json", "html")
# Spreadsheet apps run cells starting with these as formulas; transcripts and tags are untrusted.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

TABLE_COLUMNS = (
    ("slice", "slice"), ("n_utterances", "utts"), ("n_speakers", "spk"), ("ref_words", "words"), ("errors", "errors"),
    ("wer", "WER"), ("ci", "95% CI"), ("substitution_rate", "sub"), ("deletion_rate", "del"), ("insertion_rate", "ins"),
    ("gap_to_best", "gap to best"), ("ratio_to_overall", "× overall"), ("n_failed", "failed"), ("flag", "flag"),
)


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}%"


def _ratio(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


def _ci(row: dict[str, Any]) -> str:
    low, high = row.get("wer_ci_low"), row.get("wer_ci_high")
    return DASH if low is None or high is None else f"{100 * low:.1f}–{100 * high:.1f}"


def display_rows(report) -> list[dict[str, str]]:
    """The table as strings, shared by the terminal and Markdown renderers."""
    rows = []
    for row in [{**report.table.overall, "by": {}}, *report.table.slices]:
        label = "overall" if not row["by"] else ", ".join(f"{k}={v}" for k, v in row["by"].items())
        rows.append({
            "slice": label, "n_utterances": str(row["n_utterances"]), "n_speakers": str(row["n_speakers"]),
            "ref_words": str(row["ref_words"]), "errors": str(row["errors"]), "wer": _pct(row["wer"]), "ci": _ci(row),
            "substitution_rate": _pct(row["substitution_rate"]), "deletion_rate": _pct(row["deletion_rate"]),
            "insertion_rate": _pct(row["insertion_rate"]),
            "gap_to_best": DASH if row.get("gap_to_best") is None else f"{100 * row['gap_to_best']:+.1f} pts",
            "ratio_to_overall": _ratio(row.get("ratio_to_overall")),
            "n_failed": str(row["n_failed"]), "flag": "small" if row["small"] else "",
        })
    return rows


# The terminal shows the columns a reader needs to judge a slice; S/D/I rates are in report.md/.csv.
TERMINAL_COLUMNS = ("slice", "n_utterances", "n_speakers", "ref_words", "wer", "ci", "gap_to_best", "n_failed", "flag")


def print_report(report, console: Console) -> None:
    title = f"WER by slice — {report.run.get('backend', {}).get('name')}, normaliser {report.run.get('normalizer', {}).get('name')}"
    if report.condition:
        title += f", condition {report.condition}"
    table = Table(title=title, title_justify="left")
    headers = dict(TABLE_COLUMNS)
    for key in TERMINAL_COLUMNS:
        table.add_column(headers[key], justify="left" if key in ("slice", "flag") else "right", no_wrap=True)
    for row in display_rows(report):
        table.add_row(*(row[key] for key in TERMINAL_COLUMNS), style="dim" if row["flag"] else None)
    console.print(table)
    console.print(_footnote(report), highlight=False)
    for dim in report.table.disparities:
        if dim.worst and dim.best:
            ratio, gap = dim.worst_to_best_ratio, dim.worst_minus_best
            console.print(f"{' × '.join(dim.dimension)}: worst {_label(dim.worst)} vs best {_label(dim.best)}: ratio {_ratio(ratio['estimate'])} [{_ratio(ratio['ci_low'])}, {_ratio(ratio['ci_high'])}], gap {_pct(gap['estimate'])} [{_pct(gap['ci_low'])}, {_pct(gap['ci_high'])}]", highlight=False)


def _label(by: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in by.items())


def _footnote(report) -> str:
    o = report.options
    return (
        f"WER = total errors / total reference words (pooled). CI: {o.confidence:.0%} bootstrap over speakers, {o.n_resamples} resamples, seed {o.seed}. "
        f"'small' = fewer than {o.min_speakers} speakers or {o.min_words} words: not ranked, interval shown as {DASH} when under {o.min_speakers} speakers."
    )


def render_markdown(report) -> str:
    lines = [f"# WER report: {report.run_dir.name}", ""]
    run = report.run
    lines += [
        f"- Manifest: `{(run.get('manifest') or {}).get('path')}` (sha256 `{((run.get('manifest') or {}).get('sha256') or '')[:16]}…`)",
        f"- Backend: `{(run.get('backend') or {}).get('name')}` {json.dumps((run.get('backend') or {}).get('options') or {})}",
        f"- Normaliser: `{(run.get('normalizer') or {}).get('name')}`; seed {run.get('seed')}; git {((run.get('git') or {}).get('commit') or 'unknown')[:12]}",
    ]
    if report.condition:
        lines.append(f"- Condition: `{report.condition}`")
    lines += ["", "| " + " | ".join(h for _, h in TABLE_COLUMNS) + " |", "|" + "|".join("---" if k in ("slice", "flag") else "---:" for k, _ in TABLE_COLUMNS) + "|"]
    for row in display_rows(report):
        lines.append("| " + " | ".join(_md_escape(row[key]) for key, _ in TABLE_COLUMNS) + " |")
    lines += ["", _footnote(report), ""]
    for dim in report.table.disparities:
        if dim.worst and dim.best:
            ratio, gap = dim.worst_to_best_ratio, dim.worst_minus_best
            lines.append(f"- **{' × '.join(dim.dimension)}**: worst {_md_escape(_label(dim.worst))}, best {_md_escape(_label(dim.best))}; worst/best ratio {_ratio(ratio['estimate'])} [{_ratio(ratio['ci_low'])}, {_ratio(ratio['ci_high'])}], gap {_pct(gap['estimate'])} [{_pct(gap['ci_low'])}, {_pct(gap['ci_high'])}] ({dim.slices_compared} slices with intervals compared)")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


CSV_FIELDS = (
    "dimension", "slice", "n_utterances", "n_speakers", "ref_words", "errors", "substitutions", "deletions", "insertions",
    "wer", "wer_ci_low", "wer_ci_high", "substitution_rate", "deletion_rate", "insertion_rate", "cer", "mean_utterance_wer",
    "gap_to_best", "ratio_to_best", "gap_to_overall", "ratio_to_overall", "n_failed", "small",
)


def csv_safe(value: Any) -> Any:
    """Defuse spreadsheet formulas in untrusted text by prefixing a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_csv(report, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in [{**report.table.overall, "by": {}, "dimension": "overall"}, *report.table.slices]:
            label = "overall" if not row["by"] else ";".join(f"{k}={v}" for k, v in row["by"].items())
            writer.writerow({name: csv_safe(label if name == "slice" else row.get(name)) for name in CSV_FIELDS})


def write_report(report, out_dir: str | Path, *, formats: list[str]) -> list[Path]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"--format {','.join(unknown)} is not supported. Choose from {', '.join(FORMATS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if "md" in formats:
        (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
        written.append(out_dir / "report.md")
    if "csv" in formats:
        write_csv(report, out_dir / "report.csv")
        written.append(out_dir / "report.csv")
    if "json" in formats:
        (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2, default=str, allow_nan=False), encoding="utf-8")
        written.append(out_dir / "report.json")
    if "html" in formats:
        from harness.report.html import render_html

        (out_dir / "report.html").write_text(render_html(report), encoding="utf-8")
        written.append(out_dir / "report.html")
    return written
