"""The durable per-utterance result store of a run: SQLite, one transaction per batch.

A batch is either wholly written or not at all, so a run killed at any moment (Ctrl-C, kill -9)
resumes without losing or duplicating a row; (utterance_id, condition_key) is the primary key.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.rundir import RESULTS_FILE  # noqa: F401 - the run directory module owns file names; re-exported here

# SQLite's names for "this file is not a database" and "its pages are damaged".
DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT")

# (column, SQL type). Tags and noise provenance are JSON text: their keys vary per manifest.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("utterance_id", "TEXT NOT NULL"),
    ("condition_key", "TEXT NOT NULL"),
    ("condition", "TEXT NOT NULL"),
    ("snr_db", "REAL"),
    ("speaker", "TEXT"),
    ("status", "TEXT NOT NULL"),
    ("error", "TEXT"),
    ("reference", "TEXT"),
    ("hypothesis", "TEXT"),
    ("reference_normalized", "TEXT"),
    ("hypothesis_normalized", "TEXT"),
    ("ref_words", "INTEGER"),
    ("hyp_words", "INTEGER"),
    ("hits", "INTEGER"),
    ("substitutions", "INTEGER"),
    ("deletions", "INTEGER"),
    ("insertions", "INTEGER"),
    ("errors", "INTEGER"),
    ("ref_chars", "INTEGER"),
    ("char_errors", "INTEGER"),
    ("audio_duration_s", "REAL"),
    ("tags_json", "TEXT"),
    ("noise_json", "TEXT"),
    # What the backend measured: the time of the request that answered, requests sent, and for a
    # failed row whether trying again could succeed ("retryable") or not ("permanent").
    ("latency_s", "REAL"),
    ("attempts", "INTEGER"),
    ("failure", "TEXT"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)


class ResultStore:
    """Append-only table of scored utterances, keyed by (utterance_id, condition_key)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path)
        with self._checked():
            self._connection.execute("PRAGMA journal_mode=WAL")
            # FULL makes each committed batch survive power loss as well as a killed process.
            self._connection.execute("PRAGMA synchronous=FULL")
            columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
            self._connection.execute(f"CREATE TABLE IF NOT EXISTS results ({columns}, PRIMARY KEY (utterance_id, condition_key))")
            # A run written before a column existed gains it empty, so it can be resumed and reported.
            present = {row[1] for row in self._connection.execute("PRAGMA table_info(results)")}
            for name, kind in COLUMNS:
                if name not in present:
                    self._connection.execute(f"ALTER TABLE results ADD COLUMN {name} {kind.replace(' NOT NULL', '')}")
            self._connection.commit()

    @contextlib.contextmanager
    def _checked(self):
        """A damaged or foreign file becomes a ConfigError naming it; other SQLite errors (a full disk) pass through."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", None) not in DAMAGED:
                raise
            self._connection.close()
            raise ConfigError(
                f"{self.path}: not a readable results store ({exc}): the file is damaged or is not an asrfair results.sqlite. "
                "Restore it from a copy, or start the run again in a new --out folder."
            ) from None

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def done_keys(self, *, retry_failed: bool = False) -> set[tuple[str, str]]:
        """Keys that need no more work. With `retry_failed`, rows that failed for a retryable reason
        are not done: resume sends them again and replaces them."""
        with self._checked():
            if not retry_failed:
                return set(self._connection.execute("SELECT utterance_id, condition_key FROM results"))
            return set(self._connection.execute("SELECT utterance_id, condition_key FROM results WHERE status != 'failed' OR failure IS NULL OR failure != 'retryable'"))

    def retryable_keys(self) -> set[tuple[str, str]]:
        return set(self._connection.execute("SELECT utterance_id, condition_key FROM results WHERE status = 'failed' AND failure = 'retryable'"))

    def failure_counts(self) -> dict[str, int]:
        """Failed rows now in the store, by class: what a report will count as failed."""
        counts = dict(self._connection.execute("SELECT COALESCE(failure, 'unclassified'), COUNT(*) FROM results WHERE status = 'failed' GROUP BY 1"))
        return {"failed": sum(counts.values()), **counts}

    def count(self) -> int:
        with self._checked():
            return self._connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def write_batch(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert rows in one transaction. A key already present is an error, never a silent duplicate,
        except a row that failed for a retryable reason, which its retry replaces in the same transaction."""
        placeholders = ", ".join("?" for _ in COLUMN_NAMES)
        rows = list(rows)
        values = [tuple(_to_sql(row.get(name)) for name in COLUMN_NAMES) for row in rows]
        keys = [(row["utterance_id"], row["condition_key"]) for row in rows]
        with self._connection:
            self._connection.executemany("DELETE FROM results WHERE utterance_id = ? AND condition_key = ? AND status = 'failed' AND failure = 'retryable'", keys)
            self._connection.executemany(f"INSERT INTO results ({', '.join(COLUMN_NAMES)}) VALUES ({placeholders})", values)

    def to_frame(self) -> pd.DataFrame:
        with self._checked():
            return pd.read_sql_query(f"SELECT {', '.join(COLUMN_NAMES)} FROM results ORDER BY rowid", self._connection)


def _to_sql(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value
