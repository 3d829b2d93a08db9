"""Lossy codec round trip: encode to MP3 (LAME) or Opus (libopus) at a bitrate and decode, in memory.

Uses PyAV (FFmpeg's encoders and decoders). Audio at a rate the codec does not take is resampled
to the nearest rate it does and back. Encoder delay is removed by the container (LAME's Info tag,
Opus pre-skip); a residual lag of up to 50 ms is found by cross-correlation and removed, so the
output lines up with the input and has its length. Deterministic.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import signal as sps

from harness.audio import resample
from harness.errors import HarnessError
from harness.noise._base import Context
from harness.noise._spec import Fields

CODECS = {
    # type: (container format, encoder, rates the encoder takes, default kbit/s)
    "mp3": ("mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000), 32.0),
    "opus": ("ogg", "libopus", (8000, 12000, 16000, 24000, 48000), 16.0),
}


def _codec_rate(rate_hz: int, supported: tuple[int, ...]) -> int:
    if rate_hz in supported:
        return rate_hz
    higher = [r for r in supported if r >= rate_hz]
    return min(higher) if higher else max(supported)


def codec_round_trip(samples: np.ndarray, rate_hz: int, *, codec: str, bitrate_kbps: float) -> tuple[np.ndarray, dict]:
    """(decoded audio with the input's length, record with encoded bytes, codec rate and lag removed)."""
    import av  # lazy: only profiles with a codec step need it

    container_format, encoder, supported, _ = CODECS[codec]
    codec_rate_hz = _codec_rate(rate_hz, supported)
    x = resample(samples.astype(np.float32, copy=False), rate_hz, codec_rate_hz)
    buffer = io.BytesIO()
    try:
        with av.open(buffer, mode="w", format=container_format) as out:
            stream = out.add_stream(encoder, rate=codec_rate_hz)
            stream.bit_rate = int(bitrate_kbps * 1000)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, :]), format="flt", layout="mono")
            frame.rate = codec_rate_hz
            frame.pts = 0
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        encoded = buffer.getvalue()
        chunks = []
        with av.open(io.BytesIO(encoded), mode="r", format=container_format) as inp:
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=codec_rate_hz)
            for decoded in inp.decode(inp.streams.audio[0]):
                chunks.extend(c.to_ndarray() for c in resampler.resample(decoded))
            chunks.extend(c.to_ndarray() for c in resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise HarnessError(f"{codec} round trip at {bitrate_kbps:g} kbit/s failed in FFmpeg ({exc}). Check that PyAV's FFmpeg has {encoder}.") from exc
    y = np.concatenate(chunks, axis=1)[0] if chunks else np.zeros(0, dtype=np.float32)
    lag = _lag(x, y, max_lag=int(0.05 * codec_rate_hz))
    y = y[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, dtype=np.float32), y])
    y = resample(y.astype(np.float32), codec_rate_hz, rate_hz)
    out_samples = np.zeros(samples.size, dtype=np.float32)
    out_samples[: min(samples.size, y.size)] = y[: samples.size]
    return out_samples, {"encoded_bytes": len(encoded), "codec_rate_hz": codec_rate_hz, "lag_samples": lag}


def _lag(reference: np.ndarray, decoded: np.ndarray, *, max_lag: int) -> int:
    """Lag of decoded behind reference in [-max_lag, max_lag], from the first 2 s; 0 when undecidable."""
    n = min(reference.size, decoded.size, 2 * 48000)
    if n <= 2 * max_lag:
        return 0
    a = reference[:n].astype(np.float64)
    b = decoded[:n].astype(np.float64)
    corr = sps.correlate(b, a, mode="full", method="fft")
    centre = n - 1
    window = corr[centre - max_lag : centre + max_lag + 1]
    if not np.any(window):
        return 0
    return int(np.argmax(window)) - max_lag


@dataclass(frozen=True, kw_only=True)
class Codec:
    """Steps `mp3` (default 32 kbit/s) and `opus` (default 16 kbit/s): `bitrate_kbps`.

    Edge case: very short inputs (under one codec frame) come back padded/cut to their length.
    """

    codec: str
    bitrate_kbps: float

    types: ClassVar[tuple[str, ...]] = tuple(CODECS)

    @property
    def type(self) -> str:
        return self.codec

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "Codec":
        bitrate = fields.number("bitrate_kbps", CODECS[type][3], low=6.0 if type == "opus" else 8.0, high=320.0, unit="kbit/s")
        fields.finish()
        return cls(codec=type, bitrate_kbps=bitrate)

    def describe(self) -> dict:
        return {"type": self.codec, "bitrate_kbps": self.bitrate_kbps}

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> None:
        return None

    def apply(self, samples: np.ndarray, drawn: None, *, context: Context) -> tuple[np.ndarray, dict]:
        if samples.size == 0:
            return samples.astype(np.float32, copy=True), {**self.describe(), "encoded_bytes": 0}
        out, record = codec_round_trip(samples, context.rate_hz, codec=self.codec, bitrate_kbps=self.bitrate_kbps)
        return out, {**self.describe(), **record}
