"""mu-law and A-law companding: compress, quantise to 8 bits (sign + 7 magnitude bits), expand.

The continuous G.711 curves (mu = 255, A = 87.6) are used rather than G.711's 8-segment
piecewise-linear approximation; the error profile (small for quiet samples, ~1% of the
amplitude for loud ones) is the same. Input beyond [-1, 1] is clipped first. Deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.noise._base import Context
from harness.noise._spec import Fields


def _quantise(compressed: np.ndarray, bits: int) -> np.ndarray:
    levels = 2 ** (bits - 1) - 1
    return np.round(compressed * levels) / levels


def mu_law_round_trip(samples: np.ndarray, *, mu: float = 255.0, bits: int = 8) -> np.ndarray:
    """Encode and decode with the mu-law curve; same shape, float32."""
    x = np.clip(samples.astype(np.float64), -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    q = _quantise(compressed, bits)
    return (np.sign(q) * np.expm1(np.abs(q) * math.log1p(mu)) / mu).astype(np.float32)


def a_law_round_trip(samples: np.ndarray, *, a: float = 87.6, bits: int = 8) -> np.ndarray:
    """Encode and decode with the A-law curve; same shape, float32."""
    x = np.clip(samples.astype(np.float64), -1.0, 1.0)
    ax = np.abs(x)
    denominator = 1.0 + math.log(a)
    small = ax < 1.0 / a
    compressed_mag = np.where(small, a * ax / denominator, (1.0 + np.log(np.maximum(a * ax, 1.0))) / denominator)
    q = _quantise(np.sign(x) * compressed_mag, bits)
    qm = np.abs(q)
    expanded = np.where(qm < 1.0 / denominator, qm * denominator / a, np.exp(qm * denominator - 1.0) / a)
    return (np.sign(q) * expanded).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class Companding:
    """Steps `mu_law` (`mu`, default 255) and `a_law` (`a`, default 87.6); both take `bits` (default 8)."""

    law: str
    constant: float
    bits: int = 8

    types: ClassVar[tuple[str, ...]] = ("mu_law", "a_law")

    @property
    def type(self) -> str:
        return self.law

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Companding":
        if type == "mu_law":
            constant = fields.number("mu", 255.0, low=1.0, high=1e6)
        else:
            constant = fields.number("a", 87.6, low=1.0, high=1e6)
        bits = fields.integer("bits", 8, low=2, high=24)
        fields.finish()
        return cls(law=type, constant=constant, bits=bits)

    def describe(self) -> dict:
        return {"type": self.law, "mu" if self.law == "mu_law" else "a": self.constant, "bits": self.bits}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> None:
        return None

    def apply(self, samples: np.ndarray, drawn: None, *, context: Context) -> tuple[np.ndarray, dict]:
        clipped = float(np.mean(np.abs(samples) > 1.0)) if samples.size else 0.0
        if self.law == "mu_law":
            out = mu_law_round_trip(samples, mu=self.constant, bits=self.bits)
        else:
            out = a_law_round_trip(samples, a=self.constant, bits=self.bits)
        return out, {**self.describe(), "clipped_fraction": clipped}
