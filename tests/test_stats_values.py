"""harness.stats field by field against values computed here another way: plain loops over speakers for the
CR3 variance and Bell-McCaffrey df, scipy.stats for t quantiles and p-values, brute-force enumeration for
exact permutation and sign-flip tests.

These tests exist because a mutation run (benchmarks/README.md, "Mutation testing") showed changes to
this code that the rest of the suite did not notice; each asserts values a wrong implementation gets wrong.
Warnings are errors here: the statistics must handle zero variances, single speakers and empty slices
without numpy warnings leaking to the terminal.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from harness import stats
from harness.stats import StatsInputError, StatsOptions

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def cr3(errors, words):
    """Pooled rate, CR3 variance and Bell-McCaffrey df of per-speaker totals, one speaker at a time."""
    total_e, total_w = float(sum(errors)), float(sum(words))
    rate = total_e / total_w
    variance = first = second = 0.0
    for e, w in zip(errors, words, strict=True):
        a = w / total_w
        variance += (e - rate * w) ** 2 / (1 - a) ** 2
        first += a**2 * (1 - 2 * a) / (1 - a) ** 2
        second += a**2 / (1 - a)
    return rate, variance / total_w**2, 1 / (first + second**2)


def welch(value_a, variance_a, df_a, value_b, variance_b, df_b, confidence=0.95):
    difference = value_a - value_b
    variance = variance_a + variance_b
    df = variance**2 / (variance_a**2 / df_a + variance_b**2 / df_b)
    se = math.sqrt(variance)
    t = scipy_stats.t.ppf(0.5 + confidence / 2, df)
    return difference, difference - t * se, difference + t * se, se, df, 2 * scipy_stats.t.sf(abs(difference) / se, df)


# Two accents of distinct speakers; speakers have several utterances (rows), summed into one cell each.
A_ERRORS = [3.0, 0.0, 5.0, 2.0, 9.0]
A_WORDS = [20.0, 15.0, 30.0, 25.0, 40.0]
B_ERRORS = [1.0, 4.0, 2.0, 0.0, 3.0, 6.0]
B_WORDS = [10.0, 30.0, 20.0, 15.0, 25.0, 30.0]


def two_slices():
    """Rows: each speaker's totals split over two utterances (a third / two thirds, rounded), in mixed order."""
    rows = []
    for label, errors, words, prefix in (("a", A_ERRORS, A_WORDS, "a"), ("b", B_ERRORS, B_WORDS, "b")):
        for i, (e, w) in enumerate(zip(errors, words, strict=True)):
            e1, w1 = e // 3, w // 3
            rows += [(f"{prefix}{i}", label, e1, w1), (f"{prefix}{i}", label, e - e1, w - w1)]
    rows = rows[::2] + rows[1::2]
    speakers, labels, errors, words = (list(column) for column in zip(*rows, strict=True))
    return np.array(errors), np.array(words), speakers, labels


# --------------------------------------------------------------------------------------------------
# Two slices of one run: compare_slices


def test_compare_slices_every_field_by_hand():
    errors, words, speakers, labels = two_slices()
    result = stats.compare_slices(errors=errors, ref_words=words, clusters=speakers, slices=labels, slice_a="a", slice_b="b")
    rate_a, var_a, df_a = cr3(A_ERRORS, A_WORDS)
    rate_b, var_b, df_b = cr3(B_ERRORS, B_WORDS)
    difference, lower, upper, se, df, p = welch(rate_a, var_a, df_a, rate_b, var_b, df_b)
    assert (result.value_a, result.value_b) == (pytest.approx(19 / 130), pytest.approx(16 / 130))
    assert result.value_a == pytest.approx(rate_a, rel=1e-12) and result.value_b == pytest.approx(rate_b, rel=1e-12)
    assert result.difference == pytest.approx(difference, rel=1e-12)
    assert result.standard_error == pytest.approx(se, rel=1e-12) and result.degrees_of_freedom == pytest.approx(df, rel=1e-12)
    assert result.lower == pytest.approx(lower, rel=1e-10) and result.upper == pytest.approx(upper, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-10)
    assert (result.n_speakers_a, result.n_speakers_b, result.confidence) == (5, 6, 0.95)
    assert result.definition == "WER(slice_a) - WER(slice_b)" and result.method == "welch_cr3_bell_mccaffrey_t"
    assert not result.interval_omitted
    # Other way round: the difference and interval change sign, the rest stays.
    swapped = stats.compare_slices(errors=errors, ref_words=words, clusters=speakers, slices=labels, slice_a="b", slice_b="a")
    assert swapped.difference == pytest.approx(-difference) and swapped.lower == pytest.approx(-upper) and swapped.p_value == pytest.approx(p)
    # The confidence comes from the options.
    wide = stats.compare_slices(errors=errors, ref_words=words, clusters=speakers, slices=labels, slice_a="a", slice_b="b", options=StatsOptions(confidence=0.8))
    assert wide.confidence == 0.8 and wide.lower == pytest.approx(welch(rate_a, var_a, df_a, rate_b, var_b, df_b, 0.8)[1], rel=1e-10)


def test_compare_slices_with_no_spread_and_with_one_speaker():
    # Every speaker of a slice has the same rate: no spread, df the smaller of the two, p 0 or 1.
    flat = dict(errors=[1, 2, 3, 6, 3], ref_words=[10, 20, 10, 20, 10], clusters=["a1", "a2", "b1", "b2", "b3"], slices=["a", "a", "b", "b", "b"])
    result = stats.compare_slices(**flat, slice_a="a", slice_b="b")
    assert result.difference == pytest.approx(-0.2) and result.standard_error == 0
    assert result.lower == pytest.approx(-0.2) and result.upper == pytest.approx(-0.2) and result.p_value == 0.0
    assert result.degrees_of_freedom == pytest.approx(min(cr3([1, 2], [10, 20])[2], cr3([3, 6, 3], [10, 20, 10])[2]))
    same = stats.compare_slices(errors=[1, 2, 1, 2], ref_words=[10, 20, 10, 20], clusters=["a1", "a2", "b1", "b2"], slices=["a", "a", "b", "b"], slice_a="a", slice_b="b")
    assert same.difference == 0 and same.p_value == 1.0
    # One speaker: no variance can be estimated, so nothing but the values is given.
    single = stats.compare_slices(errors=[1, 2, 3], ref_words=[10, 20, 10], clusters=["a1", "a2", "b1"], slices=["a", "a", "b"], slice_a="a", slice_b="b")
    assert single.difference == pytest.approx(0.1 - 0.3)
    assert all(math.isnan(v) for v in (single.lower, single.upper, single.standard_error, single.degrees_of_freedom, single.p_value))
    assert single.interval_omitted


def test_welch_difference_of_non_finite_variance_is_all_nan():
    f = np.float64
    out = stats._tests.welch_difference(f(0.2), f(np.inf), f(5.0), f(0.1), f(0.001), f(7.0), 0.95)
    assert out[0] == pytest.approx(0.1) and all(math.isnan(v) for v in out[1:])


def test_two_slices_must_be_two_and_known():
    errors, words, speakers, labels = two_slices()
    with pytest.raises(StatsInputError, match=r"^slice_a and slice_b are both 'a'; compare two different slices$"):
        stats.compare_slices(errors=errors, ref_words=words, clusters=speakers, slices=labels, slice_a="a", slice_b="a")
    with pytest.raises(StatsInputError, match=r"^slice 'c' not found; slices present: \['a', 'b'\]$"):
        stats.compare_slices(errors=errors, ref_words=words, clusters=speakers, slices=labels, slice_a="c", slice_b="a")
    shared = speakers[:]
    shared[-1] = "a0"
    with pytest.raises(StatsInputError, match=r"^1 speaker\(s\) appear in both slice 'a' and slice 'b' \(e.g. 'a0'\); the slices are not independent"):
        stats.compare_slices(errors=errors, ref_words=words, clusters=shared, slices=labels, slice_a="a", slice_b="b")


def test_a_missing_label_is_a_slice_that_can_be_named():
    # cells_from_frame keeps missing tags as a NaN slice; NaN != NaN, so it must still be found by name.
    cells = stats.cells_from_frame(pd.DataFrame({
        "accent": ["x", "x", None, None], "errors": [1, 2, 3, 4], "ref_words": [10, 10, 10, 10], "utterance_id": ["u1", "u2", "u3", "u4"],
        "speaker": ["s1", "s2", "s3", "s4"],
    }), by="accent")
    assert stats._tests._slice_code(cells.slices, float("nan")) == 1 and stats._tests._slice_code(cells.slices, "x") == 0
    with pytest.raises(StatsInputError, match="not found"):
        stats._tests._slice_code(("x", 1.5), float("nan"))


# --------------------------------------------------------------------------------------------------
# Two runs on the same utterances: paired_difference


def paired_data():
    """12 speakers with 2 utterances each; run B changes 9 of them (2^9 sign patterns: exact)."""
    words = np.array([12.0, 8, 15, 5, 10, 10, 20, 4, 9, 11, 6, 14, 13, 7, 10, 10, 8, 12, 16, 4, 10, 10, 9, 11])
    errors_a = np.array([2.0, 1, 3, 0, 1, 2, 4, 1, 2, 2, 0, 3, 1, 1, 2, 2, 1, 3, 2, 0, 1, 1, 2, 2])
    change = np.array([-1.0, 0, -2, 0, 1, 0, -1, -1, 0, -2, 0, 0, -1, 0, -2, 1, 0, -1, -1, 0, 0, 0, 0, 0])
    speakers = np.repeat([f"s{i:02d}" for i in range(12)], 2)
    return errors_a, errors_a + change, words, speakers


def test_paired_difference_every_field_by_hand():
    errors_a, errors_b, words, speakers = paired_data()
    result = stats.paired_difference(errors_a=errors_a, errors_b=errors_b, ref_words=words, clusters=speakers)
    per_speaker = {s: (errors_b[speakers == s].sum() - errors_a[speakers == s].sum(), words[speakers == s].sum()) for s in np.unique(speakers)}
    d = [v[0] for v in per_speaker.values()]
    w = [v[1] for v in per_speaker.values()]
    delta, variance, df = cr3(d, w)
    t = scipy_stats.t.ppf(0.975, df)
    assert result.value_a == pytest.approx(errors_a.sum() / words.sum()) and result.value_b == pytest.approx(errors_b.sum() / words.sum())
    assert result.difference == pytest.approx(delta, rel=1e-12) and delta == pytest.approx(-10 / 244)
    assert result.standard_error == pytest.approx(math.sqrt(variance), rel=1e-12) and result.degrees_of_freedom == pytest.approx(df, rel=1e-12)
    assert result.lower == pytest.approx(delta - t * math.sqrt(variance), rel=1e-10)
    assert result.upper == pytest.approx(delta + t * math.sqrt(variance), rel=1e-10)
    changed = [x for x in d if x != 0]
    assert len(changed) == 9
    flips = [abs(sum(s * x for s, x in zip(signs, changed, strict=True))) for signs in itertools.product((-1, 1), repeat=len(changed))]
    assert result.p_value == pytest.approx(np.mean(np.array(flips) >= abs(sum(changed)) - 1e-9), rel=1e-12)
    assert (result.n_speakers_a, result.n_speakers_b, result.confidence) == (12, 12, 0.95)
    assert result.definition == "WER(run_b) - WER(run_a)" and result.method == "cr3_bell_mccaffrey_t"


