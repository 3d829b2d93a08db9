"""Two runs on the same utterances (two models, or before and after a fine-tune), paired by utterance id.

Overall and per slice: WER of each run and the change with a speaker-clustered interval and p-value; and
whether the gap between the best and the worst slice shrank, from intervals that hold for every slice of both runs at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from harness import stats
from harness.errors import ConfigError
from harness.report.build import ReportOptions, run_summary, select_condition
from harness.report.data import RunData, check_dimensions, condition_keys, incomplete_notice, load_run
from harness.report.discovery import _clean, _none
from harness.report.format import DASH
from harness.report.format import pct as _pct
from harness.escaping import escape_markdown, escape_terminal
from harness.report.render import write_json
from harness.report.slices import METRICS, NOT_GIVEN, MetricOptions

__all__ = [
    "CompareOptions",
    "Comparison",
    "compare_frames",
    "compare_runs",
    "print_comparison",
    "render_comparison_markdown",
    "write_comparison",
]

JSON_FILE = "comparison.json"
MARKDOWN_FILE = "comparison.md"

NORMALIZERS_DIFFER = (
    "run A ({a}) was scored with normaliser {name_a!r} but run B ({b}) with {name_b!r}; WERs under different "
    "normalisers are not comparable. Re-run one of them with --normalizer {name_a}"
)
NOTHING_PAIRED = (
    "no utterance of run A ({a}: {n_a} utterances) is in run B ({b}: {n_b} utterances){where}; "
    "compare two runs of the same manifest"
)
DUPLICATE_IDS = "run {run} ({path}) has {count} duplicate utterance id(s) (e.g. {example!r}); pairing needs one row per utterance"
REFERENCES_DIFFER = (
    "{count} paired utterance(s) have different references in run A ({a}) and run B ({b}) (e.g. {example!r}: "
    "{words_a} vs {words_b} reference words); compare two runs of the same manifest"
)
ALL_FAILED = "all {count} paired utterance(s) failed in run A ({a}) or run B ({b}); nothing to compare"
UNKNOWN_BY = "--by {name!r} is not a tag of run A ({a}). Available: {available}"
CONDITION_MISSING = "condition {condition!r} is in run A ({a}) but not in run B ({b}). Conditions of B: {present}"
VERDICTS = {"shrank": "shrank", "grew": "grew", "inconclusive": "no significant change", None: "not estimable"}


@dataclass(frozen=True, kw_only=True)
class CompareOptions(MetricOptions):
    """Which tags to slice by, which condition, with the metric and statistics options of `MetricOptions`."""

    by: tuple[str, ...] = ()
    condition: str | None = None


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Run B against run A on their paired utterances; every delta is B minus A (negative = B is better).

    `overall` and each entry of `slices`: n_utterances, n_speakers, n_effective_speakers, ref_words,
    errors_a, errors_b, wer_a, wer_b (each with its interval), delta with its interval, p_value
    (sign-flip over speakers), n_speakers_changed and `small`; slices add p_value_holm (Holm over the
    slices that are not small). `gaps`: per --by dimension, worst minus best slice in each run among
    labelled slices that are not small, and the change in gap, with simultaneous intervals.
    """

    options: CompareOptions
    run_a: dict[str, Any]
    run_b: dict[str, Any]
    condition: str | None
    n_paired: int
    n_only_a: int
    n_only_b: int
    n_failed: int
    overall: dict[str, Any]
    slices: list[dict[str, Any]]
    gaps: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return _clean({
            "run_a": self.run_a,
            "run_b": self.run_b,
            "options": asdict(self.options),
            "condition": self.condition,
            "pairing": {"paired": self.n_paired, "only_in_a": self.n_only_a, "only_in_b": self.n_only_b, "dropped_failed": self.n_failed},
            "definition": "delta = WER(B) - WER(A) on the same utterances; negative means B makes fewer errors",
            "metric": self.options.metric,
            "methods": {
                "rate_interval": f"{self.options.label} t interval on the log scale, CR3 speaker-clustered variance, Bell-McCaffrey df; omitted for small slices",
                "delta_interval": f"{self.options.label} t interval from the jackknife-type (CR3) speaker-clustered variance of the paired change, Bell-McCaffrey df; omitted for small slices and when fewer than {self.options.min_speakers:g} speakers changed at all",
                "delta_p_value": "two-sided sign-flip permutation over speakers (exact when few speakers changed; runs exchangeable within a speaker under H0); Holm across slices that are not small; it decides significance",
                "gap": "worst minus best slice among labelled slices that are not small, in each run; intervals for both gaps and their change from simultaneous (Sidak) per-slice intervals over both runs at the level given as simultaneous_confidence, so the choice of worst and best is accounted for; the verdict is 'shrank' or 'grew' only when the change's interval excludes 0",
                "small": f"fewer than {self.options.min_speakers:g} effective speakers or {self.options.min_words} reference {self.options.rate.unit_name}",
            },
            "overall": self.overall,
            "slices": self.slices,
            "gaps": self.gaps,
        })


