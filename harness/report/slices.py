"""The slice table: pooled WER per slice with speaker-clustered intervals, sizes, flags and disparities."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness import stats

NOT_GIVEN = "(not given)"
COUNT_COLUMNS = ("errors", "substitutions", "deletions", "insertions", "ref_words", "hits", "char_errors", "ref_chars")


@dataclass(frozen=True, kw_only=True)
class SliceOptions:
    """How slices are cut and when they are too small to trust."""

    by: tuple[str, ...] = ()
    cross: bool = False
    min_speakers: int = stats.DEFAULT_MIN_SPEAKERS
    min_words: int = stats.DEFAULT_MIN_REF_WORDS
    n_resamples: int = stats.DEFAULT_N_RESAMPLES
    confidence: float = stats.DEFAULT_CONFIDENCE
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class DimensionDisparity:
    dimension: tuple[str, ...]
    worst: dict[str, str] | None
    best: dict[str, str] | None
    worst_to_best_ratio: dict[str, float | None]
    worst_minus_best: dict[str, float | None]
    slices_compared: int


@dataclass(frozen=True, kw_only=True)
class SliceTable:
    overall: dict[str, Any]
    slices: list[dict[str, Any]]
    disparities: list[DimensionDisparity] = field(default_factory=list)


def dimensions(options: SliceOptions) -> list[tuple[str, ...]]:
    """One-way slices for every --by; with --cross, also every pair."""
    dims = [(name,) for name in options.by]
    if options.cross:
        dims.extend(itertools.combinations(options.by, 2))
    return dims


def summarize(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts and rates of one group of rows (a slice, or everything): pooled WER = errors / words."""
    ok = frame[frame["status"] == "ok"]
    totals = {name: int(ok[name].sum()) for name in COUNT_COLUMNS}
    words = totals["ref_words"]
    per_utterance = ok["errors"] / ok["ref_words"].where(ok["ref_words"] > 0)
    return {
        "n_utterances": int(len(ok)),
        "n_speakers": int(ok["cluster"].nunique()),
        "n_failed": int((frame["status"] != "ok").sum()),
        **{k: totals[k] for k in ("ref_words", "errors", "substitutions", "deletions", "insertions")},
        "wer": _rate(totals["errors"], words),
        "substitution_rate": _rate(totals["substitutions"], words),
        "deletion_rate": _rate(totals["deletions"], words),
        "insertion_rate": _rate(totals["insertions"], words),
        "cer": _rate(totals["char_errors"], totals["ref_chars"]),
        "mean_utterance_wer": finite_or_none(float(per_utterance.mean())) if len(ok) else None,
    }


