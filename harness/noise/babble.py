"""Babble: several other utterances of the manifest, each at equal power, summed into one noise.

The runner supplies the talkers through ``babble_pool(n, rng)`` (other utterances, never the
one being corrupted); each talker starts at a random offset and is looped to the utterance's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.errors import ConfigError
from harness.noise._base import Context
from harness.noise._spec import Fields, child_seed, power
from harness.noise.recorded import looped_segment


@dataclass(frozen=True, kw_only=True)
class Talker:
    utterance_id: str | None
    audio: np.ndarray
    offset_samples: int


@dataclass(frozen=True, kw_only=True)
class BabbleDraw:
    pool_seed: int
    talkers: tuple[Talker, ...]


def babble_mix(talkers: list[np.ndarray] | tuple[np.ndarray, ...], offsets: list[int] | tuple[int, ...], n_samples: int) -> np.ndarray:
    """Sum of the talkers, each scaled to unit RMS and looped from its offset; silent talkers are left out."""
    total = np.zeros(n_samples, dtype=np.float64)
    for audio, offset in zip(talkers, offsets, strict=True):
        if audio.size == 0:
            continue
        segment = looped_segment(audio, offset, n_samples).astype(np.float64)
        segment_power = power(segment)
        if segment_power > 0.0:
            total += segment / np.sqrt(segment_power)
    return total.astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class Babble:
    """Source `babble`: `n_talkers` (default 6) other utterances from the manifest.

    Edge cases: if the pool returns fewer talkers than asked, those it returned are used (and
    the record says how many); a pool with none is an error, as is a chain run without a pool.
    """

    n_talkers: int = 6

    type: ClassVar[str] = "babble"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Babble":
        n_talkers = fields.integer("n_talkers", 6, low=1, high=64)
        fields.finish()
        return cls(n_talkers=n_talkers)

    def describe(self) -> dict:
        return {"type": self.type, "n_talkers": self.n_talkers}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> BabbleDraw:
        if context.babble_pool is None:
            raise ConfigError("babble noise needs other utterances of the manifest, but no babble_pool was given. "
                              "Run the profile through `asrfair run` (or pass babble_pool= to apply_profile) with a manifest of at least 2 utterances.")
        pool_seed = child_seed(rng)
        picked = list(context.babble_pool(self.n_talkers, np.random.default_rng(pool_seed)))
        if not picked:
            raise ConfigError("babble noise needs at least one other utterance, but the babble pool returned none. "
                              "Use a manifest with at least 2 utterances, or choose another profile.")
        talkers = []
        for item in picked:
            utterance_id, audio = (str(item[0]), item[1]) if isinstance(item, tuple) else (None, item)
            audio = np.asarray(audio, dtype=np.float32).reshape(-1)
            offset = int(rng.integers(audio.size)) if audio.size else 0
            talkers.append(Talker(utterance_id=utterance_id, audio=audio, offset_samples=offset))
        return BabbleDraw(pool_seed=pool_seed, talkers=tuple(talkers))

    def generate(self, drawn: BabbleDraw, *, n_samples: int, context: Context) -> tuple[np.ndarray, dict]:
        noise = babble_mix([t.audio for t in drawn.talkers], [t.offset_samples for t in drawn.talkers], n_samples)
        record = {
            "type": self.type,
            "n_talkers": len(drawn.talkers),
            "n_talkers_requested": self.n_talkers,
            "pool_seed": drawn.pool_seed,
            "talkers": [{"utterance_id": t.utterance_id, "offset_s": t.offset_samples / context.rate_hz} for t in drawn.talkers],
        }
        return noise, record
