"""Speaker-clustered statistics for WER: pooled ratios, bootstrap intervals, disparity, tests, p-value adjustment.

A slice's WER is a ratio estimator, sum(errors) / sum(reference words). Utterances of one speaker are not
independent, so every interval and test here resamples or permutes whole speakers (clusters), never rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy import stats as scipy_stats

from harness.errors import HarnessError

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MIN_REF_WORDS",
    "DEFAULT_MIN_SPEAKERS",
    "DEFAULT_N_RESAMPLES",
    "DifferenceTest",
    "Disparity",
    "Interval",
    "RatioCI",
    "SliceIntervals",
    "SliceMeasure",
    "StatsInputError",
    "benjamini_hochberg",
    "cluster_labels",
    "cluster_robust_ratio_ci",
    "compare_slices",
    "differential_degradation",
    "disparity",
    "holm",
    "mean_utterance_wer",
    "paired_difference",
    "pooled_wer",
    "slice_intervals",
    "slice_intervals_from_results",
    "suppression_mask",
]

DEFAULT_N_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
# Below this many speakers a percentile bootstrap is falsely narrow (one speaker: zero width; two
# speakers on TIMIT gave [0.0444, 0.0449] where an utterance-level interval was [0.017, 0.077]).
DEFAULT_MIN_SPEAKERS = 10
DEFAULT_MIN_REF_WORDS = 100

# How many (replicate x cluster) resample counts are held at once: 1M float64 = 8 MB per chunk
# (measured faster than 4M on 1M rows / 10k speakers: the chunk stays in cache-friendly sizes).
_CELLS_PER_CHUNK = 1_000_000
# Cluster x column matrices larger than this are kept sparse, as are ones less than half filled.
_DENSE_CELLS_LIMIT = 8_000_000
# Tolerance for "at least as extreme" in permutation p-values, so exact ties (delta 0) count as ties.
_TIE_TOLERANCE = 1e-12

# Error texts are constants so tests can assert them exactly.
LENGTH_MISMATCH = "{name} has {got} values but {reference} has {expected}; pass one value per utterance row"
NOT_ONE_DIMENSIONAL = "{name} must be one-dimensional (one value per utterance row); got shape {shape}"
NOT_FINITE = "{name} holds {count} NaN or infinite value(s) (first at row {row}); drop or fix those rows"
NEGATIVE_COUNTS = "{name} holds {count} negative value(s) (first at row {row}: {value}); counts cannot be negative"
BAD_CONFIDENCE = "confidence must be strictly between 0 and 1 (e.g. 0.95); got {value}"
BAD_N_RESAMPLES = "n_resamples must be a positive integer (e.g. 1000); got {value}"
BAD_MIN_SPEAKERS = (
    "min_speakers must be at least 2 (a one-speaker bootstrap interval has zero width); got {value}"
)
MISSING_SLICE = "slices holds {count} missing label(s) (first at row {row}); label every row or drop it"
UNKNOWN_SLICE = "slice {label!r} not found; slices present: {present}"
SAME_SLICE = "slice_a and slice_b are both {label!r}; compare two different slices"
SHARED_SPEAKERS = (
    "{count} speaker(s) appear in both slice {a!r} and slice {b!r} (e.g. {example!r}); the slices are not "
    "independent. Use paired_difference for the same speakers under two runs or conditions"
)
STRATUM_SPLITS_CLUSTER = (
    "strata must be constant within a speaker, but speaker {cluster!r} has rows in strata {first!r} and "
    "{second!r}; stratify by a speaker-level attribute (e.g. accent), not a row-level one"
)
MISSING_COLUMN = "results has no column {column!r}; columns present: {present}"


class StatsInputError(HarnessError, ValueError):
    """Arrays passed to a statistics function are unusable (wrong length, negative counts, bad option)."""


@dataclass(frozen=True, kw_only=True)
class Interval:
    """A point estimate with a two-sided interval; lower and upper are NaN when the interval is omitted."""

    estimate: float
    lower: float
    upper: float
    confidence: float
    method: str

    @property
    def omitted(self) -> bool:
        """True when no interval is given (too few speakers, or nothing to compare)."""
        return bool(np.isnan(self.lower) or np.isnan(self.upper))


@dataclass(frozen=True, kw_only=True)
class RatioCI:
    """Cluster-robust (linearisation) t interval for a ratio of sums; NaN bounds below two clusters."""

    estimate: float
    lower: float
    upper: float
    standard_error: float
    degrees_of_freedom: int
    n_clusters: int
    confidence: float


@dataclass(frozen=True, kw_only=True, eq=False)
class SliceIntervals:
    """Pooled WER of each slice with a speaker-clustered percentile bootstrap interval.

    Arrays are aligned with `slices` (sorted labels). `lower`/`upper` are NaN and `interval_omitted` is
    True for a slice with fewer than `min_speakers` speakers. `draws` (n_resamples x n_slices) holds the
    joint bootstrap WERs: replicate r resampled the same speakers for every slice, which `disparity`
    relies on. A draw is NaN when the replicate held no reference word of that slice (no speaker of it
    is possible only without strata). A WER over zero reference words is NaN, never inf. `overall_draws` are the replicates' WER over all rows passed in.
    """

    slices: tuple
    wer: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    errors: np.ndarray
    ref_words: np.ndarray
    n_speakers: np.ndarray
    n_utterances: np.ndarray
    interval_omitted: np.ndarray
    overall: Interval
    overall_n_speakers: int
    confidence: float
    n_resamples: int
    min_speakers: int
    seed: int | None
    stratified: bool
    draws: np.ndarray
    overall_draws: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per slice: slice, wer, lower, upper, errors, ref_words, n_speakers, n_utterances, interval_omitted."""
        return pd.DataFrame(
            {
                "slice": list(self.slices),
                "wer": self.wer,
                "lower": self.lower,
                "upper": self.upper,
                "errors": self.errors,
                "ref_words": self.ref_words,
                "n_speakers": self.n_speakers,
                "n_utterances": self.n_utterances,
                "interval_omitted": self.interval_omitted,
            }
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class SliceMeasure:
    """A per-slice disparity measure (e.g. gap to overall) with percentile intervals; NaN where omitted."""

    slices: tuple
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per slice: slice, estimate, lower, upper."""
        return pd.DataFrame({"slice": list(self.slices), "estimate": self.estimate, "lower": self.lower, "upper": self.upper})


@dataclass(frozen=True, kw_only=True, eq=False)
class Disparity:
    """Disparity between slices, every interval from the joint bootstrap draws of `SliceIntervals`.

    Gaps are absolute WER differences (0.02 = 2 percentage points); ratios are WER quotients.
    """

    slices_compared: tuple
    worst_slice: object
    best_slice: object
    worst_to_best_ratio: Interval
    worst_minus_best: Interval
    gap_to_overall: SliceMeasure
    ratio_to_overall: SliceMeasure
    gap_to_best: SliceMeasure
    ratio_to_best: SliceMeasure


@dataclass(frozen=True, kw_only=True)
class DifferenceTest:
    """A WER difference with a speaker-clustered interval and a p-value; `definition` says which way round."""

    value_a: float
    value_b: float
    difference: float
    definition: str
    lower: float
    upper: float
    p_value: float
    confidence: float
    n_resamples: int
    n_speakers_a: int
    n_speakers_b: int
    interval_method: str
    p_value_method: str

    @property
    def interval_omitted(self) -> bool:
        return bool(np.isnan(self.lower) or np.isnan(self.upper))


# --------------------------------------------------------------------------------------------------
# Point estimates


def pooled_wer(*, errors: Sequence[float] | np.ndarray, ref_words: Sequence[float] | np.ndarray) -> float:
    """sum(errors) / sum(ref_words), the corpus-level WER. NaN when there are no reference words.

    Utterances with an empty reference still add their insertions to the numerator.
    """
    errors_arr, words_arr = _counts(errors=errors, ref_words=ref_words)
    total_words = float(words_arr.sum())
    return float(errors_arr.sum()) / total_words if total_words > 0 else float("nan")


def mean_utterance_wer(*, errors: Sequence[float] | np.ndarray, ref_words: Sequence[float] | np.ndarray) -> float:
    """Mean of per-utterance WER (errors_i / ref_words_i), as in Koenecke et al., PNAS 2020.

    Not the WER of the slice: short utterances weigh as much as long ones. Utterances with zero
    reference words are excluded from the mean (their WER is 0/0 or k/0, undefined); NaN when every
    utterance is excluded or there are none.
    """
    errors_arr, words_arr = _counts(errors=errors, ref_words=ref_words)
    keep = words_arr > 0
    if not keep.any():
        return float("nan")
    return float(np.mean(errors_arr[keep] / words_arr[keep]))


def suppression_mask(
    *,
    n_speakers: Sequence[int] | np.ndarray,
    ref_words: Sequence[float] | np.ndarray,
    min_speakers: int = DEFAULT_MIN_SPEAKERS,
    min_ref_words: int = DEFAULT_MIN_REF_WORDS,
) -> np.ndarray:
    """True for each cell that should not be reported: fewer than `min_speakers` speakers or `min_ref_words` words.

    Both thresholds are inclusive minimums: a cell with exactly 10 speakers and 100 words is kept.
    """
    speakers = np.asarray(n_speakers, dtype=np.float64)
    words = np.asarray(ref_words, dtype=np.float64)
    if speakers.shape != words.shape:
        raise StatsInputError(
            LENGTH_MISMATCH.format(name="ref_words", got=words.size, reference="n_speakers", expected=speakers.size)
        )
    return (speakers < min_speakers) | (words < min_ref_words) | ~np.isfinite(words)


def cluster_labels(*, speakers: Sequence | np.ndarray | pd.Series, utterance_ids: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    """Cluster label per row: the speaker, or "utterance:<id>" where the speaker is missing.

    An utterance without a speaker is its own cluster. Labelling it by id (not by row position) keeps
    bootstrap intervals independent of row order.
    """
    speaker_series = pd.Series(np.asarray(speakers, dtype=object))
    ids = pd.Series(np.asarray(utterance_ids, dtype=object))
    if len(ids) != len(speaker_series):
        raise StatsInputError(
            LENGTH_MISMATCH.format(name="utterance_ids", got=len(ids), reference="speakers", expected=len(speaker_series))
        )
    missing = speaker_series.isna().to_numpy()
    labels = speaker_series.astype(object).to_numpy(copy=True)
    labels[missing] = ("utterance:" + ids[missing].astype(str)).to_numpy()
    return labels


def cluster_robust_ratio_ci(
    *,
    cluster_errors: Sequence[float] | np.ndarray,
    cluster_words: Sequence[float] | np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
) -> RatioCI:
    """Delta-method (linearisation) cluster-robust t interval for R = sum(errors) / sum(words).

    Inputs are per-cluster totals. With n clusters and residuals u_c = e_c - R w_c,
    Var(R) = n / (n - 1) * sum(u_c^2) / (sum w)^2 and the interval is R +/- t_{n-1} * SE.
    Edge cases: fewer than two clusters, or zero total words, give NaN bounds (and NaN estimate when
    there are no words). A cross-check for the bootstrap; it is symmetric, so near WER 0 its lower
    bound can go negative (it is not clipped).
    """
    _check_confidence(confidence)
    errors_arr, words_arr = _counts(errors=cluster_errors, ref_words=cluster_words, names=("cluster_errors", "cluster_words"))
    n_clusters = int(errors_arr.size)
    total_words = float(words_arr.sum())
    estimate = float(errors_arr.sum()) / total_words if total_words > 0 else float("nan")
    if n_clusters < 2 or total_words <= 0:
        return RatioCI(
            estimate=estimate,
            lower=float("nan"),
            upper=float("nan"),
            standard_error=float("nan"),
            degrees_of_freedom=max(n_clusters - 1, 0),
            n_clusters=n_clusters,
            confidence=confidence,
        )
    residuals = errors_arr - estimate * words_arr
    variance = n_clusters / (n_clusters - 1) * float(np.sum(residuals**2)) / total_words**2
    standard_error = float(np.sqrt(variance))
    t_quantile = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=n_clusters - 1))
    return RatioCI(
        estimate=estimate,
        lower=estimate - t_quantile * standard_error,
        upper=estimate + t_quantile * standard_error,
        standard_error=standard_error,
        degrees_of_freedom=n_clusters - 1,
        n_clusters=n_clusters,
        confidence=confidence,
    )


# --------------------------------------------------------------------------------------------------
# Bootstrap intervals for many slices


def slice_intervals(
    *,
    errors: Sequence[float] | np.ndarray,
    ref_words: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None,
    slices: Sequence | np.ndarray,
    seed: int | np.random.Generator,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    min_speakers: int = DEFAULT_MIN_SPEAKERS,
    strata: Sequence | np.ndarray | None = None,
) -> SliceIntervals:
    """Pooled WER per slice with a joint speaker-clustered percentile bootstrap interval.

    Rows are utterances (or utterance x condition results); `clusters` names each row's speaker.
    A missing cluster label (None/NaN), or `clusters=None`, makes that row its own cluster, labelled by
    row position; use `cluster_labels` to label by utterance id so intervals do not depend on row order.

    Each replicate draws every cluster's count from a multinomial over all clusters (uniform, n draws;
    sampled as n uniform picks and counted) and computes every slice's WER as (W @ errors) / (W @ words),
    so slices that share speakers (one speaker under several noise conditions) are resampled together.
    Without `strata`, a slice's speaker count varies between replicates, which widens small slices'
    intervals slightly; a replicate with none of a slice's speakers gives a NaN draw and is left out of
    that slice's percentiles (probability about exp(-n_speakers) per replicate). With `strata` (a
    speaker-level label per row, e.g. accent) clusters are resampled within strata, so each stratum keeps
    its speaker count.

    Slices with fewer than `min_speakers` speakers get NaN bounds and `interval_omitted=True`: a
    percentile bootstrap over so few speakers is falsely narrow (zero width for one speaker), and a
    narrow wrong interval is worse than none. A slice with zero reference words has WER NaN.

    Cost: O(n_rows) to aggregate, then O(n_resamples x n_clusters) to draw and
    O(n_resamples x n_clusters x n_slices) in one matrix product per chunk of replicates.
    """
    errors_arr, words_arr = _counts(errors=errors, ref_words=ref_words)
    slice_codes, slice_labels = _factorize_slices(slices, errors_arr.size)
    return _checked_slice_intervals(
        errors=errors_arr, ref_words=words_arr, clusters=clusters, slice_codes=slice_codes, slice_labels=slice_labels,
        strata=strata, seed=seed, n_resamples=n_resamples, confidence=confidence, min_speakers=min_speakers,
    )


def slice_intervals_from_results(
    results: pd.DataFrame,
    *,
    by: str | Sequence[str],
    seed: int | np.random.Generator,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    min_speakers: int = DEFAULT_MIN_SPEAKERS,
    strata: str | None = None,
) -> SliceIntervals:
    """`slice_intervals` over a results frame, one slice per distinct value (or tuple of values) of `by`.

    Rows whose status is not "ok" are dropped (a failed utterance has no counts). The cluster is the
    `speaker` column, or the utterance id where the speaker is missing or the column is absent. Missing
    tag values (and snr_db NaN for clean audio) form their own slice. `strata` names a speaker-level
    column to resample within.
    """
    columns = [by] if isinstance(by, str) else list(by)
    needed = [*columns, "utterance_id", "errors", "ref_words"] + ([strata] if strata else [])
    for column in needed:
        if column not in results.columns:
            raise StatsInputError(MISSING_COLUMN.format(column=column, present=sorted(map(str, results.columns))))
    frame = results[results["status"] == "ok"] if "status" in results.columns else results
    speakers = frame["speaker"] if "speaker" in frame.columns else pd.Series([None] * len(frame), index=frame.index)
    clusters = cluster_labels(speakers=speakers, utterance_ids=frame["utterance_id"])
    grouped = frame.groupby(columns, sort=True, dropna=False)
    slice_codes = grouped.ngroup().to_numpy(dtype=np.int64)
    labels = tuple(grouped.size().index)  # tuples when grouping by several columns
    errors_arr, words_arr = _counts(errors=frame["errors"].to_numpy(), ref_words=frame["ref_words"].to_numpy())
    return _checked_slice_intervals(
        errors=errors_arr, ref_words=words_arr, clusters=clusters, slice_codes=slice_codes, slice_labels=labels,
        strata=None if strata is None else frame[strata].to_numpy(), seed=seed, n_resamples=n_resamples,
        confidence=confidence, min_speakers=min_speakers,
    )


def _checked_slice_intervals(
    *,
    errors: np.ndarray,
    ref_words: np.ndarray,
    clusters: Sequence | np.ndarray | None,
    slice_codes: np.ndarray,
    slice_labels: tuple,
    strata: Sequence | np.ndarray | None,
    seed: int | np.random.Generator,
    n_resamples: int,
    confidence: float,
    min_speakers: int,
) -> SliceIntervals:
    """Shared tail of both public entry points: check options, code clusters and strata, draw."""
    _check_confidence(confidence)
    _check_n_resamples(n_resamples)
    _check_min_speakers(min_speakers)
    n_rows = errors.size
    cluster_codes, cluster_names = _factorize_clusters(clusters, n_rows)
    strata_codes = None if strata is None else _cluster_strata(strata, cluster_codes, cluster_names, n_rows)
    rng, seed_record = _as_rng(seed)
    return _slice_intervals_from_codes(
        errors=errors,
        ref_words=ref_words,
        cluster_codes=cluster_codes,
        n_clusters=len(cluster_names),
        slice_codes=slice_codes,
        slice_labels=slice_labels,
        strata_codes=strata_codes,
        rng=rng,
        seed_record=seed_record,
        n_resamples=n_resamples,
        confidence=confidence,
        min_speakers=min_speakers,
    )


def _slice_intervals_from_codes(
    *,
    errors: np.ndarray,
    ref_words: np.ndarray,
    cluster_codes: np.ndarray,
    n_clusters: int,
    slice_codes: np.ndarray,
    slice_labels: tuple,
    strata_codes: np.ndarray | None,
    rng: np.random.Generator,
    seed_record: int | None,
    n_resamples: int,
    confidence: float,
    min_speakers: int,
) -> SliceIntervals:
    n_slices = len(slice_labels)
    # One cell per (cluster, slice) pair that has rows; aggregate rows to cell totals first.
    cell_codes = cluster_codes * n_slices + slice_codes
    cells, cell_of_row = np.unique(cell_codes, return_inverse=True)
    cell_errors = np.bincount(cell_of_row, weights=errors, minlength=cells.size)
    cell_words = np.bincount(cell_of_row, weights=ref_words, minlength=cells.size)
    cell_cluster = cells // n_slices
    cell_slice = cells % n_slices

    slice_errors = np.bincount(cell_slice, weights=cell_errors, minlength=n_slices)
    slice_words = np.bincount(cell_slice, weights=cell_words, minlength=n_slices)
    n_speakers = np.bincount(cell_slice, minlength=n_slices)
    n_utterances = np.bincount(slice_codes, minlength=n_slices)
    wer = _rate(slice_errors, slice_words)

    # Columns: errors of each slice, words of each slice, then overall errors and words.
    n_columns = 2 * n_slices + 2
    rows = np.concatenate([cell_cluster, cell_cluster, cell_cluster, cell_cluster])
    cols = np.concatenate([cell_slice, cell_slice + n_slices, np.full(cells.size, 2 * n_slices), np.full(cells.size, 2 * n_slices + 1)])
    vals = np.concatenate([cell_errors, cell_words, cell_errors, cell_words])
    values = sparse.csr_matrix((vals, (rows, cols)), shape=(n_clusters, n_columns))
    sums = _resampled_sums(values, n_resamples=n_resamples, rng=rng, strata_codes=strata_codes)
    draws = _rate(sums[:, :n_slices], sums[:, n_slices : 2 * n_slices])
    overall_draws = _rate(sums[:, 2 * n_slices], sums[:, 2 * n_slices + 1])

    lower, upper = _percentile_bounds(draws, confidence)
    omitted = n_speakers < min_speakers
    lower[omitted] = np.nan
    upper[omitted] = np.nan

    total_words = float(ref_words.sum())
    overall_wer = float(errors.sum()) / total_words if total_words > 0 else float("nan")
    overall_lower, overall_upper = _percentile_bounds(overall_draws[:, None], confidence)
    if n_clusters < min_speakers:
        overall_lower[:], overall_upper[:] = np.nan, np.nan
    overall = Interval(
        estimate=overall_wer,
        lower=float(overall_lower[0]),
        upper=float(overall_upper[0]),
        confidence=confidence,
        method="speaker_cluster_bootstrap_percentile",
    )
    return SliceIntervals(
        slices=tuple(slice_labels),
        wer=_frozen(wer),
        lower=_frozen(lower),
        upper=_frozen(upper),
        errors=_frozen(slice_errors),
        ref_words=_frozen(slice_words),
        n_speakers=_frozen(n_speakers),
        n_utterances=_frozen(n_utterances),
        interval_omitted=_frozen(omitted),
        overall=overall,
        overall_n_speakers=int(n_clusters),
        confidence=confidence,
        n_resamples=n_resamples,
        min_speakers=min_speakers,
        seed=seed_record,
        stratified=strata_codes is not None,
        draws=_frozen(draws),
        overall_draws=_frozen(overall_draws),
    )


# --------------------------------------------------------------------------------------------------
# Disparity


def disparity(intervals: SliceIntervals) -> Disparity:
    """Worst/best ratio, worst-best gap, and each slice's gap and ratio to overall and to the best slice.

    Every interval is a percentile interval of the statistic recomputed on each joint bootstrap
    replicate (the same resampled speakers for all slices), so slices sharing speakers are handled.
    Only slices with an interval (at least `min_speakers` speakers) and a defined WER take part in
    worst/best; others get point estimates with NaN bounds. "Best" is recomputed per replicate, so the
    best slice's gap-to-best interval is [0, x]: x > 0 says another slice may be as good. The plug-in
    max/min are biased away from equality when slices are close; read the intervals, not the points.
    A ratio with a zero-WER denominator is inf (0/0 is NaN). With fewer than two eligible slices the
    worst/best measures are NaN and the slice names None.
    """
    confidence = intervals.confidence
    eligible = ~intervals.interval_omitted & np.isfinite(intervals.wer)
    labels = intervals.slices
    wer = np.asarray(intervals.wer, dtype=np.float64)
    draws = np.asarray(intervals.draws, dtype=np.float64)
    overall = intervals.overall.estimate
    overall_draws = np.asarray(intervals.overall_draws, dtype=np.float64)[:, None]
    method = "joint_speaker_cluster_bootstrap_percentile"

    def measure(point: np.ndarray, replicate: np.ndarray) -> SliceMeasure:
        lower, upper = _percentile_bounds(replicate, confidence)
        lower[~eligible], upper[~eligible] = np.nan, np.nan
        return SliceMeasure(slices=labels, estimate=_frozen(point), lower=_frozen(lower), upper=_frozen(upper))

    gap_to_overall = measure(wer - overall, draws - overall_draws)
    ratio_to_overall = measure(_safe_ratio(wer, np.full_like(wer, overall)), _safe_ratio(draws, np.broadcast_to(overall_draws, draws.shape)))

    nan_interval = Interval(estimate=float("nan"), lower=float("nan"), upper=float("nan"), confidence=confidence, method=method)
    if eligible.sum() < 1:
        nan_measure = SliceMeasure(slices=labels, estimate=_frozen(np.full_like(wer, np.nan)), lower=_frozen(np.full_like(wer, np.nan)), upper=_frozen(np.full_like(wer, np.nan)))
        return Disparity(
            slices_compared=(),
            worst_slice=None,
            best_slice=None,
            worst_to_best_ratio=nan_interval,
            worst_minus_best=nan_interval,
            gap_to_overall=gap_to_overall,
            ratio_to_overall=ratio_to_overall,
            gap_to_best=nan_measure,
            ratio_to_best=nan_measure,
        )

    eligible_index = np.flatnonzero(eligible)
    eligible_wer = wer[eligible_index]
    eligible_draws = draws[:, eligible_index]
    best_point = float(eligible_wer.min())
    worst_point = float(eligible_wer.max())
    with np.errstate(all="ignore"):
        # A replicate where every eligible slice drew no speaker has no best; keep it NaN quietly.
        all_nan = np.all(np.isnan(eligible_draws), axis=1)
        filled = np.where(np.isnan(eligible_draws), np.inf, eligible_draws)
        best_draws = np.where(all_nan, np.nan, filled.min(axis=1))
        filled = np.where(np.isnan(eligible_draws), -np.inf, eligible_draws)
        worst_draws = np.where(all_nan, np.nan, filled.max(axis=1))

    gap_to_best = measure(wer - best_point, draws - best_draws[:, None])
    ratio_to_best = measure(_safe_ratio(wer, np.full_like(wer, best_point)), _safe_ratio(draws, np.broadcast_to(best_draws[:, None], draws.shape)))

    if eligible_index.size < 2:
        worst_to_best_ratio = worst_minus_best = nan_interval
        worst_slice = best_slice = None
    else:
        ratio_lower, ratio_upper = _percentile_bounds(_safe_ratio(worst_draws, best_draws)[:, None], confidence)
        gap_lower, gap_upper = _percentile_bounds((worst_draws - best_draws)[:, None], confidence)
        worst_to_best_ratio = Interval(
            estimate=float(_safe_ratio(np.array([worst_point]), np.array([best_point]))[0]),
            lower=float(ratio_lower[0]),
            upper=float(ratio_upper[0]),
            confidence=confidence,
            method=method,
        )
        worst_minus_best = Interval(
            estimate=worst_point - best_point, lower=float(gap_lower[0]), upper=float(gap_upper[0]), confidence=confidence, method=method
        )
        worst_slice = labels[eligible_index[int(np.argmax(eligible_wer))]]
        best_slice = labels[eligible_index[int(np.argmin(eligible_wer))]]
    return Disparity(
        slices_compared=tuple(labels[i] for i in eligible_index),
        worst_slice=worst_slice,
        best_slice=best_slice,
        worst_to_best_ratio=worst_to_best_ratio,
        worst_minus_best=worst_minus_best,
        gap_to_overall=gap_to_overall,
        ratio_to_overall=ratio_to_overall,
        gap_to_best=gap_to_best,
        ratio_to_best=ratio_to_best,
    )


# --------------------------------------------------------------------------------------------------
# Tests between slices and between runs


def compare_slices(
    *,
    errors: Sequence[float] | np.ndarray,
    ref_words: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None,
    slices: Sequence | np.ndarray,
    slice_a: object,
    slice_b: object,
    seed: int | np.random.Generator,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    min_speakers: int = DEFAULT_MIN_SPEAKERS,
) -> DifferenceTest:
    """WER(slice_a) - WER(slice_b) for two slices of one run with disjoint speakers (e.g. two accents).

    Interval: percentile bootstrap resampling speakers within each slice independently; omitted (NaN)
    when either slice has fewer than `min_speakers` speakers. p-value: two-sided permutation test that
    reassigns whole speakers to the two slices (sizes kept), p = (1 + #|T*| >= |T|) / (1 + n_resamples).
    It is valid at any size but tests exchangeability of speakers between slices (same distribution),
    not only equal WER. Rows of other slices are ignored. Raises if a speaker is in both slices.
    """
    errors_arr, words_arr = _counts(errors=errors, ref_words=ref_words)
    return _two_slice_test(
        numerators=errors_arr,
        ref_words=words_arr,
        clusters=clusters,
        slices=slices,
        slice_a=slice_a,
        slice_b=slice_b,
        seed=seed,
        n_resamples=n_resamples,
        confidence=confidence,
        min_speakers=min_speakers,
        definition="WER(slice_a) - WER(slice_b)",
    )


def differential_degradation(
    *,
    errors_clean: Sequence[float] | np.ndarray,
    errors_condition: Sequence[float] | np.ndarray,
    ref_words: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None,
    slices: Sequence | np.ndarray,
    slice_a: object,
    slice_b: object,
    seed: int | np.random.Generator,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    min_speakers: int = DEFAULT_MIN_SPEAKERS,
) -> DifferenceTest:
    """Does slice A lose more than slice B under a condition? Absolute WER points, A minus B.

    Rows are utterances scored both clean and under the condition (drop one that failed in either).
    value_a = WER_condition(A) - WER_clean(A) = sum(errors_condition - errors_clean) / sum(words) over A,
    likewise value_b; difference = value_a - value_b. Speakers must be nested in slices.
    Interval: percentile bootstrap resampling speakers within each slice; omitted below `min_speakers`.
    p-value: two-sided permutation test that shuffles slice labels across speakers (each speaker moves
    with all its utterances, both clean and degraded), p = (1 + #|T*| >= |T|) / (1 + n_resamples).
    """
    clean_arr, words_arr = _counts(errors=errors_clean, ref_words=ref_words, names=("errors_clean", "ref_words"))
    condition_arr, _ = _counts(errors=errors_condition, ref_words=ref_words, names=("errors_condition", "ref_words"))
    return _two_slice_test(
        numerators=condition_arr - clean_arr,
        ref_words=words_arr,
        clusters=clusters,
        slices=slices,
        slice_a=slice_a,
        slice_b=slice_b,
        seed=seed,
        n_resamples=n_resamples,
        confidence=confidence,
        min_speakers=min_speakers,
        definition="(WER_condition - WER_clean)(slice_a) - (WER_condition - WER_clean)(slice_b)",
    )


def paired_difference(
    *,
    errors_a: Sequence[float] | np.ndarray,
    errors_b: Sequence[float] | np.ndarray,
    ref_words: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None,
    seed: int | np.random.Generator,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    min_speakers: int = DEFAULT_MIN_SPEAKERS,
) -> DifferenceTest:
    """Delta WER = (sum errors_b - sum errors_a) / sum words for two runs on the same utterances.

    Rows pair one utterance across runs A and B (two models, or two conditions); drop an utterance that
    failed in either. Interval: speaker-clustered percentile bootstrap of the delta; omitted (NaN) below
    `min_speakers` speakers. p-value: two-sided sign-flip permutation over speakers (under H0 the runs
    are exchangeable within each speaker): exact over all 2^n flips when 2^n <= n_resamples, else
    Monte Carlo with p = (1 + #|T*| >= |T|) / (1 + n_resamples). Identical runs give delta 0, interval
    [0, 0] and p = 1.
    """
    _check_confidence(confidence)
    _check_n_resamples(n_resamples)
    _check_min_speakers(min_speakers)
    errors_a_arr, words_arr = _counts(errors=errors_a, ref_words=ref_words, names=("errors_a", "ref_words"))
    errors_b_arr, _ = _counts(errors=errors_b, ref_words=ref_words, names=("errors_b", "ref_words"))
    cluster_codes, cluster_names = _factorize_clusters(clusters, words_arr.size)
    n_clusters = len(cluster_names)
    rng, _ = _as_rng(seed)
    cluster_errors_a = np.bincount(cluster_codes, weights=errors_a_arr, minlength=n_clusters)
    cluster_errors_b = np.bincount(cluster_codes, weights=errors_b_arr, minlength=n_clusters)
    cluster_words = np.bincount(cluster_codes, weights=words_arr, minlength=n_clusters)
    cluster_delta = cluster_errors_b - cluster_errors_a
    total_words = float(cluster_words.sum())
    value_a = _scalar_ratio(cluster_errors_a.sum(), total_words)
    value_b = _scalar_ratio(cluster_errors_b.sum(), total_words)
    observed = _scalar_ratio(cluster_delta.sum(), total_words)

    sums = _resampled_sums(np.column_stack([cluster_delta, cluster_words]), n_resamples=n_resamples, rng=rng, strata_codes=None)
    lower, upper = _percentile_bounds(_rate(sums[:, 0], sums[:, 1])[:, None], confidence)
    if n_clusters < min_speakers:
        lower[:], upper[:] = np.nan, np.nan

    if total_words <= 0:
        p_value, p_method = float("nan"), "none (no reference words)"
    elif 2**n_clusters <= n_resamples:
        signs = ((np.arange(2**n_clusters)[:, None] >> np.arange(n_clusters)) & 1) * 2.0 - 1.0
        flipped = np.abs(signs @ cluster_delta) / total_words
        p_value = float(np.mean(flipped >= abs(observed) - _TIE_TOLERANCE))
        p_method = "exact_speaker_sign_flip"
    else:
        extreme = 0
        for count in _chunk_sizes(n_resamples, n_clusters):
            signs = rng.integers(0, 2, size=(count, n_clusters)) * 2.0 - 1.0
            flipped = np.abs(signs @ cluster_delta) / total_words
            extreme += int(np.count_nonzero(flipped >= abs(observed) - _TIE_TOLERANCE))
        p_value = (1 + extreme) / (1 + n_resamples)
        p_method = "monte_carlo_speaker_sign_flip"
    return DifferenceTest(
        value_a=value_a,
        value_b=value_b,
        difference=observed,
        definition="WER(run_b) - WER(run_a)",
        lower=float(lower[0]),
        upper=float(upper[0]),
        p_value=float(p_value),
        confidence=confidence,
        n_resamples=n_resamples,
        n_speakers_a=n_clusters,
        n_speakers_b=n_clusters,
        interval_method="speaker_cluster_bootstrap_percentile",
        p_value_method=p_method,
    )


def _two_slice_test(
    *,
    numerators: np.ndarray,
    ref_words: np.ndarray,
    clusters: Sequence | np.ndarray | None,
    slices: Sequence | np.ndarray,
    slice_a: object,
    slice_b: object,
    seed: int | np.random.Generator,
    n_resamples: int,
    confidence: float,
    min_speakers: int,
    definition: str,
) -> DifferenceTest:
    _check_confidence(confidence)
    _check_n_resamples(n_resamples)
    _check_min_speakers(min_speakers)
    n_rows = ref_words.size
    slice_codes, slice_labels = _factorize_slices(slices, n_rows)
    code_a, code_b = _slice_code(slice_labels, slice_a), _slice_code(slice_labels, slice_b)
    if code_a == code_b:
        raise StatsInputError(SAME_SLICE.format(label=slice_a))
    cluster_codes, cluster_names = _factorize_clusters(clusters, n_rows)
    rng, _ = _as_rng(seed)

    in_a, in_b = slice_codes == code_a, slice_codes == code_b
    n_all = len(cluster_names)
    num_a = np.bincount(cluster_codes[in_a], weights=numerators[in_a], minlength=n_all)
    den_a = np.bincount(cluster_codes[in_a], weights=ref_words[in_a], minlength=n_all)
    num_b = np.bincount(cluster_codes[in_b], weights=numerators[in_b], minlength=n_all)
    den_b = np.bincount(cluster_codes[in_b], weights=ref_words[in_b], minlength=n_all)
    has_a = np.bincount(cluster_codes[in_a], minlength=n_all) > 0
    has_b = np.bincount(cluster_codes[in_b], minlength=n_all) > 0
    shared = np.flatnonzero(has_a & has_b)
    if shared.size:
        raise StatsInputError(SHARED_SPEAKERS.format(count=shared.size, a=slice_a, b=slice_b, example=cluster_names[shared[0]]))
    # Keep only the clusters of the two slices, A's first.
    index_a, index_b = np.flatnonzero(has_a), np.flatnonzero(has_b)
    n_a, n_b = index_a.size, index_b.size
    cluster_num = np.concatenate([num_a[index_a], num_b[index_b]])
    cluster_den = np.concatenate([den_a[index_a], den_b[index_b]])
    is_a = np.concatenate([np.ones(n_a), np.zeros(n_b)])

    value_a = _scalar_ratio(cluster_num[:n_a].sum(), cluster_den[:n_a].sum())
    value_b = _scalar_ratio(cluster_num[n_a:].sum(), cluster_den[n_a:].sum())
    observed = value_a - value_b

    values = np.column_stack([cluster_num * is_a, cluster_den * is_a, cluster_num * (1 - is_a), cluster_den * (1 - is_a)])
    strata_codes = np.concatenate([np.zeros(n_a, dtype=np.int64), np.ones(n_b, dtype=np.int64)])
    sums = _resampled_sums(values, n_resamples=n_resamples, rng=rng, strata_codes=strata_codes)
    boot = _rate(sums[:, 0], sums[:, 1]) - _rate(sums[:, 2], sums[:, 3])
    lower, upper = _percentile_bounds(boot[:, None], confidence)
    if min(n_a, n_b) < min_speakers:
        lower[:], upper[:] = np.nan, np.nan

    if not np.isfinite(observed):
        p_value = float("nan")
    else:
        total_num, total_den = cluster_num.sum(), cluster_den.sum()
        n_clusters = n_a + n_b
        extreme = 0
        for count in _chunk_sizes(n_resamples, n_clusters):
            # Random permutation per replicate: the n_a smallest of n uniform keys go to slice A.
            keys = rng.random((count, n_clusters))
            threshold = np.partition(keys, n_a - 1, axis=1)[:, n_a - 1 : n_a]
            member = (keys <= threshold).astype(np.float64)
            perm_num_a, perm_den_a = member @ cluster_num, member @ cluster_den
            with np.errstate(divide="ignore", invalid="ignore"):
                statistic = perm_num_a / perm_den_a - (total_num - perm_num_a) / (total_den - perm_den_a)
            # A permutation that leaves a slice with no words gives NaN and never counts as extreme.
            extreme += int(np.count_nonzero(np.abs(statistic) >= abs(observed) - _TIE_TOLERANCE))
        p_value = (1 + extreme) / (1 + n_resamples)
    return DifferenceTest(
        value_a=value_a,
        value_b=value_b,
        difference=observed,
        definition=definition,
        lower=float(lower[0]),
        upper=float(upper[0]),
        p_value=float(p_value),
        confidence=confidence,
        n_resamples=n_resamples,
        n_speakers_a=int(n_a),
        n_speakers_b=int(n_b),
        interval_method="speaker_cluster_bootstrap_percentile_within_slices",
        p_value_method="monte_carlo_speaker_permutation_between_slices",
    )


# --------------------------------------------------------------------------------------------------
# Multiple comparisons


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error), in input order.

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)), so adjusted values never
    decrease with the raw ones. NaN entries stay NaN and do not count towards m.
    """
    p = _pvalues(pvalues)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order.

    Sorted ascending, p_(i) becomes min_{j >= i} min(1, m p_(j) / j); equals
    scipy.stats.false_discovery_control(p, method="bh"). NaN entries stay NaN and do not count towards m.
    """
    p = _pvalues(pvalues)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return adjusted


# --------------------------------------------------------------------------------------------------
# Internals


def _resampled_sums(
    values: np.ndarray | sparse.spmatrix,
    *,
    n_resamples: int,
    rng: np.random.Generator,
    strata_codes: np.ndarray | None,
) -> np.ndarray:
    """(n_resamples x K) sums W @ values, W the bootstrap counts of each cluster (rows of `values`).

    A row of W is a multinomial(n, uniform) draw, made as n uniform picks counted with bincount (the
    same distribution as rng.multinomial, about 3x faster). With strata, stratum s gets n_s picks among
    its own clusters.
    """
    n_clusters = values.shape[0]
    n_cells = n_clusters * values.shape[1]
    # Dense BLAS wins only when most cells are filled (speakers present in most slices); with one
    # slice per cluster (accents, or utterances as clusters) the sparse product is much faster.
    dense = not sparse.issparse(values) or (n_cells <= _DENSE_CELLS_LIMIT and values.nnz >= n_cells / 2)
    if sparse.issparse(values):
        matrix = values.toarray() if dense else sparse.csr_matrix(values.T)
    else:
        matrix = np.asarray(values, dtype=np.float64)
    if strata_codes is None:
        high: np.ndarray | int = n_clusters
        slot_start = None
        slot_cluster = None
    else:
        slot_cluster = np.argsort(strata_codes, kind="stable")
        sorted_strata = strata_codes[slot_cluster]
        _, first, size = np.unique(sorted_strata, return_index=True, return_counts=True)
        stratum_of_slot = np.searchsorted(sorted_strata[first], sorted_strata)
        high = size[stratum_of_slot]
        slot_start = first[stratum_of_slot]
    out = np.empty((n_resamples, values.shape[1]))
    done = 0
    for count in _chunk_sizes(n_resamples, n_clusters):
        picks = rng.integers(0, high, size=(count, n_clusters))
        if slot_start is not None:
            picks = slot_cluster[picks + slot_start]
        picks += (np.arange(count) * n_clusters)[:, None]
        weights = np.bincount(picks.ravel(), minlength=count * n_clusters).reshape(count, n_clusters).astype(np.float64)
        out[done : done + count] = weights @ matrix if dense else (matrix @ weights.T).T
        done += count
    return out


def _chunk_sizes(total: int, width: int) -> list[int]:
    step = max(1, _CELLS_PER_CHUNK // max(width, 1))
    return [min(step, total - start) for start in range(0, total, step)]


def _percentile_bounds(draws: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column percentile interval of `draws` (B x K), ignoring NaN; +inf draws are allowed.

    Linear interpolation between order statistics, as numpy's default, except that a bound next to an
    infinite draw is infinite rather than NaN. A column with no finite-or-inf draw gives NaN.
    """
    alpha = 1.0 - confidence
    ordered = np.sort(draws, axis=0)  # NaN sorts last
    n_valid = np.sum(~np.isnan(draws), axis=0)
    bounds = []
    for q in (alpha / 2, 1 - alpha / 2):
        position = q * np.maximum(n_valid - 1, 0)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, np.maximum(n_valid - 1, 0))
        fraction = position - below
        columns = np.arange(draws.shape[1])
        low_value = ordered[below, columns]
        high_value = ordered[above, columns]
        with np.errstate(invalid="ignore"):
            value = np.where(
                (fraction == 0) | (low_value == high_value),
                low_value,
                np.where(np.isinf(high_value), high_value, low_value + (high_value - low_value) * fraction),
            )
        value = np.where(n_valid == 0, np.nan, value).astype(np.float64)
        bounds.append(value)
    return bounds[0], bounds[1]


def _rate(errors: np.ndarray, words: np.ndarray) -> np.ndarray:
    """errors / words where words > 0, else NaN: a WER over no reference words is undefined."""
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(words > 0, errors / words, np.nan)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with x/0 = inf (x > 0), -inf (x < 0) and 0/0 = NaN, without warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)


def _scalar_ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    array.flags.writeable = False
    return array


def _as_rng(seed: int | np.random.Generator) -> tuple[np.random.Generator, int | None]:
    if isinstance(seed, np.random.Generator):
        return seed, None
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)):
        raise StatsInputError(f"seed must be an int or a numpy Generator; got {seed!r}")
    return np.random.default_rng(int(seed)), int(seed)


