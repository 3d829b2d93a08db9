"""Statistical validity, checked by simulation against a known truth (a fast slice of validation/).

The data-generating process is validation/simulate.py (speakers that differ as much as on Artie,
skewed utterances per speaker, one dominant speaker); the full grid and its tables are in
validation/README.md. Here a few of the hardest cells run with enough data sets to fail a method that
under-covers by a few points: few speakers, skewed designs, low WER with speakers that differ.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import stats
from validation.simulate import simulate_speakers, true_change

pytestmark = pytest.mark.slow
REPS = 1500
# 1,500 data sets: a 95% coverage has a Monte Carlo SD of 0.56 points, so 93.0-97.0 is over 3 SD wide each side.
LOW, HIGH = 0.93, 0.97


def _cells(errors, words):
    reps, n = words.shape
    cluster = np.arange(reps * n)
    return stats.cells_from_codes(errors.ravel().astype(float), words.ravel().astype(float), cluster, cluster, np.repeat(np.arange(reps), n), tuple(range(reps)))


@pytest.mark.parametrize(
    ("n", "design", "heterogeneity", "wer"),
    [(10, "balanced", "high", 0.05), (20, "skewed", "high", 0.15), (50, "skewed", "high", 0.05), (200, "skewed", "low", 0.35)],
)
def test_slice_interval_covers_where_the_small_rule_allows_one(n, design, heterogeneity, wer):
    rng = np.random.default_rng(n)
    data = simulate_speakers(rng, reps=REPS, n_speakers=n, design=design, heterogeneity=heterogeneity, wer=wer)
    result = stats.slice_intervals(_cells(data.errors_a, data.words), stats.StatsOptions())
    shown = ~np.asarray(result.small)
    covered = (result.lower <= wer) & (wer <= result.upper)
    assert shown.mean() > 0.5
    assert LOW <= covered[shown].mean() <= HIGH


def test_the_old_percentile_bootstrap_fails_where_the_new_interval_covers():
    """Guards the reason for the change: 10 speakers, low WER, speakers that differ."""
    rng = np.random.default_rng(1)
    data = simulate_speakers(rng, reps=REPS, n_speakers=10, design="balanced", heterogeneity="high", wer=0.05)
    counts = np.zeros((500, 10))
    np.add.at(counts, (np.repeat(np.arange(500), 10), rng.integers(0, 10, size=5000)), 1)
    draws = (counts @ data.errors_a.T) / (counts @ data.words.T)
    old = (np.quantile(draws, 0.025, axis=0) <= 0.05) & (0.05 <= np.quantile(draws, 0.975, axis=0))
    assert old.mean() < 0.9


@pytest.mark.parametrize(("shift", "shift_sd", "wer"), [(0.8, 0.5, 0.05), (-0.25, 0.3, 0.15)])
def test_paired_change_covers_under_noise_and_between_models(shift, shift_sd, wer):
    rng = np.random.default_rng(int(100 * wer))
    data = simulate_speakers(rng, reps=REPS, n_speakers=20, design="balanced", heterogeneity="high", wer=wer, shift=shift, shift_sd=shift_sd)
    change = stats.paired_changes(_cells(data.errors_a, data.words), _cells(data.errors_b, data.words), stats.StatsOptions(n_resamples=200))
    truth = true_change(wer, "high", shift, shift_sd)
    shown = np.isfinite(change.delta_lower)
    covered = (change.delta_lower <= truth) & (truth <= change.delta_upper)
    assert shown.mean() > 0.9 and LOW <= covered[shown].mean() <= HIGH


def test_no_disparity_is_claimed_in_at_most_alpha_of_data_sets():
    """Seven accents sized like Artie's, equal true WER: the report's claim ("evidence of a disparity")."""
    rng = np.random.default_rng(2)
    sizes = (12, 13, 19, 23, 77, 154, 339)
    reps = 300
    parts = [simulate_speakers(rng, reps=reps, n_speakers=n, design="skewed", heterogeneity="high", wer=0.255) for n in sizes]
    options = stats.StatsOptions()
    claims = 0
    for rep in range(reps):
        errors = np.concatenate([p.errors_a[rep] for p in parts]).astype(float)
        words = np.concatenate([p.words[rep] for p in parts]).astype(float)
        codes = np.concatenate([np.full(n, k) for k, n in enumerate(sizes)])
        cluster = np.arange(words.size)
        grouped = stats.cells_from_codes(errors, words, cluster, cluster, codes, tuple(range(len(sizes))))
        claims += stats.disparity(stats.slice_intervals(grouped, options), grouped, options).detected
    # 300 data sets: 5% has a Monte Carlo SD of 1.3 points; 9% is three SD above.
    assert claims / reps <= 0.09
