"""`asrfair noise add`: turn the customer's own recordings (files or folders, any format) into a profile."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.audio import read_audio, to_mono
from harness.errors import AudioError, ConfigError
from harness.noise.profile import PROFILE_SUFFIXES, asrfair_home, check_name, read_profile_file
from harness.noise.recorded import AUDIO_SUFFIXES, audio_files_in, sha256_of, unusable_reason



def default_profiles_dir() -> Path:
    """$ASRFAIR_HOME/noise_profiles (ASRFAIR_HOME defaults to ~/.asrfair)."""
    return asrfair_home() / "noise_profiles"


@dataclass(frozen=True, kw_only=True)
class Rejection:
    """Why one input path cannot be used, and what to do about it."""

    path: Path
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}. {self.fix}"


def _expand(paths: Iterable[str | Path], problems: list[Rejection]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = audio_files_in(path)
            if not found:
                problems.append(Rejection(path=path, reason="folder holds no audio files",
                                          fix=f"Point to a folder with recordings ({', '.join(sorted(AUDIO_SUFFIXES))})"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Rejection(path=path, reason="no such file or folder", fix="Check the path"))
    unique: dict[Path, None] = {}
    for path in files:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def check_recording(path: Path) -> tuple[dict | None, Rejection | None]:
    """(YAML entry for a usable recording, None) or (None, the reason it cannot be used)."""
    try:
        samples, rate_hz = read_audio(path)
    except AudioError as exc:
        detail = str(exc).removeprefix(f"{path}: ")
        return None, Rejection(path=path, reason=f"cannot be decoded, the file looks corrupt ({detail.rstrip('.')})",
                               fix="Re-export or re-record it, or leave it out")
    duration_s = samples.shape[0] / rate_hz
    unusable = unusable_reason(to_mono(samples), rate_hz)
    if unusable is not None:
        reason, fix = unusable
        return None, Rejection(path=path, reason=reason, fix=fix)
    entry = {"path": str(path), "sha256": sha256_of(path), "duration_s": round(duration_s, 3), "rate_hz": int(rate_hz), "channels": int(samples.shape[1])}
    return entry, None


def add_recordings(paths: Iterable[str | Path], *, name: str, directory: str | Path | None = None, description: str | None = None,
                   overwrite: bool = False) -> Path:
    """Check recordings and write profile NAME.yaml referring to them by absolute path and sha256.

    paths are files or folders (searched recursively for audio files). Every recording is decoded
    (any format, rate and channel count) and rejected if corrupt, shorter than MIN_DURATION_S or
    quieter than SILENCE_DBFS; all problems are reported together in one ConfigError and nothing
    is written. The profile adds one random recording per utterance at the --snr level.
    directory defaults to $ASRFAIR_HOME/noise_profiles. Returns the written path.
    """
    check_name(name, file="--name")
    directory = Path(directory).expanduser() if directory is not None else default_profiles_dir()
    target = directory / f"{name}.yaml"
    existing = [directory / f"{name}{s}" for s in PROFILE_SUFFIXES if (directory / f"{name}{s}").exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]}: a noise profile named {name!r} already exists. Choose another --name, or overwrite it (overwrite=True / --force).")
    problems: list[Rejection] = []
    files = _expand(list(paths), problems)
    if not files and not problems:
        raise ConfigError("no recordings given. Pass one or more audio files or folders.")
    entries = []
    for path in files:
        entry, problem = check_recording(path)
        if problem is not None:
            problems.append(problem)
        else:
            entries.append(entry)
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"{len(problems)} recording(s) cannot be used for noise profile {name!r}; nothing was written:\n{shown}")
    total_s = sum(e["duration_s"] for e in entries)
    document = {
        "name": name,
        "description": description or f"Recorded noise: {len(entries)} file(s), {total_s:.1f} s in all; a random segment per utterance at the --snr level.",
        "transforms": [{"type": "additive", "snr_db": "grid", "source": {"type": "recorded", "files": entries}}],
    }
    directory.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(temporary, target)
    for stale in existing:
        if stale != target:
            stale.unlink()
    read_profile_file(target, expected_name=name)  # what we wrote must load
    return target