def test_paired_difference_names_the_bad_argument():
    errors_a, errors_b, words, speakers = paired_data()
    with pytest.raises(StatsInputError, match=r"^errors_a holds 1 negative value"):
        stats.paired_difference(errors_a=-errors_a[:1], errors_b=errors_b[:1], ref_words=words[:1], clusters=None)
    with pytest.raises(StatsInputError, match=r"^errors_b holds 1 NaN"):
        stats.paired_difference(errors_a=errors_a[:2], errors_b=[1.0, np.nan], ref_words=words[:2], clusters=None)
    with pytest.raises(StatsInputError, match=r"^ref_words holds 1 negative"):
        stats.paired_difference(errors_a=errors_a[:2], errors_b=errors_b[:2], ref_words=[1.0, -1.0], clusters=None)
    with pytest.raises(StatsInputError, match=r"^errors_b has 3 values but errors_a has 2; pass one value per utterance row$"):
        stats.paired_difference(errors_a=errors_a[:2], errors_b=errors_b[:3], ref_words=words[:2], clusters=None)
    with pytest.raises(StatsInputError, match=r"^ref_words has 3 values but errors_a has 2; pass one value per utterance row$"):
        stats.paired_difference(errors_a=errors_a[:2], errors_b=errors_b[:2], ref_words=words[:3], clusters=None)


# --------------------------------------------------------------------------------------------------
# Differential degradation


def degradation_data():
    """Slices a (5 speakers) and b (6 speakers), clean and under a condition, two utterances per speaker."""
    clean_a, cond_a = [1.0, 0, 2, 1, 0], [4.0, 2, 5, 1, 3]
    clean_b, cond_b = [2.0, 1, 0, 1, 3, 0], [3.0, 1, 1, 2, 3, 2]
    words_a, words_b = [20.0, 16, 24, 30, 10], [18.0, 22, 12, 26, 20, 14]
    rows = []
    for label, clean, cond, words in (("a", clean_a, cond_a, words_a), ("b", clean_b, cond_b, words_b)):
        for i, (c, n, w) in enumerate(zip(clean, cond, words, strict=True)):
            rows += [(f"{label}{i}", label, c, n - 1 if n else n, w / 2), (f"{label}{i}", label, 0.0, 1.0 if n else 0.0, w / 2)]
    speakers, labels, clean_rows, cond_rows, word_rows = (np.array(column) for column in zip(*rows, strict=True))
    expected = {}
    for label, clean, cond, words in (("a", clean_a, cond_a, words_a), ("b", clean_b, cond_b, words_b)):
        expected[label] = cr3([n - c for c, n in zip(clean, cond, strict=True)], words)
    return dict(errors_clean=clean_rows, errors_condition=cond_rows, ref_words=word_rows, clusters=speakers, slices=labels), expected


def test_differential_degradation_every_field_by_hand():
    data, expected = degradation_data()
    result = stats.differential_degradation(**data, slice_a="a", slice_b="b")
    (delta_a, var_a, df_a), (delta_b, var_b, df_b) = expected["a"], expected["b"]
    difference, lower, upper, se, df, p = welch(delta_a, var_a, df_a, delta_b, var_b, df_b)
    assert result.value_a == pytest.approx(delta_a, rel=1e-12) and delta_a == pytest.approx(11 / 100)
    assert result.value_b == pytest.approx(delta_b, rel=1e-12) and delta_b == pytest.approx(5 / 112)
    assert result.difference == pytest.approx(difference, rel=1e-12)
    assert result.lower == pytest.approx(lower, rel=1e-10) and result.upper == pytest.approx(upper, rel=1e-10)
    assert result.standard_error == pytest.approx(se, rel=1e-12) and result.degrees_of_freedom == pytest.approx(df, rel=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-10)
    assert (result.n_speakers_a, result.n_speakers_b, result.confidence) == (5, 6, 0.95)
    assert result.definition == "(WER_condition - WER_clean)(slice_a) - (WER_condition - WER_clean)(slice_b)"
    assert result.method == "welch_cr3_bell_mccaffrey_t"
    narrow = stats.differential_degradation(**data, slice_a="a", slice_b="b", options=StatsOptions(confidence=0.5))
    assert narrow.upper == pytest.approx(welch(delta_a, var_a, df_a, delta_b, var_b, df_b, 0.5)[2], rel=1e-10) and narrow.confidence == 0.5


def test_differential_degradation_names_the_bad_argument():
    data, _ = degradation_data()
    for name, message in (("errors_clean", "errors_clean holds 1 negative"), ("errors_condition", "errors_condition holds 1 negative"), ("ref_words", "ref_words holds 1 negative")):
        bad = dict(data)
        bad[name] = data[name].copy()
        bad[name][0] = -1
        with pytest.raises(StatsInputError, match="^" + message):
            stats.differential_degradation(**bad, slice_a="a", slice_b="b")
    for name in ("errors_condition", "ref_words"):
        bad = dict(data)
        bad[name] = data[name][:-1]
        with pytest.raises(StatsInputError, match=f"^{name} has {data[name].size - 1} values but errors_clean has {data[name].size}"):
            stats.differential_degradation(**bad, slice_a="a", slice_b="b")


# --------------------------------------------------------------------------------------------------
# Cells and rates


def test_rates_name_the_bad_argument():
    with pytest.raises(StatsInputError, match=r"^ref_words holds 1 negative value\(s\) \(first at row 1: -3.0\)"):
        stats.pooled_wer(errors=[1, 2], ref_words=[1, -3])
    with pytest.raises(StatsInputError, match=r"^errors holds 1 NaN or infinite value\(s\) \(first at row 0\)"):
        stats.mean_utterance_wer(errors=[np.inf, 2], ref_words=[1, 3])
    with pytest.raises(StatsInputError, match=r"^ref_words holds 1 negative"):
        stats.mean_utterance_wer(errors=[1, 2], ref_words=[1, -3])
    with pytest.raises(StatsInputError, match=r"^ref_words has 1 values but errors has 2; pass one value per utterance row$"):
        stats.mean_utterance_wer(errors=[1, 2], ref_words=[1])
    assert math.isnan(stats.mean_utterance_wer(errors=[1.0], ref_words=[0.0]))


def test_cluster_labels_keep_numeric_speakers_and_name_a_length_mismatch():
    # Speaker ids read from a table are often numbers, with NaN where missing.
    labels = stats.cluster_labels(speakers=[7, 8.5, np.nan], utterance_ids=[1, 2, 3])
    assert labels.tolist() == [7, 8.5, "utterance:3"]
    with pytest.raises(StatsInputError, match=r"^utterance_ids has 2 values but speakers has 3; pass one value per utterance row$"):
        stats.cluster_labels(speakers=["a", "b", "c"], utterance_ids=["u1", "u2"])


def test_nested_looks_only_at_the_included_slices():
    # Speaker s1 is in slices x and y; s2 only in y; s3 only in z.
    grouped = stats.slice_cells(errors=[1, 2, 3, 4], ref_words=[9, 9, 9, 9], clusters=["s1", "s1", "s2", "s3"], slices=["x", "y", "y", "z"])
    assert grouped.nested() is False
    assert grouped.nested(np.array([True, False, True])) is True and grouped.nested(np.array([True, True, False])) is False
    assert stats.slice_cells(errors=[1, 2], ref_words=[9, 9], clusters=["s1", "s2"], slices=["x", "y"]).nested() is True


