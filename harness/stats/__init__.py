"""Speaker-clustered statistics for WER: pooled rates, intervals, disparity, tests and p-value adjustment.

A slice's WER is a ratio estimator, sum(errors) / sum(reference words). The utterances of one speaker
are not independent, so every interval and test here treats whole speakers as the unit: rows are first
summed into (speaker, slice) cells (`slice_cells`, `cells_from_frame`), and everything else works from
those sums, so its cost grows with speakers, not utterances. Every method is validated by simulation
(validation/README.md). Private modules by topic; the public surface is re-exported here:

- `_options`: `StatsOptions`, the one options record (confidence, size minimums, resamples, seed);
- `_cells`: counts to cells; `pooled_wer`, `mean_utterance_wer(s)`, `cluster_labels`;
- `_intervals`: CR3 / Bell-McCaffrey t intervals (log scale for rates), the small-slice rule,
  gaps to overall, paired changes between runs or conditions;
- `_tests`: the test of equal WER across slices (speaker permutation or bootstrap), differences;
- `_disparity`: worst/best range and ratio with simultaneous intervals; the change of a gap;
- `_resampling`: permutations and bootstrap counts over speakers;
- `_multiple`: Holm and Benjamini-Hochberg.
"""

from harness.stats._cells import (
    SliceCells, cells_from_codes, cells_from_frame, cluster_labels, cluster_totals, mean_utterance_wer, mean_utterance_wers, pooled_wer, slice_cells,
)
from harness.stats._disparity import Disparity, GapChange, SliceMeasure, disparity, gap_change
from harness.stats._intervals import (
    DIFFERENCE_METHOD, RATIO_METHOD, GapToOverall, Interval, PairedChange, SliceIntervals, effective_speakers, gaps_to_overall,
    is_small, paired_changes, ratio_interval, slice_intervals,
)
from harness.stats._multiple import benjamini_hochberg, holm
from harness.stats._options import (
    DEFAULT_CONFIDENCE, DEFAULT_MIN_REF_WORDS, DEFAULT_MIN_SPEAKERS, DEFAULT_N_RESAMPLES, StatsInputError, StatsOptions,
    confidence_label,
)
from harness.stats._tests import (
    DifferenceTest, EqualityTest, compare_slices, degradation_difference, differential_degradation, equal_rate_test,
    paired_difference,
)

__all__ = [
    "DEFAULT_CONFIDENCE", "DEFAULT_MIN_REF_WORDS", "DEFAULT_MIN_SPEAKERS", "DEFAULT_N_RESAMPLES", "DIFFERENCE_METHOD", "RATIO_METHOD",
    "DifferenceTest", "Disparity", "EqualityTest", "GapChange", "GapToOverall", "Interval", "PairedChange", "SliceCells",
    "SliceIntervals", "SliceMeasure", "StatsInputError", "StatsOptions",
    "benjamini_hochberg", "cells_from_codes", "cells_from_frame", "cluster_labels", "cluster_totals", "compare_slices",
    "confidence_label", "degradation_difference", "differential_degradation", "disparity", "effective_speakers",
    "equal_rate_test", "gap_change", "gaps_to_overall", "holm", "is_small", "mean_utterance_wer", "mean_utterance_wers", "paired_changes",
    "paired_difference", "pooled_wer", "ratio_interval", "slice_cells", "slice_intervals",
]
