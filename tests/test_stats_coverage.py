"""Statistical validity: do 95% intervals cover the true WER 95% of the time when speakers differ?

Data-generating process, per repetition and per slice k (true WER mu_k):
  40 speakers; speaker rate p_s ~ Beta(mu_k * 8, (1 - mu_k) * 8), so the between-speaker SD is about
  0.11 at mu = 0.12 and 0.14 at mu = 0.25 (large next to the binomial noise within a speaker);
  10-20 utterances per speaker, 3-25 reference words per utterance, drawn independently of p_s;
  errors ~ Binomial(words, p_s).
Truth: the population ratio E[errors] / E[words] = E[words * p_s] / E[words] = mu_k exactly, since words
are independent of p_s. The estimator is unbiased too: given the words, E[sum e / sum w] = mu_k.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import stats

TRUE_WER = np.array([0.12, 0.25])
BETA_CONCENTRATION = 8.0
SPEAKERS_PER_SLICE = 40
REPETITIONS = 1000
UTTERANCE_LEVEL_REPETITIONS = 200  # its bootstrap resamples ~2,400 rows, not 80 speakers; 200 is plenty to see it fail
SEED = 20240611

pytestmark = pytest.mark.slow


def _simulate(rng: np.random.Generator):
    """One data set: errors, words, speaker and slice code per utterance."""
    speaker_slice = np.repeat(np.arange(TRUE_WER.size), SPEAKERS_PER_SLICE)
    mean = TRUE_WER[speaker_slice]
    rate = rng.beta(mean * BETA_CONCENTRATION, (1 - mean) * BETA_CONCENTRATION)
    n_utterances = rng.integers(10, 21, size=speaker_slice.size)
    speaker = np.repeat(np.arange(speaker_slice.size), n_utterances)
    words = rng.integers(3, 26, size=speaker.size)
    errors = rng.binomial(words, rate[speaker])
    return errors, words, speaker, speaker_slice[speaker]


def _covers(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return (lower <= TRUE_WER) & (TRUE_WER <= upper)


@pytest.fixture(scope="module")
def coverage() -> dict[str, float]:
    rng = np.random.default_rng(SEED)
    hits = {"speaker": 0, "speaker_stratified": 0, "cluster_robust": 0, "utterance": 0}
    estimates = []
    for repetition in range(REPETITIONS):
        errors, words, speaker, slice_code = _simulate(rng)
        data = dict(errors=errors, ref_words=words, slices=slice_code)
        clustered = stats.slice_intervals(**data, clusters=speaker, seed=rng)
        stratified = stats.slice_intervals(**data, clusters=speaker, seed=rng, strata=slice_code)
        hits["speaker"] += int(_covers(clustered.lower, clustered.upper).sum())
        hits["speaker_stratified"] += int(_covers(stratified.lower, stratified.upper).sum())
        estimates.append(clustered.wer)
        for k in range(TRUE_WER.size):
            mask = slice_code == k
            _, cluster = np.unique(speaker[mask], return_inverse=True)
            robust = stats.cluster_robust_ratio_ci(
                cluster_errors=np.bincount(cluster, weights=errors[mask]), cluster_words=np.bincount(cluster, weights=words[mask])
            )
            hits["cluster_robust"] += int(robust.lower <= TRUE_WER[k] <= robust.upper)
        if repetition < UTTERANCE_LEVEL_REPETITIONS:
            naive = stats.slice_intervals(**data, clusters=None, seed=rng)  # every utterance its own cluster
            hits["utterance"] += int(_covers(naive.lower, naive.upper).sum())
    n = REPETITIONS * TRUE_WER.size
    result = {name: count / n for name, count in hits.items()}
    result["utterance"] = hits["utterance"] / (UTTERANCE_LEVEL_REPETITIONS * TRUE_WER.size)
    result["mean_estimate"] = np.mean(estimates, axis=0)
    result["sd_estimate"] = np.std(estimates, axis=0)
    print(f"\ncoverage of nominal 95% intervals over {n} slice-repetitions: {result}")
    return result


def test_estimator_bias_is_negligible(coverage):
    standard_error = coverage["sd_estimate"] / np.sqrt(REPETITIONS)
    bias = coverage["mean_estimate"] - TRUE_WER
    assert np.all(np.abs(bias) < 4 * standard_error), f"bias {bias} with Monte Carlo SE {standard_error}"


def test_speaker_clustered_bootstrap_covers_at_nominal_rate(coverage):
    # 2,000 intervals: Monte Carlo SE of a 95% coverage is 0.5 points, so 93-97 is +/- 4 SE.
    measured = coverage["speaker"]
    assert 0.93 <= measured <= 0.97, f"speaker-clustered bootstrap coverage {measured:.4f}, expected 0.93-0.97"


def test_stratified_speaker_bootstrap_covers_at_nominal_rate(coverage):
    measured = coverage["speaker_stratified"]
    assert 0.93 <= measured <= 0.97, f"stratified speaker bootstrap coverage {measured:.4f}, expected 0.93-0.97"


def test_cluster_robust_t_interval_covers_at_nominal_rate(coverage):
    measured = coverage["cluster_robust"]
    assert 0.93 <= measured <= 0.97, f"cluster-robust t interval coverage {measured:.4f}, expected 0.93-0.97"


def test_utterance_level_bootstrap_under_covers(coverage):
    measured = coverage["utterance"]
    assert measured < 0.90, (
        f"utterance-level bootstrap coverage {measured:.4f} (speaker-clustered {coverage['speaker']:.4f}); "
        "ignoring speakers should under-cover clearly"
    )
