"""The one options record every statistic takes, validated once, and the errors it raises."""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.errors import HarnessError

DEFAULT_CONFIDENCE = 0.95
# A slice is "small" below this many effective speakers, (sum of words)^2 / sum of words^2 over its
# speakers: ten speakers of whom one holds 95% of the words count as about 1.1, not 10. At 8 the
# interval covers in every design of validation/README.md (it still covers near 4), so the limit is
# about whether a slice is a group of people worth ranking, not about the arithmetic.
DEFAULT_MIN_SPEAKERS = 8.0
DEFAULT_MIN_REF_WORDS = 100
# Permutations for the test of equal WER; raised automatically for larger families (see n_permutations).
DEFAULT_N_RESAMPLES = 2000

BAD_CONFIDENCE = "confidence must be strictly between 0 and 1 (e.g. 0.95); got {value!r}"
BAD_N_RESAMPLES = "n_resamples must be an integer of at least 100 (e.g. 2000); got {value!r}"
BAD_MIN_SPEAKERS = "min_speakers (effective speakers) must be a number of at least 1 (e.g. 8); got {value!r}"
BAD_MIN_WORDS = "min_words must be a non-negative integer (e.g. 100); got {value!r}"
BAD_SEED = "seed must be an integer (e.g. 0); got {value!r}"


class StatsInputError(HarnessError, ValueError):
    """Arrays or options passed to a statistics function are unusable (wrong length, negative counts, bad option)."""


@dataclass(frozen=True, kw_only=True)
class StatsOptions:
    """How sure (confidence), how large a slice must be to be ranked, and how tests are resampled.

    `min_speakers` counts effective speakers, (sum w)^2 / sum w^2 with w a speaker's reference words
    (characters for CER); `min_words` counts reference words (characters for CER). Below either, a
    slice is small: flagged, given no interval, never ranked, tested or used as an anchor.
    """

    confidence: float = DEFAULT_CONFIDENCE
    min_speakers: float = DEFAULT_MIN_SPEAKERS
    min_words: int = DEFAULT_MIN_REF_WORDS
    n_resamples: int = DEFAULT_N_RESAMPLES
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) or not 0 < self.confidence < 1:
            raise StatsInputError(BAD_CONFIDENCE.format(value=self.confidence))
        if (
            isinstance(self.min_speakers, bool) or not isinstance(self.min_speakers, (int, float))
            or not math.isfinite(self.min_speakers) or self.min_speakers < 1
        ):
            raise StatsInputError(BAD_MIN_SPEAKERS.format(value=self.min_speakers))
        if _not_int(self.min_words) or self.min_words < 0:
            raise StatsInputError(BAD_MIN_WORDS.format(value=self.min_words))
        if _not_int(self.n_resamples) or self.n_resamples < 100:
            raise StatsInputError(BAD_N_RESAMPLES.format(value=self.n_resamples))
        if _not_int(self.seed):
            raise StatsInputError(BAD_SEED.format(value=self.seed))

    @property
    def alpha(self) -> float:
        """The error rate a test is held to: 1 - confidence."""
        return 1.0 - self.confidence

    @property
    def label(self) -> str:
        """The confidence as people write it ("95%", "99.5%"): every "95% CI" header comes from here."""
        return confidence_label(self.confidence)

    def n_permutations(self, family_size: int = 1) -> int:
        """Resamples for a Monte Carlo p-value judged against alpha / family_size.

        A Monte Carlo p-value cannot go below 1 / (B + 1); with Holm over m tests the smallest threshold
        is alpha / m, so B is raised until that threshold is 100 times the floor.
        """
        needed = math.ceil(100 * max(1, family_size) / self.alpha)
        return max(int(self.n_resamples), needed)


def confidence_label(confidence: float) -> str:
    """0.95 -> "95%", 0.995 -> "99.5%"."""
    return f"{100 * confidence:.10g}%"


def _not_int(value: object) -> bool:
    import numpy as np

    return isinstance(value, bool) or not isinstance(value, (int, np.integer))
