"""Recorded noise: a random segment of a file per utterance, looped when the file is shorter.

Files are decoded, downmixed and resampled once per (file, rate) and kept in memory for the run
(``decoded_noise``), so per-utterance work is a slice and a scale.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from harness.audio import load_audio
from harness.errors import AudioError, ConfigError, Problem
from harness.noise._base import Context
from harness.noise._spec import Fields

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".aif", ".aiff", ".caf", ".wma", ".webm"})
"""File name endings treated as audio when a folder is given."""

MIN_DURATION_S = 1.0
"""Shorter recordings are rejected: looping them over an utterance gives an audible, unnatural pattern."""

SILENCE_DBFS = -60.0
"""Recordings whose RMS (after downmix) is below this are rejected as silent."""


def unusable_reason(mono: np.ndarray, rate_hz: int) -> tuple[str, str] | None:
    """(why, what to do) when a recording is too short or silent to use as noise; None when it is usable.

    The one rule for `asrfair noise add` and for every profile when it is prepared for a run, so a
    hand-written profile cannot add silence and say nothing.
    """
    duration_s = mono.shape[0] / rate_hz
    if duration_s < MIN_DURATION_S:
        return (f"is too short to use as noise ({duration_s:.3f} s; the minimum is {MIN_DURATION_S:g} s)",
                "Use a recording of at least a few seconds of the noise")
    samples = np.asarray(mono, dtype=np.float64)
    rms = math.sqrt(float(np.square(samples).sum()) / samples.size)  # numpy sums, so the verdict does not depend on BLAS threads
    if rms == 0.0 or 20.0 * math.log10(rms) < SILENCE_DBFS:
        level = "digital silence" if rms == 0.0 else f"RMS {20.0 * math.log10(rms):.1f} dBFS"
        return (f"is silent ({level}; the minimum is {SILENCE_DBFS:g} dBFS)", "Check the microphone input and gain, or leave the file out")
    return None


_lock = threading.Lock()
_checked: dict[tuple[str, int, int], tuple[str, str] | None] = {}
_checksums: dict[tuple[str, int, int], str] = {}
_decoded: dict[tuple[str, int, int, int], np.ndarray] = {}
_DECODED_LIMIT = 64


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file; cached by (path, size, mtime) so a run hashes each file once."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _checksums:
            return _checksums[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _lock:
        _checksums[key] = value
    return value


def decoded_noise(path: Path, rate_hz: int) -> np.ndarray:
    """Mono float32 audio of path at rate_hz, decoded once per run and shared (read-only).

    Raises AudioError for a missing, corrupt or empty file.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise AudioError(f"{path}: noise file not found ({exc.strerror}). Restore the file or fix the profile.") from exc
    key = (str(path.resolve()), int(rate_hz), stat.st_size, stat.st_mtime_ns)
    with _lock:
        cached = _decoded.get(key)
    if cached is not None:
        return cached
    audio = np.ascontiguousarray(load_audio(path, int(rate_hz)), dtype=np.float32)
    audio.setflags(write=False)
    with _lock:
        if len(_decoded) >= _DECODED_LIMIT:
            _decoded.pop(next(iter(_decoded)))
        _decoded[key] = audio
    return audio


def clear_cache() -> None:
    """Forget decoded audio and checksums (tests; long-lived processes after files change)."""
    with _lock:
        _decoded.clear()
        _checksums.clear()
        _checked.clear()


