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
    if report.conditions is not None:
        conditions = Table(title="Degradation from clean, paired by utterance", title_justify="left")
        condition_headers = dict(CONDITION_COLUMNS)
        for key in TERMINAL_CONDITION_COLUMNS:
            conditions.add_column(condition_headers[key], justify="left" if key in ("slice", "condition", "flag") else "right", no_wrap=True)
        for row in condition_rows(report):
            conditions.add_row(*(row[key] for key in TERMINAL_CONDITION_COLUMNS), style="dim" if row["flag"] else None)
        console.print(conditions)
        tested = len(report.conditions.tests)
        findings = significant_tests(report)
        console.print(f"Differential degradation: {len(findings)} of {tested} slice pairs differ significantly (Holm, within each dimension and condition).", highlight=False)
        for line in findings:
            console.print(f"  - {line}", highlight=False)
    for dim in report.table.disparities:
        if dim.worst and dim.best:
            ratio, gap = dim.worst_to_best_ratio, dim.worst_minus_best
            console.print(f"{' × '.join(dim.dimension)}: worst {_label(dim.worst)} vs best {_label(dim.best)}: ratio {_ratio(ratio['estimate'])} [{_ratio(ratio['ci_low'])}, {_ratio(ratio['ci_high'])}], gap {_pts(gap['estimate'])} pts [{_pts(gap['ci_low'])}, {_pts(gap['ci_high'])}]", highlight=False)


def condition_rows(report) -> list[dict[str, str]]:
    """The last-mile table as strings: each slice under each condition, and its change from clean."""
    if report.conditions is None:
        return []
    rows = []
    for row in report.conditions.rows:
        change, low, high = row["degradation"], row["degradation_ci_low"], row["degradation_ci_high"]
        relative = row["degradation_relative"]
        rows.append({
            "slice": _label(row["by"]) or "overall", "condition": row["condition"], "n_speakers": str(row["n_speakers"]),
            "wer_clean": _pct(row["wer_clean"]), "wer": _pct(row["wer"]),
            "change": DASH if change is None else f"{100 * change:+.1f} pts",
            "change_ci": DASH if low is None or high is None else f"{100 * low:+.1f} to {100 * high:+.1f}",
            "relative": DASH if relative is None else f"{100 * relative:+.0f}%",
            "relative_ci": DASH if row["degradation_relative_ci_low"] is None or row["degradation_relative_ci_high"] is None else f"{100 * row['degradation_relative_ci_low']:+.0f}% to {100 * row['degradation_relative_ci_high']:+.0f}%",
            "flag": "small" if row["small"] else "",
        })
    return rows


CONDITION_COLUMNS = (
    ("slice", "slice"), ("condition", "condition"), ("n_speakers", "spk"), ("wer_clean", "WER clean"), ("wer", "WER"),
    ("change", "change"), ("change_ci", "95% CI"), ("relative", "relative"), ("relative_ci", "95% CI (rel.)"), ("flag", "flag"),
)


# The relative change's interval is in report.md and report.json; the terminal keeps to what fits.
TERMINAL_CONDITION_COLUMNS = ("slice", "condition", "wer_clean", "wer", "change", "change_ci", "relative", "flag")


def significant_tests(report) -> list[str]:
    if report.conditions is None:
        return []
    lines = []
    for test in sorted(report.conditions.tests, key=lambda t: t["p_value_holm"]):
        if test["significant"]:
            worse, better = (test["slice_a"], test["slice_b"]) if test["difference"] > 0 else (test["slice_b"], test["slice_a"])
            lines.append(
                f"under {test['condition']}, {_label(worse)} loses {100 * abs(test['difference']):.1f} pts more than {_label(better)} "
                f"(95% CI {100 * abs(test['ci_low'] if test['difference'] > 0 else test['ci_high']):.1f}–{100 * abs(test['ci_high'] if test['difference'] > 0 else test['ci_low']):.1f} pts; Holm-adjusted p = {test['p_value_holm']:.3g})"
                if test["ci_low"] is not None and test["ci_high"] is not None else
                f"under {test['condition']}, {_label(worse)} loses {100 * abs(test['difference']):.1f} pts more than {_label(better)} (Holm-adjusted p = {test['p_value_holm']:.3g})"
            )
    return lines


def _pts(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}"


def _label(by: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in by.items())


def _footnote(report) -> str:
    o = report.options
    return (
        f"WER = total errors / total reference words (pooled). CI: {o.confidence:.0%} bootstrap over speakers, {o.n_resamples} resamples, seed {o.seed}. "
        f"'small' = fewer than {o.min_speakers} speakers or {o.min_words} words: not ranked, interval shown as {DASH} when under {o.min_speakers} speakers."
    )


def render_markdown(report, out_dir: Path | None = None) -> str:
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
            lines.append(f"- **{' × '.join(dim.dimension)}**: worst {_md_escape(_label(dim.worst))}, best {_md_escape(_label(dim.best))}; worst/best ratio {_ratio(ratio['estimate'])} [{_ratio(ratio['ci_low'])}, {_ratio(ratio['ci_high'])}], gap {_pts(gap['estimate'])} pts [{_pts(gap['ci_low'])}, {_pts(gap['ci_high'])}] ({dim.slices_compared} slices with intervals compared)")
    if report.conditions is not None:
        lines += ["", "## Under each condition", "", "Paired by utterance: each slice's WER clean and under the condition, and the change, with 95% speaker-bootstrap intervals.", ""]
        lines += ["| " + " | ".join(h for _, h in CONDITION_COLUMNS) + " |", "|" + "|".join("---" if k in ("slice", "condition", "flag") else "---:" for k, _ in CONDITION_COLUMNS) + "|"]
        for row in condition_rows(report):
            lines.append("| " + " | ".join(_md_escape(row[key]) for key, _ in CONDITION_COLUMNS) + " |")
        findings = significant_tests(report)
        lines += ["", f"**Differential degradation**: {len(findings)} of {len(report.conditions.tests)} slice pairs differ significantly (permutation test over speakers, Holm-adjusted within each dimension and condition)."]
        lines += [f"- {_md_escape(line)}" for line in findings]
        if ((out_dir or report.run_dir) / "robustness.svg").exists():
            lines += ["", "![WER against SNR by slice](robustness.svg)"]
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


def write_json(path: Path, data: Any) -> None:
    """One encoding for every JSON output: indented, non-JSON values as strings, and NaN refused
    (a NaN that reached here is a bug upstream, not something to publish)."""
    path.write_text(json.dumps(data, indent=2, default=str, allow_nan=False), encoding="utf-8")


def write_report(report, out_dir: str | Path, *, formats: list[str]) -> list[Path]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"--format {','.join(unknown)} is not supported. Choose from {', '.join(FORMATS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if report.conditions is not None:
        from harness.report.conditions import robustness_plot

        written += robustness_plot(report.conditions, out_dir / "robustness")
    if "md" in formats:
        (out_dir / "report.md").write_text(render_markdown(report, out_dir), encoding="utf-8")
        written.append(out_dir / "report.md")
    if "csv" in formats:
        write_csv(report, out_dir / "report.csv")
        written.append(out_dir / "report.csv")
    if "json" in formats:
        write_json(out_dir / "report.json", report.to_json())
        written.append(out_dir / "report.json")
    if "html" in formats:
        from harness.report.html import render_html

        (out_dir / "report.html").write_text(render_html(report), encoding="utf-8")
        written.append(out_dir / "report.html")
    return written
