"""The slice table: pooled WER per slice with speaker-clustered intervals, sizes, the small flag and disparities.

Every number with uncertainty comes from harness.stats; this module only cuts the rows into slices,
sums counts for display, and lays the results out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness import stats

NOT_GIVEN = "(not given)"
COUNT_COLUMNS = ("errors", "substitutions", "deletions", "insertions", "ref_words", "hits", "char_errors", "ref_chars")
UNKNOWN_METRIC = "metric {value!r} is not one of {choices}; use wer (word error rate) or cer (character error rate, for scripts written without spaces)"


@dataclass(frozen=True, kw_only=True)
class Metric:
    """Which error rate slices are ranked and tested by: its count columns and how to name it."""

    name: str
    label: str
    errors: str
    units: str
    unit_name: str


METRICS = {
    "wer": Metric(name="wer", label="WER", errors="errors", units="ref_words", unit_name="words"),
    "cer": Metric(name="cer", label="CER", errors="char_errors", units="ref_chars", unit_name="characters"),
}


@dataclass(frozen=True, kw_only=True)
class MetricOptions(stats.StatsOptions):
    """The statistics options (confidence, size minimums, resamples, seed) and which rate (`metric`)
    ranks and tests slices, validated once."""

    metric: str = "wer"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metric not in METRICS:
            raise stats.StatsInputError(UNKNOWN_METRIC.format(value=self.metric, choices=", ".join(METRICS)))

    @property
    def rate(self) -> Metric:
        return METRICS[self.metric]


@dataclass(frozen=True, kw_only=True)
class SliceOptions(MetricOptions):
    """How slices are cut (`by`, `cross`), with the metric and statistics options of `MetricOptions`."""

    by: tuple[str, ...] = ()
    cross: bool = False


@dataclass(frozen=True, kw_only=True)
class DimensionDisparity:
    """Worst and best slices of one dimension, the range between them, and whether they differ at all.

    `disparity_detected` is True only when the test of equal rates rejects at the report's alpha after
    Holm adjustment over the report's dimensions; otherwise the data cannot tell the slices apart.
    """

    dimension: tuple[str, ...]
    worst: dict[str, str] | None
    best: dict[str, str] | None
    worst_to_best_ratio: dict[str, float | None]
    worst_minus_best: dict[str, float | None]
    slices_compared: int
    equal_wer_test: dict[str, Any] | None
    disparity_detected: bool
    simultaneous_confidence: float | None


@dataclass(frozen=True, kw_only=True)
class SliceTable:
    overall: dict[str, Any]
    slices: list[dict[str, Any]]
    disparities: list[DimensionDisparity] = field(default_factory=list)
    metric: str = "wer"


def dimensions(options: SliceOptions) -> list[tuple[str, ...]]:
    """One-way slices for every --by; with --cross, also every pair."""
    dims = [(name,) for name in options.by]
    if options.cross:
        dims.extend(itertools.combinations(options.by, 2))
    return dims


@dataclass(frozen=True)
class _Columns:
    """The columns `_summaries` reads, as numpy arrays, so slices are summed by their codes instead
    of copying a million-row frame per slice."""

    ok: np.ndarray
    counts: dict[str, np.ndarray]
    cluster: np.ndarray
    latency: np.ndarray | None

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Columns:
        ok = (frame["status"] == "ok").to_numpy(dtype=bool)
        counts = {name: frame[name].fillna(0).to_numpy(dtype=np.int64) for name in COUNT_COLUMNS}
        cluster = pd.factorize(frame["cluster"])[0]
        latency = pd.to_numeric(frame["latency_s"], errors="coerce").to_numpy(dtype=np.float64) if "latency_s" in frame else None
        return cls(ok=ok, counts=counts, cluster=cluster, latency=latency)


def _summaries(columns: _Columns, codes: np.ndarray, n: int) -> list[dict[str, Any]]:
    """Counts and rates of every slice at once, `codes[i]` being row i's slice in [0, n) (all zeros:
    everything as one): pooled WER = errors / words, sums by bincount, one pass per column whatever the
    number of slices.

    `n_empty_reference` counts scored utterances whose reference normalised to no words: they add
    their insertions to the errors but no words, so a slice of such utterances has no WER (never
    silently dropped; reports warn about them).
    """
    ok = columns.ok
    ok_codes = codes[ok]

    def by_slice(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(ok_codes, weights=weights, minlength=n)

    totals = {name: by_slice(values[ok]).astype(np.int64) for name, values in columns.counts.items()}
    n_ok = by_slice().astype(np.int64)
    n_failed = np.bincount(codes[~ok], minlength=n)
    words, errors = columns.counts["ref_words"][ok], columns.counts["errors"][ok]
    n_empty = by_slice((words == 0).astype(np.float64)).astype(np.int64)
    # Distinct speakers per slice: distinct (slice, speaker) pairs, counted once (-1: no label, not a speaker).
    n_clusters = int(columns.cluster.max(initial=-1)) + 1
    labelled = columns.cluster[ok] >= 0
    pairs = np.unique(ok_codes[labelled] * n_clusters + columns.cluster[ok][labelled])
    n_speakers = np.bincount(pairs // max(n_clusters, 1), minlength=n)
    scored = words > 0
    mean_wer = stats.mean_utterance_wers(errors=errors[scored], ref_words=words[scored], slices=ok_codes[scored], n_slices=n)
    latency = _latency_by_slice(columns.latency[ok], ok_codes, n) if columns.latency is not None else [{}] * n
    out = []
    for i in range(n):
        total = {name: int(values[i]) for name, values in totals.items()}
        out.append({
            "n_utterances": int(n_ok[i]),
            "n_speakers": int(n_speakers[i]),
            "n_failed": int(n_failed[i]),
            "n_empty_reference": int(n_empty[i]),
            **{k: total[k] for k in ("ref_words", "errors", "substitutions", "deletions", "insertions", "ref_chars", "char_errors")},
            "wer": _rate(total["errors"], total["ref_words"]),
            "substitution_rate": _rate(total["substitutions"], total["ref_words"]),
            "deletion_rate": _rate(total["deletions"], total["ref_words"]),
            "insertion_rate": _rate(total["insertions"], total["ref_words"]),
            "cer": _rate(total["char_errors"], total["ref_chars"]),
            "mean_utterance_wer": finite_or_none(mean_wer[i]) if n_ok[i] else None,
            **latency[i],
        })
    return out


def _latency_by_slice(latency: np.ndarray, codes: np.ndarray, n: int) -> list[dict[str, Any]]:
    valid = ~np.isnan(latency)
    order = np.argsort(codes[valid], kind="stable")
    groups = np.split(latency[valid][order], np.cumsum(np.bincount(codes[valid], minlength=n))[:-1])
    return [latency_percentiles(group) for group in groups]


def latency_percentiles(latency: np.ndarray | None) -> dict[str, Any]:
    """p50 and p90 of per-utterance latency (the request that answered), for backends that measure it."""
    if latency is None:
        return {}
    latency = latency[~np.isnan(latency)]
    if latency.size == 0:
        return {}
    # Linear interpolation between order statistics, as pandas' quantile.
    return {"latency_p50_s": float(np.quantile(latency, 0.5)), "latency_p90_s": float(np.quantile(latency, 0.9)), "n_latency": int(latency.size)}


def interval_fields(intervals: stats.SliceIntervals, i: int | None, metric: Metric) -> dict[str, Any]:
    """The size, small flag and interval of slice i as row fields (metric-named, e.g. wer_ci_low)."""
    if i is None:
        return {"n_effective_speakers": 0.0, "small": True, f"{metric.name}_ci_low": None, f"{metric.name}_ci_high": None}
    return {
        "n_effective_speakers": round(float(intervals.n_effective_speakers[i]), 2),
        "small": bool(intervals.small[i]),
        f"{metric.name}_ci_low": finite_or_none(intervals.lower[i]),
        f"{metric.name}_ci_high": finite_or_none(intervals.upper[i]),
    }


def label_frame(frame: pd.DataFrame, dim: tuple[str, ...]) -> pd.DataFrame:
    """The rows with each dimension's value as a string label; a missing value is "(not given)"."""
    labelled = frame.copy()
    for name in dim:
        labelled[name] = labelled[name].map(_snr_label) if name == "snr_db" else labelled[name].astype("string").fillna(NOT_GIVEN)
    return labelled


