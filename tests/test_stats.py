"""Tests for harness.stats: cells, the small rule, CR2 / Bell-McCaffrey intervals, tests, disparity, adjustment.

Known values come from formulas computed here independently (explicit matrices, scipy.stats.t,
brute-force enumeration), not from the code under test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from scipy.stats import false_discovery_control

from harness import stats
from harness.errors import HarnessError
from harness.stats import StatsInputError, StatsOptions
from harness.stats import _resampling


def cells(errors, words, clusters, slices=None):
    return stats.slice_cells(errors=np.asarray(errors, float), ref_words=np.asarray(words, float), clusters=clusters, slices=slices)


def _speaker_data(rng, *, n_speakers, mean_wer, first=0, concentration=20.0):
    rates = rng.beta(mean_wer * concentration, (1 - mean_wer) * concentration, size=n_speakers)
    n_utterances = rng.integers(3, 8, size=n_speakers)
    speaker = np.repeat(np.arange(first, first + n_speakers), n_utterances)
    words = rng.integers(4, 25, size=speaker.size)
    return rng.binomial(words, rates[speaker - first]), words, speaker


# --------------------------------------------------------------------------------------------------
# Point estimates and inputs


def test_pooled_wer_is_sum_of_errors_over_sum_of_words():
    assert stats.pooled_wer(errors=[1, 2, 3], ref_words=[10, 0, 20]) == pytest.approx(6 / 30)


def test_mean_utterance_wer_excludes_empty_references():
    assert stats.mean_utterance_wer(errors=[1, 5, 3], ref_words=[10, 0, 30]) == pytest.approx((0.1 + 0.1) / 2)


def test_rates_without_reference_words_are_nan():
    assert math.isnan(stats.pooled_wer(errors=[2], ref_words=[0])) and math.isnan(stats.mean_utterance_wer(errors=[2], ref_words=[0]))


def test_length_mismatch_and_negative_counts_name_the_problem():
    with pytest.raises(StatsInputError, match=r"ref_words has 2 values but errors has 3; pass one value per utterance row"):
        stats.pooled_wer(errors=[1, 2, 3], ref_words=[1, 2])
    with pytest.raises(StatsInputError, match=r"errors holds 1 negative value\(s\) \(first at row 1: -2.0\)"):
        stats.pooled_wer(errors=[1, -2], ref_words=[1, 2])
    with pytest.raises(StatsInputError, match=r"NaN or infinite"):
        cells([1, np.nan], [1, 2], ["a", "b"])
    assert issubclass(StatsInputError, HarnessError)


def test_cluster_labels_fall_back_to_utterance_id():
    labels = stats.cluster_labels(speakers=["s1", None, "", "s2"], utterance_ids=["u1", "u2", "u3", "u4"])
    assert labels.tolist() == ["s1", "utterance:u2", "utterance:u3", "s2"]


def test_cells_sum_rows_per_speaker_and_slice_and_keep_row_order_out():
    result = cells([1, 2, 3, 4], [10, 10, 10, 10], ["b", "a", "b", "a"], ["x", "x", "x", "y"])
    frame = pd.DataFrame({"cluster": result.cluster_names[result.cluster], "slice": np.array(result.slices)[result.slice], "e": result.errors, "w": result.words})
    assert sorted(map(tuple, frame.to_numpy().tolist())) == [("a", "x", 2.0, 10.0), ("a", "y", 4.0, 10.0), ("b", "x", 4.0, 20.0)]
    assert result.nested() is False  # speaker a is in both slices


def test_options_are_validated_once_with_exact_messages():
    with pytest.raises(StatsInputError, match=r"^confidence must be strictly between 0 and 1 \(e.g. 0.95\); got 1.2$"):
        StatsOptions(confidence=1.2)
    with pytest.raises(StatsInputError, match=r"min_speakers \(effective speakers\) must be a number of at least 1"):
        StatsOptions(min_speakers=0)
    with pytest.raises(StatsInputError, match=r"n_resamples must be an integer of at least 100"):
        StatsOptions(n_resamples=10)
    with pytest.raises(StatsInputError, match=r"min_words must be a non-negative integer"):
        StatsOptions(min_words=-1)
    assert StatsOptions(confidence=0.9).label == "90%" and StatsOptions(confidence=0.995).label == "99.5%"


def test_permutations_grow_with_the_family():
    options = StatsOptions(n_resamples=2000)
    assert options.n_permutations(1) == 2000  # 100 / 0.05 = 2000
    assert options.n_permutations(55) == 110_000  # Holm's smallest threshold 0.05 / 55 is 100x the Monte Carlo floor
    assert StatsOptions(confidence=0.99, n_resamples=500).n_permutations(1) == 10_000


# --------------------------------------------------------------------------------------------------
# The small rule


def test_effective_speakers_counts_a_dominant_speaker_as_about_one():
    # Ten speakers, one holding 95% of the words: the example ranked as worst before.
    words = np.array([950.0] + [50 / 9] * 9)
    assert stats.effective_speakers(words) == pytest.approx(1000**2 / (950**2 + 9 * (50 / 9) ** 2))
    assert stats.effective_speakers(words) < 1.11
    assert stats.effective_speakers(np.full(10, 7.0)) == pytest.approx(10)


@pytest.mark.parametrize(
    ("n_effective", "words", "small"),
    [(8.0, 100, False), (7.99, 100, True), (8.0, 99, True), (9.999999999999998, 100, False), (50, 5000, False), (1.1, 10_000, True)],
)
def test_small_rule_uses_effective_speakers_and_words_inclusively(n_effective, words, small):
    assert stats.is_small(np.array([n_effective]), np.array([words]), StatsOptions(min_speakers=8, min_words=100))[0] == small


def test_dominated_slice_is_small_and_gets_no_interval():
    errors = [95] + [1] * 9
    words = [950] + [6] * 9
    result = stats.slice_intervals(cells(errors, words, [f"s{i}" for i in range(10)]), StatsOptions())
    assert result.n_speakers[0] == 10 and result.n_effective_speakers[0] < 1.2 and result.small[0]
    assert math.isnan(result.lower[0]) and math.isnan(result.upper[0])


# --------------------------------------------------------------------------------------------------
# Intervals


def _bell_mccaffrey_by_matrices(words):
    """The Satterthwaite df tr(C)^2 / tr(C^2) from explicit n x n matrices, C = M' B M Phi (CR2 weights B, working Phi = diag(1/w))."""
    w = np.asarray(words, float)
    a = w / w.sum()
    n = w.size
    m = np.eye(n) - np.outer(np.ones(n), a)  # residuals of y_c = e_c / w_c around the weighted mean
    b = np.diag(a**2 / (1 - a))
    c = m.T @ b @ m @ np.diag(1 / w)
    return np.trace(c) ** 2 / np.trace(c @ c)