def build_slice_table(frame: pd.DataFrame, options: SliceOptions) -> SliceTable:
    overall = summarize(frame)
    ok = frame[frame["status"] == "ok"].copy()
    overall_ci = _intervals(ok.assign(_all="all"), ["_all"], options)
    if overall_ci is not None:
        overall.update(wer_ci_low=finite_or_none(overall_ci.lower[0]), wer_ci_high=finite_or_none(overall_ci.upper[0]))
    else:
        overall.update(wer_ci_low=None, wer_ci_high=None)
    overall["small"] = _is_small(overall, options)
    rows: list[dict[str, Any]] = []
    disparities: list[DimensionDisparity] = []
    for dim in dimensions(options):
        labelled = frame.copy()
        for name in dim:
            labelled[name] = labelled[name].astype("string").fillna(NOT_GIVEN) if name != "snr_db" else labelled[name].map(_snr_label)
        labelled_ok = labelled[labelled["status"] == "ok"]
        intervals = _intervals(labelled_ok, list(dim), options)
        measures = stats.disparity(_without_unlabelled(intervals)) if intervals is not None else None
        index = {label if isinstance(label, tuple) else (label,): i for i, label in enumerate(intervals.slices)} if intervals is not None else {}
        for key, group in labelled.groupby(list(dim), sort=True, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            row = {"dimension": "×".join(dim), "by": dict(zip(dim, map(str, key))), **summarize(group)}
            i = index.get(key)
            if i is not None and not intervals.interval_omitted[i]:
                row.update(wer_ci_low=finite_or_none(intervals.lower[i]), wer_ci_high=finite_or_none(intervals.upper[i]))
            else:
                row.update(wer_ci_low=None, wer_ci_high=None)
            row["small"] = _is_small(row, options)
            if measures is not None and i is not None:
                for name, measure in (("gap_to_best", measures.gap_to_best), ("ratio_to_best", measures.ratio_to_best), ("gap_to_overall", measures.gap_to_overall), ("ratio_to_overall", measures.ratio_to_overall)):
                    row[name] = finite_or_none(measure.estimate[i])
                    row[f"{name}_ci_low"] = None if row["small"] else finite_or_none(measure.lower[i])
                    row[f"{name}_ci_high"] = None if row["small"] else finite_or_none(measure.upper[i])
            rows.append(row)
        if measures is not None:
            disparities.append(_dimension_disparity(dim, measures))
    _restrict_best_to_trusted(rows)
    return SliceTable(overall=overall, slices=rows, disparities=disparities)


def _intervals(ok: pd.DataFrame, by: list[str], options: SliceOptions) -> stats.SliceIntervals | None:
    if ok.empty:
        return None
    arguments = dict(by=by if len(by) > 1 else by[0], seed=options.seed, n_resamples=options.n_resamples, confidence=options.confidence, min_speakers=max(2, options.min_speakers))
    if len(by) == 1:
        try:
            # Resampling within each slice keeps its speaker count fixed, when slices nest speakers.
            return stats.slice_intervals_from_results(ok, strata=by[0], **arguments)
        except stats.StatsInputError:
            pass
    return stats.slice_intervals_from_results(ok, **arguments)


def _without_unlabelled(intervals: stats.SliceIntervals) -> stats.SliceIntervals:
    """Rows with no label are not a group of people: keep them out of worst/best rankings."""
    unlabelled = np.array([NOT_GIVEN in (label if isinstance(label, tuple) else (label,)) for label in intervals.slices])
    if not unlabelled.any():
        return intervals
    return dataclasses.replace(intervals, interval_omitted=intervals.interval_omitted | unlabelled)


def _dimension_disparity(dim: tuple[str, ...], measures: stats.Disparity) -> DimensionDisparity:
    def label(value: object) -> dict[str, str] | None:
        if value is None:
            return None
        values = value if isinstance(value, tuple) else (value,)
        return dict(zip(dim, map(str, values)))

    def interval(item: stats.Interval) -> dict[str, float | None]:
        return {"estimate": finite_or_none(item.estimate), "ci_low": finite_or_none(item.lower), "ci_high": finite_or_none(item.upper)}

    return DimensionDisparity(
        dimension=dim, worst=label(measures.worst_slice), best=label(measures.best_slice),
        worst_to_best_ratio=interval(measures.worst_to_best_ratio), worst_minus_best=interval(measures.worst_minus_best),
        slices_compared=len(measures.slices_compared),
    )


def _restrict_best_to_trusted(rows: list[dict[str, Any]]) -> None:
    """Small and unlabelled slices get no rank-derived comparisons: a 1-speaker 'best' slice would
    anchor every gap, and rows without a label are not a group to rank."""
    for row in rows:
        if row["small"] or NOT_GIVEN in row["by"].values():
            for name in ("gap_to_best", "ratio_to_best"):
                row[name] = None


def _is_small(row: dict[str, Any], options: SliceOptions) -> bool:
    return row["n_speakers"] < options.min_speakers or row["ref_words"] < options.min_words


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def finite_or_none(value: Any) -> float | None:
    """JSON has no NaN or infinity: an undefined value (0/0) or a ratio to a zero WER is reported as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _snr_label(value: float) -> str:
    return "clean" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:g} dB"
