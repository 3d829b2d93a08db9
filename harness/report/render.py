"""Render a report: a rich terminal table, report.md, report.csv and report.json."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.errors import ConfigError
from harness.escaping import escape_csv, escape_markdown, escape_terminal
from harness.report import format as fmt
from harness.report.data import incomplete_notice

DASH = fmt.DASH
FORMATS = ("md", "csv", "json", "html")


def table_columns(report) -> tuple[tuple[str, str], ...]:
    """(key, header) of the slice table; headers name the report's metric and confidence."""
    o = report.options
    return (
        ("slice", "slice"), ("n_utterances", "utts"), ("n_speakers", "spk"), ("n_effective_speakers", "eff spk"),
        ("units", o.rate.unit_name), ("errors", "errors"), ("rate", o.rate.label), ("ci", f"{o.label} CI"),
        ("substitution_rate", "sub"), ("deletion_rate", "del"), ("insertion_rate", "ins"),
        ("gap_to_best", "gap to best"), ("ratio_to_overall", "× overall"), ("n_failed", "failed"), ("flag", "flag"),
    )


def display_rows(report) -> list[dict[str, str]]:
    """The table as strings, shared by the terminal, Markdown and HTML renderers."""
    m = report.options.rate
    rows = []
    for row in [{**report.table.overall, "by": {}}, *report.table.slices]:
        rows.append({
            "slice": fmt.slice_label(row["by"]), "n_utterances": str(row["n_utterances"]), "n_speakers": str(row["n_speakers"]),
            "n_effective_speakers": f"{row['n_effective_speakers']:.1f}", "units": str(row[m.units]), "errors": str(row[m.errors]),
            "rate": fmt.pct(row[m.name]), "ci": fmt.interval(row.get(f"{m.name}_ci_low"), row.get(f"{m.name}_ci_high")),
            "substitution_rate": fmt.pct(row["substitution_rate"]), "deletion_rate": fmt.pct(row["deletion_rate"]),
            "insertion_rate": fmt.pct(row["insertion_rate"]),
            "gap_to_best": fmt.points(row.get("gap_to_best")), "ratio_to_overall": fmt.ratio(row.get("ratio_to_overall")),
            "n_failed": str(row["n_failed"]), "flag": "small" if row["small"] else "",
        })
    return rows


# The terminal shows the columns a reader needs to judge a slice; S/D/I rates are in report.md/.csv.
TERMINAL_COLUMNS = ("slice", "n_utterances", "n_speakers", "n_effective_speakers", "units", "rate", "ci", "gap_to_best", "n_failed", "flag")


def disparity_lines(report) -> list[str]:
    """One sentence per dimension: evidence of a disparity only when the test of equal rates rejects."""
    o = report.options
    label = o.rate.label
    lines = []
    for dim in report.table.disparities:
        name = " × ".join(dim.dimension)
        if not dim.worst or not dim.best or dim.equal_wer_test is None:
            lines.append(f"{name}: fewer than two labelled slices large enough to compare; no disparity is estimated.")
            continue
        test = dim.equal_wer_test
        p = fmt.p_value(test["p_value_holm"])
        method = "speaker permutation" if "permutation" in test["method"] else "speaker bootstrap"
        ratio, gap = dim.worst_to_best_ratio, dim.worst_minus_best
        extent = (
            f"gap {fmt.points(gap['estimate'], sign=False, unit=False)} pts {fmt.bracketed(gap['ci_low'], gap['ci_high'], kind='points')}, "
            f"ratio {fmt.ratio(ratio['estimate'])} {fmt.bracketed(ratio['ci_low'], ratio['ci_high'], kind='ratio')} (intervals that hold for all {dim.slices_compared} slices at once)"
        )
        if dim.disparity_detected:
            lines.append(
                f"{name}: evidence of a disparity: {label} is not equal across the {dim.slices_compared} slices compared (p = {p}, {method} test, Holm-adjusted). "
                f"Highest {fmt.slice_label(dim.worst)}, lowest {fmt.slice_label(dim.best)}: {extent}."
            )
        else:
            lines.append(
                f"{name}: the data cannot tell whether {label} differs across the {dim.slices_compared} slices compared (p = {p}, {method} test, Holm-adjusted). "
                f"Highest point estimate {fmt.slice_label(dim.worst)}, lowest {fmt.slice_label(dim.best)}: {extent}."
            )
    return lines


def warning_lines(report) -> list[str]:
    """What a reader must know before trusting the table: references that normalised to no words."""
    empty = report.table.overall.get("n_empty_reference") or 0
    if not empty:
        return []
    normalizer = (report.run.get("normalizer") or {}).get("name")
    return [
        f"warning: {empty} scored utterance(s) have a reference that normalised to no words under normaliser {normalizer}; they add their "
        "insertions to the errors but no words (column n_empty_reference per slice). Check the normaliser for this script (basic keeps "
        "every script's letters; --metric cer suits scripts written without spaces)."
    ]


