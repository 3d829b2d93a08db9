"""The performance section of a service card (card.md, card.html): WER by slice for publication,
with small cells suppressed, the data and its labels described, and the limitations listed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import stats
from harness.report.build import CONDITION_DIMENSIONS, select_condition
from harness.report.data import condition_keys, incomplete_notice, load_run
from harness.escaping import escape_markdown
from harness.report.html import e, forest_svg, page, provenance_items
from harness.report import format as fmt
from harness.report.format import DASH
from harness.report.render import condition_rows, disparity_lines, warning_lines
from harness.rundir import CLEAN

DEFAULT_LABELS_SOURCE = "not stated"
CARD_FILES = ("card.md", "card.html")


@dataclass(frozen=True, kw_only=True)
class CardTable:
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    left: int = 1  # how many leading columns are text (left-aligned); the rest are numbers
    muted: tuple[bool, ...] = ()  # per row: suppressed cells, drawn grey in HTML


# A card is a list of blocks, rendered twice: ("h1"|"h2"|"h3"|"p", text), ("ul", [text]), ("table", CardTable),
# ("figure", (caption, SVG markup)) for HTML only. Texts are plain and escaped by each renderer.
Block = tuple[str, Any]


def write_card(report, out_dir: str | Path, *, labels_source: str = DEFAULT_LABELS_SOURCE) -> list[Path]:
    """Write card.md and card.html into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = card_blocks(report, labels_source=labels_source)
    written = []
    for name, text in zip(CARD_FILES, (render_card_markdown(blocks), render_card_html(blocks))):
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written


def card_blocks(report, *, labels_source: str = DEFAULT_LABELS_SOURCE) -> list[Block]:
    data = load_run(report.run_dir, texts=False)  # counts and failure notes, never transcripts
    frame, _ = select_condition(data, report.options)
    o = report.options
    m = o.rate
    name = "Word error rate (WER)" if m.name == "wer" else "Character error rate (CER)"
    blocks: list[Block] = [
        ("h1", f"Service card, performance: {_system(report.run)} (run {report.run_dir.name})"),
        ("p", f"{name} by group, for publication. {m.label} = total errors / total reference {m.unit_name} in the group (pooled, not an average of per-utterance rates). "
              f"Intervals are {o.label} intervals that treat each speaker as one unit of evidence. A group with fewer than {o.min_speakers:g} effective speakers "
              f"(speakers weighted by how many {m.unit_name} they contribute) or {o.min_words} reference {m.unit_name} is too small to report: its {m.label} is suppressed "
              "and the group is listed under Limitations."),
    ]
    notice = incomplete_notice(report.run)
    if notice:
        blocks.insert(1, ("p", f"Warning: {notice}"))
    blocks += _data_section(report, data, frame, labels_source)
    blocks += _performance_section(report)
    blocks += _conditions_section(report, data)
    blocks += _limitations_section(report, data, frame)
    blocks += [("h2", "Provenance"), ("ul", [f"{k}: {v}" for k, v in provenance_items(report)])]
    return blocks


def _system(run: dict[str, Any]) -> str:
    """The system evaluated, as a reader would name it; a replay run names the transcript file."""
    backend = run.get("backend") or {}
    options = backend.get("options") or {}
    for key in ("model", "hypotheses"):
        if options.get(key):
            return f"{backend.get('name')} {Path(str(options[key])).name if key == 'hypotheses' else options[key]}"
    return str(backend.get("name"))


