"""Tests: equal WER across slices (speaker permutation or speaker bootstrap), and differences with t intervals.

The test of equal WER is a studentised permutation test (Chung and Romano, 2013): the statistic is a
Welch-type weighted sum of squares, each slice's deviation from the precision-weighted mean over its
clustered variance. Permuting whole speakers between slices makes it exact when speakers are
exchangeable across slices, and studentising keeps it valid for equal WERs with unequal variances.
When a speaker has rows in several slices (a tag that varies within a speaker, or conditions), labels
cannot move between speakers, and the centred speaker bootstrap of the same statistic is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.stats._cells import SliceCells, check_counts, check_same_length, slice_cells
from harness.stats._intervals import (
    DIFFERENCE_METHOD, clustered_ratio, linear_bounds, paired_changes, t_two_sided_p,
)
from harness.stats._options import StatsInputError, StatsOptions
from harness.stats._resampling import bootstrap_counts, chunk_sizes, exact_assignments, n_assignments, permuted_labels

UNKNOWN_SLICE = "slice {label!r} not found; slices present: {present}"
SAME_SLICE = "slice_a and slice_b are both {label!r}; compare two different slices"
SHARED_SPEAKERS = (
    "{count} speaker(s) appear in both slice {a!r} and slice {b!r} (e.g. {example!r}); the slices are not "
    "independent. Use paired_difference for the same speakers under two runs or conditions"
)
# Tolerance for "at least as extreme", so that ties with the observed statistic count as ties.
_TIE_TOLERANCE = 1e-9

PERMUTATION_EXACT = "exact_speaker_permutation_studentized"
PERMUTATION_MONTE_CARLO = "monte_carlo_speaker_permutation_studentized"
BOOTSTRAP_CENTRED = "speaker_bootstrap_centred_studentized"


@dataclass(frozen=True, kw_only=True)
class EqualityTest:
    """A test of "every slice compared has the same WER".

    `p_value` is exact for an enumerated permutation test; otherwise a Monte Carlo estimate with
    standard error `monte_carlo_se` over `n_resamples` resamples (p = (1 + extreme) / (1 + B)).
    """

    method: str
    statistic: float
    p_value: float
    n_resamples: int
    monte_carlo_se: float | None
    n_slices: int
    n_speakers: int

    def rejects(self, alpha: float) -> bool:
        return bool(self.p_value < alpha)


@dataclass(frozen=True, kw_only=True)
class DifferenceTest:
    """A difference of two rates with a t interval and a two-sided p-value; `definition` says which way round."""

    value_a: float
    value_b: float
    difference: float
    definition: str
    lower: float
    upper: float
    standard_error: float
    degrees_of_freedom: float
    p_value: float
    confidence: float
    n_speakers_a: int
    n_speakers_b: int
    method: str

    @property
    def interval_omitted(self) -> bool:
        return bool(np.isnan(self.lower) or np.isnan(self.upper))


def equal_rate_test(cells: SliceCells, options: StatsOptions, *, include: np.ndarray | None = None, family_size: int = 1) -> EqualityTest | None:
    """Test that every included slice has the same pooled rate; None with fewer than two slices.

    `include` marks the slices to compare (default: all). The number of resamples is raised for
    larger families (`StatsOptions.n_permutations`); when the distinct permutations are fewer than
    that, all of them are enumerated and the p-value is exact.
    """
    include = np.ones(cells.n_slices, dtype=bool) if include is None else np.asarray(include, dtype=bool)
    if include.sum() < 2:
        return None
    keep = include[cells.slice]
    slice_index = np.cumsum(include) - 1
    codes = slice_index[cells.slice[keep]]
    cluster = cells.cluster[keep]
    errors, words = cells.errors[keep], cells.words[keep]
    k = int(include.sum())
    floor = float(errors.sum() / words.sum()) if words.sum() > 0 else 0.0
    if floor == 0:  # no errors anywhere: every rate is zero, and equal
        return EqualityTest(method="no_errors", statistic=0.0, p_value=1.0, n_resamples=0, monte_carlo_se=None, n_slices=k, n_speakers=int(np.unique(cluster).size))
    rng = np.random.default_rng(options.seed)
    budget = options.n_permutations(family_size)
    values = np.column_stack([errors, words, errors**2, errors * words, words**2, np.ones_like(words)])
    observed = _wald(_sums_by_slice(codes, values, k)[None, :, :], floor)[0]
    nested = np.unique(cluster).size == cluster.size
    if nested:
        total = n_assignments(codes, limit=budget)
        exact = total <= budget
        draws = exact_assignments(codes) if exact else permuted_labels(codes, budget, rng)
        extreme = done = 0
        for labels in draws:
            sums = _sums_by_slice_batch(labels, values, k)
            extreme += int(np.count_nonzero(_wald(sums, floor) >= observed - _TIE_TOLERANCE * max(1.0, observed)))
            done += labels.shape[0]
        if exact:
            p_value, se, method = extreme / done, None, PERMUTATION_EXACT
        else:
            p_value = (1 + extreme) / (1 + done)
            se, method = float(np.sqrt(p_value * (1 - p_value) / done)), PERMUTATION_MONTE_CARLO
    else:
        # Centred bootstrap: resample speakers, recompute every slice's rate and variance, and measure
        # how far the replicate's rates scatter around the observed ones.
        cluster_codes, cluster_of_cell = np.unique(cluster, return_inverse=True)
        n_clusters = cluster_codes.size
        from scipy import sparse  # here, not at import: every report command would pay for it

        matrix = sparse.csr_matrix(
            (values.T.ravel(), (np.tile(cluster_of_cell, 6), (np.repeat(np.arange(6), codes.size) * k + np.tile(codes, 6)))),
            shape=(n_clusters, 6 * k),
        )
        base = _sums_by_slice(codes, values, k)
        centre = base[:, 0] / base[:, 1]
        extreme = done = 0
        for counts in bootstrap_counts(n_clusters, budget, rng):
            sums = np.asarray((matrix.T @ counts.T).T).reshape(counts.shape[0], 6, k).transpose(0, 2, 1)
            # The number of distinct speakers per slice stays the original one (the CR1 factor).
            sums[:, :, 5] = base[None, :, 5]
            extreme += int(np.count_nonzero(_wald(sums, floor, centre=centre) >= observed - _TIE_TOLERANCE * max(1.0, observed)))
            done += counts.shape[0]
        p_value = (1 + extreme) / (1 + done)
        se, method = float(np.sqrt(p_value * (1 - p_value) / done)), BOOTSTRAP_CENTRED
    return EqualityTest(
        method=method, statistic=float(observed), p_value=float(min(1.0, p_value)), n_resamples=int(done), monte_carlo_se=se,
        n_slices=k, n_speakers=int(np.unique(cluster).size),
    )


def _sums_by_slice(codes: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """(k x 6) sums of e, w, e^2, e w, w^2 and the speaker count per slice."""
    return np.stack([np.bincount(codes, weights=values[:, j], minlength=k) for j in range(values.shape[1])], axis=1)


def _sums_by_slice_batch(labels: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """(resamples x k x 6) per-slice sums for each row of slice labels.

    One sparse product: column i of the indicator holds speaker i's slice in every resample, so
    each speaker's values are read once per chunk (3x faster than a bincount per value column).
    The values are integer counts, so the sums are exact in any order.
    """
    from scipy import sparse  # here, not at import: every report command would pay for it

    count, n = labels.shape
    rows = (labels + (np.arange(count, dtype=np.int64) * k)[:, None]).T.ravel()
    indicator = sparse.csc_matrix((np.ones(rows.size), rows, np.arange(0, rows.size + 1, count)), shape=(count * k, n))
    return np.asarray(indicator @ values).reshape(count, k, values.shape[1])


def _wald(sums: np.ndarray, floor_rate: float, centre: np.ndarray | None = None) -> np.ndarray:
    """Welch-type statistic sum_k (R_k - Rbar)^2 / V_k per resample; sums is (resamples x k x 6).

    V_k is the CR1 clustered variance of R_k, floored at the Poisson variance floor_rate / W_k so that
    a slice with no errors (zero variance) cannot make the statistic infinite. With `centre`, each
    R_k is replaced by R_k - centre_k (the bootstrap's deviation from the observed rates).
    """
    errors, words, e2, ew, w2, n = (sums[:, :, j] for j in range(6))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = errors / words
        squares = np.maximum(e2 - 2 * rate * ew + rate**2 * w2, 0.0)
        variance = np.where(n > 1, n / (n - 1), 1.0) * squares / words**2
        variance = np.maximum(variance, floor_rate / words)
        if centre is not None:
            rate = rate - centre[None, :]
        weight = np.where(words > 0, 1.0 / variance, 0.0)
        rate = np.where(words > 0, rate, 0.0)
        mean = (weight * rate).sum(axis=1, keepdims=True) / weight.sum(axis=1, keepdims=True)
        return np.asarray((weight * (rate - mean) ** 2).sum(axis=1))


def welch_difference(
    value_a: float, variance_a: float, df_a: float, value_b: float, variance_b: float, df_b: float, confidence: float,
) -> tuple[float, float, float, float, float, float]:
    """value_a - value_b for independent estimates: (difference, lower, upper, se, df, p), Welch-Satterthwaite df."""
    difference = value_a - value_b
    variance = variance_a + variance_b
    with np.errstate(divide="ignore", invalid="ignore"):
        df = variance**2 / (variance_a**2 / df_a + variance_b**2 / df_b) if variance > 0 else min(df_a, df_b)
    lower, upper = linear_bounds(np.array([difference]), np.array([variance]), np.array([df]), confidence)
    if not np.isfinite(variance):
        return difference, float("nan"), float("nan"), float("nan"), float("nan"), float("nan")
    if variance > 0:
        p_value = float(t_two_sided_p(difference / np.sqrt(variance), df))
    else:
        p_value = 1.0 if difference == 0 else 0.0
    return float(difference), float(lower[0]), float(upper[0]), float(np.sqrt(variance)), float(df), p_value


def paired_difference(
    *,
    errors_a: Sequence[float] | np.ndarray,
    errors_b: Sequence[float] | np.ndarray,
    ref_words: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None,
    options: StatsOptions = StatsOptions(),
) -> DifferenceTest:
    """Delta = (sum errors_b - sum errors_a) / sum words for two runs on the same utterances (rows paired).

    CR3 t interval over speakers and a two-sided sign-flip p-value (exact when few speakers changed);
    the interval is omitted when fewer than `min_speakers` speakers changed at all. Identical runs
    give delta 0, p = 1 and no interval. No small rule here.
    """
    a = check_counts(errors_a, "errors_a")
    b = check_counts(errors_b, "errors_b")
    words = check_counts(ref_words, "ref_words")
    check_same_length(a, "errors_a", errors_b=b, ref_words=words)
    cells_a = slice_cells(errors=a, ref_words=words, clusters=clusters)
    cells_b = slice_cells(errors=b, ref_words=words, clusters=clusters)
    change = paired_changes(cells_a, cells_b, options)
    return DifferenceTest(
        value_a=float(change.value_a[0]), value_b=float(change.value_b[0]), difference=float(change.delta[0]),
        definition="WER(run_b) - WER(run_a)", lower=float(change.delta_lower[0]), upper=float(change.delta_upper[0]),
        standard_error=float(np.sqrt(change.delta_variance[0])), degrees_of_freedom=float(change.degrees_of_freedom[0]),
        p_value=float(change.p_value[0]), confidence=options.confidence,
        n_speakers_a=int(change.n_speakers[0]), n_speakers_b=int(change.n_speakers[0]), method=DIFFERENCE_METHOD,
    )


def compare_slices(
    *,
    errors: Sequence[float] | np.ndarray,
    ref_words: Sequence[float] | np.ndarray,
    clusters: Sequence | np.ndarray | None,
    slices: Sequence | np.ndarray,
    slice_a: object,
    slice_b: object,
    options: StatsOptions = StatsOptions(),
) -> DifferenceTest:
    """WER(slice_a) - WER(slice_b) for two slices of one run with disjoint speakers (e.g. two accents).

    Each slice's CR3 variance, added; Welch-Satterthwaite df from the two Bell-McCaffrey dfs.
    Raises if a speaker is in both slices.
    """
    cells = slice_cells(errors=errors, ref_words=ref_words, clusters=clusters, slices=slices)
    code_a, code_b = _two_codes(cells, slice_a, slice_b)
    ratio = clustered_ratio(cells.slice, cells.errors, cells.words, cells.n_slices)
    difference, lower, upper, se, df, p = welch_difference(
        ratio.estimate[code_a], ratio.variance[code_a], ratio.df[code_a], ratio.estimate[code_b], ratio.variance[code_b], ratio.df[code_b], options.confidence,
    )
    return DifferenceTest(
        value_a=float(ratio.estimate[code_a]), value_b=float(ratio.estimate[code_b]), difference=difference, definition="WER(slice_a) - WER(slice_b)",
        lower=lower, upper=upper, standard_error=se, degrees_of_freedom=df, p_value=p, confidence=options.confidence,
        n_speakers_a=int(ratio.n_clusters[code_a]), n_speakers_b=int(ratio.n_clusters[code_b]), method="welch_" + DIFFERENCE_METHOD,
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
    options: StatsOptions = StatsOptions(),
) -> DifferenceTest:
    """Does slice A lose more than slice B under a condition? Absolute WER points, A minus B.

    Rows are utterances scored both clean and under the condition. value_a = WER_condition(A) -
    WER_clean(A), likewise value_b; difference = value_a - value_b, each change's CR3 variance over
    its speakers (paired within speaker), combined with Welch-Satterthwaite df. Speakers must be
    nested in slices.
    """
    clean = check_counts(errors_clean, "errors_clean")
    condition = check_counts(errors_condition, "errors_condition")
    words = check_counts(ref_words, "ref_words")
    check_same_length(clean, "errors_clean", errors_condition=condition, ref_words=words)
    cells_clean = slice_cells(errors=clean, ref_words=words, clusters=clusters, slices=slices)
    cells_condition = slice_cells(errors=condition, ref_words=words, clusters=clusters, slices=slices)
    code_a, code_b = _two_codes(cells_clean, slice_a, slice_b)
    change = paired_changes(cells_clean, cells_condition, options)
    return degradation_difference(change, code_a, code_b, options)


def degradation_difference(change, code_a: int, code_b: int, options: StatsOptions) -> DifferenceTest:
    """Welch test of change[code_a] - change[code_b] for two slices of a PairedChange with disjoint speakers."""
    difference, lower, upper, se, df, p = welch_difference(
        change.delta[code_a], change.delta_variance[code_a], change.degrees_of_freedom[code_a],
        change.delta[code_b], change.delta_variance[code_b], change.degrees_of_freedom[code_b], options.confidence,
    )
    return DifferenceTest(
        value_a=float(change.delta[code_a]), value_b=float(change.delta[code_b]), difference=difference,
        definition="(WER_condition - WER_clean)(slice_a) - (WER_condition - WER_clean)(slice_b)",
        lower=lower, upper=upper, standard_error=se, degrees_of_freedom=df, p_value=p, confidence=options.confidence,
        n_speakers_a=int(change.n_speakers[code_a]), n_speakers_b=int(change.n_speakers[code_b]), method="welch_" + DIFFERENCE_METHOD,
    )


def _two_codes(cells: SliceCells, slice_a: object, slice_b: object) -> tuple[int, int]:
    code_a, code_b = _slice_code(cells.slices, slice_a), _slice_code(cells.slices, slice_b)
    if code_a == code_b:
        raise StatsInputError(SAME_SLICE.format(label=slice_a))
    in_a = set(cells.cluster[cells.slice == code_a].tolist())
    shared = sorted(in_a & set(cells.cluster[cells.slice == code_b].tolist()))
    if shared:
        raise StatsInputError(SHARED_SPEAKERS.format(count=len(shared), a=slice_a, b=slice_b, example=cells.cluster_names[shared[0]]))
    return code_a, code_b


def _slice_code(labels: tuple, label: object) -> int:
    for code, candidate in enumerate(labels):
        if candidate == label or (isinstance(candidate, float) and isinstance(label, float) and np.isnan(candidate) and np.isnan(label)):
            return code
    raise StatsInputError(UNKNOWN_SLICE.format(label=label, present=list(labels)))


__all__ = [
    "BOOTSTRAP_CENTRED", "DifferenceTest", "EqualityTest", "PERMUTATION_EXACT", "PERMUTATION_MONTE_CARLO",
    "chunk_sizes", "compare_slices", "degradation_difference", "differential_degradation", "equal_rate_test", "paired_difference",
    "welch_difference",
]
