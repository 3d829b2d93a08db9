"""`asrfair noise preview`: one utterance under one condition, drawn exactly as the runner draws it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness.errors import ConfigError

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


PREVIEW_DIR = Path("reports") / "previews"
"""Where previews go by default: beside runs, not loose in whatever folder the command was typed in."""
PREVIEW_SUFFIXES = (".wav", ".flac")


def preview_path(output: str | Path | None, *, profile: str, utterance_id: str, snr_db: float | None) -> Path:
    """The file a preview is written to: `output` itself, a default name inside `output` when it is a folder,
    or reports/previews/PROFILE-UTTERANCE[-SNRdB].wav when none is given."""
    snr = "" if snr_db is None else f"-{float(snr_db) + 0.0:g}dB"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{profile}-{utterance_id}{snr}") + ".wav"
    if output is None:
        return PREVIEW_DIR / name
    output = Path(output).expanduser()
    if output.is_dir():
        return output / name
    if output.suffix.lower() not in PREVIEW_SUFFIXES:
        raise ConfigError(f"-o {output}: a preview is written as {' or '.join(PREVIEW_SUFFIXES)}. End the file name with one of them, or give a folder.")
    return output