def _data_section(report, data, frame: pd.DataFrame, labels_source: str) -> list[Block]:
    manifest = report.run.get("manifest") or {}
    utterances = frame.drop_duplicates("utterance_id")
    speakers = utterances["speaker"].astype("string")
    n_speakers = int(speakers[speakers.notna() & (speakers != "")].nunique())
    tag_lines = []
    for name in data.tag_columns:
        values = utterances[name].dropna()
        used = " (reported below)" if name in report.options.by else ""
        tag_lines.append(f"{name}: {values.nunique()} values over {len(values)} of {len(utterances)} utterances{used}")
    return [
        ("h2", "Evaluation data"),
        ("ul", [
            f"Manifest: {manifest.get('path')} (sha256 {manifest.get('sha256')})",
            f"{len(utterances)} utterances from {n_speakers} identified speakers" + (f", evaluated under condition {report.condition}" if report.condition else ""),
            "Tags in the manifest: " + (", ".join(data.tag_columns) or "none"),
            *tag_lines,
        ]),
        ("p", f"Where the labels came from: {labels_source}. Accent, dialect and demographic labels are the manifest's; "
              "asrfair never infers them from audio, and an utterance without a label is counted as not given, not guessed."),
    ]


def _performance_section(report) -> list[Block]:
    o = report.options
    m = o.rate
    blocks: list[Block] = [("h2", "Performance")]
    overall = report.table.overall
    headers = (m.label, f"{o.label} CI", "speakers", "effective speakers", "utterances", f"reference {m.unit_name}")
    blocks.append(("table", CardTable(
        headers=("group", *headers), rows=[_performance_row("overall", overall, o)], muted=(bool(overall["small"]),),
    )))
    dimensions = list(dict.fromkeys(r["dimension"] for r in report.table.slices))
    for dimension in dimensions:
        rows = [r for r in report.table.slices if r["dimension"] == dimension]
        blocks.append(("h3", f"By {dimension}"))
        blocks.append(("table", CardTable(
            headers=(dimension, *headers),
            rows=[_performance_row(", ".join(r["by"].values()), r, o) for r in rows], muted=tuple(bool(r["small"]) for r in rows),
        )))
        lines = dict(zip(("×".join(d.dimension) for d in report.table.disparities), disparity_lines(report)))
        if dimension in lines:
            blocks.append(("p", lines[dimension]))
    trusted = [r for r in report.table.slices if not r["small"]]
    if trusted:
        blocks.append(("figure", (f"{m.label} by group, with intervals (groups too small to report are left out)", forest_svg(report.table.overall, trusted, include_small=False, title=f"{m.label} by group", metric=m.name))))
    return blocks


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def suppression_reason(row: dict[str, Any], options) -> str | None:
    """Why a cell is too small to publish (the report's one small rule decided that), or None when it is not."""
    if not row["small"]:
        return None
    if row[options.rate.units] >= options.min_words:
        return f"suppressed (fewer than {options.min_speakers:g} effective speakers)"
    if row["n_effective_speakers"] >= options.min_speakers:
        return f"suppressed (fewer than {options.min_words} reference {options.rate.unit_name})"
    return f"suppressed (fewer than {options.min_speakers:g} effective speakers and {options.min_words} reference {options.rate.unit_name})"


def _performance_row(label: str, row: dict[str, Any], options) -> tuple[str, ...]:
    reason = suppression_reason(row, options)
    m = options.rate
    rate, ci = (reason, DASH) if reason else (fmt.pct(row[m.name]), fmt.interval(row.get(f"{m.name}_ci_low"), row.get(f"{m.name}_ci_high")))
    return (label, rate, ci, str(row["n_speakers"]), f"{row['n_effective_speakers']:.1f}", str(row["n_utterances"]), str(row[m.units]))


