"""Packet loss: the audio is cut into frames (20 ms by default) and a share of them is zeroed.

Exactly round(loss_rate * n_frames) frames are dropped, chosen uniformly without replacement, so
every utterance loses the stated share (Bernoulli drops would add variance that differs between
short and long utterances). Lost frames become silence: no concealment, like a decoder without PLC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harness.noise._base import Context
from harness.noise._spec import Fields


def frame_count(n_samples: int, rate_hz: int, frame_ms: float) -> tuple[int, int]:
    """(frame length in samples, number of frames); a final partial frame counts as a frame."""
    frame_len = max(1, int(round(rate_hz * frame_ms / 1000.0)))
    return frame_len, -(-n_samples // frame_len)


def drop_frames(samples: np.ndarray, dropped: np.ndarray | list[int], frame_len: int) -> np.ndarray:
    """Copy of samples with the listed frames zeroed."""
    out = samples.astype(np.float32, copy=True)
    for index in dropped:
        out[index * frame_len : (index + 1) * frame_len] = 0.0
    return out


@dataclass(frozen=True, kw_only=True)
class PacketLossDraw:
    frame_len: int
    dropped_frames: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class PacketLoss:
    """Step `packet_loss`: `loss_rate` (share of frames dropped, 0-1, required), `frame_ms` (default 20).

    Edge case: an utterance shorter than one frame is one frame, dropped or not as a whole.
    """

    loss_rate: float
    frame_ms: float = 20.0

    type: ClassVar[str] = "packet_loss"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "PacketLoss":
        params = cls(loss_rate=fields.number("loss_rate", low=0.0, high=1.0),
                     frame_ms=fields.number("frame_ms", 20.0, low=1.0, high=1000.0, unit="ms"))
        fields.finish()
        return params

    def describe(self) -> dict:
        return {"type": self.type, "loss_rate": self.loss_rate, "frame_ms": self.frame_ms}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> PacketLossDraw:
        frame_len, n_frames = frame_count(n_samples, context.rate_hz, self.frame_ms)
        n_dropped = int(round(self.loss_rate * n_frames))
        dropped = np.sort(rng.choice(n_frames, size=n_dropped, replace=False)) if n_dropped else np.zeros(0, dtype=int)
        return PacketLossDraw(frame_len=frame_len, dropped_frames=tuple(int(i) for i in dropped))

    def apply(self, samples: np.ndarray, drawn: PacketLossDraw, *, context: Context) -> tuple[np.ndarray, dict]:
        out = drop_frames(samples, list(drawn.dropped_frames), drawn.frame_len)
        _, n_frames = frame_count(samples.size, context.rate_hz, self.frame_ms)
        return out, {**self.describe(), "n_frames": n_frames, "dropped_frames": list(drawn.dropped_frames)}
