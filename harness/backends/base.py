"""The one protocol every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, kw_only=True)
class TranscriptionRequest:
    """One utterance handed to a backend: mono float32 audio at `sample_rate_hz`, or no audio for replay."""

    utterance_id: str
    samples: np.ndarray | None
    sample_rate_hz: int | None
    condition: str = "clean"
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """Batch in, batch out.

    `sample_rate_hz` is the rate the backend wants its audio at; None means it needs no audio
    (replay), so the runner skips decoding. `transcribe` returns one string per request, in order.
    A backend raises for a whole batch only when the batch cannot run at all; the runner then
    retries the batch one utterance at a time so one bad utterance fails alone.
    """

    name: str
    sample_rate_hz: int | None

    def transcribe(self, batch: list[TranscriptionRequest]) -> list[str]: ...

    def describe(self) -> dict[str, Any]:
        """JSON-able arguments and versions for the run's provenance."""
        ...