def _conditions_section(report, data) -> list[Block]:
    o = report.options
    frame = data.frame
    keys = condition_keys(frame)
    blocks: list[Block] = [("h2", "Recording conditions")]
    if keys == [CLEAN]:
        blocks.append(("p", "Clean audio only: no noise condition was evaluated."))
        return blocks
    ok = frame[frame["status"] == "ok"]
    intervals = stats.slice_intervals(stats.cells_from_frame(ok, by="condition_key", errors=o.rate.errors, words=o.rate.units), o) if not ok.empty else None
    position = {label: i for i, label in enumerate(intervals.slices)} if intervals is not None else {}
    rows = []
    for key in keys:
        part = frame[frame["condition_key"] == key]
        first = part.iloc[0]
        snr = "" if pd.isna(first["snr_db"]) else f"{float(first['snr_db']):g} dB"
        i = position.get(key)
        if i is None:
            wer = ci = DASH
        else:
            wer = fmt.pct(float(intervals.wer[i]))
            ci = DASH if intervals.small[i] else fmt.interval(float(intervals.lower[i]), float(intervals.upper[i]))
        rows.append((str(key), str(first["condition"]), snr or DASH, wer, ci, str(int((part["status"] == "ok").sum())), str(int((part["status"] != "ok").sum()))))
    blocks.append(("table", CardTable(headers=("condition", "profile", "SNR", o.rate.label, f"{o.label} CI", "utterances", "failed"), rows=rows, left=3)))
    blocks.append(("p", "Noise is added to the same utterances at each condition; every draw is seeded by run seed, utterance and condition, so the audio can be regenerated."))
    if report.conditions is not None:
        table_rows, muted = [], []
        for row in condition_rows(report):
            if row["slice"] == "overall":
                continue
            if row["flag"]:
                table_rows.append((row["slice"], row["condition"], "suppressed", "suppressed", DASH, DASH))
            else:
                table_rows.append((row["slice"], row["condition"], row["wer_clean"], row["wer"], row["change"], row["change_ci"]))
            muted.append(bool(row["flag"]))
        if table_rows:
            blocks.append(("p", "Each group clean and under each condition, paired by utterance (groups too small to report are suppressed):"))
            blocks.append(("table", CardTable(headers=("group", "condition", f"{o.rate.label} clean", o.rate.label, "change", f"{o.label} CI"), rows=table_rows, left=2, muted=tuple(muted))))
    return blocks


def missing_label_counts(frame: pd.DataFrame, dimensions: tuple[str, ...]) -> dict[str, int]:
    """Per dimension: utterances (counted once across conditions) with no value for it."""
    utterances = frame.drop_duplicates("utterance_id")
    counts = {}
    for name in dimensions:
        if name in CONDITION_DIMENSIONS:
            continue
        column = utterances[name].astype("string")
        counts[name] = int((column.isna() | (column == "")).sum())
    return counts


