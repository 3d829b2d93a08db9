"""Telephone channel: down to 8 kHz, a 300-3400 Hz band-pass, and back up to the original rate.

The band-pass is an elliptic IIR (0.5 dB ripple, 60 dB stopband) run at 8 kHz, like a
narrowband handset path; the resampling is soxr's high-quality filter. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
from scipy import signal as sps

from harness.audio import resample
from harness.noise._base import Context
from harness.noise._spec import Fields

TELEPHONE_RATE_HZ = 8000


@lru_cache(maxsize=16)
def _band_pass(low_hz: float, high_hz: float, rate_hz: int, order: int) -> np.ndarray:
    return sps.ellip(order, 0.5, 60.0, [low_hz, high_hz], btype="bandpass", fs=rate_hz, output="sos")


def telephone_band(samples: np.ndarray, rate_hz: int, *, low_hz: float = 300.0, high_hz: float = 3400.0,
                   channel_rate_hz: int = TELEPHONE_RATE_HZ, order: int = 6) -> np.ndarray:
    """Band-limit to [low_hz, high_hz] through a channel_rate_hz round trip; same length as the input.

    Edge case: input already at channel_rate_hz is only filtered.
    """
    if samples.size == 0:
        return samples.astype(np.float32, copy=True)
    narrow = resample(samples.astype(np.float32, copy=False), rate_hz, channel_rate_hz)
    filtered = sps.sosfilt(_band_pass(low_hz, high_hz, channel_rate_hz, order), narrow).astype(np.float32)
    wide = resample(filtered, channel_rate_hz, rate_hz)
    if wide.size >= samples.size:
        return np.ascontiguousarray(wide[: samples.size])
    return np.concatenate([wide, np.zeros(samples.size - wide.size, dtype=np.float32)])


@dataclass(frozen=True, kw_only=True)
class Telephone:
    """Step `telephone`: `low_hz` (default 300), `high_hz` (3400), `channel_rate_hz` (8000), `order` (6)."""

    low_hz: float = 300.0
    high_hz: float = 3400.0
    channel_rate_hz: int = TELEPHONE_RATE_HZ
    order: int = 6

    type: ClassVar[str] = "telephone"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Telephone":
        channel_rate_hz = fields.integer("channel_rate_hz", TELEPHONE_RATE_HZ, low=2000, high=48000)
        low_hz = fields.number("low_hz", 300.0, low=1.0, unit="Hz")
        high_hz = fields.number("high_hz", 3400.0, low=1.0, high=channel_rate_hz / 2 - 1, unit="Hz")
        order = fields.integer("order", 6, low=1, high=12)
        fields.finish()
        if low_hz >= high_hz:
            fields.fail(fields.path_of("low_hz"), low_hz, f"must be below high_hz ({high_hz:g})", "Swap or fix the band edges")
        return cls(low_hz=low_hz, high_hz=high_hz, channel_rate_hz=channel_rate_hz, order=order)

    def describe(self) -> dict:
        return {"type": self.type, "low_hz": self.low_hz, "high_hz": self.high_hz, "channel_rate_hz": self.channel_rate_hz, "order": self.order}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> None:
        return None

    def apply(self, samples: np.ndarray, drawn: None, *, context: Context) -> tuple[np.ndarray, dict]:
        out = telephone_band(samples, context.rate_hz, low_hz=self.low_hz, high_hz=self.high_hz,
                             channel_rate_hz=self.channel_rate_hz, order=self.order)
        return out, self.describe()
