"""An opt-in transcript cache shared across runs: a second run over overlapping data transcribes only what is new.

A transcript is keyed by the audio the backend heard (sha256 of the samples after the noise
condition, at the backend's rate), the condition, the noise seed and the backend's identity (its
name, model and every setting that can change a transcript). SQLite, so concurrent runs can share it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import Backend, Transcript, TranscriptionRequest

CACHE_FILE = "transcripts.sqlite"


def default_cache_path() -> Path:
    home = Path(os.environ.get("ASRFAIR_HOME") or Path.home() / ".asrfair")
    return home / CACHE_FILE


def backend_fingerprint(backend: Backend) -> str:
    """sha256 of the backend's identity record (sorted JSON)."""
    return hashlib.sha256(json.dumps(backend.identity(), sort_keys=True, default=str).encode()).hexdigest()


def audio_fingerprint(samples: np.ndarray | None) -> str | None:
    if samples is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()


class TranscriptCache:
    """Transcripts by content key. `scope(backend)` binds the backend identity for one run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("CREATE TABLE IF NOT EXISTS transcripts (key TEXT PRIMARY KEY, text TEXT NOT NULL, latency_s REAL, backend TEXT NOT NULL, created_at TEXT DEFAULT CURRENT_TIMESTAMP)")
        self._connection.commit()

    def close(self) -> None:
        self._connection.close()

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM transcripts").fetchone()[0]

    def scope(self, backend: Backend) -> CacheScope:
        return CacheScope(self, backend.name, backend_fingerprint(backend))


class CacheScope:
    """The cache as one backend sees it."""

    def __init__(self, cache: TranscriptCache, backend_name: str, fingerprint: str):
        self.cache, self.backend_name, self.fingerprint = cache, backend_name, fingerprint

    def key(self, request: TranscriptionRequest, noise_seed: int | None) -> str:
        # A replayed transcript has no audio: its utterance id is what identifies it.
        audio = audio_fingerprint(request.samples) or f"id:{request.utterance_id}"
        record = {"audio_sha256": audio, "sample_rate_hz": request.sample_rate_hz, "condition": request.condition, "noise_seed": noise_seed, "backend": self.fingerprint}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def get(self, request: TranscriptionRequest, noise_seed: int | None) -> Transcript | None:
        row = self.cache._connection.execute("SELECT text, latency_s FROM transcripts WHERE key = ?", (self.key(request, noise_seed),)).fetchone()
        # attempts=0: nothing was sent to the backend for this row.
        return None if row is None else Transcript(text=row[0], latency_s=row[1], attempts=0)

    def put_many(self, items: Iterable[tuple[TranscriptionRequest, int | None, Transcript]]) -> None:
        values: list[tuple[Any, ...]] = [(self.key(request, seed), result.text, result.latency_s, self.backend_name) for request, seed, result in items if result.note is None]
        with self.cache._connection:
            self.cache._connection.executemany("INSERT OR IGNORE INTO transcripts (key, text, latency_s, backend) VALUES (?, ?, ?, ?)", values)