def build_slice_table(frame: pd.DataFrame, options: SliceOptions) -> SliceTable:
    metric = options.rate
    dims = dimensions(options)
    # Only the columns the table reads: every slice copies and regroups them, and a wide frame of
    # a million rows (ids, transcripts, provenance) would cost seconds per dimension.
    needed = ["status", "cluster", *COUNT_COLUMNS, "latency_s", *dict.fromkeys(name for dim in dims for name in dim)]
    frame = frame[[name for name in dict.fromkeys(needed) if name in frame.columns]]
    ok = frame[frame["status"] == "ok"]
    columns = _Columns.of(frame)
    overall = _summaries(columns, np.zeros(len(frame), dtype=np.int64), 1)[0]
    if ok.empty:
        overall.update(interval_fields(None, None, metric))
    else:
        whole = stats.cells_from_frame(ok, by=None, errors=metric.errors, words=metric.units)
        overall.update(interval_fields(stats.slice_intervals(whole, options), 0, metric))
    rows: list[dict[str, Any]] = []
    found: list[tuple[tuple[str, ...], stats.Disparity]] = []
    for dim in dims:
        labelled = label_frame(frame, dim)
        labelled_ok = labelled[labelled["status"] == "ok"]
        cells = stats.cells_from_frame(labelled_ok, by=list(dim), errors=metric.errors, words=metric.units) if not labelled_ok.empty else None
        intervals = stats.slice_intervals(cells, options) if cells is not None else None
        measures = gaps = None
        if cells is not None:
            keys = [_key(label) for label in cells.slices]
            labelled_mask = np.array([NOT_GIVEN not in key for key in keys])
            # Rows with no label are not a group of people: they are never ranked or an anchor.
            measures = stats.disparity(intervals, cells, options, eligible=labelled_mask, family_size=len(dims))
            gaps = stats.gaps_to_overall(cells, options)
            found.append((dim, measures))
        index = {_key(label): i for i, label in enumerate(cells.slices)} if cells is not None else {}
        # Each row's slice as a code; the rows themselves are never copied.
        grouped = labelled.groupby(list(dim), sort=True, dropna=False)
        labels = [_key(label) for label in grouped.size().index]
        for key, summary in zip(labels, _summaries(columns, grouped.ngroup().to_numpy(dtype=np.int64), len(labels))):
            i = index.get(key)
            row = {"dimension": "×".join(dim), "by": dict(zip(dim, map(str, key))), **summary}
            row.update(interval_fields(intervals, i, metric))
            ranked = i is not None and measures is not None and key in {_key(s) for s in measures.slices_compared}
            for name, measure in (("gap_to_best", measures and measures.gap_to_best), ("ratio_to_best", measures and measures.ratio_to_best)):
                row[name] = finite_or_none(measure.estimate[i]) if ranked else None
                row[f"{name}_ci_low"] = finite_or_none(measure.lower[i]) if ranked else None
                row[f"{name}_ci_high"] = finite_or_none(measure.upper[i]) if ranked else None
            trusted = i is not None and not row["small"]
            for name, (point, low, high) in (
                ("gap_to_overall", (gaps.gap, gaps.gap_lower, gaps.gap_upper) if gaps is not None else (None,) * 3),
                ("ratio_to_overall", (gaps.ratio, gaps.ratio_lower, gaps.ratio_upper) if gaps is not None else (None,) * 3),
            ):
                row[name] = finite_or_none(point[i]) if i is not None else None
                row[f"{name}_ci_low"] = finite_or_none(low[i]) if trusted else None
                row[f"{name}_ci_high"] = finite_or_none(high[i]) if trusted else None
            rows.append(row)
    disparities = _dimension_disparities(found, options)
    return SliceTable(overall=overall, slices=rows, disparities=disparities, metric=metric.name)