def compare_runs(
    run_a: str | Path | RunData,
    run_b: str | Path | RunData,
    *,
    by: Sequence[str] = (),
    min_speakers: float = stats.DEFAULT_MIN_SPEAKERS,
    min_words: int = stats.DEFAULT_MIN_REF_WORDS,
    n_resamples: int = stats.DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    metric: str = "wer",
    condition: str | None = None,
) -> Comparison:
    """Compare two run directories on the utterances they share; refuses runs scored with different normalisers.

    Slices use run A's tags. With several conditions, one condition's rows are compared (default clean).
    """
    # The counts of both metrics and nothing else: never transcripts or failure messages.
    counts = [name for metric_ in METRICS.values() for name in (metric_.errors, metric_.units)]
    data_a = run_a if isinstance(run_a, RunData) else load_run(run_a, texts=False, columns=counts)
    data_b = run_b if isinstance(run_b, RunData) else load_run(run_b, texts=False, columns=counts, tags=False)  # sliced by A's tags
    name_a = (data_a.record.get("normalizer") or {}).get("name")
    name_b = (data_b.record.get("normalizer") or {}).get("name")
    if name_a != name_b:
        raise ConfigError(NORMALIZERS_DIFFER.format(a=data_a.run_dir, b=data_b.run_dir, name_a=name_a, name_b=name_b))
    by = tuple(dict.fromkeys(by))
    for name in by:
        if name not in data_a.tag_columns:
            raise ConfigError(UNKNOWN_BY.format(name=name, a=data_a.run_dir, available=", ".join(data_a.tag_columns) or "none"))
    check_dimensions(data_a, list(by))
    frame_a, chosen = select_condition(data_a, ReportOptions(condition=condition))
    keys_b = condition_keys(data_b.frame)
    if chosen is not None and chosen not in keys_b:
        raise ConfigError(CONDITION_MISSING.format(condition=chosen, a=data_a.run_dir, b=data_b.run_dir, present=", ".join(keys_b)))
    frame_b = data_b.frame if chosen is None else data_b.frame[data_b.frame["condition_key"] == chosen]
    options = CompareOptions(by=by, min_speakers=min_speakers, min_words=min_words, n_resamples=n_resamples, confidence=confidence, seed=seed, metric=metric, condition=condition)
    result = _compare(frame_a, frame_b, options, names=(str(data_a.run_dir), str(data_b.run_dir)), condition=chosen)
    return Comparison(**{**{f: getattr(result, f) for f in result.__dataclass_fields__}, "run_a": run_summary(data_a), "run_b": run_summary(data_b)})