def audio_files_in(folder: Path) -> list[Path]:
    """Audio files under folder (recursive), sorted so the list (and hence draws) is stable."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))


@dataclass(frozen=True, kw_only=True)
class NoiseFile:
    """One recording a profile refers to; sha256 is checked on load when the profile records it."""

    path: Path
    sha256: str | None = None
    profile_file: str = field(default="", compare=False)
    field: str = field(default="", compare=False)


def check_file(fields: Fields, where: str, path: Path, sha256: str | None) -> None:
    """ConfigError when a referenced file is missing or its checksum no longer matches."""
    if not path.is_file():
        fields.fail(where, str(path), "refers to a file that does not exist",
                    "Restore the file, fix the path in the profile, or re-create the profile with `asrfair noise add`")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.lower():
            fields.fail(where, str(path), f"file checksum has changed (profile says sha256 {sha256[:12]}..., file has {actual[:12]}...)",
                        "The recording was edited or replaced; re-create the profile with `asrfair noise add` or restore the original file")


def read_file_entries(fields: Fields, key: str) -> tuple[NoiseFile, ...]:
    """Parse `files:` (paths, or mappings with path and sha256) and check every file exists and matches."""
    entries = fields.raw(key)
    where = fields.path_of(key)
    if not isinstance(entries, list) or not entries:
        fields.fail(where, entries, "must be a non-empty list of files", "List recordings as `- path: /abs/file.wav` entries, or use `folder:`")
    files = []
    for index, entry in enumerate(entries):
        entry_where = f"{where}[{index}]"
        if isinstance(entry, str):
            entry = {"path": entry}
        sub = Fields(entry, file=fields.file, field=entry_where, base_dir=fields.base_dir)
        path = sub.path("path")
        sha256 = sub.string("sha256", None) if sub.has("sha256") else None
        # Written by `asrfair noise add` for people reading the YAML; not used.
        for informational in ("duration_s", "rate_hz", "channels"):
            sub.raw(informational, None)
        sub.finish()
        check_file(sub, f"{entry_where}.path", path, sha256)
        files.append(NoiseFile(path=path, sha256=sha256, profile_file=fields.file, field=entry_where))
    return tuple(files)


@dataclass(frozen=True, kw_only=True)
class RecordedDraw:
    file_index: int
    offset_samples: int


@dataclass(frozen=True, kw_only=True)
class RecordedNoise:
    """Source `recorded`: `files:` (list of paths or {path, sha256}) or `folder:` (every audio file in it).

    Per utterance one file is chosen uniformly and a start offset uniformly: within
    [0, length - n] when the file is long enough, else anywhere, and the file is looped
    (wrapped end to start, no crossfade) to cover the utterance.
    """

    files: tuple[NoiseFile, ...]
    folder: Path | None = None

    type: ClassVar[str] = "recorded"

    @classmethod
    def from_spec(cls, fields: Fields, *, type: str) -> "RecordedNoise":
        folder = None
        if fields.has("folder"):
            folder = fields.path("folder")
            if not folder.is_dir():
                fields.fail(fields.path_of("folder"), str(folder), "is not a folder", "Fix the path, or list files with `files:`")
            found = audio_files_in(folder)
            if not found:
                fields.fail(fields.path_of("folder"), str(folder), f"holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})",
                            "Put recordings in the folder or point to another one")
            files = tuple(NoiseFile(path=p, profile_file=fields.file, field=fields.path_of("folder")) for p in found)
        elif fields.has("files"):
            files = read_file_entries(fields, "files")
        else:
            fields.fail(fields.path_of("files"), None, "a recorded source needs `files:` or `folder:`", "Add a list of recordings, or create the profile with `asrfair noise add`")
        fields.finish(exclusive=(("files", "folder"),))
        return cls(files=files, folder=folder)

    def describe(self) -> dict:
        if self.folder is not None:
            return {"type": self.type, "folder": str(self.folder)}
        return {"type": self.type, "files": [{"path": str(f.path), "sha256": f.sha256} for f in self.files]}

    def audio(self, index: int, rate_hz: int) -> np.ndarray:
        """Decoded file `index` at rate_hz; a decoding problem becomes a ConfigError naming the profile."""
        noise_file = self.files[index]
        try:
            audio = decoded_noise(noise_file.path, rate_hz)
        except AudioError as exc:
            raise ConfigError(str(Problem(file=noise_file.profile_file, line=None, field=noise_file.field, value=str(noise_file.path),
                                          message=f"noise recording cannot be used ({exc})",
                                          fix="Replace the recording or remove it from the profile"))) from exc
        if audio.size == 0:
            raise ConfigError(str(Problem(file=noise_file.profile_file, line=None, field=noise_file.field, value=str(noise_file.path),
                                          message=f"noise recording is empty at {rate_hz} Hz", fix="Use a longer recording")))
        key = (str(noise_file.path), int(rate_hz), audio.size)
        with _lock:
            known = key in _checked
            reason = _checked.get(key)
        if not known:
            reason = unusable_reason(audio, int(rate_hz))
            with _lock:
                _checked[key] = reason
        if reason is not None:
            why, fix = reason
            raise ConfigError(str(Problem(file=noise_file.profile_file, line=None, field=noise_file.field, value=str(noise_file.path),
                                          message=f"noise recording {why}", fix=f"{fix}, or remove it from the profile")))
        return audio

    def prepare(self, rate_hz: int) -> None:
        """Decode every file now, so a bad recording fails before any audio is transcribed."""
        for index in range(len(self.files)):
            self.audio(index, rate_hz)

    def draw(self, rng: np.random.Generator, *, n_samples: int, context: Context) -> RecordedDraw:
        index = int(rng.integers(len(self.files)))
        length = self.audio(index, context.rate_hz).size
        if length >= n_samples:
            offset = int(rng.integers(length - n_samples + 1))
        else:
            offset = int(rng.integers(length))
        return RecordedDraw(file_index=index, offset_samples=offset)

    def generate(self, drawn: RecordedDraw, *, n_samples: int, context: Context) -> tuple[np.ndarray, dict]:
        audio = self.audio(drawn.file_index, context.rate_hz)
        segment = looped_segment(audio, drawn.offset_samples, n_samples)
        noise_file = self.files[drawn.file_index]
        record = {
            "type": self.type,
            "file": str(noise_file.path),
            "sha256": noise_file.sha256,
            "offset_s": drawn.offset_samples / context.rate_hz,
            "file_duration_s": audio.size / context.rate_hz,
            "looped": drawn.offset_samples + n_samples > audio.size,
        }
        return segment, record


def looped_segment(audio: np.ndarray, offset_samples: int, n_samples: int) -> np.ndarray:
    """audio[offset : offset + n], wrapping to the start as often as needed; a view when no wrap is needed."""
    length = audio.size
    if length == 0:
        raise ValueError("cannot take a segment of empty audio")
    offset_samples %= length
    if offset_samples + n_samples <= length:
        return audio[offset_samples : offset_samples + n_samples]
    return np.take(audio, np.arange(offset_samples, offset_samples + n_samples) % length)