@pytest.mark.parametrize("words", [[10, 10, 10, 10], [5, 30, 12, 7, 40], [100, 3, 3, 3, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
def test_bell_mccaffrey_df_closed_form_equals_the_matrix_formula(words):
    ratio = stats._intervals.clustered_ratio(np.zeros(len(words), dtype=np.int64), np.ones(len(words)), np.asarray(words, float), 1)
    assert ratio.df[0] == pytest.approx(_bell_mccaffrey_by_matrices(words), rel=1e-10)


def test_equal_speakers_get_n_minus_one_df_and_a_dominant_one_few():
    ratio = stats._intervals.clustered_ratio(np.zeros(10, dtype=np.int64), np.ones(10), np.full(10, 8.0), 1)
    assert ratio.df[0] == pytest.approx(9)
    dominated = stats._intervals.clustered_ratio(np.zeros(10, dtype=np.int64), np.ones(10), np.array([900.0] + [10.0] * 9), 1)
    assert dominated.df[0] < 2


def test_ratio_interval_matches_a_hand_calculation_on_the_log_scale():
    e = np.array([3.0, 0.0, 5.0, 2.0, 9.0])
    w = np.array([20.0, 15.0, 30.0, 25.0, 40.0])
    rate, a = e.sum() / w.sum(), w / w.sum()
    variance = np.sum((e - rate * w) ** 2 / (1 - a) ** 2) / w.sum() ** 2  # CR3
    df = 1 / (np.sum(a**2 * (1 - 2 * a) / (1 - a) ** 2) + np.sum(a**2 / (1 - a)) ** 2)
    centre = math.log(rate) + variance / (2 * rate**2)  # second-order bias of log R
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(variance) / rate
    interval = stats.ratio_interval(cluster_errors=e, cluster_words=w, confidence=0.95)
    assert interval.estimate == pytest.approx(rate)
    assert interval.lower == pytest.approx(math.exp(centre - half), rel=1e-12) and interval.upper == pytest.approx(math.exp(centre + half), rel=1e-12)
    # Log scale: further above the estimate than below it (per-speaker rates are right-skewed).
    assert interval.upper - interval.estimate > interval.estimate - interval.lower


def test_fractional_df_t_quantile_matches_scipy():
    for df in (1.3, 4.0, 17.25, 500.0):
        assert stats._intervals.t_quantile(df, 0.95) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-10)


def test_zero_errors_give_the_poisson_bound_and_one_speaker_no_interval():
    zero = stats.ratio_interval(cluster_errors=np.zeros(4), cluster_words=np.array([25.0, 25, 25, 25]))
    assert (zero.estimate, zero.lower) == (0.0, 0.0) and zero.upper == pytest.approx(-math.log(0.025) / 100) and zero.method == "zero_errors_poisson_upper"
    single = stats.ratio_interval(cluster_errors=np.array([3.0]), cluster_words=np.array([30.0]))
    assert single.estimate == pytest.approx(0.1) and single.omitted


def test_wider_confidence_gives_wider_interval_and_bounds_recompute():
    rng = np.random.default_rng(3)
    e, w, s = _speaker_data(rng, n_speakers=30, mean_wer=0.2)
    result = stats.slice_intervals(cells(e, w, s), StatsOptions())
    low99, high99 = result.bounds(0.99)
    assert low99[0] < result.lower[0] < result.wer[0] < result.upper[0] < high99[0]


def test_slices_sharing_speakers_each_use_their_own_speakers():
    # The same speakers under two conditions: each condition's interval uses that condition's cells only.
    rng = np.random.default_rng(4)
    e, w, s = _speaker_data(rng, n_speakers=20, mean_wer=0.2)
    both = stats.slice_intervals(cells(np.concatenate([e, e * 2]), np.concatenate([w, w]), np.concatenate([s, s]), ["clean"] * e.size + ["noisy"] * e.size), StatsOptions())
    alone = stats.slice_intervals(cells(e, w, s), StatsOptions())
    assert both.lower[0] == pytest.approx(alone.lower[0]) and both.upper[0] == pytest.approx(alone.upper[0])
    assert both.n_speakers.tolist() == [20, 20]


# --------------------------------------------------------------------------------------------------
# Gap to overall


def test_gap_to_overall_variance_matches_the_influence_formula():
    e = np.array([2.0, 5, 1, 7, 3, 0, 4, 6])
    w = np.array([20.0, 30, 15, 40, 25, 10, 30, 35])
    slice_of = np.array(["x", "x", "x", "y", "y", "y", "y", "y"])
    result = stats.gaps_to_overall(cells(e, w, [f"s{i}" for i in range(8)], slice_of), StatsOptions())
    overall = e.sum() / w.sum()
    q = (e - overall * w) / w.sum()
    for k, label in enumerate(("x", "y")):
        inside = slice_of == label
        rate = e[inside].sum() / w[inside].sum()
        p = np.where(inside, (e - rate * w) / w[inside].sum(), 0.0)
        a = np.where(inside, w / w[inside].sum(), 0.0)
        variance = np.sum(np.where(inside, (p - q) ** 2 / (1 - a) ** 2, q**2))
        assert result.gap[k] == pytest.approx(rate - overall)
        assert result.statistic[k] == pytest.approx((rate - overall) / math.sqrt(variance))


# --------------------------------------------------------------------------------------------------
# Paired changes and differences


def test_paired_change_of_identical_runs_is_zero_with_p_one_and_no_interval():
    rng = np.random.default_rng(5)
    e, w, s = _speaker_data(rng, n_speakers=25, mean_wer=0.2)
    result = stats.paired_difference(errors_a=e, errors_b=e, ref_words=w, clusters=s)
    assert result.difference == 0 and result.p_value == 1 and result.interval_omitted


def test_sign_flip_p_value_is_exact_when_few_speakers_changed():
    # Five of 30 speakers each make one error more in run B: 2 of the 32 sign patterns are as extreme.
    rng = np.random.default_rng(6)
    e, w, s = _speaker_data(rng, n_speakers=30, mean_wer=0.2)
    b = e.copy()
    for speaker in range(5):
        b[np.flatnonzero(s == speaker)[0]] += 1
    result = stats.paired_difference(errors_a=e, errors_b=b, ref_words=w, clusters=s)
    assert result.p_value == pytest.approx(2 / 32)
    # Only 5 speakers changed: a t interval would claim [+0.02, +0.36] pts; none is given.
    assert result.interval_omitted


def test_paired_change_detects_a_real_improvement():
    rng = np.random.default_rng(7)
    e, w, s = _speaker_data(rng, n_speakers=40, mean_wer=0.3)
    b = rng.binomial(w, 0.15)
    result = stats.paired_difference(errors_a=e, errors_b=b, ref_words=w, clusters=s)
    assert result.difference < -0.1 and result.upper < 0 and result.p_value < 0.001


def test_monte_carlo_sign_flips_floor_at_one_over_b_plus_one():
    slice_codes = np.zeros(20, dtype=np.int64)
    p, exact = _resampling.sign_flip_p_values(slice_codes, np.arange(20), np.full(20, 3.0), 1, 999, np.random.default_rng(0))
    assert not exact[0] and p[0] == pytest.approx(1 / 1000)


def test_differential_degradation_values_by_hand():
    # Slice a: 10 speakers lose 2 of 20 words each (+10 pts); slice b: 10 speakers lose 0-1 (avg +2.5 pts).
    speakers = [f"s{i}" for i in range(20)]
    clean = np.zeros(20)
    condition = np.array([2.0] * 10 + [1, 0, 0, 1, 0, 0, 1, 0, 0, 2])
    words = np.full(20, 20.0)
    result = stats.differential_degradation(
        errors_clean=clean, errors_condition=condition, ref_words=words, clusters=speakers, slices=["a"] * 10 + ["b"] * 10, slice_a="a", slice_b="b",
    )
    assert result.value_a == pytest.approx(0.1) and result.value_b == pytest.approx(0.025) and result.difference == pytest.approx(0.075)
    assert result.lower > 0 and result.p_value < 0.01


def test_compare_slices_refuses_shared_speakers_and_unknown_slices():
    with pytest.raises(StatsInputError, match=r"1 speaker\(s\) appear in both slice 'a' and slice 'b'"):
        stats.compare_slices(errors=[1, 2, 3], ref_words=[9, 9, 9], clusters=["s1", "s1", "s2"], slices=["a", "b", "b"], slice_a="a", slice_b="b")
    with pytest.raises(StatsInputError, match=r"slice 'c' not found"):
        stats.compare_slices(errors=[1, 2], ref_words=[9, 9], clusters=["s1", "s2"], slices=["a", "b"], slice_a="a", slice_b="c")


# --------------------------------------------------------------------------------------------------
# The test of equal WER


def _welch_statistic(e, w, labels):
    """The Welch-type statistic written out per slice, independently of the vectorised code."""
    rates, variances = [], []
    floor = e.sum() / w.sum()
    for k in np.unique(labels):
        ek, wk = e[labels == k], w[labels == k]
        rate = ek.sum() / wk.sum()
        n = ek.size
        variance = n / (n - 1) * np.sum((ek - rate * wk) ** 2) / wk.sum() ** 2
        rates.append(rate)
        variances.append(max(variance, floor / wk.sum()))
    rates, weights = np.array(rates), 1 / np.array(variances)
    mean = np.sum(weights * rates) / weights.sum()
    return float(np.sum(weights * (rates - mean) ** 2))


def test_equal_rate_test_enumerates_every_permutation_when_few_speakers():
    e = np.array([1.0, 2, 0, 6, 5, 7])
    w = np.array([20.0, 25, 15, 20, 25, 22])
    labels = np.array([0, 0, 0, 1, 1, 1])
    result = stats.equal_rate_test(cells(e, w, [f"s{i}" for i in range(6)], labels), StatsOptions())
    observed = _welch_statistic(e, w, labels)
    brute = [_welch_statistic(e, w, np.isin(np.arange(6), chosen).astype(int)) for chosen in itertools.combinations(range(6), 3)]
    assert result.method == "exact_speaker_permutation_studentized" and result.n_resamples == 20
    assert result.statistic == pytest.approx(observed)
    assert result.p_value == pytest.approx(np.mean(np.array(brute) >= observed - 1e-9))


def test_equal_rate_test_uses_the_speaker_bootstrap_when_speakers_span_slices():
    rng = np.random.default_rng(8)
    e, w, s = _speaker_data(rng, n_speakers=40, mean_wer=0.2)
    device = rng.integers(0, 3, size=e.size)
    result = stats.equal_rate_test(cells(e, w, s, device), StatsOptions())
    assert result.method == "speaker_bootstrap_centred_studentized" and result.monte_carlo_se is not None and result.p_value > 0.01


def test_equal_rate_test_is_none_for_one_slice_and_one_for_no_errors():
    assert stats.equal_rate_test(cells([1, 2], [9, 9], ["a", "b"], ["x", "x"]), StatsOptions()) is None
    result = stats.equal_rate_test(cells([0, 0, 0, 0], [9, 9, 9, 9], ["a", "b", "c", "d"], ["x", "x", "y", "y"]), StatsOptions())
    assert result.p_value == 1.0


# --------------------------------------------------------------------------------------------------
# Disparity


def _slices(rng, rates, n_speakers=30):
    parts = [_speaker_data(rng, n_speakers=n_speakers, mean_wer=rate, first=k * n_speakers) for k, rate in enumerate(rates)]
    e = np.concatenate([p[0] for p in parts])
    w = np.concatenate([p[1] for p in parts])
    s = np.concatenate([p[2] for p in parts])
    labels = np.concatenate([[f"g{k}"] * p[0].size for k, p in enumerate(parts)])
    return cells(e, w, s, labels)


def test_disparity_is_detected_when_real_and_its_range_excludes_zero():
    grouped = _slices(np.random.default_rng(9), [0.1, 0.3, 0.2])
    options = StatsOptions()
    result = stats.disparity(stats.slice_intervals(grouped, options), grouped, options)
    assert result.detected and (result.worst_slice, result.best_slice) == ("g1", "g0")
    assert result.worst_minus_best.lower > 0 and result.worst_to_best_ratio.lower > 1
    assert result.gap_to_best.estimate[0] == 0 and result.gap_to_best.lower[0] == 0


def test_disparity_ranges_come_from_simultaneous_intervals():
    grouped = _slices(np.random.default_rng(10), [0.2, 0.2, 0.2, 0.2])
    options = StatsOptions()
    intervals = stats.slice_intervals(grouped, options)
    result = stats.disparity(intervals, grouped, options)
    level = 0.95 ** (1 / 4)
    assert result.simultaneous_confidence == pytest.approx(level)
    low, high = intervals.bounds(level)
    assert result.worst_minus_best.upper == pytest.approx(high.max() - low.min())
    assert result.worst_minus_best.lower == pytest.approx(max(0.0, low.max() - high.min()))
    # A plug-in gap is always positive; with equal true WERs its interval reaches 0.
    assert result.worst_minus_best.estimate > 0 and result.worst_minus_best.lower == 0 and not result.detected


def test_ineligible_slices_are_never_worst_best_or_an_anchor():
    grouped = _slices(np.random.default_rng(11), [0.05, 0.3, 0.2])
    options = StatsOptions()
    intervals = stats.slice_intervals(grouped, options)
    result = stats.disparity(intervals, grouped, options, eligible=np.array([False, True, True]))
    assert result.best_slice == "g2" and math.isnan(result.gap_to_best.estimate[0])
    assert result.gap_to_best.estimate[2] == 0


def test_gap_change_is_inconclusive_for_the_same_runs_and_shrank_when_the_gap_closes():
    options = StatsOptions()
    before = _slices(np.random.default_rng(12), [0.1, 0.4], n_speakers=60)
    after = _slices(np.random.default_rng(13), [0.2, 0.2], n_speakers=60)
    a, b = stats.slice_intervals(before, options), stats.slice_intervals(after, options)
    eligible = np.array([True, True])
    assert stats.gap_change(a, a, eligible, options).verdict == "inconclusive"
    closed = stats.gap_change(a, b, eligible, options)
    assert closed.verdict == "shrank" and closed.change.upper < 0


# --------------------------------------------------------------------------------------------------
# Multiple comparisons


def test_holm_known_values():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_ignores_nan_and_caps_at_one():
    adjusted = stats.holm([0.5, np.nan, 0.2])
    assert adjusted[0] == pytest.approx(0.5) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.4)
    assert stats.holm([0.9, 0.6]).tolist() == [1.0, 1.0]


def test_benjamini_hochberg_known_values():
    assert stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=40))