def _dimension_disparities(found: list[tuple[tuple[str, ...], stats.Disparity]], options: SliceOptions) -> list[DimensionDisparity]:
    """Disparity records for every dimension, with the equal-rate tests Holm-adjusted across dimensions."""
    raw = [m.equal_wer_test.p_value if m.equal_wer_test is not None else np.nan for _, m in found]
    adjusted = stats.holm(raw) if found else np.array([])
    out = []
    for (dim, measures), p_holm in zip(found, adjusted):
        test = measures.equal_wer_test

        def label(value: object) -> dict[str, str] | None:
            return None if value is None else dict(zip(dim, map(str, _key(value))))

        def interval(item: stats.Interval) -> dict[str, float | None]:
            return {"estimate": finite_or_none(item.estimate), "ci_low": finite_or_none(item.lower), "ci_high": finite_or_none(item.upper)}

        out.append(DimensionDisparity(
            dimension=dim, worst=label(measures.worst_slice), best=label(measures.best_slice),
            worst_to_best_ratio=interval(measures.worst_to_best_ratio), worst_minus_best=interval(measures.worst_minus_best),
            slices_compared=len(measures.slices_compared),
            equal_wer_test=None if test is None else {
                "method": test.method, "statistic": finite_or_none(test.statistic), "p_value": test.p_value,
                "p_value_holm": finite_or_none(p_holm), "n_resamples": test.n_resamples, "monte_carlo_se": test.monte_carlo_se,
                "n_slices": test.n_slices, "n_speakers": test.n_speakers,
            },
            disparity_detected=bool(test is not None and np.isfinite(p_holm) and p_holm < options.alpha),
            simultaneous_confidence=measures.simultaneous_confidence if test is not None else None,
        ))
    return out


def _key(label: object) -> tuple:
    return label if isinstance(label, tuple) else (label,)


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
