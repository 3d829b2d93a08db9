"""Progress as plain lines for logs (CI, nohup, a redirected stderr), where a live bar shows nothing.

A line says how far the run is, how fast it goes, when it should end and the WER so far, so a person
reading a log of a 30-minute run can tell it is alive and whether it is going wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

DEFAULT_EVERY_S = 30.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressLog:
    """Collects committed rows and prints a line after the first batch, then every `every_s` seconds.

    Wire `rows` to run_evaluation's on_batch and `update` to its progress callback; call `finish`
    at the end. The WER is pooled over this session's scored rows: total errors / total reference words.
    """

    def __init__(self, write: Callable[[str], None], *, every_s: float = DEFAULT_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._write, self._every_s, self._clock = write, every_s, clock
        self._started = clock()
        self._last_printed: float | None = None
        self._done = self._total = 0
        self._first_done: int | None = None
        self._errors = self._ref_words = self._failed = self._session_rows = 0

    def rows(self, rows: Sequence[Mapping[str, Any]] | Any) -> None:
        """Count a batch of result rows: mappings, or an Arrow table of them (what the runner hands over)."""
        if hasattr(rows, "column_names"):
            import pyarrow.compute as pc

            ok = pc.equal(rows.column("status"), "ok")
            self._session_rows += rows.num_rows
            self._errors += int(pc.sum(rows.column("errors").filter(ok)).as_py() or 0)
            self._ref_words += int(pc.sum(rows.column("ref_words").filter(ok)).as_py() or 0)
            self._failed += rows.num_rows - int(pc.sum(ok).as_py() or 0)
            return
        for row in rows:
            self._session_rows += 1
            if row.get("status") == "ok":
                self._errors += int(row.get("errors") or 0)
                self._ref_words += int(row.get("ref_words") or 0)
            else:
                self._failed += 1

    def update(self, done: int, total: int) -> None:
        if self._first_done is None:
            # What was already in the run folder before this session (resume) is not part of the rate.
            self._first_done = done - self._session_rows
        self._done, self._total = done, total
        now = self._clock()
        if self._last_printed is None or now - self._last_printed >= self._every_s:
            self._last_printed = now
            self._write(self.line(now))

    def finish(self) -> None:
        if self._last_printed is not None and self._session_rows:
            self._write(self.line(self._clock()))

    def line(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        rate = (self._done - (self._first_done or 0)) / elapsed
        remaining = max(self._total - self._done, 0)
        percent = 100.0 * self._done / self._total if self._total else 100.0
        eta = _duration(remaining / rate) if rate > 0 else "unknown"
        wer = f"{100.0 * self._errors / self._ref_words:.1f}% over {self._ref_words} reference words" if self._ref_words else "– (no words scored yet)"
        return (f"progress: {self._done}/{self._total} utterance-conditions ({percent:.0f}%), {rate:.2f}/s, "
                f"elapsed {_duration(elapsed)}, ETA {eta}; running WER {wer}; {self._failed} failed")


__all__ = ["DEFAULT_EVERY_S", "ProgressLog"]