def test_cluster_totals_have_one_entry_per_named_cluster():
    # Cells of a subset of rows, with every cluster named (as discovery builds them): absent clusters total 0.
    grouped = stats.cells_from_codes(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0]), np.array([0, 0, 1]), np.array(["a", "b", "c", "d"], dtype=object), np.array([0, 0, 0]), ("all",))
    errors, words = stats.cluster_totals(grouped)
    assert errors.tolist() == [3.0, 3.0, 0.0, 0.0] and words.tolist() == [30.0, 30.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------------
# Intervals of one rate


def log_interval(errors, words, confidence=0.95):
    rate, variance, df = cr3(errors, words)
    spread = scipy_stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(variance) / rate
    centre = rate * math.exp(variance / (2 * rate**2))
    return centre * math.exp(-spread), centre * math.exp(spread)


def test_ratio_interval_fields_and_input_checks():
    interval = stats.ratio_interval(cluster_errors=A_ERRORS, cluster_words=A_WORDS, confidence=0.9)
    lower, upper = log_interval(A_ERRORS, A_WORDS, 0.9)
    assert (interval.lower, interval.upper) == (pytest.approx(lower, rel=1e-12), pytest.approx(upper, rel=1e-12))
    assert interval.confidence == 0.9 and interval.method == "cr3_bell_mccaffrey_t_log" and not interval.omitted
    message = r"^cluster_errors and cluster_words must be one-dimensional and of equal length; got \(2, 2\) and \(2, 2\)$"
    with pytest.raises(StatsInputError, match=message):
        stats.ratio_interval(cluster_errors=[[1, 2], [3, 4]], cluster_words=[[5, 6], [7, 8]])
    with pytest.raises(StatsInputError, match=r"got \(2,\) and \(3,\)$"):
        stats.ratio_interval(cluster_errors=[1, 2], cluster_words=[5, 6, 7])


def test_integer_counts_beyond_32_bits_do_not_overflow():
    big = np.array([2**32, 2**32, 2**33], dtype=np.int64)
    assert stats.effective_speakers(big) == pytest.approx(16 / 6)
    interval = stats.ratio_interval(cluster_errors=big // 8, cluster_words=big)
    assert interval.estimate == pytest.approx(1 / 8)


def test_effective_speakers_edge_cases():
    assert stats.effective_speakers([0, 0]) == 0.0 and stats.effective_speakers([]) == 0.0
    assert stats.effective_speakers([1]) == 1.0 and stats.effective_speakers([3, 1]) == pytest.approx(16 / 10)


def test_t_p_values_match_scipy():
    statistic, df = np.array([-2.5, 0.0, 1.7, 3.2]), np.array([3.0, 7.5, 12.0, 40.0])
    assert stats._intervals.t_two_sided_p(statistic, df) == pytest.approx(2 * scipy_stats.t.sf(np.abs(statistic), df), rel=1e-10)
    assert stats._intervals.t_upper_p(statistic, df) == pytest.approx(scipy_stats.t.sf(statistic, df), rel=1e-10)


def test_slice_intervals_as_a_frame():
    errors, words, speakers, labels = two_slices()
    result = stats.slice_intervals(stats.slice_cells(errors=errors, ref_words=words, clusters=speakers, slices=labels), StatsOptions(min_speakers=5, min_words=100))
    frame = result.to_frame()
    assert frame.columns.tolist() == ["slice", "wer", "lower", "upper", "errors", "ref_words", "n_speakers", "n_effective_speakers", "n_utterances", "small"]
    assert frame["slice"].tolist() == ["a", "b"] and frame["errors"].tolist() == [19.0, 16.0] and frame["ref_words"].tolist() == [130.0, 130.0]
    assert frame["n_speakers"].tolist() == [5, 6] and frame["n_utterances"].tolist() == [10, 12]
    assert frame["small"].tolist() == [True, False]  # a has 4.4 effective speakers, b 5.5
    assert frame["wer"].tolist() == pytest.approx([19 / 130, 16 / 130])
    assert math.isnan(frame["lower"][0]) and frame["lower"][1] == pytest.approx(log_interval(B_ERRORS, B_WORDS)[0], rel=1e-12)
    assert frame["upper"][1] == pytest.approx(log_interval(B_ERRORS, B_WORDS)[1], rel=1e-12)
    assert frame["n_effective_speakers"].tolist() == pytest.approx([130**2 / sum(w * w for w in A_WORDS), 130**2 / sum(w * w for w in B_WORDS)])


# --------------------------------------------------------------------------------------------------
# Gaps and ratios to the overall rate


def gaps_by_hand(cell_rows, totals, confidence=0.95):
    """cell_rows: {slice: [(cluster, errors, words), ...]}; totals: {cluster: (errors, words)} of the population."""
    total_e = sum(e for e, _ in totals.values())
    total_w = sum(w for _, w in totals.values())
    overall = total_e / total_w
    q = {c: (e - overall * w) / total_w for c, (e, w) in totals.items()}
    out = {}
    for label, rows in cell_rows.items():
        inside = {c for c, _, _ in rows}
        rate, _, df = cr3([e for _, e, _ in rows], [w for _, _, w in rows])
        slice_w = sum(w for _, _, w in rows)
        gap_var = sum(q[c] ** 2 for c in totals if c not in inside)
        log_var = gap_var / overall**2
        for c, e, w in rows:
            p = (e - rate * w) / slice_w
            keep = (1 - w / slice_w) ** 2
            gap_var += (p - q[c]) ** 2 / keep
            log_var += (p / rate - q[c] / overall) ** 2 / keep
        t = scipy_stats.t.ppf(0.5 + confidence / 2, df)
        out[label] = dict(gap=rate - overall, ratio=rate / overall, df=df)
        if gap_var > 1e-20:  # a slice that is the whole population has no gap and no spread of it
            se, log_se = math.sqrt(gap_var), math.sqrt(log_var)
            out[label].update(
                gap_lower=rate - overall - t * se, gap_upper=rate - overall + t * se,
                ratio_lower=rate / overall * math.exp(-t * log_se), ratio_upper=rate / overall * math.exp(t * log_se),
                statistic=(rate - overall) / se, p_worse=scipy_stats.t.sf((rate - overall) / se, df),
            )
    return out


def assert_gaps(result, expected):
    for k, label in enumerate(result.slices):
        for name, value in expected[label].items():
            got = result.degrees_of_freedom[k] if name == "df" else getattr(result, name)[k]
            assert got == pytest.approx(value, rel=1e-9, abs=1e-15), (label, name)
    for name in ("gap", "gap_lower", "gap_upper", "ratio", "ratio_lower", "ratio_upper", "statistic", "p_worse"):
        assert getattr(result, name).dtype == np.float64, name


def test_gaps_to_overall_every_field_by_hand():
    errors, words, speakers, labels = two_slices()
    result = stats.gaps_to_overall(stats.slice_cells(errors=errors, ref_words=words, clusters=speakers, slices=labels), StatsOptions(confidence=0.9))
    cell_rows = {"a": [(f"a{i}", e, w) for i, (e, w) in enumerate(zip(A_ERRORS, A_WORDS))], "b": [(f"b{i}", e, w) for i, (e, w) in enumerate(zip(B_ERRORS, B_WORDS))]}
    totals = {c: (e, w) for rows in cell_rows.values() for c, e, w in rows}
    assert_gaps(result, gaps_by_hand(cell_rows, totals, 0.9))


def test_gaps_of_overlapping_slices_use_the_population_totals():
    # Slice "hi" is speakers 0-3, slice "all" every speaker: they overlap, so pass the population's totals.
    e = np.array([4.0, 6, 5, 3, 1, 0, 2, 1])
    w = np.array([20.0, 25, 22, 18, 30, 15, 28, 24])
    clusters = np.concatenate([np.arange(4), np.arange(8)])
    grouped = stats.cells_from_codes(np.concatenate([e[:4], e]), np.concatenate([w[:4], w]), clusters, np.arange(8), np.array([1] * 4 + [0] * 8), ("all", "hi"))
    result = stats.gaps_to_overall(grouped, StatsOptions(), overall_errors=e, overall_words=w)
    totals = {c: (e[c], w[c]) for c in range(8)}
    expected = gaps_by_hand({"all": [(c, e[c], w[c]) for c in range(8)], "hi": [(c, e[c], w[c]) for c in range(4)]}, totals)
    assert_gaps(result, expected)
    assert result.gap[0] == pytest.approx(0) and result.gap[1] > 0
    # Given only one of the two totals, both come from the cells (here: double-counting speakers 0-3).
    from_cells = stats.gaps_to_overall(grouped, StatsOptions())
    assert from_cells.gap[1] != pytest.approx(result.gap[1])
    for one in (dict(overall_errors=e), dict(overall_words=w)):
        partial = stats.gaps_to_overall(grouped, StatsOptions(), **one)
        assert partial.gap.tolist() == pytest.approx(from_cells.gap.tolist())


def test_gaps_with_no_spread_a_zero_rate_or_one_speaker():
    # Slice "same": every speaker at the overall rate (no spread, gap 0); "zero": no errors; "one": one speaker.
    e = np.array([1.0, 2.0, 0.0, 0.0, 7.0, 4.0, 1.0])
    w = np.array([10.0, 20.0, 10.0, 20.0, 30.0, 30.0, 30.0])
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=[f"s{i}" for i in range(7)], slices=["same", "same", "zero", "zero", "x", "x", "one"])
    result = stats.gaps_to_overall(grouped, StatsOptions())
    overall = e.sum() / w.sum()
    assert overall == pytest.approx(0.1)
    one, same, x, zero = (result.slices.index(label) for label in ("one", "same", "x", "zero"))
    assert result.gap[same] == pytest.approx(0) and result.ratio[same] == pytest.approx(1)
    assert result.gap[zero] == pytest.approx(-0.1) and result.ratio[zero] == 0 and result.ratio_lower[zero] == 0
    assert result.p_worse[zero] > 0.5 and result.statistic[zero] < 0
    assert result.gap[one] == pytest.approx(1 / 30 - 0.1)
    for name in ("gap_lower", "gap_upper", "ratio_lower", "ratio_upper", "p_worse"):
        assert math.isnan(getattr(result, name)[one]), name
    assert result.degrees_of_freedom[one] != result.degrees_of_freedom[one]


def test_gap_statistic_is_zero_when_nothing_varies():
    # Every speaker at the same rate in one slice of the whole population: gap 0 with variance 0.
    grouped = stats.slice_cells(errors=[1, 2, 3], ref_words=[10, 20, 30], clusters=["a", "b", "c"])
    result = stats.gaps_to_overall(grouped, StatsOptions())
    assert result.gap[0] == 0 and result.statistic[0] == 0 and result.p_worse[0] == pytest.approx(0.5)
    assert result.gap_lower[0] == 0 and result.gap_upper[0] == 0


def test_gaps_when_there_are_no_words():
    grouped = stats.slice_cells(errors=[0, 0], ref_words=[0, 0], clusters=["a", "b"])
    result = stats.gaps_to_overall(grouped, StatsOptions())
    assert math.isnan(result.gap[0]) and math.isnan(result.ratio[0])


# --------------------------------------------------------------------------------------------------
# Did the worst-best gap change between two runs


def two_runs(rates_a, rates_b, n_speakers=12):
    """Two runs over the same speakers of len(rates) slices, each speaker with 20 + 2i words."""
    out = []
    for rates in (rates_a, rates_b):
        e, w, s, labels = [], [], [], []
        for k, rate in enumerate(rates):
            for i in range(n_speakers):
                words = 20 + 2 * i
                e.append(round(rate * words) + (i % 3) - 1 if rate else 0)
                w.append(words)
                s.append(f"{k}-{i}")
                labels.append(f"g{k}")
        out.append((np.maximum(np.array(e, float), 0), np.array(w, float), s, labels))
    return out


def gap_by_hand(e, w, s, labels, index, level):
    bounds, rates = [], []
    for k in index:
        rows = [i for i, label in enumerate(labels) if label == f"g{k}"]
        bounds.append(log_interval([e[i] for i in rows], [w[i] for i in rows], level))
        rates.append(sum(e[i] for i in rows) / sum(w[i] for i in rows))
    lows, highs = [b[0] for b in bounds], [b[1] for b in bounds]
    return max(rates) - min(rates), max(0.0, max(lows) - min(highs)), max(highs) - min(lows)


@pytest.mark.parametrize(("rates_a", "rates_b", "verdict"), [
    ([0.1, 0.4, 0.2], [0.2, 0.2, 0.25], "shrank"),
    ([0.2, 0.2, 0.25], [0.1, 0.4, 0.2], "grew"),
    ([0.1, 0.3, 0.2], [0.12, 0.3, 0.2], "inconclusive"),
])
def test_gap_change_by_hand(rates_a, rates_b, verdict):
    options = StatsOptions(confidence=0.9)
    runs = two_runs(rates_a, rates_b)
    intervals = [stats.slice_intervals(stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels), options) for e, w, s, labels in runs]
    eligible = [1, 1, 1]  # any truthy mask
    result = stats.gap_change(intervals[0], intervals[1], eligible, options)
    level = 0.9 ** (1 / 6)
    assert result.simultaneous_confidence == pytest.approx(level) and result.verdict == verdict
    (est_a, lo_a, hi_a), (est_b, lo_b, hi_b) = (gap_by_hand(*run, range(3), level) for run in runs)
    for interval, (est, lo, hi) in ((result.gap_a, (est_a, lo_a, hi_a)), (result.gap_b, (est_b, lo_b, hi_b))):
        assert (interval.estimate, interval.lower, interval.upper) == (pytest.approx(est), pytest.approx(lo, abs=1e-12), pytest.approx(hi))
        assert interval.confidence == 0.9 and interval.method == "sidak_simultaneous_cr3_t_log"
    change = result.change
    assert (change.estimate, change.lower, change.upper) == (pytest.approx(est_b - est_a), pytest.approx(lo_b - hi_a), pytest.approx(hi_b - lo_a))
    assert change.confidence == 0.9 and change.method == "sidak_simultaneous_cr3_t_log"


def test_gap_change_uses_only_the_eligible_slices_even_when_flagged_small():
    options = StatsOptions(min_words=10_000)  # every slice small: the caller's mask decides, not the flag
    runs = two_runs([0.1, 0.4, 0.2], [0.2, 0.2, 0.25])
    intervals = [stats.slice_intervals(stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels), options) for e, w, s, labels in runs]
    result = stats.gap_change(intervals[0], intervals[1], np.array([True, False, True]), options)
    level = 0.95 ** (1 / 4)
    assert result.simultaneous_confidence == pytest.approx(level)
    assert result.gap_a.upper == pytest.approx(gap_by_hand(*runs[0], [0, 2], level)[2])
    assert result.gap_b.estimate == pytest.approx(0.05, abs=0.01) and result.verdict is not None


def test_gap_change_without_two_slices_or_without_intervals():
    options = StatsOptions()
    runs = two_runs([0.1, 0.4], [0.2, 0.2])
    intervals = [stats.slice_intervals(stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels), options) for e, w, s, labels in runs]
    one = stats.gap_change(intervals[0], intervals[1], np.array([True, False]), options)
    assert one.verdict is None and one.simultaneous_confidence == pytest.approx(0.95 ** 0.5)
    for interval in (one.gap_a, one.gap_b, one.change):
        assert math.isnan(interval.estimate) and math.isnan(interval.lower) and math.isnan(interval.upper)
        assert interval.confidence == 0.95 and interval.method == "sidak_simultaneous_cr3_t_log"
    none = stats.gap_change(intervals[0], intervals[1], np.array([False, False]), options)
    assert none.simultaneous_confidence == 0.95 and none.verdict is None
    # Run B has a slice of one speaker: its interval, and so the change, cannot be bounded (run A's can).
    e, w, s, labels = runs[1]
    single = stats.slice_intervals(stats.slice_cells(errors=e[:13], ref_words=w[:13], clusters=s[:13], slices=labels[:13]), options)
    unbounded = stats.gap_change(intervals[0], single, np.array([True, True]), options)
    assert np.isfinite(unbounded.gap_a.upper) and math.isnan(unbounded.gap_b.upper)
    assert unbounded.verdict is None and math.isnan(unbounded.change.upper) and np.isfinite(unbounded.change.lower)


