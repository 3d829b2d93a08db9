"""`asrfair noise preview`: one utterance under one condition, drawn exactly as the runner draws it."""

from __future__ import annotations

import numpy as np

from harness.noise._base import BabblePool
from harness.noise.profile import NoiseProfile, apply_profile, condition_key, load_profile, prepare
from harness.seeding import rng_for


def preview(profile: NoiseProfile | str, samples: np.ndarray, rate_hz: int, *, snr_db: float | None, seed: int, utterance_id: str,
            babble_pool: BabblePool | None = None) -> tuple[np.ndarray, list[dict]]:
    """apply_profile with rng = rng_for(seed, utterance_id, condition_key(profile.name, snr_db)).

    The same (seed, utterance id, profile, SNR) as a run gives the audio that run fed the recogniser.
    profile may be a name or path (looked up with load_profile).
    """
    if not isinstance(profile, NoiseProfile):
        profile = load_profile(profile)
    prepare(profile, rate_hz)
    rng = rng_for(seed, utterance_id, condition_key(profile.name, snr_db))
    return apply_profile(profile, samples, rate_hz, snr_db=snr_db, rng=rng, babble_pool=babble_pool)
