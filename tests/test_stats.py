"""Tests for harness.stats: pooled ratios, clustered bootstrap, disparity, tests between slices and runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import false_discovery_control

from harness import stats
from harness.errors import HarnessError
from harness.stats import StatsInputError

T_975_DF3 = 3.182446305284263  # Student t 97.5% quantile, 3 degrees of freedom (tables)


def _speaker_data(rng: np.random.Generator, *, n_speakers: int, mean_wer: float, first_speaker: int = 0, concentration: float = 20.0):
    """Utterances of n speakers whose own WER is Beta around mean_wer; returns errors, words, speakers."""
    rates = rng.beta(mean_wer * concentration, (1 - mean_wer) * concentration, size=n_speakers)
    n_utterances = rng.integers(8, 16, size=n_speakers)
    speaker = np.repeat(np.arange(first_speaker, first_speaker + n_speakers), n_utterances)
    words = rng.integers(4, 25, size=speaker.size)
    errors = rng.binomial(words, rates[speaker - first_speaker])
    return errors, words, speaker


# --------------------------------------------------------------------------------------------------
# Point estimates


def test_pooled_wer_is_sum_of_errors_over_sum_of_words():
    assert stats.pooled_wer(errors=[1, 2, 3], ref_words=[10, 0, 20]) == pytest.approx(6 / 30)


def test_mean_utterance_wer_excludes_empty_references():
    # 1/10 and 3/20 are averaged; the empty reference with 2 insertions is left out of the mean.
    assert stats.mean_utterance_wer(errors=[1, 2, 3], ref_words=[10, 0, 20]) == pytest.approx((0.1 + 0.15) / 2)


@pytest.mark.parametrize("function", [stats.pooled_wer, stats.mean_utterance_wer])
def test_rates_without_reference_words_are_nan(function):
    assert math.isnan(function(errors=[2], ref_words=[0]))
    assert math.isnan(function(errors=[], ref_words=[]))


def test_pooled_and_mean_utterance_wer_differ_when_lengths_differ():
    errors, words = [1, 10], [2, 100]
    assert stats.pooled_wer(errors=errors, ref_words=words) == pytest.approx(11 / 102)
    assert stats.mean_utterance_wer(errors=errors, ref_words=words) == pytest.approx(0.3)


def test_length_mismatch_message_names_both_counts():
    with pytest.raises(StatsInputError) as caught:
        stats.pooled_wer(errors=[1, 2, 3], ref_words=[10, 20])
    assert str(caught.value) == stats.LENGTH_MISMATCH.format(name="ref_words", got=2, reference="errors", expected=3)
    assert isinstance(caught.value, HarnessError)


def test_negative_counts_are_rejected_with_row_and_value():
    with pytest.raises(StatsInputError) as caught:
        stats.pooled_wer(errors=[1, -2], ref_words=[10, 20])
    assert str(caught.value) == stats.NEGATIVE_COUNTS.format(name="errors", count=1, row=1, value=-2.0)


@pytest.mark.parametrize(
    ("n_speakers", "ref_words", "suppressed"),
    [
        (10, 100, False),
        (9, 1000, True),
        (50, 99, True),
        (1, 0, True),
        (200, 5000, False),
    ],
)
def test_suppression_mask_thresholds_are_inclusive_minimums(n_speakers, ref_words, suppressed):
    mask = stats.suppression_mask(n_speakers=[n_speakers], ref_words=[ref_words])
    assert mask.tolist() == [suppressed]


def test_suppression_mask_takes_custom_thresholds():
    mask = stats.suppression_mask(n_speakers=[3, 5], ref_words=[30, 50], min_speakers=5, min_ref_words=40)
    assert mask.tolist() == [True, False]


def test_cluster_labels_fall_back_to_utterance_id():
    labels = stats.cluster_labels(speakers=["s1", None, np.nan, "s2"], utterance_ids=["u1", "u2", "u3", "u4"])
    assert labels.tolist() == ["s1", "utterance:u2", "utterance:u3", "s2"]


# --------------------------------------------------------------------------------------------------
# Cluster-robust interval


def test_cluster_robust_ratio_ci_matches_hand_calculation():
    # R = 10/60; residuals e - R w = (-2/3, 1/3, -1/3, 2/3), sum of squares 10/9;
    # Var = 4/3 * (10/9) / 60^2 = 1/2430.
    ci = stats.cluster_robust_ratio_ci(cluster_errors=[1, 2, 3, 4], cluster_words=[10, 10, 20, 20], confidence=0.95)
    assert ci.estimate == pytest.approx(1 / 6)
    assert ci.standard_error == pytest.approx(math.sqrt(1 / 2430))
    assert ci.degrees_of_freedom == 3
    assert ci.n_clusters == 4
    half_width = T_975_DF3 * math.sqrt(1 / 2430)
    assert ci.lower == pytest.approx(1 / 6 - half_width)
    assert ci.upper == pytest.approx(1 / 6 + half_width)


def test_cluster_robust_ratio_ci_needs_two_clusters():
    ci = stats.cluster_robust_ratio_ci(cluster_errors=[3], cluster_words=[30])
    assert ci.estimate == pytest.approx(0.1)
    assert math.isnan(ci.lower) and math.isnan(ci.upper) and math.isnan(ci.standard_error)


def test_cluster_robust_and_bootstrap_intervals_agree_roughly():
    rng = np.random.default_rng(5)
    errors, words, speaker = _speaker_data(rng, n_speakers=60, mean_wer=0.2)
    boot = stats.slice_intervals(errors=errors, ref_words=words, clusters=speaker, slices=np.zeros(errors.size), seed=1, n_resamples=4000)
    robust = stats.cluster_robust_ratio_ci(
        cluster_errors=np.bincount(speaker, weights=errors), cluster_words=np.bincount(speaker, weights=words)
    )
    boot_width = boot.upper[0] - boot.lower[0]
    robust_width = robust.upper - robust.lower
    assert robust.estimate == pytest.approx(boot.wer[0])
    assert 0.8 < boot_width / robust_width < 1.2, f"bootstrap width {boot_width:.4f}, cluster-robust width {robust_width:.4f}"


# --------------------------------------------------------------------------------------------------
# Slice intervals


def _small_table():
    # Slice "a": speakers s1 (2 utts) and s2; slice "b": s3 only.
    return {
        "errors": np.array([1, 2, 3, 4, 5]),
        "ref_words": np.array([10, 10, 20, 40, 10]),
        "clusters": np.array(["s1", "s1", "s2", "s3", "s3"]),
        "slices": np.array(["a", "a", "a", "b", "b"]),
    }


def test_slice_intervals_counts_and_point_estimates_by_hand():
    result = stats.slice_intervals(**_small_table(), seed=0, min_speakers=2)
    assert result.slices == ("a", "b")
    assert result.wer.tolist() == pytest.approx([6 / 40, 9 / 50])
    assert result.errors.tolist() == [6, 9]
    assert result.ref_words.tolist() == [40, 50]
    assert result.n_speakers.tolist() == [2, 1]
    assert result.n_utterances.tolist() == [3, 2]
    assert result.overall.estimate == pytest.approx(15 / 90)
    assert result.overall_n_speakers == 3


def test_single_speaker_slice_has_no_interval():
    result = stats.slice_intervals(**_small_table(), seed=0, min_speakers=2)
    assert result.interval_omitted.tolist() == [False, True]
    assert math.isnan(result.lower[1]) and math.isnan(result.upper[1])
    assert result.lower[0] <= result.wer[0] <= result.upper[0]


def test_slices_below_default_min_speakers_have_no_interval():
    result = stats.slice_intervals(**_small_table(), seed=0)
    assert result.interval_omitted.all()
    assert result.overall.omitted
    frame = result.to_frame()
    assert frame["lower"].isna().all() and frame["wer"].notna().all()


def test_min_speakers_below_two_is_refused():
    with pytest.raises(StatsInputError) as caught:
        stats.slice_intervals(**_small_table(), seed=0, min_speakers=1)
    assert str(caught.value) == stats.BAD_MIN_SPEAKERS.format(value=1)


def test_interval_contains_point_estimate_and_is_reproducible():
    rng = np.random.default_rng(11)
    errors_a, words_a, speaker_a = _speaker_data(rng, n_speakers=30, mean_wer=0.1)
    errors_b, words_b, speaker_b = _speaker_data(rng, n_speakers=25, mean_wer=0.3, first_speaker=100)
    arguments = dict(
        errors=np.concatenate([errors_a, errors_b]),
        ref_words=np.concatenate([words_a, words_b]),
        clusters=np.concatenate([speaker_a, speaker_b]),
        slices=np.array(["a"] * errors_a.size + ["b"] * errors_b.size),
    )
    first = stats.slice_intervals(**arguments, seed=42)
    again = stats.slice_intervals(**arguments, seed=42)
    other = stats.slice_intervals(**arguments, seed=43)
    assert np.all(first.lower < first.wer) and np.all(first.wer < first.upper)
    assert np.array_equal(first.lower, again.lower) and np.array_equal(first.upper, again.upper)
    assert np.array_equal(first.draws, again.draws)
    assert not np.array_equal(first.lower, other.lower)
    assert first.seed == 42 and first.n_resamples == 1000 and first.confidence == 0.95


def test_generator_seed_is_accepted_and_reproducible():
    arguments = _small_table()
    first = stats.slice_intervals(**arguments, seed=np.random.default_rng(3), min_speakers=2)
    again = stats.slice_intervals(**arguments, seed=np.random.default_rng(3), min_speakers=2)
    assert np.array_equal(first.draws, again.draws, equal_nan=True)
    assert first.seed is None


def test_wider_confidence_gives_wider_interval():
    rng = np.random.default_rng(2)
    errors, words, speaker = _speaker_data(rng, n_speakers=40, mean_wer=0.2)
    slices = np.zeros(errors.size)
    narrow = stats.slice_intervals(errors=errors, ref_words=words, clusters=speaker, slices=slices, seed=0, confidence=0.8)
    wide = stats.slice_intervals(errors=errors, ref_words=words, clusters=speaker, slices=slices, seed=0, confidence=0.99)
    assert wide.lower[0] < narrow.lower[0] < narrow.upper[0] < wide.upper[0]


def test_slices_sharing_speakers_are_resampled_jointly():
    # The same utterances under two "conditions" with identical errors: every replicate must give
    # both slices the same WER, so the gap between them is exactly zero in every draw.
    rng = np.random.default_rng(8)
    errors, words, speaker = _speaker_data(rng, n_speakers=30, mean_wer=0.2)
    result = stats.slice_intervals(
        errors=np.concatenate([errors, errors]),
        ref_words=np.concatenate([words, words]),
        clusters=np.concatenate([speaker, speaker]),
        slices=np.array(["clean"] * errors.size + ["noisy"] * errors.size),
        seed=1,
    )
    assert np.array_equal(result.draws[:, 0], result.draws[:, 1])
    gap = stats.disparity(result).worst_minus_best
    assert (gap.estimate, gap.lower, gap.upper) == (0.0, 0.0, 0.0)


def test_missing_speaker_makes_each_utterance_its_own_cluster():
    table = _small_table()
    clusters = np.array([None, None, None, "s3", "s3"], dtype=object)
    result = stats.slice_intervals(**{**table, "clusters": clusters}, seed=0, min_speakers=2)
    assert result.n_speakers.tolist() == [3, 1]


def test_strata_must_be_constant_within_a_speaker():
    table = _small_table()
    with pytest.raises(StatsInputError) as caught:
        stats.slice_intervals(**table, seed=0, strata=["x", "y", "x", "x", "x"])
    assert str(caught.value) == stats.STRATUM_SPLITS_CLUSTER.format(cluster="s1", first="x", second="y")


def test_stratified_resampling_never_loses_a_slice():
    rng = np.random.default_rng(4)
    errors_a, words_a, speaker_a = _speaker_data(rng, n_speakers=200, mean_wer=0.1)
    errors_b, words_b, speaker_b = _speaker_data(rng, n_speakers=2, mean_wer=0.1, first_speaker=1000)
    slices = np.array(["big"] * errors_a.size + ["tiny"] * errors_b.size)
    arguments = dict(
        errors=np.concatenate([errors_a, errors_b]),
        ref_words=np.concatenate([words_a, words_b]),
        clusters=np.concatenate([speaker_a, speaker_b]),
        slices=slices,
        min_speakers=2,
    )
    unstratified = stats.slice_intervals(**arguments, seed=0)
    stratified = stats.slice_intervals(**arguments, seed=0, strata=slices)
    # Without strata the two-speaker slice is absent from some replicates (about exp(-2) of them).
    assert np.isnan(unstratified.draws[:, 1]).mean() == pytest.approx(math.exp(-2), abs=0.04)
    assert not np.isnan(stratified.draws).any()
    assert stratified.stratified and not unstratified.stratified


def test_slice_intervals_from_results_drops_failures_and_uses_utterance_ids():
    results = pd.DataFrame(
        {
            "utterance_id": ["u1", "u2", "u3", "u1", "u2", "u3"],
            "speaker": ["s1", "s1", None, "s1", "s1", None],
            "condition": ["clean", "clean", "clean", "babble", "babble", "babble"],
            "snr_db": [np.nan, np.nan, np.nan, 5.0, 5.0, 5.0],
            "status": ["ok", "ok", "ok", "ok", "failed", "ok"],
            "errors": [1, 0, 2, 3, 0, 4],
            "ref_words": [10, 5, 10, 10, 0, 10],
        }
    )
    result = stats.slice_intervals_from_results(results, by=["condition", "snr_db"], seed=0, min_speakers=2)
    frame = result.to_frame()
    assert list(frame["slice"]) == [("babble", 5.0), ("clean", None)] or (
        frame["slice"][0] == ("babble", 5.0) and frame["slice"][1][0] == "clean" and math.isnan(frame["slice"][1][1])
    )
    assert frame["wer"].tolist() == pytest.approx([7 / 20, 3 / 25])
    assert frame["n_utterances"].tolist() == [2, 3]
    assert frame["n_speakers"].tolist() == [2, 2]  # s1 and utterance:u3


def test_slice_intervals_from_results_names_missing_column():
    with pytest.raises(StatsInputError, match="results has no column 'accent'"):
        stats.slice_intervals_from_results(pd.DataFrame({"utterance_id": ["u1"], "errors": [0], "ref_words": [1]}), by="accent", seed=0)


# --------------------------------------------------------------------------------------------------
# Disparity


def _three_slices(seed: int = 9):
    rng = np.random.default_rng(seed)
    parts = [
        _speaker_data(rng, n_speakers=30, mean_wer=0.10, first_speaker=0),
        _speaker_data(rng, n_speakers=30, mean_wer=0.20, first_speaker=100),
        _speaker_data(rng, n_speakers=3, mean_wer=0.50, first_speaker=200),
    ]
    names = ["low", "high", "tiny"]
    return dict(
        errors=np.concatenate([p[0] for p in parts]),
        ref_words=np.concatenate([p[1] for p in parts]),
        clusters=np.concatenate([p[2] for p in parts]),
        slices=np.concatenate([[name] * p[0].size for name, p in zip(names, parts)]),
    )


def test_disparity_point_estimates_and_eligibility():
    result = stats.slice_intervals(**_three_slices(), seed=0)
    measures = stats.disparity(result)
    wer = dict(zip(result.slices, result.wer))
    assert measures.slices_compared == ("high", "low")  # "tiny" has 3 < 10 speakers
    assert measures.worst_slice == "high" and measures.best_slice == "low"
    assert measures.worst_to_best_ratio.estimate == pytest.approx(wer["high"] / wer["low"])
    assert measures.worst_minus_best.estimate == pytest.approx(wer["high"] - wer["low"])
    assert measures.gap_to_overall.estimate.tolist() == pytest.approx([w - result.overall.estimate for w in result.wer])
    assert measures.ratio_to_best.estimate.tolist() == pytest.approx([w / wer["low"] for w in result.wer])
    tiny = result.slices.index("tiny")
    assert math.isnan(measures.gap_to_best.lower[tiny]) and not math.isnan(measures.gap_to_best.estimate[tiny])


def test_disparity_intervals_are_ordered_and_sensible():
    measures = stats.disparity(stats.slice_intervals(**_three_slices(), seed=0))
    ratio = measures.worst_to_best_ratio
    assert 1.0 < ratio.lower < ratio.estimate < ratio.upper
    gap = measures.worst_minus_best
    assert 0.0 < gap.lower < gap.upper
    best = list(measures.gap_to_best.slices).index("low")
    assert measures.gap_to_best.lower[best] == 0.0  # "best" is recomputed per replicate, gaps are >= 0


def test_disparity_with_one_eligible_slice_has_no_worst_or_best():
    data = _three_slices()
    keep = data["slices"] != "high"
    measures = stats.disparity(stats.slice_intervals(**{k: v[keep] for k, v in data.items()}, seed=0))
    assert measures.worst_slice is None and measures.best_slice is None
    assert math.isnan(measures.worst_to_best_ratio.estimate) and measures.worst_to_best_ratio.omitted


def test_disparity_ratio_with_zero_wer_best_slice_is_infinite():
    rng = np.random.default_rng(1)
    errors, words, speaker = _speaker_data(rng, n_speakers=20, mean_wer=0.2)
    result = stats.slice_intervals(
        errors=np.concatenate([errors, np.zeros_like(errors)]),
        ref_words=np.concatenate([words, words]),
        clusters=np.concatenate([speaker, speaker + 100]),
        slices=np.array(["some"] * errors.size + ["perfect"] * errors.size),
        seed=0,
    )
    ratio = stats.disparity(result).worst_to_best_ratio
    assert ratio.estimate == math.inf and ratio.upper == math.inf and ratio.lower == math.inf


# --------------------------------------------------------------------------------------------------
# Tests between slices and runs


def test_paired_difference_detects_a_real_difference():
    rng = np.random.default_rng(21)
    errors_a, words, speaker = _speaker_data(rng, n_speakers=40, mean_wer=0.15)
    errors_b = errors_a + rng.binomial(words, 0.03)  # run B makes about 3 points more errors
    result = stats.paired_difference(errors_a=errors_a, errors_b=errors_b, ref_words=words, clusters=speaker, seed=0)
    assert result.difference == pytest.approx((errors_b.sum() - errors_a.sum()) / words.sum())
    assert result.value_b - result.value_a == pytest.approx(result.difference)
    assert 0 < result.lower < result.difference < result.upper
    assert result.p_value < 0.05
    assert result.p_value_method == "monte_carlo_speaker_sign_flip"


def test_paired_difference_of_identical_runs_is_zero_with_p_one():
    rng = np.random.default_rng(22)
    errors, words, speaker = _speaker_data(rng, n_speakers=40, mean_wer=0.15)
    result = stats.paired_difference(errors_a=errors, errors_b=errors, ref_words=words, clusters=speaker, seed=0)
    assert (result.difference, result.lower, result.upper, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_difference_is_exact_for_few_speakers():
    # Three speakers, each with B worse than A: of the 8 sign flips only all-plus and all-minus are as
    # extreme, so p = 2/8. The interval is omitted (3 < 10 speakers).
    result = stats.paired_difference(
        errors_a=[1, 1, 1], errors_b=[2, 3, 2], ref_words=[10, 10, 10], clusters=["s1", "s2", "s3"], seed=0
    )
    assert result.p_value == pytest.approx(0.25)
    assert result.p_value_method == "exact_speaker_sign_flip"
    assert result.interval_omitted
    assert result.difference == pytest.approx(4 / 30)


def test_paired_difference_without_a_difference_is_not_significant():
    rng = np.random.default_rng(23)
    _, words, speaker = _speaker_data(rng, n_speakers=40, mean_wer=0.15)
    rates = rng.beta(3, 17, size=speaker.max() + 1)[speaker]
    errors_a, errors_b = rng.binomial(words, rates), rng.binomial(words, rates)  # same model, fresh noise
    result = stats.paired_difference(errors_a=errors_a, errors_b=errors_b, ref_words=words, clusters=speaker, seed=0)
    assert result.p_value > 0.05
    assert result.lower < 0 < result.upper


def _two_accents(rng, *, wer_a: float, wer_b: float):
    errors_a, words_a, speaker_a = _speaker_data(rng, n_speakers=30, mean_wer=wer_a)
    errors_b, words_b, speaker_b = _speaker_data(rng, n_speakers=30, mean_wer=wer_b, first_speaker=1000)
    return dict(
        errors=np.concatenate([errors_a, errors_b]),
        ref_words=np.concatenate([words_a, words_b]),
        clusters=np.concatenate([speaker_a, speaker_b]),
        slices=np.array(["a"] * errors_a.size + ["b"] * errors_b.size),
    )


def test_compare_slices_detects_a_difference_and_not_a_non_difference():
    rng = np.random.default_rng(31)
    different = stats.compare_slices(**_two_accents(rng, wer_a=0.25, wer_b=0.12), slice_a="a", slice_b="b", seed=0)
    assert different.p_value < 0.01
    assert 0 < different.lower < different.difference < different.upper
    assert different.n_speakers_a == 30 and different.n_speakers_b == 30
    same = stats.compare_slices(**_two_accents(rng, wer_a=0.15, wer_b=0.15), slice_a="a", slice_b="b", seed=0)
    assert same.p_value > 0.05
    assert same.lower < 0 < same.upper


def test_compare_slices_refuses_shared_speakers():
    with pytest.raises(StatsInputError) as caught:
        stats.compare_slices(
            errors=[1, 2, 3], ref_words=[10, 10, 10], clusters=["s1", "s1", "s2"], slices=["a", "b", "b"], slice_a="a", slice_b="b", seed=0
        )
    assert "1 speaker(s) appear in both slice 'a' and slice 'b' (e.g. 's1')" in str(caught.value)


def test_compare_slices_names_unknown_slice():
    with pytest.raises(StatsInputError) as caught:
        stats.compare_slices(
            errors=[1, 2], ref_words=[10, 10], clusters=["s1", "s2"], slices=["a", "b"], slice_a="a", slice_b="c", seed=0
        )
    assert str(caught.value) == stats.UNKNOWN_SLICE.format(label="c", present=["a", "b"])


def _degradation_data(rng, *, extra_loss: dict[str, float]):
    """Three accents with different clean WER; under noise each loses 5 points plus extra_loss[accent]."""
    errors_clean, errors_noisy, words, speakers, slices = [], [], [], [], []
    for index, (accent, clean_wer) in enumerate([("a", 0.10), ("b", 0.20), ("c", 0.15)]):
        e, w, s = _speaker_data(rng, n_speakers=30, mean_wer=clean_wer, first_speaker=1000 * index)
        speaker_loss = rng.beta(2, 18, size=30) * (0.05 + extra_loss.get(accent, 0.0)) / 0.1  # varies by speaker
        errors_clean.append(e)
        errors_noisy.append(e + rng.binomial(w, speaker_loss[s - 1000 * index]))
        words.append(w)
        speakers.append(s)
        slices.append([accent] * e.size)
    return dict(
        errors_clean=np.concatenate(errors_clean),
        errors_condition=np.concatenate(errors_noisy),
        ref_words=np.concatenate(words),
        clusters=np.concatenate(speakers),
        slices=np.concatenate(slices),
    )


def test_differential_degradation_detects_the_slice_that_degrades_more():
    data = _degradation_data(np.random.default_rng(41), extra_loss={"a": 0.08})
    worse = stats.differential_degradation(**data, slice_a="a", slice_b="b", seed=0)
    assert worse.difference > 0.04
    assert worse.p_value < 0.01
    assert 0 < worse.lower < worse.upper
    # b and c start from different clean WER but lose the same: no differential degradation.
    same = stats.differential_degradation(**data, slice_a="b", slice_b="c", seed=0)
    assert same.p_value > 0.05
    assert same.lower < 0 < same.upper
    assert same.p_value_method == "monte_carlo_speaker_permutation_between_slices"


def test_differential_degradation_values_by_hand():
    result = stats.differential_degradation(
        errors_clean=[1, 1, 2, 2],
        errors_condition=[3, 2, 2, 3],
        ref_words=[10, 10, 10, 10],
        clusters=["s1", "s2", "s3", "s4"],
        slices=["a", "a", "b", "b"],
        slice_a="a",
        slice_b="b",
        seed=0,
        min_speakers=2,
    )
    assert result.value_a == pytest.approx(3 / 20)
    assert result.value_b == pytest.approx(1 / 20)
    assert result.difference == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------------
# Multiple comparisons


def test_holm_known_values():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_ignores_nan_and_caps_at_one():
    # m = 2 (NaN does not count): sorted 0.2, 0.5 -> 0.4, 0.5; 0.9 * 2 caps at 1.
    adjusted = stats.holm([0.5, np.nan, 0.2])
    assert adjusted[0] == pytest.approx(0.5) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.4)
    assert stats.holm([0.9, 0.6]).tolist() == [1.0, 1.0]


def test_benjamini_hochberg_known_values():
    # Sorted 0.005, 0.01, 0.03, 0.04 -> 4p/rank = 0.02, 0.02, 0.04, 0.04.
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


def test_empty_pvalues_give_empty_result():
    assert stats.holm([]).size == 0 and stats.benjamini_hochberg([]).size == 0


# --------------------------------------------------------------------------------------------------
# Properties

utterances = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 40), st.integers(0, 6), st.sampled_from(["x", "y", "z"])),
    min_size=1,
    max_size=60,
)


@given(utterances, utterances)
def test_pooled_wer_of_union_is_total_errors_over_total_words(first, second):
    e1, w1 = [u[0] for u in first], [u[1] for u in first]
    e2, w2 = [u[0] for u in second], [u[1] for u in second]
    union = stats.pooled_wer(errors=e1 + e2, ref_words=w1 + w2)
    total_words = sum(w1) + sum(w2)
    if total_words == 0:
        assert math.isnan(union)
    else:
        assert union == pytest.approx((sum(e1) + sum(e2)) / total_words)


@settings(max_examples=40, deadline=None)
@given(utterances, st.randoms(use_true_random=False))
def test_slice_intervals_do_not_depend_on_row_order(rows, shuffler):
    errors = np.array([r[0] for r in rows])
    words = np.array([r[1] for r in rows])
    clusters = np.array([f"s{r[2]}" for r in rows])
    slices = np.array([r[3] for r in rows])
    order = list(range(len(rows)))
    shuffler.shuffle(order)
    kwargs = dict(seed=7, n_resamples=50, min_speakers=2)
    original = stats.slice_intervals(errors=errors, ref_words=words, clusters=clusters, slices=slices, **kwargs)
    shuffled = stats.slice_intervals(errors=errors[order], ref_words=words[order], clusters=clusters[order], slices=slices[order], **kwargs)
    pd.testing.assert_frame_equal(original.to_frame(), shuffled.to_frame())
    assert np.array_equal(original.draws, shuffled.draws, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(utterances)
def test_slice_totals_add_up_to_overall(rows):
    errors = np.array([r[0] for r in rows])
    words = np.array([r[1] for r in rows])
    result = stats.slice_intervals(
        errors=errors, ref_words=words, clusters=np.array([r[2] for r in rows]), slices=np.array([r[3] for r in rows]), seed=0, n_resamples=20
    )
    assert result.errors.sum() == errors.sum() and result.ref_words.sum() == words.sum()
    assert result.n_utterances.sum() == len(rows)
    for label, wer in zip(result.slices, result.wer):
        mask = np.array([r[3] == label for r in rows])
        expected = stats.pooled_wer(errors=errors[mask], ref_words=words[mask])
        assert (math.isnan(wer) and math.isnan(expected)) or wer == pytest.approx(expected)


def test_sparse_and_dense_paths_give_the_same_draws(monkeypatch):
    data = _three_slices()
    dense = stats.slice_intervals(**data, seed=5, n_resamples=200)
    monkeypatch.setattr(stats, "_DENSE_CELLS_LIMIT", 0)
    sparse_path = stats.slice_intervals(**data, seed=5, n_resamples=200)
    assert np.allclose(dense.draws, sparse_path.draws, equal_nan=True, rtol=1e-12)


def test_chunking_does_not_change_results(monkeypatch):
    data = _three_slices()
    whole = stats.slice_intervals(**data, seed=5, n_resamples=200)
    monkeypatch.setattr(stats, "_CELLS_PER_CHUNK", 1000)  # a few replicates per chunk
    chunked = stats.slice_intervals(**data, seed=5, n_resamples=200)
    assert np.array_equal(whole.draws, chunked.draws, equal_nan=True)