# --------------------------------------------------------------------------------------------------
# Resampling


def test_exact_assignments_come_in_chunks_and_cover_every_assignment(monkeypatch):
    labels = np.array([0, 0, 1, 1, 1, 2])
    expected = {p for p in itertools.permutations(labels.tolist())}
    assert len(expected) == 60 == stats._resampling.n_assignments(labels)
    for cells_per_chunk, rows in ((6, 1), (12, 2), (13, 2), (100, 16)):
        monkeypatch.setattr(stats._resampling, "CELLS_PER_CHUNK", cells_per_chunk)
        chunks = list(stats._resampling.exact_assignments(labels))
        sizes = [chunk.shape[0] for chunk in chunks]
        assert sizes == [rows] * (60 // rows) + ([60 % rows] if 60 % rows else []), cells_per_chunk
        assert {tuple(row) for chunk in chunks for row in chunk.tolist()} == expected


def test_bootstrap_counts_are_multinomial_draws_of_every_speaker():
    rng = np.random.default_rng(0)
    counts = np.concatenate(list(stats._resampling.bootstrap_counts(5, 20_000, rng)))
    assert counts.shape == (20_000, 5) and counts.dtype == np.float64
    assert (counts.sum(axis=1) == 5).all()
    # Each speaker is left out with probability (4/5)^5 = 0.328 and drawn once on average.
    assert (counts == 0).mean(axis=0) == pytest.approx([0.8**5] * 5, abs=0.015)
    assert counts.mean(axis=0) == pytest.approx([1.0] * 5, abs=0.03)


# --------------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize(("field", "value", "message"), [
    ("confidence", 0, r"^confidence must be strictly between 0 and 1 \(e.g. 0.95\); got 0$"),
    ("confidence", 1, r"^confidence must be strictly between 0 and 1 \(e.g. 0.95\); got 1$"),
    ("confidence", True, r"^confidence must be strictly between 0 and 1 \(e.g. 0.95\); got True$"),
    ("confidence", "0.9", r"^confidence must be strictly between 0 and 1 \(e.g. 0.95\); got '0.9'$"),
    ("min_speakers", 0.5, r"^min_speakers \(effective speakers\) must be a number of at least 1 \(e.g. 8\); got 0.5$"),
    ("min_speakers", float("inf"), r"^min_speakers \(effective speakers\) must be a number of at least 1 \(e.g. 8\); got inf$"),
    ("min_speakers", True, r"^min_speakers .* got True$"),
    ("min_speakers", "8", r"^min_speakers .* got '8'$"),
    ("min_words", 2.5, r"^min_words must be a non-negative integer \(e.g. 100\); got 2.5$"),
    ("min_words", True, r"^min_words must be a non-negative integer \(e.g. 100\); got True$"),
    ("n_resamples", 99, r"^n_resamples must be an integer of at least 100 \(e.g. 2000\); got 99$"),
    ("n_resamples", 1000.0, r"^n_resamples must be an integer of at least 100 \(e.g. 2000\); got 1000.0$"),
    ("seed", 1.5, r"^seed must be an integer \(e.g. 0\); got 1.5$"),
    ("seed", None, r"^seed must be an integer \(e.g. 0\); got None$"),
])
def test_each_option_is_checked_with_its_own_message(field, value, message):
    with pytest.raises(StatsInputError, match=message):
        StatsOptions(**{field: value})


def test_options_accept_their_limits_and_numpy_integers():
    options = StatsOptions(confidence=0.5, min_speakers=1, min_words=0, n_resamples=100, seed=np.int64(-3))
    assert (options.alpha, options.label, options.n_permutations()) == (0.5, "50%", 200)
    assert StatsOptions(min_words=np.int32(5), n_resamples=np.int64(300)).n_permutations(0) == 2000
    assert StatsOptions().n_permutations(3) == 6000 and StatsOptions(confidence=0.9).label == "90%"
    assert StatsOptions(confidence=0.999, n_resamples=200_000).n_permutations(2) == 200_000
    assert stats.confidence_label(0.9999) == "99.99%" and stats.confidence_label(0.5) == "50%"


# --------------------------------------------------------------------------------------------------
# Disparity among the slices of one dimension


def four_slices():
    """Four accents of 10-14 speakers at about 8%, 12%, 20% and 30%; rows are per-speaker totals."""
    rng = np.random.default_rng(21)
    e, w, s, labels = [], [], [], []
    for k, (rate, n) in enumerate(((0.08, 12), (0.12, 14), (0.2, 10), (0.3, 11))):
        for i in range(n):
            words = int(rng.integers(30, 90))
            e.append(float(rng.binomial(words, rate)))
            w.append(float(words))
            s.append(f"{k}-{i}")
            labels.append(f"g{k}")
    return np.array(e), np.array(w), s, labels


def test_disparity_every_field_by_hand():
    e, w, s, labels = four_slices()
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    options = StatsOptions(confidence=0.9, n_resamples=500)
    eligible = np.array([True, True, True, False])  # g3 left out by the caller: never worst
    result = stats.disparity(stats.slice_intervals(grouped, options), grouped, options, eligible=eligible, family_size=3)
    level = 0.9 ** (1 / 3)
    rates = {k: e[np.array(labels) == f"g{k}"].sum() / w[np.array(labels) == f"g{k}"].sum() for k in range(4)}
    bounds = {k: log_interval(e[np.array(labels) == f"g{k}"], w[np.array(labels) == f"g{k}"], level) for k in range(3)}
    lows, highs = [bounds[k][0] for k in range(3)], [bounds[k][1] for k in range(3)]
    assert result.slices_compared == ("g0", "g1", "g2") and (result.worst_slice, result.best_slice) == ("g2", "g0")
    assert result.simultaneous_confidence == pytest.approx(level) and result.alpha == pytest.approx(0.1)
    gap, ratio = result.worst_minus_best, result.worst_to_best_ratio
    assert gap.estimate == pytest.approx(rates[2] - rates[0]) and ratio.estimate == pytest.approx(rates[2] / rates[0])
    assert gap.lower == pytest.approx(max(0.0, max(lows) - min(highs))) and gap.upper == pytest.approx(max(highs) - min(lows))
    assert ratio.lower == pytest.approx(max(1.0, max(lows) / min(highs))) and ratio.upper == pytest.approx(max(highs) / min(lows))
    for interval in (gap, ratio):
        assert interval.confidence == 0.9 and interval.method == "sidak_simultaneous_cr3_t_log"
    for k in range(3):
        assert result.gap_to_best.estimate[k] == pytest.approx(rates[k] - rates[0])
        assert result.gap_to_best.lower[k] == pytest.approx(max(0.0, bounds[k][0] - min(highs)))
        assert result.gap_to_best.upper[k] == pytest.approx(bounds[k][1] - min(lows))
        assert result.ratio_to_best.estimate[k] == pytest.approx(rates[k] / rates[0])
        assert result.ratio_to_best.lower[k] == pytest.approx(max(1.0, bounds[k][0] / min(highs)))
        assert result.ratio_to_best.upper[k] == pytest.approx(bounds[k][1] / min(lows))
    for measure in (result.gap_to_best, result.ratio_to_best):
        assert math.isnan(measure.estimate[3]) and math.isnan(measure.lower[3]) and math.isnan(measure.upper[3])
        assert measure.slices == ("g0", "g1", "g2", "g3")
        frame = measure.to_frame()
        assert frame.columns.tolist() == ["slice", "estimate", "lower", "upper"] and frame["slice"].tolist() == ["g0", "g1", "g2", "g3"]
        assert frame["estimate"].tolist()[:3] == pytest.approx(measure.estimate[:3].tolist())
    # The test of equal rates covers the eligible slices only, with the family's number of permutations.
    expected = stats.equal_rate_test(grouped, options, include=eligible, family_size=3)
    assert result.equal_wer_test == expected and expected.n_slices == 3 and expected.n_resamples >= math.ceil(100 * 3 / 0.1)
    assert result.detected == (expected.p_value < 0.1)
    assert result.detected is True  # 8% against 20% over 10-12 speakers each


def test_disparity_with_a_perfect_slice_has_an_unbounded_ratio():
    e, w, s, labels = four_slices()
    e = np.where(np.array(labels) == "g0", 0.0, e)
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    options = StatsOptions(n_resamples=200)
    result = stats.disparity(stats.slice_intervals(grouped, options), grouped, options)
    assert result.best_slice == "g0" and result.worst_slice == "g3"
    assert result.equal_wer_test.n_resamples == 2000  # one dimension: no family to raise the budget for
    assert result.worst_to_best_ratio.estimate == math.inf and result.worst_to_best_ratio.upper == math.inf
    assert result.ratio_to_best.estimate[1] == math.inf and math.isnan(result.ratio_to_best.estimate[0])  # 0 / 0
    assert stats._disparity._divide(0.0, 0.0) != stats._disparity._divide(0.0, 0.0) and stats._disparity._divide(3.0, 0.0) == math.inf
    assert stats._disparity._divide(3.0, 4.0) == 0.75 and stats._disparity._divide(-1.0, 0.0) != stats._disparity._divide(-1.0, 0.0)


def test_disparity_needs_two_eligible_slices():
    e, w, s, labels = four_slices()
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    options = StatsOptions(confidence=0.8, min_words=800)  # only g1 has 800 words or more
    intervals = stats.slice_intervals(grouped, options)
    assert intervals.small.tolist() == [True, False, True, True]
    result = stats.disparity(intervals, grouped, options)
    assert result.slices_compared == ("g1",) and result.worst_slice is None and result.best_slice is None
    assert result.equal_wer_test is None and result.detected is False and result.alpha == pytest.approx(0.2)
    assert result.simultaneous_confidence == pytest.approx(0.8)
    for interval in (result.worst_minus_best, result.worst_to_best_ratio):
        assert math.isnan(interval.estimate) and math.isnan(interval.lower) and math.isnan(interval.upper)
        assert interval.confidence == 0.8 and interval.method == "sidak_simultaneous_cr3_t_log"
    for measure in (result.gap_to_best, result.ratio_to_best):
        assert measure.slices == grouped.slices and np.isnan(measure.estimate).all() and np.isnan(measure.lower).all() and np.isnan(measure.upper).all()
    none = stats.disparity(intervals, grouped, options, eligible=np.zeros(4, dtype=bool))
    assert none.slices_compared == () and none.simultaneous_confidence == pytest.approx(0.8)
    with pytest.raises(ValueError, match="^intervals and cells describe different slices$"):
        stats.disparity(intervals, stats.slice_cells(errors=e[:5], ref_words=w[:5], clusters=s[:5]), options)


# --------------------------------------------------------------------------------------------------
# The test of equal rates


def welch_statistic(e, w, labels, centre=None, n_cells=None):
    """sum_k (R_k - Rbar)^2 / V_k, V_k the CR1 variance floored at the pooled rate over W_k, one slice at a time.

    With `centre`, each R_k is replaced by R_k - centre_k; `n_cells` overrides the count of speakers per slice."""
    floor = e.sum() / w.sum()
    rates, weights = [], []
    for k in sorted(set(labels)):
        mask = np.array([label == k for label in labels])
        ek, wk = e[mask], w[mask]
        total_e, total_w = ek.sum(), wk.sum()
        rate = total_e / total_w
        n = mask.sum() if n_cells is None else n_cells[k]
        squares = max(sum((x - rate * y) ** 2 for x, y in zip(ek, wk, strict=True)), 0.0)
        variance = (n / (n - 1) if n > 1 else 1.0) * squares / total_w**2
        variance = max(variance, floor / total_w)
        rates.append(rate - (0.0 if centre is None else centre[k]))
        weights.append(1 / variance)
    rates, weights = np.array(rates), np.array(weights)
    mean = np.sum(weights * rates) / weights.sum()
    return float(np.sum(weights * (rates - mean) ** 2))


