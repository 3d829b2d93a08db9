"""Disparity between slices that survives picking the worst and the best from the same data.

The plug-in worst-minus-best gap is biased upward (winner's curse): with equal true WERs it is
positive in every data set. Intervals for it therefore come from simultaneous intervals: Sidak-adjusted
per-slice intervals at level c^(1/K) for K slices, which hold for every slice at once with probability
at least c. Whenever every true WER lies in its interval, the range of true WERs lies in
[max(0, max lower - min upper), max upper - min lower], and so on for the ratio and each slice's gap
to the best. These intervals are conservative by construction; whether the slices differ at all is
judged by the test of equal WER (`EqualityTest`), which is more powerful.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.stats._cells import SliceCells
from harness.stats._intervals import Interval, SliceIntervals
from harness.stats._options import StatsOptions
from harness.stats._tests import EqualityTest, equal_rate_test

SIMULTANEOUS_METHOD = "sidak_simultaneous_cr3_t_log"


@dataclass(frozen=True, kw_only=True, eq=False)
class SliceMeasure:
    """A per-slice comparison (gap or ratio to the best slice) with intervals; NaN where not eligible."""

    slices: tuple
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"slice": list(self.slices), "estimate": self.estimate, "lower": self.lower, "upper": self.upper})


@dataclass(frozen=True, kw_only=True, eq=False)
class Disparity:
    """Disparity among the eligible slices of one dimension.

    `worst_slice`/`best_slice` are the highest and lowest point estimates (None with fewer than two
    eligible slices); `detected` is True only when `equal_wer_test` rejects at the options' alpha
    (pass `alpha` to `with_alpha` after adjusting for several dimensions). Gaps are absolute WER
    differences (0.02 = 2 points); ratios are quotients (inf when the lower bound of the best is 0).
    """

    slices_compared: tuple
    worst_slice: object
    best_slice: object
    worst_to_best_ratio: Interval
    worst_minus_best: Interval
    gap_to_best: SliceMeasure
    ratio_to_best: SliceMeasure
    equal_wer_test: EqualityTest | None
    simultaneous_confidence: float
    alpha: float

    @property
    def detected(self) -> bool:
        return self.equal_wer_test is not None and self.equal_wer_test.rejects(self.alpha)


def disparity(
    intervals: SliceIntervals,
    cells: SliceCells,
    options: StatsOptions,
    *,
    eligible: np.ndarray | None = None,
    family_size: int = 1,
) -> Disparity:
    """Worst, best, the range and ratio of WERs with simultaneous intervals, each slice's gap to the best,
    and the test of equal WER, over the eligible slices.

    `eligible` defaults to the slices that are not small and have an interval; pass a narrower mask to
    leave out slices that are not a group of people (rows with no label). `family_size` is how many
    dimensions are tested together (it sets the number of permutations; adjust the p-values with Holm).
    """
    if cells.slices != intervals.slices:
        raise ValueError("intervals and cells describe different slices")
    usable = ~np.asarray(intervals.small) & np.isfinite(intervals.wer) & np.isfinite(intervals.variance)
    eligible = usable if eligible is None else (np.asarray(eligible, dtype=bool) & usable)
    labels = intervals.slices
    index = np.flatnonzero(eligible)
    k = index.size
    nan = np.full(len(labels), np.nan)
    level = options.confidence ** (1.0 / max(k, 1))
    empty_interval = Interval(estimate=float("nan"), lower=float("nan"), upper=float("nan"), confidence=options.confidence, method=SIMULTANEOUS_METHOD)
    if k < 2:
        measure = SliceMeasure(slices=labels, estimate=nan, lower=nan, upper=nan)
        return Disparity(
            slices_compared=tuple(labels[i] for i in index), worst_slice=None, best_slice=None,
            worst_to_best_ratio=empty_interval, worst_minus_best=empty_interval, gap_to_best=measure, ratio_to_best=measure,
            equal_wer_test=None, simultaneous_confidence=level, alpha=options.alpha,
        )
    lower_all, upper_all = intervals.bounds(level, mask_small=False)
    wer = np.asarray(intervals.wer, dtype=np.float64)
    lower, upper = lower_all[index], upper_all[index]
    best_point, worst_point = float(wer[index].min()), float(wer[index].max())
    min_upper, min_lower = float(upper.min()), float(lower.min())
    gap = Interval(
        estimate=worst_point - best_point, lower=max(0.0, float(lower.max()) - min_upper), upper=float(upper.max()) - min_lower,
        confidence=options.confidence, method=SIMULTANEOUS_METHOD,
    )
    ratio = Interval(
        estimate=_divide(worst_point, best_point), lower=max(1.0, _divide(float(lower.max()), min_upper)), upper=_divide(float(upper.max()), min_lower),
        confidence=options.confidence, method=SIMULTANEOUS_METHOD,
    )
    gap_estimate, gap_lower, gap_upper = nan.copy(), nan.copy(), nan.copy()
    ratio_estimate, ratio_lower, ratio_upper = nan.copy(), nan.copy(), nan.copy()
    gap_estimate[index] = wer[index] - best_point
    gap_lower[index] = np.maximum(0.0, lower - min_upper)
    gap_upper[index] = upper - min_lower
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_estimate[index] = [_divide(v, best_point) for v in wer[index]]
        ratio_lower[index] = np.maximum(1.0, [_divide(v, min_upper) for v in lower])
        ratio_upper[index] = [_divide(v, min_lower) for v in upper]
    test = equal_rate_test(cells, options, include=eligible, family_size=family_size)
    return Disparity(
        slices_compared=tuple(labels[i] for i in index),
        worst_slice=labels[index[int(np.argmax(wer[index]))]], best_slice=labels[index[int(np.argmin(wer[index]))]],
        worst_to_best_ratio=ratio, worst_minus_best=gap,
        gap_to_best=SliceMeasure(slices=labels, estimate=gap_estimate, lower=gap_lower, upper=gap_upper),
        ratio_to_best=SliceMeasure(slices=labels, estimate=ratio_estimate, lower=ratio_lower, upper=ratio_upper),
        equal_wer_test=test, simultaneous_confidence=level, alpha=options.alpha,
    )


@dataclass(frozen=True, kw_only=True)
class GapChange:
    """The worst-best gap in two runs and its change (B - A), from simultaneous intervals over both runs.

    `verdict` is "shrank" when the whole interval of the change is below 0, "grew" when above,
    "inconclusive" otherwise, and None with fewer than two eligible slices.
    """

    gap_a: Interval
    gap_b: Interval
    change: Interval
    verdict: str | None
    simultaneous_confidence: float


def gap_change(intervals_a: SliceIntervals, intervals_b: SliceIntervals, eligible: np.ndarray, options: StatsOptions) -> GapChange:
    """Did the worst-best gap shrink from run A to run B? Both runs' eligible slices covered at once.

    With 2K intervals holding jointly (Sidak, level c^(1/2K)), gap A lies in [lo_A, hi_A] and gap B in
    [lo_B, hi_B], so the change lies in [lo_B - hi_A, hi_B - lo_A]. Conservative: it claims a change
    only when the runs' simultaneous ranges do not overlap.
    """
    index = np.flatnonzero(np.asarray(eligible, dtype=bool))
    k = index.size
    level = options.confidence ** (1.0 / max(2 * k, 1))
    nan_interval = Interval(estimate=float("nan"), lower=float("nan"), upper=float("nan"), confidence=options.confidence, method=SIMULTANEOUS_METHOD)
    if k < 2:
        return GapChange(gap_a=nan_interval, gap_b=nan_interval, change=nan_interval, verdict=None, simultaneous_confidence=level)
    gaps = []
    for intervals in (intervals_a, intervals_b):
        lower, upper = (bound[index] for bound in intervals.bounds(level, mask_small=False))
        wer = np.asarray(intervals.wer)[index]
        gaps.append(Interval(
            estimate=float(wer.max() - wer.min()), lower=max(0.0, float(lower.max() - upper.min())), upper=float(upper.max() - lower.min()),
            confidence=options.confidence, method=SIMULTANEOUS_METHOD,
        ))
    gap_a, gap_b = gaps
    change = Interval(
        estimate=gap_b.estimate - gap_a.estimate, lower=gap_b.lower - gap_a.upper, upper=gap_b.upper - gap_a.lower,
        confidence=options.confidence, method=SIMULTANEOUS_METHOD,
    )
    if not (np.isfinite(change.lower) and np.isfinite(change.upper)):
        verdict = None
    else:
        verdict = "shrank" if change.upper < 0 else "grew" if change.lower > 0 else "inconclusive"
    return GapChange(gap_a=gap_a, gap_b=gap_b, change=change, verdict=verdict, simultaneous_confidence=level)


def _divide(numerator: float, denominator: float) -> float:
    """x / 0 is inf for x > 0 and NaN for 0 / 0."""
    if denominator == 0:
        return float("inf") if numerator > 0 else float("nan")
    return float(numerator) / float(denominator)
