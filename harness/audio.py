"""Decode any audio file to mono float32 at the rate a backend wants (soundfile, PyAV fallback, soxr)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile
import soxr

from harness.errors import AudioError


DEFAULT_MAX_DURATION_S = 1800.0
"""Longest utterance decoded by default (30 min). A longer file is almost always a whole recording given
where a segment was meant, and decoding it costs gigabytes. Raise or disable it with --max-duration-s."""

SEGMENT_END_TOLERANCE_S = 1.0
"""A segment may run this far past the end of its file (manifests round durations) before it is an error."""


def read_audio(path: str | Path | io.BytesIO, *, offset_s: float | None = None, duration_s: float | None = None,
               max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Return (samples, rate_hz) with samples float32 shaped (frames, channels).

    libsndfile reads WAV, FLAC, OGG and MP3; anything else it rejects (M4A/AAC from phones)
    goes through PyAV, which bundles FFmpeg's decoders. An in-memory buffer (audio bytes from a
    Hugging Face dataset) is read the same way.

    `offset_s` and `duration_s` select a segment (NeMo manifests' `offset` and `duration`) and only it is
    returned: libsndfile seeks to it, PyAV decodes up to its end and keeps it. Audio (or a segment) longer
    than `max_duration_s` is an AudioError, raised before decoding when the file states its length.
    """
    if isinstance(path, io.BytesIO):
        source: str | io.BytesIO = path
        path = Path("<in-memory audio>")
    else:
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"{path}: audio file not found. Check the path (relative paths are resolved against the manifest's folder).")
        source = str(path)
    segment = _Segment(path=path, offset_s=offset_s or 0.0, duration_s=duration_s, max_duration_s=max_duration_s)
    try:
        samples, rate_hz = _read_with_soundfile(source, segment)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        if isinstance(source, io.BytesIO):
            source.seek(0)
        samples, rate_hz = _read_with_pyav(path, source, segment)
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: audio file holds no samples. Re-export it or drop the utterance from the manifest.")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path}: audio holds NaN or infinite samples. Re-export the file.")
    return samples, int(rate_hz)


class _Segment:
    """Which frames of a file to return, and the checks on them, whichever decoder reads the file."""

    def __init__(self, *, path: Path, offset_s: float, duration_s: float | None, max_duration_s: float | None):
        self.path, self.offset_s, self.duration_s, self.max_duration_s = path, offset_s, duration_s, max_duration_s

    def frames(self, rate_hz: int, total_frames: int | None) -> tuple[int, int | None]:
        """(first frame, number of frames or None for "to the end"), checked against the file's length when known."""
        start = int(round(self.offset_s * rate_hz))
        count = None if self.duration_s is None else int(round(self.duration_s * rate_hz))
        if total_frames is not None:
            self.check_bounds(total_frames, rate_hz)
            count = total_frames - start if count is None else min(count, total_frames - start)
        if count is not None:
            self.check_length(count / rate_hz)
        return start, count

    def check_bounds(self, total_frames: int, rate_hz: int) -> None:
        length_s = total_frames / rate_hz
        if self.offset_s > 0 and int(round(self.offset_s * rate_hz)) >= total_frames:
            raise AudioError(f"{self.path}: offset {self.offset_s:g} s is at or past the end of the audio ({length_s:.2f} s long). "
                             "Fix the utterance's offset in the manifest (seconds, not milliseconds).")
        if self.duration_s is not None and self.offset_s + self.duration_s > length_s + SEGMENT_END_TOLERANCE_S:
            raise AudioError(f"{self.path}: segment {self.offset_s:g}–{self.offset_s + self.duration_s:g} s runs past the end of the audio "
                             f"({length_s:.2f} s long). Fix the utterance's offset and duration in the manifest.")

    def check_length(self, seconds: float) -> None:
        if self.max_duration_s and seconds > self.max_duration_s:
            what = "segment" if self.duration_s is not None or self.offset_s else "audio"
            raise AudioError(f"{self.path}: {what} is {seconds:.1f} s long, more than the limit of {self.max_duration_s:g} s per utterance. "
                             "Split the recording into utterances (a manifest's offset and duration select a segment), or raise --max-duration-s.")