def print_report(report, console: Console) -> None:
    notice = incomplete_notice(report.run)
    if notice:
        console.print(escape_terminal(notice, style="bold yellow"), soft_wrap=True)
    m = report.options.rate
    title = f"{m.label} by slice — {report.run.get('backend', {}).get('name')}, normaliser {report.run.get('normalizer', {}).get('name')}"
    if report.condition:
        title += f", condition {report.condition}"
    table = Table(title=escape_terminal(title), title_justify="left")
    headers = dict(table_columns(report))
    for key in TERMINAL_COLUMNS:
        table.add_column(headers[key], justify="left" if key in ("slice", "flag") else "right", no_wrap=True)
    for row in display_rows(report):
        table.add_row(*(escape_terminal(row[key]) for key in TERMINAL_COLUMNS), style="dim" if row["flag"] else None)
    console.print(table)
    console.print(_footnote(report), highlight=False)
    for line in warning_lines(report):
        console.print(escape_terminal(line, style="yellow"))
    if report.conditions is not None:
        conditions = Table(title="Degradation from clean, paired by utterance", title_justify="left")
        condition_headers = dict(condition_columns(report))
        for key in TERMINAL_CONDITION_COLUMNS:
            conditions.add_column(condition_headers[key], justify="left" if key in ("slice", "condition", "flag") else "right", no_wrap=True)
        for row in condition_rows(report):
            conditions.add_row(*(escape_terminal(row[key]) for key in TERMINAL_CONDITION_COLUMNS), style="dim" if row["flag"] else None)
        console.print(conditions)
        tested = len(report.conditions.tests)
        findings = significant_tests(report)
        console.print(f"Differential degradation: {len(findings)} of {tested} slice pairs differ significantly (Holm, within each dimension and condition).", highlight=False)
        for line in findings:
            console.print(escape_terminal(f"  - {line}"))
    for line in disparity_lines(report):
        console.print(escape_terminal(line))


def condition_rows(report) -> list[dict[str, str]]:
    """The last-mile table as strings: each slice under each condition, and its change from clean."""
    if report.conditions is None:
        return []
    m = report.options.metric
    rows = []
    for row in report.conditions.rows:
        rows.append({
            "slice": fmt.slice_label(row["by"]), "condition": row["condition"], "n_speakers": str(row["n_speakers"]),
            "wer_clean": fmt.pct(row[f"{m}_clean"]), "wer": fmt.pct(row[m]),
            "change": fmt.points(row["degradation"]),
            "change_ci": fmt.interval(row["degradation_ci_low"], row["degradation_ci_high"], kind="difference"),
            "p": fmt.p_value(row.get("degradation_p_value")),
            "relative": DASH if row["degradation_relative"] is None else f"{100 * row['degradation_relative']:+.0f}%",
            "relative_ci": DASH if row["degradation_relative_ci_low"] is None or row["degradation_relative_ci_high"] is None else f"{100 * row['degradation_relative_ci_low']:+.0f}% to {100 * row['degradation_relative_ci_high']:+.0f}%",
            "flag": "small" if row["small"] else "",
        })
    return rows


def condition_columns(report) -> tuple[tuple[str, str], ...]:
    o = report.options
    label = o.rate.label
    return (
        ("slice", "slice"), ("condition", "condition"), ("n_speakers", "spk"), ("wer_clean", f"{label} clean"), ("wer", label),
        ("change", "change"), ("change_ci", f"{o.label} CI"), ("p", "p"), ("relative", "relative"), ("relative_ci", f"{o.label} CI (rel.)"), ("flag", "flag"),
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
                f"under {test['condition']}, {fmt.slice_label(worse)} loses {100 * abs(test['difference']):.1f} pts more than {fmt.slice_label(better)} "
                f"({report.options.label} CI {100 * abs(test['ci_low'] if test['difference'] > 0 else test['ci_high']):.1f}–{100 * abs(test['ci_high'] if test['difference'] > 0 else test['ci_low']):.1f} pts; Holm-adjusted p = {test['p_value_holm']:.3g})"
                if test["ci_low"] is not None and test["ci_high"] is not None else
                f"under {test['condition']}, {fmt.slice_label(worse)} loses {100 * abs(test['difference']):.1f} pts more than {fmt.slice_label(better)} (Holm-adjusted p = {test['p_value_holm']:.3g})"
            )
    return lines


def _footnote(report) -> str:
    o = report.options
    m = o.rate
    return (
        f"{m.label} = total errors / total reference {m.unit_name} (pooled). CI: {o.label} t interval clustered by speaker (CR3 variance, "
        f"Bell–McCaffrey df, log scale). 'eff spk' = effective speakers, (Σ {m.unit_name})² / Σ {m.unit_name}² over speakers. 'small' = fewer than "
        f"{o.min_speakers:g} effective speakers or {o.min_words} {m.unit_name}: no interval, never ranked. 'gap to best' is measured only among "
        "labelled slices that are not small."
    )


def slicing_text(options) -> str:
    """The options that decide a report's rows, written into every output so two slicings are never confused."""
    by = " ".join(f"--by {name}" for name in options.by) or "overall only"
    return (f"{by}{' --cross' if options.cross else ''}; metric {options.metric}; {options.label} confidence; small below "
            f"{options.min_speakers:g} effective speakers or {options.min_words} words; seed {options.seed}"
            + (f"; --condition {options.condition}" if getattr(options, "condition", None) else ""))


