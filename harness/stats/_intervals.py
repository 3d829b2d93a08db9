"""Intervals for pooled rates and their differences, clustered by speaker, with a small-sample correction.

A slice's WER is a ratio estimator R = sum(e_c) / sum(w_c) over its speakers c. Its variance is
estimated from the per-speaker residuals u_c = e_c - R w_c with the jackknife-type (CR3) small-sample
correction, V = sum u_c^2 / (1 - a_c)^2 / W^2, a_c = w_c / W the speaker's share of the words, and the
degrees of freedom of Bell and McCaffrey (2002), df = 1 / (sum a_c^2 (1 - 2 a_c) / (1 - a_c)^2 +
(sum a_c^2 / (1 - a_c))^2): n - 1 for n equal speakers, falling towards 1 as one speaker dominates.
A rate's interval is a t interval on the log scale centred on log R + V / (2 R^2) (the second-order
bias of log R); the log scale matters because per-speaker error rates are right-skewed, the estimate
and its standard error move together, and a symmetric interval misses high. validation/README.md
records why each piece is there: with the bias-reduced CR2 variance instead (exact for the weighted
mean under the working model Var(e_c / w_c) proportional to 1 / w_c) coverage fell to 93.1% where
speakers differ a lot at a WER of 5%; with CR3 and the centring, every cell of the grid covers 94-96.5%.
Differences (paired deltas) use the same variance and df on the raw scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.stats._cells import SliceCells, cluster_totals
from harness.stats._options import StatsInputError, StatsOptions

RATIO_METHOD = "cr3_bell_mccaffrey_t_log"
DIFFERENCE_METHOD = "cr3_bell_mccaffrey_t"
ZERO_ERRORS_METHOD = "zero_errors_poisson_upper"
PAIRING_MISMATCH = "paired cells differ: {what}; pass two cell tables built from the same paired rows"


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
        return bool(np.isnan(self.lower) or np.isnan(self.upper))


@dataclass(frozen=True, kw_only=True, eq=False)
class ClusteredRatio:
    """Per slice: sum(numerator) / sum(words), its CR3 variance and Bell-McCaffrey degrees of freedom.

    `numerator` is errors for a WER, or the difference of two runs' errors for a paired delta.
    Variance and df are NaN for a slice with fewer than two speakers holding words.
    """

    estimate: np.ndarray
    variance: np.ndarray
    df: np.ndarray
    numerator: np.ndarray
    words: np.ndarray
    n_clusters: np.ndarray
    n_effective: np.ndarray


def clustered_ratio(slice_codes: np.ndarray, numerator: np.ndarray, words: np.ndarray, n_slices: int) -> ClusteredRatio:
    """The ratio estimator of each slice from one value per (speaker, slice) cell, all slices at once."""
    total_words = np.bincount(slice_codes, weights=words, minlength=n_slices)
    total_numerator = np.bincount(slice_codes, weights=numerator, minlength=n_slices)
    n_clusters = np.bincount(slice_codes, minlength=n_slices)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(total_words > 0, total_numerator / total_words, np.nan)
        share = words / total_words[slice_codes]
        residual = numerator - estimate[slice_codes] * words
        keep = 1.0 - share
        holders = np.bincount(slice_codes, weights=(words > 0).astype(np.float64), minlength=n_slices)
        usable = holders >= 2
        # A speaker holding every word (share 1) makes 1 - a_c zero: no variance is estimable then.
        safe_keep = np.where(keep > 0, keep, np.nan)
        variance = np.bincount(slice_codes, weights=np.nan_to_num(residual**2 / safe_keep**2, nan=0.0), minlength=n_slices) / total_words**2
        first = np.bincount(slice_codes, weights=np.nan_to_num(share**2 * (1 - 2 * share) / safe_keep**2, nan=0.0), minlength=n_slices)
        second = np.bincount(slice_codes, weights=np.nan_to_num(share**2 / safe_keep, nan=0.0), minlength=n_slices)
        df = 1.0 / (first + second**2)
        n_effective = total_words**2 / np.bincount(slice_codes, weights=words**2, minlength=n_slices)
    variance = np.where(usable, variance, np.nan)
    df = np.where(usable, df, np.nan)
    n_effective = np.where(total_words > 0, n_effective, 0.0)
    return ClusteredRatio(
        estimate=estimate, variance=variance, df=df, numerator=total_numerator, words=total_words,
        n_clusters=n_clusters, n_effective=n_effective,
    )


def t_quantile(df: np.ndarray | float, confidence: float) -> np.ndarray:
    """The two-sided t critical value at `confidence` for (possibly fractional) degrees of freedom."""
    # scipy.special, not scipy.stats: after pandas it adds about 0.1 s to a command's start-up, scipy.stats 0.6 s.
    from scipy.special import stdtrit

    return np.asarray(stdtrit(np.asarray(df, dtype=np.float64), 0.5 + confidence / 2))


def t_two_sided_p(statistic: np.ndarray | float, df: np.ndarray | float) -> np.ndarray:
    from scipy.special import stdtr

    return np.asarray(2.0 * stdtr(np.asarray(df, dtype=np.float64), -np.abs(np.asarray(statistic, dtype=np.float64))))


def t_upper_p(statistic: np.ndarray | float, df: np.ndarray | float) -> np.ndarray:
    """P(T >= t): the one-sided p-value for "greater than"."""
    from scipy.special import stdtr

    return np.asarray(stdtr(np.asarray(df, dtype=np.float64), -np.asarray(statistic, dtype=np.float64)))


def log_bounds(estimate: np.ndarray, variance: np.ndarray, df: np.ndarray, words: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """t interval for a non-negative rate on the log scale: exp(log R + V / (2 R^2) +/- t * se / R).

    A rate of exactly zero has no log: its interval is [0, -ln(alpha / 2) / words], the exact Poisson
    upper bound for zero events (clustering cannot be estimated from no errors).
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    # A handful of speakers can give a variance so large that exp overflows: the bound is then inf.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        spread = t_quantile(df, confidence) * np.sqrt(variance) / estimate
        centre = estimate * np.exp(variance / (2 * estimate**2))
        lower = centre * np.exp(-spread)
        upper = centre * np.exp(spread)
        zero_upper = -np.log((1 - confidence) / 2) / words
    zero = estimate == 0
    lower = np.where(zero, 0.0, lower)
    upper = np.where(zero, zero_upper, upper)
    undefined = ~np.isfinite(estimate) | (~zero & ~np.isfinite(variance))
    lower = np.where(undefined, np.nan, lower)
    upper = np.where(undefined, np.nan, upper)
    return lower, upper