def seven_and_seven():
    e = np.array([3.0, 5, 2, 6, 4, 3, 7, 5, 8, 5, 7, 4, 8, 6])
    w = np.array([40.0, 45, 30, 50, 38, 35, 52, 44, 40, 46, 33, 50, 41, 37])
    labels = ["x"] * 7 + ["y"] * 7
    return e, w, [f"s{i:02d}" for i in range(14)], labels


def test_equal_rate_test_monte_carlo_agrees_with_full_enumeration():
    e, w, s, labels = seven_and_seven()
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    observed = welch_statistic(e, w, labels)
    everything = [welch_statistic(e, w, ["x" if i in chosen else "y" for i in range(14)]) for chosen in map(set, itertools.combinations(range(14), 7))]
    exact = float(np.mean(np.array(everything) >= observed - 1e-9 * max(1.0, observed)))
    assert len(everything) == 3432  # more than 2000: Monte Carlo
    result = stats.equal_rate_test(grouped, StatsOptions(seed=5))
    assert result.method == "monte_carlo_speaker_permutation_studentized" and result.n_resamples == 2000
    assert result.statistic == pytest.approx(observed, rel=1e-10) and (result.n_slices, result.n_speakers) == (2, 14)
    extreme = result.p_value * 2001 - 1
    assert extreme == pytest.approx(round(extreme), abs=1e-6)  # p = (1 + extreme) / (1 + B)
    assert result.monte_carlo_se == pytest.approx(math.sqrt(result.p_value * (1 - result.p_value) / 2000))
    assert abs(result.p_value - exact) < 4 * result.monte_carlo_se and 0.001 < exact < 0.2
    assert result.rejects(exact + 4 * result.monte_carlo_se) and not result.rejects(result.p_value)
    # A family of two tests raises the budget to 4000 resamples: then all 3432 assignments are enumerated.
    family = stats.equal_rate_test(grouped, StatsOptions(seed=5), family_size=2)
    assert family.method == "exact_speaker_permutation_studentized" and family.n_resamples == 3432 and family.p_value == pytest.approx(exact)
    # Budget equal to the number of assignments: enumerate.
    enumerated = stats.equal_rate_test(grouped, StatsOptions(seed=5, n_resamples=3432))
    assert enumerated.method == "exact_speaker_permutation_studentized" and enumerated.p_value == pytest.approx(exact) and enumerated.monte_carlo_se is None
    # The Monte Carlo p-value redone from the same random stream: rows of speakers' labels shuffled.
    shuffled = np.random.default_rng(5).permuted(np.broadcast_to(np.repeat([0, 1], 7), (2000, 14)), axis=1)
    extreme = sum(welch_statistic(e, w, row.tolist()) >= observed - 1e-9 * max(1.0, observed) for row in shuffled)
    assert result.p_value == pytest.approx((1 + extreme) / 2001, abs=1e-12)
    assert stats.equal_rate_test(grouped, StatsOptions(seed=5)).p_value == result.p_value  # seeded: the same p every time
    assert stats.equal_rate_test(grouped, StatsOptions(seed=6)).p_value != result.p_value


def test_equal_rate_test_is_the_same_in_small_chunks(monkeypatch):
    e, w, s, labels = seven_and_seven()
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    whole = [stats.equal_rate_test(grouped, StatsOptions(seed=5, n_resamples=n)) for n in (2000, 3432)]
    monkeypatch.setattr(stats._resampling, "CELLS_PER_CHUNK", 14 * 150)
    chunked = [stats.equal_rate_test(grouped, StatsOptions(seed=5, n_resamples=n)) for n in (2000, 3432)]
    for a, b in zip(whole, chunked, strict=True):
        assert (a.method, a.n_resamples) == (b.method, b.n_resamples) and a.p_value == pytest.approx(b.p_value)
    assert chunked[1].n_resamples == 3432 and chunked[0].n_resamples == 2000


def test_equal_rate_test_statistic_when_speakers_differ_more_than_chance():
    # Speakers differ far more than binomial noise (rates 1% to 40%), so each slice's clustered variance is
    # above the Poisson floor and the CR1 factor n / (n - 1) matters; slices of two speakers and of one, a
    # slice whose references are all empty (insertions only: no weight) and one of a single word.
    e = np.array([1.0, 12, 3, 20, 2, 15, 4, 18, 9, 1, 14, 2, 0, 5, 0, 2, 3, 1])
    w = np.array([50.0, 40, 45, 50, 60, 40, 55, 45, 30, 50, 35, 40, 40, 20, 30, 0, 0, 1])
    labels = ["x"] * 8 + ["y"] * 4 + ["two"] * 2 + ["one"] + ["empty"] * 2 + ["word"]
    s = [f"s{i:02d}" for i in range(18)]
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    x = np.array(labels) == "x"
    floor = e[w > 0].sum() / w.sum()
    cr1 = 8 / 7 * np.sum((e[x] - e[x].sum() / w[x].sum() * w[x]) ** 2) / w[x].sum() ** 2
    assert cr1 > 3 * floor / w[x].sum()  # the clustered variance, not the floor, is what is used for x
    result = stats.equal_rate_test(grouped, StatsOptions(n_resamples=200, seed=1, confidence=0.5))
    kept = w > 0
    kept[15:17] = False
    reference = welch_statistic(e[kept], w[kept], [label for label, k in zip(labels, kept) if k])
    # The empty slice's insertions still count in the pooled rate that floors every variance.
    floor_all = e.sum() / w.sum()
    rates, weights = [], []
    for k in ("one", "two", "word", "x", "y"):
        m = np.array(labels) == k
        rate = e[m].sum() / w[m].sum()
        n = m.sum()
        variance = max((n / (n - 1) if n > 1 else 1.0) * np.sum((e[m] - rate * w[m]) ** 2) / w[m].sum() ** 2, floor_all / w[m].sum())
        rates.append(rate)
        weights.append(1 / variance)
    rates, weights = np.array(rates), np.array(weights)
    by_hand = float(np.sum(weights * (rates - np.sum(weights * rates) / weights.sum()) ** 2))
    assert result.statistic == pytest.approx(by_hand, rel=1e-10) and by_hand != pytest.approx(reference)
    assert result.n_slices == 6 and result.n_speakers == 18 and result.method == "monte_carlo_speaker_permutation_studentized"
    assert result.p_value * 201 - 1 == pytest.approx(round(result.p_value * 201 - 1), abs=1e-6)
    # A mask of 0/1 works as well as booleans.
    assert stats.equal_rate_test(grouped, StatsOptions(), include=[0, 0, 0, 0, 1, 1]).statistic == pytest.approx(
        welch_statistic(e[:12], w[:12], labels[:12]), rel=1e-10)


def test_equal_rate_test_of_a_single_word():
    result = stats.equal_rate_test(stats.slice_cells(errors=[1, 0], ref_words=[1, 0], clusters=["a", "b"], slices=["x", "y"]), StatsOptions())
    assert result.method == "exact_speaker_permutation_studentized" and result.p_value == 1.0 and result.n_resamples == 2


def test_equal_rate_test_over_included_slices_and_without_errors():
    e, w, s, labels = seven_and_seven()
    three = labels[:4] + ["z"] * 3 + labels[7:]
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=three)
    result = stats.equal_rate_test(grouped, StatsOptions(), include=np.array([True, False, True]))
    kept = [i for i, label in enumerate(three) if label != "y"]
    assert (result.n_slices, result.n_speakers) == (2, 7) and result.method == "exact_speaker_permutation_studentized"
    assert result.statistic == pytest.approx(welch_statistic(e[kept], w[kept], [three[i] for i in kept]))
    assert stats.equal_rate_test(grouped, StatsOptions(), include=np.array([False, False, True])) is None
    quiet = stats.equal_rate_test(stats.slice_cells(errors=np.zeros(14), ref_words=w, clusters=s, slices=labels), StatsOptions())
    assert (quiet.method, quiet.statistic, quiet.p_value, quiet.n_resamples, quiet.monte_carlo_se, quiet.n_slices, quiet.n_speakers) == ("no_errors", 0.0, 1.0, 0, None, 2, 14)
    wordless = stats.equal_rate_test(stats.slice_cells(errors=np.zeros(4), ref_words=np.zeros(4), clusters=s[:4], slices=["x", "x", "y", "y"]), StatsOptions())
    assert wordless.method == "no_errors" and wordless.n_speakers == 4


def spanning_speakers():
    """20 speakers, most with rows in both slices x and y (a tag that varies within a speaker)."""
    rng = np.random.default_rng(8)
    speakers = [f"s{i:02d}" for i in range(20)]
    rows = [(s, label, float(rng.integers(0, 8)), float(rng.integers(20, 40))) for s in speakers for label in ("x", "y") if rng.random() < 0.8]
    s, labels, e, w = (list(column) for column in zip(*rows, strict=True))
    return np.array(e), np.array(w), s, labels


def test_equal_rate_test_bootstrap_in_small_chunks(monkeypatch):
    e, w, s, labels = spanning_speakers()
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    whole = stats.equal_rate_test(grouped, StatsOptions(n_resamples=100, seed=11, confidence=0.5))
    monkeypatch.setattr(stats._resampling, "CELLS_PER_CHUNK", 20 * 30)
    chunked = stats.equal_rate_test(grouped, StatsOptions(n_resamples=100, seed=11, confidence=0.5))
    assert chunked.n_resamples == whole.n_resamples == 200 and chunked.p_value == pytest.approx(whole.p_value)


def test_equal_rate_test_bootstrap_redone_by_hand():
    # Speakers appear in both slices (a tag that varies within a speaker): the centred speaker bootstrap.
    e, w, s, labels = spanning_speakers()
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    options = StatsOptions(confidence=0.5, n_resamples=100, seed=11)  # 200 resamples
    result = stats.equal_rate_test(grouped, options)
    assert result.method == "speaker_bootstrap_centred_studentized" and result.n_resamples == 200
    observed = welch_statistic(e, w, labels)
    assert result.statistic == pytest.approx(observed, rel=1e-10)
    names = sorted(set(s))
    centre = {k: e[np.array(labels) == k].sum() / w[np.array(labels) == k].sum() for k in ("x", "y")}
    n_cells = {k: labels.count(k) for k in ("x", "y")}
    picks = np.random.default_rng(11).integers(0, len(names), size=(200, len(names)))
    extreme = 0
    for row in picks:
        weight = np.bincount(row, minlength=len(names))[[names.index(name) for name in s]]
        stat = welch_statistic_weighted(e, w, labels, weight, centre, n_cells)
        extreme += stat >= observed - 1e-9 * max(1.0, observed)
    assert result.p_value == pytest.approx((1 + extreme) / 201)
    assert result.monte_carlo_se == pytest.approx(math.sqrt(result.p_value * (1 - result.p_value) / 200))


def welch_statistic_weighted(e, w, labels, weight, centre, n_cells):
    """welch_statistic of a bootstrap replicate: each row counted `weight` times; the floor stays the observed rate."""
    floor = e.sum() / w.sum()
    rates, weights = [], []
    for k in ("x", "y"):
        mask = np.array([label == k for label in labels])
        ek, wk, mk = e[mask], w[mask], weight[mask]
        total_e, total_w = float((mk * ek).sum()), float((mk * wk).sum())
        if total_w == 0:
            rates.append(0.0)
            weights.append(0.0)
            continue
        rate = total_e / total_w
        n = n_cells[k]
        squares = max(float(np.sum(mk * (ek - rate * wk) ** 2)), 0.0)
        variance = max((n / (n - 1) if n > 1 else 1.0) * squares / total_w**2, floor / total_w)
        rates.append(rate - centre[k])
        weights.append(1 / variance)
    rates, weights = np.array(rates), np.array(weights)
    mean = np.sum(weights * rates) / weights.sum()
    return float(np.sum(weights * (rates - mean) ** 2))


