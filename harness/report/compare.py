"""Two runs on the same utterances (two models, or before and after a fine-tune), paired by utterance id.

Overall and per slice: WER of each run and the change with a speaker-clustered interval and p-value; and
whether the gap between the best and the worst slice shrank, from one joint bootstrap over speakers.
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
from harness.report.data import RunData, check_dimensions, load_run
from harness.report.discovery import _clean, _none, cell_index
from harness.report.render import DASH, _md_escape, _pct, write_json
from harness.report.slices import NOT_GIVEN

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
class CompareOptions:
    by: tuple[str, ...] = ()
    min_speakers: int = stats.DEFAULT_MIN_SPEAKERS
    min_words: int = stats.DEFAULT_MIN_REF_WORDS
    n_resamples: int = stats.DEFAULT_N_RESAMPLES
    confidence: float = stats.DEFAULT_CONFIDENCE
    seed: int = 0
    condition: str | None = None


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Run B against run A on their paired utterances; every delta is B minus A (negative = B is better).

    `overall` and each entry of `slices`: n_utterances, n_speakers, ref_words, errors_a, errors_b,
    wer_a, wer_b (with joint bootstrap CIs), delta, delta_ci_low/high, p_value (sign-flip over speakers);
    slices add p_value_holm (Holm over the slices that are not small) and `small`. `gaps`: per --by
    dimension, worst minus best slice WER in each run (slices that are not small) and the change in gap.
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
            "methods": {
                "delta_interval": f"{self.options.confidence:.0%} percentile bootstrap resampling speakers ({self.options.n_resamples} resamples, seed {self.options.seed}); omitted below {self.options.min_speakers} speakers",
                "delta_p_value": "two-sided sign-flip permutation over speakers (runs exchangeable within a speaker under H0); Holm across slices that are not small",
                "gap": "worst minus best slice WER among labelled slices that are not small; intervals from one joint bootstrap (the same resampled speakers for both runs and every slice), worst and best re-chosen in each replicate",
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
    min_speakers: int = stats.DEFAULT_MIN_SPEAKERS,
    min_words: int = stats.DEFAULT_MIN_REF_WORDS,
    n_resamples: int = stats.DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    condition: str | None = None,
) -> Comparison:
    """Compare two run directories on the utterances they share; refuses runs scored with different normalisers.

    Slices use run A's tags. With several conditions, one condition's rows are compared (default clean).
    """
    data_a = run_a if isinstance(run_a, RunData) else load_run(run_a)
    data_b = run_b if isinstance(run_b, RunData) else load_run(run_b)
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
    keys_b = list(dict.fromkeys(data_b.frame["condition_key"]))
    if chosen is not None and chosen not in keys_b:
        raise ConfigError(CONDITION_MISSING.format(condition=chosen, a=data_a.run_dir, b=data_b.run_dir, present=", ".join(keys_b)))
    frame_b = data_b.frame if chosen is None else data_b.frame[data_b.frame["condition_key"] == chosen]
    options = CompareOptions(by=by, min_speakers=min_speakers, min_words=min_words, n_resamples=n_resamples, confidence=confidence, seed=seed, condition=condition)
    result = _compare(frame_a, frame_b, options, names=(str(data_a.run_dir), str(data_b.run_dir)), condition=chosen)
    return Comparison(**{**{f: getattr(result, f) for f in result.__dataclass_fields__}, "run_a": run_summary(data_a), "run_b": run_summary(data_b)})


def compare_frames(
    frame_a: pd.DataFrame,
    frame_b: pd.DataFrame,
    *,
    by: Sequence[str] = (),
    min_speakers: int = stats.DEFAULT_MIN_SPEAKERS,
    min_words: int = stats.DEFAULT_MIN_REF_WORDS,
    n_resamples: int = stats.DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence: float = stats.DEFAULT_CONFIDENCE,
) -> Comparison:
    """`compare_runs` on two results frames of one condition each (utterance_id, status, errors, ref_words, cluster or speaker, tags)."""
    options = CompareOptions(by=tuple(dict.fromkeys(by)), min_speakers=min_speakers, min_words=min_words, n_resamples=n_resamples, confidence=confidence, seed=seed)
    for name in options.by:
        if name not in frame_a.columns:
            raise ConfigError(UNKNOWN_BY.format(name=name, a="frame_a", available=", ".join(map(str, frame_a.columns))))
    return _compare(frame_a, frame_b, options, names=("frame_a", "frame_b"), condition=None)


def _compare(frame_a: pd.DataFrame, frame_b: pd.DataFrame, options: CompareOptions, *, names: tuple[str, str], condition: str | None) -> Comparison:
    for label, frame, path in (("A", frame_a, names[0]), ("B", frame_b, names[1])):
        duplicated = frame["utterance_id"].duplicated()
        if duplicated.any():
            raise ConfigError(DUPLICATE_IDS.format(run=label, path=path, count=int(duplicated.sum()), example=frame["utterance_id"][duplicated].iloc[0]))
    columns_a = ["utterance_id", "errors", "ref_words", *options.by]
    a = frame_a[columns_a].assign(
        _cluster=_clusters(frame_a), _ok=_ok(frame_a)
    )
    b = frame_b[["utterance_id", "errors", "ref_words"]].assign(_ok=_ok(frame_b))
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
    words_a, words_b = paired["ref_words_a"].to_numpy(), paired["ref_words_b"].to_numpy()
    differ = words_a != words_b
    if differ.any():
        row = int(np.argmax(differ))
        raise ConfigError(REFERENCES_DIFFER.format(count=int(differ.sum()), a=names[0], b=names[1], example=paired["utterance_id"].iloc[row], words_a=int(words_a[row]), words_b=int(words_b[row])))

    errors_a = paired["errors_a"].to_numpy(dtype=np.float64)
    errors_b = paired["errors_b"].to_numpy(dtype=np.float64)
    words = words_a.astype(np.float64)
    # Integer codes from a sorted factorisation: independent of row order, and cheap to regroup per slice.
    cluster_codes, _ = pd.factorize(paired["_cluster"].astype(str), sort=True)
    dimension_codes, dimension_values = [], []
    for name in options.by:
        codes, uniques = pd.factorize(paired[name], sort=True)
        values = [str(v) for v in uniques]
        if (codes < 0).any():
            codes = np.where(codes < 0, len(values), codes)
            values.append(NOT_GIVEN)
        dimension_codes.append(codes.astype(np.int64))
        dimension_values.append(values)

    # Per-speaker tests only need (speaker, slice values) totals: sum the rows into cells once.
    first, inverse = cell_index(cluster_codes, dimension_codes)
    n_cells = first.size
    cells = _PairedCells(
        cluster=cluster_codes[first],
        dimensions=[codes[first] for codes in dimension_codes],
        errors_a=np.bincount(inverse, weights=errors_a, minlength=n_cells),
        errors_b=np.bincount(inverse, weights=errors_b, minlength=n_cells),
        words=np.bincount(inverse, weights=words, minlength=n_cells),
        n_utterances=np.bincount(inverse, minlength=n_cells),
    )

    def test(mask: np.ndarray | None) -> dict[str, Any]:
        select = slice(None) if mask is None else mask
        clusters = cells.cluster[select]
        result = stats.paired_difference(
            errors_a=cells.errors_a[select], errors_b=cells.errors_b[select], ref_words=cells.words[select], clusters=clusters,
            seed=options.seed, n_resamples=options.n_resamples, confidence=options.confidence, min_speakers=max(2, options.min_speakers),
        )
        n_speakers = int(np.unique(clusters).size)
        ref_words = int(cells.words[select].sum())
        return {
            "n_utterances": int(cells.n_utterances[select].sum()), "n_speakers": n_speakers, "ref_words": ref_words,
            "errors_a": int(cells.errors_a[select].sum()), "errors_b": int(cells.errors_b[select].sum()),
            "wer_a": _none(result.value_a), "wer_b": _none(result.value_b), "delta": _none(result.difference),
            "delta_ci_low": _none(result.lower), "delta_ci_high": _none(result.upper), "p_value": _none(result.p_value),
            "small": n_speakers < options.min_speakers or ref_words < options.min_words,
        }

    overall = test(None)
    slices = []
    for name, codes, values in zip(options.by, cells.dimensions, dimension_values):
        for code, value in enumerate(values):
            slices.append({"dimension": name, "by": {name: value}, **test(codes == code)})
    # Holm over the slices a reader may act on; small slices keep their raw p but are never called significant.
    family = [i for i, row in enumerate(slices) if not row["small"] and row["p_value"] is not None]
    adjusted = stats.holm([slices[i]["p_value"] for i in family]) if family else []
    for row in slices:
        row["p_value_holm"] = None
    for i, value in zip(family, adjusted):
        slices[i]["p_value_holm"] = _none(value)

    wer_intervals, gaps = _joint_bootstrap(cells, slices, options)
    for row, (low_a, high_a, low_b, high_b) in zip([overall, *slices], wer_intervals):
        row.update(wer_a_ci_low=low_a, wer_a_ci_high=high_a, wer_b_ci_low=low_b, wer_b_ci_high=high_b)
    return Comparison(
        options=options, run_a={"name": names[0]}, run_b={"name": names[1]}, condition=condition,
        n_paired=n_paired_all, n_only_a=len(frame_a) - n_paired_all, n_only_b=len(frame_b) - n_paired_all,
        n_failed=n_failed, overall=overall, slices=slices, gaps=gaps,
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class _PairedCells:
    """Paired rows summed per (speaker, value of every --by dimension)."""

    cluster: np.ndarray
    dimensions: list[np.ndarray]
    errors_a: np.ndarray
    errors_b: np.ndarray
    words: np.ndarray
    n_utterances: np.ndarray


def _joint_bootstrap(cells: _PairedCells, slices: list[dict[str, Any]], options: CompareOptions) -> tuple[list[tuple], list[dict[str, Any]]]:
    """WER intervals of both runs for overall and every slice, and the change in worst-best gap, from one bootstrap.

    Each cell appears once per run and per dimension (plus once per run as "overall"), labelled by
    (run, slice). Every copy keeps its speaker, so `stats.slice_intervals` resamples the same speakers
    for both runs and every slice in a replicate.
    """
    n_cells = cells.cluster.size
    dimension_codes = cells.dimensions
    # Slice 0 is overall; slices 1.. follow the order of `slices` (dimension by dimension, value codes ascending).
    labels = [np.zeros(n_cells, dtype=np.int64)]
    offset = 1
    for codes in dimension_codes:
        labels.append(offset + codes)
        offset += int(codes.max()) + 1
    n_slices = offset
    label = np.concatenate(labels)
    copies = len(labels)
    run_label = np.concatenate([label, label + n_slices])
    intervals = stats.slice_intervals(
        errors=np.concatenate([np.tile(cells.errors_a, copies), np.tile(cells.errors_b, copies)]),
        ref_words=np.tile(cells.words, 2 * copies),
        clusters=np.tile(cells.cluster, 2 * copies),
        slices=run_label,
        seed=options.seed, n_resamples=options.n_resamples, confidence=options.confidence, min_speakers=max(2, options.min_speakers),
    )
    # Slice labels present in the data, in sorted order (codes with no rows in the pairing are absent).
    column = {lab: i for i, lab in enumerate(intervals.slices)}
    draws = np.asarray(intervals.draws)

    def bounds(code: int) -> tuple:
        i, j = column[code], column[code + n_slices]
        return (_none(intervals.lower[i]), _none(intervals.upper[i]), _none(intervals.lower[j]), _none(intervals.upper[j]))

    slice_code = []
    offset = 1
    for codes in dimension_codes:
        # Every value code has rows: codes were factorised over these very rows.
        slice_code.extend(range(offset, offset + int(codes.max()) + 1))
        offset += int(codes.max()) + 1
    wer_intervals = [bounds(0)] + [bounds(int(c)) for c in slice_code]

    gaps = []
    alpha = 1 - options.confidence
    for name in options.by:
        # Rows without a label are not a group of people: they never anchor the worst-best gap.
        rows = [(i, r) for i, r in enumerate(slices) if r["dimension"] == name and not r["small"] and r["wer_a"] is not None and NOT_GIVEN not in r["by"].values()]
        if len(rows) < 2:
            gaps.append({"dimension": name, "slices_compared": len(rows), "verdict": None})
            continue
        codes = [int(slice_code[i]) for i, _ in rows]
        cols_a = [column[c] for c in codes]
        cols_b = [column[c + n_slices] for c in codes]
        wer_a = np.array([r["wer_a"] for _, r in rows])
        wer_b = np.array([r["wer_b"] for _, r in rows])
        with np.errstate(all="ignore"):
            gap_a_draws = np.nanmax(draws[:, cols_a], axis=1) - np.nanmin(draws[:, cols_a], axis=1)
            gap_b_draws = np.nanmax(draws[:, cols_b], axis=1) - np.nanmin(draws[:, cols_b], axis=1)
        change_draws = gap_b_draws - gap_a_draws
        percentiles = [100 * alpha / 2, 100 * (1 - alpha / 2)]
        (ga_low, ga_high), (gb_low, gb_high), (ch_low, ch_high) = (np.nanpercentile(d, percentiles) for d in (gap_a_draws, gap_b_draws, change_draws))
        gap_a = float(wer_a.max() - wer_a.min())
        gap_b = float(wer_b.max() - wer_b.min())
        verdict = "shrank" if ch_high < 0 else "grew" if ch_low > 0 else "inconclusive"
        gaps.append({
            "dimension": name, "slices_compared": len(rows),
            "worst_a": rows[int(np.argmax(wer_a))][1]["by"][name], "best_a": rows[int(np.argmin(wer_a))][1]["by"][name],
            "worst_b": rows[int(np.argmax(wer_b))][1]["by"][name], "best_b": rows[int(np.argmin(wer_b))][1]["by"][name],
            "gap_a": gap_a, "gap_a_ci_low": _none(ga_low), "gap_a_ci_high": _none(ga_high),
            "gap_b": gap_b, "gap_b_ci_low": _none(gb_low), "gap_b_ci_high": _none(gb_high),
            "gap_change": gap_b - gap_a, "gap_change_ci_low": _none(ch_low), "gap_change_ci_high": _none(ch_high),
            "verdict": verdict,
        })
    return wer_intervals, gaps


def _clusters(frame: pd.DataFrame) -> pd.Series:
    if "cluster" in frame.columns:
        return frame["cluster"]
    speakers = frame["speaker"] if "speaker" in frame.columns else [None] * len(frame)
    return pd.Series(stats.cluster_labels(speakers=speakers, utterance_ids=frame["utterance_id"]), index=frame.index)


def _ok(frame: pd.DataFrame) -> np.ndarray:
    return (frame["status"] == "ok").to_numpy() if "status" in frame.columns else np.ones(len(frame), dtype=bool)


# --------------------------------------------------------------------------------------------------
# Rendering

COLUMNS = (
    ("slice", "slice"), ("n_speakers", "spk"), ("ref_words", "words"), ("wer_a", "WER A"), ("wer_b", "WER B"),
    ("delta", "Δ (B−A)"), ("delta_ci", "95% CI"), ("p", "p"), ("p_holm", "p (Holm)"), ("flag", "flag"),
)


def display_rows(comparison: Comparison) -> list[dict[str, str]]:
    rows = []
    for row in [{**comparison.overall, "by": {}, "p_value_holm": None}, *comparison.slices]:
        low, high = row["delta_ci_low"], row["delta_ci_high"]
        rows.append({
            "slice": ", ".join(f"{k}={v}" for k, v in row["by"].items()) or "overall",
            "n_speakers": str(row["n_speakers"]), "ref_words": str(row["ref_words"]),
            "wer_a": _pct(row["wer_a"]), "wer_b": _pct(row["wer_b"]),
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
            f"{gap['dimension']}: worst−best gap {100 * gap['gap_a']:.1f} pts in A ({gap['worst_a']} vs {gap['best_a']}), "
            f"{100 * gap['gap_b']:.1f} pts in B ({gap['worst_b']} vs {gap['best_b']}); change {_points(gap['gap_change'])} "
            f"[{_points(gap['gap_change_ci_low'], unit=False)}, {_points(gap['gap_change_ci_high'], unit=False)}]: {VERDICTS[gap['verdict']]} "
            f"({gap['slices_compared']} slices)"
        )
    return lines


def _header(comparison: Comparison) -> list[str]:
    def describe(run: dict[str, Any]) -> str:
        backend = run.get("backend") or {}
        return f"{run.get('run_dir', run.get('name'))} (backend {backend.get('name')}{' ' + json.dumps(backend.get('options')) if backend.get('options') else ''})"

    normalizer = ((comparison.run_a.get("normalizer") or {}).get("name"))
    return [
        f"A: {describe(comparison.run_a)}",
        f"B: {describe(comparison.run_b)}",
        f"{comparison.n_paired} utterances paired by id ({comparison.n_only_a} only in A, {comparison.n_only_b} only in B, "
        f"{comparison.n_failed} dropped as failed in either run)" + (f"; condition {comparison.condition}" if comparison.condition else "")
        + (f"; normaliser {normalizer}" if normalizer else "") + ".",
    ]


def _footnote(comparison: Comparison) -> str:
    o = comparison.options
    return (
        f"Δ = WER(B) − WER(A) on the same utterances, in percentage points (negative: B better). CI: {o.confidence:.0%} bootstrap over speakers, "
        f"{o.n_resamples} resamples, seed {o.seed}. p: sign-flip permutation over speakers; Holm across the slices not flagged small. "
        f"'small' = fewer than {o.min_speakers} speakers or {o.min_words} words: never in a gap, never significant."
    )


def render_comparison_markdown(comparison: Comparison) -> str:
    lines = ["# Run comparison", ""]
    lines += [f"- {_md_escape(line)}" for line in _header(comparison)]
    lines += ["", "| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "|".join("---" if k in ("slice", "flag") else "---:" for k, _ in COLUMNS) + "|"]
    for row in display_rows(comparison):
        lines.append("| " + " | ".join(_md_escape(row[k]) for k, _ in COLUMNS) + " |")
    lines += ["", _md_escape(_footnote(comparison))]
    if comparison.gaps:
        lines += ["", "## Gap between the worst and the best slice", ""]
        lines += [f"- {_md_escape(line)}" for line in gap_lines(comparison)]
    return "\n".join(lines) + "\n"


def print_comparison(comparison: Comparison, console: Console) -> None:
    for line in _header(comparison):
        console.print(line, highlight=False)
    table = Table(title="WER of B against A, paired by utterance", title_justify="left")
    for key, header in COLUMNS:
        table.add_column(header, justify="left" if key in ("slice", "flag") else "right", no_wrap=True)
    for row in display_rows(comparison):
        table.add_row(*(row[k] for k, _ in COLUMNS), style="dim" if row["flag"] else None)
    console.print(table)
    console.print(_footnote(comparison), highlight=False)
    for line in gap_lines(comparison):
        console.print(line, highlight=False)


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


def _p(value: float | None) -> str:
    return DASH if value is None else f"{value:.2g}"