def _counts(
    *,
    errors: Sequence[float] | np.ndarray,
    ref_words: Sequence[float] | np.ndarray,
    names: tuple[str, str] = ("errors", "ref_words"),
) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, raw in zip(names, (errors, ref_words)):
        array = np.asarray(raw, dtype=np.float64)
        if array.ndim != 1:
            raise StatsInputError(NOT_ONE_DIMENSIONAL.format(name=name, shape=array.shape))
        bad = ~np.isfinite(array)
        if bad.any():
            raise StatsInputError(NOT_FINITE.format(name=name, count=int(bad.sum()), row=int(np.argmax(bad))))
        negative = array < 0
        if negative.any():
            row = int(np.argmax(negative))
            raise StatsInputError(NEGATIVE_COUNTS.format(name=name, count=int(negative.sum()), row=row, value=array[row]))
        arrays.append(array)
    if arrays[0].size != arrays[1].size:
        raise StatsInputError(LENGTH_MISMATCH.format(name=names[1], got=arrays[1].size, reference=names[0], expected=arrays[0].size))
    return arrays[0], arrays[1]


def _pvalues(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise StatsInputError(NOT_ONE_DIMENSIONAL.format(name="pvalues", shape=p.shape))
    outside = (p < 0) | (p > 1)
    if outside.any():
        row = int(np.argmax(outside))
        raise StatsInputError(f"pvalues must lie in [0, 1]; got {p[row]} at position {row}")
    return p


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float, np.floating)) and 0 < confidence < 1):
        raise StatsInputError(BAD_CONFIDENCE.format(value=confidence))


