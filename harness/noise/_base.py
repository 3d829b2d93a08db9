"""What every transform step and noise source shares: the context a chain runs in, and their shape.

A step is a frozen parameters dataclass with two methods, kept apart on purpose:
``draw(rng, *, n_samples, context)`` makes every random choice and returns them (or None when the
step is deterministic); ``apply(samples, drawn, *, context)`` uses only those choices and returns
the new audio plus a JSON-able record of what was applied. A noise source used by the additive
step has the same ``draw`` and a ``generate(drawn, *, n_samples, context)`` returning (noise, record).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

BabblePool = Callable[[int, np.random.Generator], Sequence[Any]]
"""(n, rng) -> n other utterances' audio at the chain's rate: arrays, or (utterance_id, array) pairs."""


@dataclass(frozen=True, kw_only=True)
class Context:
    """What a step needs besides its own parameters: the rate, the --snr value and the babble pool."""

    rate_hz: int
    snr_db: float | None = None
    babble_pool: BabblePool | None = None


class Step(Protocol):
    type: str

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> Any: ...

    def apply(self, samples: np.ndarray, drawn: Any, *, context: Context) -> tuple[np.ndarray, dict]: ...

    def describe(self) -> dict: ...


class Source(Protocol):
    type: str

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> Any: ...

    def generate(self, drawn: Any, *, n_samples: int, context: Context) -> tuple[np.ndarray, dict]: ...

    def describe(self) -> dict: ...


def as_mono_float32(samples: np.ndarray, *, what: str = "samples") -> np.ndarray:
    """Accept (n,) audio only; the chain works on mono float32."""
    array = np.asarray(samples)
    if array.ndim != 1:
        from harness.errors import AudioError

        raise AudioError(f"{what}: expected mono audio shaped (n_samples,), got shape {array.shape}. Downmix with harness.audio.to_mono first.")
    return array.astype(np.float32, copy=False)