def linear_bounds(estimate: np.ndarray, variance: np.ndarray, df: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """t interval estimate +/- t * se (for differences, which may be negative)."""
    with np.errstate(invalid="ignore"):
        half = t_quantile(df, confidence) * np.sqrt(variance)
        return np.asarray(estimate - half, dtype=np.float64), np.asarray(estimate + half, dtype=np.float64)


def is_small(n_effective: np.ndarray, words: np.ndarray, options: StatsOptions) -> np.ndarray:
    """The one small-slice rule: fewer effective speakers than `min_speakers`, or fewer words than `min_words`.

    Both are inclusive minimums. A small slice gets no interval and is never ranked, tested, or used
    as the anchor of a gap; every report applies this function and nothing else.
    """
    n_effective = np.asarray(n_effective, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64)
    # A hair of tolerance: ten speakers with exactly equal words give 9.999999999999998, not 10.
    return ~(n_effective >= options.min_speakers - 1e-9) | ~(words >= options.min_words) | ~np.isfinite(words)


def effective_speakers(words_per_speaker: np.ndarray) -> float:
    """(sum w)^2 / sum w^2: how many equally-sized speakers the words are worth (0 with no words)."""
    w = np.asarray(words_per_speaker, dtype=np.float64)
    squares = float(np.sum(w**2))
    return float(np.sum(w)) ** 2 / squares if squares > 0 else 0.0


@dataclass(frozen=True, kw_only=True, eq=False)
class SliceIntervals:
    """Pooled rate of each slice with its interval, size and small flag; arrays aligned with `slices`.

    `lower`/`upper` are NaN for small slices (see `is_small`) and for slices with fewer than two
    speakers. `bounds(c)` recomputes them at another confidence (e.g. simultaneous intervals).
    """

    slices: tuple
    wer: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    errors: np.ndarray
    ref_words: np.ndarray
    n_speakers: np.ndarray
    n_effective_speakers: np.ndarray
    n_utterances: np.ndarray
    small: np.ndarray
    variance: np.ndarray
    degrees_of_freedom: np.ndarray
    confidence: float
    method: str = RATIO_METHOD

    def bounds(self, confidence: float, *, mask_small: bool = True) -> tuple[np.ndarray, np.ndarray]:
        lower, upper = log_bounds(self.wer, self.variance, self.degrees_of_freedom, self.ref_words, confidence)
        if mask_small:
            lower, upper = np.where(self.small, np.nan, lower), np.where(self.small, np.nan, upper)
        return lower, upper

    def index(self, label: object) -> int:
        return self.slices.index(label)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "slice": list(self.slices), "wer": self.wer, "lower": self.lower, "upper": self.upper, "errors": self.errors,
            "ref_words": self.ref_words, "n_speakers": self.n_speakers, "n_effective_speakers": self.n_effective_speakers,
            "n_utterances": self.n_utterances, "small": self.small,
        })