# --------------------------------------------------------------------------------------------------
# Paired changes per slice


def test_paired_changes_every_field_by_hand():
    # Slice p: 12 speakers, 10 changed; slice q: 9 speakers, 3 changed (intervals withheld); r: no words.
    rng = np.random.default_rng(17)
    rows = []
    for label, n, changed in (("p", 12, 10), ("q", 9, 3)):
        for i in range(n):
            words = float(rng.integers(20, 60))
            a = float(rng.integers(1, 10))
            step = float(rng.choice([-2, -1, 1, 2])) if i < changed else 0.0
            rows.append((f"{label}{i:02d}", label, a, max(a + step, 0.0), words))
    rows.append(("r00", "r", 0.0, 0.0, 0.0))
    s, labels, ea, eb, w = (list(column) for column in zip(*rows, strict=True))
    ea, eb, w = np.array(ea), np.array(eb), np.array(w)
    cells_a = stats.slice_cells(errors=ea, ref_words=w, clusters=s, slices=labels)
    cells_b = stats.slice_cells(errors=eb, ref_words=w, clusters=s, slices=labels)
    options = StatsOptions(confidence=0.9, min_speakers=8, min_words=100)
    result = stats.paired_changes(cells_a, cells_b, options, family_size=2)
    assert result.slices == ("p", "q", "r") and result.confidence == 0.9
    for k, label in enumerate(("p", "q")):
        m = np.array(labels) == label
        a, b, words = ea[m], eb[m], w[m]
        rate_a, rate_b = a.sum() / words.sum(), b.sum() / words.sum()
        delta, variance, df = cr3(b - a, words)
        t = scipy_stats.t.ppf(0.95, df)
        shares = words / words.sum()
        influence = (b - rate_b * words) / rate_b - (a - rate_a * words) / rate_a
        log_var = float(np.sum(influence**2 / (1 - shares) ** 2)) / words.sum() ** 2
        assert (result.value_a[k], result.value_b[k], result.delta[k]) == (pytest.approx(rate_a), pytest.approx(rate_b), pytest.approx(delta))
        assert result.delta_variance[k] == pytest.approx(variance, rel=1e-12) and result.degrees_of_freedom[k] == pytest.approx(df, rel=1e-12)
        assert result.relative[k] == pytest.approx(rate_b / rate_a - 1)
        assert result.words[k] == words.sum() and result.n_speakers[k] == m.sum()
        assert result.n_effective_speakers[k] == pytest.approx(words.sum() ** 2 / np.sum(words**2))
        changed = (b - a)[b != a]
        assert result.n_speakers_changed[k] == changed.size
        if changed.size >= 8:
            assert result.delta_lower[k] == pytest.approx(delta - t * math.sqrt(variance), rel=1e-10)
            assert result.delta_upper[k] == pytest.approx(delta + t * math.sqrt(variance), rel=1e-10)
            assert result.relative_lower[k] == pytest.approx(rate_b / rate_a * math.exp(-t * math.sqrt(log_var)) - 1, rel=1e-10)
            assert result.relative_upper[k] == pytest.approx(rate_b / rate_a * math.exp(t * math.sqrt(log_var)) - 1, rel=1e-10)
        else:  # a spread from three speakers is not a spread
            for name in ("delta_lower", "delta_upper", "relative_lower", "relative_upper"):
                assert math.isnan(getattr(result, name)[k]), name
        flips = [abs(np.dot(signs, changed)) for signs in itertools.product((-1, 1), repeat=changed.size)]
        assert result.p_value[k] == pytest.approx(np.mean(np.array(flips) >= abs(changed.sum()) - 1e-9)) and result.p_value_exact[k]
    effective = [w[np.array(labels) == k].sum() ** 2 / np.sum(w[np.array(labels) == k] ** 2) for k in ("p", "q")]
    assert effective[1] > 8 and w[np.array(labels) == "q"].sum() > 100
    assert result.small.tolist() == [False, False, True]  # q is large enough; only its change is from too few speakers
    assert math.isnan(result.p_value[2]) and math.isnan(result.value_a[2]) and result.words[2] == 0 and result.n_effective_speakers[2] == 0


def test_paired_changes_refuse_unpaired_cells():
    cells_a = stats.slice_cells(errors=[1, 2], ref_words=[10, 10], clusters=["a", "b"], slices=["x", "y"])
    other_speakers = stats.slice_cells(errors=[1, 2, 0], ref_words=[10, 10, 5], clusters=["a", "b", "c"], slices=["x", "y", "y"])
    other_words = stats.slice_cells(errors=[1, 2], ref_words=[10, 11], clusters=["a", "b"], slices=["x", "y"])
    other_slices = stats.slice_cells(errors=[1, 2], ref_words=[10, 10], clusters=["a", "b"], slices=["x", "z"])
    moved = stats.slice_cells(errors=[1, 2], ref_words=[10, 10], clusters=["a", "b"], slices=["y", "x"])
    for other in (other_speakers, other_slices, moved):
        with pytest.raises(StatsInputError, match=r"^paired cells differ: speakers or slices; pass two cell tables built from the same paired rows$"):
            stats.paired_changes(cells_a, other, StatsOptions())
    with pytest.raises(StatsInputError, match=r"^paired cells differ: reference words; pass two cell tables"):
        stats.paired_changes(cells_a, other_words, StatsOptions())


# --------------------------------------------------------------------------------------------------
# Sign flips


def test_sign_flips_monte_carlo_agree_with_enumeration_and_ties_count():
    # Slice 0: 14 speakers changed (2^14 > B: Monte Carlo); slice 1: 4 changed, all by 1 (ties); slice 2: nothing changed.
    d0 = np.array([3.0, -1, 2, 4, -2, 1, 5, 2, -1, 3, 2, 1, -3, 4])
    d1 = np.array([1.0, 1, 1, 1, 0, 0])
    d2 = np.zeros(3)
    differences = np.concatenate([d0, d1, d2])
    slices = np.repeat([0, 1, 2], [d0.size, d1.size, d2.size])
    clusters = np.arange(differences.size)
    p, exact = stats._resampling.sign_flip_p_values(slices, clusters, differences, 3, 2000, np.random.default_rng(2))
    enumerated = np.mean([abs(np.dot(signs, d0)) >= abs(d0.sum()) - 1e-9 for signs in itertools.product((-1, 1), repeat=d0.size)])
    se = math.sqrt(enumerated * (1 - enumerated) / 2000)
    assert not exact[0] and abs(p[0] - enumerated) < 4 * se + 1 / 2001 and 0.0005 < enumerated < 0.1
    assert p[0] * 2001 - 1 == pytest.approx(round(p[0] * 2001 - 1), abs=1e-6)
    assert exact[1] and p[1] == pytest.approx(2 / 16)  # only all-plus and all-minus reach |4|
    assert exact[2] and p[2] == 1.0
    # A few large changes still enumerate: 11 speakers changed is 2048 patterns, more than 2000 resamples.
    many = np.concatenate([np.ones(10), [2.0]])
    p_many, exact_many = stats._resampling.sign_flip_p_values(np.zeros(11, dtype=np.int64), np.arange(11), many, 1, 2000, np.random.default_rng(0))
    assert not exact_many[0] and p_many[0] < 0.01
    p_ten, exact_ten = stats._resampling.sign_flip_p_values(np.zeros(10, dtype=np.int64), np.arange(10), np.ones(10), 1, 1024, np.random.default_rng(0))
    assert exact_ten[0] and p_ten[0] == pytest.approx(2 / 1024)


# --------------------------------------------------------------------------------------------------
# One slice's interval at the edges


def test_an_interval_needs_two_speakers_with_words():
    # h: two speakers but only one holds words (the other's insertions add errors only); i: 1 and 5 words.
    grouped = stats.slice_cells(errors=[3, 1, 0, 2, 1], ref_words=[30, 0, 1, 5, 1], clusters=["h1", "h2", "i1", "i2", "w1"], slices=["h", "h", "i", "i", "w"])
    result = stats.slice_intervals(grouped, StatsOptions(min_speakers=1, min_words=0))
    assert result.n_speakers.tolist() == [2, 2, 1]
    assert math.isnan(result.variance[0]) and math.isnan(result.lower[0]) and math.isnan(result.degrees_of_freedom[0])
    rate, variance, df = cr3([0, 2], [1, 5])
    assert result.variance[1] == pytest.approx(variance) and result.degrees_of_freedom[1] == pytest.approx(df) and np.isfinite(result.lower[1])
    assert result.n_effective_speakers.tolist() == pytest.approx([1.0, 36 / 26, 1.0])  # one word: one effective speaker


def test_linear_bounds_of_a_negative_rounding_variance_are_nan_and_quiet():
    low, high = stats._intervals.linear_bounds(np.array([0.1, 0.2]), np.array([-1e-20, 0.01]), np.array([5.0, 5.0]), 0.95)
    assert math.isnan(low[0]) and math.isnan(high[0]) and high[1] == pytest.approx(0.2 + scipy_stats.t.ppf(0.975, 5) * 0.1)
    assert low.dtype == np.float64 and high.dtype == np.float64


def test_slice_intervals_at_the_edges():
    # z: no errors from one speaker (the Poisson bound needs no spread); n: no words at all; o: one speaker with errors.
    grouped = stats.slice_cells(errors=[0, 0, 0, 3], ref_words=[40, 0, 0, 30], clusters=["z1", "n1", "n2", "o1"], slices=["z", "n", "n", "o"])
    result = stats.slice_intervals(grouped, StatsOptions(min_speakers=1, min_words=0))
    n, o, z = (result.index(label) for label in ("n", "o", "z"))
    assert (result.lower[z], result.upper[z]) == (0.0, pytest.approx(-math.log(0.025) / 40))
    assert math.isnan(result.wer[n]) and math.isnan(result.lower[n]) and math.isnan(result.upper[n]) and result.n_effective_speakers[n] == 0
    assert result.wer[o] == pytest.approx(0.1) and math.isnan(result.lower[o]) and math.isnan(result.variance[o]) and math.isnan(result.degrees_of_freedom[o])
    assert result.n_utterances.tolist() == [2, 1, 1] and result.n_speakers.tolist() == [2, 1, 1]
    assert result.confidence == 0.95 and result.method == "cr3_bell_mccaffrey_t_log"
    assert result.n_utterances.dtype == np.int64
    # bounds() recomputes at another level; by default it withholds small slices' bounds (p: 20 words, 2 speakers).
    more = stats.slice_cells(errors=[0, 0, 0, 3, 1, 3], ref_words=[40, 0, 0, 30, 10, 10], clusters=["z1", "n1", "n2", "o1", "p1", "p2"], slices=["z", "n", "n", "o", "p", "p"])
    flagged = stats.slice_intervals(more, StatsOptions(min_speakers=1, min_words=35))
    assert flagged.small.tolist() == [True, True, True, False]
    low, high = flagged.bounds(0.5)
    assert math.isnan(low[2]) and math.isnan(high[2]) and low[3] == 0 and high[3] == pytest.approx(-math.log(0.25) / 40)
    assert low.dtype == np.float64 and high.dtype == np.float64
    raw_low, raw_high = flagged.bounds(0.5, mask_small=False)
    assert (raw_low[2], raw_high[2]) == (pytest.approx(log_interval([1, 3], [10, 10], 0.5)[0]), pytest.approx(log_interval([1, 3], [10, 10], 0.5)[1]))
    with pytest.raises(ValueError):
        result.wer[0] = 1.0  # results are read-only