def test_benjamini_hochberg_equals_scipy(pvalues):
    assert np.allclose(stats.benjamini_hochberg(pvalues), false_discovery_control(pvalues, method="bh"), rtol=1e-12, atol=1e-15)


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=40))
def test_adjusted_pvalues_are_monotone_and_bounded(pvalues):
    raw = np.asarray(pvalues)
    order = np.argsort(raw, kind="stable")
    for adjusted in (stats.holm(raw), stats.benjamini_hochberg(raw)):
        assert np.all(adjusted >= raw - 1e-15) and np.all(adjusted <= 1.0)
        assert np.all(np.diff(adjusted[order]) >= -1e-15)
    assert np.all(stats.holm(raw) >= stats.benjamini_hochberg(raw) - 1e-15)


# --------------------------------------------------------------------------------------------------
# Properties

utterances = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 40), st.integers(0, 6), st.sampled_from(["x", "y", "z"])),
    min_size=1,
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(utterances, st.randoms(use_true_random=False))
def test_intervals_do_not_depend_on_row_order(rows, shuffler):
    errors = np.array([r[0] for r in rows], float)
    words = np.array([r[1] for r in rows], float)
    clusters = np.array([f"s{r[2]}" for r in rows])
    slices = np.array([r[3] for r in rows])
    order = list(range(len(rows)))
    shuffler.shuffle(order)
    options = StatsOptions(min_speakers=1, min_words=0)
    original = stats.slice_intervals(cells(errors, words, clusters, slices), options)
    shuffled = stats.slice_intervals(cells(errors[order], words[order], clusters[order], slices[order]), options)
    pd.testing.assert_frame_equal(original.to_frame(), shuffled.to_frame())