def _check_n_resamples(n_resamples: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise StatsInputError(BAD_N_RESAMPLES.format(value=n_resamples))


def _check_min_speakers(min_speakers: int) -> None:
    if isinstance(min_speakers, bool) or not isinstance(min_speakers, (int, np.integer)) or min_speakers < 2:
        raise StatsInputError(BAD_MIN_SPEAKERS.format(value=min_speakers))


def _factorize_slices(slices: Sequence | np.ndarray, n_rows: int) -> tuple[np.ndarray, tuple]:
    values = slices.reset_index(drop=True) if isinstance(slices, pd.Series) else pd.Series(_one_dimensional(slices, "slices"))
    if len(values) != n_rows:
        raise StatsInputError(LENGTH_MISMATCH.format(name="slices", got=len(values), reference="errors", expected=n_rows))
    missing = values.isna().to_numpy()
    if missing.any():
        raise StatsInputError(MISSING_SLICE.format(count=int(missing.sum()), row=int(np.argmax(missing))))
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # labels of mixed types cannot be sorted; order of first appearance then
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), tuple(uniques.tolist() if hasattr(uniques, "tolist") else list(uniques))


def _factorize_clusters(clusters: Sequence | np.ndarray | None, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted cluster codes, so resampling does not depend on row order; a missing label is its own cluster."""
    if clusters is None:
        return np.arange(n_rows, dtype=np.int64), np.arange(n_rows)
    values = clusters.reset_index(drop=True) if isinstance(clusters, pd.Series) else pd.Series(_one_dimensional(clusters, "clusters"))
    if len(values) != n_rows:
        raise StatsInputError(LENGTH_MISMATCH.format(name="clusters", got=len(values), reference="errors", expected=n_rows))
    missing = values.isna().to_numpy()
    present = values[~missing]
    try:
        codes_present, uniques = pd.factorize(present, sort=True)
    except TypeError:
        codes_present, uniques = pd.factorize(present.astype(str), sort=True)
    codes = np.empty(n_rows, dtype=np.int64)
    codes[~missing] = codes_present
    missing_rows = np.flatnonzero(missing)
    codes[missing_rows] = len(uniques) + np.arange(missing_rows.size)
    names = np.concatenate([np.asarray(uniques, dtype=object), np.array([f"row:{i}" for i in missing_rows], dtype=object)])
    return codes, names


def _cluster_strata(strata: Sequence | np.ndarray, cluster_codes: np.ndarray, cluster_names: np.ndarray, n_rows: int) -> np.ndarray:
    """One stratum code per cluster; raises if a cluster's rows fall in more than one stratum."""
    values = pd.Series(np.asarray(strata, dtype=object))
    if len(values) != n_rows:
        raise StatsInputError(LENGTH_MISMATCH.format(name="strata", got=len(values), reference="errors", expected=n_rows))
    row_strata, uniques = pd.factorize(values, use_na_sentinel=False)
    # The stratum of a cluster's first row; every other row of that cluster must agree.
    present, first_row = np.unique(cluster_codes, return_index=True)
    per_cluster = np.zeros(len(cluster_names), dtype=np.int64)
    per_cluster[present] = row_strata[first_row]
    conflict = per_cluster[cluster_codes] != row_strata
    if conflict.any():
        row = int(np.argmax(conflict))
        cluster = cluster_codes[row]
        raise StatsInputError(
            STRATUM_SPLITS_CLUSTER.format(
                cluster=cluster_names[cluster], first=uniques[per_cluster[cluster]], second=uniques[row_strata[row]]
            )
        )
    return per_cluster


def _one_dimensional(values: Sequence | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values) if isinstance(values, np.ndarray) else np.asarray(list(values), dtype=object)
    if array.ndim != 1:
        raise StatsInputError(NOT_ONE_DIMENSIONAL.format(name=name, shape=array.shape))
    return array


def _slice_code(labels: tuple, label: object) -> int:
    for code, candidate in enumerate(labels):
        if candidate == label or (isinstance(candidate, float) and isinstance(label, float) and np.isnan(candidate) and np.isnan(label)):
            return code
    raise StatsInputError(UNKNOWN_SLICE.format(label=label, present=list(labels)))