def compare_frames(
    frame_a: pd.DataFrame,
    frame_b: pd.DataFrame,
    *,
    by: Sequence[str] = (),
    min_speakers: float = stats.DEFAULT_MIN_SPEAKERS,
    min_words: int = stats.DEFAULT_MIN_REF_WORDS,
    n_resamples: int = stats.DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    metric: str = "wer",
) -> Comparison:
    """`compare_runs` on two results frames of one condition each (utterance_id, status, errors, ref_words, cluster or speaker, tags)."""
    options = CompareOptions(by=tuple(dict.fromkeys(by)), min_speakers=min_speakers, min_words=min_words, n_resamples=n_resamples, confidence=confidence, seed=seed, metric=metric)
    for name in options.by:
        if name not in frame_a.columns:
            raise ConfigError(UNKNOWN_BY.format(name=name, a="frame_a", available=", ".join(map(str, frame_a.columns))))
    return _compare(frame_a, frame_b, options, names=("frame_a", "frame_b"), condition=None)


def _compare(frame_a: pd.DataFrame, frame_b: pd.DataFrame, options: CompareOptions, *, names: tuple[str, str], condition: str | None) -> Comparison:
    for label, frame, path in (("A", frame_a, names[0]), ("B", frame_b, names[1])):
        if frame["utterance_id"].is_unique:  # a hash check, several times faster than duplicated() on a million ids
            continue
        duplicated = frame["utterance_id"].duplicated()
        if duplicated.any():
            raise ConfigError(DUPLICATE_IDS.format(run=label, path=path, count=int(duplicated.sum()), example=frame["utterance_id"][duplicated].iloc[0]))
    counts = {options.rate.errors: "errors", options.rate.units: "words"}
    a = frame_a[["utterance_id", *counts, *options.by]].rename(columns=counts).assign(_cluster=_clusters(frame_a), _ok=_ok(frame_a))
    b = frame_b[["utterance_id", *counts]].rename(columns=counts).assign(_ok=_ok(frame_b))
    paired = a.merge(b, on="utterance_id", how="inner", suffixes=("_a", "_b"))
    # Ids are unique on both sides (checked above), so the inner join's size is the number paired.
    n_paired_all = len(paired)
    if n_paired_all == 0:
        where = f" under condition {condition!r}" if condition else ""
        raise ConfigError(NOTHING_PAIRED.format(a=names[0], b=names[1], n_a=len(frame_a), n_b=len(frame_b), where=where))
    both_ok = paired["_ok_a"].to_numpy() & paired["_ok_b"].to_numpy()
    n_failed = int((~both_ok).sum())
    paired = paired[both_ok]
    if paired.empty:
        raise ConfigError(ALL_FAILED.format(count=n_paired_all, a=names[0], b=names[1]))
    words_a, words_b = paired["words_a"].to_numpy(), paired["words_b"].to_numpy()
    differ = words_a != words_b
    if differ.any():
        row = int(np.argmax(differ))
        raise ConfigError(REFERENCES_DIFFER.format(count=int(differ.sum()), a=names[0], b=names[1], example=paired["utterance_id"].iloc[row], words_a=int(words_a[row]), words_b=int(words_b[row])))

    metric = options.rate
    rate = metric.name
    labels: dict[str, pd.Series] = {}
    for name in options.by:
        labels[name] = paired[name].astype("string").fillna(NOT_GIVEN)
    base = pd.DataFrame({
        "cluster": paired["_cluster"].astype("string").array, "errors_a": paired["errors_a"].to_numpy(dtype=np.float64),
        "errors_b": paired["errors_b"].to_numpy(dtype=np.float64), "words": paired["words_a"].to_numpy(dtype=np.float64),
        **{name: values.to_numpy() for name, values in labels.items()},
    })
    n_family = 1 + sum(int(values.nunique()) for values in labels.values())

    def changes(by: str | None):
        cells = [stats.cells_from_frame(base, by=by, errors=column, words="words") for column in ("errors_a", "errors_b")]
        change = stats.paired_changes(cells[0], cells[1], options, family_size=n_family)
        return cells, change, stats.slice_intervals(cells[0], options), stats.slice_intervals(cells[1], options)

    def row(change: stats.PairedChange, intervals_a: stats.SliceIntervals, intervals_b: stats.SliceIntervals, i: int) -> dict[str, Any]:
        small = bool(change.small[i])
        return {
            "n_utterances": int(intervals_a.n_utterances[i]), "n_speakers": int(change.n_speakers[i]),
            "n_effective_speakers": round(float(change.n_effective_speakers[i]), 2), "ref_words": int(change.words[i]),
            "errors_a": int(intervals_a.errors[i]), "errors_b": int(intervals_b.errors[i]),
            f"{rate}_a": _none(change.value_a[i]), f"{rate}_b": _none(change.value_b[i]),
            f"{rate}_a_ci_low": _none(intervals_a.lower[i]), f"{rate}_a_ci_high": _none(intervals_a.upper[i]),
            f"{rate}_b_ci_low": _none(intervals_b.lower[i]), f"{rate}_b_ci_high": _none(intervals_b.upper[i]),
            "delta": _none(change.delta[i]),
            "delta_ci_low": None if small else _none(change.delta_lower[i]), "delta_ci_high": None if small else _none(change.delta_upper[i]),
            "p_value": _none(change.p_value[i]), "p_value_exact": bool(change.p_value_exact[i]),
            "n_speakers_changed": int(change.n_speakers_changed[i]), "small": small,
        }

    _, change, intervals_a, intervals_b = changes(None)
    overall = row(change, intervals_a, intervals_b, 0)
    slices: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    for name in options.by:
        _, change, intervals_a, intervals_b = changes(name)
        for i, value in enumerate(change.slices):
            slices.append({"dimension": name, "by": {name: str(value)}, **row(change, intervals_a, intervals_b, i)})
        # Rows without a label are not a group of people: they never anchor the worst-best gap.
        eligible = ~np.asarray(change.small) & np.array([str(v) != NOT_GIVEN for v in change.slices])
        gaps.append(_gap(name, change.slices, stats.gap_change(intervals_a, intervals_b, eligible, options), eligible, intervals_a, intervals_b))
    # Holm over the slices a reader may act on; small slices keep their raw p but are never called significant.
    family = [i for i, r in enumerate(slices) if not r["small"] and r["p_value"] is not None]
    adjusted = stats.holm([slices[i]["p_value"] for i in family]) if family else []
    for r in slices:
        r["p_value_holm"] = None
    for i, value in zip(family, adjusted):
        slices[i]["p_value_holm"] = _none(value)
    return Comparison(
        options=options, run_a={"name": names[0]}, run_b={"name": names[1]}, condition=condition,
        n_paired=n_paired_all, n_only_a=len(frame_a) - n_paired_all, n_only_b=len(frame_b) - n_paired_all,
        n_failed=n_failed, overall=overall, slices=slices, gaps=gaps,
    )


