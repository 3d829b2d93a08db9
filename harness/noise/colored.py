"""White, pink and brown noise: Gaussian noise whose power spectrum falls as 1/f^0, 1/f^1, 1/f^2.

Below 20 Hz the pink and brown spectra are held flat at their 20 Hz level and DC is removed:
a true 1/f^2 spectrum puts almost all its power under 20 Hz, where it would dominate the SNR
while being nearly inaudible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.noise._base import Context
from harness.noise._spec import Fields, child_seed

COLOR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
"""Power-spectrum exponent per colour: power ∝ 1 / f**exponent."""

FLOOR_HZ = 20.0


def colored_noise(n_samples: int, rate_hz: int, *, color: str, rng: np.random.Generator) -> np.ndarray:
    """n_samples of unit-RMS noise of the given colour; zeros when n_samples is 0."""
    if color not in COLOR_EXPONENTS:
        raise ValueError(f"color must be one of {sorted(COLOR_EXPONENTS)}, got {color!r}")
    if n_samples == 0:
        return np.zeros(0, dtype=np.float32)
    white = rng.standard_normal(n_samples)
    exponent = COLOR_EXPONENTS[color]
    if exponent == 0.0 or n_samples < 4:
        shaped = white
    else:
        spectrum = np.fft.rfft(white)
        freqs_hz = np.fft.rfftfreq(n_samples, d=1.0 / rate_hz)
        amplitude = np.maximum(freqs_hz, FLOOR_HZ) ** (-exponent / 2.0)
        amplitude[0] = 0.0
        shaped = np.fft.irfft(spectrum * amplitude, n=n_samples)
    rms = np.sqrt(np.mean(shaped * shaped))
    if rms == 0.0:
        return np.zeros(n_samples, dtype=np.float32)
    return (shaped / rms).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class ColoredDraw:
    seed: int


@dataclass(frozen=True, kw_only=True)
class ColoredNoise:
    """Source `white`, `pink` or `brown`: no parameters besides the colour."""

    color: str

    types: ClassVar[tuple[str, ...]] = tuple(COLOR_EXPONENTS)

    @property
    def type(self) -> str:
        return self.color

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "ColoredNoise":
        fields.finish()
        return cls(color=type)

    def describe(self) -> dict:
        return {"type": self.color}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> ColoredDraw:
        return ColoredDraw(seed=child_seed(rng))

    def generate(self, drawn: ColoredDraw, *, n_samples: int, context: Context) -> tuple[np.ndarray, dict]:
        noise = colored_noise(n_samples, context.rate_hz, color=self.color, rng=np.random.default_rng(drawn.seed))
        return noise, {"type": self.color, "seed": drawn.seed}