def _limitations_section(report, data, frame: pd.DataFrame) -> list[Block]:
    o = report.options
    items = []
    small = [r for r in report.table.slices if r["small"]]
    if small:
        listed = "; ".join(f"{fmt.slice_label(r['by'])} ({_plural(r['n_speakers'], 'speaker')}, {r['n_effective_speakers']:.1f} effective, {_plural(r[o.rate.units], o.rate.unit_name[:-1])})" for r in small)
        items.append(f"Groups too small to report ({len(small)}; fewer than {o.min_speakers:g} effective speakers or {o.min_words} reference {o.rate.unit_name}), {o.rate.label} suppressed: {listed}.")
    elif report.table.slices:
        items.append(f"Every group reported has at least {o.min_speakers:g} effective speakers and {o.min_words} reference {o.rate.unit_name}.")
    items += warning_lines(report)
    n_utterances = frame["utterance_id"].nunique()
    for name, count in missing_label_counts(frame, report.options.by).items():
        items.append(f"Missing labels, {name}: {count} of {n_utterances} utterances have no {name} label; they are reported as the group \"(not given)\".")
    speakers = frame.drop_duplicates("utterance_id")["speaker"].astype("string")
    no_speaker = int((speakers.isna() | (speakers == "")).sum())
    if no_speaker:
        items.append(f"{_plural(no_speaker, 'utterance')} without a speaker id: each counts as its own speaker, which narrows intervals if they share speakers.")
    failed = data.frame[data.frame["status"] != "ok"]
    if len(failed):
        by_condition = ", ".join(f"{k}: {v}" for k, v in failed["condition_key"].value_counts(sort=False).items())
        items.append(f"Failed utterances: {len(failed)} (utterance, condition) pairs could not be transcribed or decoded ({by_condition}) and are left out of every WER.")
    else:
        items.append("Failed utterances: none.")
    empty = data.frame[(data.frame["status"] == "ok") & data.frame["error"].notna() & (data.frame["error"].astype("string") != "")]
    if len(empty):
        items.append(f"{_plural(len(empty), 'utterance')} had no transcript in the replayed file and were scored as empty transcripts (every reference word a deletion).")
    if "source" in data.tag_columns:
        sources = frame.drop_duplicates("utterance_id")["source"].astype("string").str.lower()
        n_synthetic = int((sources == "synthetic").sum())
        if n_synthetic:
            items.append(f"Synthetic data: {n_synthetic} of {n_utterances} utterances are tagged source=synthetic (text-to-speech). Their accents are those of speech synthesisers, not of people; "
                         "these figures test the pipeline and say nothing about how the system serves real speakers.")
    items.append(f"Intervals: {report.to_json()['interval']}. They cover sampling of speakers, not differences in recording conditions, prompts or labelling between groups. "
                 "A difference between groups is called evidence of a disparity only when a test of equal rates across the groups rejects, adjusted for the number of tag dimensions reported.")
    normalizer = (report.run.get("normalizer") or {}).get("name")
    items.append(f"WER depends on the text normaliser (here {normalizer}): compare cards only when they use the same normaliser.")
    if notice := incomplete_notice(report.run):
        items.append(notice)
    elif report.run.get("status") != "complete":
        items.append(f"The run is {report.run.get('status')}: not every utterance was transcribed.")
    return [("h2", "Limitations"), ("ul", items)]


def render_card_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind == "h1":
            lines += [f"# {escape_markdown(content)}", ""]
        elif kind == "h2":
            lines += [f"## {escape_markdown(content)}", ""]
        elif kind == "h3":
            lines += [f"### {escape_markdown(content)}", ""]
        elif kind == "p":
            lines += [escape_markdown(content), ""]
        elif kind == "ul":
            lines += [f"- {escape_markdown(item)}" for item in content] + [""]
        elif kind == "table":
            lines.append("| " + " | ".join(escape_markdown(h) for h in content.headers) + " |")
            lines.append("|" + "|".join("---" if i < content.left else "---:" for i in range(len(content.headers))) + "|")
            lines += ["| " + " | ".join(escape_markdown(cell) for cell in row) + " |" for row in content.rows]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"




def render_card_html(blocks: list[Block]) -> str:
    parts: list[str] = []
    title = "Service card"
    for kind, content in blocks:
        if kind == "h1":
            title = content
            parts.append(f"<h1>{e(content)}</h1>")
        elif kind in ("h2", "h3"):
            parts.append(f"<{kind}>{e(content)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(content)}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in content) + "</ul>")
        elif kind == "table":
            header = "".join(f'<th class="{"l" if i < content.left else ""}" scope="col">{e(h)}</th>' for i, h in enumerate(content.headers))
            rows = []
            for r, row in enumerate(content.rows):
                muted = r < len(content.muted) and content.muted[r]
                cells = "".join(f'<td class="{"l" if i < content.left else ""}">{e(cell)}</td>' for i, cell in enumerate(row))
                rows.append(f'<tr class="{"small" if muted else ""}">{cells}</tr>')
            parts.append(f'<div class="scroll"><table><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
        elif kind == "figure":
            caption, svg = content  # svg built by forest_svg, which escapes every text it holds
            parts.append(f"<h3>{e(caption)}</h3>{svg}")
    return page(title, "\n".join(parts))


__all__ = ["write_card", "card_blocks", "render_card_markdown", "render_card_html", "missing_label_counts", "suppression_reason", "DEFAULT_LABELS_SOURCE"]
