"""Periodic interference: a hum (tone at F Hz with harmonics) or beeps at a regular interval.

Both are deterministic apart from where they start: the tone's partial phases and the first
beep's onset are drawn per utterance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.noise._base import Context
from harness.noise._spec import Fields


def harmonic_tone(n_samples: int, rate_hz: int, *, frequency_hz: float, n_harmonics: int, rolloff_db: float,
                  phases_rad: np.ndarray) -> np.ndarray:
    """Sum of partials k*F (k = 1..n_harmonics), partial k at -(k-1)*rolloff_db; partials at or above Nyquist are dropped."""
    t = np.arange(n_samples, dtype=np.float64) / rate_hz
    tone = np.zeros(n_samples, dtype=np.float64)
    for k in range(1, n_harmonics + 1):
        if k * frequency_hz >= rate_hz / 2:
            break
        amplitude = 10.0 ** (-(k - 1) * rolloff_db / 20.0)
        tone += amplitude * np.sin(2 * np.pi * k * frequency_hz * t + phases_rad[k - 1])
    return tone.astype(np.float32)


def beep_train(n_samples: int, rate_hz: int, *, frequency_hz: float, beep_s: float, interval_s: float,
               first_onset_s: float, ramp_s: float = 0.005) -> np.ndarray:
    """Sine beeps of beep_s every interval_s from first_onset_s, with raised-cosine ramps against clicks.

    Edge case: when no beep starts inside the utterance the result is all zeros.
    """
    out = np.zeros(n_samples, dtype=np.float32)
    beep_len = max(1, int(round(beep_s * rate_hz)))
    t = np.arange(beep_len) / rate_hz
    beep = np.sin(2 * np.pi * frequency_hz * t)
    ramp_len = min(int(round(ramp_s * rate_hz)), beep_len // 2)
    if ramp_len > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp_len) / ramp_len)
        beep[:ramp_len] *= ramp
        beep[-ramp_len:] *= ramp[::-1]
    beep = beep.astype(np.float32)
    onset_s = first_onset_s
    while True:
        start = int(round(onset_s * rate_hz))
        if start >= n_samples:
            break
        stop = min(n_samples, start + beep_len)
        out[start:stop] += beep[: stop - start]
        onset_s += interval_s
    return out


@dataclass(frozen=True, kw_only=True)
class ToneDraw:
    phases_rad: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class Tone:
    """Source `tone`: `frequency_hz` (required), `n_harmonics` (partials incl. the fundamental, default 1),
    `harmonic_rolloff_db` (each partial this much below the previous, default 6)."""

    frequency_hz: float
    n_harmonics: int = 1
    harmonic_rolloff_db: float = 6.0

    type: ClassVar[str] = "tone"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Tone":
        params = cls(frequency_hz=fields.number("frequency_hz", low=0.0, low_open=True, high=48000.0, unit="Hz"),
                     n_harmonics=fields.integer("n_harmonics", 1, low=1, high=100),
                     harmonic_rolloff_db=fields.number("harmonic_rolloff_db", 6.0, low=0.0, high=60.0, unit="dB"))
        fields.finish()
        return params

    def describe(self) -> dict:
        return {"type": self.type, "frequency_hz": self.frequency_hz, "n_harmonics": self.n_harmonics, "harmonic_rolloff_db": self.harmonic_rolloff_db}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> ToneDraw:
        return ToneDraw(phases_rad=tuple(float(p) for p in rng.uniform(0.0, 2 * np.pi, size=self.n_harmonics)))

    def generate(self, drawn: ToneDraw, *, n_samples: int, context: Context) -> tuple[np.ndarray, dict]:
        tone = harmonic_tone(n_samples, context.rate_hz, frequency_hz=self.frequency_hz, n_harmonics=self.n_harmonics,
                             rolloff_db=self.harmonic_rolloff_db, phases_rad=np.asarray(drawn.phases_rad))
        return tone, {**self.describe(), "phases_rad": list(drawn.phases_rad)}


@dataclass(frozen=True, kw_only=True)
class BeepsDraw:
    first_onset_s: float


@dataclass(frozen=True, kw_only=True)
class Beeps:
    """Source `beeps`: `frequency_hz` (default 1000), `beep_s` (default 0.15), `interval_s` (default 1.0).

    The first onset is drawn uniformly in [0, interval_s).
    """

    frequency_hz: float = 1000.0
    beep_s: float = 0.15
    interval_s: float = 1.0

    type: ClassVar[str] = "beeps"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Beeps":
        params = cls(frequency_hz=fields.number("frequency_hz", 1000.0, low=0.0, low_open=True, high=48000.0, unit="Hz"),
                     beep_s=fields.number("beep_s", 0.15, low=0.001, high=60.0, unit="s"),
                     interval_s=fields.number("interval_s", 1.0, low=0.01, high=3600.0, unit="s"))
        fields.finish()
        if params.beep_s > params.interval_s:
            fields.fail(fields.path_of("beep_s"), params.beep_s, f"is longer than interval_s ({params.interval_s:g})", "Make beep_s shorter than interval_s")
        return params

    def describe(self) -> dict:
        return {"type": self.type, "frequency_hz": self.frequency_hz, "beep_s": self.beep_s, "interval_s": self.interval_s}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> BeepsDraw:
        return BeepsDraw(first_onset_s=float(rng.uniform(0.0, self.interval_s)))

    def generate(self, drawn: BeepsDraw, *, n_samples: int, context: Context) -> tuple[np.ndarray, dict]:
        beeps = beep_train(n_samples, context.rate_hz, frequency_hz=self.frequency_hz, beep_s=self.beep_s,
                           interval_s=self.interval_s, first_onset_s=drawn.first_onset_s)
        return beeps, {**self.describe(), "first_onset_s": drawn.first_onset_s}