@settings(max_examples=40, deadline=None)
@given(utterances)
def test_slice_totals_add_up_to_overall(rows):
    errors = np.array([r[0] for r in rows], float)
    words = np.array([r[1] for r in rows], float)
    result = stats.slice_intervals(cells(errors, words, np.array([r[2] for r in rows]), np.array([r[3] for r in rows])), StatsOptions())
    assert result.errors.sum() == errors.sum() and result.ref_words.sum() == words.sum() and result.n_utterances.sum() == len(rows)
    for label, wer in zip(result.slices, result.wer):
        mask = np.array([r[3] == label for r in rows])
        expected = stats.pooled_wer(errors=errors[mask], ref_words=words[mask])
        assert (math.isnan(wer) and math.isnan(expected)) or wer == pytest.approx(expected)


def test_monte_carlo_sign_flips_agree_with_full_enumeration_per_slice():
    # 14 speakers changed in slice 0 and 13 in slice 1 (2**14 patterns: more than the 4,000 draws, so
    # Monte Carlo), with a speaker in both slices whose one sign flips both of its differences.
    rng = np.random.default_rng(11)
    differences = rng.integers(-4, 5, size=28).astype(float)
    differences[differences == 0] = 1.0
    slice_codes = np.array([0] * 14 + [1] * 14)
    clusters = np.concatenate([np.arange(14), np.arange(13, 27)])  # speaker 13 is in both slices
    p, exact = _resampling.sign_flip_p_values(slice_codes, clusters, differences, 2, 4000, np.random.default_rng(0))
    assert not exact.any()
    for k in (0, 1):
        values = differences[slice_codes == k]
        patterns = ((np.arange(2 ** values.size)[:, None] >> np.arange(values.size)) & 1) * 2.0 - 1.0
        truth = np.mean(np.abs(patterns @ values) >= abs(values.sum()) - 1e-9)
        assert abs(p[k] - truth) < 4 * math.sqrt(truth * (1 - truth) / 4000) + 1 / 4000, (k, p[k], truth)


