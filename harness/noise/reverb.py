"""Reverberation: convolution with an impulse response from a file, or a synthetic one from RT60.

The synthetic response is a direct-path impulse followed by Gaussian noise whose amplitude falls
60 dB over rt60_s (a diffuse exponential tail). The reverberant output keeps the input's length
(the tail past the end is cut) and its power (so reverb does not double as a gain change).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy import signal as sps

from harness.errors import AudioError, ConfigError, Problem
from harness.noise._base import Context
from harness.noise._spec import Fields, child_seed, power
from harness.noise.recorded import check_file, decoded_noise


def synthetic_ir(rt60_s: float, rate_hz: int, *, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Impulse response: h[0] = direct path, then noise decaying 60 dB in rt60_s, lasting rt60_s.

    drr_db is the direct-to-reverberant energy ratio (direct-path energy over tail energy).
    """
    n_tail = max(1, int(math.ceil(rt60_s * rate_hz)))
    t_s = np.arange(1, n_tail + 1) / rate_hz
    tail = rng.standard_normal(n_tail) * np.exp(-3.0 * math.log(10.0) * t_s / rt60_s)
    tail_energy = float(np.square(tail).sum())  # not np.dot: BLAS threads would change the last bit per machine
    ir = np.empty(n_tail + 1)
    ir[0] = math.sqrt(tail_energy * 10.0 ** (drr_db / 10.0))
    ir[1:] = tail
    return (ir / np.max(np.abs(ir))).astype(np.float32)


def decay_time_s(ir: np.ndarray, rate_hz: int, *, from_db: float = -5.0, to_db: float = -35.0) -> float:
    """RT60 estimated from the Schroeder energy-decay curve between from_db and to_db (T30 by default)."""
    energy = np.cumsum((ir.astype(np.float64) ** 2)[::-1])[::-1]
    edc_db = 10.0 * np.log10(energy / energy[0] + 1e-300)
    start = int(np.argmax(edc_db <= from_db))
    stop = int(np.argmax(edc_db <= to_db))
    return (stop - start) / rate_hz * 60.0 / (from_db - to_db)


def reverberate(samples: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolve, keep the input's length, and rescale to the input's power; silent input stays silent."""
    if samples.size == 0:
        return samples.astype(np.float32, copy=True)
    wet = sps.fftconvolve(samples.astype(np.float64), ir.astype(np.float64))[: samples.size]
    wet_power = power(wet)
    if wet_power == 0.0:
        return np.zeros_like(samples, dtype=np.float32)
    return (wet * math.sqrt(power(samples) / wet_power)).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class ReverbDraw:
    seed: int | None


@dataclass(frozen=True, kw_only=True)
class Reverb:
    """Step `reverb`: `rt60_s` (synthetic; with `drr_db`, default 0) or `ir` (a file; optional `ir_sha256`).

    A file's response is downmixed, resampled to the chain's rate and trimmed to start at its
    strongest sample, so the direct path is not delayed.
    """

    rt60_s: float | None = None
    drr_db: float = 0.0
    ir: Path | None = None
    ir_sha256: str | None = None
    profile_file: str = ""

    type: ClassVar[str] = "reverb"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Reverb":
        if fields.has("rt60_s") == fields.has("ir"):
            fields.fail(fields.path_of("rt60_s"), None, "a reverb step needs exactly one of `rt60_s:` (synthetic room) or `ir:` (impulse-response file)",
                        "Give e.g. `rt60_s: 0.6`, or `ir: /path/to/ir.wav`")
        if fields.has("rt60_s"):
            params = cls(rt60_s=fields.number("rt60_s", low=0.01, high=10.0, unit="s"),
                         drr_db=fields.number("drr_db", 0.0, low=-40.0, high=40.0, unit="dB"))
        else:
            path = fields.path("ir")
            sha256 = fields.string("ir_sha256") if fields.has("ir_sha256") else None
            check_file(fields, fields.path_of("ir"), path, sha256)
            params = cls(ir=path, ir_sha256=sha256, profile_file=fields.file)
        fields.finish()
        return params

    def describe(self) -> dict:
        if self.ir is not None:
            return {"type": self.type, "ir": str(self.ir), "ir_sha256": self.ir_sha256}
        return {"type": self.type, "rt60_s": self.rt60_s, "drr_db": self.drr_db}

    def file_ir(self, rate_hz: int) -> np.ndarray:
        try:
            ir = decoded_noise(self.ir, rate_hz)
        except AudioError as exc:
            raise ConfigError(str(Problem(file=self.profile_file, line=None, field="ir", value=str(self.ir),
                                          message=f"impulse response cannot be used ({exc})", fix="Replace the file or fix the path"))) from exc
        peak = int(np.argmax(np.abs(ir)))
        if ir[peak] == 0.0:
            raise ConfigError(str(Problem(file=self.profile_file, line=None, field="ir", value=str(self.ir),
                                          message="impulse response is silent", fix="Use a real impulse-response recording")))
        return ir[peak:]

    def prepare(self, rate_hz: int) -> None:
        if self.ir is not None:
            self.file_ir(rate_hz)

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> ReverbDraw:
        return ReverbDraw(seed=child_seed(rng) if self.ir is None else None)

    def apply(self, samples: np.ndarray, drawn: ReverbDraw, *, context: Context) -> tuple[np.ndarray, dict]:
        if self.ir is not None:
            ir = self.file_ir(context.rate_hz)
        else:
            ir = synthetic_ir(self.rt60_s, context.rate_hz, drr_db=self.drr_db, rng=np.random.default_rng(drawn.seed))
        return reverberate(samples, ir), {**self.describe(), "ir_seed": drawn.seed, "ir_length_s": ir.size / context.rate_hz}