def _read_with_soundfile(source: str | io.BytesIO, segment: _Segment) -> tuple[np.ndarray, int]:
    with soundfile.SoundFile(source) as handle:
        rate_hz = handle.samplerate
        # libsndfile states the length of what it reads; 0 or less means it could not (a stream).
        total = handle.frames if handle.frames > 0 else None
        start, count = segment.frames(rate_hz, total)
        if start and handle.format == "MP3":
            # libsndfile 1.2's MP3 seek lands off the requested sample, and a read that continues an earlier
            # read decodes wrongly: one read from the start up to the segment's end, then keep the segment.
            samples = handle.read(-1 if count is None else start + count, dtype="float32", always_2d=True)[start:]
        else:
            if start:
                handle.seek(start)
            samples = handle.read(-1 if count is None else count, dtype="float32", always_2d=True)
    if total is None:
        segment.check_length(samples.shape[0] / rate_hz)
    return samples, rate_hz


def _read_with_pyav(path: Path, source: str | io.BytesIO, segment: _Segment) -> tuple[np.ndarray, int]:
    import av  # imported lazily: most corpora are WAV/FLAC and never need it

    try:
        with av.open(source) as container:
            streams = container.streams.audio
            if not streams:
                raise AudioError(f"{path}: no audio stream found. Is this an audio file?")
            stream = streams[0]
            rate_hz = stream.rate
            if container.duration and segment.duration_s is None:
                # The container states its length: a file too long to take whole fails before any decoding.
                segment.check_length(max(0.0, container.duration / av.time_base - segment.offset_s))
            start, count = segment.frames(rate_hz, None)
            stop = None if count is None else start + count
            limit = None if not segment.max_duration_s else int(segment.max_duration_s * rate_hz)
            # Planar float32 from the resampler, so channels arrive as rows we can stack. Samples are counted
            # from the first one decoded, as a whole-file decode counts them, and only the segment is kept.
            resampler = av.AudioResampler(format="fltp", layout=stream.layout.name if stream.layout else None, rate=rate_hz)
            chunks: list[np.ndarray] = []
            position = 0

            def keep(converted) -> None:
                nonlocal position
                block = converted.to_ndarray()
                first, position = position, position + block.shape[1]
                low, high = max(first, start), position if stop is None else min(position, stop)
                if high > low:
                    chunks.append(block[:, low - first : high - first])
                if limit is not None and position - start > limit:
                    segment.check_length((position - start) / rate_hz)

            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    keep(converted)
                if stop is not None and position >= stop:
                    break
            else:
                for converted in resampler.resample(None):
                    keep(converted)
    except AudioError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc}). Convert it to WAV or FLAC, or check the file is not corrupt.") from exc
    if stop is None or position < stop:
        segment.check_bounds(position, rate_hz)
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


def load_audio(path: str | Path | io.BytesIO, rate_hz: int, *, offset_s: float | None = None, duration_s: float | None = None,
               max_duration_s: float | None = None) -> np.ndarray:
    """Read (a segment), downmix and resample: the one call a backend's input goes through."""
    samples, source_rate_hz = read_audio(path, offset_s=offset_s, duration_s=duration_s, max_duration_s=max_duration_s)
    return resample(to_mono(samples), source_rate_hz, rate_hz)


def write_audio(path: str | Path, samples: np.ndarray, rate_hz: int) -> None:
    """Write mono float32 as 16-bit PCM (WAV) or FLAC, chosen by the file suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(samples, -1.0, 1.0)
    soundfile.write(str(path), clipped, rate_hz, subtype="PCM_16")
