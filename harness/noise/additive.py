"""Additive noise at a target SNR, from one source or a weighted mix of sources.

SNR definition: signal power over the whole utterance (mean square of every sample, silences
included) over noise power over the same samples, 10*log10(P_signal / P_noise). The noise is
scaled to hit the target exactly, and the SNR measured on the mixed float32 output
(10*log10(P_input / P_(output - input))) is recorded next to the target. Active-speech level
(ITU-T P.56) is not used: it needs a voice-activity threshold, and utterances with long pauses
get a few dB more noise here than under P.56.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from harness.errors import ConfigError
from harness.noise._base import Context
from harness.noise._spec import Fields, child_seed, db, did_you_mean, power
from harness.noise.babble import Babble
from harness.noise.colored import ColoredNoise
from harness.noise.periodic import Beeps, Tone
from harness.noise.recorded import RecordedNoise

SOURCE_TYPES: dict[str, type] = {
    "white": ColoredNoise,
    "pink": ColoredNoise,
    "brown": ColoredNoise,
    "recorded": RecordedNoise,
    "babble": Babble,
    "tone": Tone,
    "beeps": Beeps,
}
"""Noise sources the additive step accepts under `source:` / `sources:`."""

GRID = "grid"
"""`snr_db: grid` (the default): the level comes from the --snr values of the run."""


def snr_db_of(signal: np.ndarray, mixed: np.ndarray) -> float | None:
    """Measured SNR of mixed against the clean signal, by the definition above; None if either power is 0."""
    signal_power = power(signal)
    noise_power = power(mixed.astype(np.float64) - signal.astype(np.float64))
    if signal_power == 0.0 or noise_power == 0.0:
        return None
    return 10.0 * math.log10(signal_power / noise_power)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, dict]:
    """signal + g*noise with g chosen so the SNR is snr_db; returns (mixed float32, record).

    Edge cases: a silent signal (SNR undefined) or a silent noise is returned unchanged, with
    `skipped` in the record saying why. Output is not clipped; the record gives its peak.
    """
    if signal.shape != noise.shape:
        raise ValueError(f"signal and noise must have the same shape, got {signal.shape} and {noise.shape}")
    signal_power = power(signal)
    noise_power = power(noise)
    record: dict[str, Any] = {"target_snr_db": float(snr_db), "signal_dbfs": db(signal_power)}
    if signal_power == 0.0 or noise_power == 0.0:
        record.update(measured_snr_db=None, noise_dbfs=None, noise_gain_db=None, peak=float(np.max(np.abs(signal), initial=0.0)),
                      skipped="silent input: SNR is undefined, no noise added" if signal_power == 0.0 else "noise is silent here: nothing added")
        return signal.astype(np.float32, copy=True), record
    gain = math.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    mixed = (signal.astype(np.float32, copy=False) + np.float32(gain) * noise.astype(np.float32, copy=False)).astype(np.float32, copy=False)
    record.update(measured_snr_db=snr_db_of(signal, mixed), noise_dbfs=db(noise_power * gain * gain),
                  noise_gain_db=20.0 * math.log10(gain), peak=float(np.max(np.abs(mixed))))
    return mixed, record


@dataclass(frozen=True, kw_only=True)
class MixPart:
    source: Any
    level_db: float = 0.0


@dataclass(frozen=True, kw_only=True)
class AdditiveDraw:
    target_snr_db: float
    source_seeds: tuple[int, ...]
    source_draws: tuple[Any, ...]


@dataclass(frozen=True, kw_only=True)
class Additive:
    """Step `additive`: noise from `source:` (one) or `sources:` (a mix) at `snr_db` (a number, or `grid`).

    In a mix each source is first scaled to unit power, then weighted by its `level_db`
    (relative, default 0); the SNR applies to the sum.
    """

    parts: tuple[MixPart, ...]
    snr_db: float | None = None  # None: from the --snr grid

    type: ClassVar[str] = "additive"

    @property
    def uses_snr_grid(self) -> bool:
        return self.snr_db is None

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Additive":
        raw_snr = fields.raw("snr_db", GRID)
        if raw_snr == GRID:
            snr_db = None
        else:
            snr_db = fields.number("snr_db", low=-60.0, high=120.0, unit="dB")
        if fields.has("source") == fields.has("sources"):
            fields.fail(fields.path_of("source"), None, "an additive step needs exactly one of `source:` or `sources:`",
                        "Give one noise as `source: {type: pink}`, or a mix as `sources: [...]`")
        if fields.has("source"):
            entries, field = [fields.raw("source")], fields.path_of("source")
            fields_of = [Fields(entries[0], file=fields.file, field=field, base_dir=fields.base_dir)]
        else:
            entries = fields.raw("sources")
            field = fields.path_of("sources")
            if not isinstance(entries, list) or not entries:
                fields.fail(field, entries, "must be a non-empty list of noise sources", "Write `sources:` followed by `- type: ...` entries")
            fields_of = [Fields(e, file=fields.file, field=f"{field}[{i}]", base_dir=fields.base_dir) for i, e in enumerate(entries)]
        fields.finish()
        parts = []
        for sub in fields_of:
            source_type = sub.string("type")
            if source_type not in SOURCE_TYPES:
                sub.fail(sub.path_of("type"), source_type, "is not a known noise source",
                         f"Use one of: {', '.join(SOURCE_TYPES)}.{did_you_mean(source_type, tuple(SOURCE_TYPES))}")
            level_db = sub.number("level_db", 0.0, low=-120.0, high=120.0, unit="dB")
            parts.append(MixPart(source=SOURCE_TYPES[source_type].from_spec(sub, type=source_type), level_db=level_db))
        return cls(parts=tuple(parts), snr_db=snr_db)

    def describe(self) -> dict:
        return {"type": self.type, "snr_db": GRID if self.snr_db is None else self.snr_db,
                "sources": [{**p.source.describe(), "level_db": p.level_db} for p in self.parts]}

    def prepare(self, rate_hz: int) -> None:
        for part in self.parts:
            if hasattr(part.source, "prepare"):
                part.source.prepare(rate_hz)

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> AdditiveDraw:
        if self.snr_db is None:
            if context.snr_db is None:
                raise ConfigError("this additive step takes its level from the --snr values, but no snr_db was given. Pass --snr (e.g. --snr 20,10,5,0).")
            target = float(context.snr_db)
        else:
            target = self.snr_db
        seeds = tuple(child_seed(rng) for _ in self.parts)
        draws = tuple(p.source.draw(np.random.default_rng(s), n_samples=n_samples, context=context) for p, s in zip(self.parts, seeds))
        return AdditiveDraw(target_snr_db=target, source_seeds=seeds, source_draws=draws)

    def apply(self, samples: np.ndarray, drawn: AdditiveDraw, *, context: Context) -> tuple[np.ndarray, dict]:
        n_samples = samples.size
        source_records = []
        if len(self.parts) == 1:
            noise, source_record = self.parts[0].source.generate(drawn.source_draws[0], n_samples=n_samples, context=context)
            source_records.append({**source_record, "level_db": 0.0, "seed": drawn.source_seeds[0]})
        else:
            total = np.zeros(n_samples, dtype=np.float64)
            for part, seed, source_draw in zip(self.parts, drawn.source_seeds, drawn.source_draws):
                part_noise, source_record = part.source.generate(source_draw, n_samples=n_samples, context=context)
                part_power = power(part_noise)
                if part_power > 0.0:
                    total += part_noise.astype(np.float64) * (10.0 ** (part.level_db / 20.0) / math.sqrt(part_power))
                else:
                    source_record = {**source_record, "silent": True}
                source_records.append({**source_record, "level_db": part.level_db, "seed": seed})
            noise = total.astype(np.float32)
        mixed, record = mix_at_snr(samples, noise, drawn.target_snr_db)
        return mixed, {"type": self.type, "snr_from_grid": self.snr_db is None, **record, "sources": source_records}