def slice_intervals(cells: SliceCells, options: StatsOptions) -> SliceIntervals:
    """Every slice's pooled rate, interval, size and small flag, from (speaker, slice) cells."""
    ratio = clustered_ratio(cells.slice, cells.errors, cells.words, cells.n_slices)
    small = is_small(ratio.n_effective, ratio.words, options)
    lower, upper = log_bounds(ratio.estimate, ratio.variance, ratio.df, ratio.words, options.confidence)
    return SliceIntervals(
        slices=cells.slices, wer=_frozen(ratio.estimate),
        lower=_frozen(np.where(small, np.nan, lower)), upper=_frozen(np.where(small, np.nan, upper)),
        errors=_frozen(ratio.numerator), ref_words=_frozen(ratio.words), n_speakers=_frozen(ratio.n_clusters),
        n_effective_speakers=_frozen(ratio.n_effective),
        n_utterances=_frozen(np.bincount(cells.slice, weights=cells.n_utterances, minlength=cells.n_slices).astype(np.int64)),
        small=_frozen(small), variance=_frozen(ratio.variance), degrees_of_freedom=_frozen(ratio.df), confidence=options.confidence,
    )


def ratio_interval(
    *, cluster_errors: np.ndarray, cluster_words: np.ndarray, confidence: float = 0.95,
) -> Interval:
    """The interval of one pooled rate from per-speaker totals, whatever its size (no small rule applied)."""
    errors = np.asarray(cluster_errors, dtype=np.float64)
    words = np.asarray(cluster_words, dtype=np.float64)
    if errors.shape != words.shape or errors.ndim != 1:
        raise StatsInputError(f"cluster_errors and cluster_words must be one-dimensional and of equal length; got {errors.shape} and {words.shape}")
    ratio = clustered_ratio(np.zeros(errors.size, dtype=np.int64), errors, words, 1)
    lower, upper = log_bounds(ratio.estimate, ratio.variance, ratio.df, ratio.words, confidence)
    method = ZERO_ERRORS_METHOD if ratio.estimate[0] == 0 else RATIO_METHOD
    return Interval(estimate=float(ratio.estimate[0]), lower=float(lower[0]), upper=float(upper[0]), confidence=confidence, method=method)


@dataclass(frozen=True, kw_only=True, eq=False)
class GapToOverall:
    """Per slice: WER(slice) - WER(overall) and WER(slice) / WER(overall), with intervals and a one-sided test.

    The overall rate contains the slice, so the two are correlated: the variance comes from each
    speaker's influence on the difference (the slice's residual share minus the overall one), with
    the CR3 factor and Bell-McCaffrey df of the slice's own speakers (the overall side has many more).
    `p_worse` tests "the slice's WER is above overall" (one-sided); NaN where not estimable.
    """

    slices: tuple
    gap: np.ndarray
    gap_lower: np.ndarray
    gap_upper: np.ndarray
    ratio: np.ndarray
    ratio_lower: np.ndarray
    ratio_upper: np.ndarray
    statistic: np.ndarray
    degrees_of_freedom: np.ndarray
    p_worse: np.ndarray