# --------------------------------------------------------------------------------------------------
# Rows to cells: labels, missing values, inputs of every shape


def test_slice_cells_name_every_bad_input():
    ok = dict(errors=[1, 2, 3], ref_words=[9, 9, 9], clusters=["a", "b", "c"], slices=["x", "y", "x"])
    cases = [
        (dict(slices=["x", "y"]), r"^slices has 2 values but errors has 3; pass one value per utterance row$"),
        (dict(clusters=["a", "b"]), r"^clusters has 2 values but errors has 3; pass one value per utterance row$"),
        (dict(ref_words=[9, 9]), r"^ref_words has 2 values but errors has 3; pass one value per utterance row$"),
        (dict(slices=["x", None, np.nan]), r"^slices holds 2 missing label\(s\) \(first at row 1\); label every row or drop it$"),
        (dict(slices=np.array([["x", "y", "x"]])), r"^slices must be one-dimensional \(one value per utterance row\); got shape \(1, 3\)$"),
        (dict(clusters=np.array([["a"], ["b"], ["c"]])), r"^clusters must be one-dimensional \(one value per utterance row\); got shape \(3, 1\)$"),
        (dict(errors=[1, -2, 3]), r"^errors holds 1 negative value"),
        (dict(ref_words=[9, 9, np.inf]), r"^ref_words holds 1 NaN or infinite value\(s\) \(first at row 2\)"),
        (dict(errors=[[1, 2, 3]]), r"^errors must be one-dimensional \(one value per utterance row\); got shape \(1, 3\)$"),
    ]
    for change, message in cases:
        with pytest.raises(StatsInputError, match=message):
            stats.slice_cells(**{**ok, **change})


def test_slice_cells_defaults_series_and_labels_that_do_not_sort():
    everything = stats.slice_cells(errors=[1, 2, 3], ref_words=[5, 6, 7], clusters=None)
    assert everything.slices == ("all",) and everything.slice.tolist() == [0, 0, 0] and everything.slice.dtype == np.int64
    assert everything.cluster_names.tolist() == ["row:0", "row:1", "row:2"] and everything.n_clusters == 3 and everything.cluster.dtype == np.int64
    # Series keep their values, not their index.
    series = stats.slice_cells(errors=[1, 2, 3], ref_words=[5, 6, 7], clusters=pd.Series(["b", "a", "b"], index=[7, 3, 9]), slices=pd.Series(["y", "x", "y"], index=[7, 3, 9]))
    assert series.slices == ("x", "y") and series.cluster_names.tolist() == ["a", "b"]
    assert series.errors.tolist() == [2.0, 4.0] and series.words.tolist() == [6.0, 12.0] and series.n_utterances.tolist() == [1, 2]
    # Labels of mixed types cannot be sorted: first appearance decides the order.
    mixed = stats.slice_cells(errors=[1, 2, 3], ref_words=[5, 6, 7], clusters=["a", "b", "c"], slices=[("k",), 1, ("k",)])
    assert mixed.slices == (("k",), 1) and mixed.slice[mixed.cluster_names[mixed.cluster] == "b"].tolist() == [1]
    # A missing speaker is its own cluster, named after its row, after the sorted named ones; mixed types sort as text.
    missing = stats.slice_cells(errors=[1, 2, 3, 4], ref_words=[5, 6, 7, 8], clusters=["b", None, "a", np.nan])
    assert missing.cluster_names.tolist() == ["a", "b", "row:1", "row:3"] and missing.n_clusters == 4
    assert dict(zip(missing.cluster_names[missing.cluster].tolist(), missing.errors.tolist())) == {"a": 3.0, "b": 1.0, "row:1": 2.0, "row:3": 4.0}
    typed = stats.slice_cells(errors=[1, 2, 3], ref_words=[5, 6, 7], clusters=[2, ("a",), 10])
    assert typed.cluster_names.tolist() == ["('a',)", "10", "2"] and typed.errors.tolist() == [2.0, 3.0, 1.0]


def results_rows():
    return pd.DataFrame({
        "utterance_id": ["u1", "u2", "u3", "u4", "u5", "u6"],
        "speaker": ["s2", None, "s1", "s2", "", "s1"],
        "status": ["ok", "ok", "ok", "failed", "ok", "ok"],
        "accent": ["z", "a", None, "z", "a", "a"],
        "age": ["old", "old", "young", "old", "young", "young"],
        "errors": [1, 2, 3, 0, 5, 6],
        "ref_words": [10, 20, 30, 0, 50, 60],
        "char_errors": [4, 8, 12, 0, 20, 24],
        "ref_chars": [40, 80, 120, 0, 200, 240],
    })


def test_cells_from_frame_groups_labels_and_speakers():
    frame = results_rows()
    grouped = stats.cells_from_frame(frame, by="accent")
    assert grouped.slices[:2] == ("a", "z") and math.isnan(grouped.slices[2])  # a missing tag is a slice of its own, last
    # u4 failed and is dropped; u2 and u5 have no speaker and are clusters of their own, named by utterance.
    assert grouped.cluster_names.tolist() == ["s1", "s2", "utterance:u2", "utterance:u5"]
    table = {(grouped.cluster_names[c], grouped.slices[k] if isinstance(grouped.slices[k], str) else "nan"): (e, w)
             for c, k, e, w in zip(grouped.cluster, grouped.slice, grouped.errors, grouped.words)}
    assert table == {("s1", "a"): (6.0, 60.0), ("s1", "nan"): (3.0, 30.0), ("s2", "z"): (1.0, 10.0), ("utterance:u2", "a"): (2.0, 20.0), ("utterance:u5", "a"): (5.0, 50.0)}
    both = stats.cells_from_frame(frame, by=["age", "accent"], errors="char_errors", words="ref_chars")
    assert both.slices[:3] == (("old", "a"), ("old", "z"), ("young", "a")) and both.errors.sum() == 68 and both.words.sum() == 680
    overall = stats.cells_from_frame(frame, by=None)
    assert overall.slices == ("all",) and overall.slice.tolist() == [0] * overall.slice.size and overall.n_utterances.sum() == 5


def test_cells_from_frame_uses_the_cluster_column_and_names_missing_columns():
    frame = results_rows().drop(columns=["utterance_id"]).assign(cluster=["c9", "c1", "c1", "c9", "c5", "c5"])
    grouped = stats.cells_from_frame(frame, by="age")
    assert grouped.cluster_names.tolist() == ["c1", "c5", "c9"] and grouped.n_utterances.sum() == 5
    no_speaker = results_rows().drop(columns=["speaker", "status"])
    assert stats.cells_from_frame(no_speaker, by="age").cluster_names.tolist() == [f"utterance:u{i}" for i in range(1, 7)]
    with pytest.raises(StatsInputError, match=r"^results has no column 'accent'; columns present: \['errors', 'ref_words', 'utterance_id'\]$"):
        stats.cells_from_frame(pd.DataFrame({"errors": [1], "ref_words": [2], "utterance_id": ["u"]}), by="accent")
    with pytest.raises(StatsInputError, match=r"^results has no column 'utterance_id'"):
        stats.cells_from_frame(pd.DataFrame({"errors": [1], "ref_words": [2]}), by=None)


def test_cells_from_frame_keeps_only_observed_categories_in_sorted_order():
    frame = results_rows().assign(accent=pd.Categorical(["z", "a", "m", "z", "a", "a"], categories=["z", "q", "m", "a"]))
    grouped = stats.cells_from_frame(frame, by="accent")
    assert [str(label) for label in grouped.slices] == ["z", "m", "a"]  # category order, and the unused "q" is not a slice
    assert np.bincount(grouped.slice, weights=grouped.errors).tolist() == [1.0, 3.0, 13.0]
    text = results_rows().assign(accent=["z", "b", "m", "z", "b", "b"])
    assert stats.cells_from_frame(text, by="accent").slices == ("b", "m", "z")


def test_gaps_of_one_word_and_of_a_slice_without_rows():
    one = stats.gaps_to_overall(stats.slice_cells(errors=[1], ref_words=[1], clusters=["a"]), StatsOptions())
    assert one.gap[0] == 0 and one.ratio[0] == 1
    # Cells built from codes may name a slice no row falls in: it gets NaN, the others their values.
    grouped = stats.cells_from_codes(np.array(A_ERRORS + B_ERRORS), np.array(A_WORDS + B_WORDS), np.arange(11), np.arange(11), np.repeat([0, 1], [5, 6]), ("a", "b", "c"))
    result = stats.gaps_to_overall(grouped, StatsOptions())
    full = stats.gaps_to_overall(stats.cells_from_codes(np.array(A_ERRORS + B_ERRORS), np.array(A_WORDS + B_WORDS), np.arange(11), np.arange(11), np.repeat([0, 1], [5, 6]), ("a", "b")), StatsOptions())
    assert result.gap.shape == (3,) and math.isnan(result.gap[2]) and math.isnan(result.gap_lower[2])
    assert result.gap_lower[:2].tolist() == pytest.approx(full.gap_lower.tolist()) and result.ratio_upper[:2].tolist() == pytest.approx(full.ratio_upper.tolist())
    sized = stats.slice_intervals(grouped, StatsOptions())
    assert sized.n_speakers.tolist() == [5, 6, 0] and sized.n_utterances.tolist() == [5, 6, 0] and math.isnan(sized.wer[2])


# --------------------------------------------------------------------------------------------------
# Adjusting p-values


def test_adjustments_keep_nan_as_float_and_refuse_bad_p_values():
    for adjust in (stats.holm, stats.benjamini_hochberg):
        adjusted = adjust([0.04, np.nan, 0.01])
        assert adjusted.dtype == np.float64 and math.isnan(adjusted[1])
        assert adjust([np.nan, np.nan]).dtype == np.float64 and np.isnan(adjust([np.nan, np.nan])).all()
        with pytest.raises(StatsInputError, match=r"^pvalues must lie in \[0, 1\]; got 1.5 at position 1$"):
            adjust([0.2, 1.5])
        with pytest.raises(StatsInputError, match=r"^pvalues must lie in \[0, 1\]; got -0.1 at position 0$"):
            adjust([-0.1, 0.5])
        with pytest.raises(StatsInputError, match=r"^pvalues must be one-dimensional \(one value per utterance row\); got shape \(2, 1\)$"):
            adjust([[0.1], [0.2]])
    assert stats.benjamini_hochberg([0.04, np.nan, 0.01]).tolist()[::2] == pytest.approx([0.04, 0.02])
    assert stats.holm([0.04, np.nan, 0.01]).tolist()[::2] == pytest.approx([0.04, 0.02])


def test_chunk_sizes_and_assignment_counts(monkeypatch):
    monkeypatch.setattr(stats._resampling, "CELLS_PER_CHUNK", 4)
    assert stats._resampling.chunk_sizes(10, 1) == [4, 4, 2]
    assert stats._resampling.chunk_sizes(5, 10) == [1, 1, 1, 1, 1]  # wider than a chunk: one row at a time
    assert stats._resampling.chunk_sizes(9, 2) == [2, 2, 2, 2, 1] and stats._resampling.chunk_sizes(0, 3) == []
    # Exact, as an integer, however many speakers: 400 speakers in two slices of 200.
    count = stats._resampling.n_assignments(np.repeat([0, 1], 200))
    assert isinstance(count, int) and count == math.comb(400, 200)
    assert stats._resampling.n_assignments(np.array([3, 1, 3, 2, 1, 3])) == 60