def _gap(name: str, labels: tuple, result: stats.GapChange, eligible: np.ndarray, intervals_a: stats.SliceIntervals, intervals_b: stats.SliceIntervals) -> dict[str, Any]:
    index = np.flatnonzero(eligible)
    if result.verdict is None and not np.isfinite(result.change.estimate):
        return {"dimension": name, "slices_compared": int(index.size), "verdict": None}
    wer_a, wer_b = np.asarray(intervals_a.wer)[index], np.asarray(intervals_b.wer)[index]

    def interval(prefix: str, item: stats.Interval) -> dict[str, float | None]:
        return {prefix: _none(item.estimate), f"{prefix}_ci_low": _none(item.lower), f"{prefix}_ci_high": _none(item.upper)}

    return {
        "dimension": name, "slices_compared": int(index.size),
        "worst_a": str(labels[index[int(np.argmax(wer_a))]]), "best_a": str(labels[index[int(np.argmin(wer_a))]]),
        "worst_b": str(labels[index[int(np.argmax(wer_b))]]), "best_b": str(labels[index[int(np.argmin(wer_b))]]),
        **interval("gap_a", result.gap_a), **interval("gap_b", result.gap_b), **interval("gap_change", result.change),
        "verdict": result.verdict, "simultaneous_confidence": result.simultaneous_confidence,
    }


