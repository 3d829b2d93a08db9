"""Gain: scale by a fixed or drawn number of dB. No clipping here; see clipping.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.noise._base import Context
from harness.noise._spec import Fields


@dataclass(frozen=True, kw_only=True)
class GainDraw:
    gain_db: float


@dataclass(frozen=True, kw_only=True)
class Gain:
    """Step `gain`: `gain_db`, or `min_gain_db` and `max_gain_db` to draw it uniformly per utterance.

    Edge case: the output is not clipped, so a large gain can exceed [-1, 1]; add a `clip` step
    after it to model a saturating input stage.
    """

    min_gain_db: float
    max_gain_db: float

    type: ClassVar[str] = "gain"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Gain":
        if fields.has("gain_db"):
            value = fields.number("gain_db", low=-120.0, high=120.0, unit="dB")
            fields.finish(exclusive=(("gain_db", "min_gain_db"), ("gain_db", "max_gain_db")))
            return cls(min_gain_db=value, max_gain_db=value)
        low = fields.number("min_gain_db", low=-120.0, high=120.0, unit="dB")
        high = fields.number("max_gain_db", low=-120.0, high=120.0, unit="dB")
        fields.finish()
        if low > high:
            fields.fail(fields.path_of("min_gain_db"), low, f"is above max_gain_db ({high:g})", "Swap the two values")
        return cls(min_gain_db=low, max_gain_db=high)

    def describe(self) -> dict:
        if self.min_gain_db == self.max_gain_db:
            return {"type": self.type, "gain_db": self.min_gain_db}
        return {"type": self.type, "min_gain_db": self.min_gain_db, "max_gain_db": self.max_gain_db}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> GainDraw:
        if self.min_gain_db == self.max_gain_db:
            return GainDraw(gain_db=self.min_gain_db)
        return GainDraw(gain_db=float(rng.uniform(self.min_gain_db, self.max_gain_db)))

    def apply(self, samples: np.ndarray, drawn: GainDraw, *, context: Context) -> tuple[np.ndarray, dict]:
        out = (samples * np.float32(10.0 ** (drawn.gain_db / 20.0))).astype(np.float32)
        return out, {"type": self.type, "gain_db": drawn.gain_db, "peak": float(np.max(np.abs(out), initial=0.0))}