def render_markdown(report, out_dir: Path | None = None) -> str:
    m = report.options.rate
    md = escape_markdown
    lines = [f"# {m.label} report: {md(report.run_dir.name)}", ""]
    notice = incomplete_notice(report.run)
    if notice:
        lines += [f"> **Warning:** {md(notice)}", ""]
    run = report.run
    manifest, backend = run.get("manifest") or {}, run.get("backend") or {}
    lines += [
        f"- Manifest: {md(manifest.get('path'))} (sha256 {md((manifest.get('sha256') or '')[:16])}…)",
        f"- Backend: {md(backend.get('name'))} {md(json.dumps(backend.get('options') or {}, ensure_ascii=False))}",
        f"- Normaliser: {md((run.get('normalizer') or {}).get('name'))}; seed {md(run.get('seed'))}; git {md(((run.get('git') or {}).get('commit') or 'unknown')[:12])}",
    ]
    if report.condition:
        lines.append(f"- Condition: {md(report.condition)}")
    lines.append(f"- Slicing: {md(slicing_text(report.options))}")
    columns = table_columns(report)
    lines += ["", "| " + " | ".join(h for _, h in columns) + " |", "|" + "|".join("---" if k in ("slice", "flag") else "---:" for k, _ in columns) + "|"]
    for row in display_rows(report):
        lines.append("| " + " | ".join(escape_markdown(row[key]) for key, _ in columns) + " |")
    lines += ["", escape_markdown(_footnote(report)), ""]
    lines += [f"- {escape_markdown(line)}" for line in warning_lines(report)]
    lines += [f"- {escape_markdown(line)}" for line in disparity_lines(report)]
    if report.conditions is not None:
        columns = condition_columns(report)
        lines += ["", "## Under each condition", "", f"Paired by utterance: each slice's {m.label} clean and under the condition, and the change, with {report.options.label} intervals clustered by speaker; p: sign-flip test over speakers.", ""]
        lines += ["| " + " | ".join(h for _, h in columns) + " |", "|" + "|".join("---" if k in ("slice", "condition", "flag") else "---:" for k, _ in columns) + "|"]
        for row in condition_rows(report):
            lines.append("| " + " | ".join(escape_markdown(row[key]) for key, _ in columns) + " |")
        findings = significant_tests(report)
        lines += ["", f"**Differential degradation**: {len(findings)} of {len(report.conditions.tests)} slice pairs differ significantly (Welch t test over speakers, Holm-adjusted within each dimension and condition)."]
        lines += [f"- {escape_markdown(line)}" for line in findings]
        if ((out_dir or report.run_dir) / "robustness.svg").exists():
            lines += ["", f"![{m.label} against SNR by slice](robustness.svg)"]
    return "\n".join(lines) + "\n"


def csv_fields(report) -> tuple[str, ...]:
    m = report.options.metric
    return (
        "dimension", "slice", "n_utterances", "n_speakers", "n_effective_speakers", "ref_words", "errors", "substitutions", "deletions",
        "insertions", "ref_chars", "char_errors", "wer", "cer", f"{m}_ci_low", f"{m}_ci_high", "substitution_rate", "deletion_rate",
        "insertion_rate", "mean_utterance_wer", "gap_to_best", "gap_to_best_ci_low", "gap_to_best_ci_high", "ratio_to_best",
        "gap_to_overall", "gap_to_overall_ci_low", "gap_to_overall_ci_high", "ratio_to_overall", "n_failed", "n_empty_reference", "small",
    )


def write_csv(report, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        fields = csv_fields(report)
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in [{**report.table.overall, "by": {}, "dimension": "overall"}, *report.table.slices]:
            label = "overall" if not row["by"] else ";".join(f"{k}={v}" for k, v in row["by"].items())
            writer.writerow({name: escape_csv(label if name == "slice" else row.get(name)) for name in fields})


def write_json(path: Path, data: Any) -> None:
    """One encoding for every JSON output: indented, non-JSON values as strings, and NaN refused
    (a NaN that reached here is a bug upstream, not something to publish)."""
    path.write_text(json.dumps(data, indent=2, default=str, allow_nan=False), encoding="utf-8")


REPORT_FILES = {"md": "report.md", "csv": "report.csv", "json": "report.json", "html": "report.html"}


def write_report(report, out_dir: str | Path, *, formats: list[str], on_removed: Callable[[Path], None] | None = None) -> list[Path]:
    """Write report.<format> for each format and remove the report files of formats not asked for.

    The set is replaced together: a report.json left from an earlier `--by accent` beside a report.md of
    `--by gender` would present two slicings as one report. Each file also records its slicing.
    """
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
    for fmt_name, name in REPORT_FILES.items():
        stale = out_dir / name
        if fmt_name not in formats and stale.is_file():
            stale.unlink()
            if on_removed is not None:
                on_removed(stale)
    return written