def test_cells_are_the_same_whether_keys_are_counted_or_sorted():
    # Few possible (speaker, slice) keys are counted; very many (here 2 million speaker names for 500
    # rows) are sorted. Both must give the same cells.
    rng = np.random.default_rng(3)
    errors, words = rng.integers(0, 5, 500).astype(float), rng.integers(1, 20, 500).astype(float)
    clusters, slices = rng.integers(0, 40, 500), rng.integers(0, 3, 500)
    counted = stats.cells_from_codes(errors, words, clusters, np.arange(40), slices, ("a", "b", "c"))
    sorted_ = stats.cells_from_codes(errors, words, clusters, np.arange(2_000_000), slices, ("a", "b", "c"))
    for name in ("cluster", "slice", "errors", "words", "n_utterances"):
        np.testing.assert_array_equal(getattr(counted, name), getattr(sorted_, name))
    frame = pd.DataFrame({"e": errors, "w": words, "c": clusters, "s": slices})
    truth = frame.groupby(["c", "s"]).agg(e=("e", "sum"), w=("w", "sum"), n=("e", "size")).reset_index()
    for name, column in (("cluster", "c"), ("slice", "s"), ("errors", "e"), ("words", "w"), ("n_utterances", "n")):
        np.testing.assert_array_equal(getattr(counted, name), truth[column])