def gaps_to_overall(
    cells: SliceCells, options: StatsOptions, *, overall_errors: np.ndarray | None = None, overall_words: np.ndarray | None = None,
) -> GapToOverall:
    """Gap and ratio of every slice to the overall rate.

    `overall_errors`/`overall_words` are per-cluster totals of the whole population (default: summed
    over the cells, right when the slices partition the rows; pass them when slices overlap).
    """
    if overall_errors is None or overall_words is None:
        overall_errors, overall_words = cluster_totals(cells)
    total_words = float(np.sum(overall_words))
    overall = float(np.sum(overall_errors)) / total_words if total_words > 0 else float("nan")
    ratio = clustered_ratio(cells.slice, cells.errors, cells.words, cells.n_slices)
    k = cells.slice
    with np.errstate(divide="ignore", invalid="ignore"):
        # Influences on R_k and on R, per speaker, scaled by their totals (first-order Taylor terms).
        slice_part = (cells.errors - ratio.estimate[k] * cells.words) / ratio.words[k]
        overall_part_cluster = (overall_errors - overall * overall_words) / total_words
        overall_part = overall_part_cluster[cells.cluster]
        share = cells.words / ratio.words[k]
        keep = np.where(share < 1, 1 - share, np.nan)
        outside_sq = float(np.sum(overall_part_cluster**2))
        inside_sq = np.bincount(k, weights=overall_part**2, minlength=cells.n_slices)
        gap_var = (outside_sq - inside_sq) + np.bincount(k, weights=np.nan_to_num((slice_part - overall_part) ** 2 / keep**2, nan=0.0), minlength=cells.n_slices)
        # On the log scale each influence is divided by its rate: speakers outside the slice add
        # (overall part / R)^2, speakers inside (slice part / R_k - overall part / R)^2 / (1 - a_c)^2.
        log_var = (outside_sq - inside_sq) / overall**2 + np.bincount(
            k, weights=np.nan_to_num((slice_part / ratio.estimate[k] - overall_part / overall) ** 2 / keep**2, nan=0.0), minlength=cells.n_slices,
        )
        gap = ratio.estimate - overall
        gap_var = np.where(np.isfinite(ratio.variance), gap_var, np.nan)
        gap_lower, gap_upper = linear_bounds(gap, gap_var, ratio.df, options.confidence)
        statistic = gap / np.sqrt(gap_var)
        log_ratio = np.log(ratio.estimate / overall)
        log_lower, log_upper = linear_bounds(log_ratio, np.where(np.isfinite(ratio.variance), log_var, np.nan), ratio.df, options.confidence)
    statistic = np.where(gap_var > 0, statistic, np.where(gap > 0, np.inf, np.where(gap < 0, -np.inf, 0.0)))
    p_worse = np.where(np.isfinite(ratio.df), t_upper_p(statistic, np.where(np.isfinite(ratio.df), ratio.df, 1.0)), np.nan)
    return GapToOverall(
        slices=cells.slices, gap=gap, gap_lower=gap_lower, gap_upper=gap_upper,
        ratio=ratio.estimate / overall if overall > 0 else np.full(cells.n_slices, np.nan),
        ratio_lower=np.exp(log_lower), ratio_upper=np.exp(log_upper),
        statistic=statistic, degrees_of_freedom=ratio.df, p_worse=p_worse,
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class PairedChange:
    """Per slice, two runs (or clean and a condition) on the same utterances: B - A and B / A - 1.

    `value_a`/`value_b` are each run's pooled rate. `delta` = value_b - value_a with a t interval from
    the jackknife-type (CR3) clustered variance and Bell-McCaffrey df on the raw scale: per-speaker
    changes are skewed (a noise condition hurts speakers in proportion to their clean rate), and the
    CR2 variance covered only 92.4% at a clean WER of 5% with speakers that differ (validation/README.md). `p_value` is the two-sided
    sign-flip permutation test over speakers (exact when few speakers changed); it, not the interval,
    decides significance, because it stays exact when only a few speakers' transcripts changed, where
    any t interval is too narrow: the intervals of `delta` and `relative` are omitted (NaN) when fewer
    than `min_speakers` speakers have any change at all (`n_speakers_changed`). `relative` =
    value_b / value_a - 1 with a CR3 t interval on the log of the ratio (NaN when value_a is 0).
    """

    slices: tuple
    value_a: np.ndarray
    value_b: np.ndarray
    delta: np.ndarray
    delta_lower: np.ndarray
    delta_upper: np.ndarray
    delta_variance: np.ndarray
    degrees_of_freedom: np.ndarray
    p_value: np.ndarray
    p_value_exact: np.ndarray
    n_speakers_changed: np.ndarray
    relative: np.ndarray
    relative_lower: np.ndarray
    relative_upper: np.ndarray
    words: np.ndarray
    n_speakers: np.ndarray
    n_effective_speakers: np.ndarray
    small: np.ndarray
    confidence: float


def paired_changes(cells_a: SliceCells, cells_b: SliceCells, options: StatsOptions, *, family_size: int = 1) -> PairedChange:
    """Change from run A to run B in every slice; both cell tables come from the same paired rows.

    `family_size` (how many slices' p-values are adjusted together) sets the number of sign flips.
    """
    if cells_a.slices != cells_b.slices or not np.array_equal(cells_a.cluster, cells_b.cluster) or not np.array_equal(cells_a.slice, cells_b.slice):
        raise StatsInputError(PAIRING_MISMATCH.format(what="speakers or slices"))
    if not np.array_equal(cells_a.words, cells_b.words):
        raise StatsInputError(PAIRING_MISMATCH.format(what="reference words"))
    from harness.stats._resampling import sign_flip_p_values

    k, n, words = cells_a.slice, cells_a.n_slices, cells_a.words
    difference = cells_b.errors - cells_a.errors
    delta = clustered_ratio(k, difference, words, n)
    rate_a = clustered_ratio(k, cells_a.errors, words, n)
    rate_b = clustered_ratio(k, cells_b.errors, words, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = words / delta.words[k]
        keep = np.where(share < 1, 1 - share, np.nan)
        variance = delta.variance
        lower, upper = linear_bounds(delta.estimate, variance, delta.df, options.confidence)
        # log(R_b / R_a): influence per speaker (e_b - R_b w) / R_b - (e_a - R_a w) / R_a, over W.
        influence = (cells_b.errors - rate_b.estimate[k] * words) / rate_b.estimate[k] - (cells_a.errors - rate_a.estimate[k] * words) / rate_a.estimate[k]
        log_var = np.bincount(k, weights=np.nan_to_num(influence**2 / keep**2, nan=0.0), minlength=n) / delta.words**2
        log_var = np.where(np.isfinite(delta.variance) & (rate_a.estimate > 0) & (rate_b.estimate > 0), log_var, np.nan)
        log_ratio = np.log(rate_b.estimate / rate_a.estimate)
        log_lower, log_upper = linear_bounds(log_ratio, log_var, delta.df, options.confidence)
        relative = np.where(rate_a.estimate > 0, rate_b.estimate / rate_a.estimate - 1, np.nan)
    p_value, exact = sign_flip_p_values(
        k, cells_a.cluster, difference, n, options.n_permutations(family_size), np.random.default_rng(options.seed),
    )
    small = is_small(delta.n_effective, delta.words, options)
    n_changed = np.bincount(k, weights=(difference != 0).astype(np.float64), minlength=n).astype(np.int64)
    # A spread estimated from a handful of speakers who changed at all is not a spread (see validation/README.md).
    few = n_changed < options.min_speakers
    lower, upper = np.where(few, np.nan, lower), np.where(few, np.nan, upper)
    log_lower, log_upper = np.where(few, np.nan, log_lower), np.where(few, np.nan, log_upper)
    return PairedChange(
        slices=cells_a.slices, value_a=rate_a.estimate, value_b=rate_b.estimate, delta=delta.estimate,
        delta_lower=lower, delta_upper=upper, delta_variance=variance, degrees_of_freedom=delta.df,
        p_value=np.where(delta.words > 0, p_value, np.nan), p_value_exact=exact, n_speakers_changed=n_changed,
        relative=relative, relative_lower=np.exp(log_lower) - 1, relative_upper=np.exp(log_upper) - 1,
        words=delta.words, n_speakers=delta.n_clusters, n_effective_speakers=delta.n_effective, small=small,
        confidence=options.confidence,
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    array.flags.writeable = False
    return array
