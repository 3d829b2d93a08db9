"""Decode any audio file to mono float32 at the rate a backend wants (soundfile, PyAV fallback, soxr)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile
import soxr

from harness.errors import AudioError


def read_audio(path: str | Path | io.BytesIO) -> tuple[np.ndarray, int]:
    """Return (samples, rate_hz) with samples float32 shaped (frames, channels).

    libsndfile reads WAV, FLAC, OGG and MP3; anything else it rejects (M4A/AAC from phones)
    goes through PyAV, which bundles FFmpeg's decoders. An in-memory buffer (audio bytes from a
    Hugging Face dataset) is read the same way.
    """
    if isinstance(path, io.BytesIO):
        source: str | io.BytesIO = path
        path = Path("<in-memory audio>")
    else:
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"{path}: audio file not found. Check the path (relative paths are resolved against the manifest's folder).")
        source = str(path)
    try:
        samples, rate_hz = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        if isinstance(source, io.BytesIO):
            source.seek(0)
        samples, rate_hz = _read_with_pyav(path, source)
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: audio file holds no samples. Re-export it or drop the utterance from the manifest.")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path}: audio holds NaN or infinite samples. Re-export the file.")
    return samples, int(rate_hz)


def _read_with_pyav(path: Path, source: str | io.BytesIO) -> tuple[np.ndarray, int]:
    import av  # imported lazily: most corpora are WAV/FLAC and never need it

    try:
        with av.open(source) as container:
            streams = container.streams.audio
            if not streams:
                raise AudioError(f"{path}: no audio stream found. Is this an audio file?")
            stream = streams[0]
            # Ask the resampler for planar float32 so channels arrive as rows we can stack.
            resampler = av.AudioResampler(format="fltp", layout=stream.layout.name if stream.layout else None, rate=stream.rate)
            chunks = []
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    chunks.append(converted.to_ndarray())
            for converted in resampler.resample(None):
                chunks.append(converted.to_ndarray())
            rate_hz = stream.rate
    except AudioError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc}). Convert it to WAV or FLAC, or check the file is not corrupt.") from exc
    if not chunks:
        raise AudioError(f"{path}: decoder returned no audio. Check the file is not corrupt or empty.")
    planar = np.concatenate(chunks, axis=1)
    return np.ascontiguousarray(planar.T, dtype=np.float32), int(rate_hz)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels: (frames, channels) or (frames,) in, (frames,) float32 out."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    return samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, from_rate_hz: int, to_rate_hz: int) -> np.ndarray:
    """High-quality resampling with soxr; a no-op when the rates already match."""
    if from_rate_hz == to_rate_hz:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, from_rate_hz, to_rate_hz, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | Path | io.BytesIO, rate_hz: int) -> np.ndarray:
    """Read, downmix and resample: the one call a backend's input goes through."""
    samples, source_rate_hz = read_audio(path)
    return resample(to_mono(samples), source_rate_hz, rate_hz)


def write_audio(path: str | Path, samples: np.ndarray, rate_hz: int) -> None:
    """Write mono float32 as 16-bit PCM (WAV) or FLAC, chosen by the file suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(samples, -1.0, 1.0)
    soundfile.write(str(path), clipped, rate_hz, subtype="PCM_16")