def test_cells_of_arrow_and_object_cluster_labels_agree():
    labels = ["spk-ä", "spk-b", None, "spk-a", "spk-ä", "Spk-z", "spk-b"]
    frame = pd.DataFrame({"errors": [1, 2, 3, 4, 5, 6, 7], "ref_words": [9] * 7, "accent": list("xyxyxyx"), "utterance_id": [f"u{i}" for i in range(7)]})
    arrow = stats.cells_from_frame(frame.assign(cluster=pd.array(labels, dtype="string[pyarrow]")), by="accent")
    objects = stats.cells_from_frame(frame.assign(cluster=pd.Series(labels, dtype=object)), by="accent")
    assert list(arrow.cluster_names[: 4]) == list(objects.cluster_names[: 4]) == ["Spk-z", "spk-a", "spk-b", "spk-ä"]
    for name in ("cluster", "slice", "errors", "words"):
        np.testing.assert_array_equal(getattr(arrow, name), getattr(objects, name))


def test_assignment_count_stops_above_its_limit_and_is_exact_below():
    labels = np.array([0, 0, 0, 1, 1, 1])  # 6! / (3! 3!) = 20 ways
    assert _resampling.n_assignments(labels) == 20
    assert _resampling.n_assignments(labels, limit=20) == 20 and _resampling.n_assignments(labels, limit=19) == 20
    many = np.repeat(np.arange(8), 12_500)  # 100,000 speakers: a count of about 90,000 digits, never computed
    assert _resampling.n_assignments(many, limit=2_000) == 2_001


def test_mean_utterance_wer_of_every_slice_at_once_equals_one_slice_at_a_time():
    rng = np.random.default_rng(9)
    errors, words, slices = rng.integers(0, 6, 300), rng.integers(0, 12, 300), rng.integers(0, 4, 300)
    slices[slices == 3] = 2  # slice 3 has no rows
    means = stats.mean_utterance_wers(errors=errors, ref_words=words, slices=slices, n_slices=4)
    for k in range(3):
        assert means[k] == pytest.approx(stats.mean_utterance_wer(errors=errors[slices == k], ref_words=words[slices == k]), rel=1e-12)
    assert np.isnan(means[3])