def test_sign_flips_monte_carlo_redone_from_the_same_random_stream(monkeypatch):
    # Two slices with many changed speakers (Monte Carlo), one with a single change (exact), and a fourth
    # slice with no cells at all; speakers are numbered out of order.
    rng = np.random.default_rng(4)
    d0 = rng.integers(-3, 4, size=15).astype(float)
    d1 = rng.integers(-2, 5, size=13).astype(float)
    differences = np.concatenate([d0, d1, [0.0, 2.0, 0.0]])
    slices = np.repeat([0, 1, 2], [15, 13, 3])
    clusters = rng.permutation(differences.size)
    p, exact = stats._resampling.sign_flip_p_values(slices, clusters, differences, 4, 500, np.random.default_rng(9))
    assert exact.tolist() == [False, False, True, True] and p[2] == 1.0 and p[3] == 1.0
    # By hand: the speakers that changed in the Monte Carlo slices, in sorted order, each flipped by one
    # random bit per resample, the bits drawn eight to a byte, a row of bytes per speaker.
    changed = (differences != 0) & (slices < 2)
    speakers = np.unique(clusters[changed])
    packed = np.random.default_rng(9).integers(0, 256, size=(speakers.size, (500 + 7) // 8), dtype=np.uint8)
    signs = (np.unpackbits(packed, axis=1, count=500).T * 2.0 - 1.0)  # resamples x speakers
    for k in (0, 1):
        rows = changed & (slices == k)
        column = np.searchsorted(speakers, clusters[rows])
        flipped = np.abs(signs[:, column] @ differences[rows])
        observed = abs(differences[rows].sum())
        assert p[k] == pytest.approx((1 + np.count_nonzero(flipped >= observed - 1e-9 * max(1.0, observed))) / 501)
    # In chunks of a few resamples: each chunk draws its own bytes from the same stream, in turn.
    monkeypatch.setattr(stats._resampling, "CELLS_PER_CHUNK", 3 * speakers.size)
    chunked, _ = stats._resampling.sign_flip_p_values(slices, clusters, differences, 4, 500, np.random.default_rng(9))
    stream = np.random.default_rng(9)
    counts = stats._resampling.chunk_sizes(500, speakers.size)
    assert counts[0] == 3 and sum(counts) == 500
    signs = np.vstack([np.unpackbits(stream.integers(0, 256, size=(speakers.size, (c + 7) // 8), dtype=np.uint8), axis=1, count=c).T * 2.0 - 1.0 for c in counts])
    for k in (0, 1):
        rows = changed & (slices == k)
        flipped = np.abs(signs[:, np.searchsorted(speakers, clusters[rows])] @ differences[rows])
        observed = abs(differences[rows].sum())
        assert chunked[k] == pytest.approx((1 + np.count_nonzero(flipped >= observed - 1e-9 * max(1.0, observed))) / 501)
    assert chunked[2:].tolist() == [1.0, 1.0]


def test_cells_keep_label_types_counts_and_category_order():
    labels = stats.cluster_labels(speakers=[1, "1", np.nan], utterance_ids=["u1", "u2", "u3"])
    assert labels.tolist() == [1, "1", "utterance:u3"]
    grouped = stats.cells_from_codes(np.array([1.0, 2, 3]), np.array([9.0, 9, 9]), np.array([0, 1, 1]), [7, "a"], np.array([0, 0, 0]), ("all",), n_utterances=[3, 2, 4])
    assert grouped.n_utterances.tolist() == [3, 6] and grouped.n_utterances.dtype == np.int64 and grouped.cluster_names.tolist() == [7, "a"]
    # Numeric speakers sort as numbers and stay numbers; categorical labels keep their category order.
    numeric = stats.slice_cells(errors=[1, 2, 3], ref_words=[5, 5, 5], clusters=[10, 2, 1])
    assert numeric.cluster_names.tolist() == [1, 2, 10] and numeric.errors.tolist() == [3.0, 2.0, 1.0]
    categorical = pd.Series(pd.Categorical(["b", "a", "c"], categories=["c", "b", "a"]))
    assert stats.slice_cells(errors=[1, 2, 3], ref_words=[5, 5, 5], clusters=categorical).cluster_names.tolist() == ["c", "b", "a"]
    assert stats.slice_cells(errors=[1, 2, 3], ref_words=[5, 5, 5], clusters=["x", "y", "z"], slices=categorical).slices == ("c", "b", "a")


def test_cells_from_frame_names_the_bad_column():
    frame = results_rows()
    frame.loc[2, "errors"] = -1
    with pytest.raises(StatsInputError, match=r"^errors holds 1 negative value\(s\) \(first at row 2: -1.0\)"):
        stats.cells_from_frame(frame, by="age")
    frame.loc[2, "ref_chars"] = np.nan
    with pytest.raises(StatsInputError, match=r"^ref_chars holds 1 NaN or infinite value\(s\) \(first at row 2\)"):
        stats.cells_from_frame(frame, by="age", errors="char_errors", words="ref_chars")


def test_paired_changes_by_monte_carlo_and_to_no_errors():
    # m: 14 speakers all changed (2^14 sign patterns: Monte Carlo with the default family of one);
    # fixed: run B makes no errors at all.
    rng = np.random.default_rng(23)
    words = rng.integers(20, 50, size=24).astype(float)
    errors_a = rng.integers(1, 8, size=24).astype(float)
    errors_b = errors_a + np.where(np.arange(24) < 14, rng.choice([-1.0, 1.0, 2.0], size=24), 0.0)
    errors_b[14:] = 0.0
    labels = ["m"] * 14 + ["fixed"] * 10
    speakers = [f"s{i:02d}" for i in range(24)]
    cells_a = stats.slice_cells(errors=errors_a, ref_words=words, clusters=speakers, slices=labels)
    cells_b = stats.slice_cells(errors=errors_b, ref_words=words, clusters=speakers, slices=labels)
    result = stats.paired_changes(cells_a, cells_b, StatsOptions())
    fixed, m = result.slices.index("fixed"), result.slices.index("m")
    assert not result.p_value_exact[m] and result.p_value[m] * 2001 - 1 == pytest.approx(round(result.p_value[m] * 2001 - 1), abs=1e-6)
    assert result.value_b[fixed] == 0 and result.relative[fixed] == -1
    assert math.isnan(result.relative_lower[fixed]) and math.isnan(result.relative_upper[fixed])  # no log of a zero rate
    assert np.isfinite(result.delta_lower[fixed]) and np.isfinite(result.relative_lower[m])
    assert result.delta[fixed] == pytest.approx(-errors_a[14:].sum() / words[14:].sum())
    assert result.p_value_exact[fixed] and result.p_value[fixed] == pytest.approx(2 / 1024)


def test_paired_changes_from_no_errors_at_the_boundaries_and_reproducibly():
    # from0: run A makes no errors, run B errs for 9 of 10 speakers (a relative change from zero is not
    # defined); edge: exactly min_speakers (8) speakers changed, so its interval is given; one: a slice
    # of one word; mc: 16 speakers changed, Monte Carlo p-values that must come from the options' seed.
    rows = []
    for i in range(10):
        rows.append((f"z{i}", "from0", 0.0, 1.0 if i < 9 else 0.0, 20.0 + i))
    for i in range(10):
        rows.append((f"e{i}", "edge", 3.0, 3.0 + (1.0 if i % 2 else -1.0) * (i < 8), 30.0 + i))
    rows.append(("o0", "one", 0.0, 1.0, 1.0))
    for i in range(16):
        rows.append((f"m{i:02d}", "mc", 5.0, 5.0 + [1.0, -1.0, 2.0, 1.0][i % 4], 40.0 + i))
    s, labels, ea, eb, w = (list(column) for column in zip(*rows, strict=True))
    cells_a = stats.slice_cells(errors=ea, ref_words=w, clusters=s, slices=labels)
    cells_b = stats.slice_cells(errors=eb, ref_words=w, clusters=s, slices=labels)
    options = StatsOptions(min_speakers=8, min_words=1)
    result = stats.paired_changes(cells_a, cells_b, options)
    k = {label: result.slices.index(label) for label in ("from0", "edge", "one", "mc")}
    assert result.n_speakers_changed.dtype == np.int64 and result.n_speakers_changed.tolist()[k["edge"]] == 8
    assert result.value_a[k["from0"]] == 0 and result.n_speakers_changed[k["from0"]] == 9
    for name in ("relative", "relative_lower", "relative_upper"):
        value = getattr(result, name)
        assert value.dtype == np.float64 and math.isnan(value[k["from0"]]), name  # no ratio to a zero rate
    assert np.isfinite(result.delta_lower[k["from0"]])  # the difference is defined
    assert np.isfinite(result.delta_lower[k["edge"]]) and np.isfinite(result.relative_lower[k["edge"]])  # 8 changed: not too few
    assert result.words[k["one"]] == 1 and result.p_value[k["one"]] == 1.0 and result.p_value_exact[k["one"]]
    # The Monte Carlo p-value is redone from the options' seed: the same value every time.
    again = stats.paired_changes(cells_a, cells_b, options)
    assert not result.p_value_exact[k["mc"]] and result.p_value[k["mc"]] == again.p_value[k["mc"]]
    other_seed = stats.paired_changes(cells_a, cells_b, StatsOptions(min_speakers=8, min_words=1, seed=1))
    assert other_seed.p_value[k["mc"]] != result.p_value[k["mc"]]


def test_equal_rates_everywhere_are_never_evidence_of_a_difference():
    # Every speaker errs 2 in 20 words in every slice: each resample's rates equal the observed ones
    # exactly, so every resample is as extreme as the data and p is 1, by bootstrap (speakers in both
    # slices) and by permutation (each speaker in one slice).
    shared = stats.slice_cells(errors=[2.0] * 12, ref_words=[20.0] * 12, clusters=[f"s{i % 6}" for i in range(12)], slices=["a"] * 6 + ["b"] * 6)
    nested = stats.slice_cells(errors=[2.0] * 12, ref_words=[20.0] * 12, clusters=[f"s{i}" for i in range(12)], slices=["a"] * 6 + ["b"] * 6)
    for cells, method in ((shared, "speaker_bootstrap_centred_studentized"), (nested, None)):
        result = stats.equal_rate_test(cells, StatsOptions())
        assert result.statistic == 0.0 and result.p_value == 1.0, method
        if method is not None:
            assert result.method == method


def test_a_missing_p_value_given_as_none_stays_missing():
    assert np.isnan(stats.holm([0.01, None, 0.04])[1]) and stats.holm([0.01, None, 0.04])[[0, 2]].tolist() == [0.02, 0.04]
    assert np.isnan(stats.benjamini_hochberg([0.01, None, 0.04])[1]) and stats.benjamini_hochberg([0.01, None, 0.04])[[0, 2]].tolist() == [0.02, 0.04]


def test_disparity_takes_a_mask_of_ones_and_zeros_as_the_booleans_it_means():
    e, w, s, labels = four_slices()
    grouped = stats.slice_cells(errors=e, ref_words=w, clusters=s, slices=labels)
    options = StatsOptions(n_resamples=200)
    intervals = stats.slice_intervals(grouped, options)
    by_bool = stats.disparity(intervals, grouped, options, eligible=np.array([True, False, True, True]))
    by_int = stats.disparity(intervals, grouped, options, eligible=[1, 0, 1, 1])
    assert by_int.slices_compared == by_bool.slices_compared == ("g0", "g2", "g3")
    assert (by_int.worst_slice, by_int.best_slice) == (by_bool.worst_slice, by_bool.best_slice) == ("g3", "g0")
    assert by_int.worst_minus_best == by_bool.worst_minus_best