def _clusters(frame: pd.DataFrame) -> pd.Series:
    if "cluster" in frame.columns:
        return frame["cluster"]
    speakers = frame["speaker"] if "speaker" in frame.columns else [None] * len(frame)
    return pd.Series(stats.cluster_labels(speakers=speakers, utterance_ids=frame["utterance_id"]), index=frame.index)


def _ok(frame: pd.DataFrame) -> np.ndarray:
    return (frame["status"] == "ok").to_numpy() if "status" in frame.columns else np.ones(len(frame), dtype=bool)


# --------------------------------------------------------------------------------------------------
# Rendering

def columns(comparison: Comparison) -> tuple[tuple[str, str], ...]:
    """(key, header) pairs; headers name the metric and the confidence level of the run's options."""
    o = comparison.options
    label = o.rate.label
    return (
        ("slice", "slice"), ("n_speakers", "spk"), ("n_effective_speakers", "eff spk"), ("ref_words", o.rate.unit_name),
        ("rate_a", f"{label} A"), ("rate_b", f"{label} B"), ("delta", "Δ (B−A)"), ("delta_ci", f"{o.label} CI"), ("p", "p"),
        ("p_holm", "p (Holm)"), ("flag", "flag"),
    )


def display_rows(comparison: Comparison) -> list[dict[str, str]]:
    rows = []
    rate = comparison.options.metric
    for row in [{**comparison.overall, "by": {}, "p_value_holm": None}, *comparison.slices]:
        low, high = row["delta_ci_low"], row["delta_ci_high"]
        rows.append({
            "slice": ", ".join(f"{k}={v}" for k, v in row["by"].items()) or "overall",
            "n_speakers": str(row["n_speakers"]), "n_effective_speakers": f"{row['n_effective_speakers']:.1f}", "ref_words": str(row["ref_words"]),
            "rate_a": _pct(row[f"{rate}_a"]), "rate_b": _pct(row[f"{rate}_b"]),
            "delta": _points(row["delta"]),
            "delta_ci": DASH if low is None or high is None else f"{_points(low, unit=False)} to {_points(high, unit=False)}",
            "p": _p(row["p_value"]), "p_holm": _p(row["p_value_holm"]),
            "flag": "small" if row["small"] else "",
        })
    return rows


def gap_lines(comparison: Comparison) -> list[str]:
    lines = []
    for gap in comparison.gaps:
        if gap["verdict"] is None:
            lines.append(f"{gap['dimension']}: fewer than two slices large enough to compare; no gap.")
            continue
        lines.append(
            f"{gap['dimension']}: worst−best gap {100 * gap['gap_a']:.1f} pts [{_bound(gap['gap_a_ci_low'])}, {_bound(gap['gap_a_ci_high'])}] in A ({gap['worst_a']} vs {gap['best_a']}), "
            f"{100 * gap['gap_b']:.1f} pts [{_bound(gap['gap_b_ci_low'])}, {_bound(gap['gap_b_ci_high'])}] in B ({gap['worst_b']} vs {gap['best_b']}); change {_points(gap['gap_change'])} "
            f"[{_points(gap['gap_change_ci_low'], unit=False)}, {_points(gap['gap_change_ci_high'], unit=False)}]: {VERDICTS[gap['verdict']]} "
            f"({gap['slices_compared']} slices; intervals hold for all of them at once)"
        )
    return lines


