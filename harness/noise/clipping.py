"""Clipping: hard-limit the waveform at a fixed level, or at the level that clips a given share of samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.noise._base import Context
from harness.noise._spec import Fields


def hard_clip(samples: np.ndarray, threshold: float) -> np.ndarray:
    """np.clip to [-threshold, threshold], float32."""
    return np.clip(samples, -threshold, threshold).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class Clip:
    """Step `clip`: `threshold_dbfs` (clip at that level, e.g. -6), or `clipped_percent` (clip at the
    level that the loudest that-many percent of samples exceed, so quiet and loud utterances are
    distorted alike).

    Edge case: a silent input stays silent (the percentile level is 0 and nothing is changed).
    """

    threshold_dbfs: float | None = None
    clipped_percent: float | None = None

    type: ClassVar[str] = "clip"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Clip":
        if fields.has("threshold_dbfs") == fields.has("clipped_percent"):
            fields.fail(fields.path_of("threshold_dbfs"), None, "a clip step needs exactly one of `threshold_dbfs:` or `clipped_percent:`",
                        "Give e.g. `threshold_dbfs: -6` or `clipped_percent: 2`")
        if fields.has("threshold_dbfs"):
            params = cls(threshold_dbfs=fields.number("threshold_dbfs", low=-120.0, high=0.0, unit="dBFS"))
        else:
            params = cls(clipped_percent=fields.number("clipped_percent", low=0.0, high=100.0, low_open=True, unit="%"))
        fields.finish()
        return params

    def describe(self) -> dict:
        if self.threshold_dbfs is not None:
            return {"type": self.type, "threshold_dbfs": self.threshold_dbfs}
        return {"type": self.type, "clipped_percent": self.clipped_percent}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> None:
        return None

    def apply(self, samples: np.ndarray, drawn: None, *, context: Context) -> tuple[np.ndarray, dict]:
        if self.threshold_dbfs is not None:
            threshold = 10.0 ** (self.threshold_dbfs / 20.0)
        elif samples.size:
            threshold = float(np.percentile(np.abs(samples), 100.0 - self.clipped_percent))
        else:
            threshold = 0.0
        if threshold == 0.0:
            return samples.astype(np.float32, copy=True), {**self.describe(), "threshold": 0.0, "clipped_fraction": 0.0}
        clipped_fraction = float(np.mean(np.abs(samples) > threshold)) if samples.size else 0.0
        return hard_clip(samples, threshold), {**self.describe(), "threshold": threshold, "clipped_fraction": clipped_fraction}
