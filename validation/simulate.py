"""Data-generating processes with a known truth, for measuring how often intervals cover and tests err.

A speaker s has an error rate on the logit scale, logit p = a + b_s + u, with b_s ~ N(0, sigma_b^2)
(how much speakers differ) and u ~ N(0, sigma_u^2) per utterance (how much sentences differ); an
utterance of w words (1 + Poisson(7.5): Artie's mean of 8.5) has Binomial(w, p) errors. The number of
utterances per speaker is independent of p, so the true WER, the population ratio
E[errors] / E[words], is E[expit(a + b + u)], computed by Gauss-Hermite quadrature; `a` is solved so
that it equals the target. Calibrated on Artie (Google en-US, 253 speakers with 20+ words): speakers'
rates have SD 0.215 where binomial noise alone gives 0.084, a between-speaker SD near 1.0 on the
logit scale ("high"), and sentences within a speaker vary about twice as much as binomial ("sigma_u").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, special

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(120)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()

# (between-speaker, within-speaker) SDs on the logit scale.
HETEROGENEITY = {"low": (0.35, 0.5), "high": (1.0, 0.7)}
DESIGNS = ("balanced", "skewed", "dominant")
MEAN_WORDS_MINUS_ONE = 7.5


def mean_rate(location: float, spread: float) -> float:
    """E[expit(location + spread * Z)], Z standard normal."""
    return float((special.expit(location + spread * _NODES) * _WEIGHTS).sum())


@lru_cache(maxsize=None)
def location_for(target: float, spread: float) -> float:
    """The logit location whose mean rate is `target` for the given total spread."""
    return float(optimize.brentq(lambda a: mean_rate(a, spread) - target, -30, 30, xtol=1e-13))


def utterances_per_speaker(rng: np.random.Generator, design: str, shape: tuple[int, int]) -> np.ndarray:
    """balanced: 4 each; skewed: ceil(lognormal(log 2, 1)) (median 2, a long tail; Artie has 1-4, NeMo
    sets hundreds); dominant: one speaker holds as many utterances as all the others together."""
    reps, n = shape
    if design == "balanced":
        return np.full(shape, 4)
    if design == "skewed":
        return np.ceil(rng.lognormal(np.log(2.0), 1.0, size=shape)).astype(np.int64)
    if design == "dominant":
        counts = np.full(shape, 4)
        counts[:, 0] = 4 * max(n - 1, 1)
        return counts
    raise ValueError(f"unknown design {design!r}; choose from {DESIGNS}")


@dataclass(frozen=True)
class Speakers:
    """Per replicate (rows) and speaker (columns): errors of run A, errors of run B, reference words."""

    errors_a: np.ndarray
    errors_b: np.ndarray
    words: np.ndarray


def simulate_speakers(
    rng: np.random.Generator, *, reps: int, n_speakers: int, design: str, heterogeneity: str, wer: float,
    shift: float = 0.0, shift_sd: float = 0.0,
) -> Speakers:
    """Speaker totals for `reps` independent slices of `n_speakers` speakers with true WER `wer` in run A.

    Run B scores the same utterances with logit rates moved by `shift` plus a speaker-specific N(0,
    shift_sd^2) (a second model, or a noise condition that hurts some speakers more); its errors are
    drawn independently given the rate, so the runs are correlated through speaker and sentence.
    """
    sigma_b, sigma_u = HETEROGENEITY[heterogeneity]
    location = location_for(wer, float(np.hypot(sigma_b, sigma_u)))
    counts = utterances_per_speaker(rng, design, (reps, n_speakers))
    owner = np.repeat(np.arange(reps * n_speakers), counts.ravel())
    speaker_effect = rng.normal(size=reps * n_speakers) * sigma_b
    speaker_shift = shift + rng.normal(size=reps * n_speakers) * shift_sd
    words = 1 + rng.poisson(MEAN_WORDS_MINUS_ONE, size=owner.size)
    logit = location + speaker_effect[owner] + sigma_u * rng.normal(size=owner.size)
    errors_a = rng.binomial(words, special.expit(logit))
    errors_b = rng.binomial(words, special.expit(logit + speaker_shift[owner]))
    size = reps * n_speakers

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(owner, weights=values, minlength=size).reshape(reps, n_speakers)

    return Speakers(errors_a=total(errors_a), errors_b=total(errors_b), words=total(words))


def true_change(wer: float, heterogeneity: str, shift: float, shift_sd: float) -> float:
    """E[rate in run B] - E[rate in run A] for `simulate_speakers` with these arguments."""
    sigma_b, sigma_u = HETEROGENEITY[heterogeneity]
    spread = float(np.hypot(sigma_b, sigma_u))
    location = location_for(wer, spread)
    return mean_rate(location + shift, float(np.hypot(spread, shift_sd))) - wer


def true_ratio(wer: float, heterogeneity: str, shift: float, shift_sd: float) -> float:
    return (wer + true_change(wer, heterogeneity, shift, shift_sd)) / wer


def simulate_sparse_change(
    rng: np.random.Generator, *, reps: int, n_speakers: int, design: str, heterogeneity: str, wer: float,
    changed: float, shift: float,
) -> tuple[Speakers, float]:
    """Run B re-transcribes only a share `changed` of the utterances (a fine-tune that touches few
    sentences), at logit rate + `shift`; the rest keep run A's errors exactly. Returns the speaker
    totals and the true change per word, changed * (E[rate at shift] - E[rate])."""
    sigma_b, sigma_u = HETEROGENEITY[heterogeneity]
    spread = float(np.hypot(sigma_b, sigma_u))
    location = location_for(wer, spread)
    counts = utterances_per_speaker(rng, design, (reps, n_speakers))
    owner = np.repeat(np.arange(reps * n_speakers), counts.ravel())
    words = 1 + rng.poisson(MEAN_WORDS_MINUS_ONE, size=owner.size)
    logit = location + (rng.normal(size=reps * n_speakers) * sigma_b)[owner] + sigma_u * rng.normal(size=owner.size)
    errors_a = rng.binomial(words, special.expit(logit))
    redrawn = rng.binomial(words, special.expit(logit + shift))
    errors_b = np.where(rng.random(owner.size) < changed, redrawn, errors_a)
    size = reps * n_speakers

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(owner, weights=values, minlength=size).reshape(reps, n_speakers)

    truth = changed * (mean_rate(location + shift, spread) - wer)
    return Speakers(errors_a=total(errors_a), errors_b=total(errors_b), words=total(words)), truth