def _header(comparison: Comparison) -> list[str]:
    def describe(run: dict[str, Any]) -> str:
        backend = run.get("backend") or {}
        return f"{run.get('run_dir', run.get('name'))} (backend {backend.get('name')}{' ' + json.dumps(backend.get('options')) if backend.get('options') else ''})"

    normalizer = ((comparison.run_a.get("normalizer") or {}).get("name"))
    notices = [f"{label}: {notice}" for label, run in (("A", comparison.run_a), ("B", comparison.run_b)) if (notice := incomplete_notice(run))]
    return [
        *notices,
        f"A: {describe(comparison.run_a)}",
        f"B: {describe(comparison.run_b)}",
        f"{comparison.n_paired} utterances paired by id ({comparison.n_only_a} only in A, {comparison.n_only_b} only in B, "
        f"{comparison.n_failed} dropped as failed in either run)" + (f"; condition {comparison.condition}" if comparison.condition else "")
        + (f"; normaliser {normalizer}" if normalizer else "") + ".",
    ]


def _footnote(comparison: Comparison) -> str:
    o = comparison.options
    label = o.rate.label
    return (
        f"Δ = {label}(B) − {label}(A) on the same utterances, in percentage points (negative: B better). CI: {o.label} t interval clustered by speaker "
        f"(omitted when fewer than {o.min_speakers:g} speakers changed). p: sign-flip permutation over speakers (seed {o.seed}); Holm across the "
        f"slices not flagged small; p decides significance. 'small' = fewer than {o.min_speakers:g} effective speakers or {o.min_words} {o.rate.unit_name}: "
        "never in a gap, never significant."
    )


def render_comparison_markdown(comparison: Comparison) -> str:
    lines = ["# Run comparison", ""]
    lines += [f"- {escape_markdown(line)}" for line in _header(comparison)]
    cols = columns(comparison)
    lines += ["", "| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" if k in ("slice", "flag") else "---:" for k, _ in cols) + "|"]
    for row in display_rows(comparison):
        lines.append("| " + " | ".join(escape_markdown(row[k]) for k, _ in cols) + " |")
    lines += ["", escape_markdown(_footnote(comparison))]
    if comparison.gaps:
        lines += ["", "## Gap between the worst and the best slice", ""]
        lines += [f"- {escape_markdown(line)}" for line in gap_lines(comparison)]
    return "\n".join(lines) + "\n"


# The terminal leaves out effective speakers (in comparison.md and .json) so the table fits 120 columns.
TERMINAL_COLUMNS = ("slice", "n_speakers", "ref_words", "rate_a", "rate_b", "delta", "delta_ci", "p", "p_holm", "flag")


def print_comparison(comparison: Comparison, console: Console) -> None:
    for line in _header(comparison):
        console.print(escape_terminal(line))
    cols = tuple(c for c in columns(comparison) if c[0] in TERMINAL_COLUMNS)
    table = Table(title=f"{comparison.options.rate.label} of B against A, paired by utterance", title_justify="left")
    for key, header in cols:
        table.add_column(header, justify="left" if key in ("slice", "flag") else "right", no_wrap=True)
    for row in display_rows(comparison):
        table.add_row(*(escape_terminal(row[k]) for k, _ in cols), style="dim" if row["flag"] else None)
    console.print(table)
    console.print(_footnote(comparison), highlight=False)
    for line in gap_lines(comparison):
        console.print(escape_terminal(line))


def write_comparison(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write comparison.json and comparison.md into `out_dir` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out_dir / JSON_FILE, out_dir / MARKDOWN_FILE
    write_json(json_path, comparison.to_json())
    markdown_path.write_text(render_comparison_markdown(comparison), encoding="utf-8")
    return [json_path, markdown_path]


def _points(value: float | None, *, unit: bool = True) -> str:
    if value is None:
        return DASH
    return f"{100 * value:+.1f}" + (" pts" if unit else "")


def _bound(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}"


def _p(value: float | None) -> str:
    return DASH if value is None else f"{value:.2g}"
